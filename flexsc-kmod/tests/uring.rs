//! The `uring` backend: calls through io_uring (and its syscall-thread fallback) return what the
//! synchronous call returns, a call that waits holds nothing else up, and nothing hangs when a
//! poster goes away or the registration shuts down with requests in flight.
//!
//! Every test runs under a hang guard that aborts the process, so a hang fails loudly instead of
//! stalling the suite. If io_uring is unavailable here the tests say so and pass.

use std::ffi::CString;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use flexsc_kmod::entry::status;
use flexsc_kmod::{BackendKind, Config, Poster, Registration, Syscall, register};
use libc::*;

/// Aborts the process if the test is still running after `limit`.
struct HangGuard(Option<mpsc::Sender<()>>);

fn hang_guard(name: &'static str, limit: Duration) -> HangGuard {
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("uring::{name}: still running after {limit:?}: hung");
            std::process::abort();
        }
    });
    HangGuard(Some(tx))
}

impl Drop for HangGuard {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// A uring registration of one core with `pages` pages, or None (with a note) if io_uring is
/// unavailable in this process.
fn uring(pages: usize) -> Option<Registration> {
    let config = Config {
        backend: BackendKind::Uring,
        pages_per_core: pages,
        ..Config::default()
    };
    match register(config) {
        Ok(r) => {
            assert_eq!(r.backend_name(), "uring");
            Some(r)
        }
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            eprintln!("skipped: {e}");
            assert!(e.to_string().contains("threads"), "{e}");
            None
        }
        Err(e) => panic!("register: {e}"),
    }
}

/// Runs `body` with a poster of a fresh one-core registration, under a hang guard.
fn with_poster(name: &'static str, pages: usize, body: impl FnOnce(&Registration, &mut Poster)) {
    let _guard = hang_guard(name, Duration::from_secs(30));
    let Some(reg) = uring(pages) else { return };
    let mut p = reg.poster(0).expect("poster");
    body(&reg, &mut p);
}

/// The synchronous call, with the kernel's raw result (negative errno).
fn sync(nr: c_long, args: &[u64]) -> i64 {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: each test passes arguments valid for the call, or deliberately bad pointers that
    // the kernel rejects with -EFAULT.
    let r = unsafe { syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r == -1 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap() as i64)
    } else {
        r
    }
}

/// The request `nr(args)`.
fn req(nr: c_long, args: &[u64]) -> Syscall {
    // SAFETY: the arguments obey the contract of `sync` (valid for the call, or addresses the
    // kernel refuses). Requests run by `call` are over when it returns. Each test that posts one
    // keeps the memory it points to alive, and does not touch what the kernel writes, until it
    // has taken the result, or, for a call left in flight on purpose, until the registration is
    // shut down; memory a call still uses where the test could fail (and unwind) is leaked, or
    // declared before the registration so that it is dropped after it.
    unsafe { Syscall::new(nr, args) }
}

/// Runs `nr(args)` through `p` (synchronously for the caller: the call is over on return).
fn call(p: &mut Poster, nr: c_long, args: &[u64]) -> i64 {
    p.call(&req(nr, args))
}

fn pipe_fds(flags: c_int) -> [c_int; 2] {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into our array.
    assert_eq!(unsafe { pipe2(fds.as_mut_ptr(), flags) }, 0);
    fds
}

