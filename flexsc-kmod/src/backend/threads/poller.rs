//! Poll arming: a call that would block on an fd that is not ready waits at a poller, not in a
//! syscall thread (as io_uring arms a poll for such a request).
//!
//! Syscall threads are capped (`Config::max_syscall_threads`). Without this, a thread-per-
//! connection server with more idle connections than the cap parks every syscall thread in a
//! `read` of an idle connection, and its `accept` waits in the pages forever.
//!
//! Before a syscall thread runs a read-like call (`read`, `readv`, `recvfrom`, `recvmsg`,
//! `accept`, `accept4`: readable) or a write-like one (`write`, `writev`, `sendto`, `sendmsg`:
//! writable), it probes the fd with `poll(fd, 0)`. Ready (or an error, hang-up, bad fd): the call
//! runs as before, blocking, after the usual hand-off. A receive (`recvfrom`, `recvmsg`, without
//! `MSG_WAITALL`, on a socket whose `SO_RCVLOWAT` is 1) is its own probe instead: it is tried
//! with `MSG_DONTWAIT` added, and anything but `EAGAIN` is its result, with no hand-off (a
//! blocking receive returns the same whenever data, an error or end of file is there). Sends
//! are never tried so: a non-blocking send may be partial where a blocking one is not.
//!
//! Not ready, and the call would wait for readiness and nothing else, the entry, still claimed,
//! is *parked*: registered in the group's epoll instance (`EPOLLONESHOT`), and the thread goes on
//! with the pages. "Would wait" means: a socket, pipe or FIFO, character device (tty), eventfd
//! (8-byte reads and writes) or timerfd (8-byte reads); not `O_NONBLOCK`, open for that
//! direction; for a socket, no `SO_RCVTIMEO`/`SO_SNDTIMEO` (its expiry must happen) and
//! listening exactly for an accept; arguments the kernel checks before it waits that pass
//! (buffer range, iovec array and `msghdr` readable, `accept4` flags), so a call that fails at
//! once still does. When the fd becomes ready the poller moves the entry to the group's ready
//! queue and kicks the group; a syscall thread takes it, probes again and runs it (or parks it
//! again, if someone else took the readiness). The call itself always runs blocking, with its
//! own flags, so its result, errno and partial counts are the kernel's. Anything else (regular
//! files, `connect`, waits on futexes, timers or epoll, an fd epoll refuses) runs as before.
//! Two entries woken on one fd both run; if the first takes all the data the second blocks in
//! its thread, as before.

//! One epoll registration per fd (epoll keys registrations by fd and file: a second one for the
//! same fd is `EEXIST`): the group's [`Parking`] table lists the entries waiting on each fd and
//! re-arms the fd for what the remaining ones wait for. A registration whose fd has no waiters
//! left stays, disabled, until the next park on that fd re-arms it (one `epoll_ctl` per park).
//!
//! Who waits: one poller thread per group (started at the first park), asleep in `epoll_wait`.
//! Idle syscall threads sleep on a futex doorbell (the activation protocol), and a thread cannot
//! sleep on a futex and an epoll set at once; the doorbell as an eventfd would cost every kick a
//! `write` and every wake a `read`. The extra hop (poller wakes, kicks a syscall thread) is paid
//! only by calls that found their fd not ready.
//!
//! A closed fd: epoll drops a registration silently when its file is released, so the poller
//! re-arms every fd with waiters once a second; `EBADF` (closed) or `ENOENT` (the fd now names
//! another file) sends its entries back to run, as if posted now (they fail with `EBADF`, or run
//! on the new file). A blocked `read` would have kept the old file open and kept blocking; a
//! parked entry holds no reference, so the application's `close` really closes. The sweep costs
//! one `epoll_ctl` per fd in the table per second (re-arming those with waiters, dropping the
//! registrations of those without), under the table's lock: with 10,000 connections, some
//! 10,000 calls a second.
//!
//! Interrupts ([`crate::interrupt`]): a parked entry's runner is [`PARKED`]; an interrupt wakes
//! the poller (an eventfd in its epoll set), which completes every parked entry with a request
//! with `-EINTR`. The parker publishes [`PARKED`] before it inserts the entry and reads the
//! request after, so either it sees the request or the poller finds the entry
//! (`loom-tests/tests/poller.rs`). Shutdown completes every entry still parked or queued with
//! `-EINTR`, as it interrupts blocked calls.

