//! The blocking libc wrappers: on a green thread each call is posted to its carrier's syscall
//! pages and the green thread parks until it completes (exception-less); on any other thread, and
//! before the runtime starts, glibc's own function runs.
//!
//! Sleeps on a green thread are timers of its carrier (no system call at all). The `_chk`
//! variants (`-D_FORTIFY_SOURCE`) check their buffer sizes as glibc does first.
//!
//! The calls glibc makes cancellation points (all but `sendfile`, `flock` and the stat family)
//! and the sleeps are
//! cancellation points on green threads ([`cancel::point`]): before the call, and when it was cut
//! short. The exports are "C-unwind": a cancellation, here or in glibc's function on a glibc
//! thread, unwinds through them.

use std::ffi::c_void;
use std::time::Duration;

use libc::{
    c_char, c_int, c_uint, clockid_t, epoll_event, fd_set, id_t, idtype_t, iovec, loff_t, mmsghdr,
    mode_t, msghdr, nfds_t, off_t, pid_t, pollfd, rusage, siginfo_t, sigset_t, size_t, sockaddr,
    socklen_t, ssize_t, timespec, timeval, useconds_t,
};

use crate::direct::{self, Route};
use crate::{cancel, nonblock, real, rt, signal};

/// A raw result as libc returns it: negative errno becomes -1 with `errno` set.
pub(crate) fn settle(r: i64) -> i64 {
    if r < 0 {
        set_errno((-r) as c_int);
        -1
    } else {
        r
    }
}

pub(crate) fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno (the green thread's own: it
    // runs on its own TLS block).
    unsafe { *libc::__errno_location() = e };
}

/// A green thread's system call `nr`, exception-less (a raw result). Signals sent to it
/// meanwhile are handled after it returns, outside the library, and the call is restarted as
/// [`signal::after_call`] says; if `point`, it is a cancellation point, before each attempt and
/// when it was interrupted.
///
/// # Safety
/// `args` valid for the call: the caller's pointers stay valid until it returns (the green
/// thread stays parked inside `syscall` until the kernel is done with them).
pub(crate) unsafe fn green_call(nr: i64, args: &[u64], point: bool) -> i64 {
    let before = crate::profile::before(nr, args);
    loop {
        if point {
            cancel::point();
        }
        let r = {
            let _lib = rt::InLib::enter();
            // SAFETY: the caller's contract.
            unsafe { routed(nr, args) }
        };
        if let Some(r) = signal::after_call(r, restartable(nr)) {
            // SAFETY: the caller's pointers are still valid (its contract).
            unsafe { crate::profile::record(nr, args, r, before) };
            if point && r == -i64::from(libc::EINTR) {
                cancel::point();
            }
            return r;
        }
    }
}

/// One attempt at a green thread's call `nr`, where the hybrid rule ([`direct`]) says: posted,
/// or directly on the carrier, or first there with a zero timeout.
///
/// # Safety
/// As [`green_call`].
unsafe fn routed(nr: i64, args: &[u64]) -> i64 {
    match direct::route(nr, args) {
        // SAFETY: the caller's contract.
        Route::Post => unsafe { flexsc_threads::syscall(nr, args) },
        // SAFETY: the caller's contract.
        Route::Carrier => unsafe { flexsc_threads::syscall_on_carrier(nr, args) },
        Route::ReadyFirst { arg, pointer } => {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let mut now = [0u64; 6];
            now[..args.len()].copy_from_slice(args);
            now[arg] = if pointer { &zero as *const _ as u64 } else { 0 };
            // SAFETY: the caller's arguments with a zero timeout (`zero` outlives the call).
            let r = unsafe { flexsc_threads::syscall_on_carrier(nr, &now[..args.len()]) };
            if r == 0 {
                // Nothing ready: wait as asked, exception-less.
                // SAFETY: the caller's contract.
                return unsafe { flexsc_threads::syscall(nr, args) };
            }
            if r > 0 {
                // Let the other green threads of this carrier run before this one goes on.
                flexsc_threads::yield_now();
            }
            r
        }
    }
}

/// Whether glibc makes the call `nr` a cancellation point (`SYSCALL_CANCEL`).
fn cancellation_point(nr: i64) -> bool {
    !matches!(
        nr,
        libc::SYS_sendfile
            | libc::SYS_flock
            | libc::SYS_newfstatat
            | libc::SYS_fstat
            | libc::SYS_statx
    )
}

