//! The floor under the `uring` backend: IORING_OP_NOP batches straight through the `io-uring`
//! crate (no syscall entries, no claims), with the synchronous `getppid` measured in the same
//! group. The gap between this and `fig9_uring_same_core` is what libflexsc's entry layer costs;
//! this group itself is what the kernel's io_uring costs per request on this machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flexsc_kmod::raw;
use io_uring::{IoUring, opcode};

const BATCHES: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

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
    g.throughput(Throughput::Elements(1));
    g.bench_function("sync_getppid", |b| {
        // SAFETY: getppid takes no arguments and cannot fail.
        b.iter(|| black_box(unsafe { raw::syscall(libc::SYS_getppid, [0; 3]) }))
    });
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
    targets = raw_nop
}
criterion_main!(benches);
