//! The M:N runtime end to end: green threads, exception-less blocking calls, timers, joins, on
//! both backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flexsc_threads::kmod::BackendKind;
use flexsc_threads::{Runtime, sleep, spawn, syscall, yield_now};

fn runtimes() -> Vec<(&'static str, Runtime)> {
    let mut v = vec![(
        "threads",
        Runtime::builder()
            .cores(2)
            .syscall_cores(vec![1])
            .stack_size(64 * 1024)
            .build()
            .unwrap(),
    )];
    match Runtime::builder()
        .cores(2)
        .backend(BackendKind::Uring)
        .stack_size(64 * 1024)
        .build()
    {
        Ok(rt) => v.push(("uring", rt)),
        Err(e) => panic!("io_uring runtime: {e}"),
    }
    v
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into our array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

fn close(fd: i32) {
    // SAFETY: closes an fd this test owns.
    unsafe { libc::close(fd) };
}

#[test]
fn block_on_returns_the_value() {
    for (name, rt) in runtimes() {
        assert_eq!(rt.block_on(|| 6 * 7), 42, "{name}");
        let stats = rt.shutdown();
        assert_eq!(stats.len(), 2);
    }
}

#[test]
fn join_returns_values_and_panics() {
    for (name, rt) in runtimes() {
        let total = rt.block_on(|| {
            let hs: Vec<_> = (0..100u64).map(|i| spawn(move || i * i)).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        assert_eq!(total, (0..100u64).map(|i| i * i).sum::<u64>(), "{name}");
        let r = rt.spawn(|| panic!("boom")).join();
        let msg = r.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"boom"), "{name}");
    }
}

/// Many green threads each doing blocking reads on their own pipe: every read is an
/// exception-less call, every green thread parks on it, and all complete.
#[test]
fn many_green_threads_blocking_on_pipes() {
    const PAIRS: usize = 2000;
    const READS: usize = 10;
    for (name, rt) in runtimes() {
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        rt.block_on(move || {
            let mut hs = Vec::new();
            for i in 0..PAIRS {
                let (r, w) = pipe();
                let g = g.clone();
                hs.push(spawn(move || {
                    for k in 0..READS {
                        let mut v = 0u64;
                        // SAFETY: reads 8 bytes into a live local from our pipe.
                        let n = unsafe {
                            syscall(libc::SYS_read, &[r as u64, &mut v as *mut u64 as u64, 8])
                        };
                        assert_eq!(n, 8);
                        assert_eq!(v, (i * READS + k) as u64);
                        g.fetch_add(1, Ordering::Relaxed);
                    }
                    close(r);
                }));
                hs.push(spawn(move || {
                    for k in 0..READS {
                        let v = (i * READS + k) as u64;
                        // SAFETY: writes 8 bytes from a live local to our pipe.
                        let n = unsafe {
                            syscall(libc::SYS_write, &[w as u64, &v as *const u64 as u64, 8])
                        };
                        assert_eq!(n, 8);
                        yield_now();
                    }
                    close(w);
                }));
            }
            for h in hs {
                h.join().unwrap();
            }
        });
        assert_eq!(got.load(Ordering::Relaxed), PAIRS * READS, "{name}");
        // Every read and write was an exception-less entry, batched.
        let stats = rt.shutdown();
        let posted: u64 = stats.iter().map(|s| s.posted).sum();
        let batches: u64 = stats.iter().map(|s| s.batches).sum();
        assert!(posted >= (2 * PAIRS * READS) as u64, "{name}: {stats:?}");
        assert!(batches > 0 && batches < posted, "{name}: {stats:?}");
    }
}

#[test]
fn sleeping_green_threads_do_not_hold_their_carrier() {
    for (name, rt) in runtimes() {
        let t0 = Instant::now();
        rt.block_on(|| {
            let hs: Vec<_> = (0..200)
                .map(|_| {
                    spawn(|| {
                        let t = Instant::now();
                        sleep(Duration::from_millis(50));
                        t.elapsed()
                    })
                })
                .collect();
            for h in hs {
                let slept = h.join().unwrap();
                assert!(slept >= Duration::from_millis(50), "woke early: {slept:?}");
            }
        });
        // 200 sleeps of 50 ms on 2 carriers: concurrent, not serial (10 s). A generous bound:
        // this is a hang guard, not a speed test.
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            t0.elapsed()
        );
    }
}

#[test]
fn thread_bound_calls_run_on_the_carrier() {
    for (name, rt) in runtimes() {
        let (tid, carrier_tids) = rt.block_on(|| {
            // SAFETY: gettid takes no arguments.
            let tid = unsafe { syscall(libc::SYS_gettid, &[]) };
            let tids: Vec<i64> = std::fs::read_dir("/proc/self/task")
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
                .collect();
            (tid, tids)
        });
        assert!(
            tid > 0 && carrier_tids.contains(&tid),
            "{name}: gettid {tid}"
        );
    }
}

