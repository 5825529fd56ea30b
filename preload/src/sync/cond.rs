//! `pthread_cond_*`: condition variables on a sequence number, with `CLOCK_REALTIME` or
//! `CLOCK_MONOTONIC` deadlines, process-private or process-shared.
//!
//! Layout, inside glibc's 48-byte `pthread_cond_t` (`PTHREAD_COND_INITIALIZER` is all zeroes,
//! which is a realtime, process-private condition variable without waiters here):
//!
//! ```text
//! offset  field
//! 0       seq      the futex word: bumped by every signal or broadcast that finds waiters
//! 4       waiters  threads inside a wait (bit 31: a destroyer waits for them to leave)
//! 8       flags    bit 0 process-shared, bits 1.. the clock of timedwait (as a condattr)
//! 12..48  unused
//! ```
//!
//! A waiter counts itself in, reads `seq`, releases the mutex and sleeps while `seq` is
//! unchanged; a signal bumps `seq` and wakes one sleeper, a broadcast all. Any signal after the
//! waiter released the mutex changes `seq`, so the waiter either is asleep and woken, or finds
//! `seq` changed and does not sleep: no wake-up is lost. A signal that finds no waiter counted
//! does nothing (one load): a thread that had not counted itself in still held the mutex, so it
//! was not yet waiting (both counts and reads are sequentially consistent).
//!
//! A waiter leaves the count before taking the mutex back, its last access to the condition
//! variable; `pthread_cond_destroy` waits for the count to drain, so a condition variable can be
//! destroyed as soon as its waiters have been woken, as POSIX allows.
//!
//! The waits are cancellation points on green threads: a request pending on entry acts at once
//! (the caller holds the mutex); one that comes during the wait wakes it ([`cancellable`]), and
//! acts once the waiter holds the mutex again, before its cleanup handlers run, as POSIX says.

use std::sync::atomic::{AtomicU32, Ordering};

use libc::{
    CLOCK_MONOTONIC, CLOCK_REALTIME, EINVAL, ETIMEDOUT, c_int, clockid_t, pthread_cond_t,
    pthread_condattr_t, pthread_mutex_t, timespec,
};

use super::attr::{COND_CLOCK_SHIFT, COND_PSHARED, CondAttr};
use super::mutex::{Mutex, mutex};
use super::time::Timeout;
use super::wait::{Scope, cancellable, cancellation_point};
use super::{Inside, view};

/// A `pthread_cond_t` (module doc).
#[repr(C)]
struct Cond {
    seq: AtomicU32,
    waiters: AtomicU32,
    flags: AtomicU32,
    _unused: [u8; 36],
}

impl Cond {
    fn scope(&self) -> Scope {
        Scope::new(self.flags.load(Ordering::Relaxed) & COND_PSHARED != 0)
    }

    fn inside(&self) -> Inside<'_> {
        Inside::new(&self.waiters, self.scope())
    }

    /// The clock of `pthread_cond_timedwait`'s deadlines.
    fn clock(&self) -> clockid_t {
        if self.flags.load(Ordering::Relaxed) >> COND_CLOCK_SHIFT == CLOCK_MONOTONIC as u32 {
            CLOCK_MONOTONIC
        } else {
            CLOCK_REALTIME
        }
    }

    /// Releases `m`, waits for a signal (or the deadline), takes `m` back; a cancellation point.
    fn wait(&self, m: &Mutex, timeout: Timeout) -> c_int {
        cancellation_point();
        let deadline = match timeout.deadline() {
            Ok(d) => d,
            Err(e) => return e,
        };
        let inside = self.inside();
        inside.enter();
        let seq = self.seq.load(Ordering::SeqCst);
        let held = match m.unlock_for_wait() {
            Ok(h) => h,
            Err(e) => {
                inside.leave();
                return e;
            }
        };
        // Cut short by a cancellation request: a wake-up like any other, until `point` below.
        let waited = cancellable(&self.seq, || inside.scope.wait(&self.seq, seq, deadline))
            .unwrap_or(Ok(()));
        inside.leave();
        m.relock(held);
        cancellation_point();
        if waited.is_err() { ETIMEDOUT } else { 0 }
    }

    /// Wakes up to `n` waiters.
    fn wake(&self, n: u32) -> c_int {
        let inside = self.inside();
        if inside.count() != 0 {
            self.seq.fetch_add(1, Ordering::SeqCst);
            inside.scope.wake(&self.seq, n);
        }
        0
    }
}