fn socket_pair(flags: c_int) -> [c_int; 2] {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fds into our array.
    let r = unsafe { socketpair(AF_UNIX, SOCK_STREAM | flags, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    fds
}

fn close_all(fds: &[c_int]) {
    for &fd in fds {
        // SAFETY: closing fds this test opened.
        unsafe { close(fd) };
    }
}

/// A file in a fresh temporary directory, opened read-write.
fn temp_file(tag: &str) -> (CString, c_int) {
    let dir = std::env::temp_dir().join(format!("flexsc-uring-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = CString::new(dir.join("f").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { open(path.as_ptr(), O_RDWR | O_CREAT | O_TRUNC, 0o600) };
    assert!(fd >= 0);
    (path, fd)
}

fn remove_temp(path: &CString) {
    let p = std::path::Path::new(path.to_str().unwrap());
    let _ = std::fs::remove_dir_all(p.parent().unwrap());
}

/// Bytes that tell positions apart.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Reads `fd` to EOF on another thread (after `delay`), returning everything read.
fn drain_later(fd: c_int, delay: Duration) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        thread::sleep(delay);
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reads into a live buffer of the given length.
            let n = unsafe { read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            all.extend_from_slice(&buf[..n as usize]);
        }
        all
    })
}

#[test]
fn file_io_equals_sync() {
    with_poster("file_io_equals_sync", 1, |_, p| {
        let (path, fd) = temp_file("file");
        let data = pattern(10_000);
        let fd64 = fd as u64;
        // write at the file position, twice: positions advance as with write(2).
        let half = data.len() / 2;
        assert_eq!(
            call(p, SYS_write, &[fd64, data.as_ptr() as u64, half as u64]),
            half as i64
        );
        let rest = &data[half..];
        assert_eq!(
            call(
                p,
                SYS_write,
                &[fd64, rest.as_ptr() as u64, rest.len() as u64]
            ),
            rest.len() as i64
        );
        // lseek has no opcode: the syscall threads run it, on the same file position.
        assert_eq!(call(p, SYS_lseek, &[fd64, 0, SEEK_CUR as u64]), 10_000);
        assert_eq!(call(p, SYS_lseek, &[fd64, 0, SEEK_SET as u64]), 0);
        // read at the file position equals read(2) on a second descriptor.
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        // SAFETY: a valid path.
        let fd2 = unsafe { open(path.as_ptr(), O_RDONLY) };
        let got = call(p, SYS_read, &[fd64, a.as_mut_ptr() as u64, 4096]);
        let want = sync(SYS_read, &[fd2 as u64, b.as_mut_ptr() as u64, 4096]);
        assert_eq!((got, &a), (want, &b));
        // pread/pwrite at offsets, including past the end.
        let got = call(p, SYS_pread64, &[fd64, a.as_mut_ptr() as u64, 100, 9_950]);
        let want = sync(
            SYS_pread64,
            &[fd2 as u64, b.as_mut_ptr() as u64, 100, 9_950],
        );
        assert_eq!((got, &a[..50]), (want, &b[..50]));
        assert_eq!(got, 50);
        let got = call(p, SYS_pread64, &[fd64, a.as_mut_ptr() as u64, 100, 20_000]);
        assert_eq!(got, 0);
        assert_eq!(
            call(p, SYS_pwrite64, &[fd64, b"xyz".as_ptr() as u64, 3, 3]),
            3
        );
        assert_eq!(
            sync(SYS_pread64, &[fd2 as u64, b.as_mut_ptr() as u64, 6, 0]),
            6
        );
        assert_eq!(&b[..6], &[data[0], data[1], data[2], b'x', b'y', b'z']);
        // readv/writev at the position.
        let (mut x, mut y) = ([0u8; 3], [0u8; 5]);
        let iov = [
            iovec {
                iov_base: x.as_mut_ptr().cast(),
                iov_len: 3,
            },
            iovec {
                iov_base: y.as_mut_ptr().cast(),
                iov_len: 5,
            },
        ];
        assert_eq!(call(p, SYS_lseek, &[fd64, 0, SEEK_SET as u64]), 0);
        assert_eq!(call(p, SYS_readv, &[fd64, iov.as_ptr() as u64, 2]), 8);
        assert_eq!(
            [&x[..], &y[..]].concat(),
            [&data[..3], b"xyz", &data[6..8]].concat()
        );
        assert_eq!(call(p, SYS_lseek, &[fd64, 0, SEEK_CUR as u64]), 8);
        // fsync, fdatasync, ftruncate, fallocate, statx by path.
        assert_eq!(call(p, SYS_fsync, &[fd64]), 0);
        assert_eq!(call(p, SYS_fdatasync, &[fd64]), 0);
        assert_eq!(call(p, SYS_ftruncate, &[fd64, 100]), 0);
        // SAFETY: statx writes one struct into our buffer.
        let mut stx: statx = unsafe { std::mem::zeroed() };
        let args = [
            AT_FDCWD as u64,
            path.as_ptr() as u64,
            0,
            STATX_SIZE as u64,
            &mut stx as *mut statx as u64,
        ];
        assert_eq!(call(p, SYS_statx, &args), 0);
        assert_eq!(stx.stx_size, 100);
        close_all(&[fd, fd2]);
        remove_temp(&path);
    });
}

#[test]
fn pipe_io_equals_sync() {
    with_poster("pipe_io_equals_sync", 1, |_, p| {
        let [r, w] = pipe_fds(0);
        let msg = b"hello, pipe";
        assert_eq!(
            call(
                p,
                SYS_write,
                &[w as u64, msg.as_ptr() as u64, msg.len() as u64]
            ),
            msg.len() as i64
        );
        let mut buf = [0u8; 64];
        // A pipe read returns what is there, as read(2) does.
        assert_eq!(
            call(p, SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 64]),
            msg.len() as i64
        );
        assert_eq!(&buf[..msg.len()], msg);
        // writev and readv.
        let iov = [
            iovec {
                iov_base: b"ab".as_ptr() as *mut c_void,
                iov_len: 2,
            },
            iovec {
                iov_base: b"cde".as_ptr() as *mut c_void,
                iov_len: 3,
            },
        ];
        assert_eq!(call(p, SYS_writev, &[w as u64, iov.as_ptr() as u64, 2]), 5);
        assert_eq!(
            call(p, SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 64]),
            5
        );
        assert_eq!(&buf[..5], b"abcde");
        // EOF once the write end is closed (close runs through io_uring).
        assert_eq!(call(p, SYS_close, &[w as u64]), 0);
        assert_eq!(
            call(p, SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 64]),
            0
        );
        close_all(&[r]);
    });
}

