//! `pthread_mutex_*`: normal, recursive, error-checking and adaptive mutexes, process-private
//! or process-shared.
//!
//! Layout, in glibc's `struct __pthread_mutex_s` (40 bytes):
//!
//! ```text
//! offset  glibc field           here
//! 0       __lock                the lock word: 0 unlocked, 1 locked, 2 locked and maybe waited for
//! 4       __count               extra acquisitions of a recursive mutex by its owner
//! 8       __owner, __nusers     the owner's identity (recursive and error-checking types), 64 bits
//! 16      __kind                type (0 normal, 1 recursive, 2 error-checking, 3 adaptive),
//!                               | 0x80 if process-shared (glibc's bit); -1 once destroyed
//! 20..40  __spins .. __list     unused
//! ```
//!
//! glibc's static initializers (`PTHREAD_MUTEX_INITIALIZER`,
//! `PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP`, `PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP`,
//! `PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP`) zero the object and write the type into `__kind`:
//! exactly an unlocked mutex of that type here.
//!
//! The lock word follows glibc's lowlevellock (Drepper, "Futexes Are Tricky", mutex 2): lock is
//! one compare-and-swap 0 → 1 when free; otherwise the locker swaps in 2 and sleeps while the
//! word is 2, until its swap finds 0. Unlock swaps in 0 and wakes one sleeper only if it found
//! 2, so an uncontended lock and unlock are one atomic operation each. An adaptive mutex first
//! spins briefly, watching for the word to become 0.
//!
//! The owner's identity is the caller's `pthread_t` (per green thread: each has its own TCB),
//! with the process id mixed in for a process-shared mutex; only the recursive and
//! error-checking types record it.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use libc::{
    CLOCK_REALTIME, EAGAIN, EBUSY, EDEADLK, EINVAL, EPERM, ETIMEDOUT, c_int, clockid_t,
    pthread_mutex_t, pthread_mutexattr_t, timespec,
};

use super::attr::MutexAttr;
use super::time::Timeout;
use super::wait::{Scope, TimedOut};
use super::{identity, view};

/// `__kind`'s type bits (glibc's `PTHREAD_MUTEX_KIND_MASK_NP`).
pub(crate) const KIND_TYPE_MASK: c_int = 3;
/// `__kind`'s process-shared bit (glibc's `PTHREAD_MUTEX_PSHARED_BIT`).
pub(crate) const KIND_PSHARED: c_int = 0x80;
/// `__kind` of a destroyed mutex (as glibc).
const KIND_DESTROYED: c_int = -1;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Polls of the word an adaptive mutex makes before sleeping.
const ADAPTIVE_SPINS: u32 = 100;

/// A `pthread_mutex_t` (module doc).
#[repr(C)]
pub(crate) struct Mutex {
    word: AtomicU32,
    count: AtomicU32,
    owner: AtomicU64,
    kind: AtomicI32,
    _unused: [u8; 20],
}

const _: () = assert!(std::mem::offset_of!(Mutex, kind) == 16);

/// A mutex type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Normal,
    Recursive,
    ErrorCheck,
    Adaptive,
}

/// What `__kind` says.
#[derive(Clone, Copy, Debug)]
struct Kind {
    ty: Type,
    scope: Scope,
}

impl Kind {
    /// Whether the type records its owner.
    fn tracks_owner(self) -> bool {
        matches!(self.ty, Type::Recursive | Type::ErrorCheck)
    }
}

/// What [`Mutex::unlock_for_wait`] hands to [`Mutex::relock`]: the mutex's kind, and for a type
/// that records its owner, the caller's identity and its extra acquisitions.
#[derive(Debug)]
pub(crate) struct Held {
    kind: Kind,
    owner: Option<(u64, u32)>,
}

impl Mutex {
    /// The mutex's kind; `EINVAL` for a destroyed mutex or a `__kind` no initializer writes.
    fn kind(&self) -> Result<Kind, c_int> {
        let k = self.kind.load(Ordering::Relaxed);
        if k & !(KIND_TYPE_MASK | KIND_PSHARED) != 0 {
            return Err(EINVAL);
        }
        let ty = match k & KIND_TYPE_MASK {
            0 => Type::Normal,
            1 => Type::Recursive,
            2 => Type::ErrorCheck,
            _ => Type::Adaptive,
        };
        Ok(Kind {
            ty,
            scope: Scope::new(k & KIND_PSHARED != 0),
        })
    }

