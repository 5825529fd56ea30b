//! `sem_init`, `sem_destroy`, `sem_wait`, `sem_trywait`, `sem_timedwait`, `sem_clockwait`,
//! `sem_post`, `sem_getvalue`: unnamed semaphores, process-private or process-shared. (The
//! named ones, `sem_open` and co, stay glibc's: they are only a shared mapping of a `sem_t`,
//! whose waits are glibc's own.) Failures set `errno` and return -1, as POSIX says.
//!
//! Layout, inside glibc's 32-byte `sem_t`:
//!
//! ```text
//! offset  field
//! 0       value    the futex word: bits 0..31 the count, bit 31 "sleepers may exist"
//! 4       waiters  threads in the slow path of a wait
//! 8       shared   non-zero if process-shared
//! 12..32  unused
//! ```
//!
//! A post is one compare-and-swap incrementing the count; if it found the sleepers bit it wakes
//! one sleeper, by address only. So its last access to the semaphore is that atomic operation,
//! and a waiter that took the token may destroy the semaphore at once (glibc bug 12674's case).
//! A wait takes a token with one compare-and-swap if there is one. Otherwise it registers in
//! `waiters`, sets the bit and sleeps while the word is exactly "bit set, count 0", taking a
//! token when one appears. When it is done (token or time-out) and believes it is the last
//! waiter, it clears the bit; if the decrement of `waiters` then shows it was wrong, it sets the
//! bit again and wakes as many sleepers as there are tokens (glibc's 32-bit scheme): a sleeper
//! never stays asleep with tokens left because the bit was cleared under it.
//!
//! `sem_wait`, `sem_timedwait` and `sem_clockwait` are cancellation points on green threads when
//! they have to wait (as glibc's, whose fast path is not one): a request pending then acts; one
//! that comes during the wait wakes it ([`cancellable`]) and acts once the waiter has left.
//!
//! Limit: POSIX makes `sem_post` async-signal-safe. Here it is when it wakes nobody (one
//! compare-and-swap), or on an OS thread for a process-shared semaphore (a raw `FUTEX_WAKE`);
//! waking a sleeper of a private one takes a lock of the futex table, which a signal handler must
//! not take while the thread it interrupted holds it.

use std::sync::atomic::{AtomicU32, Ordering};

use libc::{CLOCK_REALTIME, EAGAIN, EINVAL, EOVERFLOW, c_int, c_uint, clockid_t, sem_t, timespec};

use super::time::Timeout;
use super::view;
use super::wait::{Scope, Stop, cancellable, cancellation_point};

/// `value`'s bit: sleepers may exist.
const SLEEPERS: u32 = 1 << 31;
/// `value`'s count bits.
const COUNT: u32 = !SLEEPERS;
/// `SEM_VALUE_MAX`.
const VALUE_MAX: u32 = c_int::MAX as u32;

/// A `sem_t` (module doc).
#[repr(C)]
struct Sem {
    value: AtomicU32,
    waiters: AtomicU32,
    shared: AtomicU32,
    _unused: [u8; 20],
}

impl Sem {
    fn scope(&self) -> Scope {
        Scope::new(self.shared.load(Ordering::Relaxed) != 0)
    }

    /// Takes a token if there is one (keeping the sleepers bit as it is).
    fn try_take(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v & COUNT != 0 {
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(cur) => v = cur,
            }
        }
        false
    }

    /// `sem_wait`, `sem_timedwait`, `sem_clockwait`.
    fn wait(&self, timeout: Timeout) -> Result<(), c_int> {
        if self.try_take() {
            return Ok(());
        }
        cancellation_point();
        let deadline = timeout.deadline()?;
        let scope = self.scope();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let r = loop {
            let v = self.value.load(Ordering::SeqCst);
            if v & COUNT != 0 {
                if self
                    .value
                    .compare_exchange(v, v - 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    break Ok(());
                }
                continue;
            }
            if v != SLEEPERS
                && self
                    .value
                    .compare_exchange(v, SLEEPERS, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            match cancellable(&self.value, || {
                scope.wait_signalled(&self.value, SLEEPERS, deadline)
            }) {
                Some(Ok(())) => {}
                Some(Err(Stop::TimedOut)) => break Err(libc::ETIMEDOUT),
                // A handler ran that does not restart the wait.
                Some(Err(Stop::Interrupted)) => break Err(libc::EINTR),
                // A cancellation request: it acts once this thread has left.
                None => break Err(libc::EINTR),
            }
        };
        self.stop_waiting(scope);
        if r == Err(libc::EINTR) {
            cancellation_point();
        }
        r
    }

    /// Leaves the slow path: clears the sleepers bit if the caller seems to be the last waiter,
    /// and repairs the guess if it was wrong (module doc).
    fn stop_waiting(&self, scope: Scope) {
        let alone = self.waiters.load(Ordering::SeqCst) == 1;
        if alone {
            self.value.fetch_and(COUNT, Ordering::SeqCst);
        }
        let before = self.waiters.fetch_sub(1, Ordering::SeqCst);
        if alone && before > 1 {
            let tokens = self.value.fetch_or(SLEEPERS, Ordering::SeqCst) & COUNT;
            if tokens != 0 {
                scope.wake(&self.value, tokens);
            }
        }
    }

    /// `sem_post`.
    fn post(&self) -> Result<(), c_int> {
        // Read before the increment: afterwards the semaphore may be gone.
        let scope = self.scope();
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            if v & COUNT == VALUE_MAX {
                return Err(EOVERFLOW);
            }
            match self
                .value
                .compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(cur) => v = cur,
            }
        }
        if v & SLEEPERS != 0 {
            scope.wake(&self.value, 1);
        }
        Ok(())
    }
}

