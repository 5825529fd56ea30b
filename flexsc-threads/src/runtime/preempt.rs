//! Preemption: a green thread that keeps its carrier too long is made to yield.
//!
//! Scheduling is cooperative (paper section 4.2): a green thread runs until it makes a call,
//! waits or yields. A green thread spinning in user space on a flag that another green thread
//! must set livelocks when that other one is queued behind it on the same carrier: nothing else
//! runs there, and idle carriers steal only from the shared queues.
//!
//! With [`Preemption`] set ([`crate::Builder::preempt`]) a monitor thread looks at every carrier
//! once per slice. A carrier that is busy (not in flexsc_wait), whose kernel thread is running
//! (not blocked in the kernel: a signal would only cut its call short), and that has not resumed
//! a green thread since the last look, gets the preemption signal ([`preempt_signal`]). The
//! handler runs on the interrupted green thread's stack. If the code it interrupted may be
//! preempted ([`Preemption::may_preempt`], given its address), it yields as [`crate::yield_now`]
//! does; when the green thread is resumed, perhaps on another carrier, the handler returns and
//! the kernel restores the interrupted registers. Elsewhere (the runtime, libc, a system call)
//! it returns at once, and the next slice tries again.
//!
//! The predicate is the whole safety argument: a yield there must be as sound as a call to
//! `yield_now` at that instruction. Code holding a lock that makes a kernel thread wait (libc's
//! internal locks, `std::sync` in the runtime) must never be preempted, or another green thread
//! of the same carrier can block the carrier on it. The preload's predicate accepts only the main
//! executable's own code.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flexsc_kmod::raw;

use super::Shared;
use super::carrier::current;
use super::task::Suspend;

/// When and where green threads are preempted.
#[derive(Clone, Copy, Debug)]
pub struct Preemption {
    /// How long a carrier may run without resuming another green thread before its green thread
    /// is asked to yield (the monitor's period).
    pub slice: Duration,
    /// Whether the code at this instruction address may be preempted: true only where a
    /// `yield_now` would be sound (see the module docs). Called in a signal handler: it must be
    /// async-signal-safe (no allocation, no lock).
    pub may_preempt: fn(pc: usize) -> bool,
}

impl Preemption {
    /// Parses a slice as `FLEXSC_PREEMPT` spells it: milliseconds (1 to 60,000), or `0` or `off`
    /// for none.
    pub fn parse_slice(v: &str) -> Result<Option<Duration>, String> {
        match v.trim() {
            "0" | "off" => Ok(None),
            n => match n.parse::<u64>() {
                Ok(ms) if ms <= 60_000 => Ok(Some(Duration::from_millis(ms))),
                _ => Err(format!("{v:?}: expected milliseconds (0 to 60000) or off")),
            },
        }
    }
}

/// The signal the monitor sends a carrier whose green thread ran too long: SIGRTMAX-3 (glibc
/// keeps 32 and 33, the `threads` backend's interrupt signal is SIGRTMAX-2). A program under the
/// preload cannot install a handler for it.
pub fn preempt_signal() -> i32 {
    libc::SIGRTMAX() - 3
}

/// Installs the handler, once per process (every runtime's green threads share it: the handler
/// asks the interrupted green thread's own runtime).
pub(crate) fn install() -> std::io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_preempt as *const () as usize;
        // NODEFER: a green thread switched to from inside the handler must not inherit the
        // signal blocked. RESTART: a call the signal lands in carries on.
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESTART;
        // SAFETY: installs a handler of the SA_SIGINFO type for our own reserved signal.
        if unsafe { libc::sigaction(preempt_signal(), &sa, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(())
    });
    r.map_err(std::io::Error::from_raw_os_error)
}

extern "C" fn on_preempt(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some((task, shared, c)) = current() else {
        // The carrier's own code, or another thread the signal found.
        return;
    };
    let Some(p) = shared.preempt else {
        return;
    };
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes an SA_SIGINFO handler the interrupted context, valid until the
    // handler returns.
    let pc = unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] } as usize;
    if !(p.may_preempt)(pc) {
        return;
    }
    // SAFETY: errno lives in the green thread's own TLS, which stays installed while it runs.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the predicate vouched that the interrupted code holds no borrow of the carrier's
    // local state and nothing a kernel thread waits on: a yield is as sound there as a call.
    unsafe { shared.locals[c].with(|l| l.preempted += 1) };
    task.suspend(shared, c, Suspend::Yield);
    // Resumed, perhaps on another carrier: the kernel's return from the handler restores the
    // mask and alternate stack it saved, which must be this kernel thread's, not the first one's.
    // SAFETY: as above; the frame is on the green thread's own stack, which did not move.
    unsafe {
        (*uc).uc_stack = raw::altstack();
        (&mut (*uc).uc_sigmask as *mut libc::sigset_t)
            .cast::<u64>()
            .write(raw::kernel_sigmask());
        *libc::__errno_location() = errno;
    }
}

/// The monitor: one thread per runtime with preemption on, looking at its carriers every slice
/// until the runtime shuts down.
pub(crate) fn monitor(shared: Arc<Shared>, slice: Duration) {
    let n = shared.locals.len();
    // Each carrier's resume count at the last look, if it was busy then.
    let mut last: Vec<Option<u64>> = vec![None; n];
    while !shared.shutdown.load(Ordering::Acquire) {
        std::thread::sleep(slice);
        for (c, seen) in last.iter_mut().enumerate() {
            let local = &shared.locals[c];
            let (now, tid) = (local.resumes(), local.tid());
            let busy = !shared.queues[c].is_sleeping();
            if busy && *seen == Some(now) && running(tid) {
                raw::tgkill(tid, preempt_signal());
            }
            *seen = busy.then_some(now);
        }
    }
}

/// Whether kernel thread `tid` of this process is running or runnable (state `R` in its
/// `/proc` stat): one blocked in the kernel is not spinning, and a signal would interrupt its call.
fn running(tid: i32) -> bool {
    if tid <= 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain anything.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        == Some("R")
}
