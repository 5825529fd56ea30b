//! The hybrid interface (paper section 4.1): an event loop posting entries and harvesting their
//! completions, with no green threads, on both backends.
#![cfg(not(loom))]

use std::collections::HashMap;

use flexsc_threads::hybrid::Hybrid;
use flexsc_threads::kmod::{BackendKind, Config, PostError, Syscall};

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into our array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

fn hybrids() -> Vec<Hybrid> {
    [BackendKind::Threads, BackendKind::Uring]
        .into_iter()
        .map(|backend| {
            Hybrid::with_config(Config {
                backend,
                pages_per_core: 2,
                executor_spins: 0,
                ..Config::default()
            })
            .expect("register")
        })
        .collect()
}

/// 50 blocking reads in flight at once from one thread; the data arrives from another thread in
/// reverse order; every read completes with its own pipe's byte.
#[test]
fn an_event_loop_keeps_many_reads_in_flight() {
    for mut h in hybrids() {
        let pipes: Vec<_> = (0..50).map(|_| pipe()).collect();
        let mut bufs = vec![[0u8; 1]; pipes.len()];
        let mut pending = HashMap::new();
        for (i, &(r, _)) in pipes.iter().enumerate() {
            let args = [r as u64, bufs[i].as_mut_ptr() as u64, 1];
            // SAFETY: the buffer outlives the call: we harvest every entry before returning.
            let call = unsafe { Syscall::new(libc::SYS_read, &args) };
            let t = h.post(&call).expect("post");
            pending.insert(t.slot(), i);
        }
        h.submit();
        assert_eq!(h.in_flight(), 50);
        let writers: Vec<_> = pipes.iter().map(|&(_, w)| w).collect();
        let feeder = std::thread::spawn(move || {
            for (i, w) in writers.iter().enumerate().rev() {
                let b = [i as u8];
                // SAFETY: writes one byte from our buffer to our pipe.
                assert_eq!(unsafe { libc::write(*w, b.as_ptr().cast(), 1) }, 1);
            }
        });
        let mut done = 0;
        while done < 50 {
            h.wait();
            done += h.harvest(|t, ret| {
                assert_eq!(ret, 1, "entry {}", t.slot());
                assert!(pending.remove(&t.slot()).is_some(), "harvested twice");
            });
        }
        feeder.join().unwrap();
        assert!(pending.is_empty());
        for (i, b) in bufs.iter().enumerate() {
            assert_eq!(b[0], i as u8, "{} read the wrong pipe", h.backend());
        }
        for (r, w) in pipes {
            // SAFETY: closes fds this test owns.
            unsafe {
                libc::close(r);
                libc::close(w);
            }
        }
    }
}

#[test]
fn full_pages_refuse_and_thread_bound_calls_run_directly() {
    for mut h in hybrids() {
        let cap = h.capacity();
        // SAFETY: getppid takes no arguments.
        let call = unsafe { Syscall::new(libc::SYS_getppid, &[]) };
        let tickets: Vec<_> = (0..cap).map(|_| h.post(&call).expect("post")).collect();
        assert!(matches!(h.post(&call), Err(PostError::Full)));
        h.submit();
        // SAFETY: getppid has no preconditions.
        let ppid = unsafe { libc::getppid() } as i64;
        for t in tickets {
            assert_eq!(h.take(t), ppid);
        }
        // SAFETY: gettid takes no arguments.
        let gettid = unsafe { Syscall::new(libc::SYS_gettid, &[]) };
        assert!(matches!(
            h.post(&gettid),
            Err(PostError::ThreadBound { .. })
        ));
        // SAFETY: gettid has no preconditions.
        assert_eq!(h.call(&gettid), unsafe { libc::gettid() } as i64);
    }
}
