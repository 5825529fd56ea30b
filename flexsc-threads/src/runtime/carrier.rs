//! A carrier: one pinned OS thread per user core, running green threads (paper section 4.2,
//! Figure 7). Its loop is FlexSC-Threads' scheduler:
//!
//! 1. run the ready green threads; a system call is a switch point: the entry is posted to the
//!    carrier's syscall pages and the green thread parks on it;
//! 2. when the batch is long enough (the batching policy) or nothing is runnable, submit it;
//! 3. with nothing runnable: harvest completed entries (their green threads become ready), fire
//!    due timers, retry posts that found the pages full, steal from another carrier;
//! 4. still nothing: flexsc_wait, until an entry completes, a green thread is woken from
//!    elsewhere, or the next timer is due.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use flexsc_kmod::Poster;

use super::Shared;
use super::local::LocalState;
use super::posting::Posting;
use super::queue::RunQueue;
use super::stats::CarrierStats;
use super::task::{CarrierCpu, Outcome, Suspend, Task};
use super::timer::Timers;

thread_local! {
    /// The green thread running on this thread, and its runtime. A green thread with its own TLS
    /// block sets its own copy once, when it starts (so its carrier never touches it); one
    /// without has the carrier set and clear the carrier's copy around each resume.
    static CURRENT: Cell<Option<(*const Task, *const Shared)>> = const { Cell::new(None) };
}

/// The green thread running on the calling thread, with its runtime and carrier index.
pub(crate) fn current() -> Option<(&'static Task, &'static Shared, usize)> {
    CURRENT.with(|c| c.get()).map(|(t, s)| {
        // SAFETY: set only while a carrier resumes this task (the carrier's copy), or on the
        // task's own TLS block, which is installed only while a carrier resumes it; that carrier
        // holds an Arc to the task and to the runtime for at least that long. The green code
        // asking runs inside that resume, so both outlive the borrow (the 'static is never held
        // across a suspend by our callers, which use it and drop it).
        let (t, s) = unsafe { (&*t, &*s) };
        (t, s, t.home.load(Ordering::Relaxed))
    })
}

/// Makes `task` the current green thread of the TLS block the caller runs on: called once by a
/// green thread with its own block, first thing on its own stack.
pub(crate) fn set_current(task: &Task, shared: *const Shared) {
    CURRENT.with(|c| c.set(Some((task, shared))));
}

/// Forgets the calling thread's green identity (see [`super::after_fork_in_child`]).
pub(crate) fn clear_current() {
    CURRENT.with(|c| c.set(None));
}

/// Runs `f` with no current green thread: code that runs outside any green thread's own resume
/// (a parked green thread's stack unwound while another one runs) must trap its system calls
/// normally rather than suspend someone else's coroutine.
pub(crate) fn without_current<R>(f: impl FnOnce() -> R) -> R {
    let saved = CURRENT.with(|c| c.take());
    let r = f();
    CURRENT.with(|c| c.set(saved));
    r
}

/// Unwinds a suspended green thread that is being dropped, with no current green thread on the
/// calling TLS block. Not inlined: [`super::task`] calls it right after pointing fs at the
/// green thread's own block, so its thread-local addresses must be computed here.
#[inline(never)]
pub(crate) fn unwind_hidden(task: &Task) {
    without_current(|| task.unwind());
}

/// Green threads run between two looks at completions and timers while the run queue stays busy.
const FAIRNESS_ROUND: u32 = 64;

pub(crate) struct Carrier {
    idx: usize,
    shared: Arc<Shared>,
    timers: Timers,
    stats: CarrierStats,
    /// Tells the overflow handler which green thread runs here (published through the switch
    /// state's copy, `LocalState::slot`); released when the carrier ends.
    _guard_slot: crate::overflow::CarrierSlot,
    /// The carrier's own TCB and tid, restored after each green thread.
    cpu: CarrierCpu,
}

