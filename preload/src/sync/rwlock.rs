//! `pthread_rwlock_*`: read-write locks, reader-preferring (the default, and
//! `PTHREAD_RWLOCK_PREFER_WRITER_NP`, as in glibc) or writer-preferring
//! (`PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`), process-private or process-shared.
//!
//! Layout, in glibc's 56-byte `struct __pthread_rwlock_arch_t` (its static initializers zero
//! everything but `__flags`, the kind):
//!
//! ```text
//! offset  glibc field           here
//! 0       __readers             state: bits 0..30 the readers, or 2^30-1 write-locked;
//!                               bit 30 readers wait, bit 31 writers wait (futex of readers)
//! 4       __writers             writer_seq: bumped to wake a writer (futex of writers)
//! 16      __pad3, __pad4        the write owner's identity (for EDEADLK), 64 bits
//! 28      __shared              non-zero if process-shared
//! 48      __flags               the kind (PTHREAD_RWLOCK_PREFER_*_NP)
//! ```
//!
//! Taking a free lock is one compare-and-swap on `state`. A reader that cannot take it sets the
//! readers-waiting bit and sleeps on `state`; a writer sets the writers-waiting bit and sleeps on
//! `writer_seq` (read before re-checking `state`, so a wake between the two is seen). A reader
//! takes the lock whenever it is not write-locked; in writer-preferring mode, not while either
//! waiting bit is set either (so recursive read locks can deadlock there, as in glibc).
//!
//! The unlock that leaves no holder, if a waiting bit is set, hands over: first to one writer
//! (clearing its bit and bumping `writer_seq`; a writer that slept sets the bit again when it
//! takes the lock, for the others), else, if no writer was asleep, to every reader (clearing
//! theirs). A waiter that times out leaves its bit set: the next handover then wakes nobody,
//! and moves on.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use libc::{
    CLOCK_REALTIME, EAGAIN, EBUSY, EDEADLK, EINVAL, EPERM, ETIMEDOUT, c_int, clockid_t,
    pthread_rwlock_t, pthread_rwlockattr_t, timespec,
};

use super::attr::RwLockAttr;
use super::time::Timeout;
use super::wait::Scope;
use super::{identity, view};

/// `PTHREAD_RWLOCK_PREFER_READER_NP` (glibc's value; the libc crate has it for few targets).
pub(crate) const PREFER_READER: c_int = 0;
/// `PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`: the only writer-preferring kind, as in glibc
/// (`PTHREAD_RWLOCK_PREFER_WRITER_NP`, 1, still lets readers in while a writer waits).
pub(crate) const PREFER_WRITER_NONRECURSIVE: c_int = 2;

/// `state`'s holder bits.
const MASK: u32 = (1 << 30) - 1;
/// `state`'s holder bits when a writer holds the lock.
const WRITE_LOCKED: u32 = MASK;
/// The most readers at once.
const MAX_READERS: u32 = MASK - 1;
/// Readers sleep on `state`.
const READERS_WAITING: u32 = 1 << 30;
/// Writers sleep on `writer_seq`.
const WRITERS_WAITING: u32 = 1 << 31;

/// A `pthread_rwlock_t` (module doc).
#[repr(C)]
struct RwLock {
    state: AtomicU32,
    writer_seq: AtomicU32,
    _glibc_futexes: [u8; 8],
    writer: AtomicU64,
    _cur_writer: [u8; 4],
    shared: AtomicU32,
    _elision: [u8; 16],
    kind: AtomicU32,
    _tail: [u8; 4],
}

const _: () = assert!(std::mem::offset_of!(RwLock, shared) == 28);
const _: () = assert!(std::mem::offset_of!(RwLock, kind) == 48);

/// Whether a reader may take the lock in `state` `s`.
fn readable(s: u32, prefer_writers: bool) -> bool {
    s & MASK < MAX_READERS && !(prefer_writers && s & (READERS_WAITING | WRITERS_WAITING) != 0)
}

impl RwLock {
    fn scope(&self) -> Scope {
        Scope::new(self.shared.load(Ordering::Relaxed) != 0)
    }

    fn prefers_writers(&self) -> bool {
        self.kind.load(Ordering::Relaxed) == PREFER_WRITER_NONRECURSIVE as u32
    }

