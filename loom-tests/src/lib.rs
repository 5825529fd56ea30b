//! Loom models of libflexsc's protocols live in `tests/`; run them with
//! `RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release`.
//!
//! Each model drives the real code: `flexsc_kmod`'s (built on loom's atomics, cells and futex
//! stand-in under `--cfg loom`) and `flexsc_threads`' park protocol, run queue, sync primitives
//! and futex table (built on loom's atomics, mutex and thread park, with loom threads as the
//! waiters). This library only holds the shared model runner.
//!
//! `LOOM_MAX_PREEMPTIONS` overrides a model's preemption bound, for a deeper run by hand.

/// Explores every interleaving of `f` with at most `preemption_bound` preemptions per execution
/// (unless `LOOM_MAX_PREEMPTIONS` is set), then prints how many executions that took.
#[cfg(loom)]
pub fn check(name: &str, preemption_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemption_bound);
    }
    let bound = builder.preemption_bound;
    // Counts executions; loom runs all model threads on this one OS thread, so a std atomic is
    // plain bookkeeping here, outside the model.
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let start = std::time::Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!(
        "{name}: {} executions, preemption bound {bound:?}, {:.2?}",
        runs.load(Ordering::Relaxed),
        start.elapsed()
    );
}

/// [`check`], with `f` run on a model thread whose stack can hold a `SyscallPage`: under loom a
/// page is 8 KiB (64 loom-instrumented entries) and building one overflows the 32 KiB stack loom
/// gives the model's main thread. The extra thread only spawns `f` and joins it.
#[cfg(loom)]
pub fn check_on_big_stack(
    name: &str,
    preemption_bound: usize,
    f: impl Fn() + Sync + Send + 'static,
) {
    let f = std::sync::Arc::new(f);
    check(name, preemption_bound, move || {
        let f = f.clone();
        loom::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || f())
            .expect("spawn a model thread")
            .join()
            .unwrap();
    });
}
