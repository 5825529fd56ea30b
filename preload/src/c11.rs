//! C11 `<threads.h>`: `thrd_*`, `mtx_*`, `cnd_*`, `tss_*` and `call_once`, on this library's
//! pthread exports.
//!
//! glibc implements these functions on its own pthread functions, but calls them inside libc,
//! not through the PLT, so interposing the pthread functions does not reach them: glibc's
//! `thrd_create` would make a native thread, and its `mtx_lock` or `cnd_wait` on a green thread
//! would block the carrier in the kernel. Each export here is glibc 2.36's function
//! (`sysdeps/pthread/thrd_*.c`, `mtx_*.c`, `cnd_*.c`, `tss_*.c`, `call_once.c`) with the calls
//! going to [`pthread`], [`sync`], [`key`] and [`io`] instead: green threads are created, waits
//! park, and everything still works before the runtime starts and on glibc's own threads, as
//! those exports do. Being unversioned, the exports bind both of glibc's versions of each symbol
//! (`@GLIBC_2.28`, from libpthread, and `@@GLIBC_2.34`).
//!
//! The ABI is glibc's: [`thrd_t`] is a `pthread_t`, [`mtx_t`] and [`cnd_t`] are a
//! `pthread_mutex_t` and a `pthread_cond_t` (glibc's `<threads.h>` unions have their sizes and
//! alignments), [`tss_t`] is a `pthread_key_t` and [`once_flag`] a `pthread_once_t` in a struct,
//! so `ONCE_FLAG_INIT` is `PTHREAD_ONCE_INIT`.
//!
//! Semantics, as glibc's:
//! - error numbers become results by glibc's `thrd_err_map`: 0 → `thrd_success`, `ENOMEM` →
//!   `thrd_nomem`, `ETIMEDOUT` → `thrd_timedout`, `EBUSY` → `thrd_busy`, anything else →
//!   `thrd_error`. So `thrd_create` out of threads (`EAGAIN`) is `thrd_error`, as with glibc
//!   (whose `pthread_create` reports even a failed stack allocation as `EAGAIN`), not the
//!   `thrd_nomem` musl gives;
//! - a thread's `int` result (returned, or passed to [`thrd_exit`]) travels as its `void *` value,
//!   sign-extended, and [`thrd_join`] truncates it back to `int`;
//! - [`mtx_init`] makes a recursive mutex for `mtx_plain | mtx_recursive` and
//!   `mtx_timed | mtx_recursive`, and a normal one for any other type (unknown ones included:
//!   glibc does not check), since every mutex can be locked with a deadline here; a normal mutex
//!   does not record its owner, so locking it twice deadlocks and `mtx_trylock` by its holder is
//!   `thrd_busy`;
//! - [`cnd_init`] makes a `CLOCK_REALTIME` condition variable, and [`mtx_timedlock`] and
//!   [`cnd_timedwait`] take `TIME_UTC` (`CLOCK_REALTIME`) deadlines;
//! - [`thrd_sleep`] is a relative `clock_nanosleep` on `CLOCK_REALTIME`: 0, -1 if a signal
//!   handler interrupted it (the time left in `*remaining` if that is not null), -2 on any
//!   other error (an invalid time); `errno` is left alone;
//! - the `void` functions ([`mtx_destroy`], [`cnd_destroy`], [`tss_delete`], [`call_once`],
//!   [`thrd_yield`]) drop their pthread function's result.
//!
//! Where glibc's behaviour is undefined, these are defined: [`thrd_join`] writes the result only
//! when the join succeeds (glibc writes an uninitialised value after a failed join), and
//! [`thrd_create`] with a null function fails with `thrd_error` instead of starting a thread
//! that crashes.

use std::alloc::{Layout, alloc};
use std::ffi::c_void;
use std::ptr;

use libc::{
    CLOCK_REALTIME, EBUSY, EINTR, ENOMEM, ETIMEDOUT, PTHREAD_MUTEX_NORMAL, PTHREAD_MUTEX_RECURSIVE,
    c_int, pthread_cond_t, pthread_key_t, pthread_mutex_t, pthread_mutexattr_t, pthread_once_t,
    pthread_t, timespec,
};

