//! Poll arming on the `threads` backend (`backend/threads/poller.rs`): a call on an fd that is not
//! ready waits at the group's poller, not in a syscall thread, so blocked calls beyond the thread
//! cap cannot stop the pages draining.
//!
//! Each case runs under every `threads` configuration (as the conformance suite's): reads beyond
//! the cap whose peers' writes are posted after them (a deadlock without poll arming); an
//! interrupt of a parked read; a parked read whose fd is closed, or closed and reused; a socket
//! timeout that must still expire; receives that must wait for more than the first bytes
//! (`SO_RCVLOWAT`, `MSG_WAITALL`: never tried with `MSG_DONTWAIT`); shutdown with entries parked.

use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use flexsc_kmod::entry::status;
use flexsc_kmod::{
    BackendKind, Config, Poster, Registration, Specialization, Syscall, Ticket, register,
};
use libc::*;

/// Longest a case may take before it counts as hung.
const LIMIT: Duration = Duration::from_secs(45);
/// Longest a parked entry may take to notice its fd was closed (the poller re-checks every
/// second; this is a hang guard on a shared, loaded machine, not a speed check).
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[test] fn threads_local() { crate::run(crate::Setup::Local, crate::$case) }
                #[test] fn threads_remote() { crate::run(crate::Setup::Remote, crate::$case) }
                #[test] fn threads_unpinned() { crate::run(crate::Setup::Unpinned, crate::$case) }
                #[test] fn threads_percore() { crate::run(crate::Setup::PerCore, crate::$case) }
                #[test] fn threads_dynamic() { crate::run(crate::Setup::Dynamic, crate::$case) }
            }
        )*
    };
}

cases!(
    reads_beyond_the_thread_cap,
    interrupt_parked_read,
    close_while_parked,
    fd_reused_while_parked,
    socket_timeout_still_expires,
    receive_waits_as_a_blocking_one,
    shutdown_with_entries_parked,
);

/// The `threads` configurations of the conformance suite.
#[derive(Clone, Copy, Debug)]
enum Setup {
    Local,
    Remote,
    Unpinned,
    PerCore,
    Dynamic,
}

impl Setup {
    /// One posting core of `pages` pages, at most `cap` syscall threads.
    fn config(self, pages: usize, cap: usize) -> Config {
        let mut c = Config {
            cores: 1,
            pages_per_core: pages,
            max_syscall_threads: cap,
            backend: BackendKind::Threads,
            ..Config::default()
        };
        match self {
            Setup::Local => {
                c.specialization = Specialization::Static(vec![0]);
                c.executor_spins = 0;
            }
            Setup::Remote => c.specialization = Specialization::Static(vec![1]),
            Setup::Unpinned => {}
            Setup::PerCore => c.specialization = Specialization::PerCore,
            Setup::Dynamic => {
                c.specialization = Specialization::Dynamic {
                    period: Duration::from_millis(2),
                }
            }
        }
        c
    }
}

/// One case at a time: fd numbers are the process's, and a case that closes an fd must not see
/// another case's new fd take its number (its parked read would then run on that one).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `case` on its own thread, failing it if it does not finish within [`LIMIT`].
fn run(setup: Setup, case: fn(Setup)) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = mpsc::channel();
    let body = thread::spawn(move || {
        case(setup);
        let _ = tx.send(());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(p) = body.join() {
                std::panic::resume_unwind(p);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{setup:?}: hung after {LIMIT:?}"),
    }
}

fn req(nr: i64, args: &[u64]) -> Syscall {
    // SAFETY: every case keeps the buffers its requests point to alive until it has taken their
    // results or shut the registration down (buffers are declared before the registration).
    unsafe { Syscall::new(nr, args) }
}

fn sys(nr: i64, args: &[u64]) -> i64 {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: the tests pass only calls on their own fds and buffers.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 { -(errno() as i64) } else { r }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn pipe() -> (i32, i32) {
    let mut fds = [-1i32; 2];
    assert_eq!(
        sys(SYS_pipe2, &[fds.as_mut_ptr() as u64, O_CLOEXEC as u64]),
        0
    );
    (fds[0], fds[1])
}

fn socketpair() -> (i32, i32) {
    let mut fds = [-1i32; 2];
    let ty = (SOCK_STREAM | SOCK_CLOEXEC) as u64;
    let r = sys(
        SYS_socketpair,
        &[AF_UNIX as u64, ty, 0, fds.as_mut_ptr() as u64],
    );
    assert_eq!(r, 0);
    (fds[0], fds[1])
}

fn close(fd: i32) {
    assert_eq!(sys(SYS_close, &[fd as u64]), 0);
}

/// Waits until `t`'s entry is claimed, then a little more, so its syscall thread has parked it.
fn wait_parked(reg: &Registration, t: &Ticket) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while reg.area().entry(0, t.slot()).status() != status::BUSY {
        assert!(Instant::now() < deadline, "never claimed");
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(20));
}

/// Takes `t`'s result, failing if it is not back within `limit`.
fn take_within(p: &mut Poster, mut t: Ticket, limit: Duration, what: &str) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        match p.try_take(t) {
            Ok(r) => return r,
            Err(back) => t = back,
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not back within {limit:?}"
        );
        p.wait_with(|| false, Some(deadline));
    }
}

