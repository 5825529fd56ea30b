//! Specialization contexts (`flexsc_kmod::specialize`): calls on a specialized fd return what the
//! plain calls return (TCP and UDP, fixed files and fixed buffers), and a context ends, with
//! every ring letting go of the file, when its fd is closed, replaced by dup2/dup3, or the
//! process forks. Backends that skip nothing (`threads`, `kmod`) keep the calls correct.
//!
//! The registry of contexts is the process's (fds are), so these tests run one at a time (the
//! `SERIAL` lock): one test's close of an fd number would end another's context on it. uring
//! tests pass with a note where io_uring is unavailable.

use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};

use flexsc_kmod::specialize::{Hints, Skips};
use flexsc_kmod::{BackendKind, Config, Poster, Registration, Syscall, register};
use libc::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn reg(backend: BackendKind) -> Option<Registration> {
    let config = Config {
        backend,
        pages_per_core: 1,
        ..Config::default()
    };
    match register(config) {
        Ok(r) => Some(r),
        Err(e) if e.kind() == ErrorKind::Unsupported || backend == BackendKind::Kmod => {
            eprintln!("skipped ({backend:?}): {e}");
            None
        }
        Err(e) => panic!("register: {e}"),
    }
}

/// Runs one call through the poster and returns its raw result.
fn run(p: &mut Poster, nr: c_long, args: &[u64]) -> i64 {
    // SAFETY: every call here passes pointers to live locals or pool buffers that outlive the
    // call (`call` returns only once it completed).
    let call = unsafe { Syscall::new(nr, args) };
    p.call(&call)
}

fn raw(nr: c_long, args: &[u64]) -> i64 {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: as for `run`.
    let r = unsafe { syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        r
    }
}

/// A connected pair of loopback UDP sockets.
fn udp_pair() -> (RawFd, RawFd) {
    let a = udp_bound();
    let b = udp_bound();
    connect_to(a, b);
    connect_to(b, a);
    (a, b)
}

fn udp_bound() -> RawFd {
    // SAFETY: plain socket calls on our own locals.
    unsafe {
        let fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let addr = loopback(0);
        assert_eq!(
            bind(fd, (&raw const addr).cast(), size_of_val(&addr) as u32),
            0
        );
        fd
    }
}

fn loopback(port: u16) -> sockaddr_in {
    sockaddr_in {
        sin_family: AF_INET as sa_family_t,
        sin_port: port.to_be(),
        sin_addr: in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    }
}

fn local_addr(fd: RawFd) -> sockaddr_in {
    let mut addr = loopback(0);
    let mut len = size_of_val(&addr) as socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `addr`.
    let r = unsafe { getsockname(fd, (&raw mut addr).cast(), &mut len) };
    assert_eq!(r, 0);
    addr
}

