//! Interrupting green threads (`Interrupter`), on both backends: a system call blocked in the
//! kernel ends with `-EINTR`, a park returns, the mark stays until taken (so a call posted after
//! it is interrupted too), and a call that completes keeps its result.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::backends::Build;
use flexsc_threads::kmod::BackendKind;
use flexsc_threads::{Interrupter, Runtime, park, spawn, syscall, take_interrupt};

/// Both backends.
fn backends() -> [(&'static str, Build); 2] {
    fn threads() -> Runtime {
        Runtime::builder()
            .cores(2)
            .build()
            .expect("threads runtime")
    }
    fn uring() -> Runtime {
        Runtime::builder()
            .cores(2)
            .backend(BackendKind::Uring)
            .build()
            .expect("io_uring runtime")
    }
    [("threads", threads), ("uring", uring)]
}

/// Runs `f` on each backend (see `common::backends::on_each`).
fn on_each_backend(test: &'static str, f: fn(&'static str, Runtime)) {
    common::backends::on_each(test, &backends(), f);
}

fn pipe() -> [i32; 2] {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array we own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    fds
}

/// A green thread's blocking read of `fd` into a buffer of its own.
fn read_byte(fd: i32) -> i64 {
    let mut b = [0u8; 1];
    // SAFETY: the buffer outlives the call, which the green thread waits for.
    unsafe { syscall(libc::SYS_read, &[fd as u64, b.as_mut_ptr() as u64, 1]) }
}

#[test]
fn a_blocked_read_ends_with_eintr_and_the_mark_is_taken_once() {
    on_each_backend("blocked read", |name, rt| {
        let [r, w] = pipe();
        let (tx, rx) = mpsc::channel();
        let h = rt.spawn(move || {
            tx.send(Interrupter::current().expect("on a green thread"))
                .unwrap();
            let got = read_byte(r);
            (got, take_interrupt(), take_interrupt())
        });
        let intr = rx.recv().unwrap();
        // Interrupt until the read is seen to end: the first may come before it is posted, which
        // the mark covers too.
        let start = Instant::now();
        while !h.is_finished() {
            intr.interrupt();
            std::thread::sleep(Duration::from_millis(5));
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{name}: read not interrupted"
            );
        }
        let (got, first, second) = h.join().unwrap();
        assert_eq!(got, -(libc::EINTR as i64), "{name}: the read's result");
        assert!(
            first || !second,
            "{name}: the mark is taken at most once per interrupt"
        );
        // The pipe still works: nothing was consumed by the interrupted read.
        // SAFETY: writes one byte from a static buffer.
        assert_eq!(unsafe { libc::write(w, b"x".as_ptr().cast(), 1) }, 1);
        let h = rt.spawn(move || read_byte(r));
        assert_eq!(h.join().unwrap(), 1, "{name}: the byte after the interrupt");
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    });
}

#[test]
fn a_call_posted_after_the_mark_is_interrupted_until_it_is_taken() {
    on_each_backend("marked", |name, rt| {
        let [r, w] = pipe();
        let h = rt.spawn(move || {
            Interrupter::current().unwrap().interrupt();
            let first = read_byte(r);
            let taken = take_interrupt();
            // SAFETY: writes one byte from a static buffer.
            assert_eq!(unsafe { libc::write(w, b"y".as_ptr().cast(), 1) }, 1);
            (first, taken, read_byte(r))
        });
        let (first, taken, second) = h.join().unwrap();
        assert_eq!(
            first,
            -(libc::EINTR as i64),
            "{name}: a call made while marked"
        );
        assert!(taken, "{name}: the mark was not kept");
        assert_eq!(
            second, 1,
            "{name}: after taking the mark, calls run normally"
        );
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    });
}

#[test]
fn a_parked_green_thread_wakes_and_a_finished_call_keeps_its_result() {
    on_each_backend("park", |name, rt| {
        let (tx, rx) = mpsc::channel();
        let h = rt.spawn(move || {
            tx.send(Interrupter::current().unwrap()).unwrap();
            while !take_interrupt() {
                park();
            }
            // SAFETY: getpid has no arguments.
            let pid = unsafe { syscall(libc::SYS_getpid, &[]) };
            (pid, take_interrupt())
        });
        rx.recv().unwrap().interrupt();
        let (pid, again) = h.join().unwrap();
        assert_eq!(
            pid,
            std::process::id() as i64,
            "{name}: getpid after the park"
        );
        assert!(!again, "{name}: one interrupt, one mark");
        // Interrupting many green threads that finish their calls: every result is real.
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let (tx, rx) = mpsc::channel();
                let h = rt.spawn(move || {
                    tx.send(Interrupter::current().unwrap()).unwrap();
                    // SAFETY: getppid has no arguments.
                    (0..50)
                        .map(|_| unsafe { syscall(libc::SYS_getppid, &[]) })
                        .collect::<Vec<_>>()
                });
                (rx.recv().unwrap(), h)
            })
            .collect();
        for (intr, _) in &handles {
            intr.interrupt();
        }
        // SAFETY: getppid has no arguments.
        let ppid = unsafe { libc::getppid() } as i64;
        for (_, h) in handles {
            for r in h.join().unwrap() {
                assert!(
                    r == ppid || r == -(libc::EINTR as i64),
                    "{name}: getppid gave {r}"
                );
            }
        }
    });
}

#[test]
fn interrupting_from_a_green_thread_reaches_another_carrier() {
    on_each_backend("green to green", |name, rt| {
        let [r, w] = pipe();
        let got = rt.block_on(move || {
            let (tx, rx) = mpsc::channel();
            let reader = spawn(move || {
                tx.send(Interrupter::current().unwrap()).unwrap();
                read_byte(r)
            });
            // Polled: a blocking recv would hold this carrier.
            let intr = loop {
                match rx.try_recv() {
                    Ok(i) => break i,
                    Err(_) => flexsc_threads::yield_now(),
                }
            };
            while !reader.is_finished() {
                intr.interrupt();
                flexsc_threads::sleep(Duration::from_millis(5));
            }
            reader.join().unwrap()
        });
        assert_eq!(got, -(libc::EINTR as i64), "{name}");
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    });
}