/// Declares exported wrappers: exception-less `nr` with the listed arguments on a green thread,
/// glibc's function of the same name elsewhere.
macro_rules! blocking {
    ($( fn $name:ident($($a:ident: $t:ty),*) -> $ret:ty = $nr:expr, [$($arg:expr),*]; )*) => {$(
        #[doc = concat!("`", stringify!($name), "`, exception-less on green threads.")]
        ///
        /// # Safety
        /// As the libc function: pointers valid for the call.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name($($a: $t),*) -> $ret {
            let args = [$($arg as u64),*];
            // A close ends any specialization context on its fd first, on every thread (posted
            // calls are checked by the poster; glibc's close on another thread would not be).
            flexsc_threads::kmod::specialize::note_call($nr, &args);
            nonblock::before($nr, &args);
            if rt::on_green_thread() {
                // SAFETY: the caller's pointers, valid for the call.
                let r = settle(unsafe { green_call($nr, &args, cancellation_point($nr)) });
                nonblock::after($nr, &args, r);
                return r as $ret;
            }
            let before = crate::profile::before($nr, &args);
            // SAFETY: forwarded unchanged.
            let r = unsafe { real::$name()($($a),*) };
            nonblock::after($nr, &args, r as i64);
            // SAFETY: the caller's pointers, still valid.
            unsafe { crate::profile::record_libc($nr, &args, r as i64, before) };
            r
        }
    )*};
}