    /// Takes a read lock if a reader may: `EBUSY` if not, `EAGAIN` if there are too many.
    fn try_read(&self, prefer_writers: bool) -> c_int {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if !readable(s, prefer_writers) {
                return if s & MASK == MAX_READERS {
                    EAGAIN
                } else {
                    EBUSY
                };
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return 0,
                Err(cur) => s = cur,
            }
        }
    }

    /// Takes the write lock if nobody holds the lock: `EBUSY` if somebody does.
    fn try_write(&self, me: u64) -> c_int {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & MASK != 0 {
                return EBUSY;
            }
            match self.state.compare_exchange_weak(
                s,
                s | WRITE_LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.writer.store(me, Ordering::Relaxed);
                    return 0;
                }
                Err(cur) => s = cur,
            }
        }
    }

    /// Whether the caller holds the write lock.
    fn writing(&self, me: u64) -> bool {
        self.state.load(Ordering::Relaxed) & MASK == WRITE_LOCKED
            && self.writer.load(Ordering::Relaxed) == me
    }

    /// `pthread_rwlock_rdlock`, `timedrdlock` and `clockrdlock`.
    fn read(&self, timeout: Timeout) -> c_int {
        let prefer_writers = self.prefers_writers();
        match self.try_read(prefer_writers) {
            EBUSY => {}
            r => return r,
        }
        let scope = self.scope();
        if self.writing(identity(scope)) {
            return EDEADLK;
        }
        let deadline = match timeout.deadline() {
            Ok(d) => d,
            Err(e) => return e,
        };
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if readable(s, prefer_writers) {
                if self
                    .state
                    .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return 0;
                }
                continue;
            }
            if s & MASK == MAX_READERS {
                return EAGAIN;
            }
            let waiting = s | READERS_WAITING;
            if s != waiting
                && self
                    .state
                    .compare_exchange_weak(s, waiting, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if scope.wait(&self.state, waiting, deadline).is_err() {
                return ETIMEDOUT;
            }
        }
    }

    /// `pthread_rwlock_wrlock`, `timedwrlock` and `clockwrlock`.
    fn write(&self, timeout: Timeout) -> c_int {
        let scope = self.scope();
        let me = identity(scope);
        match self.try_write(me) {
            EBUSY => {}
            r => return r,
        }
        if self.writing(me) {
            return EDEADLK;
        }
        let deadline = match timeout.deadline() {
            Ok(d) => d,
            Err(e) => return e,
        };
        // Once this writer has slept, others may be asleep too: it keeps their bit set.
        let mut others = 0;
        loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & MASK == 0 {
                if self
                    .state
                    .compare_exchange_weak(
                        s,
                        s | WRITE_LOCKED | others,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    self.writer.store(me, Ordering::Relaxed);
                    return 0;
                }
                continue;
            }
            if s & WRITERS_WAITING == 0
                && self
                    .state
                    .compare_exchange_weak(
                        s,
                        s | WRITERS_WAITING,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                continue;
            }
            others = WRITERS_WAITING;
            // Read the sequence before re-checking the state: a handover after the re-check
            // bumps it (Release, after clearing the bit), and the wait then does not sleep.
            let seq = self.writer_seq.load(Ordering::Acquire);
            let s = self.state.load(Ordering::Relaxed);
            if s & MASK == 0 || s & WRITERS_WAITING == 0 {
                continue;
            }
            if scope.wait(&self.writer_seq, seq, deadline).is_err() {
                return ETIMEDOUT;
            }
        }
    }

    /// `pthread_rwlock_unlock`: `EPERM` if nobody holds the lock.
    fn unlock(&self) -> c_int {
        let scope = self.scope();
        let held = self.state.load(Ordering::Relaxed) & MASK;
        let s = if held == WRITE_LOCKED {
            self.writer.store(0, Ordering::Relaxed);
            self.state.fetch_sub(WRITE_LOCKED, Ordering::Release) - WRITE_LOCKED
        } else if held == 0 {
            return EPERM;
        } else {
            self.state.fetch_sub(1, Ordering::Release) - 1
        };
        if s & MASK == 0 && s & (READERS_WAITING | WRITERS_WAITING) != 0 {
            self.hand_over(scope, s);
        }
        0
    }

    /// Wakes the waiters of a lock left free in state `s` (module doc).
    fn hand_over(&self, scope: Scope, mut s: u32) {
        loop {
            if s & MASK != 0 || s & (READERS_WAITING | WRITERS_WAITING) == 0 {
                // Taken again (its unlock hands over), or nobody waits.
                return;
            }
            let writer = s & WRITERS_WAITING != 0;
            let next = if writer {
                s & !WRITERS_WAITING
            } else {
                s & !READERS_WAITING
            };
            if let Err(cur) =
                self.state
                    .compare_exchange(s, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                s = cur;
                continue;
            }
            if !writer {
                scope.wake(&self.state, u32::MAX);
                return;
            }
            self.writer_seq.fetch_add(1, Ordering::Release);
            if scope.wake(&self.writer_seq, 1) > 0 {
                return;
            }
            // No writer was asleep (they timed out, or are about to see the new sequence):
            // the readers then.
            s = next;
        }
    }
}

/// Views a `pthread_rwlock_t`.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`.
unsafe fn rwlock<'a>(rw: *const pthread_rwlock_t) -> Option<&'a RwLock> {
    // SAFETY: by the caller's contract; the object's words are only accessed atomically.
    unsafe { view(rw) }
}

