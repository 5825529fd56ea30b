//! A carrier's private state that its green threads reach too: its ready queue and its caches of
//! stacks and TLS blocks (a few, kept warm; the runtime's shared pools take the rest).
//!
//! A green thread runs on its carrier's kernel thread, so when it spawns or wakes a green thread
//! of the same carrier it can push to the carrier's own queue, and take a stack and a TLS block
//! from the carrier's own pools, with no lock, no atomic read-modify-write and no wake-up: the
//! carrier is busy running it and looks at its queue as soon as it gets control back.
//!
//! The rule that makes this sound: [`CarrierLocal::with`] is called only on the carrier's own
//! kernel thread (by the carrier, or by a green thread it is resuming), and never resumes a green
//! thread inside, so two borrows of the state never overlap.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::task::Task;
use crate::stack::Stack;
use crate::tls::TlsBlock;

/// Finished green threads' stacks and TLS blocks a carrier keeps for the next spawns: enough for
/// bursts of short-lived threads, few enough that all stay warm (their pages resident).
const CACHE_MAX: usize = 16;

/// The state itself.
pub(crate) struct LocalState {
    /// Ready green threads made ready on this carrier.
    pub(crate) ready: VecDeque<Arc<Task>>,
    /// Released stacks (all of the runtime's stack size), pages kept.
    pub(crate) stacks: Vec<Stack>,
    /// Released TLS blocks, already reset for reuse.
    pub(crate) tls: Vec<TlsBlock>,
    /// Finished tasks nothing else refers to, to be rewritten by the next spawns.
    pub(crate) tasks: Vec<Arc<Task>>,
    /// Green thread ids reserved for spawns here.
    ids: Range<u64>,
}

/// One carrier's [`LocalState`], shared only with the green threads it runs, and its counts of
/// green threads spawned and finished here (written only by it, read by anyone).
pub(crate) struct CarrierLocal {
    state: UnsafeCell<LocalState>,
    spawned: AtomicU64,
    finished: AtomicU64,
}

/// Ids a carrier reserves at a time, so spawning takes no shared counter.
const ID_BLOCK: u64 = 1024;

// SAFETY: the state is only touched on its carrier's kernel thread (module doc), one borrow at a
// time; it moves between threads only when the runtime is built and dropped.
unsafe impl Sync for CarrierLocal {}
// SAFETY: as above; TlsBlock and Stack are Send, Arc<Task> is Send.
unsafe impl Send for CarrierLocal {}

impl CarrierLocal {
    pub(crate) fn new() -> Self {
        Self {
            state: UnsafeCell::new(LocalState {
                ready: VecDeque::new(),
                stacks: Vec::new(),
                tls: Vec::new(),
                tasks: Vec::new(),
                ids: 0..0,
            }),
            spawned: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        }
    }

    /// Counts a green thread spawned here. Only this carrier's thread calls it (single writer:
    /// no read-modify-write).
    pub(crate) fn count_spawn(&self) {
        let n = self.spawned.load(Ordering::Relaxed);
        self.spawned.store(n + 1, Ordering::Release);
    }

    /// Counts a green thread finished here; as [`CarrierLocal::count_spawn`].
    pub(crate) fn count_finish(&self) {
        let n = self.finished.load(Ordering::Relaxed);
        self.finished.store(n + 1, Ordering::Release);
    }

    /// Green threads spawned here so far.
    pub(crate) fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::SeqCst)
    }

    /// Green threads finished here so far.
    pub(crate) fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }

    /// Runs `f` on the state.
    ///
    /// # Safety
    /// The caller runs on this carrier's kernel thread (the carrier itself, or a green thread
    /// the carrier is resuming), and `f` neither resumes a green thread nor calls `with` again.
    pub(crate) unsafe fn with<R>(&self, f: impl FnOnce(&mut LocalState) -> R) -> R {
        // SAFETY: the caller's contract: no other borrow of the state exists meanwhile.
        f(unsafe { &mut *self.state.get() })
    }
}

impl LocalState {
    /// A new green thread id, from this carrier's reserved block (refilled from `global`).
    pub(crate) fn next_id(&mut self, global: &AtomicU64) -> u64 {
        if self.ids.is_empty() {
            let start = global.fetch_add(ID_BLOCK, Ordering::Relaxed);
            self.ids = start..start + ID_BLOCK;
        }
        self.ids.next().expect("refilled above")
    }

    /// Keeps a finished green thread's task (unshared), stack and TLS block (reset for reuse) if
    /// the caches have room; hands back the stack and block it does not keep, for the shared
    /// pools (a task not kept is freed after the caller's borrow ends).
    pub(crate) fn keep(
        &mut self,
        task: Option<Arc<Task>>,
        stack: Option<Stack>,
        tls: Option<TlsBlock>,
    ) -> (Option<Stack>, Option<TlsBlock>) {
        fn keep_one<T>(cache: &mut Vec<T>, item: Option<T>) -> Option<T> {
            match item {
                Some(x) if cache.len() < CACHE_MAX => {
                    cache.push(x);
                    None
                }
                other => other,
            }
        }
        // A finished task's drop runs no code of its own (its coroutine is gone): dropping one the
        // cache has no room for, here, cannot re-enter.
        drop(keep_one(&mut self.tasks, task));
        (
            keep_one(&mut self.stacks, stack),
            keep_one(&mut self.tls, tls),
        )
    }
}