/// 60 reads (40 on socket pairs, 20 on pipes) with at most 2 syscall threads, then the 60
/// writes that answer them, posted after them on the same poster: without poll arming two reads
/// take both threads and nothing else ever runs.
fn reads_beyond_the_thread_cap(setup: Setup) {
    const N: usize = 60;
    let mut bufs = vec![[0u8; 16]; N];
    let reg = register(setup.config(2, 2)).unwrap();
    let mut p = reg.poster(0).unwrap();
    let ends: Vec<(i32, i32)> = (0..N)
        .map(|i| if i % 3 == 2 { pipe() } else { socketpair() })
        .collect();
    let reads: Vec<Ticket> = (0..N)
        .map(|i| {
            let a = [ends[i].0 as u64, bufs[i].as_mut_ptr() as u64, 16];
            p.post(&req(SYS_read, &a)).unwrap()
        })
        .collect();
    p.submit();
    let msgs: Vec<String> = (0..N).map(|i| format!("message {i}")).collect();
    let writes: Vec<Ticket> = (0..N)
        .map(|i| {
            let a = [
                ends[i].1 as u64,
                msgs[i].as_ptr() as u64,
                msgs[i].len() as u64,
            ];
            p.post(&req(SYS_write, &a)).unwrap()
        })
        .collect();
    for (i, t) in writes.into_iter().enumerate() {
        assert_eq!(p.take(t), msgs[i].len() as i64, "write {i}");
    }
    for (i, t) in reads.into_iter().enumerate() {
        assert_eq!(p.take(t), msgs[i].len() as i64, "read {i}");
        assert_eq!(&bufs[i][..msgs[i].len()], msgs[i].as_bytes(), "read {i}");
    }
    drop(p);
    drop(reg);
    for (a, b) in ends {
        close(a);
        close(b);
    }
}

/// A read parked on an empty pipe is answered `-EINTR` at once, consumes nothing, and the
/// thread's next call is not interrupted.
fn interrupt_parked_read(setup: Setup) {
    let mut buf = [0u8; 8];
    let reg = register(setup.config(1, 1)).unwrap();
    let mut p = reg.poster(0).unwrap();
    let (r, w) = pipe();
    let t = p
        .post(&req(SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 8]))
        .unwrap();
    p.submit();
    wait_parked(&reg, &t);
    let asked = Instant::now();
    p.interrupt(&t);
    let got = take_within(&mut p, t, Duration::from_secs(2), "the interrupted read");
    assert_eq!(got, -(EINTR as i64));
    // "At once": well before the poller's 1 s sweep could have noticed anything.
    assert!(
        asked.elapsed() < Duration::from_millis(900),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(sys(SYS_write, &[w as u64, b"after".as_ptr() as u64, 5]), 5);
    let t = p
        .post(&req(SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 8]))
        .unwrap();
    assert_eq!(p.take(t), 5, "the data is still there for the next read");
    assert_eq!(&buf[..5], b"after");
    let ts = [0i64, 5_000_000];
    let sleep = req(SYS_nanosleep, &[ts.as_ptr() as u64, 0]);
    assert_eq!(p.call(&sleep), 0, "a stray interrupt");
    close(r);
    close(w);
}

/// A read parked on a socket the application then closes ends (with `EBADF`, as a read posted
/// after the close would), within the poller's re-check period.
fn close_while_parked(setup: Setup) {
    let mut buf = [0u8; 8];
    let reg = register(setup.config(1, 1)).unwrap();
    let mut p = reg.poster(0).unwrap();
    let (a, b) = socketpair();
    let t = p
        .post(&req(SYS_read, &[a as u64, buf.as_mut_ptr() as u64, 8]))
        .unwrap();
    p.submit();
    wait_parked(&reg, &t);
    close(a);
    let got = take_within(&mut p, t, CLOSE_LIMIT, "the read of a closed fd");
    assert_eq!(got, -(EBADF as i64));
    close(b);
}