impl Carrier {
    pub(crate) fn new(
        idx: usize,
        shared: Arc<Shared>,
        poster: Poster,
        guard_slot: crate::overflow::CarrierSlot,
    ) -> Self {
        let posting = Posting::new(poster, shared.stats.carrier_syscalls(idx));
        let cpu = CarrierCpu::current();
        let slot = guard_slot.running_slot();
        shared.locals[idx].set_tid(cpu.tid);
        // SAFETY: on the carrier's own thread, before any green thread runs here.
        unsafe {
            shared.locals[idx].with(|l| {
                l.cpu = cpu;
                l.slot = Some(slot);
                l.posting = Some(posting);
            })
        };
        Self {
            idx,
            shared,
            timers: Timers::default(),
            stats: CarrierStats::default(),
            _guard_slot: guard_slot,
            cpu,
        }
    }

    pub(crate) fn run(mut self) {
        let batch_limit = self.shared.batch_limit;
        loop {
            let mut ran = 0u32;
            while let Some(t) = self.next_ready() {
                // Green threads handing the carrier over to each other count as runs too.
                let budget = FAIRNESS_ROUND - 1 - ran % FAIRNESS_ROUND;
                let before = ran;
                ran += 1 + self.run_task(t, budget);
                if self.posting(|p| p.poster().unsubmitted()) >= batch_limit {
                    self.submit();
                }
                // A preempted green thread ran a whole slice: a round's worth of time.
                let preempted = self.local(|l| l.preempted) > 0;
                if ran / FAIRNESS_ROUND != before / FAIRNESS_ROUND || preempted {
                    // Green threads that keep yielding must not starve the ones whose calls
                    // completed or whose timers are due.
                    self.submit();
                    self.interrupt_requested();
                    self.harvest();
                    self.fire_timers();
                    // Nor the ones woken from elsewhere, which wait in the shared queue.
                    while let Some(t) = self.shared.queues[self.idx].pop() {
                        self.push_ready(t);
                    }
                    self.publish_stats();
                }
            }
            self.submit();
            self.interrupt_requested();
            let mut progressed = self.harvest();
            progressed |= self.fire_timers();
            progressed |= self.retry_overflow();
            if progressed || self.ready_len() > 0 || !self.shared.queues[self.idx].is_empty() {
                self.share_work();
                continue;
            }
            if let Some(t) = self.steal() {
                self.run_task(t, FAIRNESS_ROUND - 1);
                continue;
            }
            if self.shared.shutdown.load(Ordering::Acquire) {
                break;
            }
            self.idle();
        }
        self.publish_stats();
    }

    /// flexsc_wait with the carrier's other reasons to wake: a green thread queued here from
    /// elsewhere, shutdown, the next timer.
    fn idle(&mut self) {
        // Counters become visible to `Runtime::stats` whenever a carrier runs dry.
        self.publish_stats();
        let me = self.idx;
        let shared = &self.shared;
        let next_timer = self.timers.next();
        // SAFETY: as in `Carrier::local` (the wait blocks this thread but resumes nothing).
        let waits = unsafe {
            shared.locals[me].with(|l| {
                let poster = l.posting.as_mut().expect("started").poster();
                let before = poster.stats().waits;
                // The idle handshake (queue.rs): once marked sleeping, every later push rings us.
                if shared.queues[me].sleep_begin() {
                    poster.wait_with(
                        || {
                            !shared.queues[me].is_empty()
                                || shared.interrupts[me].any()
                                || shared.queues.iter().any(RunQueue::has_spare)
                                || shared.shutdown.load(Ordering::Acquire)
                        },
                        next_timer,
                    );
                }
                shared.queues[me].sleep_end();
                poster.stats().waits - before
            })
        };
        self.stats.waits += waits;
    }

