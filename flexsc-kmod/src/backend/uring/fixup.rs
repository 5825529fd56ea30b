//! Where io_uring's answer differs from the system call's, and how each difference is mapped
//! back, so that an entry completes as the synchronous call would have.
//!
//! io_uring runs a request on a pollable file (pipe, socket, tty, eventfd, ...) as a non-blocking
//! attempt followed, if that would block, by a wait for readiness: a blocking call's behaviour,
//! with three exceptions that this module corrects.
//!
//! - **`O_NONBLOCK` is ignored** (on current kernels for read and write too): the request waits where the call
//!   returns `-EAGAIN` (`-EINPROGRESS` for connect). So a request still pending once its
//!   non-blocking attempt has been made is [settled](Fix::settle): if its fd is `O_NONBLOCK`, and
//!   not a regular file or block device (which ignore the flag), it is cancelled, and the cancel
//!   answered with `-EAGAIN` (or with the bytes moved before it, which io_uring reports instead).
//! - **Offsets of non-seekable fds are ignored**: pread and friends on a pipe or socket transfer
//!   (or wait to), where the call fails with `-ESPIPE`. A positional request still pending after
//!   its first attempt on a pipe or socket is cancelled and answered `-ESPIPE`; one that found
//!   data transferred it (see `opcode`).
//! - **Short transfers end the request**: a write to a blocking pipe or socket completes with the
//!   part that fitted, where write(2) waits for room for the rest. write/writev continue on
//!   blocking streams here, as the kernel's own loop does (a later failure returns the bytes
//!   already written); sends carry `MSG_WAITALL`, with which io_uring continues by itself.
//!
//! The other differences are fixed where requests are built (`opcode`, which also lists the
//! documented divergences) or completed here:
//!
//! - `IORING_OP_CLOSE` refuses io_uring fds (`-EBADF`); close(2) closes them. A `-EBADF` close is
//!   rerun synchronously, unless the fd is this core's own ring.
//! - `IORING_OP_OPENAT` first tries with `O_NONBLOCK` added, so opening a FIFO for writing with no
//!   reader fails with `-ENXIO` where open(2) waits for one: that open is retried on an io-wq
//!   worker (`IOSQE_ASYNC`), which opens blocking.

use std::mem::MaybeUninit;

use io_uring::opcode::{Write, Writev};
use io_uring::squeue::{self, Flags};
use io_uring::types::Fd;

use super::poll::Waiting;
use crate::raw;

/// Offset -1: read or write at the file position, as read(2)/write(2) do.
pub(super) const CUR_POS: u64 = u64::MAX;

/// How a request's completion becomes the syscall's result.
#[derive(Debug)]
pub(super) enum Fix {
    /// The completion is the result.
    Exact,
    /// close(fd): rerun on `-EBADF` (io_uring fds).
    Close(i32),
    /// open for writing without `O_NONBLOCK`: retried blocking on `-ENXIO` (a FIFO).
    OpenForWrite(squeue::Entry),
    /// A call on an fd that may have to become ready first.
    Ready(Ready),
    /// A wait for readiness with a timeout: epoll_wait, poll of one fd (see `poll`).
    Poll(Waiting),
}

/// A call that io_uring may leave waiting where the call itself would return at once.
#[derive(Debug)]
pub(super) struct Ready {
    fd: i32,
    wait: Wait,
    /// Cancelled by [`Fix::settle`].
    cancelled: bool,
    /// What is known of the fd.
    state: FdState,
    /// write/writev: what is left to write on a blocking stream.
    rest: Option<Rest>,
}

/// When the call returns at once where io_uring waits.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// On an `O_NONBLOCK` fd it gives `-not_ready`. With `may_be_file` (the read/write family)
    /// the fd may be a regular file or block device, which ignore `O_NONBLOCK`.
    NonBlocking { may_be_file: bool, not_ready: i32 },
    /// A positional call (pread, pwrite, ...): on a pipe or socket it gives `-ESPIPE`, where
    /// io_uring ignores the offset and waits for data.
    Positional,
}