use crate::{io, key, pthread, sync};

/// `thrd_t`: a `pthread_t`.
#[allow(non_camel_case_types)]
pub type thrd_t = pthread_t;

/// `thrd_start_t`: a thread's function. Called with the "C-unwind" ABI, as the pthread start
/// routines are, so [`thrd_exit`] can unwind through it on a green thread.
#[allow(non_camel_case_types)]
pub type thrd_start_t = unsafe extern "C-unwind" fn(*mut c_void) -> c_int;

/// `mtx_t`: a `pthread_mutex_t` (glibc's union of `char[40]` and a `long`).
#[allow(non_camel_case_types)]
pub type mtx_t = pthread_mutex_t;

/// `cnd_t`: a `pthread_cond_t` (glibc's union of `char[48]` and a `long long`).
#[allow(non_camel_case_types)]
pub type cnd_t = pthread_cond_t;

/// `tss_t`: a `pthread_key_t`.
#[allow(non_camel_case_types)]
pub type tss_t = pthread_key_t;

/// `tss_dtor_t`: a thread-specific value's destructor.
#[allow(non_camel_case_types)]
pub type tss_dtor_t = unsafe extern "C" fn(*mut c_void);

/// `once_flag`: glibc's `struct { int __data; }`, whose `__data` is a `pthread_once_t`
/// (`ONCE_FLAG_INIT` is `{ 0 }`, `PTHREAD_ONCE_INIT`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug)]
pub struct once_flag {
    data: pthread_once_t,
}

// glibc 2.36 on x86_64: the sizes and alignments of <threads.h>'s types.
const _: () = {
    assert!(size_of::<thrd_t>() == 8 && align_of::<thrd_t>() == 8);
    assert!(size_of::<mtx_t>() == 40 && align_of::<mtx_t>() == 8);
    assert!(size_of::<cnd_t>() == 48 && align_of::<cnd_t>() == 8);
    assert!(size_of::<tss_t>() == 4 && align_of::<tss_t>() == 4);
    assert!(size_of::<once_flag>() == 4 && align_of::<once_flag>() == 4);
};

/// `thrd_success`.
pub const THRD_SUCCESS: c_int = 0;
/// `thrd_busy`.
pub const THRD_BUSY: c_int = 1;
/// `thrd_error`.
pub const THRD_ERROR: c_int = 2;
/// `thrd_nomem`.
pub const THRD_NOMEM: c_int = 3;
/// `thrd_timedout`.
pub const THRD_TIMEDOUT: c_int = 4;

/// `mtx_plain`.
pub const MTX_PLAIN: c_int = 0;
/// `mtx_recursive`.
pub const MTX_RECURSIVE: c_int = 1;
/// `mtx_timed`.
pub const MTX_TIMED: c_int = 2;

/// A pthread error number as a C11 result (glibc's `thrd_err_map`).
fn result(err: c_int) -> c_int {
    match err {
        0 => THRD_SUCCESS,
        ENOMEM => THRD_NOMEM,
        ETIMEDOUT => THRD_TIMEDOUT,
        EBUSY => THRD_BUSY,
        _ => THRD_ERROR,
    }
}

/// What [`thrd_create`] hands its thread: the C11 function and its argument.
struct Start {
    func: thrd_start_t,
    arg: *mut c_void,
}

/// A C11 thread's start routine for `pthread_create`: runs the function and returns its `int`
/// as the thread's `void *` value, sign-extended (glibc's `(void *) (uintptr_t) result`).
extern "C-unwind" fn start(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the `Start` that thrd_create allocated for this thread, taken back once,
    // here; it is freed before the function runs, which leaves this frame nothing to drop if the
    // function ends the thread by unwinding (thrd_exit, or glibc's forced unwind).
    let Start { func, arg } = *unsafe { Box::from_raw(p.cast::<Start>()) };
    // SAFETY: thrd_create's caller passed a function that may be called with `arg`.
    let r = unsafe { func(arg) };
    ptr::without_provenance_mut(r as isize as usize)
}