/// Views a `pthread_cond_t`.
///
/// # Safety
/// `c` is null or points to a live `pthread_cond_t`.
unsafe fn cond<'a>(c: *const pthread_cond_t) -> Option<&'a Cond> {
    // SAFETY: by the caller's contract; the object's words are only accessed atomically.
    unsafe { view(c) }
}

/// `pthread_cond_init`: with `attr`'s clock and process-shared setting (the defaults,
/// `CLOCK_REALTIME` and private, if `attr` is null).
///
/// # Safety
/// `c` points to writable memory for a `pthread_cond_t` that no other thread uses; `attr` is
/// null or points to an initialised attribute object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_init(
    c: *mut pthread_cond_t,
    attr: *const pthread_condattr_t,
) -> c_int {
    // SAFETY: by the caller's contract.
    let (Some(c), attr) = (unsafe { cond(c) }, unsafe { view::<_, CondAttr>(attr) }) else {
        return EINVAL;
    };
    c.seq.store(0, Ordering::Relaxed);
    c.waiters.store(0, Ordering::Relaxed);
    c.flags
        .store(attr.map_or(0, CondAttr::cond_flags), Ordering::Relaxed);
    0
}

/// `pthread_cond_destroy`: waits until the threads it woke have left their waits (a thread
/// still waiting unwoken is the caller's error, and is waited for too, as with glibc).
///
/// # Safety
/// `c` is null or points to a live `pthread_cond_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_destroy(c: *mut pthread_cond_t) -> c_int {
    // SAFETY: by the caller's contract.
    let Some(c) = (unsafe { cond(c) }) else {
        return EINVAL;
    };
    c.inside().drain();
    0
}

/// `pthread_cond_wait`: `EPERM` (without waiting) if `m` is an error-checking or recursive mutex
/// the caller does not hold. A recursive mutex is released whatever its depth and restored.
///
/// # Safety
/// `c` and `m` are null or point to live objects of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_cond_wait(
    c: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
) -> c_int {
    // SAFETY: by the caller's contract.
    match unsafe { (cond(c), mutex(m)) } {
        (Some(c), Some(m)) => c.wait(m, Timeout::Never),
        _ => EINVAL,
    }
}

/// `pthread_cond_timedwait`: as `pthread_cond_wait`, until `abstime` on the condition variable's
/// clock: `ETIMEDOUT` then (with the mutex held again), `EINVAL` for a `tv_nsec` out of range.
///
/// # Safety
/// `c` and `m` are null or point to live objects of their types; `abstime` is null or
/// readable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_cond_timedwait(
    c: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: by the caller's contract.
    match unsafe { (cond(c), mutex(m)) } {
        // SAFETY: by the caller's contract.
        (Some(c), Some(m)) => c.wait(m, unsafe { Timeout::at(c.clock(), abstime) }),
        _ => EINVAL,
    }
}

/// `pthread_cond_clockwait`: as `pthread_cond_timedwait`, on `clock` (`CLOCK_REALTIME` or
/// `CLOCK_MONOTONIC`, else `EINVAL`).
///
/// # Safety
/// `c` and `m` are null or point to live objects of their types; `abstime` is null or
/// readable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_cond_clockwait(
    c: *mut pthread_cond_t,
    m: *mut pthread_mutex_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: by the caller's contract.
    let timeout = match unsafe { Timeout::on_clock(clock, abstime) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    // SAFETY: by the caller's contract.
    match unsafe { (cond(c), mutex(m)) } {
        (Some(c), Some(m)) => c.wait(m, timeout),
        _ => EINVAL,
    }
}

/// `pthread_cond_signal`: wakes one waiter, if any.
///
/// # Safety
/// `c` is null or points to a live `pthread_cond_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_signal(c: *mut pthread_cond_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { cond(c) }.map_or(EINVAL, |c| c.wake(1))
}

/// `pthread_cond_broadcast`: wakes every waiter.
///
/// # Safety
/// `c` is null or points to a live `pthread_cond_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_cond_broadcast(c: *mut pthread_cond_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { cond(c) }.map_or(EINVAL, |c| c.wake(u32::MAX))
}
