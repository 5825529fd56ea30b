//! A carrier's syscall pages as its green threads use them (paper section 4.2): a system call is
//! posted as an entry and its green thread parks on the entry until the carrier harvests the
//! result.
//!
//! This lives in the carrier's local state ([`super::local`]), not in the carrier's loop, so that
//! a green thread posts its own call and hands the carrier straight to the next ready green
//! thread: one switch per call instead of two through the carrier, and the call never travels
//! through the switch state. Only the carrier submits, harvests and waits.

use std::collections::VecDeque;
use std::sync::Arc;

use flexsc_kmod::{PostError, Poster, Syscall, Ticket};

use super::local::Ready;
use super::stats::CarrierSyscalls;
use super::task::Task;

/// The posting side of one carrier: its poster, the green thread parked on each entry, and the
/// calls waiting for a free entry.
pub(crate) struct Posting {
    poster: Poster,
    /// The green thread parked on each entry slot, with its ticket.
    waiting: Vec<Option<(Ticket, Arc<Task>)>>,
    /// Calls that found every entry taken: posted once results free some.
    overflow: VecDeque<(Arc<Task>, Syscall)>,
    /// This carrier's calls by number (live; its only writer).
    syscalls: Arc<CarrierSyscalls>,
    /// Entries posted since the statistics last took them.
    pub(crate) posted: u64,
    /// Calls run on the carrier itself (not posted) since the statistics last took them.
    pub(crate) local_calls: u64,
}

impl Posting {
    pub(crate) fn new(poster: Poster, syscalls: Arc<CarrierSyscalls>) -> Self {
        Self {
            waiting: (0..poster.capacity()).map(|_| None).collect(),
            poster,
            overflow: VecDeque::new(),
            syscalls,
            posted: 0,
            local_calls: 0,
        }
    }

    /// The poster itself (submit, wait, counters).
    pub(crate) fn poster(&mut self) -> &mut Poster {
        &mut self.poster
    }

    /// Writes `call` into a free entry; the caller then parks the green thread on the ticket
    /// ([`Posting::park_on`]) before anything can harvest it.
    pub(crate) fn try_post(&mut self, call: &Syscall) -> Result<Ticket, PostError> {
        self.poster.post(call)
    }

    /// Parks green thread `task` of carrier `idx` on its posted entry, counted by number. If an
    /// interrupt was requested before the call was posted, the call is interrupted at once.
    pub(crate) fn park_on(&mut self, idx: usize, ticket: Ticket, nr: i64, task: Arc<Task>) {
        self.posted += 1;
        self.syscalls.count_posted(nr);
        if task.interrupt.posted_on(idx) {
            self.poster.interrupt(&ticket);
        }
        let slot = ticket.slot() as usize;
        self.waiting[slot] = Some((ticket, task));
    }

    /// Counts a call of number `nr` that ran on the carrier without going through the pages.
    pub(crate) fn count_local(&mut self, nr: i64) {
        self.local_calls += 1;
        self.syscalls.count_local(nr);
    }

    /// Carrier: a green thread's call that it could not post itself. Posted and parked if an
    /// entry is free; queued if every entry is taken; otherwise (thread-bound, not a system call
    /// number, or the registration shutting down) run here, on the carrier, which is the green
    /// thread's kernel thread, and the green thread is handed back to be made ready.
    pub(crate) fn post(&mut self, idx: usize, task: Arc<Task>, call: Syscall) -> Option<Arc<Task>> {
        match self.try_post(&call) {
            Ok(t) => {
                self.park_on(idx, t, call.nr(), task);
                None
            }
            Err(PostError::Full) => {
                self.overflow.push_back((task, call));
                None
            }
            Err(_) => {
                self.count_local(call.nr());
                task.set_resume_value(self.poster.call(&call));
                Some(task)
            }
        }
    }

    /// Carrier: posts queued calls while entries are free; those run locally go to `ready`.
    /// True if any was taken.
    pub(crate) fn retry_overflow(&mut self, idx: usize, ready: &mut Ready) -> bool {
        let mut any = false;
        while self.poster.in_flight() < self.poster.capacity() {
            let Some((task, call)) = self.overflow.pop_front() else {
                break;
            };
            if let Some(t) = self.post(idx, task, call) {
                ready.push(t);
            }
            any = true;
        }
        any
    }

    /// Carrier: takes completed entries; their green threads become ready. True if any.
    pub(crate) fn harvest(&mut self, ready: &mut Ready) -> bool {
        if self.poster.in_flight() == 0 {
            return false; // nothing posted: skip the scan of every page's completion count
        }
        let waiting = &mut self.waiting;
        let n = self.poster.harvest(|ticket, ret| {
            if let Some((_, task)) = waiting[ticket.slot() as usize].take() {
                task.interrupt.completed();
                task.set_resume_value(ret);
                ready.push_completed(task);
            }
        });
        n > 0
    }

    /// Carrier: interrupts the call in flight of `task`, if it is parked on an entry here.
    pub(crate) fn interrupt(&mut self, task: &Arc<Task>) {
        let found = self
            .waiting
            .iter()
            .flatten()
            .find(|(_, t)| Arc::ptr_eq(t, task));
        if let Some((ticket, _)) = found {
            self.poster.interrupt(ticket);
        }
    }
}