/// `thrd_create`: a joinable thread running `func(arg)` with the default attributes (a green
/// thread once the runtime is available, as `pthread_create`); its identity in `*thr`.
/// `thrd_nomem` if its start block cannot be allocated, else `pthread_create`'s error mapped
/// (`EAGAIN` is `thrd_error`); `thrd_error` for a null `func`.
///
/// # Safety
/// As `thrd_create` in C11: `thr` writable; `func` a function that may be called, on the new
/// thread, with `arg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn thrd_create(
    thr: *mut thrd_t,
    func: Option<thrd_start_t>,
    arg: *mut c_void,
) -> c_int {
    let Some(func) = func else {
        return THRD_ERROR;
    };
    let layout = Layout::new::<Start>();
    // SAFETY: `Start` is not zero-sized.
    let block = unsafe { alloc(layout) }.cast::<Start>();
    if block.is_null() {
        return THRD_NOMEM;
    }
    // SAFETY: a fresh allocation of `Start`'s layout, as `Box` would make: ours to write, and
    // for `start` to take back with `Box::from_raw`.
    unsafe { block.write(Start { func, arg }) };
    // SAFETY: `thr` is writable (the caller's contract); `start` takes `block` back.
    let err = unsafe { pthread::pthread_create(thr, ptr::null(), start, block.cast()) };
    if err != 0 {
        // SAFETY: no thread was created: the block is still ours, made as a `Box` would be.
        drop(unsafe { Box::from_raw(block) });
    }
    result(err)
}

/// `thrd_current`: the calling thread's identity (its `pthread_self`, which is its own on a
/// green thread too).
///
/// # Safety
/// None: any thread may call it.
#[unsafe(no_mangle)]
pub extern "C" fn thrd_current() -> thrd_t {
    // SAFETY: pthread_self has no preconditions (glibc's reads the thread pointer).
    unsafe { libc::pthread_self() }
}

/// `thrd_equal`: non-zero if `a` and `b` are the same thread.
///
/// # Safety
/// None: it compares the two values.
#[unsafe(no_mangle)]
pub extern "C" fn thrd_equal(a: thrd_t, b: thrd_t) -> c_int {
    c_int::from(a == b)
}

/// `thrd_detach`: `thrd_error` if `thr` cannot be detached.
///
/// # Safety
/// As `pthread_detach(3)`: `thr` a thread that is neither joined nor detached.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn thrd_detach(thr: thrd_t) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { pthread::pthread_detach(thr) })
}

/// `thrd_join`: waits for `thr` to end and stores its result in `*res` (if `res` is not null);
/// `thrd_error` if it cannot be joined (the caller itself, for one), leaving `*res` alone.
///
/// # Safety
/// As `pthread_join(3)`: `thr` a joinable thread not joined yet; `res` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn thrd_join(thr: thrd_t, res: *mut c_int) -> c_int {
    let mut value = ptr::null_mut();
    // SAFETY: the caller's contract; `value` is ours.
    let err = unsafe { pthread::pthread_join(thr, &mut value) };
    if err == 0 && !res.is_null() {
        // SAFETY: `res` is writable (the caller's contract). The truncation is glibc's
        // `(int) (uintptr_t) value`.
        unsafe { *res = value.addr() as c_int };
    }
    result(err)
}

/// `thrd_exit`: ends the calling thread with the result `res` (running its thread-specific
/// data's destructors); on the main thread, the process goes on until its last thread ends.
///
/// # Safety
/// As `pthread_exit(3)`: the frames it unwinds through (on a green thread) or ends (on a glibc
/// thread) may be left.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn thrd_exit(res: c_int) -> ! {
    // SAFETY: the caller's contract. The value is glibc's `(void *) (uintptr_t) res`.
    unsafe { pthread::pthread_exit(ptr::without_provenance_mut(res as isize as usize)) }
}