/// What is known of a request's fd, each fact looked up at most once per request. A lookup that
/// fails (the fd was closed meanwhile) reads as "no".
#[derive(Debug, Default)]
struct FdState {
    nonblocking: Option<bool>,
    /// `st_mode & S_IFMT` (0: unknown).
    kind: Option<u32>,
}

impl FdState {
    /// `O_NONBLOCK` is set. Asked of the kernel unless the fd's owner vouched for it as
    /// blocking ([`crate::fd_mode`]).
    fn nonblocking(&mut self, fd: i32) -> bool {
        *self.nonblocking.get_or_insert_with(|| {
            !crate::fd_mode::vouched_blocking(fd) && fd_nonblocking(fd) == Some(true)
        })
    }

    /// A regular file or block device: those ignore `O_NONBLOCK`, and io_uring completes their
    /// short transfers itself.
    fn file(&mut self, fd: i32) -> bool {
        matches!(self.kind(fd), libc::S_IFREG | libc::S_IFBLK)
    }

    /// A pipe or socket: never seekable.
    fn stream(&mut self, fd: i32) -> bool {
        matches!(self.kind(fd), libc::S_IFIFO | libc::S_IFSOCK)
    }

    fn kind(&mut self, fd: i32) -> u32 {
        *self.kind.get_or_insert_with(|| fd_kind(fd).unwrap_or(0))
    }
}

/// The progress of a write(v) that continues short writes.
#[derive(Debug)]
struct Rest {
    data: Data,
    rw_flags: i32,
    done: u64,
}

#[derive(Debug)]
enum Data {
    Buf {
        addr: u64,
        len: u64,
    },
    Iov {
        addr: u64,
        count: u64,
        total: Option<u64>,
        /// The iovecs of the request in flight, advanced past what is written (`iovec` layout;
        /// plain integers, so the fix stays `Send`).
        copy: Box<[[usize; 2]]>,
    },
}

const _: () = assert!(size_of::<libc::iovec>() == size_of::<[usize; 2]>());

/// What to do with a completion.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Complete the entry with this result.
    Done(i64),
    /// Issue this request for the same entry and wait for its completion instead.
    Again(squeue::Entry),
}

impl Fix {
    /// A call on `fd` that gives `-not_ready` when the fd is non-blocking and not ready.
    pub(super) fn ready(fd: u64, may_be_file: bool, not_ready: i32) -> Self {
        Self::waiting(
            fd,
            Wait::NonBlocking {
                may_be_file,
                not_ready,
            },
        )
    }

    /// A positional read or write on `fd`.
    pub(super) fn positional(fd: u64) -> Self {
        Self::waiting(fd, Wait::Positional)
    }

    fn waiting(fd: u64, wait: Wait) -> Self {
        Self::Ready(Ready {
            fd: fd as i32,
            wait,
            cancelled: false,
            state: FdState::default(),
            rest: None,
        })
    }

    /// write(fd, addr, len), or pwritev2 at the file position with `rw_flags`.
    pub(super) fn write(fd: u64, addr: u64, len: u64, rw_flags: i32) -> Self {
        Self::writing(fd, Data::Buf { addr, len }, rw_flags)
    }

    /// writev(fd, addr, count) (or pwritev2 at the file position with `rw_flags`).
    pub(super) fn writev(fd: u64, addr: u64, count: u64, rw_flags: i32) -> Self {
        let data = Data::Iov {
            addr,
            count,
            total: None,
            copy: Box::default(),
        };
        Self::writing(fd, data, rw_flags)
    }

    fn writing(fd: u64, data: Data, rw_flags: i32) -> Self {
        let mut fix = Self::ready(fd, true, libc::EAGAIN);
        if let Self::Ready(r) = &mut fix {
            r.rest = Some(Rest {
                data,
                rw_flags,
                done: 0,
            });
        }
        fix
    }

    /// A positional read or write with no follow-up: its completion is the result.
    pub(super) fn positional_only(&self) -> bool {
        matches!(self, Self::Ready(r) if matches!(r.wait, Wait::Positional) && r.rest.is_none())
    }

