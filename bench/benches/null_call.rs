//! The paper's Figures 9 and 10 on this machine: the per-call cost of a null system call made
//! synchronously versus exception-less, at batch sizes 1..256, on the posting core and on a remote
//! core, for each backend. Plus the cost of posting one entry and of a wait/wake round trip.
//!
//! Every group measures the synchronous `getppid` baseline itself, so ratios are taken within one
//! run (`cargo run -p flexsc-bench --bin criterion-report` prints them). io_uring has no getppid
//! opcode: its null call is IORING_OP_NOP (`Syscall::nop()`), the same stand-in the io_uring
//! literature uses.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flexsc_kmod::doorbell::Doorbell;
use flexsc_kmod::{BackendKind, Config, Poster, Specialization, Syscall, raw, register};
use io_uring::{IoUring, opcode};

const BATCHES: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

fn getppid() -> Syscall {
    // SAFETY: getppid takes no arguments and touches no user memory: nothing has to outlive it.
    unsafe { Syscall::new(libc::SYS_getppid, &[]) }
}

/// The synchronous baseline: one raw `syscall` instruction per call.
fn sync_baseline(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.throughput(Throughput::Elements(1));
    g.bench_function("sync_getppid", |b| {
        // SAFETY: getppid takes no arguments and cannot fail.
        b.iter(|| black_box(unsafe { raw::syscall(libc::SYS_getppid, [0; 3]) }))
    });
}

/// Posts `n` calls, submits them as one batch, and waits until all are taken.
fn run_batch(p: &mut Poster, call: &Syscall, n: usize) {
    for _ in 0..n {
        p.post(call).expect("batch fits in the syscall pages");
    }
    p.submit();
    let mut left = n;
    loop {
        left -= p.harvest(|_, r| {
            black_box(r);
        });
        if left == 0 {
            return;
        }
        p.wait();
    }
}

/// As [`run_batch`], returning the time the posting thread spent outside `wait` (posting,
/// submitting, taking results): the posting core's own cost. The clock reads are part of what
/// it measures (about 20 ns each here), so it slightly overstates that cost.
fn run_batch_posting_cpu(p: &mut Poster, call: &Syscall, n: usize) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        p.post(call).expect("batch fits in the syscall pages");
    }
    p.submit();
    let mut busy = t0.elapsed();
    let mut left = n;
    loop {
        let t = Instant::now();
        left -= p.harvest(|_, r| {
            black_box(r);
        });
        busy += t.elapsed();
        if left == 0 {
            return busy;
        }
        p.wait();
    }
}

/// One group: the baseline, then batches of `call` through a registration made from `config`.
fn batch_group(c: &mut Criterion, name: &str, config: Config, call: Syscall, posting_cpu: bool) {
    raw::pin_to_cpu(0).expect("pin the poster to CPU 0");
    let reg = match register(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipping {name}: {e}");
            return;
        }
    };
    let mut p = reg.poster(0).expect("poster for core 0");
    let mut g = c.benchmark_group(name);
    sync_baseline(&mut g);
    for &n in &BATCHES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("batch", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    run_batch(&mut p, &call, n);
                }
                t0.elapsed()
            })
        });
        if posting_cpu {
            // Figure 10's other half: what the posting core itself spends per call when it
            // does not sit in flexsc_wait (in the M:N runtime it runs other threads instead).
            g.bench_with_input(BenchmarkId::new("posting_cpu", n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_batch_posting_cpu(&mut p, &call, n))
                        .sum()
                })
            });
        }
    }
    g.finish();
}

fn fig9_same_core(c: &mut Criterion) {
    batch_group(
        c,
        "fig9_threads_same_core",
        Config {
            specialization: Specialization::Static(vec![0]),
            executor_spins: 0,
            ..Config::default()
        },
        getppid(),
        false,
    );
    batch_group(
        c,
        "fig9_uring_same_core",
        Config {
            backend: BackendKind::Uring,
            ..Config::default()
        },
        Syscall::nop(),
        false,
    );
}

