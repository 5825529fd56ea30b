//! Synchronization primitives that park green threads instead of blocking their carrier (an OS
//! thread using them blocks, as usual). They work across green threads of any runtime and plain OS
//! threads at once, with APIs close to std's.
//!
//! All of them park through the runtime's [`park`](crate::park) protocol on a shared FIFO wait
//! list (see `waitlist.rs`), whose internal lock is held only to edit the list, never across a
//! park. Park may return spuriously, so every wait re-checks its condition.
//!
//! Their atomics, locks and parking come from the crate's concurrency shim, so under
//! `--cfg loom` this module is built on loom's types, with loom threads as the waiters, and
//! `loom-tests/` checks the mutex and condvar wake paths on this very code.

mod barrier;
mod condvar;
mod mutex;
mod once;
mod rwlock;
mod semaphore;
mod spin;
pub(crate) mod waitlist;

// Not the shim's: a process-wide counter outside any loom model (it only hands out distinct tags).
use std::sync::atomic::{AtomicU64, Ordering};

use crate::shim::{current_id, thread_local};

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard, MutexKind, RawMutex};
pub use once::Once;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::Semaphore;
pub use spin::{Spin, SpinGuard};

/// Tags of OS threads have the top bit set, so they never equal a green thread's id.
const OS_TAG: u64 = 1 << 63;

/// Who is calling, for owner tracking: the green thread's id, or a tag unique to the OS thread.
/// Never 0.
pub(crate) fn owner_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TAG: u64 = OS_TAG | NEXT.fetch_add(1, Ordering::Relaxed);
    }
    match current_id() {
        Some(id) => id,
        None => TAG.with(|t| *t),
    }
}
