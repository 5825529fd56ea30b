//! epoll_wait, epoll_pwait, poll and ppoll on the ring (`poll`): results equal to the syscall's,
//! the request on the ring (not on a syscall thread) where it should be, timeouts, interrupts,
//! and the fallback of kernels without the opcodes.

use std::time::{Duration, Instant};

use io_uring::opcode::{EpollWait, PollAdd};
use libc::{c_long, epoll_event, pollfd};

use super::{backend, core_of};
use crate::area::SyscallArea;
use crate::backend::CoreBackend;
use crate::backend::uring::opcode::{Route, route};
use crate::backend::uring::ring::Caps;
use crate::backend::uring::{UringBackend, UringCore};
use crate::config::Config;
use crate::entry::status;
use crate::sync::Arc;

/// A uring core of one page with the kernel's capabilities less `without`.
struct Ring {
    area: Arc<SyscallArea>,
    core: UringCore,
    // Keeps the fallback syscall threads running.
    _backend: UringBackend,
}

impl Ring {
    fn new(without: &[u8]) -> Self {
        let (area, b, config): (_, _, Config) = backend(1);
        let caps = without.iter().fold(b.caps, |c, &op| c.without(op));
        let core = core_of(&b, &area, &config, caps);
        Self {
            area,
            core,
            _backend: b,
        }
    }

    fn caps(&self) -> Caps {
        self.core.caps
    }

    /// Posts `nr(args)` in slot 0 and submits it.
    fn start(&mut self, nr: c_long, args: &[u64]) {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        self.area.entry(0, 0).post(nr as u16, args.len() as u8, a);
        self.core.submit(&[0]);
    }

    /// Whether slot 0's request is on the ring (not completed, not on a syscall thread).
    fn on_ring(&self) -> bool {
        self.core.flights[0].is_some()
    }

    /// Waits for slot 0 and takes its result.
    fn result(&mut self) -> i64 {
        let area = self.area.clone();
        self.core.wait(
            &mut || area.entry(0, 0).status() == status::DONE,
            &mut || false,
            None,
        );
        self.area.entry(0, 0).take().expect("done")
    }

    /// `nr(args)` run through the ring, start to finish.
    fn call(&mut self, nr: c_long, args: &[u64]) -> i64 {
        self.start(nr, args);
        self.result()
    }
}

/// The synchronous call (negative errno).
fn sync(nr: c_long, args: &[u64]) -> i64 {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: each test passes arguments valid for the call, or bad addresses that the kernel
    // refuses with -EFAULT.
    unsafe { crate::raw::syscall6(nr as u64, &a) }
}

fn pipe() -> [i32; 2] {
    let mut p = [0i32; 2];
    // SAFETY: pipe writes two fds into our array.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    p
}

fn close(fds: &[i32]) {
    for &fd in fds {
        // SAFETY: closing fds the test opened.
        unsafe { libc::close(fd) };
    }
}

fn write_byte(fd: i32) {
    // SAFETY: writes one byte from a live buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

/// An epoll instance watching `fd` for input, with `fd` as the event's data.
fn epoll_on(fd: i32) -> i32 {
    // SAFETY: plain epoll calls on our fds with a live event.
    unsafe {
        let ep = libc::epoll_create1(0);
        assert!(ep >= 0);
        let mut ev = epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev), 0);
        ep
    }
}

fn events() -> Vec<epoll_event> {
    vec![epoll_event { events: 0, u64: 0 }; 8]
}

fn ewait(ep: i32, evs: &mut [epoll_event], max: i64, timeout: i32) -> [u64; 4] {
    [
        ep as u64,
        evs.as_mut_ptr() as u64,
        max as u64,
        timeout as u64,
    ]
}

const EINTR: i64 = -(libc::EINTR as i64);

#[test]
fn epoll_wait_ready_at_once_equals_sync() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    let ep = epoll_on(p[0]);
    write_byte(p[1]);
    for timeout in [-1, 0, 1000] {
        let (mut got, mut want) = (events(), events());
        let n = r.call(libc::SYS_epoll_wait, &ewait(ep, &mut got, 8, timeout));
        let m = sync(libc::SYS_epoll_wait, &ewait(ep, &mut want, 8, timeout));
        assert_eq!((n, m), (1, 1), "timeout {timeout}");
        assert_eq!(
            (got[0].events, got[0].u64),
            (want[0].events, want[0].u64),
            "timeout {timeout}"
        );
        assert_eq!(
            (got[0].events, got[0].u64),
            (libc::EPOLLIN as u32, p[0] as u64)
        );
    }
    // epoll_pwait with a NULL mask is the same call.
    let mut got = events();
    let a = ewait(ep, &mut got, 8, 1000);
    assert_eq!(
        r.call(libc::SYS_epoll_pwait, &[a[0], a[1], a[2], a[3], 0, 8]),
        1
    );
    close(&[p[0], p[1], ep]);
}

