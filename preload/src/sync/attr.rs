//! The attribute objects: `pthread_mutexattr_*`, `pthread_condattr_*`, `pthread_rwlockattr_*`
//! and `pthread_barrierattr_*`, in glibc's sizes (4 bytes, 8 for the rwlock's).
//!
//! Only this module and the objects' `init` functions read them, so the encodings are ours:
//!
//! ```text
//! mutexattr    int    the mutex's __kind: type | 0x80 if process-shared
//! condattr     int    bit 0 process-shared, bits 1.. the clock id (0 = CLOCK_REALTIME)
//! rwlockattr   int×2  kind (PTHREAD_RWLOCK_PREFER_*_NP), process-shared (0 or 1)
//! barrierattr  int    process-shared (0 or 1)
//! ```
//!
//! Robust mutexes and the priority protocols are not supported: their setters fail with
//! `ENOTSUP` and say so once on stderr.

use std::sync::atomic::{AtomicBool, Ordering};

use libc::{
    EINVAL, ENOTSUP, PTHREAD_MUTEX_ADAPTIVE_NP, PTHREAD_MUTEX_ROBUST, PTHREAD_MUTEX_STALLED,
    PTHREAD_PRIO_INHERIT, PTHREAD_PRIO_NONE, PTHREAD_PRIO_PROTECT, PTHREAD_PROCESS_PRIVATE,
    PTHREAD_PROCESS_SHARED, c_int, clockid_t, pthread_barrierattr_t, pthread_condattr_t,
    pthread_mutexattr_t, pthread_rwlockattr_t,
};

use super::mutex::{KIND_PSHARED, KIND_TYPE_MASK};
use super::rwlock::{PREFER_READER, PREFER_WRITER_NONRECURSIVE};
use super::time::valid_clock;
use super::{view, view_mut};

/// A `pthread_mutexattr_t`: the `__kind` of the mutexes it initialises.
#[repr(C)]
pub(crate) struct MutexAttr {
    kind: c_int,
}

impl MutexAttr {
    /// The `__kind` a mutex initialised with this attribute gets.
    pub(crate) fn mutex_kind(&self) -> c_int {
        self.kind & (KIND_TYPE_MASK | KIND_PSHARED)
    }
}

/// A `pthread_condattr_t` (module doc).
#[repr(C)]
pub(crate) struct CondAttr {
    bits: c_int,
}

impl CondAttr {
    /// The condition variable's flags this attribute gives (the same encoding).
    pub(crate) fn cond_flags(&self) -> u32 {
        self.bits as u32
    }
}

/// A `pthread_condattr_t`'s process-shared bit (and the condition variable's).
pub(crate) const COND_PSHARED: u32 = 1;
/// Where a `pthread_condattr_t` (and a condition variable) keeps its clock id.
pub(crate) const COND_CLOCK_SHIFT: u32 = 1;

/// A `pthread_rwlockattr_t`.
#[repr(C)]
pub(crate) struct RwLockAttr {
    /// `PTHREAD_RWLOCK_PREFER_*_NP`.
    pub(crate) kind: c_int,
    /// 0 or 1.
    pub(crate) pshared: c_int,
}

/// A `pthread_barrierattr_t`.
#[repr(C)]
pub(crate) struct BarrierAttr {
    /// 0 or 1.
    pub(crate) pshared: c_int,
}

/// Whether `v` is a valid `pshared` value: `PTHREAD_PROCESS_PRIVATE` or `PTHREAD_PROCESS_SHARED`.
fn pshared_ok(v: c_int) -> bool {
    v == PTHREAD_PROCESS_PRIVATE || v == PTHREAD_PROCESS_SHARED
}

/// Says on stderr, the first time only (per `said`), that a feature is not supported; a raw
/// `write(2)`, which allocates nothing and reaches no interposed function.
fn unsupported(said: &AtomicBool, msg: &str) {
    if said.swap(true, Ordering::Relaxed) {
        return;
    }
    let args = [2, msg.as_ptr() as u64, msg.len() as u64];
    // SAFETY: writes our own string to stderr.
    unsafe { flexsc_threads::kmod::raw::syscall(libc::SYS_write, args) };
}

/// Writes `v` through `out`; `EINVAL` if `out` is null.
///
/// # Safety
/// `out` is null or writable.
unsafe fn put(out: *mut c_int, v: c_int) -> c_int {
    // SAFETY: null or writable, by the caller's contract.
    match unsafe { out.as_mut() } {
        Some(o) => {
            *o = v;
            0
        }
        None => EINVAL,
    }
}