    /// Whether the request must be [settled](Self::settle) once its non-blocking attempt is made.
    pub(super) fn wants_settle(&self) -> bool {
        match self {
            Self::Ready(r) => !r.cancelled,
            Self::Poll(w) => w.wants_settle(),
            _ => false,
        }
    }

    /// The interval of the timer to link to the request when it is issued (None: no timer).
    pub(super) fn link_timeout(&self) -> Option<std::time::Duration> {
        match self {
            Self::Poll(w) => w.link_timeout(),
            _ => None,
        }
    }

    /// The request is still pending after its non-blocking attempt: returns whether to cancel
    /// it because the call itself would have returned at once.
    pub(super) fn settle(&mut self) -> bool {
        let r = match self {
            Self::Ready(r) => r,
            Self::Poll(w) => return w.settle(),
            _ => return false,
        };
        let (fd, state) = (r.fd, &mut r.state);
        let returns = match r.wait {
            Wait::NonBlocking { may_be_file, .. } => {
                state.nonblocking(fd) && !(may_be_file && state.file(fd))
            }
            Wait::Positional => state.stream(fd),
        };
        r.cancelled |= returns;
        returns
    }

    /// Maps completion `res`. `more`: whether follow-up requests may be issued (not while
    /// draining); `ring_fd`: this core's ring, which a close must not touch.
    pub(super) fn complete(&mut self, res: i32, more: bool, ring_fd: i32) -> Outcome {
        match self {
            Self::Exact => Outcome::Done(res.into()),
            Self::Close(fd) if res == -libc::EBADF && *fd != ring_fd => {
                Outcome::Done(close_now(*fd))
            }
            Self::Close(_) => Outcome::Done(res.into()),
            Self::OpenForWrite(sqe) if res == -libc::ENXIO && more => {
                let retry = sqe.clone().flags(Flags::ASYNC);
                *self = Self::Exact;
                Outcome::Again(retry)
            }
            Self::OpenForWrite(_) => Outcome::Done(res.into()),
            Self::Ready(r) => r.complete(res, more),
            Self::Poll(w) => w.complete(res, more),
        }
    }

    /// The final result `ret` of a request that was interrupted ([`crate::Poster::interrupt`]):
    /// what the interrupted call would have returned. The interrupt's cancel (`-ECANCELED`) is
    /// `-EINTR`, and so is an open for writing that found no reader (it would have waited). Any
    /// other result stands: the request completed anyway, moved bytes first (the partial count),
    /// or was answered by this module's own cancel (the call would not have waited at all).
    pub(super) fn interrupted(&self, ret: i64) -> i64 {
        let eintr = -i64::from(libc::EINTR);
        match self {
            _ if ret == -i64::from(libc::ECANCELED) => eintr,
            Self::OpenForWrite(_) if ret == -i64::from(libc::ENXIO) => eintr,
            _ => ret,
        }
    }
}

impl Ready {
    fn complete(&mut self, res: i32, more: bool) -> Outcome {
        if let Some(rest) = &mut self.rest {
            if res > 0 {
                rest.done += res as u64;
                if more
                    && !self.cancelled
                    && let Some(sqe) = rest.next(self.fd, &mut self.state)
                {
                    return Outcome::Again(sqe);
                }
            }
            // As the kernel's write loop: bytes already written win over a later error.
            if rest.done > 0 {
                return Outcome::Done(rest.done as i64);
            }
        }
        if self.cancelled && (res == -libc::ECANCELED || res == -libc::EINTR) {
            let errno = match self.wait {
                Wait::NonBlocking { not_ready, .. } => not_ready,
                Wait::Positional => libc::ESPIPE,
            };
            return Outcome::Done(-i64::from(errno));
        }
        Outcome::Done(res.into())
    }
}

