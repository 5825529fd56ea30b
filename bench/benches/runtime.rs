//! FlexSC-Threads against OS threads (issue 3): a green-thread switch (yield_now between two
//! green threads on one carrier, with and without the fs switch to a TLS block of their own),
//! spawn + join against
//! `std::thread::spawn` + join, and a condvar ping-pong between two green threads (on one
//! carrier) against two std threads, and small system calls from many green threads at once
//! against the same calls made synchronously, each measured in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flexsc_threads::{Runtime, spawn, yield_now};

/// A one-carrier runtime with (`tls`) or without a TLS block per green thread.
fn runtime(tls: bool) -> Runtime {
    Runtime::builder()
        .cores(1)
        .stack_size(64 * 1024)
        .tls(tls)
        .build()
        .expect("runtime")
}

/// The benchmark name for a green-thread variant.
fn green(tls: bool) -> &'static str {
    if tls {
        "green_thread"
    } else {
        "green_thread_shared_tls"
    }
}

fn switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("green_switch");
    for tls in [true, false] {
        let rt = runtime(tls);
        g.bench_function(green(tls), |b| {
            b.iter_custom(|iters| {
                rt.block_on(move || {
                    let other = spawn(move || {
                        for _ in 0..iters {
                            yield_now();
                        }
                    });
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        yield_now();
                    }
                    let el = t0.elapsed();
                    other.join().expect("partner");
                    // Each iteration is two switches: to the partner and back.
                    el / 2
                })
            })
        });
    }
    g.finish();
}

fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_join");
    g.bench_function("std_thread", |b| {
        b.iter(|| std::thread::spawn(|| black_box(1)).join().expect("join"))
    });
    for tls in [true, false] {
        let rt = runtime(tls);
        g.bench_function(green(tls), |b| {
            b.iter_custom(|iters| {
                rt.block_on(move || {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        black_box(spawn(|| black_box(1)).join().expect("join"));
                    }
                    t0.elapsed()
                })
            })
        });
    }
    g.finish();
}

/// A ball two threads pass back and forth: `true` while it is the responder's turn.
struct Court<M, C> {
    ball: M,
    to_responder: C,
    to_server: C,
}

/// Two std threads ping-ponging through `std::sync::{Mutex, Condvar}` against two green threads
/// (one carrier) through `flexsc_threads::sync::{Mutex, Condvar}`. One iteration is one round
/// trip: the server hands the ball over (notify) and waits for it back; the responder waits
/// for it and hands it back.
fn condvar_pingpong(c: &mut Criterion) {
    let rt = runtime(true);
    let mut g = c.benchmark_group("condvar_pingpong");
    g.bench_function("std_thread", |b| {
        b.iter_custom(|iters| {
            let court = Arc::new(Court {
                ball: std::sync::Mutex::new(false),
                to_responder: std::sync::Condvar::new(),
                to_server: std::sync::Condvar::new(),
            });
            let c = court.clone();
            let responder = std::thread::spawn(move || {
                for _ in 0..iters {
                    let mut ball = c.ball.lock().expect("lock");
                    while !*ball {
                        ball = c.to_responder.wait(ball).expect("wait");
                    }
                    *ball = false;
                    c.to_server.notify_one();
                }
            });
            let t0 = Instant::now();
            for _ in 0..iters {
                let mut ball = court.ball.lock().expect("lock");
                *ball = true;
                court.to_responder.notify_one();
                while *ball {
                    ball = court.to_server.wait(ball).expect("wait");
                }
            }
            let el = t0.elapsed();
            responder.join().expect("responder");
            el
        })
    });
    g.bench_function("green_thread", |b| {
        b.iter_custom(|iters| {
            rt.block_on(move || {
                let court = Arc::new(Court {
                    ball: flexsc_threads::sync::Mutex::new(false),
                    to_responder: flexsc_threads::sync::Condvar::new(),
                    to_server: flexsc_threads::sync::Condvar::new(),
                });
                let c = court.clone();
                let responder = spawn(move || {
                    for _ in 0..iters {
                        let mut ball = c.ball.lock();
                        while !*ball {
                            ball = c.to_responder.wait(ball);
                        }
                        *ball = false;
                        c.to_server.notify_one();
                    }
                });
                let t0 = Instant::now();
                for _ in 0..iters {
                    let mut ball = court.ball.lock();
                    *ball = true;
                    court.to_responder.notify_one();
                    while *ball {
                        ball = court.to_server.wait(ball);
                    }
                }
                let el = t0.elapsed();
                responder.join().expect("responder");
                el
            })
        })
    });
    g.finish();
}

/// Green threads each running a stream of small reads of /dev/zero at once (each call posted,
/// batched with the others' and harvested: the carrier path a server's every call takes),
/// against one OS thread making the same calls synchronously. Reported per call.
fn syscall(c: &mut Criterion) {
    const GREEN: u32 = 64;
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&zero);
    let mut g = c.benchmark_group("syscall");
    g.bench_function("sync", |b| {
        let mut buf = [0u8; 8];
        // SAFETY: reads into a live local buffer of the length given.
        b.iter(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
    });
    for tls in [true, false] {
        let rt = runtime(tls);
        g.bench_function(green(tls), |b| {
            b.iter_custom(|iters| {
                rt.block_on(move || {
                    let t0 = Instant::now();
                    let all: Vec<_> = (0..GREEN)
                        .map(|_| {
                            spawn(move || {
                                let mut buf = [0u8; 8];
                                for _ in 0..iters.div_ceil(u64::from(GREEN)) {
                                    // SAFETY: reads into a live local buffer of the length
                                    // given.
                                    let n = unsafe {
                                        flexsc_threads::syscall(
                                            libc::SYS_read,
                                            &[fd as u64, buf.as_mut_ptr() as u64, 8],
                                        )
                                    };
                                    assert_eq!(n, 8);
                                }
                            })
                        })
                        .collect();
                    for t in all {
                        t.join().expect("reader");
                    }
                    t0.elapsed()
                })
            })
        });
    }
    g.finish();
    drop(zero);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = switch, spawn_join, condvar_pingpong, syscall
}
criterion_main!(benches);