#[test]
fn epoll_wait_waits_on_the_ring_until_ready() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    let ep = epoll_on(p[0]);
    for timeout in [-1, 10_000] {
        let mut got = events();
        r.start(libc::SYS_epoll_wait, &ewait(ep, &mut got, 8, timeout));
        assert!(r.on_ring(), "timeout {timeout}: waiting on the ring");
        r.core.poll();
        assert_eq!(r.area.entry(0, 0).status(), status::BUSY);
        let writer = p[1];
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            write_byte(writer);
        });
        assert_eq!(r.result(), 1, "timeout {timeout}");
        assert_eq!({ got[0].u64 }, p[0] as u64);
        t.join().unwrap();
        let mut byte = [0u8; 1];
        // SAFETY: reads one byte into a live buffer.
        assert_eq!(unsafe { libc::read(p[0], byte.as_mut_ptr().cast(), 1) }, 1);
    }
    close(&[p[0], p[1], ep]);
}

#[test]
fn epoll_wait_times_out() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    let ep = epoll_on(p[0]);
    let mut got = events();
    let t = Instant::now();
    r.start(libc::SYS_epoll_wait, &ewait(ep, &mut got, 8, 60));
    assert!(r.on_ring());
    assert_eq!(r.result(), 0);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(60), "returned after {took:?}");
    assert!(took < Duration::from_secs(5), "returned after {took:?}");
    // A zero timeout never waits: the request is cancelled after its first attempt.
    let t = Instant::now();
    assert_eq!(r.call(libc::SYS_epoll_wait, &ewait(ep, &mut got, 8, 0)), 0);
    assert!(t.elapsed() < Duration::from_secs(5));
    // The timer of a call that completed is gone: a new call on the same slot is not cut short.
    write_byte(p[1]);
    assert_eq!(r.call(libc::SYS_epoll_wait, &ewait(ep, &mut got, 8, 50)), 1);
    close(&[p[0], p[1], ep]);
}

#[test]
fn epoll_pwait2_equals_sync() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    let ep = epoll_on(p[0]);
    let mut got = events();
    let ptr = got.as_mut_ptr() as u64;
    let ts = |sec: i64, nsec: i64| libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let (short, zero, bad) = (ts(0, 60_000_000), ts(0, 0), ts(0, 1_000_000_000));
    let at = |t: &libc::timespec| t as *const libc::timespec as u64;
    // Nothing ready: a timespec timeout on the ring, 0 after it; a zero one at once.
    let t = Instant::now();
    r.start(
        libc::SYS_epoll_pwait2,
        &[ep as u64, ptr, 8, at(&short), 0, 8],
    );
    assert!(r.on_ring());
    assert_eq!(r.result(), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        r.call(
            libc::SYS_epoll_pwait2,
            &[ep as u64, ptr, 8, at(&zero), 0, 8]
        ),
        0
    );
    // Ready, with no timeout (NULL): the event.
    write_byte(p[1]);
    assert_eq!(
        r.call(libc::SYS_epoll_pwait2, &[ep as u64, ptr, 8, 0, 0, 8]),
        1
    );
    assert_eq!({ got[0].u64 }, p[0] as u64);
    // A timeout the syscall refuses, or a signal mask: the syscall threads, same answers.
    let mask = 0u64;
    let caps = r.caps();
    for (what, a) in [
        ("invalid timespec", [ep as u64, ptr, 8, at(&bad), 0, 8]),
        ("unreadable timespec", [ep as u64, ptr, 8, 16, 0, 8]),
        (
            "signal mask",
            [ep as u64, ptr, 8, at(&short), &mask as *const u64 as u64, 8],
        ),
    ] {
        let nr = libc::SYS_epoll_pwait2;
        assert!(
            matches!(route(nr as u16, &a, &caps, None), Route::Fallback),
            "{what}"
        );
        assert_eq!(r.call(nr, &a), sync(nr, &a), "{what}");
    }
    close(&[p[0], p[1], ep]);
}

