#![allow(non_upper_case_globals)] // libc's SYS_* names
//! Which syscall entries io_uring runs, and the request (SQE) for each (x86_64 numbering).
//!
//! A call goes to io_uring only when a request gives exactly the call's result; anything else
//! goes to the syscall threads. In particular these go to the threads, because io_uring would
//! answer differently:
//!
//! - lengths an SQE cannot hold: read/write/send/recv counts above `MAX_RW_COUNT` (the kernel
//!   clamps those only after checking the whole buffer), vector counts above `MAX_IOV`,
//!   fadvise/madvise/splice/tee lengths above `u32::MAX`;
//! - negative offsets and lengths (pread/pwrite/preadv/pwritev/ftruncate), which the call rejects
//!   with `-EINVAL` before looking at the fd, while io_uring reads `-1` as "file position";
//! - `RWF_HIPRI` and unknown `RWF_*` flags, `MSG_CMSG_COMPAT`, and splice/tee flags outside
//!   `SPLICE_F_ALL` (the SQE gives one bit of those a meaning of its own);
//! - splice with offset pointers (the call reads and updates `*off`; the SQE takes a value),
//!   splice and tee of 0 bytes (the call returns 0 before looking at the fds);
//! - recvfrom with an address buffer, statx with a NULL path (io_uring reads it: `-EFAULT`);
//! - sendto with an address when the kernel is older than 6.0.
//!
//! Readiness waits (`epoll_wait`; `epoll_pwait`, `epoll_pwait2` and `ppoll` without a signal
//! mask; `poll`/`ppoll` of one fd asking for input) are built by `poll`, whose header says what
//! IORING_OP_EPOLL_WAIT and IORING_OP_POLL_ADD do and how their answers are made the calls'.
//!
//! Divergences left (documented, not corrected):
//!
//! - epoll_wait at its timeout does not look at the ready list a last time (an event arriving
//!   as the timer fires is reported by the next call), and its timer has no slack (see `poll`).
//! - pread/pwrite/preadv(2)/pwritev(2) on a pipe or socket with data (or room) ready: io_uring
//!   ignores the offset and transfers, where the call fails with `-ESPIPE`. (When it would have
//!   to wait, `fixup` cancels it and answers `-ESPIPE`.) Non-seekable character devices (ttys)
//!   are not recognised at all.
//! - Socket send calls never raise SIGPIPE (io_uring always adds `MSG_NOSIGNAL`); `-EPIPE` is
//!   returned as usual. (A syscall thread raises it on itself, where it is blocked: the same.)
//! - `SO_RCVTIMEO`/`SO_SNDTIMEO` are not applied: io_uring waits for readiness without a timeout.
//! - Opening a FIFO for reading returns at once instead of waiting for a writer (the open is first
//!   tried with `O_NONBLOCK`, which succeeds).
//! - Calls at the file position (read, write, readv, writev) on one fd in one batch are not
//!   serialised by the file position lock: two may start at the same position (as with two
//!   threads on two `dup`s of the fd).

use io_uring::opcode::{self as op};
use io_uring::squeue::{Entry, Flags};
use io_uring::types::{self, Fd, FsyncFlags};
use libc::{c_char, c_long, iovec, mode_t};

use super::fixup::{CUR_POS, Fix};
use super::poll;
use super::ring::Caps;
use super::specialize::Fixed;
use crate::entry::NR_NOP;

/// Where an entry's call runs.
#[derive(Debug)]
pub(super) enum Route {
    /// On the ring, as this request, completed through this fix.
    Ring(Entry, Fix),
    /// On a syscall thread.
    Fallback,
}

/// The largest transfer a single read or write makes (`INT_MAX` rounded down to a page).
const MAX_RW_COUNT: u64 = (i32::MAX as u64) & !4095;
/// The largest vector count readv and writev accept.
const MAX_IOV: u64 = libc::UIO_MAXIOV as u64;
/// `RWF_*` flags io_uring applies exactly as preadv2/pwritev2 do (RWF_HIPRI needs an IOPOLL
/// ring; newer flags are left to the call itself).
const RWF_EXACT: i32 =
    libc::RWF_DSYNC | libc::RWF_SYNC | libc::RWF_NOWAIT | libc::RWF_APPEND | libc::RWF_NOAPPEND;
/// `MSG_CMSG_COMPAT`: the syscalls reject it; io_uring would parse 32-bit control messages.
const MSG_CMSG_COMPAT: u64 = 0x8000_0000;
/// `SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT`.
const SPLICE_F_ALL: u64 = 0xf;