fn connect_to(fd: RawFd, peer: RawFd) {
    let addr = local_addr(peer);
    // SAFETY: connect reads `addr`.
    let r = unsafe { connect(fd, (&raw const addr).cast(), size_of_val(&addr) as u32) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
}

/// A connected loopback TCP pair (client, server side).
fn tcp_pair() -> (RawFd, RawFd) {
    // SAFETY: plain socket calls on our own locals.
    unsafe {
        let l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        let addr = loopback(0);
        assert_eq!(
            bind(l, (&raw const addr).cast(), size_of_val(&addr) as u32),
            0
        );
        assert_eq!(listen(l, 4), 0);
        let c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        connect_to(c, l);
        let s = accept4(l, std::ptr::null_mut(), std::ptr::null_mut(), SOCK_CLOEXEC);
        assert!(s >= 0);
        close(l);
        (c, s)
    }
}

fn send(p: &mut Poster, fd: RawFd, msg: &[u8]) -> i64 {
    let flags = MSG_NOSIGNAL as u64;
    run(
        p,
        SYS_sendto,
        &[
            fd as u64,
            msg.as_ptr() as u64,
            msg.len() as u64,
            flags,
            0,
            0,
        ],
    )
}

fn recv(p: &mut Poster, fd: RawFd, buf: &mut [u8]) -> i64 {
    run(
        p,
        SYS_recvfrom,
        &[
            fd as u64,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
            0,
        ],
    )
}

/// Whether a datagram is waiting on `fd` (without taking it).
fn readable(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    raw(
        SYS_recvfrom,
        &[
            fd as u64,
            b.as_mut_ptr() as u64,
            1,
            MSG_PEEK as u64 | MSG_DONTWAIT as u64,
            0,
            0,
        ],
    ) >= 0
}

fn closefd(fd: RawFd) {
    raw(SYS_close, &[fd as u64]);
}

#[test]
fn udp_send_recv_through_a_context_equal_plain_calls() {
    let _s = serial();
    for backend in [BackendKind::Uring, BackendKind::Threads, BackendKind::Kmod] {
        let Some(reg) = reg(backend) else { continue };
        let mut p = reg.poster(0).unwrap();
        let (a, b) = udp_pair();
        let ca = p.specialize(a, Hints::default()).unwrap();
        let cb = reg.specialize(b, Hints::default()).unwrap();
        let expect = Skips {
            fd_lookup: backend == BackendKind::Uring,
            buffer_mapping: false,
        };
        assert_eq!(ca.skips(), expect, "{backend:?}");
        for i in 0..100u32 {
            let msg = [i as u8; 64];
            assert_eq!(send(&mut p, a, &msg), 64);
            let mut got = [0u8; 128];
            assert_eq!(recv(&mut p, b, &mut got), 64, "{backend:?} message {i}");
            assert_eq!(&got[..64], &msg[..]);
        }
        // The other direction, and the vector forms.
        let msg = *b"reply";
        let iov = iovec {
            iov_base: msg.as_ptr() as *mut c_void,
            iov_len: msg.len(),
        };
        assert_eq!(
            run(&mut p, SYS_writev, &[b as u64, (&raw const iov) as u64, 1]),
            5
        );
        let mut got = [0u8; 16];
        assert_eq!(recv(&mut p, a, &mut got), 5);
        assert_eq!(&got[..5], b"reply");
        assert!(ca.is_valid() && cb.is_valid());
        drop((ca, cb));
        closefd(a);
        closefd(b);
    }
}

#[test]
fn tcp_send_recv_through_a_context_equal_plain_calls() {
    let _s = serial();
    for backend in [BackendKind::Uring, BackendKind::Threads] {
        let Some(reg) = reg(backend) else { continue };
        let mut p = reg.poster(0).unwrap();
        let (c, s) = tcp_pair();
        let _cc = p.specialize(c, Hints::default()).unwrap();
        let _cs = p.specialize(s, Hints::default()).unwrap();
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let msg: Vec<u8> = (0..64).map(|j| (i * 7 + j) as u8).collect();
            assert_eq!(send(&mut p, c, &msg), 64);
            sent.extend_from_slice(&msg);
        }
        let mut got = vec![0u8; sent.len()];
        let mut n = 0;
        while n < got.len() {
            let r = recv(&mut p, s, &mut got[n..]);
            assert!(r > 0, "{backend:?}: recv {r}");
            n += r as usize;
        }
        assert_eq!(got, sent);
        // read and write on the same fds.
        assert_eq!(
            run(&mut p, SYS_write, &[s as u64, b"pong".as_ptr() as u64, 4]),
            4
        );
        let mut buf = [0u8; 4];
        assert_eq!(
            run(&mut p, SYS_read, &[c as u64, buf.as_mut_ptr() as u64, 4]),
            4
        );
        assert_eq!(&buf, b"pong");
        closefd(c);
        closefd(s);
    }
}

#[test]
fn pool_buffers_move_data_with_fixed_buffers() {
    let _s = serial();
    let Some(reg) = reg(BackendKind::Uring) else {
        return;
    };
    let mut p = reg.poster(0).unwrap();
    let (a, b) = udp_pair();
    let hints = Hints {
        message_size: 64,
        buffers: 8,
    };
    let mut ca = p.specialize(a, hints).unwrap();
    let mut cb = p.specialize(b, hints).unwrap();
    assert_eq!(ca.buffers(), 8);
    assert!(ca.skips().buffer_mapping, "{:?}", ca.skips());
    assert!(ca.buffer_mut(8).is_none());
    for i in 0..8 {
        let out = ca.buffer_mut(i).unwrap();
        out.fill(i as u8 + 1);
        let (ptr, len) = (out.as_ptr() as u64, out.len() as u64);
        assert_eq!(run(&mut p, SYS_write, &[a as u64, ptr, len]), 64);
        let into = cb.buffer_mut(7 - i).unwrap();
        let ptr = into.as_mut_ptr() as u64;
        assert_eq!(run(&mut p, SYS_read, &[b as u64, ptr, 64]), 64);
        assert!(
            cb.buffer_mut(7 - i)
                .unwrap()
                .iter()
                .all(|&x| x == i as u8 + 1)
        );
    }
    // A buffer reaching past the pool is not a fixed buffer: the plain call still works.
    let out = ca.buffer_mut(7).unwrap().as_ptr() as u64;
    let past = run(&mut p, SYS_write, &[a as u64, out + 32, 64]);
    assert!(past == 64 || past == -i64::from(EFAULT), "{past}");
    drop((ca, cb));
    closefd(a);
    closefd(b);
}