#[test]
fn epoll_wait_errors_equal_sync() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    let ep = epoll_on(p[0]);
    write_byte(p[1]);
    let mut evs = events();
    let ptr = evs.as_mut_ptr() as u64;
    let kernel = 0xffff_8000_0000_0000u64;
    let cases: [(&str, [u64; 4]); 8] = [
        ("closed fd", [9_999, ptr, 8, 0]),
        ("negative fd", [-1i64 as u64, ptr, 8, 1000]),
        ("not an epoll fd", [p[0] as u64, ptr, 8, 1000]),
        ("maxevents 0", [ep as u64, ptr, 0, 1000]),
        ("maxevents -1", [ep as u64, ptr, -1i64 as u64, -1i64 as u64]),
        ("maxevents too big", [ep as u64, ptr, i32::MAX as u64, 1000]),
        ("unmapped array", [ep as u64, 16, 8, 1000]),
        ("kernel array", [ep as u64, kernel, 8, 1000]),
    ];
    for (what, a) in cases {
        let want = sync(libc::SYS_epoll_wait, &a);
        assert!(want < 0, "{what}: {want}");
        assert_eq!(r.call(libc::SYS_epoll_wait, &a), want, "{what}");
    }
    close(&[p[0], p[1], ep]);
}

#[test]
fn an_interrupted_epoll_wait_ends_with_eintr() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    let ep = epoll_on(p[0]);
    for timeout in [-1, 10_000] {
        let mut got = events();
        r.start(libc::SYS_epoll_wait, &ewait(ep, &mut got, 8, timeout));
        assert!(r.on_ring());
        r.core.interrupt(0);
        assert_eq!(r.result(), EINTR, "timeout {timeout}");
    }
    // The instance still works.
    write_byte(p[1]);
    let mut got = events();
    assert_eq!(r.call(libc::SYS_epoll_wait, &ewait(ep, &mut got, 8, -1)), 1);
    close(&[p[0], p[1], ep]);
}

#[test]
fn epoll_wait_falls_back_without_the_opcode() {
    let mut r = Ring::new(&[EpollWait::CODE]);
    let p = pipe();
    let ep = epoll_on(p[0]);
    let mut got = events();
    let a = ewait(ep, &mut got, 8, 1000);
    let a6 = [a[0], a[1], a[2], a[3], 0, 0];
    assert!(matches!(
        route(libc::SYS_epoll_wait as u16, &a6, &r.caps(), None),
        Route::Fallback
    ));
    r.start(libc::SYS_epoll_wait, &a);
    assert!(!r.on_ring(), "on a syscall thread");
    write_byte(p[1]);
    assert_eq!(r.result(), 1);
    assert_eq!({ got[0].u64 }, p[0] as u64);
    // With the opcode it goes to the ring; with a signal mask it never does.
    let full = Ring::new(&[]).caps();
    assert!(matches!(
        route(libc::SYS_epoll_wait as u16, &a6, &full, None),
        Route::Ring(..)
    ));
    let mask = 0u64;
    let masked = [a[0], a[1], a[2], a[3], &mask as *const u64 as u64, 8];
    assert!(matches!(
        route(libc::SYS_epoll_pwait as u16, &masked, &full, None),
        Route::Fallback
    ));
    close(&[p[0], p[1], ep]);
}

fn pfd(fd: i32, events: i16) -> pollfd {
    pollfd {
        fd,
        events,
        revents: 0x7f7f,
    }
}

fn poll_args(p: &mut pollfd, timeout: i32) -> [u64; 3] {
    [p as *mut pollfd as u64, 1, timeout as u64]
}

#[test]
fn poll_equals_sync() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    let mut s = [0i32; 2];
    // SAFETY: socketpair writes two fds into our array.
    let made = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, s.as_mut_ptr()) };
    assert_eq!(made, 0);
    write_byte(p[1]);
    // SAFETY: shuts down our own socket's sending side: the peer sees POLLIN | POLLRDHUP.
    assert_eq!(unsafe { libc::shutdown(s[0], libc::SHUT_WR) }, 0);
    let (inp, out) = (libc::POLLIN, libc::POLLOUT);
    let cases: [(&str, i32, i16); 6] = [
        ("readable pipe", p[0], inp),
        ("writable pipe, asked for input too", p[1], inp | out),
        ("peer shut down, POLLRDHUP not asked", s[1], inp | out),
        (
            "peer shut down, POLLRDHUP asked",
            s[1],
            inp | libc::POLLRDHUP,
        ),
        ("closed fd", 9_999, inp),
        ("only POLLRDNORM", p[0], libc::POLLRDNORM),
    ];
    for (what, fd, ev) in cases {
        let (mut got, mut want) = (pfd(fd, ev), pfd(fd, ev));
        let m = sync(libc::SYS_poll, &poll_args(&mut want, 1000));
        r.start(libc::SYS_poll, &poll_args(&mut got, 1000));
        let n = r.result();
        assert_eq!((n, got.revents), (m, want.revents), "{what}");
        assert_eq!(n, 1, "{what}");
    }
    let mut bad = pfd(9_999, libc::POLLIN);
    assert_eq!(r.call(libc::SYS_poll, &poll_args(&mut bad, -1)), 1);
    assert_eq!(bad.revents, libc::POLLNVAL);
    close(&[p[0], p[1], s[0], s[1]]);
}