/// `thrd_sleep`: sleeps for `*duration` (parked on a green thread); 0 when it has passed, -1 if
/// a signal handler interrupted the sleep (with the time left in `*remaining`, if not null), -2
/// for an invalid duration or a null one.
///
/// # Safety
/// As `thrd_sleep` in C11: `duration` null or readable, `remaining` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn thrd_sleep(
    duration: *const timespec,
    remaining: *mut timespec,
) -> c_int {
    if duration.is_null() {
        // glibc's clock_nanosleep fails with EFAULT.
        return -2;
    }
    // SAFETY: the caller's contract; `duration` is not null.
    match unsafe { io::clock_nanosleep(CLOCK_REALTIME, 0, duration, remaining) } {
        0 => 0,
        EINTR => -1,
        _ => -2,
    }
}

/// `thrd_yield`: lets other threads run (on a green thread, the others of its carrier).
///
/// # Safety
/// None: any thread may call it.
#[unsafe(no_mangle)]
pub extern "C" fn thrd_yield() {
    pthread::sched_yield();
}

/// `mtx_init`: an unlocked mutex, recursive if `ty` is `mtx_plain | mtx_recursive` or
/// `mtx_timed | mtx_recursive`, normal otherwise (any other value included, as glibc);
/// `thrd_error` for a null `m`.
///
/// # Safety
/// `m` is null or points to writable memory for an `mtx_t` that no other thread uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mtx_init(m: *mut mtx_t, ty: c_int) -> c_int {
    let kind = if ty == MTX_PLAIN | MTX_RECURSIVE || ty == MTX_TIMED | MTX_RECURSIVE {
        PTHREAD_MUTEX_RECURSIVE
    } else {
        PTHREAD_MUTEX_NORMAL
    };
    // SAFETY: an attribute object is plain bytes; zeroes are a valid one to initialise.
    let mut attr: pthread_mutexattr_t = unsafe { std::mem::zeroed() };
    // SAFETY: `attr` is ours; the settype arguments are valid. `m` by the caller's contract.
    unsafe {
        sync::pthread_mutexattr_init(&mut attr);
        sync::pthread_mutexattr_settype(&mut attr, kind);
        result(sync::pthread_mutex_init(m, &attr))
    }
}

/// `mtx_lock`: `thrd_error` for a destroyed or uninitialised mutex, or a recursive one whose
/// count would overflow. Locking a normal mutex the caller holds deadlocks.
///
/// # Safety
/// `m` is null or points to a live `mtx_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mtx_lock(m: *mut mtx_t) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { sync::pthread_mutex_lock(m) })
}

/// `mtx_timedlock`: as [`mtx_lock`], giving up with `thrd_timedout` at `*deadline` on `TIME_UTC`
/// (`CLOCK_REALTIME`); `thrd_error` for a `tv_nsec` out of range (noticed only if the call
/// would block, as with glibc).
///
/// # Safety
/// `m` is null or points to a live `mtx_t`; `deadline` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mtx_timedlock(m: *mut mtx_t, deadline: *const timespec) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { sync::pthread_mutex_timedlock(m, deadline) })
}

/// `mtx_trylock`: `thrd_busy` if the mutex is held (by the caller too, unless it is recursive).
///
/// # Safety
/// `m` is null or points to a live `mtx_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mtx_trylock(m: *mut mtx_t) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { sync::pthread_mutex_trylock(m) })
}

/// `mtx_unlock`: `thrd_error` if a recursive mutex is not the caller's.
///
/// # Safety
/// `m` is null or points to a live `mtx_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mtx_unlock(m: *mut mtx_t) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { sync::pthread_mutex_unlock(m) })
}

/// `mtx_destroy`: the mutex is unusable until initialised again (a locked one is left as it
/// is, `pthread_mutex_destroy`'s `EBUSY` having nowhere to go).
///
/// # Safety
/// `m` is null or points to an `mtx_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mtx_destroy(m: *mut mtx_t) {
    // SAFETY: the caller's contract.
    unsafe { sync::pthread_mutex_destroy(m) };
}