#[test]
fn errors_equal_sync() {
    with_poster("errors_equal_sync", 1, |_, p| {
        let [r, w] = pipe_fds(0);
        let mut buf = [0u8; 8];
        let cases: Vec<(&str, c_long, Vec<u64>)> = vec![
            (
                "read bad fd",
                SYS_read,
                vec![u32::MAX as u64, buf.as_mut_ptr() as u64, 8],
            ),
            (
                "read closed fd",
                SYS_read,
                vec![9_999, buf.as_mut_ptr() as u64, 8],
            ),
            (
                "write to read end",
                SYS_write,
                vec![r as u64, buf.as_ptr() as u64, 8],
            ),
            ("write bad buffer", SYS_write, vec![w as u64, 8, 4]),
            (
                "pread bad fd",
                SYS_pread64,
                vec![9_999, buf.as_mut_ptr() as u64, 8, 0],
            ),
            (
                "pread negative",
                SYS_pread64,
                vec![9_999, buf.as_mut_ptr() as u64, 8, u64::MAX - 1],
            ),
            (
                "readv too many",
                SYS_readv,
                vec![r as u64, buf.as_ptr() as u64, 1025],
            ),
            ("close bad fd", SYS_close, vec![9_999]),
            (
                "open missing",
                SYS_open,
                vec![c"/nonexistent/x".as_ptr() as u64, O_RDONLY as u64],
            ),
            ("open bad path", SYS_open, vec![8, O_RDONLY as u64]),
            ("fsync a pipe", SYS_fsync, vec![r as u64]),
            ("ftruncate negative", SYS_ftruncate, vec![9_999, u64::MAX]),
            ("shutdown a pipe", SYS_shutdown, vec![r as u64, 0]),
            ("splice nothing", SYS_splice, vec![9_999, 0, 9_998, 0, 0, 0]),
            (
                "unlink missing",
                SYS_unlink,
                vec![c"/nonexistent/x".as_ptr() as u64],
            ),
            (
                "mkdir existing",
                SYS_mkdir,
                vec![c"/".as_ptr() as u64, 0o700],
            ),
        ];
        for (what, nr, args) in cases {
            assert_eq!(call(p, nr, &args), sync(nr, &args), "{what}");
        }
        // A bad buffer with data waiting: -EFAULT, and the data stays.
        assert_eq!(sync(SYS_write, &[w as u64, b"z".as_ptr() as u64, 1]), 1);
        assert_eq!(call(p, SYS_read, &[r as u64, 8, 4]), -(EFAULT as i64));
        assert_eq!(
            call(p, SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 8]),
            1
        );
        close_all(&[r, w]);
    });
}

