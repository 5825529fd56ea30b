//! Waits for readiness on the ring: `epoll_wait`/`epoll_pwait`/`epoll_pwait2` as
//! `IORING_OP_EPOLL_WAIT` (6.15+) and `poll`/`ppoll` of one descriptor as `IORING_OP_POLL_ADD`,
//! each with a linked `IORING_OP_LINK_TIMEOUT` for a positive timeout, none for an infinite one.
//! Without these the calls go to a syscall thread: a futex hop per wait (issue 6,
//! docs/results.md).
//!
//! What the kernel's requests do, and how each answer becomes the call's:
//!
//! - **EPOLL_WAIT** (io_uring/epoll.c, 6.15): `epoll_sendevents` runs the syscall's own parameter
//!   checks (`ep_check_params`: `maxevents` <= 0 or above `EP_MAX_EVENTS` is `-EINVAL`, an array
//!   outside user space `-EFAULT`, a file that is no epoll instance `-EINVAL`; a closed fd is
//!   `-EBADF` before those, as for the syscall) and copies the ready events with
//!   `ep_try_send_events`, the syscall's copy (a fault on the first event is `-EFAULT`). With no
//!   event ready it answers `-EAGAIN` to io_uring, which arms a poll on the epoll fd (`pollin`)
//!   and retries when it becomes readable. So the count of events, the errors and the array's
//!   contents are the syscall's; a completion is never 0.
//! - **POLL_ADD**: waits until `vfs_poll(file) & (events | POLLERR | POLLHUP | POLLNVAL |
//!   POLLRDHUP)` is non-zero and completes with that mask. poll(2) reports `events` and
//!   `POLLERR | POLLHUP` only: the mask is filtered. A completion left empty would be
//!   `POLLRDHUP` alone, not asked for: a peer's shutdown, which lasts, so re-arming would spin.
//!   Only polls that ask for `POLLIN`, `POLLRDNORM` or `POLLRDHUP` come here: sockets report
//!   `POLLRDHUP` with `POLLIN | POLLRDNORM`, so theirs are never empty (an empty one from some
//!   other file is re-armed). A closed fd is `-EBADF` where poll(2) reports `POLLNVAL` and
//!   counts the fd: answered so. `revents` is written back (`0` on a timeout or an interrupt, as
//!   poll(2) does) and a `ppoll` timeout is updated with the time left, as the syscall does (a
//!   failed update is ignored there too).
//! - **Timeouts**: a positive one is a linked timeout, which cancels the wait (`-ECANCELED`,
//!   answered 0: timed out). A zero timeout has no timer: the request is
//!   [settled](Waiting::settle) like a call on an `O_NONBLOCK` fd, cancelled once its first
//!   attempt found nothing. An interrupt's cancel is `-EINTR` (as a signal makes these calls
//!   return, never restarted), and so is a cancel of the ring's drain.
//!
//! What stays on the syscall threads: a signal mask (`epoll_pwait`, `epoll_pwait2`, `ppoll`),
//! `poll`/`ppoll` of more than one fd, of a negative fd (ignored by poll(2): it just sleeps) or
//! not asking for input (`POLLOUT` alone: see above), a `pollfd` or a timespec timeout the kernel
//! could not read (`-EFAULT` there), an invalid timespec (`-EINVAL`), kernels without the
//! opcodes (probed: `Caps`).
//!
//! Divergences left:
//!
//! - At its timeout the syscall looks at the ready list once more before returning 0; the
//!   linked timeout cancels the wait without that last look. An event that arrives within the
//!   timer's expiry is reported by the next call instead.
//! - Timers: the syscall adds the thread's timer slack (50 us by default) to its timeout;
//!   the linked timeout has none. Both wait at least the timeout.
//! - poll's `pollfd` is read when the call is put on the ring, not when the kernel runs it; the
//!   poster leaves a call's arguments alone until it takes the result, so this is the same.

use std::time::{Duration, Instant};

use io_uring::opcode::{self as op};
use io_uring::squeue::Entry;
use io_uring::types::{self, Fd};

use super::fixup::{Fix, Outcome};
use super::ring::Caps;
use crate::raw;

/// A call waiting for readiness on the ring, and how its completion becomes the call's result.
#[derive(Debug)]
pub(super) struct Waiting {
    call: Call,
    timeout: Timeout,
    /// Cancelled by [`Waiting::settle`] (a zero timeout that found nothing ready).
    settled: bool,
}