/// The request for call `nr` with `a`, if io_uring runs it exactly. With `fixed` (a specialized
/// fd or a shared buffer, see `specialize`; only for the calls it names) the request names the
/// first argument's file by its fixed slot if it has one, and the buffer by its fixed buffer if
/// it has one.
pub(super) fn route(nr: u16, a: &[u64; 6], caps: &Caps, fixed: Option<Fixed>) -> Route {
    let built = match fixed {
        Some(f) => fixed_buffer_request(nr, a, caps, f)
            .or_else(|| request(nr, a, caps, f.slot))
            .map(|(code, sqe, fix)| match f.slot {
                Some(_) => (code, sqe.flags(Flags::FIXED_FILE), fix),
                None => (code, sqe, fix),
            }),
        None => request(nr, a, caps, None),
    };
    match built {
        Some((code, sqe, fix)) if caps.has(code) => Route::Ring(sqe, fix),
        _ => Route::Fallback,
    }
}

/// read/write/pread/pwrite of a buffer inside fixed buffer `f.buf`, on fixed file `f.slot` (or
/// the fd): the same checks and fixes as the plain requests in `request`.
fn fixed_buffer_request(nr: u16, a: &[u64; 6], caps: &Caps, f: Fixed) -> Option<(u8, Entry, Fix)> {
    use libc::*;
    let index = f.buf?;
    let file = Fd(f.slot.map_or(a[0] as i32, |s| s as i32));
    let (buf, len) = (a[1] as *mut u8, a[2] as u32);
    if a[2] > MAX_RW_COUNT {
        return None;
    }
    let pos_ok = (a[3] as i64) >= 0;
    match nr as c_long {
        SYS_read if caps.cur_pos => {
            let sqe = op::ReadFixed::new(file, buf, len, index).offset(CUR_POS);
            let fix = Fix::ready(a[0], true, EAGAIN);
            Some((op::ReadFixed::CODE, sqe.build(), fix))
        }
        SYS_write if caps.cur_pos => {
            let sqe = op::WriteFixed::new(file, buf, len, index).offset(CUR_POS);
            let fix = Fix::write(a[0], a[1], a[2], 0);
            Some((op::WriteFixed::CODE, sqe.build(), fix))
        }
        SYS_pread64 if pos_ok => {
            let sqe = op::ReadFixed::new(file, buf, len, index).offset(a[3]);
            Some((op::ReadFixed::CODE, sqe.build(), Fix::positional(a[0])))
        }
        SYS_pwrite64 if pos_ok => {
            let sqe = op::WriteFixed::new(file, buf, len, index).offset(a[3]);
            Some((op::WriteFixed::CODE, sqe.build(), Fix::positional(a[0])))
        }
        _ => None,
    }
}