#[test]
fn nop_and_fallback_calls() {
    with_poster("nop_and_fallback_calls", 1, |_, p| {
        assert_eq!(p.call(&Syscall::nop()), 0);
        assert_eq!(call(p, SYS_getppid, &[]), sync(SYS_getppid, &[]));
        assert_eq!(call(p, SYS_getpid, &[]), sync(SYS_getpid, &[]));
        let [r, w] = pipe_fds(0);
        assert_eq!(
            call(p, SYS_lseek, &[r as u64, 0, SEEK_CUR as u64]),
            -(ESPIPE as i64)
        );
        assert_eq!(call(p, SYS_dup, &[9_999]), -(EBADF as i64));
        // A batch mixing both paths.
        let tickets: Vec<_> = (0..32)
            .map(|i| {
                let c = if i % 2 == 0 {
                    Syscall::nop()
                } else {
                    req(SYS_getppid, &[])
                };
                (i, p.post(&c).unwrap())
            })
            .collect();
        p.submit();
        let ppid = sync(SYS_getppid, &[]);
        for (i, t) in tickets {
            assert_eq!(p.take(t), if i % 2 == 0 { 0 } else { ppid });
        }
        close_all(&[r, w]);
    });
}

#[test]
fn a_read_on_an_empty_pipe_holds_nothing_up() {
    with_poster("a_read_on_an_empty_pipe_holds_nothing_up", 1, |_, p| {
        let [r, w] = pipe_fds(0);
        // Leaked: it must outlive the read even if the test fails with the read in flight.
        let buf = Box::leak(Box::new([0u8; 16]));
        let read = p
            .post(&req(SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 16]))
            .unwrap();
        let others: Vec<_> = (0..10)
            .map(|i| {
                let c = if i < 5 {
                    Syscall::nop()
                } else {
                    req(SYS_getppid, &[])
                };
                p.post(&c).unwrap()
            })
            .collect();
        p.submit();
        for t in others {
            assert!(p.take(t) >= 0);
        }
        let read = p
            .try_take(read)
            .expect_err("the read must still wait for data");
        assert_eq!(sync(SYS_write, &[w as u64, b"late".as_ptr() as u64, 4]), 4);
        assert_eq!(p.take(read), 4);
        assert_eq!(&buf[..4], b"late");
        close_all(&[r, w]);
    });
}

#[test]
fn batch_of_256_nops() {
    with_poster("batch_of_256_nops", 4, |_, p| {
        assert_eq!(p.capacity(), 256);
        let tickets: Vec<_> = (0..256).map(|_| p.post(&Syscall::nop()).unwrap()).collect();
        p.submit();
        assert_eq!(p.stats().batches, 1);
        let mut n = 0;
        while n < 256 {
            p.wait();
            n += p.harvest(|_, r| assert_eq!(r, 0));
        }
        assert_eq!(n, 256);
        drop(tickets);
        assert_eq!(p.in_flight(), 0);
    });
}