/// `pthread_rwlock_init`: with `attr`'s kind and process-shared setting (reader-preferring and
/// private if `attr` is null).
///
/// # Safety
/// `rw` points to writable memory for a `pthread_rwlock_t` that no other thread uses; `attr` is
/// null or points to an initialised attribute object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_init(
    rw: *mut pthread_rwlock_t,
    attr: *const pthread_rwlockattr_t,
) -> c_int {
    // SAFETY: by the caller's contract.
    let (Some(rw), attr) = (unsafe { rwlock(rw) }, unsafe {
        view::<_, RwLockAttr>(attr)
    }) else {
        return EINVAL;
    };
    rw.state.store(0, Ordering::Relaxed);
    rw.writer_seq.store(0, Ordering::Relaxed);
    rw.writer.store(0, Ordering::Relaxed);
    rw.shared
        .store(attr.map_or(0, |a| a.pshared as u32), Ordering::Relaxed);
    rw.kind
        .store(attr.map_or(0, |a| a.kind as u32), Ordering::Relaxed);
    0
}

/// `pthread_rwlock_destroy`: `EBUSY` if the lock is held.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_destroy(rw: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    match unsafe { rwlock(rw) } {
        Some(rw) if rw.state.load(Ordering::Relaxed) & MASK != 0 => EBUSY,
        Some(_) => 0,
        None => EINVAL,
    }
}

/// `pthread_rwlock_rdlock`: `EDEADLK` if the caller holds the write lock, `EAGAIN` if the
/// maximum number of readers hold it.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_rdlock(rw: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { rwlock(rw) }.map_or(EINVAL, |rw| rw.read(Timeout::Never))
}

/// `pthread_rwlock_tryrdlock`: `EBUSY` if a reader may not take the lock now.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_tryrdlock(rw: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { rwlock(rw) }.map_or(EINVAL, |rw| rw.try_read(rw.prefers_writers()))
}

/// `pthread_rwlock_timedrdlock`: as `pthread_rwlock_rdlock`, giving up with `ETIMEDOUT` at
/// `abstime` on `CLOCK_REALTIME`.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`; `abstime` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_timedrdlock(
    rw: *mut pthread_rwlock_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { pthread_rwlock_clockrdlock(rw, CLOCK_REALTIME, abstime) }
}

/// `pthread_rwlock_clockrdlock`: as `pthread_rwlock_timedrdlock`, on `clock`
/// (`CLOCK_REALTIME` or `CLOCK_MONOTONIC`, else `EINVAL`).
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`; `abstime` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_clockrdlock(
    rw: *mut pthread_rwlock_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: by the caller's contract.
    let timeout = match unsafe { Timeout::on_clock(clock, abstime) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    // SAFETY: by the caller's contract.
    unsafe { rwlock(rw) }.map_or(EINVAL, |rw| rw.read(timeout))
}

/// `pthread_rwlock_wrlock`: `EDEADLK` if the caller holds the write lock.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_wrlock(rw: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { rwlock(rw) }.map_or(EINVAL, |rw| rw.write(Timeout::Never))
}

/// `pthread_rwlock_trywrlock`: `EBUSY` if the lock is held.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_trywrlock(rw: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { rwlock(rw) }.map_or(EINVAL, |rw| rw.try_write(identity(rw.scope())))
}

/// `pthread_rwlock_timedwrlock`: as `pthread_rwlock_wrlock`, giving up with `ETIMEDOUT` at
/// `abstime` on `CLOCK_REALTIME`.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`; `abstime` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_timedwrlock(
    rw: *mut pthread_rwlock_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { pthread_rwlock_clockwrlock(rw, CLOCK_REALTIME, abstime) }
}

/// `pthread_rwlock_clockwrlock`: as `pthread_rwlock_timedwrlock`, on `clock`
/// (`CLOCK_REALTIME` or `CLOCK_MONOTONIC`, else `EINVAL`).
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`; `abstime` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_clockwrlock(
    rw: *mut pthread_rwlock_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: by the caller's contract.
    let timeout = match unsafe { Timeout::on_clock(clock, abstime) } {
        Ok(t) => t,
        Err(e) => return e,
    };
    // SAFETY: by the caller's contract.
    unsafe { rwlock(rw) }.map_or(EINVAL, |rw| rw.write(timeout))
}

/// `pthread_rwlock_unlock`: releases the caller's read or write lock; `EPERM` if the lock is
/// not held at all.
///
/// # Safety
/// `rw` is null or points to a live `pthread_rwlock_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_unlock(rw: *mut pthread_rwlock_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { rwlock(rw) }.map_or(EINVAL, RwLock::unlock)
}