    /// Takes the lock if it is free.
    fn try_acquire(&self) -> bool {
        self.word
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock, sleeping while it is held, until `deadline`.
    fn acquire_slow(&self, kind: Kind, deadline: Option<Instant>) -> Result<(), TimedOut> {
        if kind.ty == Type::Adaptive {
            for _ in 0..ADAPTIVE_SPINS {
                spin_loop();
                if self.word.load(Ordering::Relaxed) == UNLOCKED && self.try_acquire() {
                    return Ok(());
                }
            }
        }
        // Whoever holds the lock now sees 2 and will wake someone when it unlocks.
        while self.word.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            kind.scope.wait(&self.word, CONTENDED, deadline)?;
        }
        Ok(())
    }

    /// Releases the lock, waking one sleeper if there may be one.
    fn release(&self, scope: Scope) {
        if self.word.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            scope.wake(&self.word, 1);
        }
    }

    /// One more acquisition of a recursive mutex by its owner.
    fn recurse(&self) -> c_int {
        let c = self.count.load(Ordering::Relaxed);
        if c == u32::MAX {
            return EAGAIN;
        }
        self.count.store(c + 1, Ordering::Relaxed);
        0
    }

    /// `pthread_mutex_lock` (`Timeout::Never`), `timedlock` and `clocklock`.
    fn lock(&self, timeout: Timeout) -> c_int {
        let kind = match self.kind() {
            Ok(k) => k,
            Err(e) => return e,
        };
        let me = kind.tracks_owner().then(|| identity(kind.scope));
        if me.is_some() && me == Some(self.owner.load(Ordering::Relaxed)) {
            return match kind.ty {
                Type::Recursive => self.recurse(),
                _ => EDEADLK,
            };
        }
        if !self.try_acquire() {
            let deadline = match timeout.deadline() {
                Ok(d) => d,
                Err(e) => return e,
            };
            if self.acquire_slow(kind, deadline).is_err() {
                return ETIMEDOUT;
            }
        }
        if let Some(me) = me {
            self.owner.store(me, Ordering::Relaxed);
        }
        0
    }

    /// `pthread_mutex_trylock`.
    fn trylock(&self) -> c_int {
        let kind = match self.kind() {
            Ok(k) => k,
            Err(e) => return e,
        };
        let me = kind.tracks_owner().then(|| identity(kind.scope));
        if kind.ty == Type::Recursive && me == Some(self.owner.load(Ordering::Relaxed)) {
            return self.recurse();
        }
        if !self.try_acquire() {
            return EBUSY;
        }
        if let Some(me) = me {
            self.owner.store(me, Ordering::Relaxed);
        }
        0
    }

    /// Checks that the caller may unlock: `EPERM` if the type records its owner and that is not
    /// the caller. Returns the caller's identity for such a type.
    fn check_owner(&self, kind: Kind) -> Result<Option<u64>, c_int> {
        if !kind.tracks_owner() {
            return Ok(None);
        }
        let me = identity(kind.scope);
        // Only the owner stores its own identity here, and clears it before unlocking: reading
        // our identity means we hold the lock.
        if self.owner.load(Ordering::Relaxed) != me {
            return Err(EPERM);
        }
        Ok(Some(me))
    }

    /// `pthread_mutex_unlock`.
    fn unlock(&self) -> c_int {
        let kind = match self.kind() {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.check_owner(kind) {
            Err(e) => return e,
            Ok(None) => {}
            Ok(Some(_)) => {
                let c = self.count.load(Ordering::Relaxed);
                if c > 0 {
                    self.count.store(c - 1, Ordering::Relaxed);
                    return 0;
                }
                self.owner.store(0, Ordering::Relaxed);
            }
        }
        self.release(kind.scope);
        0
    }

    /// Releases the mutex completely (a recursive one whatever its depth) for a condition wait.
    /// `EPERM` if the type records its owner and the caller does not hold it.
    pub(crate) fn unlock_for_wait(&self) -> Result<Held, c_int> {
        let kind = self.kind()?;
        let owner = self
            .check_owner(kind)?
            .map(|me| (me, self.count.swap(0, Ordering::Relaxed)));
        if owner.is_some() {
            self.owner.store(0, Ordering::Relaxed);
        }
        self.release(kind.scope);
        Ok(Held { kind, owner })
    }

    /// Takes the mutex back after a condition wait, as [`Mutex::unlock_for_wait`] left it.
    pub(crate) fn relock(&self, held: Held) {
        if !self.try_acquire() {
            // Without a deadline the wait cannot time out.
            let _ = self.acquire_slow(held.kind, None);
        }
        if let Some((me, count)) = held.owner {
            self.count.store(count, Ordering::Relaxed);
            self.owner.store(me, Ordering::Relaxed);
        }
    }
}