fn request(nr: u16, a: &[u64; 6], caps: &Caps, slot: Option<u32>) -> Option<(u8, Entry, Fix)> {
    use libc::*;
    if nr == NR_NOP {
        return Some((op::Nop::CODE, op::Nop::new().build(), Fix::Exact));
    }
    // A specialized fd is named by its fixed slot (the caller sets IOSQE_FIXED_FILE).
    let fd = |i: usize| match slot {
        Some(s) if i == 0 => Fd(s as i32),
        _ => Fd(a[i] as i32),
    };
    let cwd = Fd(AT_FDCWD);
    let path = |i: usize| a[i] as usize as *const c_char;
    let exact = |code: u8, sqe: Entry| Some((code, sqe, Fix::Exact));
    // read/write family: bounded length, and `-1` (file position) only where the kernel has it.
    let len_ok = |i: usize| a[i] <= MAX_RW_COUNT;
    let vlen_ok = |i: usize| a[i] <= MAX_IOV;
    let pos_ok = |i: usize| (a[i] as i64) >= 0;
    let cur_pos = caps.cur_pos;
    match nr as c_long {
        SYS_read if len_ok(2) && cur_pos => {
            let sqe = op::Read::new(fd(0), a[1] as *mut u8, a[2] as u32).offset(CUR_POS);
            Some((op::Read::CODE, sqe.build(), Fix::ready(a[0], true, EAGAIN)))
        }
        SYS_write if len_ok(2) && cur_pos => {
            let sqe = op::Write::new(fd(0), a[1] as *const u8, a[2] as u32).offset(CUR_POS);
            Some((
                op::Write::CODE,
                sqe.build(),
                Fix::write(a[0], a[1], a[2], 0),
            ))
        }
        SYS_pread64 if len_ok(2) && pos_ok(3) => {
            let sqe = op::Read::new(fd(0), a[1] as *mut u8, a[2] as u32).offset(a[3]);
            Some((op::Read::CODE, sqe.build(), Fix::positional(a[0])))
        }
        SYS_pwrite64 if len_ok(2) && pos_ok(3) => {
            let sqe = op::Write::new(fd(0), a[1] as *const u8, a[2] as u32).offset(a[3]);
            Some((op::Write::CODE, sqe.build(), Fix::positional(a[0])))
        }
        SYS_readv if vlen_ok(2) && cur_pos => {
            let sqe = op::Readv::new(fd(0), a[1] as *const iovec, a[2] as u32).offset(CUR_POS);
            Some((op::Readv::CODE, sqe.build(), Fix::ready(a[0], true, EAGAIN)))
        }
        SYS_writev if vlen_ok(2) && cur_pos => {
            let sqe = op::Writev::new(fd(0), a[1] as *const iovec, a[2] as u32).offset(CUR_POS);
            Some((
                op::Writev::CODE,
                sqe.build(),
                Fix::writev(a[0], a[1], a[2], 0),
            ))
        }
        // On x86_64 the offset is the low word alone (the high word shifts out).
        SYS_preadv if vlen_ok(2) && pos_ok(3) => {
            let sqe = op::Readv::new(fd(0), a[1] as *const iovec, a[2] as u32).offset(a[3]);
            Some((op::Readv::CODE, sqe.build(), Fix::positional(a[0])))
        }
        SYS_pwritev if vlen_ok(2) && pos_ok(3) => {
            let sqe = op::Writev::new(fd(0), a[1] as *const iovec, a[2] as u32).offset(a[3]);
            Some((op::Writev::CODE, sqe.build(), Fix::positional(a[0])))
        }
        SYS_preadv2 | SYS_pwritev2 => rw2(nr as c_long, a, caps),
        SYS_fsync => exact(op::Fsync::CODE, op::Fsync::new(fd(0)).build()),
        SYS_fdatasync => {
            let sqe = op::Fsync::new(fd(0)).flags(FsyncFlags::DATASYNC);
            exact(op::Fsync::CODE, sqe.build())
        }
        SYS_sendmsg | SYS_recvmsg if a[2] & MSG_CMSG_COMPAT != 0 => None,
        SYS_sendmsg => {
            let flags = waitall(a[2]);
            let sqe = op::SendMsg::new(fd(0), a[1] as *const msghdr).flags(flags);
            Some((op::SendMsg::CODE, sqe.build(), socket_fix(a[0], a[2])))
        }
        SYS_recvmsg => {
            let sqe = op::RecvMsg::new(fd(0), a[1] as *mut msghdr).flags(a[2] as u32);
            Some((op::RecvMsg::CODE, sqe.build(), socket_fix(a[0], a[2])))
        }
        SYS_sendto if len_ok(2) && (a[4] == 0 || caps.has(op::SendZc::CODE)) => {
            // SEND with a destination came with SEND_ZC, in 6.0.
            let mut sqe =
                op::Send::new(fd(0), a[1] as *const u8, a[2] as u32).flags(waitall(a[3]) as i32);
            if a[4] != 0 {
                sqe = sqe
                    .dest_addr(a[4] as *const sockaddr)
                    .dest_addr_len(a[5] as socklen_t);
            }
            Some((op::Send::CODE, sqe.build(), socket_fix(a[0], a[3])))
        }
        SYS_recvfrom if len_ok(2) && a[4] == 0 => {
            let sqe = op::Recv::new(fd(0), a[1] as *mut u8, a[2] as u32).flags(a[3] as i32);
            Some((op::Recv::CODE, sqe.build(), socket_fix(a[0], a[3])))
        }
        SYS_accept | SYS_accept4 => {
            let flags = if nr as c_long == SYS_accept4 {
                a[3] as i32
            } else {
                0
            };
            let sqe =
                op::Accept::new(fd(0), a[1] as *mut sockaddr, a[2] as *mut socklen_t).flags(flags);
            Some((
                op::Accept::CODE,
                sqe.build(),
                Fix::ready(a[0], false, EAGAIN),
            ))
        }
        SYS_connect => {
            let sqe = op::Connect::new(fd(0), a[1] as *const sockaddr, a[2] as socklen_t);
            Some((
                op::Connect::CODE,
                sqe.build(),
                Fix::ready(a[0], false, EINPROGRESS),
            ))
        }
        SYS_open => open_req(cwd, path(0), a[1], a[2]),
        SYS_openat => open_req(fd(0), path(1), a[2], a[3]),
        SYS_close => Some((
            op::Close::CODE,
            op::Close::new(fd(0)).build(),
            Fix::Close(a[0] as i32),
        )),
        SYS_statx if a[1] != 0 => {
            let sqe = op::Statx::new(fd(0), path(1), a[4] as *mut types::statx)
                .flags(a[2] as i32)
                .mask(a[3] as u32);
            exact(op::Statx::CODE, sqe.build())
        }
        SYS_fallocate => {
            let sqe = op::Fallocate::new(fd(0), a[3])
                .offset(a[2])
                .mode(a[1] as i32);
            exact(op::Fallocate::CODE, sqe.build())
        }
        SYS_fadvise64 if a[2] <= u32::MAX.into() => {
            let sqe = op::Fadvise::new(fd(0), a[2] as off_t, a[3] as i32).offset(a[1]);
            exact(op::Fadvise::CODE, sqe.build())
        }
        SYS_madvise if a[1] <= u32::MAX.into() => {
            let sqe = op::Madvise::new(a[0] as *const c_void, a[1] as off_t, a[2] as i32);
            exact(op::Madvise::CODE, sqe.build())
        }
        SYS_epoll_wait => poll::epoll_wait(a, caps),
        SYS_epoll_pwait if a[4] == 0 => poll::epoll_wait(a, caps),
        SYS_epoll_pwait2 => poll::epoll_pwait2(a, caps),
        SYS_poll => poll::poll(a, caps),
        SYS_ppoll => poll::ppoll(a, caps),
        SYS_epoll_ctl => {
            let ev = a[3] as *const types::epoll_event;
            let sqe = op::EpollCtl::new(fd(0), fd(2), a[1] as i32, ev);
            exact(op::EpollCtl::CODE, sqe.build())
        }
        SYS_splice
            if a[1] == 0
                && a[3] == 0
                && (1..=u32::MAX.into()).contains(&a[4])
                && a[5] & !SPLICE_F_ALL == 0 =>
        {
            let sqe = op::Splice::new(fd(0), -1, fd(2), -1, a[4] as u32).flags(a[5] as u32);
            exact(op::Splice::CODE, sqe.build())
        }
        SYS_tee if (1..=u32::MAX.into()).contains(&a[2]) && a[3] & !SPLICE_F_ALL == 0 => {
            let sqe = op::Tee::new(fd(0), fd(1), a[2] as u32).flags(a[3] as u32);
            exact(op::Tee::CODE, sqe.build())
        }
        SYS_shutdown => exact(
            op::Shutdown::CODE,
            op::Shutdown::new(fd(0), a[1] as i32).build(),
        ),
        SYS_rename => rename_req(cwd, path(0), cwd, path(1), 0),
        SYS_renameat => rename_req(fd(0), path(1), fd(2), path(3), 0),
        SYS_renameat2 => rename_req(fd(0), path(1), fd(2), path(3), a[4] as u32),
        SYS_unlink => unlink_req(cwd, path(0), 0),
        SYS_rmdir => unlink_req(cwd, path(0), AT_REMOVEDIR),
        SYS_unlinkat => unlink_req(fd(0), path(1), a[2] as i32),
        SYS_mkdir => mkdir_req(cwd, path(0), a[1]),
        SYS_mkdirat => mkdir_req(fd(0), path(1), a[2]),
        SYS_symlink => symlink_req(path(0), cwd, path(1)),
        SYS_symlinkat => symlink_req(path(0), fd(1), path(2)),
        SYS_link => link_req(cwd, path(0), cwd, path(1), 0),
        SYS_linkat => link_req(fd(0), path(1), fd(2), path(3), a[4] as i32),
        SYS_socket => {
            let sqe = op::Socket::new(a[0] as i32, a[1] as i32, a[2] as i32);
            exact(op::Socket::CODE, sqe.build())
        }
        SYS_ftruncate if pos_ok(1) => {
            exact(op::Ftruncate::CODE, op::Ftruncate::new(fd(0), a[1]).build())
        }
        SYS_bind => {
            let sqe = op::Bind::new(fd(0), a[1] as *const sockaddr, a[2] as socklen_t);
            exact(op::Bind::CODE, sqe.build())
        }
        SYS_listen => exact(
            op::Listen::CODE,
            op::Listen::new(fd(0), a[1] as i32).build(),
        ),
        _ => None,
    }
}