fn fig10_remote_core(c: &mut Criterion) {
    batch_group(
        c,
        "fig10_threads_remote_core",
        Config {
            specialization: Specialization::Static(vec![1]),
            ..Config::default()
        },
        getppid(),
        true,
    );
    batch_group(
        c,
        "fig10_uring_sqpoll_remote_core",
        Config {
            backend: BackendKind::Uring,
            sqpoll_cpu: Some(1),
            ..Config::default()
        },
        Syscall::nop(),
        true,
    );
}

/// The cost of posting one entry: 64 posts timed, their execution and take untimed.
fn post_one(c: &mut Criterion) {
    raw::pin_to_cpu(0).expect("pin the poster to CPU 0");
    let reg = register(Config {
        specialization: Specialization::Static(vec![1]),
        ..Config::default()
    })
    .expect("register");
    let mut p = reg.poster(0).expect("poster");
    let call = getppid();
    let mut g = c.benchmark_group("primitives");
    g.throughput(Throughput::Elements(64));
    g.bench_with_input(BenchmarkId::new("post", 64), &64, |b, _| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                for _ in 0..64 {
                    black_box(p.post(&call).expect("room for 64"));
                }
                timed += t0.elapsed();
                p.submit();
                let mut left = 64;
                while left > 0 {
                    left -= p.harvest(|_, _| {});
                    if left > 0 {
                        p.wait();
                    }
                }
            }
            timed
        })
    });
    g.finish();
    drop(p);
    drop(reg);
    wait_wake(c);
}

/// A flexsc_wait-style round trip: ring a sleeping thread's doorbell and sleep on ours until it
/// rings back (no spinning: the futex path).
fn wait_wake(c: &mut Criterion) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    struct Pair {
        ping: Doorbell,
        pong: Doorbell,
        sent: AtomicU64,
        back: AtomicU64,
    }
    let pair = Arc::new(Pair {
        ping: Doorbell::new(),
        pong: Doorbell::new(),
        sent: AtomicU64::new(0),
        back: AtomicU64::new(0),
    });
    let peer = pair.clone();
    let echo = std::thread::spawn(move || {
        let _ = raw::pin_to_cpu(1);
        let mut seen = 0;
        loop {
            peer.ping.wait_until(
                0,
                None,
                || peer.sent.load(Ordering::Acquire) != seen,
                || false,
            );
            seen = peer.sent.load(Ordering::Acquire);
            if seen == u64::MAX {
                return;
            }
            peer.back.store(seen, Ordering::Release);
            peer.pong.ring();
        }
    });
    let mut g = c.benchmark_group("primitives");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("wait_wake_round_trip", |b| {
        b.iter(|| {
            n += 1;
            pair.sent.store(n, Ordering::Release);
            pair.ping.ring();
            pair.pong
                .wait_until(0, None, || pair.back.load(Ordering::Acquire) == n, || false);
        })
    });
    g.finish();
    pair.sent.store(u64::MAX, Ordering::Release);
    pair.ping.ring();
    echo.join().expect("echo thread");
}

/// The floor under the `uring` backend: IORING_OP_NOP batches straight through the `io-uring`
/// crate (no syscall entries, no claims). The gap between this and `fig9_uring_same_core` is what
/// libflexsc's entry layer costs; this group itself is what the kernel's io_uring costs per
/// request on this machine.
fn raw_nop(c: &mut Criterion) {
    raw::pin_to_cpu(0).expect("pin to CPU 0");
    let mut ring: IoUring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(256)
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipping raw io_uring: {e}");
            return;
        }
    };
    let mut g = c.benchmark_group("raw_uring_same_core");
    sync_baseline(&mut g);
    for &n in &BATCHES {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("nop", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    for i in 0..n {
                        let sqe = opcode::Nop::new().build().user_data(i as u64);
                        // SAFETY: a NOP references no memory.
                        unsafe { ring.submission().push(&sqe).expect("SQ has room") };
                    }
                    ring.submit_and_wait(n).expect("io_uring_enter");
                    for cqe in ring.completion() {
                        black_box(cqe.result());
                    }
                }
                t0.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = fig9_same_core, raw_nop, fig10_remote_core, post_one
}
criterion_main!(benches);
