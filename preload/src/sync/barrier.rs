//! `pthread_barrier_*`: barriers, process-private or process-shared.
//!
//! Layout, inside glibc's 32-byte `pthread_barrier_t` (which has no static initializer):
//!
//! ```text
//! offset  field
//! 0       count    threads per round
//! 4       arrived  threads arrived in the current round
//! 8       round    the futex word: bumped when a round completes
//! 12      shared   non-zero if process-shared
//! 16      inside   threads inside pthread_barrier_wait (bit 31: a destroyer waits for them)
//! 20..32  unused
//! ```
//!
//! A thread reads `round`, then counts itself in `arrived`. The last one of the round (the one
//! that makes `arrived` reach `count`) resets `arrived`, bumps `round`, wakes every sleeper and
//! returns `PTHREAD_BARRIER_SERIAL_THREAD`; the others sleep until `round` moves and return 0. A
//! thread cannot arrive for the next round before the one it read completes (it needs every
//! thread of it), and it is released only after the reset of `arrived`. Threads leave `inside`
//! last, so `pthread_barrier_destroy` can wait for the released ones to be gone: the serial
//! thread may destroy the barrier at once, as POSIX allows.

use std::sync::atomic::{AtomicU32, Ordering};

use libc::{
    EBUSY, EINVAL, PTHREAD_BARRIER_SERIAL_THREAD, c_int, c_uint, pthread_barrier_t,
    pthread_barrierattr_t,
};

use super::attr::BarrierAttr;
use super::wait::Scope;
use super::{Inside, view};

/// A `pthread_barrier_t` (module doc).
#[repr(C)]
struct Barrier {
    count: AtomicU32,
    arrived: AtomicU32,
    round: AtomicU32,
    shared: AtomicU32,
    inside: AtomicU32,
    _unused: [u8; 12],
}

impl Barrier {
    fn scope(&self) -> Scope {
        Scope::new(self.shared.load(Ordering::Relaxed) != 0)
    }

    fn wait(&self) -> c_int {
        let scope = self.scope();
        let inside = Inside::new(&self.inside, scope);
        inside.enter();
        let round = self.round.load(Ordering::Acquire);
        let arrived = self.arrived.fetch_add(1, Ordering::AcqRel) + 1;
        let r = if arrived == self.count.load(Ordering::Relaxed) {
            self.arrived.store(0, Ordering::Relaxed);
            self.round.fetch_add(1, Ordering::Release);
            scope.wake(&self.round, u32::MAX);
            PTHREAD_BARRIER_SERIAL_THREAD
        } else {
            while self.round.load(Ordering::Acquire) == round {
                // Woken or changed: look again (no deadline, so no time-out).
                let _ = scope.wait(&self.round, round, None);
            }
            0
        };
        inside.leave();
        r
    }
}

/// Views a `pthread_barrier_t`.
///
/// # Safety
/// `b` is null or points to a live `pthread_barrier_t`.
unsafe fn barrier<'a>(b: *const pthread_barrier_t) -> Option<&'a Barrier> {
    // SAFETY: by the caller's contract; the object's words are only accessed atomically.
    unsafe { view(b) }
}

/// `pthread_barrier_init`: a barrier for `count` threads per round (`EINVAL` if 0 or above
/// `INT_MAX`), process-shared if `attr` says so.
///
/// # Safety
/// `b` points to writable memory for a `pthread_barrier_t` that no other thread uses; `attr` is
/// null or points to an initialised attribute object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_barrier_init(
    b: *mut pthread_barrier_t,
    attr: *const pthread_barrierattr_t,
    count: c_uint,
) -> c_int {
    // SAFETY: by the caller's contract.
    let (Some(b), attr) = (unsafe { barrier(b) }, unsafe {
        view::<_, BarrierAttr>(attr)
    }) else {
        return EINVAL;
    };
    if count == 0 || count > c_int::MAX as c_uint {
        return EINVAL;
    }
    b.count.store(count, Ordering::Relaxed);
    b.arrived.store(0, Ordering::Relaxed);
    b.round.store(0, Ordering::Relaxed);
    b.shared
        .store(attr.map_or(0, |a| a.pshared as u32), Ordering::Relaxed);
    b.inside.store(0, Ordering::Relaxed);
    0
}

/// `pthread_barrier_destroy`: `EBUSY` if threads are waiting in the current round; otherwise
/// waits for the threads already released to leave.
///
/// # Safety
/// `b` is null or points to a live `pthread_barrier_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_barrier_destroy(b: *mut pthread_barrier_t) -> c_int {
    // SAFETY: by the caller's contract.
    let Some(b) = (unsafe { barrier(b) }) else {
        return EINVAL;
    };
    if b.arrived.load(Ordering::Acquire) != 0 {
        return EBUSY;
    }
    Inside::new(&b.inside, b.scope()).drain();
    0
}

/// `pthread_barrier_wait`: `PTHREAD_BARRIER_SERIAL_THREAD` for exactly one thread of each
/// round, 0 for the others.
///
/// # Safety
/// `b` is null or points to a live `pthread_barrier_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_barrier_wait(b: *mut pthread_barrier_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { barrier(b) }.map_or(EINVAL, Barrier::wait)
}
