//! Per-green-thread TLS under the runtime: C code's `errno` and `__thread` arrays, glibc's
//! identity, the floating-point control state and thread-local destructors stay with their green
//! thread across blocking calls, yields and migrations between carriers.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::cfixture::{FE_TONEAREST, FE_UPWARD, fx};
use flexsc_threads::io::pipe;
use flexsc_threads::sync::Barrier;
use flexsc_threads::{Runtime, spawn, yield_now};
use std::time::{Duration, Instant};

/// Keeps the carrier busy for `d` without a switch point.
fn busy(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The kernel thread (carrier) running the caller, as the kernel sees it.
fn kernel_tid() -> i64 {
    // SAFETY: gettid takes no arguments; a raw trap, so it names the carrier even on a green
    // thread.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

#[test]
fn errno_and_thread_arrays_survive_blocking_calls_and_migrations() {
    let fx = fx();
    let rt = Runtime::builder().cores(2).build().expect("runtime");
    const THREADS: usize = 64;
    const ROUNDS: usize = 30;
    let migrated = Arc::new(AtomicUsize::new(0));
    let m = migrated.clone();
    // Spawned from one green thread, they all start on its carrier, and their busy rounds keep
    // that carrier's queue long, so the other carrier takes some of them (work sharing and
    // stealing): those migrate, each at a point where it was parked in a blocking call or a
    // yield.
    let handles = rt.block_on(move || {
        (0..THREADS)
            .map(|id| {
                let migrated = m.clone();
                spawn(move || {
                    let (mut r, mut w) = pipe().expect("pipe");
                    let me = id as i32 + 1;
                    (fx.set_errno)(me);
                    (fx.fill)(me * 1000);
                    let expected = (0..16).map(|i| me * 1000 + i).sum::<i32>();
                    let (errno_at, arr_at, self_at) =
                        ((fx.errno_addr)(), (fx.arr_addr)(), (fx.self_)());
                    let mut carriers = HashSet::new();
                    for round in 0..ROUNDS {
                        busy(Duration::from_micros(50));
                        // A blocking call (posted, parked, resumed wherever its completion is seen).
                        use std::io::{Read, Write};
                        w.write_all(&[round as u8]).expect("write");
                        let mut b = [0u8; 1];
                        r.read_exact(&mut b).expect("read");
                        assert_eq!(b[0], round as u8);
                        yield_now();
                        carriers.insert(kernel_tid());
                        assert_eq!((fx.get_errno)(), me, "errno of green thread {id}");
                        assert_eq!((fx.sum)(), expected, "__thread array of green thread {id}");
                        assert_eq!((fx.errno_addr)(), errno_at);
                        assert_eq!((fx.arr_addr)(), arr_at);
                        assert_eq!((fx.self_)(), self_at, "pthread_self of green thread {id}");
                    }
                    if carriers.len() > 1 {
                        migrated.fetch_add(1, Ordering::Relaxed);
                    }
                    (errno_at, arr_at, self_at)
                })
            })
            .collect::<Vec<_>>()
    });
    let mut seen = HashSet::new();
    for h in handles {
        let (e, a, s) = h.join().expect("green thread");
        assert!(seen.insert(e), "two green threads share an errno");
        assert!(seen.insert(a), "two green threads share a __thread array");
        assert!(seen.insert(s), "two green threads share a pthread_self");
    }
    // The checks above held across those moves.
    assert!(
        migrated.load(Ordering::Relaxed) > 0,
        "no green thread ran on both carriers: migration untested"
    );
    // The test's own thread keeps its own errno.
    (fx.set_errno)(7);
    assert_eq!((fx.get_errno)(), 7);
}

#[test]
fn rust_thread_locals_are_per_green_thread() {
    thread_local! {
        static COUNT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let rt = Runtime::builder().cores(1).build().expect("runtime");
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let barrier = barrier.clone();
            rt.spawn(move || {
                for _ in 0..100 {
                    COUNT.with(|c| c.set(c.get() + 1));
                    yield_now();
                }
                barrier.wait();
                COUNT.with(|c| c.get())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("green thread"), 100);
    }
}

#[test]
fn rounding_mode_stays_with_its_green_thread() {
    let fx = fx();
    let rt = Runtime::builder().cores(1).build().expect("runtime");
    let barrier = Arc::new(Barrier::new(2));
    let b2 = barrier.clone();
    let up = rt.spawn(move || {
        assert_eq!((fx.setround)(FE_UPWARD), 0);
        barrier.wait(); // the other one runs on the same carrier meanwhile
        yield_now();
        ((fx.getround)(), (fx.div)(1.0, 3.0))
    });
    let near = rt.spawn(move || {
        b2.wait();
        yield_now();
        ((fx.getround)(), (fx.div)(1.0, 3.0))
    });
    let (r_up, q_up) = up.join().expect("upward");
    let (r_near, q_near) = near.join().expect("nearest");
    assert_eq!(r_up, FE_UPWARD);
    assert_eq!(r_near, FE_TONEAREST);
    assert!(
        q_up > q_near,
        "1/3 rounded up must exceed 1/3 rounded to nearest"
    );
    // The carrier, and so this thread's Rust code, never saw the upward mode.
    assert_eq!((fx.getround)(), FE_TONEAREST);
}

#[test]
fn thread_local_destructors_run_before_join_returns() {
    let fx = fx();
    let rt = Runtime::builder().cores(2).build().expect("runtime");
    let before = (fx.dtor_sum)();
    let handles: Vec<_> = (1..=10)
        .map(|v| {
            rt.spawn(move || {
                assert_eq!((fx.register_dtor)(v), 0);
                yield_now();
            })
        })
        .collect();
    for h in handles {
        h.join().expect("green thread");
    }
    assert_eq!((fx.dtor_sum)() - before, 55);
}

#[test]
fn without_tls_green_threads_share_their_carrier() {
    let fx = fx();
    let rt = Runtime::builder()
        .cores(1)
        .tls(false)
        .build()
        .expect("runtime");
    let a = rt.spawn(move || (fx.errno_addr)());
    let b = rt.spawn(move || (fx.errno_addr)());
    assert_eq!(a.join().unwrap(), b.join().unwrap());
}

#[test]
fn a_bad_flexsc_tls_value_is_refused() {
    // Runs in a child process: the variable is process-wide.
    if std::env::var_os("FLEXSC_TLS_CHILD").is_some() {
        let e = Runtime::builder().cores(1).build().unwrap_err();
        assert!(e.to_string().contains("FLEXSC_TLS"), "{e}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "a_bad_flexsc_tls_value_is_refused",
            "--nocapture",
        ])
        .env("FLEXSC_TLS_CHILD", "1")
        .env("FLEXSC_TLS", "maybe")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