/// A read parked on a pipe whose fd is closed and then names another pipe (dup2): it runs on
/// what the fd names now, as if posted then, and reads the new pipe's data.
fn fd_reused_while_parked(setup: Setup) {
    let mut buf = [0u8; 8];
    let reg = register(setup.config(1, 1)).unwrap();
    let mut p = reg.poster(0).unwrap();
    let (r1, w1) = pipe();
    let t = p
        .post(&req(SYS_read, &[r1 as u64, buf.as_mut_ptr() as u64, 8]))
        .unwrap();
    p.submit();
    wait_parked(&reg, &t);
    let (r2, w2) = pipe();
    // r1 now names the second pipe; its first file is released.
    assert_eq!(sys(SYS_dup2, &[r2 as u64, r1 as u64]), r1 as i64);
    assert_eq!(sys(SYS_write, &[w2 as u64, b"new".as_ptr() as u64, 3]), 3);
    let got = take_within(&mut p, t, CLOSE_LIMIT, "the read of a reused fd");
    assert_eq!(got, 3);
    assert_eq!(&buf[..3], b"new");
    for fd in [r1, w1, r2, w2] {
        close(fd);
    }
}

/// A receive on a socket with `SO_RCVTIMEO` is not parked: its timeout still expires.
fn socket_timeout_still_expires(setup: Setup) {
    let mut buf = [0u8; 8];
    let reg = register(setup.config(1, 1)).unwrap();
    let mut p = reg.poster(0).unwrap();
    let (a, b) = socketpair();
    let tv = timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    let r = sys(
        SYS_setsockopt,
        &[
            a as u64,
            SOL_SOCKET as u64,
            SO_RCVTIMEO as u64,
            &tv as *const timeval as u64,
            size_of::<timeval>() as u64,
        ],
    );
    assert_eq!(r, 0);
    let t = p
        .post(&req(SYS_read, &[a as u64, buf.as_mut_ptr() as u64, 8]))
        .unwrap();
    let got = take_within(&mut p, t, Duration::from_secs(5), "a read with a timeout");
    assert_eq!(got, -(EAGAIN as i64));
    close(a);
    close(b);
}

/// A receive waits for what a blocking one waits for: `SO_RCVLOWAT` bytes, or all of them with
/// `MSG_WAITALL`, not just the first bytes to arrive.
fn receive_waits_as_a_blocking_one(setup: Setup) {
    let mut buf = [0u8; 16];
    let reg = register(setup.config(1, 1)).unwrap();
    let mut p = reg.poster(0).unwrap();
    for lowat in [true, false] {
        let (a, b) = socketpair();
        let mut flags = 0u64;
        if lowat {
            let four = 4i32;
            let r = sys(
                SYS_setsockopt,
                &[
                    a as u64,
                    SOL_SOCKET as u64,
                    SO_RCVLOWAT as u64,
                    &four as *const i32 as u64,
                    4,
                ],
            );
            assert_eq!(r, 0);
        } else {
            flags = MSG_WAITALL as u64;
        }
        let len = if lowat { 16 } else { 4 };
        assert_eq!(sys(SYS_write, &[b as u64, b"ab".as_ptr() as u64, 2]), 2);
        let recv = [a as u64, buf.as_mut_ptr() as u64, len, flags, 0, 0];
        let t = p.post(&req(SYS_recvfrom, &recv)).unwrap();
        p.submit();
        thread::sleep(Duration::from_millis(50));
        let t = p
            .try_take(t)
            .expect_err("returned before 4 bytes were there");
        assert_eq!(sys(SYS_write, &[b as u64, b"cd".as_ptr() as u64, 2]), 2);
        assert_eq!(take_within(&mut p, t, Duration::from_secs(5), "recv"), 4);
        assert_eq!(&buf[..4], b"abcd");
        close(a);
        close(b);
    }
}

/// Shutting down with entries parked ends promptly, answers each (`-EINTR`), and leaves no
/// poller thread behind.
fn shutdown_with_entries_parked(setup: Setup) {
    let mut bufs = [[0u8; 8]; 8];
    let reg = register(setup.config(1, 1)).unwrap();
    let mut p = reg.poster(0).unwrap();
    let pipes: Vec<(i32, i32)> = (0..8).map(|_| pipe()).collect();
    let tickets: Vec<Ticket> = (0..8)
        .map(|i| {
            let a = [pipes[i].0 as u64, bufs[i].as_mut_ptr() as u64, 8];
            p.post(&req(SYS_read, &a)).unwrap()
        })
        .collect();
    p.submit();
    wait_parked(&reg, &tickets[7]);
    let started = Instant::now();
    reg.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for t in &tickets {
        let e = reg.area().entry(0, t.slot());
        assert_eq!(e.status(), status::DONE, "slot {} not answered", t.slot());
    }
    for t in tickets {
        assert_eq!(p.take(t), -(EINTR as i64));
    }
    drop(p);
    drop(reg);
    for (r, w) in pipes {
        close(r);
        close(w);
    }
}
