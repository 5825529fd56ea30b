//! The descriptor calls that only matter to the library for what they tell of descriptors'
//! non-blocking mode ([`nonblock`](crate::nonblock)): `ioctl(FIONBIO)` sets it; `dup`, `dup2`,
//! `dup3`, `close_range` and `closefrom` end or replace descriptors. Each is glibc's function,
//! on every thread (none of them waits).

use libc::{c_int, c_uint, c_ulong};

use crate::{nonblock, real};

/// `ioctl`. The argument is variadic in C; on x86_64 an integer or pointer passed there arrives
/// as a third register argument would, so one `c_ulong` covers every request.
///
/// # Safety
/// As `ioctl(2)`: the argument valid for the request.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn ioctl(fd: c_int, request: c_ulong, arg: c_ulong) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { real::ioctl()(fd, request, arg) };
    if r == 0 && request == libc::FIONBIO {
        // SAFETY: FIONBIO succeeded, so `arg` pointed at a readable int.
        let on = unsafe { *(arg as *const c_int) } != 0;
        nonblock::set(fd.into(), on);
    }
    r
}

/// `dup`: the new descriptor's mode is not tracked.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn dup(fd: c_int) -> c_int {
    // SAFETY: no pointers.
    let r = unsafe { real::dup()(fd) };
    if r >= 0 {
        nonblock::forget(r.into());
    }
    r
}

/// `dup2`: `new` is closed and replaced (its mode forgotten, any specialization context on it
/// ended first: `flexsc_kmod::specialize`).
#[unsafe(no_mangle)]
pub extern "C-unwind" fn dup2(old: c_int, new: c_int) -> c_int {
    flexsc_threads::kmod::specialize::invalidate_fd(new);
    nonblock::forget(new.into());
    // SAFETY: no pointers.
    unsafe { real::dup2()(old, new) }
}

/// `dup3`: as `dup2`.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    flexsc_threads::kmod::specialize::invalidate_fd(new);
    nonblock::forget(new.into());
    // SAFETY: no pointers.
    unsafe { real::dup3()(old, new, flags) }
}

/// `close_range`: every descriptor in the range is forgotten (closed, or left alone with
/// `CLOSE_RANGE_CLOEXEC`: forgetting one only means its calls are posted).
#[unsafe(no_mangle)]
pub extern "C-unwind" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    flexsc_threads::kmod::specialize::note_call(
        libc::SYS_close_range,
        &[first.into(), last.into(), flags as u64],
    );
    if first <= last {
        nonblock::forget_range(first.into(), last.into());
    }
    // SAFETY: no pointers.
    unsafe { real::close_range()(first, last, flags) }
}

/// `closefrom`.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn closefrom(low: c_int) {
    // closefrom(low) is close_range(low, ~0, 0), for the contexts it ends.
    flexsc_threads::kmod::specialize::note_call(
        libc::SYS_close_range,
        &[low.max(0) as u64, u64::from(u32::MAX), 0],
    );
    nonblock::forget_range(low.max(0) as u64, u64::MAX);
    // SAFETY: no pointers.
    unsafe { real::closefrom()(low) }
}
