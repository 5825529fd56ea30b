//! `pthread_once`: the initializer runs exactly once; callers that come while it runs sleep
//! until it has finished.
//!
//! `pthread_once_t` is an `int`, 0 (`PTHREAD_ONCE_INIT`) until the initializer has run:
//! 1 while it runs, 2 while it runs and someone sleeps on it, 3 once done. An initializer that
//! unwinds (cancelled, `pthread_exit`, a C++ exception) leaves it 0, as if it had never been
//! called (POSIX, and glibc), and wakes the sleepers, one of which runs it then.

use std::sync::atomic::{AtomicU32, Ordering};

use libc::{EINVAL, c_int, pthread_once_t};

use super::wait::Scope;

const INCOMPLETE: u32 = 0;
const RUNNING: u32 = 1;
const WAITED: u32 = 2;
const DONE: u32 = 3;

/// While an initializer runs: if it unwinds, puts its `pthread_once_t` back to not run, waking
/// the sleepers.
struct Unrun<'a>(&'a AtomicU32);

impl Drop for Unrun<'_> {
    fn drop(&mut self) {
        if self.0.swap(INCOMPLETE, Ordering::Release) == WAITED {
            Scope::Private.wake(self.0, u32::MAX);
        }
    }
}

/// `pthread_once`: runs `init` if no call on `once` has run it yet; returns once it has run.
///
/// # Safety
/// `once` is null or points to a live `pthread_once_t`; `init` is null or a function that may be
/// called with no arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_once(
    once: *mut pthread_once_t,
    init: Option<unsafe extern "C" fn()>,
) -> c_int {
    let (false, Some(init)) = (once.is_null(), init) else {
        return EINVAL;
    };
    // SAFETY: non-null, an aligned int (the type is one), live by the caller's contract, and
    // only accessed atomically.
    let word = unsafe { AtomicU32::from_ptr(once.cast()) };
    if word.load(Ordering::Acquire) == DONE {
        return 0;
    }
    loop {
        match word.compare_exchange(INCOMPLETE, RUNNING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: the same function with the platform's C calling convention, called in
                // the one that lets it unwind (the C type is the ABI's, and C++ exceptions and
                // cancellation may unwind through C).
                let init = unsafe {
                    std::mem::transmute::<unsafe extern "C" fn(), unsafe extern "C-unwind" fn()>(
                        init,
                    )
                };
                let unrun = Unrun(word);
                // SAFETY: by the caller's contract.
                unsafe { init() };
                std::mem::forget(unrun);
                if word.swap(DONE, Ordering::Release) == WAITED {
                    Scope::Private.wake(word, u32::MAX);
                }
                return 0;
            }
            Err(DONE) => return 0,
            Err(s) => {
                if s == RUNNING
                    && word
                        .compare_exchange(RUNNING, WAITED, Ordering::Relaxed, Ordering::Relaxed)
                        .is_err()
                {
                    continue;
                }
                // Woken or changed: look again (no deadline, so no time-out).
                let _ = Scope::Private.wait(word, WAITED, None);
            }
        }
    }
}
