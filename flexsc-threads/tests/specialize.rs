//! Specialization contexts through the runtime (`flexsc_threads::specialize`,
//! `TcpStream::specialize`): an echo over specialized streams returns every byte, closing a
//! stream ends its context (from a green thread through the carrier's poster, and from an OS
//! thread through `flexsc_threads::syscall`), and asking off the runtime is a clear error.
//!
//! One test at a time (`SERIAL`): the registry of contexts is the process's, so one test's close
//! of an fd number would end another's context on it.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};

use flexsc_threads::io::{TcpListener, TcpStream};
use flexsc_threads::kmod::BackendKind;
use flexsc_threads::kmod::specialize::Hints;
use flexsc_threads::{Runtime, spawn};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A two-carrier runtime on `backend`, or None (with a note) if io_uring is unavailable.
fn runtime(backend: BackendKind) -> Option<Runtime> {
    match Runtime::builder()
        .cores(2)
        .stack_size(128 * 1024)
        .backend(backend)
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            eprintln!("skipped ({backend:?}): {e}");
            None
        }
        Err(e) => panic!("runtime: {e}"),
    }
}

#[test]
fn echo_over_specialized_streams_and_close_ends_the_context() {
    let _s = serial();
    for backend in [BackendKind::Uring, BackendKind::Threads] {
        let Some(rt) = runtime(backend) else { continue };
        rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let ctx = s.specialize(Hints::default()).unwrap();
                let mut buf = [0u8; 256];
                let mut echoed = 0;
                loop {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).unwrap();
                    echoed += n;
                }
                assert!(ctx.is_valid());
                drop(s);
                assert!(
                    !ctx.is_valid(),
                    "dropping the stream did not end its context"
                );
                echoed
            });
            let mut c = TcpStream::connect(addr).unwrap();
            let ctx = c.specialize(Hints::default()).unwrap();
            assert_eq!(ctx.fd(), c.as_raw_fd());
            assert_eq!(ctx.skips().fd_lookup, backend == BackendKind::Uring);
            for i in 0..500u32 {
                let msg: Vec<u8> = (0..64).map(|j| (i + j) as u8).collect();
                c.write_all(&msg).unwrap();
                let mut back = vec![0u8; 64];
                c.read_exact(&mut back).unwrap();
                assert_eq!(back, msg, "{backend:?} message {i}");
            }
            drop(c);
            assert!(!ctx.is_valid());
            assert_eq!(server.join().unwrap(), 500 * 64);
        });
    }
}

#[test]
fn a_close_on_an_os_thread_ends_the_context() {
    let _s = serial();
    let Some(rt) = runtime(BackendKind::Uring) else {
        return;
    };
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fd = socket.as_raw_fd();
    let ctx = rt.specialize(fd, Hints::default()).unwrap();
    assert!(ctx.is_valid());
    // The fd is closed here, through the runtime's syscall on an OS thread (it traps).
    std::mem::forget(socket);
    // SAFETY: closes the socket we own (forgotten above, so it is not closed twice).
    let r = unsafe { flexsc_threads::syscall(libc::SYS_close, &[fd as u64]) };
    assert_eq!(r, 0);
    assert!(!ctx.is_valid());
}

#[test]
fn specialize_off_the_runtime_is_a_clear_error() {
    let _s = serial();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = flexsc_threads::specialize(socket.as_raw_fd(), Hints::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("Runtime::specialize"), "{e}");
}