#[test]
fn poll_reports_hangups_and_errors_always() {
    let mut r = Ring::new(&[]);
    // A pipe whose writer is gone: POLLHUP, though only POLLIN was asked for.
    let p = pipe();
    close(&[p[1]]);
    let mut got = pfd(p[0], libc::POLLIN);
    assert_eq!(r.call(libc::SYS_poll, &poll_args(&mut got, -1)), 1);
    assert_eq!(got.revents, libc::POLLHUP);
    // A pipe whose reader is gone: POLLERR for the writer.
    let q = pipe();
    close(&[q[0]]);
    let mut got = pfd(q[1], libc::POLLIN);
    let mut want = pfd(q[1], libc::POLLIN);
    let m = sync(libc::SYS_poll, &poll_args(&mut want, -1));
    assert_eq!(r.call(libc::SYS_poll, &poll_args(&mut got, -1)), m);
    assert_eq!(got.revents, want.revents);
    assert_ne!(got.revents & libc::POLLERR, 0);
    close(&[p[0], q[1]]);
}

#[test]
fn poll_waits_times_out_and_is_interrupted() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    // Timed out: 0, revents written back as 0.
    let mut got = pfd(p[0], libc::POLLIN);
    let t = Instant::now();
    r.start(libc::SYS_poll, &poll_args(&mut got, 60));
    assert!(r.on_ring());
    assert_eq!((r.result(), got.revents), (0, 0));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(60) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A zero timeout never waits.
    let mut got = pfd(p[0], libc::POLLIN);
    assert_eq!(r.call(libc::SYS_poll, &poll_args(&mut got, 0)), 0);
    assert_eq!(got.revents, 0);
    // Infinite, woken by a write.
    for timeout in [-1, 10_000] {
        let mut got = pfd(p[0], libc::POLLIN);
        r.start(libc::SYS_poll, &poll_args(&mut got, timeout));
        assert!(r.on_ring());
        r.core.poll();
        assert_eq!(r.area.entry(0, 0).status(), status::BUSY);
        let writer = p[1];
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            write_byte(writer);
        });
        assert_eq!((r.result(), got.revents), (1, libc::POLLIN), "{timeout}");
        t.join().unwrap();
        let mut byte = [0u8; 1];
        // SAFETY: reads one byte into a live buffer.
        assert_eq!(unsafe { libc::read(p[0], byte.as_mut_ptr().cast(), 1) }, 1);
    }
    // Interrupted: -EINTR, revents 0.
    for timeout in [-1, 10_000] {
        let mut got = pfd(p[0], libc::POLLIN);
        r.start(libc::SYS_poll, &poll_args(&mut got, timeout));
        assert!(r.on_ring());
        r.core.interrupt(0);
        assert_eq!((r.result(), got.revents), (EINTR, 0), "{timeout}");
    }
    close(&p);
}

#[test]
fn poll_faults_equal_sync() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    write_byte(p[1]);
    // Unreadable pollfd: the syscall threads answer -EFAULT.
    let a = [16, 1, 1000];
    assert_eq!(r.call(libc::SYS_poll, &a), sync(libc::SYS_poll, &a));
    assert_eq!(sync(libc::SYS_poll, &a), -(libc::EFAULT as i64));
    // A read-only pollfd: read, waited on, and its revents cannot be written: -EFAULT.
    // SAFETY: a fresh private anonymous page, written before it is made read-only, unmapped
    // at the end; nothing else uses it.
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(page, libc::MAP_FAILED);
        page.cast::<pollfd>().write(pfd(p[0], libc::POLLIN));
        assert_eq!(libc::mprotect(page, 4096, libc::PROT_READ), 0);
        let a = [page as u64, 1, 1000];
        let want = sync(libc::SYS_poll, &a);
        assert_eq!(want, -(libc::EFAULT as i64));
        r.start(libc::SYS_poll, &a);
        assert_eq!(r.result(), want);
        libc::munmap(page, 4096);
    }
    close(&p);
}

