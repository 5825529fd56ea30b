//! One syscall thread: become the active thread of its core, drain pages, hand the core over
//! before a call that may block, spin, sleep.

use crate::calls;
use crate::compound::abi::NR_COMPOUND;
use crate::compound::executor;
use crate::entry::{Claim, NR_FLEXSC_BASE};
use crate::interrupt::{Interrupt, PARKED};
use crate::page::Step;
use crate::raw;
use crate::sync::{Arc, AtomicBool, Ordering, spin_hint};
use std::sync::atomic::{AtomicI32, AtomicU64};
use std::time::Instant;

use super::Scheduler;
use super::poller;

/// What shutdown, placement and the dynamic controller need to know about a syscall thread.
#[derive(Debug, Default)]
pub(crate) struct ThreadState {
    tid: AtomicI32,
    in_call: AtomicBool,
    /// Nanoseconds spent spinning idle so far (counted only for the dynamic controller).
    spin_ns: AtomicU64,
}

impl ThreadState {
    /// The kernel thread id (0 before the thread has started).
    pub(crate) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Acquire)
    }

    /// Time spent spinning idle so far, in nanoseconds.
    pub(crate) fn spin_ns(&self) -> u64 {
        self.spin_ns.load(Ordering::Relaxed)
    }

    /// Ends a spin that began at `since`, if one did.
    fn end_spin(&self, since: &mut Option<Instant>) {
        if let Some(t) = since.take() {
            let ns = t.elapsed().as_nanos() as u64;
            self.spin_ns.fetch_add(ns, Ordering::Relaxed);
        }
    }

    /// Interrupts a call that may be blocked, so the thread can see the shutdown.
    pub(crate) fn interrupt(&self) {
        let tid = self.tid.load(Ordering::Acquire);
        if tid > 0 && self.in_call.load(Ordering::Acquire) {
            raw::tgkill(tid, interrupt_signal());
        }
    }
}

/// The signal that interrupts a syscall thread's call: sent by shutdown to threads blocked in a
/// call, and by [`interrupt`] to the thread running an interrupted entry. Its handler
/// (`raw::install_interrupt_handler`, without SA_RESTART) makes a blocked call return `-EINTR`
/// and closes the window before the `syscall` instruction.
pub fn interrupt_signal() -> i32 {
    libc::SIGRTMAX() - 2
}

pub(crate) fn install_interrupt_handler() -> std::io::Result<()> {
    raw::install_interrupt_handler(interrupt_signal())
}

/// Interrupts the call of `core`'s entry `slot` if a syscall thread is running it (see
/// [`crate::interrupt`]), or wakes the poller if the entry is parked there; a thread that has yet
/// to issue it finds the request and does not.
pub(crate) fn interrupt(sched: &Scheduler, core: usize, slot: u32) {
    sched.area().interrupt(core, slot).request(|tid| {
        if tid == PARKED {
            // The poller completes it (it is alive: shutdown leaves every parked entry first,
            // which waits for us in `Interrupt::leave`).
            sched.poller().wake();
        } else {
            // The thread cannot exit before we are done: it waits for us in `Interrupt::leave`.
            raw::tgkill(tid, interrupt_signal());
        }
    });
}

/// The thread's main loop.
pub(crate) fn run(sched: Arc<Scheduler>, core: usize, st: Arc<ThreadState>) {
    st.tid.store(raw::gettid(), Ordering::Release);
    // Process-directed signals belong to the application's threads, never to ours.
    raw::block_signals_except(interrupt_signal());
    if let Some(cpu) = sched.slot(core).cpu {
        // Pinning is a locality preference; an affinity error must not stop the pages draining.
        let _ = raw::pin_to_cpu(cpu);
    }
    // Where the group is placed now (PerCore, Dynamic), and counted in for later moves.
    sched.join(&st);
    let measure_spins = sched.measures_spins();
    let mut start = 0usize;
    let mut busy_passes = 0u32;
    'outer: while !sched.is_shut_down() {
        if !sched.activate(core) {
            sched.sleep_idle(core);
            continue;
        }
        let mut empty_polls = 0;
        let mut spinning: Option<Instant> = None;
        loop {
            match drain_once(&sched, core, &st, &mut start) {
                Drained::HandedOff => {
                    st.end_spin(&mut spinning);
                    continue 'outer;
                }
                Drained::Ran(0) => {
                    if empty_polls >= sched.spins() || sched.is_shut_down() {
                        break;
                    }
                    if empty_polls == 0 && measure_spins {
                        spinning = Some(Instant::now());
                    }
                    empty_polls += 1;
                    spin_hint();
                }
                Drained::Ran(_) => {
                    st.end_spin(&mut spinning);
                    empty_polls = 0;
                    busy_passes = busy_passes.wrapping_add(1);
                    if busy_passes & 63 == 0 {
                        sched.tick();
                    }
                }
            }
        }
        st.end_spin(&mut spinning);
        // Out of work: a good moment for the dynamic controller (still active: work posted
        // meanwhile is seen by the deactivation's re-check).
        sched.tick();
        if sched.deactivate(core) && !sched.is_shut_down() {
            continue; // work raced in after the last scan
        }
        sched.sleep_idle(core);
    }
    sched.leave(&st);
    sched.thread_exited(core);
}

enum Drained {
    /// Entries run (0: nothing found).
    Ran(usize),
    /// A call that may block was run after handing the core to a sibling.
    HandedOff,
}