#[test]
fn errors_come_back_as_negative_errno() {
    for (name, rt) in runtimes() {
        let r = rt.block_on(|| {
            let mut b = [0u8; 4];
            // SAFETY: a read from a bad fd into a live buffer.
            unsafe { syscall(libc::SYS_read, &[9999, b.as_mut_ptr() as u64, 4]) }
        });
        assert_eq!(r, -(libc::EBADF as i64), "{name}");
    }
}

/// A green thread that overflows its stack is named on stderr, then the process aborts (run in a
/// child process: this one must survive). It overflows after yielding to a bystander that keeps
/// yielding, so it gets the carrier back from the bystander directly (a hand-over), not from the
/// carrier: the name must follow the hand-over.
#[test]
fn stack_overflow_names_the_green_thread() {
    if std::env::var("FLEXSC_TEST_CHILD").as_deref() == Ok("overflow") {
        let rt = Runtime::builder()
            .cores(1)
            .stack_size(64 * 1024)
            .build()
            .unwrap();
        let _bystander = rt.spawn_named("bystander", || {
            loop {
                yield_now();
            }
        });
        rt.spawn_named("deep-diver", || {
            for _ in 0..10 {
                yield_now();
            }
            fn recurse(n: u64) -> u64 {
                if n == u64::MAX {
                    return 0; // never: keeps the recursion conditional for the compiler
                }
                let pad = [n; 64];
                std::hint::black_box(&pad);
                recurse(n + 1) + pad[3]
            }
            recurse(0)
        })
        .join()
        .ok();
        unreachable!("the overflow aborts the process");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stack_overflow_names_the_green_thread",
            "--nocapture",
        ])
        .env("FLEXSC_TEST_CHILD", "overflow")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(\"deep-diver\") overflowed its stack"),
        "stderr: {err}"
    );
}

/// A parked green thread freed while another runs is unwound with no current green thread: a
/// system call in its destructors traps normally instead of suspending the running one.
#[test]
fn dropping_a_parked_green_thread_unwinds_it_safely() {
    struct CloseOnDrop(i32);
    impl Drop for CloseOnDrop {
        fn drop(&mut self) {
            // SAFETY: closes an fd this value owns.
            let r = unsafe { syscall(libc::SYS_close, &[self.0 as u64]) };
            assert_eq!(r, 0);
        }
    }
    let rt = Runtime::builder()
        .cores(1)
        .stack_size(64 * 1024)
        .build()
        .unwrap();
    let unparker = Arc::new(std::sync::Mutex::new(None));
    let u = unparker.clone();
    let (r, w) = pipe();
    rt.spawn(move || {
        let _guard = CloseOnDrop(r);
        *u.lock().unwrap() = Some(flexsc_threads::Unparker::current());
        loop {
            flexsc_threads::park(); // never unparked
        }
    });
    while unparker.lock().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20)); // let it park
    rt.block_on(move || {
        // Drops the last reference to the parked green thread, from inside this one.
        drop(unparker.lock().unwrap().take());
        // SAFETY: gettid takes no arguments; we are still ourselves.
        (unsafe { syscall(libc::SYS_gettid, &[]) }) > 0
    });
    close(w);
}

/// Timers fire even while every carrier is busy with green threads that keep yielding.
#[test]
fn timers_fire_under_constant_yielding() {
    let rt = Runtime::builder()
        .cores(1)
        .stack_size(64 * 1024)
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            rt.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    yield_now();
                }
            })
        })
        .collect();
    let slept = rt.block_on(|| {
        let t = Instant::now();
        sleep(Duration::from_millis(20));
        t.elapsed()
    });
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    assert!(
        slept >= Duration::from_millis(20) && slept < Duration::from_secs(5),
        "{slept:?}"
    );
}