/// preadv2/pwritev2: offset -1 is the file position (like readv/writev), other negative offsets
/// are `-EINVAL`.
fn rw2(nr: c_long, a: &[u64; 6], caps: &Caps) -> Option<(u8, Entry, Fix)> {
    let (pos, flags) = (a[3] as i64, a[5] as i32);
    if a[2] > MAX_IOV || pos < -1 || flags & !RWF_EXACT != 0 || (pos == -1 && !caps.cur_pos) {
        return None;
    }
    // With RWF_NOWAIT the caller asked not to wait, and io_uring honours that by itself.
    let nowait = flags & libc::RWF_NOWAIT != 0;
    let (fd, iov, n) = (Fd(a[0] as i32), a[1] as *const iovec, a[2] as u32);
    if nr == libc::SYS_preadv2 {
        let sqe = op::Readv::new(fd, iov, n)
            .offset(pos as u64)
            .rw_flags(flags);
        let fix = match (pos, nowait) {
            (_, true) => Fix::Exact,
            (-1, false) => Fix::ready(a[0], true, libc::EAGAIN),
            _ => Fix::positional(a[0]),
        };
        Some((op::Readv::CODE, sqe.build(), fix))
    } else {
        let sqe = op::Writev::new(fd, iov, n)
            .offset(pos as u64)
            .rw_flags(flags);
        let fix = match (pos, nowait) {
            (_, true) => Fix::Exact,
            (-1, false) => Fix::writev(a[0], a[1], a[2], flags),
            _ => Fix::positional(a[0]),
        };
        Some((op::Writev::CODE, sqe.build(), fix))
    }
}