#[test]
fn poll_routes() {
    let full = Ring::new(&[]).caps();
    let p = pipe();
    let mut ok = pfd(p[0], libc::POLLIN);
    let mut negative = pfd(-1, libc::POLLIN);
    let mut out_only = pfd(p[1], libc::POLLOUT);
    let mut two = [pfd(p[0], libc::POLLIN), pfd(p[1], libc::POLLOUT)];
    let on_ring = |nr: c_long, a: [u64; 6], caps: &Caps| {
        matches!(route(nr as u16, &a, caps, None), Route::Ring(..))
    };
    let pa = |p: &mut pollfd, n: u64| [p as *mut pollfd as u64, n, 1000, 0, 0, 0];
    assert!(on_ring(libc::SYS_poll, pa(&mut ok, 1), &full));
    assert!(!on_ring(
        libc::SYS_poll,
        pa(&mut ok, 1),
        &full.without(PollAdd::CODE)
    ));
    assert!(!on_ring(libc::SYS_poll, pa(&mut negative, 1), &full));
    assert!(!on_ring(libc::SYS_poll, pa(&mut out_only, 1), &full));
    assert!(!on_ring(libc::SYS_poll, pa(&mut two[0], 2), &full));
    assert!(!on_ring(libc::SYS_poll, [16, 1, 1000, 0, 0, 0], &full));
    // ppoll: NULL mask only; a timeout the syscall refuses stays with it.
    let ts = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    let bad_ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000_000,
    };
    let mask = 0u64;
    let pp = |p: &mut pollfd, ts: u64, mask: u64| [p as *mut pollfd as u64, 1, ts, mask, 8, 0];
    let ts_addr = &ts as *const _ as u64;
    assert!(on_ring(libc::SYS_ppoll, pp(&mut ok, ts_addr, 0), &full));
    assert!(on_ring(libc::SYS_ppoll, pp(&mut ok, 0, 0), &full));
    let mask_addr = &mask as *const u64 as u64;
    assert!(!on_ring(
        libc::SYS_ppoll,
        pp(&mut ok, ts_addr, mask_addr),
        &full
    ));
    let bad = &bad_ts as *const _ as u64;
    assert!(!on_ring(libc::SYS_ppoll, pp(&mut ok, bad, 0), &full));
    assert!(!on_ring(libc::SYS_ppoll, pp(&mut ok, 16, 0), &full));
    close(&p);
}

#[test]
fn poll_falls_back_without_the_opcode() {
    let mut r = Ring::new(&[PollAdd::CODE]);
    let p = pipe();
    let mut got = pfd(p[0], libc::POLLIN);
    r.start(libc::SYS_poll, &poll_args(&mut got, 10_000));
    assert!(!r.on_ring(), "on a syscall thread");
    write_byte(p[1]);
    assert_eq!((r.result(), got.revents), (1, libc::POLLIN));
    // A negative fd is ignored: the call sleeps its timeout and returns 0 (syscall thread).
    let mut neg = pfd(-1, libc::POLLIN);
    let t = Instant::now();
    assert_eq!(r.call(libc::SYS_poll, &poll_args(&mut neg, 40)), 0);
    assert!(t.elapsed() >= Duration::from_millis(40));
    assert_eq!(neg.revents, 0);
    close(&p);
}

#[test]
fn ppoll_equals_sync_and_updates_its_timeout() {
    let mut r = Ring::new(&[]);
    let p = pipe();
    // Times out: 0, the timeout updated to what is left (nothing).
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    let mut got = pfd(p[0], libc::POLLIN);
    let a = [
        &mut got as *mut pollfd as u64,
        1,
        &mut ts as *mut _ as u64,
        0,
        8,
    ];
    r.start(libc::SYS_ppoll, &a);
    assert!(r.on_ring());
    assert_eq!(r.result(), 0);
    assert_eq!((ts.tv_sec, ts.tv_nsec, got.revents), (0, 0, 0));
    // Ready: 1, and the time left is less than given.
    write_byte(p[1]);
    let mut ts = libc::timespec {
        tv_sec: 10,
        tv_nsec: 0,
    };
    let mut got = pfd(p[0], libc::POLLIN);
    let a = [
        &mut got as *mut pollfd as u64,
        1,
        &mut ts as *mut _ as u64,
        0,
        8,
    ];
    assert_eq!(r.call(libc::SYS_ppoll, &a), 1);
    assert_eq!(got.revents, libc::POLLIN);
    assert!(
        ts.tv_sec <= 10 && (ts.tv_sec, ts.tv_nsec) != (10, 0),
        "{ts:?}"
    );
    assert!(ts.tv_sec >= 5, "{ts:?}");
    // A NULL timeout waits until ready.
    let mut got = pfd(p[0], libc::POLLIN);
    let a = [&mut got as *mut pollfd as u64, 1, 0, 0, 8];
    assert_eq!(r.call(libc::SYS_ppoll, &a), 1);
    close(&p);
}
