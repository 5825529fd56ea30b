//! Loom models of `flexsc_threads::sync::Once` (a state word and a wait list, on loom's atomics,
//! mutex and thread park): however two callers race, the initializer runs exactly once, a caller
//! that finds it running is woken when it finishes, and both see what it did.
//!
//! A second run shows as a failed assertion on a loom atomic count of runs; a caller returning
//! before the initializer's effect is visible shows as a data race on the loom cell it writes; a
//! lost wake-up shows as a deadlock, which loom reports.
#![cfg(loom)]

use flexsc_threads::sync::Once;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use loom_tests::check;

/// A `Once`, how many times its initializer ran, and the value the initializer writes.
struct Shared {
    once: Once,
    runs: AtomicUsize,
    value: UnsafeCell<u32>,
}

// SAFETY: `value` is written only by the initializer, and read only after `call_once` returns
// (what the model checks).
unsafe impl Sync for Shared {}

impl Shared {
    /// Calls the `Once` (the initializer counts its run and writes 42), then reads the value.
    fn init_and_read(&self) -> u32 {
        self.once.call_once(|| {
            assert_eq!(self.runs.fetch_add(1, Ordering::Relaxed), 0, "ran twice");
            // SAFETY: only the initializer writes, once; no reader before it returns.
            self.value.with_mut(|p| unsafe { *p = 42 });
        });
        assert!(self.once.is_completed());
        // SAFETY: `call_once` returned, so the write happened before this read.
        self.value.with(|p| unsafe { *p })
    }
}

/// Two threads call it: one runs the initializer, the other either finds it complete, loses the
/// race to start it and parks until it finishes, or checks just as it finishes.
#[test]
fn initializer_runs_exactly_once() {
    check("once: 2 callers", 3, || {
        let s = Arc::new(Shared {
            once: Once::new(),
            runs: AtomicUsize::new(0),
            value: UnsafeCell::new(0),
        });
        let s2 = s.clone();
        let other = thread::spawn(move || s2.init_and_read());
        assert_eq!(s.init_and_read(), 42);
        assert_eq!(other.join().unwrap(), 42);
        assert_eq!(s.runs.load(Ordering::Relaxed), 1);
    });
}