#[test]
fn nonblocking_fds_answer_at_once() {
    with_poster("nonblocking_fds_answer_at_once", 1, |_, p| {
        let mut buf = vec![0u8; 1 << 20];
        let eagain = -(EAGAIN as i64);
        // An empty O_NONBLOCK pipe: read gives -EAGAIN (io_uring alone would wait).
        let [r, w] = pipe_fds(O_NONBLOCK);
        let args = [r as u64, buf.as_mut_ptr() as u64, 16];
        assert_eq!(sync(SYS_read, &args), eagain);
        assert_eq!(call(p, SYS_read, &args), eagain);
        // A full O_NONBLOCK pipe: write gives -EAGAIN.
        while sync(SYS_write, &[w as u64, buf.as_ptr() as u64, 4096]) > 0 {}
        assert_eq!(
            call(p, SYS_write, &[w as u64, buf.as_ptr() as u64, 16]),
            eagain
        );
        let iov = [iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: 16,
        }];
        assert_eq!(
            call(p, SYS_writev, &[w as u64, iov.as_ptr() as u64, 1]),
            eagain
        );
        // pwrite on the full pipe, pread on an empty one: -ESPIPE, not a wait.
        let espipe = -(ESPIPE as i64);
        let args = [w as u64, buf.as_ptr() as u64, 8, 0];
        assert_eq!(call(p, SYS_pwrite64, &args), espipe);
        close_all(&[r, w]);
        let [r, w] = pipe_fds(0);
        let args = [r as u64, buf.as_mut_ptr() as u64, 8, 0];
        assert_eq!(call(p, SYS_pread64, &args), espipe);
        close_all(&[r, w]);
        // A non-blocking socket: recv gives -EAGAIN, a big send the part that fits.
        let [a, b] = socket_pair(SOCK_NONBLOCK);
        let args = [a as u64, buf.as_mut_ptr() as u64, 16, 0, 0, 0];
        assert_eq!(call(p, SYS_recvfrom, &args), eagain);
        let sent = call(
            p,
            SYS_sendto,
            &[a as u64, buf.as_ptr() as u64, 1 << 20, 0, 0, 0],
        );
        assert!(
            sent > 0 && sent < 1 << 20,
            "non-blocking send of 1 MiB gave {sent}"
        );
        assert_eq!(
            call(
                p,
                SYS_sendto,
                &[a as u64, buf.as_ptr() as u64, 1 << 20, 0, 0, 0]
            ),
            eagain
        );
        close_all(&[a, b]);
        // A non-blocking listener: accept gives -EAGAIN; a non-blocking connect -EINPROGRESS
        // (or 0, had it connected at once).
        // SAFETY: plain socket calls on our own fds and stack buffers.
        unsafe {
            let l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            let mut sa: sockaddr_in = std::mem::zeroed();
            sa.sin_family = AF_INET as sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let mut len = size_of::<sockaddr_in>() as socklen_t;
            assert_eq!(bind(l, &sa as *const _ as *const sockaddr, len), 0);
            assert_eq!(listen(l, 8), 0);
            assert_eq!(
                getsockname(l, &mut sa as *mut _ as *mut sockaddr, &mut len),
                0
            );
            assert_eq!(call(p, SYS_accept4, &[l as u64, 0, 0, 0]), eagain);
            let c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            let r = call(
                p,
                SYS_connect,
                &[c as u64, &sa as *const _ as u64, len as u64],
            );
            assert!(r == -(EINPROGRESS as i64) || r == 0, "connect gave {r}");
            close_all(&[l, c]);
        }
    });
}