use std::collections::{HashMap, VecDeque};

use crate::interrupt::{Interrupt, PARKED};
use crate::sync::{AtomicUsize, Mutex, MutexGuard, Ordering};

/// epoll's readable event (== `POLLIN`).
pub const READABLE: u32 = 0x001;
/// epoll's writable event (== `POLLOUT`).
pub const WRITABLE: u32 = 0x004;
/// Error and hang-up: reported whatever was asked, and wake every waiter of the fd.
const ERR_HUP: u32 = 0x008 | 0x010;

/// An entry parked at the poller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// The entry's index in the syscall area.
    pub entry: usize,
    /// What it waits for: [`READABLE`] or [`WRITABLE`].
    pub events: u32,
}

/// How a [`Parking::park`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Park {
    /// The entry waits at the poller; the parker must not touch it any more.
    Parked,
    /// An interrupt was requested: the entry is not parked, and the parker completes it with
    /// `-EINTR` (after [`Interrupt::leave`]).
    Interrupted,
    /// epoll refused the fd (this errno): the entry is not parked; run the call as before.
    Refused(i32),
}

/// What arming an fd's registration asks of epoll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// `EPOLL_CTL_ADD` (no registration known for the fd).
    Add,
    /// `EPOLL_CTL_MOD` (re-arms the one-shot registration).
    Modify,
}

/// The parked entries of one group, per fd, and the entries ready to run again.
#[derive(Debug, Default)]
struct Table {
    /// Waiters per fd (an empty list: a registration known, disabled).
    fds: HashMap<i32, Vec<Waiter>>,
    /// Entries to run again, oldest first.
    ready: VecDeque<usize>,
    /// Waiters in `fds`, all lists together.
    parked: usize,
}

impl Table {
    /// Moves all of `fd`'s waiters to the ready queue; how many.
    fn release_fd(&mut self, fd: i32) -> usize {
        let Some(list) = self.fds.remove(&fd) else {
            return 0;
        };
        self.parked -= list.len();
        self.ready.extend(list.iter().map(|w| w.entry));
        list.len()
    }
}

/// The parking protocol, without the operating system: `arm` and `disarm` callbacks stand for
/// `epoll_ctl`, so that loom can check it (`loom-tests/tests/poller.rs`).
#[derive(Debug, Default)]
pub struct Parking {
    table: Mutex<Table>,
    /// Entries in the ready queue (read without the lock by `has_ready`).
    ready: AtomicUsize,
}

/// The union of the waiters' events.
fn interest(list: &[Waiter]) -> u32 {
    list.iter().fold(0, |e, w| e | w.events)
}

