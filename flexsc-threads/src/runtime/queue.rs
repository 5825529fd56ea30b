//! A carrier's run queue: runnable green threads, pushed by their carrier or by whoever woke
//! them, popped by the carrier, stolen from the back by idle carriers.
//!
//! A mutex around a deque: uncontended, as it is almost always, that is two atomic operations per
//! push or pop. The length is mirrored in an atomic so idle carriers and sleep checks look without
//! locking; it is only written under the lock, so its stores follow the lock's order and the last
//! one is always the deque's length.
//!
//! Generic over what it holds so that, under `--cfg loom`, this file is built on its own (as
//! `flexsc_threads::queue`, holding plain numbers) and model-checked in
//! `loom-tests/tests/run_queue.rs`.

use std::collections::VecDeque;

use crate::shim::{AtomicBool, AtomicUsize, Mutex, MutexGuard, Ordering, fence};

/// What a run queue holds: a green thread.
#[cfg(not(loom))]
type Runnable = std::sync::Arc<super::task::Task>;
/// What a run queue holds in the loom models: a number standing for a green thread.
#[cfg(loom)]
type Runnable = usize;

/// Runnable green threads of one carrier.
#[derive(Debug)]
pub struct RunQueue<T = Runnable> {
    q: Mutex<VecDeque<T>>,
    len: AtomicUsize,
    /// The owning carrier is in (or entering) flexsc_wait: a push must ring it.
    sleeping: AtomicBool,
}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        Self {
            q: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            sleeping: AtomicBool::new(false),
        }
    }
}

impl<T> RunQueue<T> {
    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A panic while holding this lock cannot leave the deque inconsistent: keep going.
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a runnable task.
    pub fn push(&self, t: T) {
        let mut q = self.lock();
        q.push_back(t);
        self.len.store(q.len(), Ordering::SeqCst);
    }

    /// The next task to run.
    pub fn pop(&self) -> Option<T> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut q = self.lock();
        let t = q.pop_front();
        self.len.store(q.len(), Ordering::SeqCst);
        t
    }

    /// Takes the most recently queued task, for an idle carrier (the owner keeps the front). A
    /// carrier runs its own lock-free local queue first, so what waits here is fair game.
    pub fn steal(&self) -> Option<T> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut q = self.lock();
        let t = q.pop_back();
        self.len.store(q.len(), Ordering::SeqCst);
        t
    }

    /// Whether an idle carrier could steal from it (see [`Self::steal`]).
    pub fn has_spare(&self) -> bool {
        self.len.load(Ordering::SeqCst) > 0
    }

    /// Whether anything is queued (SeqCst: pairs with the idle check of a carrier going to sleep).
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::SeqCst) == 0
    }

    /// A waker's half of the idle handshake: queues `t` and tells whether the owning carrier is
    /// (or is about to be) asleep, so the caller must ring its doorbell. Pairs with
    /// [`Self::sleep_begin`] (Dekker): either the waker sees the carrier sleeping, or the carrier's
    /// idle check sees the task.
    pub fn push_and_check(&self, t: T) -> bool {
        self.push(t);
        fence(Ordering::SeqCst);
        self.sleeping.load(Ordering::SeqCst)
    }

    /// The carrier's half: marks it sleeping before its last look at the queue. True if the
    /// queue is still empty, so it may sleep (until rung); call [`Self::sleep_end`] after either
    /// way.
    pub fn sleep_begin(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.is_empty()
    }

    /// The carrier is awake again.
    pub fn sleep_end(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Whether the owning carrier is idle (a hint, for sharing work with it).
    pub fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::Relaxed)
    }
}