#[test]
fn blocking_writes_write_everything() {
    with_poster("blocking_writes_write_everything", 1, |_, p| {
        let data = pattern(1 << 20);
        // write(2) to a blocking pipe: all of it, as the reader makes room.
        let [r, w] = pipe_fds(0);
        let reader = drain_later(r, Duration::from_millis(50));
        let n = call(
            p,
            SYS_write,
            &[w as u64, data.as_ptr() as u64, data.len() as u64],
        );
        assert_eq!(n, data.len() as i64);
        // writev(2) in three pieces.
        let (x, rest) = data.split_at(1000);
        let (y, z) = rest.split_at(300_000);
        let iov: Vec<iovec> = [x, y, z]
            .iter()
            .map(|s| iovec {
                iov_base: s.as_ptr() as *mut c_void,
                iov_len: s.len(),
            })
            .collect();
        let n = call(p, SYS_writev, &[w as u64, iov.as_ptr() as u64, 3]);
        assert_eq!(n, data.len() as i64);
        close_all(&[w]);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 2 * data.len());
        assert!(got[..data.len()] == data[..] && got[data.len()..] == data[..]);
        close_all(&[r]);
        // send(2) on a blocking stream socket: all of it.
        let [a, b] = socket_pair(0);
        let reader = drain_later(b, Duration::from_millis(50));
        let n = call(
            p,
            SYS_sendto,
            &[a as u64, data.as_ptr() as u64, data.len() as u64, 0, 0, 0],
        );
        assert_eq!(n, data.len() as i64);
        // SAFETY: shutting down our own socket.
        unsafe { shutdown(a, SHUT_WR) };
        assert!(reader.join().unwrap() == data);
        close_all(&[a, b]);
    });
}

#[test]
fn close_of_an_io_uring_fd() {
    with_poster("close_of_an_io_uring_fd", 1, |_, p| {
        // SAFETY: io_uring_setup fills a zeroed params struct of the right size.
        let fd = unsafe {
            let mut params = [0u8; 120];
            syscall(SYS_io_uring_setup, 4, params.as_mut_ptr())
        };
        assert!(fd >= 0);
        // IORING_OP_CLOSE refuses io_uring fds; close(2) closes them.
        assert_eq!(call(p, SYS_close, &[fd as u64]), 0);
        assert_eq!(
            sync(SYS_fcntl, &[fd as u64, F_GETFD as u64]),
            -(EBADF as i64)
        );
    });
}

#[test]
fn statx_of_an_fd_with_a_null_path() {
    with_poster("statx_of_an_fd_with_a_null_path", 1, |_, p| {
        let [r, w] = pipe_fds(0);
        // SAFETY: statx writes into our zeroed buffers.
        let (mut a, mut b): (statx, statx) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        let args = |s: &mut statx| {
            [
                r as u64,
                0,
                AT_EMPTY_PATH as u64,
                STATX_BASIC_STATS as u64,
                s as *mut statx as u64,
            ]
        };
        let want = sync(SYS_statx, &args(&mut b));
        assert_eq!(call(p, SYS_statx, &args(&mut a)), want);
        assert_eq!((a.stx_ino, a.stx_mode), (b.stx_ino, b.stx_mode));
        close_all(&[r, w]);
    });
}

#[test]
fn opening_a_fifo_for_writing_waits_for_a_reader() {
    with_poster(
        "opening_a_fifo_for_writing_waits_for_a_reader",
        1,
        |_, p| {
            let (path, fd) = temp_file("fifo");
            // Leaked: it must outlive the open even if the test fails with the open in flight.
            let path: &'static CString = Box::leak(Box::new(path));
            close_all(&[fd]);
            // SAFETY: a valid path.
            assert_eq!(unsafe { unlink(path.as_ptr()) }, 0);
            // SAFETY: a valid path.
            assert_eq!(unsafe { mkfifo(path.as_ptr(), 0o600) }, 0);
            let open = p
                .post(&req(SYS_open, &[path.as_ptr() as u64, O_WRONLY as u64]))
                .unwrap();
            p.submit();
            thread::sleep(Duration::from_millis(50));
            let open = p
                .try_take(open)
                .expect_err("open(O_WRONLY) of a FIFO waits for a reader");
            // SAFETY: a valid path.
            let reader = unsafe { libc::open(path.as_ptr(), O_RDONLY | O_NONBLOCK) };
            assert!(reader >= 0);
            let w = p.take(open);
            assert!(w >= 0, "open gave {w}");
            close_all(&[w as c_int, reader]);
            remove_temp(path);
        },
    );
}