/// Views a `pthread_mutex_t`.
///
/// # Safety
/// `m` is null or points to a live `pthread_mutex_t`.
pub(crate) unsafe fn mutex<'a>(m: *const pthread_mutex_t) -> Option<&'a Mutex> {
    // SAFETY: by the caller's contract; the object's words are only accessed atomically.
    unsafe { view(m) }
}

/// `pthread_mutex_init`: an unlocked mutex with `attr`'s type and process-shared setting (the
/// defaults if `attr` is null).
///
/// # Safety
/// `m` points to writable memory for a `pthread_mutex_t` that no other thread uses; `attr` is
/// null or points to an initialised attribute object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_init(
    m: *mut pthread_mutex_t,
    attr: *const pthread_mutexattr_t,
) -> c_int {
    // SAFETY: by the caller's contract.
    let (Some(m), attr) = (unsafe { mutex(m) }, unsafe { view::<_, MutexAttr>(attr) }) else {
        return EINVAL;
    };
    m.word.store(UNLOCKED, Ordering::Relaxed);
    m.count.store(0, Ordering::Relaxed);
    m.owner.store(0, Ordering::Relaxed);
    m.kind
        .store(attr.map_or(0, MutexAttr::mutex_kind), Ordering::Relaxed);
    0
}

/// `pthread_mutex_destroy`: `EBUSY` if the mutex is locked; afterwards it is unusable (`EINVAL`)
/// until initialised again.
///
/// # Safety
/// `m` is null or points to a `pthread_mutex_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_destroy(m: *mut pthread_mutex_t) -> c_int {
    // SAFETY: by the caller's contract.
    let Some(m) = (unsafe { mutex(m) }) else {
        return EINVAL;
    };
    if m.word.load(Ordering::Relaxed) != UNLOCKED {
        return EBUSY;
    }
    m.kind.store(KIND_DESTROYED, Ordering::Relaxed);
    0
}

/// `pthread_mutex_lock`: `EDEADLK` if an error-checking mutex is already the caller's, `EAGAIN`
/// if a recursive one's count would overflow.
///
/// # Safety
/// `m` is null or points to a live `pthread_mutex_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_lock(m: *mut pthread_mutex_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { mutex(m) }.map_or(EINVAL, |m| m.lock(Timeout::Never))
}

/// `pthread_mutex_trylock`: `EBUSY` if another thread holds the mutex (or the caller holds a
/// non-recursive one).
///
/// # Safety
/// `m` is null or points to a live `pthread_mutex_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_trylock(m: *mut pthread_mutex_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { mutex(m) }.map_or(EINVAL, Mutex::trylock)
}

/// `pthread_mutex_unlock`: `EPERM` if a recursive or error-checking mutex is not the caller's.
///
/// # Safety
/// `m` is null or points to a live `pthread_mutex_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_unlock(m: *mut pthread_mutex_t) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { mutex(m) }.map_or(EINVAL, Mutex::unlock)
}

/// `pthread_mutex_timedlock`: as `pthread_mutex_lock`, giving up with `ETIMEDOUT` at `abstime`
/// on `CLOCK_REALTIME` (`EINVAL` for a `tv_nsec` out of range, checked only if the call blocks).
///
/// # Safety
/// `m` is null or points to a live `pthread_mutex_t`; `abstime` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_timedlock(
    m: *mut pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    // SAFETY: by the caller's contract.
    unsafe { pthread_mutex_clocklock(m, CLOCK_REALTIME, abstime) }
}

/// `pthread_mutex_clocklock`: as `pthread_mutex_timedlock` on `clock` (`CLOCK_REALTIME` or
/// `CLOCK_MONOTONIC`, else `EINVAL`).
///
/// # Safety
/// `m` is null or points to a live `pthread_mutex_t`; `abstime` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_mutex_clocklock(
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
    unsafe { mutex(m) }.map_or(EINVAL, |m| m.lock(timeout))
}

/// `pthread_mutex_consistent`: always `EINVAL`, as POSIX says for a mutex that is not robust:
/// robust mutexes are not supported (`pthread_mutexattr_setrobust` refuses them).
#[unsafe(no_mangle)]
pub extern "C" fn pthread_mutex_consistent(_m: *mut pthread_mutex_t) -> c_int {
    EINVAL
}