    /// Runs `task` until it, or a green thread it handed the carrier over to (at most `budget`
    /// hand-overs), switches back; acts on what that one reported. Returns the hand-overs made.
    fn run_task(&mut self, task: Arc<Task>, budget: u32) -> u32 {
        task.home.store(self.idx, Ordering::Relaxed);
        self.stats.switches += 1;
        self.shared.locals[self.idx].count_resume();
        // Without a TLS block of its own, the green thread finds itself in the carrier's (and
        // hands nothing over: hand-overs need blocks of their own).
        let shares_tls = task.thread_pointer().is_none();
        if shares_tls {
            CURRENT.with(|c| c.set(Some((Arc::as_ptr(&task), Arc::as_ptr(&self.shared)))));
        }
        let t = Arc::as_ptr(&task);
        self.local(|l| {
            l.publish(&task);
            l.budget = budget;
            l.running = Some(task);
        });
        // SAFETY: the switch state's `running` holds the task until it switches away.
        unsafe { Task::resume(t, self.cpu) };
        if shares_tls {
            CURRENT.with(|c| c.set(None));
        }
        let (task, outcome, deferred, left) = self.local(|l| {
            (
                l.running.take(),
                l.outcome.take(),
                l.deferred.take(),
                l.budget,
            )
        });
        // Left by a green thread that handed over to one that switched back at once; normally
        // the one handed over to finishes it first thing.
        if let Some(d) = deferred.and_then(Task::wait) {
            self.push_ready(d);
        }
        let outcome = outcome.expect("a green thread reports why it switched back");
        if let Outcome::Posted = outcome {
            // Parked on its entry already, by itself.
            return budget - left;
        }
        let task = task.expect("the green thread that switched back");
        match outcome {
            Outcome::Posted => unreachable!("handled above"),
            Outcome::Finished => {
                self.recycle(task);
                self.shared.locals[self.idx].count_finish();
            }
            Outcome::Suspended(Suspend::Yield) => self.push_ready(task),
            Outcome::Suspended(Suspend::Park(deadline)) => {
                if task.try_park() {
                    if let Some(at) = deadline {
                        self.timers.add(at, task);
                    }
                } else {
                    self.push_ready(task);
                }
            }
            Outcome::Suspended(Suspend::Wait(deadline)) => {
                // The timer's reference is taken first: once waiting, the task is not ours.
                if let Some(at) = deadline {
                    self.timers.add(at, task.clone());
                }
                if let Some(task) = task.wait() {
                    self.push_ready(task);
                }
            }
            Outcome::Suspended(Suspend::Syscall(call)) => {
                if let Some(t) = self.posting(|p| p.post(self.idx, task, call)) {
                    self.push_ready(t);
                }
            }
        }
        budget - left
    }

    /// Runs `f` on this carrier's local state (its ready queue and pools).
    fn local<R>(&self, f: impl FnOnce(&mut LocalState) -> R) -> R {
        // SAFETY: carrier code, on the carrier's own thread, between resumes; `f` is one of the
        // short closures below, which neither resume nor re-enter.
        unsafe { self.shared.locals[self.idx].with(f) }
    }

    /// Runs `f` on this carrier's syscall pages (see `Carrier::local`).
    fn posting<R>(&self, f: impl FnOnce(&mut Posting) -> R) -> R {
        self.local(|l| f(l.posting.as_mut().expect("started in Carrier::new")))
    }

    fn push_ready(&self, task: Arc<Task>) {
        self.local(|l| l.ready.push(task));
    }

    fn ready_len(&self) -> usize {
        self.local(|l| l.ready.len())
    }

    /// The next green thread to run: this carrier's own first, then those queued from elsewhere.
    fn next_ready(&mut self) -> Option<Arc<Task>> {
        self.local(|l| l.ready.pop())
            .or_else(|| self.shared.queues[self.idx].pop())
    }