#[test]
fn wait_wakes_for_either_path() {
    with_poster("wait_wakes_for_either_path", 1, |_, p| {
        let [r, w] = pipe_fds(0);
        // Leaked: they must outlive the calls even if the test fails with calls in flight.
        let buf = Box::leak(Box::new([0u8; 8]));
        // A read that waits on io_uring, and a 30 ms sleep on a syscall thread.
        let read = p
            .post(&req(SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 8]))
            .unwrap();
        let ts: &'static timespec = Box::leak(Box::new(timespec {
            tv_sec: 0,
            tv_nsec: 30_000_000,
        }));
        let sleep = p
            .post(&req(SYS_nanosleep, &[ts as *const timespec as u64, 0]))
            .unwrap();
        let t = Instant::now();
        p.wait();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(p.take(sleep), 0);
        let read = p.try_take(read).unwrap_err();
        // Now a read completion wakes the same wait (a writer thread, 30 ms later).
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            sync(SYS_write, &[w as u64, b"ok".as_ptr() as u64, 2])
        });
        p.wait();
        assert_eq!(p.take(read), 2);
        assert_eq!(writer.join().unwrap(), 2);
        // Nothing left on the ring (but the poster's FUTEX_WAIT): a syscall thread's completion
        // still wakes the wait.
        for _ in 0..3 {
            let sleep = p
                .post(&req(SYS_nanosleep, &[ts as *const timespec as u64, 0]))
                .unwrap();
            p.wait();
            assert_eq!(p.take(sleep), 0);
        }
        close_all(&[r, w]);
    });
}

#[test]
fn dropping_a_poster_with_requests_in_flight() {
    let _guard = hang_guard(
        "dropping_a_poster_with_requests_in_flight",
        Duration::from_secs(30),
    );
    // One buffer per read, and the write's data; before the registration: it is shut down first.
    let mut bufs = [[0u8; 64]; 3];
    let data = [0u8; 64];
    let Some(reg) = uring(1) else { return };
    let pipes: Vec<[c_int; 2]> = (0..4).map(|_| pipe_fds(0)).collect();
    let mut p = reg.poster(0).unwrap();
    // Reads that would wait forever, and a write into a full pipe.
    for (fds, buf) in pipes[..3].iter().zip(&mut bufs) {
        p.post(&req(
            SYS_read,
            &[fds[0] as u64, buf.as_mut_ptr() as u64, 64],
        ))
        .unwrap();
    }
    let full = pipes[3][1];
    // SAFETY: F_SETPIPE_SZ on our own pipe; then fill it without blocking.
    unsafe {
        fcntl(full, F_SETPIPE_SZ, 4096);
        fcntl(full, F_SETFL, O_NONBLOCK);
        while write(full, data.as_ptr().cast(), 64) > 0 {}
        fcntl(full, F_SETFL, 0);
    }
    p.post(&req(SYS_write, &[full as u64, data.as_ptr() as u64, 64]))
        .unwrap();
    p.submit();
    assert_eq!(p.in_flight(), 4);
    let t = Instant::now();
    drop(p);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "drop took {:?}",
        t.elapsed()
    );
    // Every entry was answered: none is left BUSY.
    for e in &reg.area().pages()[0].entries {
        assert_ne!(e.status(), status::BUSY);
    }
    // The core takes a new poster, which works.
    let mut p = reg.poster(0).unwrap();
    assert_eq!(p.call(&Syscall::nop()), 0);
    for fds in &pipes {
        close_all(fds);
    }
}

