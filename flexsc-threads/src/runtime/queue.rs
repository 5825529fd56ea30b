//! A carrier's run queue: runnable green threads, pushed by their carrier or by whoever woke
//! them, popped by the carrier, stolen from the back by idle carriers.
//!
//! A mutex around a deque: uncontended, as it is almost always, that is two atomic operations per
//! push or pop. The length is mirrored in an atomic so idle carriers and sleep checks look without
//! locking.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::task::Task;
use std::sync::Arc;

/// Runnable green threads of one carrier.
#[derive(Debug, Default)]
pub(crate) struct RunQueue {
    q: Mutex<VecDeque<Arc<Task>>>,
    len: AtomicUsize,
}

impl RunQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Task>>> {
        // A panic while holding this lock cannot leave the deque inconsistent: keep going.
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a runnable task.
    pub(crate) fn push(&self, t: Arc<Task>) {
        let mut q = self.lock();
        q.push_back(t);
        self.len.store(q.len(), Ordering::SeqCst);
    }

    /// The next task to run.
    pub(crate) fn pop(&self) -> Option<Arc<Task>> {
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
    pub(crate) fn steal(&self) -> Option<Arc<Task>> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut q = self.lock();
        let t = q.pop_back();
        self.len.store(q.len(), Ordering::SeqCst);
        t
    }

    /// Whether an idle carrier could steal from it (see [`Self::steal`]).
    pub(crate) fn has_spare(&self) -> bool {
        self.len.load(Ordering::SeqCst) > 0
    }

    /// Whether anything is queued (SeqCst: pairs with the idle check of a carrier going to sleep).
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::SeqCst) == 0
    }
}