#[test]
fn close_ends_the_context_and_the_ring_lets_go_of_the_file() {
    let _s = serial();
    for backend in [BackendKind::Uring, BackendKind::Threads] {
        let Some(reg) = reg(backend) else { continue };
        let mut p = reg.poster(0).unwrap();
        let (c, s) = tcp_pair();
        let ctx = p.specialize(c, Hints::default()).unwrap();
        assert_eq!(send(&mut p, c, b"hello"), 5);
        assert!(ctx.is_valid());
        assert_eq!(run(&mut p, SYS_close, &[c as u64]), 0);
        assert!(
            !ctx.is_valid(),
            "{backend:?}: close did not end the context"
        );
        // The peer sees the data, then end of file: no fixed slot holds the socket open.
        assert_eq!(drain_to_eof(&mut p, s), b"hello", "{backend:?}");
        let mut buf = [0u8; 16];
        // The number, reused by a new socket, reaches the new socket.
        let (mut x, mut y) = udp_pair();
        if y == c {
            (x, y) = (y, x);
        }
        assert_eq!(raw(SYS_dup2, &[x as u64, c as u64]), c as i64);
        assert_eq!(send(&mut p, c, b"new"), 3);
        assert_eq!(recv(&mut p, y, &mut buf), 3, "{backend:?}");
        drop(ctx);
        for fd in [s, x, y, c] {
            closefd(fd);
        }
    }
}

/// A close inside a compound (where no hook sees its fd before it runs) ends the context too:
/// any compound entry ends every context, before it runs.
#[test]
fn a_compound_closing_the_fd_ends_the_context() {
    let _s = serial();
    for backend in [BackendKind::Uring, BackendKind::Threads] {
        let Some(reg) = reg(backend) else { continue };
        let mut p = reg.poster(0).unwrap();
        let (c, s) = tcp_pair();
        let ctx = p.specialize(c, Hints::default()).unwrap();
        assert_eq!(send(&mut p, c, b"hi"), 2);
        // SAFETY: close takes an integer, no memory.
        let close = unsafe { Syscall::new(SYS_close, &[c as u64]) };
        let mut results = [0i64; 1];
        assert_eq!(p.multi_call(&[(close, true)], &mut results).unwrap(), 2);
        assert_eq!(results[0], 0, "{backend:?}");
        assert!(
            !ctx.is_valid(),
            "{backend:?}: the compound's close kept the context"
        );
        // No fixed slot holds the socket open: the peer sees the data, then end of file.
        assert_eq!(drain_to_eof(&mut p, s), b"hi", "{backend:?}");
        drop(ctx);
        closefd(s);
    }
}

/// Reads `fd` to end of file; panics if it does not come within 5 s (something holds the peer's
/// socket open).
fn drain_to_eof(p: &mut Poster, fd: RawFd) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    loop {
        let mut pfd = pollfd {
            fd,
            events: POLLIN,
            revents: 0,
        };
        let ready = raw(SYS_poll, &[(&raw mut pfd) as u64, 1, 5000]);
        assert_eq!(
            ready, 1,
            "no end of file: the closed socket is still held open"
        );
        let r = recv(p, fd, &mut buf);
        assert!(r >= 0, "{r}");
        if r == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..r as usize]);
    }
}