/// Declares an attribute export: `$body` runs with `$a` bound to the viewed attribute object
/// (`EINVAL` if the pointer is null).
macro_rules! attr_fn {
    (
        $(#[$doc:meta])*
        $name:ident($a:ident: *mut $c:ty => $t:ty $(, $arg:ident: $at:ty)*) $body:block
    ) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The attribute pointer is null or points to an attribute object that no other thread
        /// uses meanwhile; pointer arguments are null or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(a: *mut $c $(, $arg: $at)*) -> c_int {
            // SAFETY: by the caller's contract.
            let Some($a) = (unsafe { view_mut::<_, $t>(a) }) else {
                return EINVAL;
            };
            $body
        }
    };
    ($(#[$doc:meta])* $name:ident($a:ident: *const $c:ty => $t:ty, $out:ident) $get:block) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The attribute pointer is null or points to an attribute object; the result pointer
        /// is null or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(a: *const $c, $out: *mut c_int) -> c_int {
            // SAFETY: by the caller's contract.
            let Some($a) = (unsafe { view::<_, $t>(a) }) else {
                return EINVAL;
            };
            let v = $get;
            // SAFETY: by the caller's contract.
            unsafe { put($out, v) }
        }
    };
}

attr_fn! {
    /// `pthread_mutexattr_init`: a normal, process-private, non-robust mutex without priority
    /// protocol.
    pthread_mutexattr_init(a: *mut pthread_mutexattr_t => MutexAttr) {
        a.kind = 0;
        0
    }
}

attr_fn! {
    /// `pthread_mutexattr_destroy`.
    pthread_mutexattr_destroy(_a: *mut pthread_mutexattr_t => MutexAttr) { 0 }
}

attr_fn! {
    /// `pthread_mutexattr_settype`: `PTHREAD_MUTEX_NORMAL`, `_RECURSIVE`, `_ERRORCHECK`
    /// (`_DEFAULT` is `_NORMAL`) or `PTHREAD_MUTEX_ADAPTIVE_NP`; else `EINVAL`.
    pthread_mutexattr_settype(a: *mut pthread_mutexattr_t => MutexAttr, ty: c_int) {
        if !(0..=PTHREAD_MUTEX_ADAPTIVE_NP).contains(&ty) {
            return EINVAL;
        }
        a.kind = (a.kind & !KIND_TYPE_MASK) | ty;
        0
    }
}

attr_fn! {
    /// `pthread_mutexattr_gettype`.
    pthread_mutexattr_gettype(a: *const pthread_mutexattr_t => MutexAttr, ty) {
        a.kind & KIND_TYPE_MASK
    }
}

attr_fn! {
    /// `pthread_mutexattr_setpshared`: a process-shared mutex waits in the kernel's futex.
    pthread_mutexattr_setpshared(a: *mut pthread_mutexattr_t => MutexAttr, pshared: c_int) {
        if !pshared_ok(pshared) {
            return EINVAL;
        }
        a.kind = (a.kind & !KIND_PSHARED) | if pshared == PTHREAD_PROCESS_SHARED {
            KIND_PSHARED
        } else {
            0
        };
        0
    }
}

attr_fn! {
    /// `pthread_mutexattr_getpshared`.
    pthread_mutexattr_getpshared(a: *const pthread_mutexattr_t => MutexAttr, pshared) {
        if a.kind & KIND_PSHARED != 0 {
            PTHREAD_PROCESS_SHARED
        } else {
            PTHREAD_PROCESS_PRIVATE
        }
    }
}

attr_fn! {
    /// `pthread_mutexattr_setrobust`: `PTHREAD_MUTEX_STALLED` only; `PTHREAD_MUTEX_ROBUST` is not
    /// supported (`ENOTSUP`, said once on stderr), anything else is `EINVAL`.
    pthread_mutexattr_setrobust(_a: *mut pthread_mutexattr_t => MutexAttr, robust: c_int) {
        static SAID: AtomicBool = AtomicBool::new(false);
        match robust {
            PTHREAD_MUTEX_STALLED => 0,
            PTHREAD_MUTEX_ROBUST => {
                unsupported(
                    &SAID,
                    "libflexsc: robust mutexes are not supported \
                     (pthread_mutexattr_setrobust fails with ENOTSUP)\n",
                );
                ENOTSUP
            }
            _ => EINVAL,
        }
    }
}

attr_fn! {
    /// `pthread_mutexattr_getrobust`: always `PTHREAD_MUTEX_STALLED`.
    pthread_mutexattr_getrobust(_a: *const pthread_mutexattr_t => MutexAttr, robust) {
        PTHREAD_MUTEX_STALLED
    }
}

attr_fn! {
    /// `pthread_mutexattr_setprotocol`: `PTHREAD_PRIO_NONE` only; `PTHREAD_PRIO_INHERIT` and
    /// `PTHREAD_PRIO_PROTECT` are not supported (`ENOTSUP`, said once on stderr), anything else
    /// is `EINVAL`.
    pthread_mutexattr_setprotocol(_a: *mut pthread_mutexattr_t => MutexAttr, protocol: c_int) {
        static SAID: AtomicBool = AtomicBool::new(false);
        match protocol {
            PTHREAD_PRIO_NONE => 0,
            PTHREAD_PRIO_INHERIT | PTHREAD_PRIO_PROTECT => {
                unsupported(
                    &SAID,
                    "libflexsc: priority-inheritance and priority-protection mutexes are not \
                     supported (pthread_mutexattr_setprotocol fails with ENOTSUP)\n",
                );
                ENOTSUP
            }
            _ => EINVAL,
        }
    }
}