impl Rest {
    /// The request for what is left, if the write was short on a blocking stream.
    fn next(&mut self, fd: i32, state: &mut FdState) -> Option<squeue::Entry> {
        let done = self.done;
        if done >= self.data.total() {
            return None;
        }
        // On a non-blocking fd the short write is the call's answer; on a regular file or block
        // device it is final too (io_uring already retried: the disk is full or a limit was hit).
        if state.nonblocking(fd) || state.file(fd) {
            return None;
        }
        let sqe = match &mut self.data {
            Data::Buf { addr, len } => {
                Write::new(Fd(fd), (*addr + done) as *const u8, (*len - done) as u32)
                    .offset(CUR_POS)
                    .rw_flags(self.rw_flags)
                    .build()
            }
            Data::Iov {
                addr, count, copy, ..
            } => {
                let mut iov = app_iovecs(*addr, *count);
                advance(&mut iov, done);
                *copy = iov.into_boxed_slice();
                Writev::new(Fd(fd), copy.as_ptr().cast(), copy.len() as u32)
                    .offset(CUR_POS)
                    .rw_flags(self.rw_flags)
                    .build()
            }
        };
        Some(sqe)
    }
}

impl Data {
    fn total(&mut self) -> u64 {
        match self {
            Self::Buf { len, .. } => *len,
            Self::Iov {
                addr, count, total, ..
            } => *total
                .get_or_insert_with(|| app_iovecs(*addr, *count).iter().map(|v| v[1] as u64).sum()),
        }
    }
}

/// A copy of the poster's iovec array of a writev that wrote something.
fn app_iovecs(addr: u64, count: u64) -> Vec<[usize; 2]> {
    (0..count as usize)
        .map(|i| {
            let p = (addr as usize as *const [usize; 2]).wrapping_add(i);
            // SAFETY: the kernel read this whole array (`count` <= UIO_MAXIOV entries) before
            // writing a byte, and the write succeeded, so it is mapped and readable; the poster
            // leaves a call's arguments alone until it takes the result. Unaligned: the kernel
            // accepts any alignment.
            unsafe { p.read_unaligned() }
        })
        .collect()
}

/// Drops the first `n` bytes from `iov`.
fn advance(iov: &mut Vec<[usize; 2]>, mut n: u64) {
    let whole = iov
        .iter()
        .take_while(|v| {
            let skip = v[1] as u64 <= n;
            if skip {
                n -= v[1] as u64;
            }
            skip
        })
        .count();
    iov.drain(..whole);
    if let Some(first) = iov.first_mut() {
        first[0] += n as usize;
        first[1] -= n as usize;
    }
}

/// Whether `fd` is `O_NONBLOCK` (None: not an open fd).
fn fd_nonblocking(fd: i32) -> Option<bool> {
    // SAFETY: F_GETFL only reads the fd's flags; no memory is passed.
    let r = unsafe { raw::syscall(libc::SYS_fcntl, [fd as u64, libc::F_GETFL as u64, 0]) };
    (r >= 0).then_some(r as i32 & libc::O_NONBLOCK != 0)
}

/// The file type of `fd` (`st_mode & S_IFMT`; None: not an open fd).
fn fd_kind(fd: i32) -> Option<u32> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one `struct stat` into our buffer, which outlives the call.
    let r = unsafe { raw::syscall(libc::SYS_fstat, [fd as u64, st.as_mut_ptr() as u64, 0]) };
    // SAFETY: fstat succeeded, so it filled the buffer.
    (r >= 0).then(|| unsafe { st.assume_init() }.st_mode & libc::S_IFMT)
}

/// close(2) of an fd that IORING_OP_CLOSE refused.
fn close_now(fd: i32) -> i64 {
    // SAFETY: the poster asked for exactly this close, and `fd` is not this backend's ring (the
    // caller checked); the call touches no memory.
    unsafe { raw::syscall(libc::SYS_close, [fd as u64, 0, 0]) }
}

#[cfg(test)]
mod tests {
    use super::advance;

    #[test]
    fn advance_skips_whole_and_partial_vectors() {
        let mut v = vec![[100, 4], [200, 0], [300, 8]];
        advance(&mut v, 6);
        assert_eq!(v, vec![[302, 6]]);
        let mut v = vec![[100, 4], [300, 8]];
        advance(&mut v, 4);
        assert_eq!(v, vec![[300, 8]]);
    }
}