impl Parking {
    fn lock(&self) -> MutexGuard<'_, Table> {
        #[cfg(not(loom))]
        return self.table.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(loom)]
        return self.table.lock().unwrap();
    }

    /// Parks `w` on `fd`. `intr` is the entry's interrupt state; `arm(fd, events, how)` registers
    /// the fd for `events` with epoll and returns 0 or the errno.
    ///
    /// The entry is published as [`PARKED`] before it is inserted and the request read after, so
    /// an interrupt either is seen here or finds it in the table ([`Self::take_interrupted`]).
    pub fn park(
        &self,
        fd: i32,
        w: Waiter,
        intr: &Interrupt,
        mut arm: impl FnMut(i32, u32, Arm) -> i32,
    ) -> Park {
        intr.enter(PARKED);
        if intr.requested() {
            return Park::Interrupted;
        }
        let moved;
        {
            let mut t = self.lock();
            let (err, stale) = match t.fds.get(&fd) {
                Some(list) => {
                    let events = interest(list) | w.events;
                    match arm(fd, events, Arm::Modify) {
                        // Our registration is gone: the fd was closed (and maybe reused) since.
                        e if e == libc_enoent() || e == libc_ebadf() => {
                            (arm(fd, w.events, Arm::Add), true)
                        }
                        e => (e, false),
                    }
                }
                None => match arm(fd, w.events, Arm::Add) {
                    // Registered and not in the table: a stale registration of this very file.
                    e if e == libc_eexist() => (arm(fd, w.events, Arm::Modify), false),
                    e => (e, false),
                },
            };
            // The old waiters waited on a file the fd no longer names: they run again.
            moved = if stale { t.release_fd(fd) } else { 0 };
            if moved > 0 {
                self.ready.fetch_add(moved, Ordering::SeqCst);
            }
            if err != 0 {
                return Park::Refused(err);
            }
            t.fds.entry(fd).or_default().push(w);
            t.parked += 1;
        }
        if intr.requested() && self.remove(w.entry) {
            return Park::Interrupted;
        }
        Park::Parked
    }

    /// Removes entry `entry` from the table if it is still parked; whether it was.
    fn remove(&self, entry: usize) -> bool {
        let mut t = self.lock();
        for list in t.fds.values_mut() {
            if let Some(i) = list.iter().position(|w| w.entry == entry) {
                list.swap_remove(i);
                t.parked -= 1;
                return true;
            }
        }
        false
    }

    /// `fd` reported `revents`: its waiters for those events (all of them on an error or a
    /// hang-up) move to the ready queue; the fd is re-armed for the others with `arm` (if that
    /// fails they move too). Returns how many moved.
    pub fn fire(&self, fd: i32, revents: u32, mut arm: impl FnMut(i32, u32, Arm) -> i32) -> usize {
        let mut t = self.lock();
        let Some(list) = t.fds.get_mut(&fd) else {
            return 0;
        };
        let wake_all = revents & ERR_HUP != 0;
        let mut woken = Vec::new();
        list.retain(|w| {
            let go = wake_all || w.events & revents != 0;
            if go {
                woken.push(w.entry);
            }
            !go
        });
        let rest = interest(list);
        let mut moved = woken.len();
        t.parked -= moved;
        t.ready.extend(woken);
        if rest != 0 && arm(fd, rest, Arm::Modify) != 0 {
            moved += t.release_fd(fd);
        }
        if moved > 0 {
            self.ready.fetch_add(moved, Ordering::SeqCst);
        }
        moved
    }

    /// Re-arms every fd with waiters (`arm`), sending those whose registration is gone (closed
    /// fds) to run again, and forgets the fds without waiters (`disarm`). Returns how many moved.
    pub fn sweep(
        &self,
        mut arm: impl FnMut(i32, u32, Arm) -> i32,
        mut disarm: impl FnMut(i32),
    ) -> usize {
        let mut t = self.lock();
        let mut gone = Vec::new();
        t.fds.retain(|&fd, list| {
            if list.is_empty() {
                disarm(fd);
                return false;
            }
            if arm(fd, interest(list), Arm::Modify) != 0 {
                gone.push(fd);
            }
            true
        });
        let moved: usize = gone.into_iter().map(|fd| t.release_fd(fd)).sum();
        if moved > 0 {
            self.ready.fetch_add(moved, Ordering::SeqCst);
        }
        moved
    }

    /// Removes and returns every parked entry whose interrupt is requested (`intr(entry)`); the
    /// caller completes them with `-EINTR` (after [`Interrupt::leave`]).
    pub fn take_interrupted<'a>(&self, intr: impl Fn(usize) -> &'a Interrupt) -> Vec<usize> {
        let mut t = self.lock();
        let mut taken = Vec::new();
        for list in t.fds.values_mut() {
            list.retain(|w| {
                let go = intr(w.entry).requested();
                if go {
                    taken.push(w.entry);
                }
                !go
            });
        }
        t.parked -= taken.len();
        taken
    }

    /// The oldest ready entry, if any; the caller now owns its claim.
    pub fn pop_ready(&self) -> Option<usize> {
        if !self.has_ready() {
            return None;
        }
        let e = self.lock().ready.pop_front()?;
        self.ready.fetch_sub(1, Ordering::SeqCst);
        Some(e)
    }

    /// Whether entries wait in the ready queue (part of the group's `has_work`, read after the
    /// activation protocol's fences).
    #[inline]
    pub fn has_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) != 0
    }

    /// Entries waiting at the poller now (for the models' final checks).
    #[cfg(loom)]
    pub fn parked(&self) -> usize {
        self.lock().parked
    }

    /// Removes and returns every entry, parked or ready (shutdown); the caller owns their claims.
    pub fn take_all(&self) -> Vec<usize> {
        let mut t = self.lock();
        let mut all: Vec<usize> = t.ready.drain(..).collect();
        self.ready.store(0, Ordering::SeqCst);
        for (_, list) in t.fds.drain() {
            all.extend(list.iter().map(|w| w.entry));
        }
        t.parked = 0;
        all
    }
}

