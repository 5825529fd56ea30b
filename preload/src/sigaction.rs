//! `sigaction` and `signal`: the application's actions, with two signals kept for the library.
//!
//! - SIGSEGV and SIGBUS: once the runtime has put its stack-overflow handler on them, an
//!   application's action becomes the one that handler passes other faults to
//!   (`flexsc_threads::overflow::set_chained`), so a green thread's overflow is still reported
//!   by name and every other fault still reaches the application's handler.
//! - The interrupt signal (SIGRTMAX-2, `flexsc_threads::kmod::backend::threads::interrupt_signal`)
//!   interrupts system calls blocked on syscall threads, and the preemption signal (SIGRTMAX-3,
//!   `flexsc_threads::preempt_signal`) makes a green thread that keeps its carrier yield; an
//!   application's action for either is refused with `EINVAL` and one line on stderr, as glibc
//!   refuses its own internal signals.
//!
//! glibc's `signal`, `bsd_signal` and `sysv_signal` call its `sigaction` directly; `signal` and
//! `bsd_signal` are exported here with BSD semantics (glibc's: `SA_RESTART`, the signal blocked
//! in its handler) so they go through the same rules.

use std::sync::atomic::{AtomicBool, Ordering};

use flexsc_threads::kmod::backend::threads::interrupt_signal;
use flexsc_threads::preempt_signal;
use libc::c_int;

use crate::{real, rt};

/// `sigaction`: see the module docs.
///
/// # Safety
/// As `sigaction(2)`: `act` null or valid, `old` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    if rt::application_caller() {
        if (sig == interrupt_signal() || sig == preempt_signal()) && !act.is_null() {
            refuse_once(sig);
            crate::io::set_errno(libc::EINVAL);
            return -1;
        }
        // SAFETY: the caller's contract: `act` and `old` null or valid.
        let (new, prev) = unsafe { (act.as_ref(), old.as_mut()) };
        if flexsc_threads::overflow::set_chained(sig, new, prev) {
            return 0;
        }
    }
    // SAFETY: forwarded unchanged.
    unsafe { real::sigaction()(sig, act, old) }
}

/// `signal` (glibc's is `bsd_signal`): `SA_RESTART`, the signal blocked while its handler runs.
///
/// # Safety
/// As `signal(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: the caller's contract.
    unsafe { bsd_signal(sig, handler) }
}

/// `bsd_signal`: see [`signal`].
///
/// # Safety
/// As `signal(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if handler == libc::SIG_ERR || !(1..=64).contains(&sig) {
        crate::io::set_errno(libc::EINVAL);
        return libc::SIG_ERR;
    }
    // SAFETY: zeroed sigactions are valid; sigemptyset/sigaddset write the one we own.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        let mut old: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaddset(&mut act.sa_mask, sig);
        if sigaction(sig, &act, &mut old) != 0 {
            return libc::SIG_ERR;
        }
        old.sa_sigaction
    }
}

fn refuse_once(sig: c_int) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        let what = if sig == preempt_signal() {
            "(SIGRTMAX-3) preempts green threads"
        } else {
            "(SIGRTMAX-2) interrupts the library's blocked system calls"
        };
        let msg = format!("libflexsc: sigaction({sig}) refused: signal {sig} {what}\n");
        // SAFETY: writes our own buffer to stderr.
        unsafe { real::write()(2, msg.as_ptr().cast(), msg.len()) };
    }
}
