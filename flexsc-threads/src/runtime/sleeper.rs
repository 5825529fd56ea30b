//! Waiters of the sync primitives' wait lists (`sync::waitlist`): who a queued node wakes, and
//! the park a wait uses.
//!
//! A green thread waiting in a wait list suspends with [`Suspend::Wait`]: it holds a reference to
//! itself while it waits (see [`crate::park`]), so its node names it by address and the wake-up
//! takes that reference over: no reference counting on either side.

use std::sync::Arc;
use std::time::Instant;

use super::carrier::current;
use super::task::Task;
use crate::park::Park;

/// Who a wait-list node wakes: a green thread (by address) or an OS thread.
#[derive(Debug)]
pub(crate) enum Sleeper {
    Green(*const Task),
    Os(std::thread::Thread),
}

impl Sleeper {
    /// The calling thread.
    pub(crate) fn current() -> Self {
        match current() {
            Some((t, _, _)) => Sleeper::Green(t),
            None => Sleeper::Os(std::thread::current()),
        }
    }

    /// Starts waking the sleeper, under its wait list's lock; [`Woke::finish`] completes it once
    /// the lock is released.
    ///
    /// # Safety
    /// The sleeper has not returned from its wait, and cannot until after this call.
    pub(crate) unsafe fn wake(&self) -> Woke {
        match self {
            // SAFETY: a green thread that has not returned from its wait is alive: running (its
            // carrier holds it) or waiting (it holds itself), per the caller's contract.
            Sleeper::Green(t) => Woke::Green(unsafe { &**t }.wake()),
            Sleeper::Os(t) => Woke::Os(t.clone()),
        }
    }
}

/// A wake-up begun under a wait list's lock (see [`Sleeper::wake`]).
#[derive(Debug)]
pub(crate) enum Woke {
    /// The green thread to queue (None: it was running, and will see its notification).
    Green(Option<Arc<Task>>),
    Os(std::thread::Thread),
}

impl Woke {
    /// Queues the green thread or unparks the OS thread.
    pub(crate) fn finish(self) {
        match self {
            Woke::Green(Some(task)) => schedule_woken(task),
            Woke::Green(None) => {}
            Woke::Os(t) => t.unpark(),
        }
    }
}

/// Queues a woken green thread on its runtime: the waker's own, when it is the same (alive while
/// the waker runs: no reference needed), else through the task's weak reference.
fn schedule_woken(task: Arc<Task>) {
    if let Some((_, s, _)) = current()
        && std::ptr::eq(s, task.runtime().as_ptr())
    {
        s.schedule(task);
    } else if let Some(s) = task.runtime().upgrade() {
        s.schedule(task);
    }
    // Otherwise its runtime is gone and it can never run again: dropping it unwinds its stack.
}

/// Parks the calling thread in a wait list until woken or `deadline`; may return spuriously (the
/// wait list re-checks its node).
pub(crate) fn wait(deadline: Option<Instant>) {
    super::park_as(Park::Waiting, deadline);
}