// The errnos `park` tells apart (this module is also built under loom, without libc).
const fn libc_enoent() -> i32 {
    2
}
const fn libc_ebadf() -> i32 {
    9
}
const fn libc_eexist() -> i32 {
    17
}

#[cfg(not(loom))]
pub(crate) use os::{Poller, arm};

#[cfg(not(loom))]
mod os {
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use super::{Arm, Park, Parking, READABLE, WRITABLE, Waiter};
    use crate::area::SyscallArea;
    use crate::entry::Claim;
    use crate::os_thread::{self, OsThread};
    use crate::raw;
    use crate::sync::{AtomicBool, Mutex, Ordering};

    use super::super::{Scheduler, interrupt_signal};

    /// How often the poller re-arms every fd with waiters, to notice closed fds.
    const SWEEP: Duration = Duration::from_secs(1);
    /// The epoll key of the wake-up eventfd (fds are never negative).
    const WAKE: u64 = u64::MAX;

    /// One group's poller: the parking table, and the epoll instance and thread, made at the
    /// first park.
    #[derive(Debug, Default)]
    pub(crate) struct Poller {
        parking: Parking,
        /// The epoll set and wake-up eventfd (None inside: epoll is unavailable).
        os: OnceLock<Option<Os>>,
        thread: Mutex<Option<OsThread>>,
        shut: AtomicBool,
    }

    /// The epoll instance and the eventfd that wakes its waiter.
    #[derive(Clone, Copy, Debug)]
    struct Fds {
        ep: i32,
        wake: i32,
    }

    /// The poller's [`Fds`], closed when the scheduler is dropped (after shutdown has joined
    /// the poller thread, which uses a copy).
    #[derive(Debug)]
    struct Os(Fds);

    impl Drop for Os {
        fn drop(&mut self) {
            close(self.0.ep);
            close(self.0.wake);
        }
    }

    /// A raw call with up to six arguments, through the `syscall` instruction (libc's wrappers
    /// may be interposed by the preload library).
    fn sys(nr: libc::c_long, a: [u64; 6]) -> i64 {
        // SAFETY: every caller in this module passes a call that is not thread-bound and whose
        // pointers are to live memory of the caller's frame, sized as the call expects.
        unsafe { raw::syscall6(nr as u64, &a) }
    }

    fn close(fd: i32) {
        sys(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
    }

    /// `epoll_ctl(ep, op, fd, {events | EPOLLONESHOT, fd})`: 0 or the errno.
    fn ctl(ep: i32, op: i32, fd: i32, events: u32) -> i32 {
        let mut ev = libc::epoll_event {
            events: events | libc::EPOLLONESHOT as u32,
            u64: fd as u64,
        };
        let r = sys(
            libc::SYS_epoll_ctl,
            [
                ep as u64,
                op as u64,
                fd as u64,
                &mut ev as *mut libc::epoll_event as u64,
                0,
                0,
            ],
        );
        if r < 0 { -r as i32 } else { 0 }
    }

    impl Fds {
        fn open() -> Option<Os> {
            let ep = sys(
                libc::SYS_epoll_create1,
                [libc::EPOLL_CLOEXEC as u64, 0, 0, 0, 0, 0],
            );
            if ep < 0 {
                return None;
            }
            let flags = (libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) as u64;
            let wake = sys(libc::SYS_eventfd2, [0, flags, 0, 0, 0, 0]);
            if wake < 0 {
                close(ep as i32);
                return None;
            }
            let this = Self {
                ep: ep as i32,
                wake: wake as i32,
            };
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: WAKE,
            };
            let r = sys(
                libc::SYS_epoll_ctl,
                [
                    this.ep as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    this.wake as u64,
                    &mut ev as *mut libc::epoll_event as u64,
                    0,
                    0,
                ],
            );
            let os = Os(this);
            (r == 0).then_some(os)
        }

        fn arm(&self, fd: i32, events: u32, how: Arm) -> i32 {
            let op = match how {
                Arm::Add => libc::EPOLL_CTL_ADD,
                Arm::Modify => libc::EPOLL_CTL_MOD,
            };
            ctl(self.ep, op, fd, events)
        }

        fn disarm(&self, fd: i32) {
            ctl(self.ep, libc::EPOLL_CTL_DEL, fd, 0);
        }

        fn wake(&self) {
            let one = 1u64;
            sys(
                libc::SYS_write,
                [self.wake as u64, &one as *const u64 as u64, 8, 0, 0, 0],
            );
        }

        fn clear_wake(&self) {
            let mut n = 0u64;
            sys(
                libc::SYS_read,
                [self.wake as u64, &mut n as *mut u64 as u64, 8, 0, 0, 0],
            );
        }
    }