attr_fn! {
    /// `pthread_mutexattr_getprotocol`: always `PTHREAD_PRIO_NONE`.
    pthread_mutexattr_getprotocol(_a: *const pthread_mutexattr_t => MutexAttr, protocol) {
        PTHREAD_PRIO_NONE
    }
}

attr_fn! {
    /// `pthread_condattr_init`: `CLOCK_REALTIME`, process-private.
    pthread_condattr_init(a: *mut pthread_condattr_t => CondAttr) {
        a.bits = 0;
        0
    }
}

attr_fn! {
    /// `pthread_condattr_destroy`.
    pthread_condattr_destroy(_a: *mut pthread_condattr_t => CondAttr) { 0 }
}

attr_fn! {
    /// `pthread_condattr_setclock`: the clock of `pthread_cond_timedwait`'s deadlines,
    /// `CLOCK_REALTIME` or `CLOCK_MONOTONIC` (else `EINVAL`).
    pthread_condattr_setclock(a: *mut pthread_condattr_t => CondAttr, clock: clockid_t) {
        if !valid_clock(clock) {
            return EINVAL;
        }
        a.bits = (a.bits & COND_PSHARED as c_int) | (clock << COND_CLOCK_SHIFT);
        0
    }
}

attr_fn! {
    /// `pthread_condattr_getclock`.
    pthread_condattr_getclock(a: *const pthread_condattr_t => CondAttr, clock) {
        a.bits >> COND_CLOCK_SHIFT
    }
}

attr_fn! {
    /// `pthread_condattr_setpshared`: a process-shared condition variable waits in the
    /// kernel's futex.
    pthread_condattr_setpshared(a: *mut pthread_condattr_t => CondAttr, pshared: c_int) {
        if !pshared_ok(pshared) {
            return EINVAL;
        }
        a.bits = (a.bits & !(COND_PSHARED as c_int)) | pshared;
        0
    }
}

attr_fn! {
    /// `pthread_condattr_getpshared`.
    pthread_condattr_getpshared(a: *const pthread_condattr_t => CondAttr, pshared) {
        a.bits & COND_PSHARED as c_int
    }
}

attr_fn! {
    /// `pthread_rwlockattr_init`: reader-preferring, process-private.
    pthread_rwlockattr_init(a: *mut pthread_rwlockattr_t => RwLockAttr) {
        a.kind = PREFER_READER;
        a.pshared = PTHREAD_PROCESS_PRIVATE;
        0
    }
}

attr_fn! {
    /// `pthread_rwlockattr_destroy`.
    pthread_rwlockattr_destroy(_a: *mut pthread_rwlockattr_t => RwLockAttr) { 0 }
}

attr_fn! {
    /// `pthread_rwlockattr_setpshared`: a process-shared lock waits in the kernel's futex.
    pthread_rwlockattr_setpshared(a: *mut pthread_rwlockattr_t => RwLockAttr, pshared: c_int) {
        if !pshared_ok(pshared) {
            return EINVAL;
        }
        a.pshared = pshared;
        0
    }
}

attr_fn! {
    /// `pthread_rwlockattr_getpshared`.
    pthread_rwlockattr_getpshared(a: *const pthread_rwlockattr_t => RwLockAttr, pshared) {
        a.pshared
    }
}

attr_fn! {
    /// `pthread_rwlockattr_setkind_np`: `PTHREAD_RWLOCK_PREFER_READER_NP`,
    /// `PTHREAD_RWLOCK_PREFER_WRITER_NP` (which, as in glibc, still lets readers in while a
    /// writer waits) or `PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP`; else `EINVAL`.
    pthread_rwlockattr_setkind_np(a: *mut pthread_rwlockattr_t => RwLockAttr, kind: c_int) {
        if !(PREFER_READER..=PREFER_WRITER_NONRECURSIVE).contains(&kind) {
            return EINVAL;
        }
        a.kind = kind;
        0
    }
}

attr_fn! {
    /// `pthread_rwlockattr_getkind_np`.
    pthread_rwlockattr_getkind_np(a: *const pthread_rwlockattr_t => RwLockAttr, kind) {
        a.kind
    }
}

attr_fn! {
    /// `pthread_barrierattr_init`: process-private.
    pthread_barrierattr_init(a: *mut pthread_barrierattr_t => BarrierAttr) {
        a.pshared = PTHREAD_PROCESS_PRIVATE;
        0
    }
}

attr_fn! {
    /// `pthread_barrierattr_destroy`.
    pthread_barrierattr_destroy(_a: *mut pthread_barrierattr_t => BarrierAttr) { 0 }
}

attr_fn! {
    /// `pthread_barrierattr_setpshared`: a process-shared barrier waits in the kernel's futex.
    pthread_barrierattr_setpshared(a: *mut pthread_barrierattr_t => BarrierAttr, pshared: c_int) {
        if !pshared_ok(pshared) {
            return EINVAL;
        }
        a.pshared = pshared;
        0
    }
}

attr_fn! {
    /// `pthread_barrierattr_getpshared`.
    pthread_barrierattr_getpshared(a: *const pthread_barrierattr_t => BarrierAttr, pshared) {
        a.pshared
    }
}
