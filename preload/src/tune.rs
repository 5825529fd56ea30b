//! The hybrid rule's tuner (`FLEXSC_DIRECT=auto`): whether calls on non-blocking descriptors
//! run on the carrier or are posted is chosen per process, by measuring which costs the program
//! less CPU time per system call.
//!
//! Neither fixed rule wins for every server (docs/results.md, "What posting costs MariaDB"):
//! Apache on 2 CPUs does a third more requests with them posted (they batch, and its kernel time
//! per request falls by a quarter), MariaDB half as much again with them on the carrier (each
//! posted call is a switch to another connection, and its own code slows by a third). Nor does a
//! property of one call or one green thread tell the two apart (the batch a call would join, the
//! wall time or the run time between a thread's calls were all tried). What does is the cost
//! itself, so the tuner measures it:
//!
//! - an epoch's cost is the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`: every thread, the
//!   carriers, syscall threads and io_uring's workers alike) over the calls its green threads
//!   made (posted and run on the carrier: a server makes the same calls per request under
//!   either rule, so this is CPU per request up to a constant);
//! - [`Tuner`] holds the cheaper rule and probes the other now and then (its doc has the
//!   method): its probes cost a settled process about 2% of its time at most.
//!
//! The epoch clock is read by the calls the tuner decides (the coarse monotonic clock, a few
//! nanoseconds through the vDSO); whichever call finds an epoch over closes it.
//! `FLEXSC_TUNE_LOG=1` prints each epoch's cost and the choice to stderr.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};

use flexsc_threads::tune::{EPOCH, Tuner};

/// The rule green threads' calls follow now (see [`Tuner::running`]); true before the first
/// epoch closes (the fixed rule's choice).
static CARRIER: AtomicBool = AtomicBool::new(true);
/// When the current epoch may close, in coarse-clock nanoseconds (0: not started).
static DEADLINE: AtomicU64 = AtomicU64::new(0);
static TUNER: Mutex<Option<Tuner>> = Mutex::new(None);
/// `FLEXSC_TUNE_LOG`: 0 unread, 1 off, 2 on.
static LOG: AtomicU8 = AtomicU8::new(0);

/// Whether calls on non-blocking descriptors run on the carrier now; closes the epoch if it is
/// over.
#[inline]
pub(crate) fn nonblock_on_carrier() -> bool {
    if coarse_ns() >= DEADLINE.load(Relaxed) {
        close_epoch();
    }
    CARRIER.load(Relaxed)
}

#[cold]
fn close_epoch() {
    // Whoever holds the lock closes it; the others go on with the rule as it is.
    let Ok(mut tuner) = TUNER.try_lock() else {
        return;
    };
    let now = coarse_ns();
    if now < DEADLINE.load(Relaxed) {
        return;
    }
    let Some(rt) = crate::rt::started() else {
        return;
    };
    let s = rt.syscall_stats();
    let calls = s.posted_total() + s.local_total();
    let cpu = process_cpu_ns();
    DEADLINE.store(now + EPOCH.as_nanos() as u64, Relaxed);
    let Some(t) = tuner.as_mut() else {
        *tuner = Some(Tuner::new(CARRIER.load(Relaxed), cpu, calls));
        return;
    };
    if let Some(e) = t.end_epoch(cpu, calls) {
        CARRIER.store(t.running(), Relaxed);
        if log() {
            let rule = |c: bool| if c { "carrier" } else { "posted" };
            let msg = format!(
                "libflexsc: tune: epoch {} {:.0} ns/call over {} calls; next {} (chosen {}, {} changes)\n",
                rule(e.way),
                e.cost,
                e.calls,
                rule(t.running()),
                rule(t.chosen()),
                t.changes()
            );
            // SAFETY: writes our own buffer to stderr through glibc's write.
            unsafe { crate::real::write()(2, msg.as_ptr().cast(), msg.len()) };
        }
    }
}

/// In a fork child: its runtime, counters and CPU clock start afresh, so does its tuner (unless
/// another thread of the parent held it across the fork: then the rule stays as it was).
pub(crate) fn reset_after_fork() {
    DEADLINE.store(0, Relaxed);
    CARRIER.store(true, Relaxed);
    if let Ok(mut t) = TUNER.try_lock() {
        *t = None;
    }
}

fn log() -> bool {
    match LOG.load(Relaxed) {
        0 => {
            let on = std::env::var_os("FLEXSC_TUNE_LOG").is_some_and(|v| v != "0");
            LOG.store(if on { 2 } else { 1 }, Relaxed);
            on
        }
        v => v == 2,
    }
}

fn coarse_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we own; both clocks exist on every Linux we run on.
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
