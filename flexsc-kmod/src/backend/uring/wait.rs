//! flexsc_wait on a ring, and draining a ring when its poster goes away or the registration
//! shuts down.
//!
//! A poster waits for entries completed by io_uring (visible once it reaps the ring) and by the
//! syscall threads (which ring the core's completion doorbell). With `IORING_OP_FUTEX_WAIT`
//! (6.7+) one sleep covers both: the poster registers on the doorbell as any sleeper does, queues
//! a FUTEX_WAIT on the doorbell's word, and sleeps in io_uring_enter until a completion is
//! posted, the futex wait among them. The doorbell protocol is unchanged: register, read the ring
//! count, re-check, sleep only while the count is unchanged. A FUTEX_WAIT left queued from an
//! earlier wait stays valid: any ring that sees this wait registered wakes it, and any ring that
//! does not is seen by the re-check.
//!
//! The futex is armed whenever the poster sleeps, even with only ring requests in flight (so that
//! the registration's shutdown, which rings every doorbell, wakes it) or none (so that it is the
//! doorbell's only sleeper: a ring wakes just one, see `close_ring`). Older kernels bound each
//! sleep on the ring with a timer instead, and sleep on the doorbell with `futex(2)` when nothing
//! is on the ring.

use std::time::{Duration, Instant};

use io_uring::opcode::{AsyncCancel2, FutexWait, Timeout};
use io_uring::types::CancelBuilder;

use super::{UringCore, tag};

/// The bound on one sleep when the doorbell cannot be waited on through the ring (kernels before
/// 6.7), and the step of a drain.
pub(super) const TICK: Duration = Duration::from_millis(1);
/// How long a drain waits for cancelled requests to complete before answering the rest
/// `-ECANCELED` itself. Cancellable requests (waits for readiness, queued io-wq work, blocked
/// io-wq work, which is signalled) complete at once; only uninterruptible I/O takes longer.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How often a drain repeats its cancel (work that moved between queues escapes a cancel).
const RECANCEL: Duration = Duration::from_millis(50);

/// futex2 flags: a 32-bit, process-private futex (`FUTEX2_SIZE_U32 | FUTEX2_PRIVATE`), which
/// `futex(FUTEX_WAKE_PRIVATE)` wakes.
const FUTEX2_U32_PRIVATE: u32 = 0x02 | 128;
/// Any waker's bitset matches (`FUTEX_BITSET_MATCH_ANY`).
const FUTEX_MATCH_ANY: u64 = u32::MAX as u64;

impl UringCore {
    /// flexsc_wait (see the module documentation).
    pub(super) fn wait_for(
        &mut self,
        ready: &mut dyn FnMut() -> bool,
        give_up: &mut dyn FnMut() -> bool,
        deadline: Option<Instant>,
    ) {
        self.deadline = deadline;
        self.wait_loop(ready, give_up);
        self.deadline = None;
    }

    fn wait_loop(&mut self, ready: &mut dyn FnMut() -> bool, give_up: &mut dyn FnMut() -> bool) {
        self.bind();
        loop {
            // A context ended meanwhile (its close rang the doorbell): release its file now.
            self.sync_specs();
            self.progress();
            if ready() {
                return;
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            if give_up() {
                // The registration is shutting down: interrupt what io_uring is still running.
                self.drain();
                return;
            }
            if !self.unsettled.is_empty() {
                // SQPOLL: the polling thread has not made every first attempt yet, and a request
                // on an O_NONBLOCK fd must be settled, not slept on.
                self.enter(0);
                std::thread::yield_now();
                continue;
            }
            if self.ring.is_some() && self.caps.futex_wait() {
                // Even with nothing on the ring: our FUTEX_WAIT stays queued between waits, and
                // must be the doorbell's only sleeper (see `close_ring`).
                self.sleep_on_doorbell(ready, give_up);
            } else if self.in_flight == 0 {
                // Only syscall threads can complete anything now; they ring the doorbell.
                let spins = self.sched.wait_spins();
                let bell = &self.area.core(self.core).completions;
                bell.wait_until(spins, self.deadline, &mut *ready, &mut *give_up);
                return;
            } else {
                self.sleep_bounded();
            }
        }
    }

    /// One sleep until a ring completion or a doorbell ring.
    fn sleep_on_doorbell(
        &mut self,
        ready: &mut dyn FnMut() -> bool,
        give_up: &mut dyn FnMut() -> bool,
    ) {
        let seen = self.area.core(self.core).completions.register_sleeper();
        self.reap();
        if !ready() && !give_up() {
            if !self.futex_armed {
                let word = self.area.core(self.core).completions.futex_word().as_ptr();
                let wait = FutexWait::new(word, seen.into(), FUTEX_MATCH_ANY, FUTEX2_U32_PRIVATE);
                self.push(wait.build().user_data(tag::FUTEX));
                self.futex_armed = true;
            }
            self.enter(1);
        }
        self.area.core(self.core).completions.unregister_sleeper();
    }

    /// One sleep until a ring completion or [`TICK`].
    fn sleep_bounded(&mut self) {
        if !self.timer_armed {
            let timer = Timeout::new(&*self.timer).build();
            self.push(timer.user_data(tag::TIMER));
            self.timer_armed = true;
        }
        self.enter(1);
    }

    /// Cancels every request of ours on the ring and waits until each has completed, at most
    /// [`DRAIN_LIMIT`]; the rest are answered `-ECANCELED` and the ring is closed. Every entry
    /// this core gave io_uring is DONE when this returns.
    pub(super) fn drain(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        if !self.on_owner() {
            self.abandon();
            return;
        }
        self.draining = true;
        let begun = Instant::now();
        let mut cancelled: Option<Instant> = None;
        while self.in_flight > 0 && self.ring.is_some() && begun.elapsed() < DRAIN_LIMIT {
            if cancelled.is_none_or(|t| t.elapsed() >= RECANCEL) {
                let cancel = AsyncCancel2::new(CancelBuilder::any()).build();
                self.push(cancel.user_data(tag::CANCEL_ANY));
                cancelled = Some(Instant::now());
            }
            self.sleep_bounded();
            self.reap();
        }
        self.draining = false;
        self.abandon();
    }
}
