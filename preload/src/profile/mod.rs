//! The syscall profiler's recorder (`flexsc profile`, issue 7): with `FLEXSC_PROFILE=DIR` in the
//! environment, every call the library's exports see (on green threads: those it posts; on OS
//! threads: those it forwards to glibc) is appended, as a fixed 16-byte
//! [`Record`] (number, descriptor and its kind, open flags or
//! path hash or size, result), to the calling thread's ring buffer ([`ring`]); at exit the process
//! writes its rings to `DIR/PID.fxp` ([`dump`]), which `flexsc profile` reads.
//!
//! Off (no `FLEXSC_PROFILE`), the recording path is one relaxed load. On, it takes no lock and
//! makes no system call. Only calls that reach the exports are seen: glibc's internal calls
//! (stdio's writes, `fopen`), raw `syscall` instructions and calls the preload does not
//! interpose (`mmap`, `socket`, `pipe2`) are not; `strace` sees those (`flexsc profile
//! --strace`). A fork child records anew and dumps its own file; a process that ends in `_exit`,
//! `exec` or a fatal signal writes nothing.

mod dump;
mod fd_kinds;
mod ring;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use flexsc_profile::FdKind;
use flexsc_profile::call::{open_flags, path_hash};
use flexsc_profile::record::{DIR_VAR, NO_FD, RING_VAR, Record};
use libc::{c_char, iovec, msghdr};

use crate::rt;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The dump directory, NUL-terminated.
static DIR: OnceLock<Vec<u8>> = OnceLock::new();

/// Reads the variables when the library is loaded.
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    let Some(dir) = env(DIR_VAR).filter(|d| !d.is_empty()) else {
        return;
    };
    if let Some(n) = env(RING_VAR).and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok()) {
        ring::set_capacity(n);
    }
    let mut dir = dir;
    dir.push(0);
    let _ = DIR.set(dir);
    fd_kinds::classify_inherited();
    // SAFETY: plain functions; failure (ENOMEM) only loses the dump or the fork handling.
    unsafe {
        libc::atexit(dump_at_exit);
        libc::pthread_atfork(None, None, Some(forget_parent));
    }
    ENABLED.store(true, Ordering::Release);
}

/// A variable's bytes, read with glibc's getenv (std's environment is not needed this early).
fn env(name: &str) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; getenv returns null or a NUL-terminated value.
    let p = unsafe { libc::getenv(c.as_ptr()) };
    // SAFETY: non-null: a NUL-terminated string owned by the environment.
    (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes().to_vec())
}

extern "C" fn dump_at_exit() {
    if let Some(dir) = DIR.get() {
        dump::write(dir);
    }
}

extern "C" fn forget_parent() {
    ring::forget_parent();
}

/// What the record of call `nr` needs from before the call runs: the kind of the descriptor a
/// `close` frees, forgotten now (once the close returns, another thread's `open` or `accept` may
/// be given the same number and record its kind before this thread records the close).
#[inline]
pub(crate) fn before(nr: i64, args: &[u64]) -> FdKind {
    if nr != libc::SYS_close || !ENABLED.load(Ordering::Relaxed) {
        return FdKind::Unknown;
    }
    let fd = args.first().copied().unwrap_or(u64::MAX) as i32;
    let kind = fd_kinds::get(fd);
    fd_kinds::set(fd, FdKind::Unknown);
    kind
}

/// Records call `nr` with `args`, its raw result `ret` (negative errno on failure) and what
/// [`before`] said, if recording is on and the caller is the application.
///
/// # Safety
/// The pointers among `args` are still valid (the call just returned to its caller's frame).
#[inline]
pub(crate) unsafe fn record(nr: i64, args: &[u64], ret: i64, before: FdKind) {
    if !ENABLED.load(Ordering::Relaxed) || !rt::application_caller() {
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { record_on(nr, args, ret, before) };
}

/// [`record`] for a result as libc returns it (-1 with `errno`).
///
/// # Safety
/// As [`record`].
#[inline]
pub(crate) unsafe fn record_libc(nr: i64, args: &[u64], ret: i64, before: FdKind) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let ret = if ret == -1 {
        // SAFETY: the calling thread's errno.
        -i64::from(unsafe { *libc::__errno_location() })
    } else {
        ret
    };
    // SAFETY: the caller's contract.
    unsafe { record(nr, args, ret, before) };
}