blocking! {
    fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t = libc::SYS_read, [fd, buf, n];
    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t = libc::SYS_write, [fd, buf, n];
    fn pread64(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t =
        libc::SYS_pread64, [fd, buf, n, off];
    fn pwrite64(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t =
        libc::SYS_pwrite64, [fd, buf, n, off];
    fn readv(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t = libc::SYS_readv, [fd, iov, n];
    fn writev(fd: c_int, iov: *const iovec, n: c_int) -> ssize_t = libc::SYS_writev, [fd, iov, n];
    fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t =
        libc::SYS_recvfrom, [fd, buf, n, flags, 0, 0];
    fn recvfrom(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int, addr: *mut sockaddr,
        len: *mut socklen_t) -> ssize_t = libc::SYS_recvfrom, [fd, buf, n, flags, addr, len];
    fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t =
        libc::SYS_sendto, [fd, buf, n, flags, 0, 0];
    fn sendto(fd: c_int, buf: *const c_void, n: size_t, flags: c_int, addr: *const sockaddr,
        len: socklen_t) -> ssize_t = libc::SYS_sendto, [fd, buf, n, flags, addr, len];
    fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t =
        libc::SYS_recvmsg, [fd, msg, flags];
    fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t =
        libc::SYS_sendmsg, [fd, msg, flags];
    fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int =
        libc::SYS_accept, [fd, addr, len];
    fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int =
        libc::SYS_accept4, [fd, addr, len, flags];
    fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int =
        libc::SYS_connect, [fd, addr, len];
    fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int =
        libc::SYS_poll, [fds, n, timeout];
    fn ppoll(fds: *mut pollfd, n: nfds_t, ts: *const timespec, mask: *const sigset_t) -> c_int =
        libc::SYS_ppoll, [fds, n, ts, mask, SIGSET_BYTES];
    fn select(n: c_int, r: *mut fd_set, w: *mut fd_set, e: *mut fd_set, tv: *mut timeval)
        -> c_int = libc::SYS_select, [n, r, w, e, tv];
    fn epoll_wait(ep: c_int, ev: *mut epoll_event, max: c_int, timeout: c_int) -> c_int =
        libc::SYS_epoll_wait, [ep, ev, max, timeout];
    fn epoll_pwait(ep: c_int, ev: *mut epoll_event, max: c_int, timeout: c_int,
        mask: *const sigset_t) -> c_int =
        libc::SYS_epoll_pwait, [ep, ev, max, timeout, mask, SIGSET_BYTES];
    fn fsync(fd: c_int) -> c_int = libc::SYS_fsync, [fd];
    fn fdatasync(fd: c_int) -> c_int = libc::SYS_fdatasync, [fd];
    fn sendfile(out: c_int, inp: c_int, off: *mut off_t, n: size_t) -> ssize_t =
        libc::SYS_sendfile, [out, inp, off, n];
    fn close(fd: c_int) -> c_int = libc::SYS_close, [fd];
    fn waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t =
        libc::SYS_wait4, [pid, status, options, 0];
    fn wait4(pid: pid_t, status: *mut c_int, options: c_int, ru: *mut rusage) -> pid_t =
        libc::SYS_wait4, [pid, status, options, ru];
    // `open`'s mode is variadic in C; on x86_64 a variadic integer is passed like a fourth
    // argument, and the kernel ignores it unless O_CREAT or O_TMPFILE asks for it.
    fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int =
        libc::SYS_openat, [libc::AT_FDCWD, path, flags, mode];
    fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int =
        libc::SYS_openat, [libc::AT_FDCWD, path, flags, mode];
    fn openat(dir: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int =
        libc::SYS_openat, [dir, path, flags, mode];
    fn openat64(dir: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int =
        libc::SYS_openat, [dir, path, flags, mode];
    fn creat(path: *const c_char, mode: mode_t) -> c_int =
        libc::SYS_openat, [libc::AT_FDCWD, path, CREAT_FLAGS, mode];
    fn creat64(path: *const c_char, mode: mode_t) -> c_int =
        libc::SYS_openat, [libc::AT_FDCWD, path, CREAT_FLAGS, mode];
    fn pread(fd: c_int, buf: *mut c_void, n: size_t, off: off_t) -> ssize_t =
        libc::SYS_pread64, [fd, buf, n, off];
    fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t =
        libc::SYS_pwrite64, [fd, buf, n, off];
    // The kernel takes the offset as low and high halves; on 64-bit the low one holds it all.
    fn preadv(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t =
        libc::SYS_preadv, [fd, iov, n, off, 0];
    fn preadv64(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t =
        libc::SYS_preadv, [fd, iov, n, off, 0];
    fn pwritev(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t =
        libc::SYS_pwritev, [fd, iov, n, off, 0];
    fn pwritev64(fd: c_int, iov: *const iovec, n: c_int, off: off_t) -> ssize_t =
        libc::SYS_pwritev, [fd, iov, n, off, 0];
    fn preadv2(fd: c_int, iov: *const iovec, n: c_int, off: off_t, flags: c_int) -> ssize_t =
        libc::SYS_preadv2, [fd, iov, n, off, 0, flags];
    fn preadv64v2(fd: c_int, iov: *const iovec, n: c_int, off: off_t, flags: c_int) -> ssize_t =
        libc::SYS_preadv2, [fd, iov, n, off, 0, flags];
    fn pwritev2(fd: c_int, iov: *const iovec, n: c_int, off: off_t, flags: c_int) -> ssize_t =
        libc::SYS_pwritev2, [fd, iov, n, off, 0, flags];
    fn pwritev64v2(fd: c_int, iov: *const iovec, n: c_int, off: off_t, flags: c_int) -> ssize_t =
        libc::SYS_pwritev2, [fd, iov, n, off, 0, flags];
    fn sendmmsg(fd: c_int, msgs: *mut mmsghdr, n: c_uint, flags: c_int) -> c_int =
        libc::SYS_sendmmsg, [fd, msgs, n, flags];
    fn recvmmsg(fd: c_int, msgs: *mut mmsghdr, n: c_uint, flags: c_int, ts: *mut timespec)
        -> c_int = libc::SYS_recvmmsg, [fd, msgs, n, flags, ts];
    fn flock(fd: c_int, op: c_int) -> c_int = libc::SYS_flock, [fd, op];
    fn splice(inp: c_int, off_in: *mut loff_t, out: c_int, off_out: *mut loff_t, n: size_t,
        flags: c_uint) -> ssize_t = libc::SYS_splice, [inp, off_in, out, off_out, n, flags];
    fn tee(inp: c_int, out: c_int, n: size_t, flags: c_uint) -> ssize_t =
        libc::SYS_tee, [inp, out, n, flags];
    fn vmsplice(fd: c_int, iov: *const iovec, n: size_t, flags: c_uint) -> ssize_t =
        libc::SYS_vmsplice, [fd, iov, n, flags];
    fn wait(status: *mut c_int) -> pid_t = libc::SYS_wait4, [-1i64, status, 0, 0];
    fn waitid(idtype: idtype_t, id: id_t, info: *mut siginfo_t, options: c_int) -> c_int =
        libc::SYS_waitid, [idtype, id, info, options, 0];
    fn epoll_pwait2(ep: c_int, ev: *mut epoll_event, max: c_int, ts: *const timespec,
        mask: *const sigset_t) -> c_int =
        libc::SYS_epoll_pwait2, [ep, ev, max, ts, mask, SIGSET_BYTES];
    // The stat family: a lookup or an attribute fetch may wait for the disk or the network
    // (NFS, FUSE). On x86_64 `struct stat` and `struct stat64` are the kernel's.
    fn stat(path: *const c_char, buf: *mut libc::stat) -> c_int =
        libc::SYS_newfstatat, [libc::AT_FDCWD, path, buf, 0];
    fn stat64(path: *const c_char, buf: *mut libc::stat64) -> c_int =
        libc::SYS_newfstatat, [libc::AT_FDCWD, path, buf, 0];
    fn lstat(path: *const c_char, buf: *mut libc::stat) -> c_int =
        libc::SYS_newfstatat, [libc::AT_FDCWD, path, buf, libc::AT_SYMLINK_NOFOLLOW];
    fn lstat64(path: *const c_char, buf: *mut libc::stat64) -> c_int =
        libc::SYS_newfstatat, [libc::AT_FDCWD, path, buf, libc::AT_SYMLINK_NOFOLLOW];
    fn fstat(fd: c_int, buf: *mut libc::stat) -> c_int = libc::SYS_fstat, [fd, buf];
    fn fstat64(fd: c_int, buf: *mut libc::stat64) -> c_int = libc::SYS_fstat, [fd, buf];
    fn fstatat(dir: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int =
        libc::SYS_newfstatat, [dir, path, buf, flags];
    fn fstatat64(dir: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int)
        -> c_int = libc::SYS_newfstatat, [dir, path, buf, flags];
    fn statx(dir: c_int, path: *const c_char, flags: c_int, mask: c_uint, buf: *mut libc::statx)
        -> c_int = libc::SYS_statx, [dir, path, flags, mask, buf];
}

/// The `ver` argument of the `__xstat` family that x86_64's glibc accepts (`_STAT_VER_KERNEL`,
/// `_STAT_VER_LINUX`); any other is `EINVAL`, as there.
fn stat_ver_ok(ver: c_int) -> bool {
    (0..=1).contains(&ver)
}

/// Declares the `__xstat` family (what programs built before glibc 2.33 call for `stat`):
/// glibc's version check, then the export it stands for.
macro_rules! xstat {
    ($( fn $name:ident($($a:ident: $t:ty),*) = $target:ident; )*) => {$(
        #[doc = concat!("`", stringify!($name), "`: `", stringify!($target), "` after the version check.")]
        ///
        /// # Safety
        /// As the libc function: pointers valid for the call.
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name(ver: c_int, $($a: $t),*) -> c_int {
            if !stat_ver_ok(ver) {
                set_errno(libc::EINVAL);
                return -1;
            }
            // SAFETY: the caller's pointers, valid for the call.
            unsafe { $target($($a),*) }
        }
    )*};
}

xstat! {
    fn __xstat(path: *const c_char, buf: *mut libc::stat) = stat;
    fn __xstat64(path: *const c_char, buf: *mut libc::stat64) = stat64;
    fn __lxstat(path: *const c_char, buf: *mut libc::stat) = lstat;
    fn __lxstat64(path: *const c_char, buf: *mut libc::stat64) = lstat64;
    fn __fxstat(fd: c_int, buf: *mut libc::stat) = fstat;
    fn __fxstat64(fd: c_int, buf: *mut libc::stat64) = fstat64;
    fn __fxstatat(dir: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) = fstatat;
    fn __fxstatat64(dir: c_int, path: *const c_char, buf: *mut libc::stat64, flags: c_int) =
        fstatat64;
}

/// `creat`'s flags.
const CREAT_FLAGS: c_int = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;

/// `fcntl` (and `fcntl64`, its other name): the commands that wait for a lock
/// (`F_SETLKW`, `F_OFD_SETLKW`) are exception-less on a green thread, and cancellation points;
/// the rest never block and stay glibc's. The argument is variadic in C; on x86_64 an integer or pointer passed there
/// arrives as a fourth register argument would, so one `c_ulong` covers every command.
///
/// # Safety
/// As `fcntl(2)`: the argument valid for the command.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { fcntl_impl(fd, cmd, arg, real::fcntl()) }
}

/// See [`fcntl`].
///
/// # Safety
/// As `fcntl(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn fcntl64(fd: c_int, cmd: c_int, arg: libc::c_ulong) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { fcntl_impl(fd, cmd, arg, real::fcntl64()) }
}

/// # Safety
/// As `fcntl(2)`.
unsafe fn fcntl_impl(
    fd: c_int,
    cmd: c_int,
    arg: libc::c_ulong,
    glibc: unsafe extern "C-unwind" fn(c_int, c_int, libc::c_ulong) -> c_int,
) -> c_int {
    if matches!(cmd, libc::F_SETLKW | libc::F_OFD_SETLKW) && rt::on_green_thread() {
        let args = [fd as u64, cmd as u64, arg];
        // SAFETY: `arg` points at the caller's flock, valid until the call returns.
        return settle(unsafe { green_call(libc::SYS_fcntl, &args, true) }) as c_int;
    }
    // SAFETY: forwarded unchanged.
    let r = unsafe { glibc(fd, cmd, arg) };
    nonblock::after_fcntl(fd, cmd, arg, r);
    let args = [fd as u64, cmd as u64, arg];
    // SAFETY: no pointer is read for fcntl.
    unsafe { crate::profile::record_libc(libc::SYS_fcntl, &args, r.into(), Default::default()) };
    r
}

/// `pselect`: exception-less on a green thread (the kernel's `pselect6` takes the mask as a
/// pointer and size pair), and a cancellation point.
///
/// # Safety
/// As `pselect(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pselect(
    n: c_int,
    r: *mut fd_set,
    w: *mut fd_set,
    e: *mut fd_set,
    ts: *const timespec,
    mask: *const sigset_t,
) -> c_int {
    if rt::on_green_thread() {
        // The kernel's sixth argument: { const sigset_t *ss; size_t ss_len; }.
        let data = [mask as u64, SIGSET_BYTES as u64];
        let args = [
            n as u64,
            r as u64,
            w as u64,
            e as u64,
            ts as u64,
            &data as *const _ as u64,
        ];
        // SAFETY: the caller's sets and timeout, and `data`, outlive the call.
        return settle(unsafe { green_call(libc::SYS_pselect6, &args, true) }) as c_int;
    }
    // SAFETY: forwarded unchanged.
    unsafe { real::pselect()(n, r, w, e, ts, mask) }
}

/// Whether Linux restarts `nr` after a handler with `SA_RESTART` (calls that wait with a timeout
/// never are: see signal(7)).
pub(crate) fn restartable(nr: i64) -> bool {
    !matches!(
        nr,
        libc::SYS_poll
            | libc::SYS_ppoll
            | libc::SYS_select
            | libc::SYS_pselect6
            | libc::SYS_epoll_wait
            | libc::SYS_epoll_pwait
            | libc::SYS_epoll_pwait2
            | libc::SYS_nanosleep
            | libc::SYS_clock_nanosleep
    )
}

/// The kernel's signal set size (the `sigsetsize` argument of the `p` calls).
const SIGSET_BYTES: usize = 8;

unsafe extern "C" {
    /// glibc's fortify failure: prints "buffer overflow detected" and aborts.
    fn __chk_fail() -> !;
}

/// `__read_chk` (`-D_FORTIFY_SOURCE`).
///
/// # Safety
/// As `read`; `buflen` is the buffer's real size.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __read_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
) -> ssize_t {
    if n > buflen {
        // SAFETY: glibc's fortify abort.
        unsafe { __chk_fail() }
    }
    // SAFETY: the caller's contract.
    unsafe { read(fd, buf, n) }
}

/// `__pread64_chk`.
///
/// # Safety
/// As `pread64`; `buflen` is the buffer's real size.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __pread64_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    off: off_t,
    buflen: size_t,
) -> ssize_t {
    if n > buflen {
        // SAFETY: glibc's fortify abort.
        unsafe { __chk_fail() }
    }
    // SAFETY: the caller's contract.
    unsafe { pread64(fd, buf, n, off) }
}

/// `__recv_chk`.
///
/// # Safety
/// As `recv`; `buflen` is the buffer's real size.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __recv_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
) -> ssize_t {
    if n > buflen {
        // SAFETY: glibc's fortify abort.
        unsafe { __chk_fail() }
    }
    // SAFETY: the caller's contract.
    unsafe { recv(fd, buf, n, flags) }
}

/// `__recvfrom_chk`.
///
/// # Safety
/// As `recvfrom`; `buflen` is the buffer's real size.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __recvfrom_chk(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    buflen: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    if n > buflen {
        // SAFETY: glibc's fortify abort.
        unsafe { __chk_fail() }
    }
    // SAFETY: the caller's contract.
    unsafe { recvfrom(fd, buf, n, flags, addr, len) }
}

/// `__poll_chk`.
///
/// # Safety
/// As `poll`; `fdslen` is the array's real size in bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __poll_chk(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: c_int,
    fdslen: size_t,
) -> c_int {
    if (fdslen / std::mem::size_of::<pollfd>()) < n as usize {
        // SAFETY: glibc's fortify abort.
        unsafe { __chk_fail() }
    }
    // SAFETY: the caller's contract.
    unsafe { poll(fds, n, timeout) }
}

