//! Interrupting a green thread: what a signal does to a thread blocked in the kernel.
//!
//! An [`Interrupter`] marks its green thread interrupted and cuts short whatever it waits for:
//! a system call in flight on its carrier's syscall page is interrupted there
//! (`Poster::interrupt`: the call ends with `-EINTR`, or with its result if it had finished), and
//! a park returns as a spurious wake-up. The mark stays until the green thread takes it
//! ([`take_interrupt`]); meanwhile every call it posts is interrupted too, as a pending signal
//! interrupts every blocking call until it is handled.
//!
//! Only the carrier that posted a call may interrupt it, so a request goes through that
//! carrier's [`Requests`]; the mark's handshake with posting ([`super::mark`]) makes sure no call
//! posted around an interrupt blocks unseen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Shared;
use super::carrier::current;
use super::task::Task;

/// One carrier's interrupt requests: green threads whose call in flight there must end.
#[derive(Default)]
pub(crate) struct Requests {
    any: AtomicBool,
    tasks: Mutex<Vec<Arc<Task>>>,
}

impl Requests {
    fn push(&self, task: Arc<Task>) {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
        self.any.store(true, Ordering::Release);
    }

    /// Whether requests wait (the idle carrier's reason to wake).
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Takes the requests (the carrier, each round).
    pub(crate) fn take(&self) -> Vec<Arc<Task>> {
        if !self.any() {
            return Vec::new();
        }
        self.any.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A handle that interrupts one green thread, from any thread (see the module docs). Holding it
/// keeps the green thread's identity from being reused.
#[derive(Clone)]
pub struct Interrupter {
    task: Arc<Task>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interrupter(green thread {})", self.task.id())
    }
}

impl Interrupter {
    /// The calling green thread's interrupter; None on an OS thread.
    pub fn current() -> Option<Self> {
        current().map(|(t, s, _)| Self {
            task: t.arc(),
            shared: s.arc(),
        })
    }

    /// Marks the green thread interrupted and cuts short its call in flight or its park.
    pub fn interrupt(&self) {
        if let Some(c) = self.task.interrupt.mark() {
            self.shared.interrupts[c].push(self.task.clone());
            self.shared.wake_carrier(c);
        }
        // A park returns (its caller re-checks, as after any spurious wake-up).
        if let Some(t) = self.task.wake() {
            self.shared.schedule(t);
        }
    }
}

/// Whether the calling green thread is marked interrupted (the mark stays for
/// [`take_interrupt`]). False on an OS thread.
pub fn interrupted() -> bool {
    current().is_some_and(|(t, _, _)| t.interrupt.is_set())
}

/// Takes the calling green thread's interrupt mark: true if it was interrupted since it last
/// took it. False on an OS thread.
pub fn take_interrupt() -> bool {
    current().is_some_and(|(t, _, _)| t.interrupt.take())
}
