//! FlexSC-Threads against OS threads (issue 3): a green-thread switch (yield_now between two
//! green threads on one carrier, fs base not switched yet), and spawn + join against
//! `std::thread::spawn` + join, each measured in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flexsc_threads::{Runtime, spawn, yield_now};

fn switch(c: &mut Criterion) {
    let rt = Runtime::builder()
        .cores(1)
        .stack_size(64 * 1024)
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("green_switch");
    g.bench_function("yield_now_pair", |b| {
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
    g.finish();
}

fn spawn_join(c: &mut Criterion) {
    let rt = Runtime::builder()
        .cores(1)
        .stack_size(64 * 1024)
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("spawn_join");
    g.bench_function("std_thread", |b| {
        b.iter(|| std::thread::spawn(|| black_box(1)).join().expect("join"))
    });
    g.bench_function("green_thread", |b| {
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
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = switch, spawn_join
}
criterion_main!(benches);