#[derive(Clone, Copy, Debug)]
enum Call {
    Epoll,
    /// poll or ppoll of the `pollfd` at `pollfd`, which asked for `events` on `fd`; `ts`: the
    /// ppoll timeout to update with the time left (0: none).
    Poll {
        pollfd: u64,
        fd: i32,
        events: u16,
        ts: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timeout {
    /// Waits until ready (a negative timeout, or ppoll's NULL).
    Never,
    /// Never waits.
    Zero,
    /// Waits until this instant at most.
    Until(Instant),
}

impl Timeout {
    /// A timeout in milliseconds, as epoll_wait and poll take it (negative: none).
    fn millis(ms: i32) -> Self {
        match ms {
            ..0 => Self::Never,
            0 => Self::Zero,
            ms => Self::after(Duration::from_millis(ms as u64)),
        }
    }

    fn after(d: Duration) -> Self {
        // Beyond Instant's range (centuries): the call waits until ready.
        Instant::now()
            .checked_add(d)
            .map_or(Self::Never, Self::Until)
    }
}

/// `poll`'s bits always reported, asked for or not.
const ALWAYS: u16 = (libc::POLLERR | libc::POLLHUP) as u16;
/// A poll on the ring asks for one of these: sockets report `POLLRDHUP` (which POLL_ADD always
/// waits for) with `POLLIN | POLLRDNORM`, so its completion always has something to report.
const READING: u16 = (libc::POLLIN | libc::POLLRDNORM | libc::POLLRDHUP) as u16;

/// epoll_wait(a[0], a[1], a[2], a[3]), and epoll_pwait with a NULL signal mask (its size, a[5],
/// is not looked at then).
pub(super) fn epoll_wait(a: &[u64; 6], caps: &Caps) -> Option<(u8, Entry, Fix)> {
    epoll(a, Timeout::millis(a[3] as i32), caps)
}

/// epoll_pwait2(a[0], a[1], a[2], a[3], NULL): the timeout is a timespec (NULL: none).
pub(super) fn epoll_pwait2(a: &[u64; 6], caps: &Caps) -> Option<(u8, Entry, Fix)> {
    if a[4] != 0 {
        return None;
    }
    epoll(a, timespec(a[3])?, caps)
}

fn epoll(a: &[u64; 6], timeout: Timeout, caps: &Caps) -> Option<(u8, Entry, Fix)> {
    if !linkable(timeout, caps) {
        return None;
    }
    // maxevents as the kernel reads it: the SQE's u32 len into an int (negative stays negative).
    let sqe = op::EpollWait::new(
        Fd(a[0] as i32),
        a[1] as *mut types::epoll_event,
        a[2] as u32,
    );
    let fix = Waiting {
        call: Call::Epoll,
        timeout,
        settled: false,
    };
    Some((op::EpollWait::CODE, sqe.build(), Fix::Poll(fix)))
}

/// poll(a[0], 1, a[2]).
pub(super) fn poll(a: &[u64; 6], caps: &Caps) -> Option<(u8, Entry, Fix)> {
    if a[1] != 1 {
        return None;
    }
    poll_one(a[0], Timeout::millis(a[2] as i32), 0, caps)
}

/// ppoll(a[0], 1, a[2], NULL).
pub(super) fn ppoll(a: &[u64; 6], caps: &Caps) -> Option<(u8, Entry, Fix)> {
    if a[1] != 1 || a[3] != 0 {
        return None;
    }
    poll_one(a[0], timespec(a[2])?, a[2], caps)
}

/// The timeout in the timespec at `ts` (NULL: none), as ppoll and epoll_pwait2 read it first;
/// None if the kernel would refuse it (`-EFAULT`, `-EINVAL`: left to the syscall threads).
fn timespec(ts: u64) -> Option<Timeout> {
    if ts == 0 {
        return Some(Timeout::Never);
    }
    let mut raw = [0u8; 16];
    if !copy_in(ts, &mut raw) {
        return None;
    }
    let sec = i64::from_ne_bytes(raw[..8].try_into().unwrap());
    let nsec = i64::from_ne_bytes(raw[8..].try_into().unwrap());
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return None;
    }
    Some(match Duration::new(sec as u64, nsec as u32) {
        Duration::ZERO => Timeout::Zero,
        d => Timeout::after(d),
    })
}

fn poll_one(pollfd: u64, timeout: Timeout, ts: u64, caps: &Caps) -> Option<(u8, Entry, Fix)> {
    if !linkable(timeout, caps) {
        return None;
    }
    // struct pollfd { int fd; short events; short revents; }
    let mut raw = [0u8; 8];
    if !copy_in(pollfd, &mut raw) {
        return None;
    }
    let fd = i32::from_ne_bytes(raw[..4].try_into().unwrap());
    let events = u16::from_ne_bytes(raw[4..6].try_into().unwrap());
    if fd < 0 || events & READING == 0 {
        return None;
    }
    let call = Call::Poll {
        pollfd,
        fd,
        events,
        ts,
    };
    let fix = Waiting {
        call,
        timeout,
        settled: false,
    };
    Some((op::PollAdd::CODE, poll_add(fd, events), Fix::Poll(fix)))
}

fn poll_add(fd: i32, events: u16) -> Entry {
    op::PollAdd::new(Fd(fd), events.into()).build()
}

/// A positive timeout needs linked timeouts (5.5), which any kernel with these opcodes has.
fn linkable(timeout: Timeout, caps: &Caps) -> bool {
    !matches!(timeout, Timeout::Until(_)) || caps.has(op::LinkTimeout::CODE)
}

impl Waiting {
    /// The interval of the linked timeout to issue with the request now (None: no timer).
    pub(super) fn link_timeout(&self) -> Option<Duration> {
        match self.timeout {
            Timeout::Until(t) => Some(t.saturating_duration_since(Instant::now())),
            _ => None,
        }
    }

