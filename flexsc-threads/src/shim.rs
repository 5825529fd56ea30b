//! The concurrency shim: every atomic, lock and park that the run queue, the sync primitives and
//! the futex table use comes from here, so the same code runs for real and, under `--cfg loom`,
//! inside loom's model checker (`loom-tests/`), as `flexsc-kmod/src/sync.rs` does for the kernel
//! side.
//!
//! For real, these are std's atomics and mutex and the runtime's park (a green thread gives its
//! carrier to others, an OS thread blocks): plain re-exports, so the shim costs nothing. Under
//! loom every waiter is a loom thread (loom's `park` and `Thread::unpark`), and time is
//! abstracted: a deadline has always passed ([`expired`]), so a timed wait looks once for its
//! wake-up and then gives up, racing its withdrawal against any wake (the interleavings in which
//! a timeout can go wrong).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

// Per-thread statics: per loom thread under loom, whose threads all run on one OS thread.
#[cfg(loom)]
pub(crate) use loom::thread_local;
#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(not(loom))]
pub(crate) use crate::runtime::{Unparker, current_id, park, park_deadline, yield_now};

use std::time::Instant;

/// Declares a `const fn` for real and a plain `fn` under loom, whose atomics and locks have no
/// const constructors: one body either way.
macro_rules! const_fn {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        $(#[$attr])*
        #[cfg(not(loom))]
        $vis const fn $($rest)*

        $(#[$attr])*
        #[cfg(loom)]
        $vis fn $($rest)*
    };
}
pub(crate) use const_fn;

/// Whether `deadline` has passed.
#[cfg(not(loom))]
#[inline]
pub(crate) fn expired(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

/// Whether `deadline` has passed: always, under loom (module doc).
#[cfg(loom)]
pub(crate) fn expired(_deadline: Instant) -> bool {
    true
}

/// Hint to the CPU (or to loom's scheduler) that we are spinning.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Wakes one parked loom thread: the model's stand-in for the runtime's `Unparker`.
#[cfg(loom)]
#[derive(Clone, Debug)]
pub(crate) struct Unparker(loom::thread::Thread);

#[cfg(loom)]
impl Unparker {
    /// The calling loom thread's unparker.
    pub(crate) fn current() -> Self {
        Self(loom::thread::current())
    }

    /// Wakes the thread, or makes its next park return at once.
    pub(crate) fn unpark(&self) {
        self.0.unpark();
    }
}

/// Parks the calling loom thread until unparked.
#[cfg(loom)]
pub(crate) fn park() {
    loom::thread::park();
}

/// A timed park whose deadline passes at once (module doc): returns without waiting.
#[cfg(loom)]
pub(crate) fn park_deadline(_deadline: Instant) {
    loom::thread::yield_now();
}

/// No loom thread is a green thread.
#[cfg(loom)]
pub(crate) fn current_id() -> Option<u64> {
    None
}

#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