/// Builds the record and pushes it.
///
/// # Safety
/// As [`record`].
unsafe fn record_on(nr: i64, args: &[u64], ret: i64, before: FdKind) {
    let arg = |i: usize| args.get(i).copied().unwrap_or(0);
    let mut r = Record {
        nr: nr as u16,
        ret: ret.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        fd: NO_FD,
        ..Record::default()
    };
    let made = i32::try_from(ret).ok().filter(|&fd| fd >= 0);
    match nr {
        libc::SYS_openat => {
            let flags = arg(2) as i32;
            r.flags = open_flags::from_linux(flags);
            // SAFETY: the caller's path, valid for the call.
            r.arg = unsafe { hash_path(arg(1)) };
            if let Some(fd) = made {
                let dir = flags & libc::O_DIRECTORY != 0;
                fd_kinds::set(fd, if dir { FdKind::Dir } else { FdKind::File });
            }
        }
        libc::SYS_newfstatat | libc::SYS_statx => {
            // SAFETY: as above.
            r.arg = unsafe { hash_path(arg(1)) };
        }
        _ => {
            if let Some(fd) = fd_of(nr).map(|i| arg(i) as i32) {
                r.fd = fd;
                let kind = match nr {
                    libc::SYS_close => before,
                    _ if socket_only(nr) => FdKind::Socket,
                    libc::SYS_epoll_wait | libc::SYS_epoll_pwait | libc::SYS_epoll_pwait2 => {
                        FdKind::Epoll
                    }
                    _ => fd_kinds::get(fd),
                };
                r.kind = kind as u8;
                if kind != FdKind::Unknown && nr != libc::SYS_close {
                    fd_kinds::set(fd, kind);
                }
                // SAFETY: the caller's buffers and descriptors, valid for the call.
                r.arg = unsafe { detail(nr, args) };
                match nr {
                    libc::SYS_accept | libc::SYS_accept4 => {
                        if let Some(new) = made {
                            fd_kinds::set(new, FdKind::Socket);
                        }
                    }
                    libc::SYS_fcntl
                        if matches!(arg(1) as i32, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC) =>
                    {
                        if let Some(new) = made {
                            fd_kinds::set(new, kind);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    ring::push(r);
}

/// Which argument of call `nr` is the descriptor it works on, for the calls the exports make.
fn fd_of(nr: i64) -> Option<usize> {
    match nr {
        libc::SYS_read
        | libc::SYS_write
        | libc::SYS_pread64
        | libc::SYS_pwrite64
        | libc::SYS_readv
        | libc::SYS_writev
        | libc::SYS_preadv
        | libc::SYS_pwritev
        | libc::SYS_preadv2
        | libc::SYS_pwritev2
        | libc::SYS_close
        | libc::SYS_fstat
        | libc::SYS_fcntl
        | libc::SYS_fsync
        | libc::SYS_fdatasync
        | libc::SYS_flock
        | libc::SYS_sendfile
        | libc::SYS_splice
        | libc::SYS_tee
        | libc::SYS_vmsplice
        | libc::SYS_epoll_wait
        | libc::SYS_epoll_pwait
        | libc::SYS_epoll_pwait2
        | libc::SYS_lseek
        | libc::SYS_ftruncate
        | libc::SYS_ioctl => Some(0),
        _ if socket_only(nr) => Some(0),
        _ => None,
    }
}

/// Calls that only work on sockets.
fn socket_only(nr: i64) -> bool {
    matches!(
        nr,
        libc::SYS_recvfrom
            | libc::SYS_sendto
            | libc::SYS_recvmsg
            | libc::SYS_sendmsg
            | libc::SYS_recvmmsg
            | libc::SYS_sendmmsg
            | libc::SYS_accept
            | libc::SYS_accept4
            | libc::SYS_connect
            | libc::SYS_shutdown
            | libc::SYS_bind
            | libc::SYS_listen
            | libc::SYS_getsockopt
            | libc::SYS_setsockopt
    )
}

/// The record's `arg` for a call on a descriptor: the bytes asked for (reads and writes), or the
/// command (`fcntl`).
///
/// # Safety
/// The call's pointers valid (vectors, message headers).
unsafe fn detail(nr: i64, args: &[u64]) -> u32 {
    let arg = |i: usize| args.get(i).copied().unwrap_or(0);
    let bytes: u64 = match nr {
        libc::SYS_fcntl => return arg(1) as u32,
        libc::SYS_read
        | libc::SYS_write
        | libc::SYS_pread64
        | libc::SYS_pwrite64
        | libc::SYS_recvfrom
        | libc::SYS_sendto => arg(2),
        libc::SYS_sendfile => arg(3),
        libc::SYS_splice => arg(4),
        libc::SYS_readv
        | libc::SYS_writev
        | libc::SYS_preadv
        | libc::SYS_pwritev
        | libc::SYS_preadv2
        | libc::SYS_pwritev2 => {
            // SAFETY: the caller's vector.
            unsafe { iov_bytes(arg(1) as *const iovec, arg(2) as usize) }
        }
        libc::SYS_sendmsg | libc::SYS_recvmsg => {
            let m = arg(1) as *const msghdr;
            if m.is_null() {
                0
            } else {
                // SAFETY: the caller's message header and its vector.
                unsafe { iov_bytes((*m).msg_iov, (*m).msg_iovlen) }
            }
        }
        _ => 0,
    };
    bytes.min(u64::from(u32::MAX)) as u32
}

/// The total length of an iovec array (at most `IOV_MAX` entries are read).
///
/// # Safety
/// `iov` null or valid for `n` entries.
unsafe fn iov_bytes(iov: *const iovec, n: usize) -> u64 {
    if iov.is_null() {
        return 0;
    }
    // SAFETY: the caller's contract (the kernel refuses more than IOV_MAX, 1024).
    let v = unsafe { std::slice::from_raw_parts(iov, n.min(1024)) };
    v.iter().map(|e| e.iov_len as u64).sum()
}

/// The path's hash (0 for a null or empty path: the call works on its descriptor then).
///
/// # Safety
/// `p` null or a NUL-terminated string.
unsafe fn hash_path(p: u64) -> u32 {
    if p == 0 {
        return 0;
    }
    // SAFETY: the caller's contract.
    let s = unsafe { std::ffi::CStr::from_ptr(p as *const c_char) };
    if s.is_empty() {
        0
    } else {
        path_hash(s.to_bytes())
    }
}