/// A relative `timespec` as a duration; EINVAL for a negative or out-of-range one.
pub(crate) fn duration(ts: &timespec) -> Result<Duration, c_int> {
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return Err(libc::EINVAL);
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// How long until the absolute `deadline` on `clock`.
pub(crate) fn until(clock: clockid_t, deadline: &timespec) -> Result<Duration, c_int> {
    let d = duration(deadline)?;
    let mut now = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we own; an unknown clock fails with EINVAL.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Err(libc::EINVAL);
    }
    let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
    Ok(d.saturating_sub(now))
}

/// A green thread's sleep: a timer of its carrier.
/// Sleeps the calling green thread for `d` on its carrier's timers; a signal handled meanwhile
/// ends the sleep early (as `EINTR` does): `Err` with the time left. A cancellation point.
fn green_sleep(d: Duration) -> Result<(), Duration> {
    cancel::point();
    let until = std::time::Instant::now() + d;
    loop {
        let now = std::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        {
            let _lib = rt::InLib::enter();
            flexsc_threads::park_deadline(until);
        }
        let handled = signal::handled_any();
        // A request cuts the sleep short (its interrupter ended the park).
        cancel::point();
        if handled {
            return Err(until.saturating_duration_since(now));
        }
    }
}

fn write_rem(rem: *mut timespec, left: Duration) {
    if !rem.is_null() {
        // SAFETY: the caller of the sleep passed `rem` writable (its contract).
        unsafe {
            (*rem).tv_sec = left.as_secs() as libc::time_t;
            (*rem).tv_nsec = libc::c_long::from(left.subsec_nanos() as i32);
        }
    }
}