/// `cnd_init`: a condition variable with `CLOCK_REALTIME` deadlines; `thrd_error` for a null
/// `c`.
///
/// # Safety
/// `c` is null or points to writable memory for a `cnd_t` that no other thread uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cnd_init(c: *mut cnd_t) -> c_int {
    // SAFETY: the caller's contract; a null attribute is the default.
    result(unsafe { sync::pthread_cond_init(c, ptr::null()) })
}

/// `cnd_signal`: wakes one waiter, if any.
///
/// # Safety
/// `c` is null or points to a live `cnd_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cnd_signal(c: *mut cnd_t) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { sync::pthread_cond_signal(c) })
}

/// `cnd_broadcast`: wakes every waiter.
///
/// # Safety
/// `c` is null or points to a live `cnd_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cnd_broadcast(c: *mut cnd_t) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { sync::pthread_cond_broadcast(c) })
}

/// `cnd_wait`: releases `m`, waits for a signal, takes `m` back (a recursive mutex whatever its
/// depth); `thrd_error` if `m` is a recursive mutex the caller does not hold.
///
/// # Safety
/// `c` and `m` are null or point to live objects of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn cnd_wait(c: *mut cnd_t, m: *mut mtx_t) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { sync::pthread_cond_wait(c, m) })
}

/// `cnd_timedwait`: as [`cnd_wait`], until `*deadline` on `TIME_UTC` (`CLOCK_REALTIME`):
/// `thrd_timedout` then, with `m` held again; `thrd_error` for a `tv_nsec` out of range.
///
/// # Safety
/// `c` and `m` are null or point to live objects of their types; `deadline` is null or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn cnd_timedwait(
    c: *mut cnd_t,
    m: *mut mtx_t,
    deadline: *const timespec,
) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { sync::pthread_cond_timedwait(c, m, deadline) })
}

/// `cnd_destroy`: waits until the threads it woke have left their waits.
///
/// # Safety
/// `c` is null or points to a live `cnd_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cnd_destroy(c: *mut cnd_t) {
    // SAFETY: the caller's contract.
    unsafe { sync::pthread_cond_destroy(c) };
}

/// `tss_create`: a new key, whose non-null values `dtor` (if any) is called with when their
/// threads end, green threads included; `thrd_error` when every key is in use.
///
/// # Safety
/// `id` writable; `dtor` null or a function that may be called with any value set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tss_create(id: *mut tss_t, dtor: Option<tss_dtor_t>) -> c_int {
    // SAFETY: the caller's contract.
    result(unsafe { key::pthread_key_create(id, dtor) })
}

/// `tss_delete`: the key and its values are forgotten; no destructor runs.
///
/// # Safety
/// None: an unknown key is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn tss_delete(id: tss_t) {
    key::pthread_key_delete(id);
}

/// `tss_get`: the calling thread's value for `id` (null if unset, or the key does not exist).
///
/// # Safety
/// None: an unknown key reads as null.
#[unsafe(no_mangle)]
pub extern "C" fn tss_get(id: tss_t) -> *mut c_void {
    key::pthread_getspecific(id)
}

/// `tss_set`: sets the calling thread's value for `id`; `thrd_error` if the key does not exist,
/// `thrd_nomem` if the thread's values cannot grow.
///
/// # Safety
/// None: the value is only stored (and given to the key's destructor at the thread's end).
#[unsafe(no_mangle)]
pub extern "C" fn tss_set(id: tss_t, value: *mut c_void) -> c_int {
    result(key::pthread_setspecific(id, value))
}

/// `call_once`: runs `func` if no call with `flag` has run it yet; returns once it has run
/// (parked meanwhile, on a green thread).
///
/// # Safety
/// `flag` is null or points to a live `once_flag`; `func` is null or a function that may be
/// called with no arguments, and returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn call_once(flag: *mut once_flag, func: Option<unsafe extern "C" fn()>) {
    // SAFETY: the caller's contract; a `once_flag` is a `pthread_once_t` in a `repr(C)` struct.
    unsafe { sync::pthread_once(flag.cast::<pthread_once_t>(), func) };
}