/// Sends wait for the whole buffer on a blocking stream socket, as the call does; io_uring stops
/// after a partial send unless asked for all of it. (Senders ignore the flag otherwise.)
fn waitall(flags: u64) -> u32 {
    let flags = flags as u32;
    if flags & libc::MSG_DONTWAIT as u32 != 0 {
        flags
    } else {
        flags | libc::MSG_WAITALL as u32
    }
}

/// A socket call: with MSG_DONTWAIT io_uring returns `-EAGAIN` itself; otherwise it depends on
/// the socket's O_NONBLOCK.
fn socket_fix(fd: u64, flags: u64) -> Fix {
    if flags & libc::MSG_DONTWAIT as u64 != 0 {
        Fix::Exact
    } else {
        Fix::ready(fd, false, libc::EAGAIN)
    }
}

fn open_req(dir: Fd, path: *const c_char, flags: u64, mode: u64) -> Option<(u8, Entry, Fix)> {
    let flags = flags as i32;
    let sqe = op::OpenAt::new(dir, path)
        .flags(flags)
        .mode(mode as mode_t)
        .build();
    let blocking_write =
        flags & libc::O_ACCMODE == libc::O_WRONLY && flags & (libc::O_NONBLOCK | libc::O_PATH) == 0;
    let fix = if blocking_write {
        Fix::OpenForWrite(sqe.clone())
    } else {
        Fix::Exact
    };
    Some((op::OpenAt::CODE, sqe, fix))
}

fn rename_req(
    old_dir: Fd,
    old: *const c_char,
    new_dir: Fd,
    new: *const c_char,
    flags: u32,
) -> Option<(u8, Entry, Fix)> {
    let sqe = op::RenameAt::new(old_dir, old, new_dir, new).flags(flags);
    Some((op::RenameAt::CODE, sqe.build(), Fix::Exact))
}

fn unlink_req(dir: Fd, path: *const c_char, flags: i32) -> Option<(u8, Entry, Fix)> {
    let sqe = op::UnlinkAt::new(dir, path).flags(flags);
    Some((op::UnlinkAt::CODE, sqe.build(), Fix::Exact))
}

fn mkdir_req(dir: Fd, path: *const c_char, mode: u64) -> Option<(u8, Entry, Fix)> {
    let sqe = op::MkDirAt::new(dir, path).mode(mode as mode_t);
    Some((op::MkDirAt::CODE, sqe.build(), Fix::Exact))
}

fn symlink_req(target: *const c_char, dir: Fd, path: *const c_char) -> Option<(u8, Entry, Fix)> {
    let sqe = op::SymlinkAt::new(dir, target, path);
    Some((op::SymlinkAt::CODE, sqe.build(), Fix::Exact))
}

fn link_req(
    old_dir: Fd,
    old: *const c_char,
    new_dir: Fd,
    new: *const c_char,
    flags: i32,
) -> Option<(u8, Entry, Fix)> {
    let sqe = op::LinkAt::new(old_dir, old, new_dir, new).flags(flags);
    Some((op::LinkAt::CODE, sqe.build(), Fix::Exact))
}