/// `nanosleep`.
///
/// # Safety
/// As `nanosleep(2)`: `req` readable, `rem` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    if rt::on_green_thread() {
        // SAFETY: the caller's contract.
        return match duration(unsafe { &*req }) {
            Ok(d) => match green_sleep(d) {
                Ok(()) => 0,
                Err(left) => {
                    write_rem(rem, left);
                    set_errno(libc::EINTR);
                    -1
                }
            },
            Err(e) => {
                set_errno(e);
                -1
            }
        };
    }
    // SAFETY: forwarded unchanged.
    unsafe { real::nanosleep()(req, rem) }
}

/// `clock_nanosleep` (returns the error number, as POSIX says).
///
/// # Safety
/// As `clock_nanosleep(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    let known = matches!(
        clock,
        libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC | libc::CLOCK_BOOTTIME
    );
    if rt::on_green_thread() && known {
        // SAFETY: the caller's contract.
        let req = unsafe { &*req };
        let d = if flags & libc::TIMER_ABSTIME != 0 {
            until(clock, req)
        } else {
            duration(req)
        };
        let absolute = flags & libc::TIMER_ABSTIME != 0;
        return match d {
            Ok(d) => match green_sleep(d) {
                Ok(()) => 0,
                Err(left) => {
                    // An absolute sleep leaves `rem` alone.
                    if !absolute {
                        write_rem(rem, left);
                    }
                    libc::EINTR
                }
            },
            Err(e) => e,
        };
    }
    // SAFETY: forwarded unchanged (other clocks: glibc's, which blocks the carrier, correctly).
    unsafe { real::clock_nanosleep()(clock, flags, req, rem) }
}

/// `usleep`.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn usleep(us: useconds_t) -> c_int {
    if rt::on_green_thread() {
        if green_sleep(Duration::from_micros(us.into())).is_err() {
            set_errno(libc::EINTR);
            return -1;
        }
        return 0;
    }
    // SAFETY: no pointers.
    unsafe { real::usleep()(us) }
}

/// `sleep`.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn sleep(s: c_uint) -> c_uint {
    if rt::on_green_thread() {
        // The seconds left, rounded up, as glibc's sleep returns them.
        return match green_sleep(Duration::from_secs(s.into())) {
            Ok(()) => 0,
            Err(left) => left.as_secs_f64().ceil() as c_uint,
        };
    }
    // SAFETY: no pointers.
    unsafe { real::sleep()(s) }
}