/// A ring of another posting core, asleep in flexsc_wait, lets go of the file too (the close
/// rings its doorbell).
#[test]
fn close_releases_the_file_on_every_core() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let _s = serial();
    let config = Config {
        backend: BackendKind::Uring,
        cores: 2,
        pages_per_core: 1,
        ..Config::default()
    };
    let reg = match register(config) {
        Ok(r) => Arc::new(r),
        Err(e) if e.kind() == ErrorKind::Unsupported => return eprintln!("skipped: {e}"),
        Err(e) => panic!("register: {e}"),
    };
    let (c, s) = tcp_pair();
    let ctx = reg.specialize(c, Hints::default()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let other = {
        let (reg, done) = (reg.clone(), done.clone());
        std::thread::spawn(move || {
            let mut p1 = reg.poster(1).unwrap();
            // Core 1's ring registers the file, and uses it.
            assert_eq!(send(&mut p1, c, b"from core 1 "), 12);
            tx.send(()).unwrap();
            while !done.load(Ordering::Acquire) {
                p1.wait_with(|| done.load(Ordering::Acquire), None);
            }
        })
    };
    rx.recv().unwrap();
    let mut p0 = reg.poster(0).unwrap();
    assert_eq!(send(&mut p0, c, b"and core 0"), 10);
    assert_eq!(run(&mut p0, SYS_close, &[c as u64]), 0);
    assert!(!ctx.is_valid());
    assert_eq!(drain_to_eof(&mut p0, s), b"from core 1 and core 0");
    done.store(true, Ordering::Release);
    reg.wake(1);
    other.join().unwrap();
    closefd(s);
}

#[test]
fn dup2_onto_the_fd_ends_the_context() {
    let _s = serial();
    for (backend, nr) in [
        (BackendKind::Uring, SYS_dup2),
        (BackendKind::Uring, SYS_dup3),
        (BackendKind::Threads, SYS_dup2),
    ] {
        let Some(reg) = reg(backend) else { continue };
        let mut p = reg.poster(0).unwrap();
        let (a, b) = udp_pair();
        let (x, y) = udp_pair();
        let ctx = p.specialize(a, Hints::default()).unwrap();
        assert_eq!(send(&mut p, a, b"old"), 3);
        let mut buf = [0u8; 8];
        assert_eq!(recv(&mut p, b, &mut buf), 3);
        let args: &[u64] = if nr == SYS_dup3 {
            &[x as u64, a as u64, O_CLOEXEC as u64]
        } else {
            &[x as u64, a as u64]
        };
        assert_eq!(run(&mut p, nr, args), a as i64);
        assert!(!ctx.is_valid(), "{backend:?} {nr}");
        // `a` now names x's socket: the send reaches y, never b.
        assert_eq!(send(&mut p, a, b"new"), 3);
        assert_eq!(recv(&mut p, y, &mut buf), 3);
        assert_eq!(&buf[..3], b"new");
        assert!(
            !readable(b),
            "{backend:?}: a stale slot sent to the old socket"
        );
        for fd in [a, b, x, y] {
            closefd(fd);
        }
    }
}

#[test]
fn close_range_ends_the_contexts_in_the_range() {
    let _s = serial();
    let Some(reg) = reg(BackendKind::Uring) else {
        return;
    };
    let mut p = reg.poster(0).unwrap();
    let (a, b) = udp_pair();
    let ca = p.specialize(a, Hints::default()).unwrap();
    let cb = p.specialize(b, Hints::default()).unwrap();
    let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
    // CLOSE_RANGE_CLOEXEC closes nothing now: the contexts hold.
    assert_eq!(
        run(
            &mut p,
            SYS_close_range,
            &[lo, hi, CLOSE_RANGE_CLOEXEC as u64]
        ),
        0
    );
    assert!(ca.is_valid() && cb.is_valid());
    assert_eq!(run(&mut p, SYS_close_range, &[lo, hi, 0]), 0);
    assert!(!ca.is_valid() && !cb.is_valid());
}

#[test]
fn dropping_the_context_keeps_calls_correct() {
    let _s = serial();
    let Some(reg) = reg(BackendKind::Uring) else {
        return;
    };
    let mut p = reg.poster(0).unwrap();
    let (a, b) = udp_pair();
    let ctx = p.specialize(a, Hints::default()).unwrap();
    assert_eq!(send(&mut p, a, b"one"), 3);
    drop(ctx);
    assert_eq!(send(&mut p, a, b"two"), 3);
    let mut buf = [0u8; 8];
    assert_eq!(recv(&mut p, b, &mut buf), 3);
    assert_eq!(recv(&mut p, b, &mut buf), 3);
    assert_eq!(&buf[..3], b"two");
    // Specializing again after the drop is allowed.
    let again = p.specialize(a, Hints::default()).unwrap();
    assert!(again.is_valid());
    drop(again);
    closefd(a);
    closefd(b);
}