    /// The calls poll arming applies to, by what they wait for.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        /// `read`, `write`: (fd, buf, len).
        Plain,
        /// `readv`, `writev`: (fd, iov, iovcnt).
        Vector,
        /// `recvfrom`, `sendto`: (fd, buf, len, flags, ...).
        Socket,
        /// `recvmsg`, `sendmsg`: (fd, msghdr, flags).
        Message,
        /// `accept`, `accept4`.
        Accept,
    }

    /// The kind of `nr` and what it waits for on its first argument, if poll arming applies:
    /// not for flags that make it return at once (`MSG_DONTWAIT`, `MSG_ERRQUEUE`, a received
    /// `MSG_OOB`) or that `accept4` rejects, nor a zero-length read or write (a pipe answers 0).
    fn interest(nr: u16, args: &[u64; 6]) -> Option<(Kind, u32)> {
        let quick_recv =
            |f: u64| f as i32 & (libc::MSG_DONTWAIT | libc::MSG_ERRQUEUE | libc::MSG_OOB) != 0;
        let quick_send = |f: u64| f as i32 & libc::MSG_DONTWAIT != 0;
        let empty = args[2] == 0;
        let accept4_flags = (libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u64;
        Some(match nr as libc::c_long {
            libc::SYS_accept => (Kind::Accept, READABLE),
            libc::SYS_accept4 if args[3] & !accept4_flags == 0 => (Kind::Accept, READABLE),
            libc::SYS_read if !empty => (Kind::Plain, READABLE),
            libc::SYS_readv if !empty => (Kind::Vector, READABLE),
            libc::SYS_recvfrom if !empty && !quick_recv(args[3]) => (Kind::Socket, READABLE),
            libc::SYS_recvmsg if !quick_recv(args[2]) => (Kind::Message, READABLE),
            libc::SYS_write if !empty => (Kind::Plain, WRITABLE),
            libc::SYS_writev if !empty => (Kind::Vector, WRITABLE),
            libc::SYS_sendto if !empty && !quick_send(args[3]) => (Kind::Socket, WRITABLE),
            libc::SYS_sendmsg if !quick_send(args[2]) => (Kind::Message, WRITABLE),
            _ => return None,
        })
    }

    /// `poll(fd, events, 0)`: whether the call would find the fd ready (or failing) now.
    fn ready_now(fd: i32, events: u32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: events as i16,
            revents: 0,
        };
        let r = sys(
            libc::SYS_poll,
            [&mut p as *mut libc::pollfd as u64, 1, 0, 0, 0, 0],
        );
        // An error: let the call itself report it.
        r != 0
    }

    /// The highest user address + 1 (x86_64, 4-level paging): the kernel's `access_ok` bound.
    const USER_END: u64 = 0x7fff_ffff_f000;
    /// The most iovecs a call takes (`UIO_MAXIOV`).
    const IOV_MAX: u64 = 1024;

    /// Whether `[ptr, ptr + len)` passes the kernel's `access_ok` (checked before a call waits).
    fn user_range(ptr: u64, len: u64) -> bool {
        ptr.checked_add(len).is_some_and(|end| end <= USER_END)
    }

    /// Copies `dst.len()` bytes of this process's memory at `src` into `dst`, as the kernel would
    /// (`process_vm_readv` on ourselves: a bad address is an error, never a fault here).
    fn copy_in(src: u64, dst: &mut [u8]) -> bool {
        let local = libc::iovec {
            iov_base: dst.as_mut_ptr().cast(),
            iov_len: dst.len(),
        };
        let remote = libc::iovec {
            iov_base: src as *mut libc::c_void,
            iov_len: dst.len(),
        };
        let r = sys(
            libc::SYS_process_vm_readv,
            [
                crate::raw::getpid() as u64,
                &local as *const libc::iovec as u64,
                1,
                &remote as *const libc::iovec as u64,
                1,
                0,
            ],
        );
        r == dst.len() as i64
    }

    /// Whether an iovec array the kernel copies in before the call waits is readable.
    fn iovecs_ok(iov: u64, n: u64) -> bool {
        let mut buf = [0u8; 1024];
        let total = n * size_of::<libc::iovec>() as u64;
        n <= IOV_MAX
            && (0..total).step_by(buf.len()).all(|off| {
                let len = (total - off).min(buf.len() as u64) as usize;
                copy_in(iov + off, &mut buf[..len])
            })
    }

    /// Whether the arguments the kernel checks before the call waits are good (otherwise the
    /// call fails at once, and must: it is not parked).
    fn args_ok(kind: Kind, args: &[u64; 6]) -> bool {
        match kind {
            Kind::Plain | Kind::Socket => user_range(args[1], args[2]),
            Kind::Vector => iovecs_ok(args[1], args[2]),
            Kind::Message => {
                let mut m = [0u8; size_of::<libc::msghdr>()];
                if !copy_in(args[1], &mut m) {
                    return false;
                }
                // SAFETY: msghdr is plain data, and `m` holds exactly one.
                let m: libc::msghdr = unsafe { std::mem::transmute(m) };
                iovecs_ok(m.msg_iov as u64, m.msg_iovlen as u64)
            }
            Kind::Accept => true,
        }
    }

    /// The fd types a blocked call waits on for readiness alone: sockets, pipes and FIFOs,
    /// character devices (ttys), eventfds (8-byte reads and writes) and timerfds (8-byte reads).
    /// Other anonymous files (epoll, signalfd, ...) may reject a call before waiting.
    fn pollable_type(fd: i32, kind: Kind, events: u32, args: &[u64; 6]) -> Option<bool> {
        // SAFETY: an all-zero stat is a valid value of this plain C struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if sys(
            libc::SYS_fstat,
            [fd as u64, &mut st as *mut libc::stat as u64, 0, 0, 0, 0],
        ) < 0
        {
            return None;
        }
        let socket = st.st_mode & libc::S_IFMT == libc::S_IFSOCK;
        if matches!(kind, Kind::Socket | Kind::Message | Kind::Accept) {
            return Some(socket);
        }
        Some(match st.st_mode & libc::S_IFMT {
            libc::S_IFSOCK | libc::S_IFIFO | libc::S_IFCHR => true,
            0 => {
                let name = anon_name(fd);
                let word = kind == Kind::Plain && args[2] >= 8;
                word && (name == b"anon_inode:[eventfd]"
                    || (name == b"anon_inode:[timerfd]" && events == READABLE))
            }
            _ => false,
        })
    }

    /// What `/proc/self/fd/<fd>` links to (an anonymous file's kind), up to 64 bytes.
    fn anon_name(fd: i32) -> Vec<u8> {
        let path = format!("/proc/self/fd/{fd}\0");
        let mut buf = [0u8; 64];
        let n = sys(
            libc::SYS_readlinkat,
            [
                libc::AT_FDCWD as u64,
                path.as_ptr() as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
            ],
        );
        buf[..n.max(0) as usize].to_vec()
    }

    /// Whether a call of `kind` on `fd`, which is not ready, waits for readiness (and nothing
    /// else): an fd type whose calls do, blocking and open for that direction; for a socket, no
    /// timeout for it, and listening exactly when the call is an accept; arguments the kernel
    /// checks first that are good.
    fn waits_for_readiness(fd: i32, kind: Kind, events: u32, args: &[u64; 6]) -> bool {
        if pollable_type(fd, kind, events, args) != Some(true) {
            return false;
        }
        let fl = sys(
            libc::SYS_fcntl,
            [fd as u64, libc::F_GETFL as u64, 0, 0, 0, 0],
        );
        if fl < 0 || fl as i32 & libc::O_NONBLOCK != 0 {
            return false;
        }
        let open_for = match fl as i32 & libc::O_ACCMODE {
            libc::O_RDONLY => READABLE,
            libc::O_WRONLY => WRITABLE,
            _ => READABLE | WRITABLE,
        };
        if open_for & events == 0 {
            return false; // EBADF at once
        }
        let opt = if events == READABLE {
            libc::SO_RCVTIMEO
        } else {
            libc::SO_SNDTIMEO
        };
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        if sockopt(fd, opt, &mut tv) && (tv.tv_sec != 0 || tv.tv_usec != 0) {
            return false;
        }
        let mut listening = 0i32;
        let listens = sockopt(fd, libc::SO_ACCEPTCONN, &mut listening) && listening != 0;
        listens == (kind == Kind::Accept) && args_ok(kind, args)
    }

    /// `getsockopt(fd, SOL_SOCKET, opt)` into `v`: whether it succeeded (not for a non-socket).
    fn sockopt<T>(fd: i32, opt: i32, v: &mut T) -> bool {
        let mut len = size_of::<T>() as libc::socklen_t;
        let r = sys(
            libc::SYS_getsockopt,
            [
                fd as u64,
                libc::SOL_SOCKET as u64,
                opt as u64,
                v as *mut T as u64,
                &mut len as *mut libc::socklen_t as u64,
                0,
            ],
        );
        r == 0
    }

    /// Completes the parked (or ready) entry `index` with `ret`, on behalf of its executor.
    fn complete(area: &SyscallArea, index: usize, ret: i64) {
        // SAFETY: the entry was detached by the syscall thread that parked it, and its index was
        // just removed from the parking table (or the parker's hands) under its lock: no one else
        // holds its claim.
        let claim = unsafe { area.entry_at(index).resume_detached() };
        finish(area, claim, ret);
    }

    /// Completes `claim` with `ret` here, without a call in the kernel for it (any more).
    fn finish(area: &SyscallArea, claim: Claim<'_>, ret: i64) {
        let index = area.index_of(claim.entry());
        // Clears a parked runner (no signal is ever sent to one).
        area.interrupt_of(claim.entry()).leave();
        claim.complete(ret);
        let page = index / crate::page::ENTRIES_PER_PAGE;
        area.control(page).note_completed(1);
        area.core(area.core_of_page(page)).completions.ring();
    }

    /// A receive (`recvfrom`, `recvmsg`) may be tried at once with `MSG_DONTWAIT` added: its
    /// result is then the blocking call's whenever data (or an error, or end of file) is there.
    /// Not with `MSG_WAITALL`, nor on a socket whose `SO_RCVLOWAT` is above 1 (a blocking
    /// receive waits for that much, a non-blocking one returns less); `poll` honours both.
    /// Returns the flags to try with.
    fn try_at_once(kind: Kind, args: &[u64; 6]) -> Option<u64> {
        let flags = match kind {
            Kind::Socket => args[3],
            Kind::Message => args[2],
            _ => return None,
        };
        if flags as i32 & libc::MSG_WAITALL != 0 {
            return None;
        }
        let mut lowat = 0i32;
        (sockopt(args[0] as i32, libc::SO_RCVLOWAT, &mut lowat) && lowat <= 1)
            .then_some(flags | libc::MSG_DONTWAIT as u64)
    }

    /// Before a syscall thread runs `claim`'s call, which may block: completes it here if it is
    /// a receive that finds its data at once, parks it if it is a call on an fd that is not
    /// ready (then, or if it was interrupted and completed here, None), or hands it back to run
    /// as before.
    pub(crate) fn arm<'a>(sched: &Arc<Scheduler>, claim: Claim<'a>) -> Option<Claim<'a>> {
        let (head, args) = (claim.head(), claim.args());
        let Some((kind, events)) = interest(head.nr, &args) else {
            return Some(claim);
        };
        let fd = args[0] as i32;
        let area = sched.area();
        if let Some(flags) = try_at_once(kind, &args) {
            let mut now = args;
            now[if kind == Kind::Socket { 3 } else { 2 }] = flags;
            // SAFETY: the entry's own receive (not thread-bound) with MSG_DONTWAIT added; its
            // pointers are the poster's and the kernel checks them (-EFAULT), as in `execute`.
            let r = unsafe { raw::syscall6(head.nr as u64, &now) };
            if r != -(libc::EAGAIN as i64) {
                finish(area, claim, r);
                return None;
            }
        } else if ready_now(fd, events) {
            return Some(claim);
        }
        if !waits_for_readiness(fd, kind, events, &args) {
            return Some(claim);
        }
        let poller = sched.poller();
        let Some(os) = poller.os(sched) else {
            return Some(claim);
        };
        let entry = claim.entry();
        let w = Waiter {
            entry: area.index_of(entry),
            events,
        };
        let intr = area.interrupt_of(entry);
        match poller
            .parking
            .park(fd, w, intr, |fd, ev, how| os.arm(fd, ev, how))
        {
            Park::Refused(_) => Some(claim),
            Park::Parked => {
                claim.detach();
                None
            }
            Park::Interrupted => {
                claim.detach();
                complete(area, w.entry, -(libc::EINTR as i64));
                None
            }
        }
    }

    impl Poller {
        /// Whether entries wait to run again.
        #[inline]
        pub(crate) fn has_ready(&self) -> bool {
            self.parking.has_ready()
        }

        /// The next entry to run again, its claim resumed by the caller (a syscall thread).
        pub(crate) fn next_ready<'a>(&self, area: &'a SyscallArea) -> Option<Claim<'a>> {
            let index = self.parking.pop_ready()?;
            // SAFETY: popped from the ready queue under its lock: this thread now owns the claim
            // the parking thread detached, and the entry is not completed (only the owner does).
            Some(unsafe { area.entry_at(index).resume_detached() })
        }

        /// Wakes the poller thread (an interrupt of a parked entry).
        pub(crate) fn wake(&self) {
            if let Some(Some(os)) = self.os.get() {
                os.0.wake();
            }
        }

        /// The epoll set, made (and the poller thread started) on first use.
        fn os(&self, sched: &Arc<Scheduler>) -> Option<Fds> {
            self.os
                .get_or_init(|| {
                    let os = Fds::open()?;
                    let (s, fds) = (sched.clone(), os.0);
                    let t =
                        os_thread::spawn("flexsc-poller", 64 * 1024, move || run(&s, fds)).ok()?;
                    *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
                    Some(os)
                })
                .as_ref()
                .map(|os| os.0)
        }

        /// Stops the poller thread and completes every entry still parked or queued with
        /// `-EINTR` (no syscall thread is left to run them).
        pub(crate) fn shutdown(&self, area: &SyscallArea) {
            self.shut.store(true, Ordering::SeqCst);
            self.wake();
            let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = t {
                let _ = t.join();
            }
            for index in self.parking.take_all() {
                complete(area, index, -(libc::EINTR as i64));
            }
        }
    }

    /// The poller thread: waits for parked fds to become ready, interrupts, and shutdown.
    fn run(sched: &Arc<Scheduler>, os: Fds) {
        raw::block_signals_except(interrupt_signal());
        let poller = sched.poller();
        let area = sched.area();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut last_sweep = Instant::now();
        while !poller.shut.load(Ordering::SeqCst) {
            // Always a timeout, to the next sweep: an entry parked while we sleep is swept too.
            let timeout = SWEEP.saturating_sub(last_sweep.elapsed()).as_millis() as u64;
            let n = sys(
                libc::SYS_epoll_wait,
                [
                    os.ep as u64,
                    events.as_mut_ptr() as u64,
                    events.len() as u64,
                    timeout,
                    0,
                    0,
                ],
            );
            let mut moved = 0;
            let mut woken = false;
            for ev in &events[..n.max(0) as usize] {
                let (key, revents) = (ev.u64, ev.events);
                if key == WAKE {
                    os.clear_wake();
                    woken = true;
                } else {
                    moved += poller
                        .parking
                        .fire(key as i32, revents, |fd, e, how| os.arm(fd, e, how));
                }
            }
            if woken {
                let intr = |i: usize| area.interrupt_of(area.entry_at(i));
                for index in poller.parking.take_interrupted(intr) {
                    complete(area, index, -(libc::EINTR as i64));
                }
            }
            if last_sweep.elapsed() >= SWEEP {
                last_sweep = Instant::now();
                moved += poller
                    .parking
                    .sweep(|fd, e, how| os.arm(fd, e, how), |fd| os.disarm(fd));
            }
            if moved > 0 {
                sched.kick();
            }
        }
    }
}