#[test]
fn shutdown_interrupts_a_waiting_take() {
    let _guard = hang_guard(
        "shutdown_interrupts_a_waiting_take",
        Duration::from_secs(30),
    );
    let Some(reg) = uring(1) else { return };
    let [r, w] = pipe_fds(0);
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            let mut p = reg.poster(0).unwrap();
            let mut buf = [0u8; 8];
            let t = p
                .post(&req(SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 8]))
                .unwrap();
            p.take(t)
        });
        thread::sleep(Duration::from_millis(100));
        reg.shutdown();
        let ret = waiter.join().unwrap();
        assert!(
            ret == -(ECANCELED as i64) || ret == -(EINTR as i64),
            "read gave {ret}"
        );
    });
    close_all(&[r, w]);
}

#[test]
fn a_poster_moved_to_another_thread() {
    let _guard = hang_guard("a_poster_moved_to_another_thread", Duration::from_secs(30));
    let Some(reg) = uring(1) else { return };
    let [r, w] = pipe_fds(0);
    let mut p = reg.poster(0).unwrap();
    // Bound to this thread by its first use.
    assert_eq!(p.call(&Syscall::nop()), 0);
    let buf = Box::leak(Box::new([0u8; 8]));
    let pending = p
        .post(&req(SYS_read, &[r as u64, buf.as_mut_ptr() as u64, 8]))
        .unwrap();
    p.submit();
    // On another thread: the pending read is cancelled, and new calls go through a new ring.
    let p = thread::spawn(move || {
        let mut p = p;
        assert_eq!(p.call(&Syscall::nop()), 0);
        assert_eq!(p.take(pending), -(ECANCELED as i64));
        assert_eq!(sync(SYS_write, &[w as u64, b"hi".as_ptr() as u64, 2]), 2);
        let mut b2 = [0u8; 8];
        assert_eq!(
            call(&mut p, SYS_read, &[r as u64, b2.as_mut_ptr() as u64, 8]),
            2
        );
        p
    })
    .join()
    .unwrap();
    drop(p);
    close_all(&[r, w]);
}

#[test]
fn sqpoll_ring() {
    let _guard = hang_guard("sqpoll_ring", Duration::from_secs(30));
    let cpu = thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let config = Config {
        backend: BackendKind::Uring,
        pages_per_core: 4,
        sqpoll_cpu: Some(cpu),
        ..Config::default()
    };
    // The read left in flight below uses it: before the registration, so dropped after it.
    let mut buf = [0u8; 8];
    let reg = match register(config) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return eprintln!("skipped: {e}"),
        Err(e) => panic!("register: {e}"),
    };
    let mut p = match reg.poster(0) {
        Ok(p) => p,
        // SQPOLL is privileged before 5.11.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return eprintln!("skipped: {e}");
        }
        Err(e) => panic!("poster: {e}"),
    };
    let tickets: Vec<_> = (0..256).map(|_| p.post(&Syscall::nop()).unwrap()).collect();
    p.submit();
    for t in tickets {
        assert_eq!(p.take(t), 0);
    }
    // The first attempt is made by the polling thread: settling waits for it.
    let [r, w] = pipe_fds(O_NONBLOCK);
    let args = [r as u64, buf.as_mut_ptr() as u64, 8];
    assert_eq!(call(&mut p, SYS_read, &args), -(EAGAIN as i64));
    assert_eq!(call(&mut p, SYS_getppid, &[]), sync(SYS_getppid, &[]));
    let [r2, w2] = pipe_fds(0);
    p.post(&req(SYS_read, &[r2 as u64, buf.as_mut_ptr() as u64, 8]))
        .unwrap();
    p.submit();
    let t = Instant::now();
    drop(p);
    assert!(t.elapsed() < Duration::from_secs(3));
    close_all(&[r, w, r2, w2]);
}