    /// Whether the request must be settled once its first attempt is made (a zero timeout).
    pub(super) fn wants_settle(&self) -> bool {
        self.timeout == Timeout::Zero && !self.settled
    }

    /// The request is still pending after its first attempt: with a zero timeout, cancel it
    /// (the call found nothing ready and returns 0).
    pub(super) fn settle(&mut self) -> bool {
        let cancel = self.wants_settle();
        self.settled |= cancel;
        cancel
    }

    /// Maps completion `res`; `more`: whether the request may be re-armed (not interrupted,
    /// not draining).
    pub(super) fn complete(&mut self, res: i32, more: bool) -> Outcome {
        // A cancel is the timer's (or a settle's) unless the call was interrupted or the ring
        // drained: then the wait was cut short, as by a signal.
        let cancelled = || {
            if more && self.timeout != Timeout::Never {
                0
            } else {
                -i64::from(libc::EINTR)
            }
        };
        let Call::Poll {
            pollfd,
            fd,
            events,
            ts,
        } = self.call
        else {
            return Outcome::Done(match res {
                CANCELLED => cancelled(),
                res => res.into(),
            });
        };
        let (revents, ret) = match res {
            0.. => match res as u16 & (events | ALWAYS) {
                0 if more && !self.expired() => return Outcome::Again(poll_add(fd, events)),
                0 => (0, 0),
                mask => (mask, 1),
            },
            BAD_FD => (libc::POLLNVAL as u16, 1),
            CANCELLED => (0, cancelled()),
            res => return Outcome::Done(res.into()),
        };
        let ret = if copy_out(&revents.to_ne_bytes(), pollfd + 6) {
            ret
        } else {
            -i64::from(libc::EFAULT)
        };
        if let (Timeout::Until(t), true) = (self.timeout, ts != 0) {
            let left = t.saturating_duration_since(Instant::now());
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&(left.as_secs() as i64).to_ne_bytes());
            raw[8..].copy_from_slice(&i64::from(left.subsec_nanos()).to_ne_bytes());
            // As the syscall: a timeout that cannot be updated is left alone.
            copy_out(&raw, ts);
        }
        Outcome::Done(ret)
    }

    /// The timeout has passed (or was zero).
    fn expired(&self) -> bool {
        match self.timeout {
            Timeout::Never => false,
            Timeout::Zero => true,
            Timeout::Until(t) => Instant::now() >= t,
        }
    }
}

/// Completion results of a cancelled request and of a closed fd.
const CANCELLED: i32 = -libc::ECANCELED;
const BAD_FD: i32 = -libc::EBADF;

/// Copies `dst.len()` bytes of this process's memory at `src` into `dst`; false where the kernel
/// would fault (`process_vm_readv` on ourselves: a bad address is an error, never a fault here).
fn copy_in(src: u64, dst: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    let remote = libc::iovec {
        iov_base: src as usize as *mut libc::c_void,
        iov_len: dst.len(),
    };
    vm_copy(libc::SYS_process_vm_readv, &local, &remote) == dst.len() as i64
}

/// Copies `src` to this process's memory at `dst`; false where the kernel would fault.
fn copy_out(src: &[u8], dst: u64) -> bool {
    let local = libc::iovec {
        iov_base: src.as_ptr().cast_mut().cast(),
        iov_len: src.len(),
    };
    let remote = libc::iovec {
        iov_base: dst as usize as *mut libc::c_void,
        iov_len: src.len(),
    };
    vm_copy(libc::SYS_process_vm_writev, &local, &remote) == src.len() as i64
}

fn vm_copy(nr: libc::c_long, local: &libc::iovec, remote: &libc::iovec) -> i64 {
    let args = [
        raw::getpid() as u64,
        std::ptr::from_ref(local) as u64,
        1,
        std::ptr::from_ref(remote) as u64,
        1,
        0,
    ];
    // SAFETY: process_vm_readv/writev on ourselves: the kernel checks the remote range (an
    // unmapped or read-only one is an error, not a fault); the local iovec names a live buffer
    // of its length, which the kernel reads (writev) or fills (readv) only within that length.
    unsafe { raw::syscall6(nr as u64, &args) }
}