/// The documented bypass: a close the library does not see (a raw system call) leaves the
/// context in force, and entries on the number keep reaching the specialized file through the
/// ring's fixed slot, until the context is dropped.
#[test]
fn a_bypassing_close_is_not_seen() {
    let _s = serial();
    let Some(reg) = reg(BackendKind::Uring) else {
        return;
    };
    let mut p = reg.poster(0).unwrap();
    let (a, b) = udp_pair();
    let ctx = p.specialize(a, Hints::default()).unwrap();
    assert_eq!(send(&mut p, a, b"x"), 1);
    closefd(a);
    assert!(ctx.is_valid());
    assert_eq!(send(&mut p, a, b"still"), 5, "the fixed slot was not used");
    drop(ctx);
    assert_eq!(send(&mut p, a, b"gone"), -i64::from(EBADF));
    closefd(b);
}

#[test]
fn fork_ends_every_context_in_the_child() {
    let _s = serial();
    let Some(reg) = reg(BackendKind::Uring) else {
        return;
    };
    let mut p = reg.poster(0).unwrap();
    let (a, b) = udp_pair();
    let ctx = p.specialize(a, Hints::default()).unwrap();
    assert_eq!(send(&mut p, a, b"parent"), 6);
    // SAFETY: the child only makes raw system calls and reads the registry, then _exits.
    let pid = unsafe { fork() };
    if pid == 0 {
        // No context holds in the child; plain calls on the fd still work.
        let ok = !ctx.is_valid()
            && raw(
                SYS_sendto,
                &[a as u64, b"child".as_ptr() as u64, 5, 0, 0, 0],
            ) == 5;
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { _exit(if ok { 0 } else { 1 }) };
    }
    assert!(pid > 0);
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { waitpid(pid, &mut status, 0) }, pid);
    assert!(
        WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "child failed"
    );
    assert!(ctx.is_valid(), "the parent's context holds");
    let mut buf = [0u8; 8];
    assert_eq!(recv(&mut p, b, &mut buf), 6);
    assert_eq!(recv(&mut p, b, &mut buf), 5);
    assert_eq!(&buf[..5], b"child");
    drop(ctx);
    closefd(a);
    closefd(b);
}

#[test]
fn bad_fds_and_hints_get_clear_errors() {
    let _s = serial();
    for backend in [BackendKind::Uring, BackendKind::Threads] {
        let Some(reg) = reg(backend) else { continue };
        let e = reg.specialize(-1, Hints::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("not an open file descriptor"), "{e}");
        let (a, b) = udp_pair();
        closefd(b);
        let e = reg.specialize(b, Hints::default()).unwrap_err();
        assert!(e.to_string().contains("EBADF"), "{e}");
        let half = Hints {
            message_size: 64,
            buffers: 0,
        };
        let e = reg.specialize(a, half).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let huge = Hints {
            message_size: 1 << 20,
            buffers: 1 << 20,
        };
        let e = reg.specialize(a, huge).unwrap_err();
        assert!(e.to_string().contains("1 GiB"), "{e}");
        let ctx = reg.specialize(a, Hints::default()).unwrap();
        let e = reg.specialize(a, Hints::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        drop(ctx);
        reg.shutdown();
        let e = reg.specialize(a, Hints::default()).unwrap_err();
        assert!(e.to_string().contains("shut down"), "{e}");
        closefd(a);
    }
}

/// Rings with a SQPOLL thread use contexts too (registration does not need the ring's thread):
/// correct results, and the fixed slot is really used (it still reaches the file after a close
/// the library does not see).
#[test]
fn sqpoll_rings_use_contexts() {
    let _s = serial();
    let config = Config {
        backend: BackendKind::Uring,
        pages_per_core: 1,
        sqpoll_cpu: Some(0),
        ..Config::default()
    };
    let reg = match register(config) {
        Ok(r) => r,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Unsupported | ErrorKind::PermissionDenied
            ) =>
        {
            return eprintln!("skipped: {e}");
        }
        Err(e) => panic!("register: {e}"),
    };
    let mut p = reg.poster(0).unwrap();
    let (a, b) = udp_pair();
    let ctx = p.specialize(a, Hints::default()).unwrap();
    let mut buf = [0u8; 8];
    for i in 0..50u8 {
        assert_eq!(send(&mut p, a, &[i; 8]), 8);
        assert_eq!(recv(&mut p, b, &mut buf), 8);
        assert_eq!(buf, [i; 8]);
    }
    closefd(a);
    assert_eq!(send(&mut p, a, b"slot"), 4, "the fixed slot was not used");
    drop(ctx);
    assert_eq!(send(&mut p, a, b"gone"), -i64::from(EBADF));
    closefd(b);
}