/// Views a `sem_t`.
///
/// # Safety
/// `s` is null or points to a live `sem_t`.
unsafe fn sem<'a>(s: *const sem_t) -> Option<&'a Sem> {
    // SAFETY: by the caller's contract; the object's words are only accessed atomically.
    unsafe { view(s) }
}

/// Turns a result into the semaphore functions' return: 0, or -1 with `errno` set.
fn ret(r: Result<(), c_int>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: the calling thread's errno (its own, on a green thread with its own TLS).
            unsafe { *libc::__errno_location() = e };
            -1
        }
    }
}

/// Runs `f` on the semaphore at `s` (`EINVAL` if null), as a semaphore function returns.
///
/// # Safety
/// `s` is null or points to a live `sem_t`.
unsafe fn with(s: *mut sem_t, f: impl FnOnce(&Sem) -> Result<(), c_int>) -> c_int {
    // SAFETY: by the caller's contract.
    ret(unsafe { sem(s) }.map_or(Err(EINVAL), f))
}

/// `sem_init`: a semaphore with count `value` (`EINVAL` above `SEM_VALUE_MAX`), process-shared
/// if `pshared` is non-zero.
///
/// # Safety
/// `s` is null or points to writable memory for a `sem_t` that no other thread uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_init(s: *mut sem_t, pshared: c_int, value: c_uint) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe {
        with(s, |s| {
            if value > VALUE_MAX {
                return Err(EINVAL);
            }
            s.value.store(value, Ordering::Relaxed);
            s.waiters.store(0, Ordering::Relaxed);
            s.shared.store(u32::from(pshared != 0), Ordering::Relaxed);
            Ok(())
        })
    }
}

/// `sem_destroy`.
///
/// # Safety
/// `s` is null or points to a `sem_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_destroy(s: *mut sem_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { with(s, |_| Ok(())) }
}

/// `sem_wait`: takes a token, sleeping until there is one.
///
/// # Safety
/// `s` is null or points to a live `sem_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn sem_wait(s: *mut sem_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { with(s, |s| s.wait(Timeout::Never)) }
}

/// `sem_trywait`: `EAGAIN` if there is no token.
///
/// # Safety
/// `s` is null or points to a live `sem_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_trywait(s: *mut sem_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { with(s, |s| if s.try_take() { Ok(()) } else { Err(EAGAIN) }) }
}

/// `sem_timedwait`: as `sem_wait`, giving up with `ETIMEDOUT` at `abstime` on `CLOCK_REALTIME`
/// (`EINVAL` for a `tv_nsec` out of range, checked only if the call would sleep).
///
/// # Safety
/// `s` is null or points to a live `sem_t`; `abstime` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn sem_timedwait(s: *mut sem_t, abstime: *const timespec) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { sem_clockwait(s, CLOCK_REALTIME, abstime) }
}

/// `sem_clockwait`: as `sem_timedwait`, on `clock` (`CLOCK_REALTIME` or `CLOCK_MONOTONIC`,
/// else `EINVAL`).
///
/// # Safety
/// `s` is null or points to a live `sem_t`; `abstime` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn sem_clockwait(
    s: *mut sem_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: by the caller's contract.
    let timeout = match unsafe { Timeout::on_clock(clock, abstime) } {
        Ok(t) => t,
        Err(e) => return ret(Err(e)),
    };
    // SAFETY: by the caller's contract.
    unsafe { with(s, |s| s.wait(timeout)) }
}

/// `sem_post`: adds a token, waking a sleeper if there may be one; `EOVERFLOW` at
/// `SEM_VALUE_MAX`.
///
/// # Safety
/// `s` is null or points to a live `sem_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_post(s: *mut sem_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { with(s, Sem::post) }
}

/// `sem_getvalue`: the count (never negative: sleepers are not counted).
///
/// # Safety
/// `s` is null or points to a live `sem_t`; `sval` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sem_getvalue(s: *mut sem_t, sval: *mut c_int) -> c_int {
    // SAFETY: null or writable, by the caller's contract.
    let out = unsafe { sval.as_mut() };
    // SAFETY: by the caller's contract.
    unsafe {
        with(s, |s| {
            *out.ok_or(EINVAL)? = (s.value.load(Ordering::Relaxed) & COUNT) as c_int;
            Ok(())
        })
    }
}