    /// Keeps a finished green thread's stack and TLS block (reset) for the next spawns: in this
    /// carrier's cache, else in the runtime's shared pools.
    /// The task itself is kept too when nothing else refers to it (no unparker left anywhere):
    /// the next spawn here rewrites it in place instead of allocating.
    fn recycle(&self, task: Arc<Task>) {
        let stack = task
            .take_finished()
            .and_then(super::context::Context::into_stack);
        // Only stacks of the runtime's size go to the carrier's cache.
        let (stack, odd) = match stack {
            Some(s) if s.size() != self.shared.stack_size => (None, Some(s)),
            s => (s, None),
        };
        let tls = match &task.tcb_hold {
            // Its TCB is its identity until joined: the join handle releases the block.
            Some(hold) => {
                *hold.block.lock().unwrap_or_else(|e| e.into_inner()) = task.take_tls();
                None
            }
            // Reset on the carrier's own TCB, as glibc resets a cached thread stack; an adopted
            // TCB is glibc's, never reused.
            None => task
                .take_tls()
                .filter(|b| !b.is_adopted())
                .and_then(|mut b| b.reuse().ok().map(|()| b)),
        };
        // Held once, by us, and never weakly: nobody can clone it any more.
        let task = (Arc::strong_count(&task) == 1 && Arc::weak_count(&task) == 0).then_some(task);
        let (stack, tls) = self.local(|l| l.keep(task, stack, tls));
        let stack = stack.or(odd);
        if stack.is_some() || tls.is_some() {
            self.shared.spill(stack, tls);
        }
    }

    fn share_work(&mut self) {
        let ready = self.ready_len();
        if ready < 2 {
            return;
        }
        let n = self.shared.queues.len();
        let Some(idle) = (1..n)
            .map(|k| (self.idx + k) % n)
            .find(|&c| self.shared.queues[c].is_sleeping())
        else {
            return;
        };
        for _ in 0..ready / 2 {
            if let Some(t) = self.local(|l| l.ready.pop_last()) {
                self.shared.queues[self.idx].push(t);
            }
        }
        self.shared.reg.wake(idle);
    }

    /// Interrupts the calls in flight here that other threads asked to interrupt (a call that
    /// completed meanwhile, or whose green thread moved on, is left alone).
    fn interrupt_requested(&mut self) {
        for task in self.shared.interrupts[self.idx].take() {
            if task.interrupt.in_flight_on() != Some(self.idx) {
                continue;
            }
            self.posting(|p| p.interrupt(&task));
        }
    }

    /// Takes completed entries; their green threads become ready. True if any.
    fn harvest(&mut self) -> bool {
        self.local(|l| {
            let posting = l.posting.as_mut().expect("started");
            posting.harvest(&mut l.ready)
        })
    }

    fn fire_timers(&mut self) -> bool {
        if self.timers.len() == 0 {
            return false;
        }
        let shared = &self.shared;
        let mut any = false;
        self.timers.due(Instant::now(), |task| {
            any = true;
            if let Some(t) = task.wake() {
                shared.schedule(t);
            }
        });
        any
    }

    fn retry_overflow(&mut self) -> bool {
        let idx = self.idx;
        self.local(|l| {
            let posting = l.posting.as_mut().expect("started");
            posting.retry_overflow(idx, &mut l.ready)
        })
    }

    /// An idle carrier takes a queued green thread from another carrier.
    fn steal(&mut self) -> Option<Arc<Task>> {
        let n = self.shared.queues.len();
        (1..n)
            .find_map(|k| self.shared.queues[(self.idx + k) % n].steal())
            .inspect(|_| {
                self.stats.steals += 1;
            })
    }

    /// Hands the batch to the backend (the batching policy decides when), counting its size.
    fn submit(&mut self) {
        let n = self.posting(|p| {
            let poster = p.poster();
            let n = poster.unsubmitted();
            if n > 0 {
                poster.submit();
            }
            n
        });
        if n > 0 {
            self.stats.record_batch(n);
        }
    }

    fn publish_stats(&mut self) {
        let (handed_over, preempted, posted, local_calls) = self.local(|l| {
            let p = l.posting.as_mut().expect("started");
            (
                std::mem::take(&mut l.handed_over),
                std::mem::take(&mut l.preempted),
                std::mem::take(&mut p.posted),
                std::mem::take(&mut p.local_calls),
            )
        });
        self.stats.switches += handed_over;
        self.stats.preempted += preempted;
        self.stats.posted += posted;
        self.stats.local_calls += local_calls;
        let local = &self.shared.locals[self.idx];
        self.stats.spawned = local.spawned();
        self.stats.finished = local.finished();
        self.shared.stats.publish(self.idx, self.stats);
    }
}