/// One pass over the group's work: entries back from the poller, then every page with work,
/// each under its page lock.
fn drain_once(sched: &Arc<Scheduler>, core: usize, st: &ThreadState, start: &mut usize) -> Drained {
    let area = sched.area();
    let mut ran = 0;
    // At most a page's worth per pass, so the pages are not starved.
    for _ in 0..crate::page::ENTRIES_PER_PAGE {
        let Some(claim) = sched.poller().next_ready(area) else {
            break;
        };
        ran += 1;
        if let Some(claim) = poller::arm(sched, claim) {
            let page = area.index_of(claim.entry()) / crate::page::ENTRIES_PER_PAGE;
            run_blocking(sched, core, st, claim, page);
            return Drained::HandedOff;
        }
    }
    let pages = sched.pages();
    let n = pages.len();
    *start = (*start + 1) % n;
    for k in 0..n {
        let i = pages.start + (*start + k) % n;
        let ctl = area.control(i);
        if !ctl.has_work() {
            continue;
        }
        let Some(guard) = ctl.try_lock() else {
            continue;
        };
        let mut blocking: Option<Claim<'_>> = None;
        let mut completed = 0;
        ran += guard.drain(&area.pages()[i], |claim| {
            let head = claim.head();
            let nr = head.nr as libc::c_long;
            // A compound may block in any of its calls.
            if (calls::may_block(nr) && head.nr < NR_FLEXSC_BASE) || head.nr == NR_COMPOUND {
                // A call on an fd that is not ready waits at the poller, not in a thread (a
                // compound is never parked: `arm` hands back what it does not know).
                let Some(claim) = poller::arm(sched, claim) else {
                    return Step::Continue;
                };
                blocking = Some(claim);
                return Step::Release;
            }
            let args = claim.args();
            claim.complete(execute(head.nr, &args));
            completed += 1;
            Step::Continue
        });
        if completed > 0 {
            ctl.note_completed(completed);
            area.core(area.core_of_page(i)).completions.ring();
        }
        if let Some(claim) = blocking {
            run_blocking(sched, core, st, claim, i);
            return Drained::HandedOff;
        }
    }
    Drained::Ran(ran)
}

/// Runs `claim`, an entry of page `page` whose call may block, after handing the core to a
/// sibling (paper 3.5: before sleeping in the kernel, let a sibling keep the pages draining).
fn run_blocking(
    sched: &Arc<Scheduler>,
    core: usize,
    st: &ThreadState,
    claim: Claim<'_>,
    page: usize,
) {
    let area = sched.area();
    let work = sched.deactivate(core);
    Scheduler::hand_off(sched, core, work);
    let args = claim.args();
    let intr = area.interrupt_of(claim.entry());
    st.in_call.store(true, Ordering::Release);
    let ret = if claim.head().nr == NR_COMPOUND {
        execute_compound(args[0], intr, st.tid())
    } else {
        execute_interruptible(claim.head().nr, &args, intr, st.tid())
    };
    st.in_call.store(false, Ordering::Release);
    sched.call_done(core);
    claim.complete(ret);
    area.control(page).note_completed(1);
    area.core(area.core_of_page(page)).completions.ring();
}

/// Runs one entry's call on this thread: flexsc operations, refusals, or the raw instruction.
fn execute(nr: u16, args: &[u64; 6]) -> i64 {
    if let Some(r) = calls::flexsc_op_result(nr.into()) {
        return r;
    }
    if calls::is_thread_bound(nr as libc::c_long, args) {
        return calls::REFUSED;
    }
    // SAFETY: the call is not thread-bound (it cannot end, clone or re-signal this thread);
    // pointer arguments are the poster's and the kernel checks them (-EFAULT), exactly as if the
    // poster had trapped itself.
    unsafe { raw::syscall6(nr as u64, args) }
}

/// Runs a call that may block (a Linux call, not a flexsc operation) as this entry's runner,
/// thread `tid`, so that [`interrupt`] can end it (see [`crate::interrupt`]).
fn execute_interruptible(nr: u16, args: &[u64; 6], intr: &Interrupt, tid: i32) -> i64 {
    if calls::is_thread_bound(nr as libc::c_long, args) {
        return calls::REFUSED;
    }
    let request = intr.enter(tid);
    // SAFETY: as in `execute`: not thread-bound, and the poster's pointers are checked by the
    // kernel. `request` was published by `enter`, as the stub requires.
    let ret = unsafe { raw::syscall6_interruptible(nr as u64, args, request) };
    if intr.leave() {
        // A signal may be pending for this call: let it land here, not in our next call.
        raw::take_pending_signals();
    }
    ret
}

/// Runs the compound at `addr` on this thread, back to back, each call interruptible as an
/// entry's call; an interrupt of the entry stops the program (`-EINTR`).
fn execute_compound(addr: u64, intr: &Interrupt, tid: i32) -> i64 {
    let mut issue = |nr: u16, args: &[u64; 6]| {
        if intr.requested() {
            return None;
        }
        if let Some(r) = calls::flexsc_op_result(nr.into()) {
            return Some(r);
        }
        let r = execute_interruptible(nr, args, intr, tid);
        (!(r == -(libc::EINTR as i64) && intr.requested())).then_some(r)
    };
    // SAFETY: the entry's poster vouched for the program at `addr` (`Compound::entry_call`),
    // which stays untouched until the entry is DONE.
    unsafe { executor::run_at(addr, &mut issue) }
}