#[test]
fn stats_count_switches_entries_and_batches() {
    for (name, rt) in runtimes() {
        let n = rt.block_on(|| {
            let hs: Vec<_> = (0..32)
                .map(|_| {
                    spawn(|| {
                        for _ in 0..10 {
                            // SAFETY: getppid takes no arguments.
                            let r = unsafe { syscall(libc::SYS_getppid, &[]) };
                            assert!(r > 0);
                        }
                    })
                })
                .collect();
            hs.len()
        });
        assert_eq!(n, 32);
        // The counters are published at least when a carrier goes idle, which it does now.
        let deadline = Instant::now() + Duration::from_secs(5);
        let total = loop {
            let t = flexsc_threads::CarrierStats::total(&rt.stats());
            if (t.posted >= 320 && t.finished >= 33) || Instant::now() > deadline {
                break t;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(total.posted >= 320, "{name}: {total:?}");
        assert!(
            total.batches >= 1 && total.batched == total.posted,
            "{name}: {total:?}"
        );
        assert_eq!(
            total.batch_hist.iter().sum::<u64>(),
            total.batches,
            "{name}"
        );
        assert!(total.switches >= 320, "{name}: {total:?}");
        assert!(total.finished >= 33, "{name}: {total:?}");
    }
}

#[test]
fn flexsc_stats_prints_the_table_at_exit() {
    if std::env::var_os("FLEXSC_STATS_CHILD").is_some() {
        let rt = Runtime::builder().cores(2).build().unwrap();
        rt.block_on(|| {
            // SAFETY: getppid takes no arguments.
            unsafe { syscall(libc::SYS_getppid, &[]) }
        });
        return;
    }
    let path = std::env::temp_dir().join(format!("flexsc-stats-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "flexsc_stats_prints_the_table_at_exit",
            "--nocapture",
        ])
        .env("FLEXSC_STATS_CHILD", "1")
        .env("FLEXSC_STATS", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("the statistics file");
    std::fs::remove_file(&path).unwrap();
    assert!(text.contains("flexsc-threads statistics"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("all")),
        "{text}"
    );
    assert!(text.contains("batch sizes"), "{text}");
}

#[test]
fn every_core_specialization_runs_blocking_green_threads() {
    use flexsc_threads::kmod::Specialization;
    for s in [
        Specialization::PerCore,
        Specialization::Static(vec![1]),
        Specialization::dynamic(),
    ] {
        let rt = Runtime::builder()
            .cores(2)
            .specialization(s.clone())
            .stack_size(64 * 1024)
            .build()
            .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let sum = rt.block_on(|| {
            let hs: Vec<_> = (0..20u8)
                .map(|i| {
                    spawn(move || {
                        let (r, w) = pipe();
                        let reader = spawn(move || {
                            let mut b = [0u8; 1];
                            // SAFETY: reads one byte into our buffer from our pipe.
                            let n = unsafe {
                                syscall(libc::SYS_read, &[r as u64, b.as_mut_ptr() as u64, 1])
                            };
                            close(r);
                            assert_eq!(n, 1);
                            b[0] as u32
                        });
                        sleep(Duration::from_millis(1));
                        let b = [i];
                        // SAFETY: writes one byte from our buffer to our pipe.
                        let n =
                            unsafe { syscall(libc::SYS_write, &[w as u64, b.as_ptr() as u64, 1]) };
                        close(w);
                        assert_eq!(n, 1);
                        reader.join().unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
        });
        assert_eq!(sum, (0..20).sum::<u32>(), "{s:?}");
    }
}

#[test]
fn spawn_options_name_and_size_the_stack() {
    use flexsc_threads::SpawnOptions;
    let rt = Runtime::builder()
        .cores(1)
        .stack_size(64 * 1024)
        .build()
        .unwrap();
    // A deep recursion that needs far more than the runtime's 64 KiB.
    fn depth(n: u32) -> u32 {
        let pad = std::hint::black_box([0u8; 1024]);
        if n == 0 {
            pad[0] as u32
        } else {
            depth(n - 1) + 1 + pad[1] as u32
        }
    }
    for round in 0..3 {
        let h = SpawnOptions::new()
            .name(format!("deep{round}"))
            .stack_size(8 << 20)
            .spawn_on(&rt, || (flexsc_threads::current_name(), depth(2000)))
            .unwrap();
        assert_eq!(h.join().unwrap(), (Some(format!("deep{round}")), 2000));
        // Default-size green threads, spawned from a green thread, reuse the cached stacks and
        // never get the big one.
        let small = rt.block_on(|| {
            SpawnOptions::new()
                .spawn(|| depth(10))
                .unwrap()
                .join()
                .unwrap()
        });
        assert_eq!(small, 10);
    }
    assert!(
        SpawnOptions::new().spawn(|| ()).is_err(),
        "outside a green thread"
    );
}

#[test]
fn sched_yield_is_a_yield_point() {
    let rt = Runtime::builder().cores(1).build().unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let o = order.clone();
    rt.block_on(move || {
        let o2 = o.clone();
        let other = spawn(move || o2.lock().unwrap().push("other"));
        // SAFETY: sched_yield takes no arguments.
        assert_eq!(unsafe { syscall(libc::SYS_sched_yield, &[]) }, 0);
        o.lock().unwrap().push("after yield");
        other.join().unwrap();
    });
    assert_eq!(*order.lock().unwrap(), ["other", "after yield"]);
}

#[test]
fn a_held_tcb_is_not_reused_before_its_handle_goes() {
    use flexsc_threads::SpawnOptions;
    let rt = Runtime::builder().cores(1).build().unwrap();
    rt.block_on(|| {
        let first = SpawnOptions::new().hold_tcb(true).spawn(|| ()).unwrap();
        let tcb = first.tcb().expect("a TLS block per green thread");
        while !first.is_finished() {
            yield_now();
        }
        // Many spawns and finishes while `first` is unjoined: none gets its TCB.
        for _ in 0..100 {
            let h = SpawnOptions::new().spawn(|| ()).unwrap();
            assert_ne!(
                h.tcb(),
                Some(tcb),
                "a held TCB was handed to another green thread"
            );
            h.join().unwrap();
        }
        first.join().unwrap();
    });
}
