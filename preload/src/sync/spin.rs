//! `pthread_spin_*`: spin locks that spin briefly, then yield: a green thread to the other
//! green threads of its carrier (one of which may hold the lock), an OS thread to the kernel.
//!
//! The lock is glibc's `int`: 0 free, 1 held (so zeroed memory is a free lock). Taking a free
//! lock is one swap; a waiter then polls with plain loads (test-and-test-and-set). Nothing
//! sleeps on the word, so a process-shared spin lock is the same as a private one.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicI32, Ordering};

use libc::{EBUSY, EINVAL, c_int, pthread_spinlock_t};

/// Polls of the word between two yields.
const SPINS: u32 = 100;

/// Views a `pthread_spinlock_t`.
///
/// # Safety
/// `l` is null or points to a live `pthread_spinlock_t`.
unsafe fn spin<'a>(l: *mut pthread_spinlock_t) -> Option<&'a AtomicI32> {
    if l.is_null() {
        return None;
    }
    // SAFETY: non-null, an aligned int (the type is one), live by the caller's contract, and
    // only accessed atomically.
    Some(unsafe { AtomicI32::from_ptr(l) })
}

/// `pthread_spin_init`: a free lock (`pshared` makes no difference).
///
/// # Safety
/// `l` is null or points to writable memory for a `pthread_spinlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_spin_init(l: *mut pthread_spinlock_t, _pshared: c_int) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { spin(l) }.map_or(EINVAL, |l| {
        l.store(0, Ordering::Relaxed);
        0
    })
}

/// `pthread_spin_destroy`.
///
/// # Safety
/// `l` is null or points to a `pthread_spinlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_spin_destroy(l: *mut pthread_spinlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { spin(l) }.map_or(EINVAL, |_| 0)
}

/// `pthread_spin_lock`: spins, yielding between rounds, until the lock is the caller's.
///
/// # Safety
/// `l` is null or points to a live `pthread_spinlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_spin_lock(l: *mut pthread_spinlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    let Some(l) = (unsafe { spin(l) }) else {
        return EINVAL;
    };
    while l.swap(1, Ordering::Acquire) != 0 {
        let mut spins = 0;
        while l.load(Ordering::Relaxed) != 0 {
            if spins == SPINS {
                flexsc_threads::yield_now();
                spins = 0;
            }
            spin_loop();
            spins += 1;
        }
    }
    0
}

/// `pthread_spin_trylock`: `EBUSY` if the lock is held.
///
/// # Safety
/// `l` is null or points to a live `pthread_spinlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_spin_trylock(l: *mut pthread_spinlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { spin(l) }.map_or(EINVAL, |l| {
        if l.swap(1, Ordering::Acquire) == 0 {
            0
        } else {
            EBUSY
        }
    })
}

/// `pthread_spin_unlock`.
///
/// # Safety
/// `l` is null or points to a live `pthread_spinlock_t` the caller holds.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_spin_unlock(l: *mut pthread_spinlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { spin(l) }.map_or(EINVAL, |l| {
        l.store(0, Ordering::Release);
        0
    })
}
