//! Loom models of `flexsc_threads::sync::Barrier` (a count and a generation under the crate's
//! `Mutex`, and its `Condvar`, on loom's atomics, mutex and thread park): with two threads and
//! one round, both pass, exactly one leads, and what each did before the barrier is visible to
//! the other after it.
//!
//! A thread stuck at the barrier shows as a deadlock, which loom reports; a missing
//! happens-before edge shows as a data race on the loom cells.
#![cfg(loom)]

use flexsc_threads::sync::Barrier;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use loom_tests::check;

/// A barrier for two and a cell per thread, written before the barrier and read after it.
struct Shared {
    barrier: Barrier,
    slots: [UnsafeCell<u32>; 2],
}

// SAFETY: each slot is written by its thread before the barrier and read by the other after it
// (what the model checks).
unsafe impl Sync for Shared {}

impl Shared {
    /// Thread `me` writes its slot, waits, then reads the other's: returns whether it led.
    fn arrive(&self, me: usize) -> bool {
        // SAFETY: only thread `me` writes this slot, and only before the barrier.
        self.slots[me].with_mut(|p| unsafe { *p = me as u32 + 1 });
        let leader = self.barrier.wait().is_leader();
        let other = 1 - me;
        // SAFETY: the other thread wrote its slot before it arrived; we passed after it did.
        let seen = self.slots[other].with(|p| unsafe { *p });
        assert_eq!(seen, other as u32 + 1);
        leader
    }
}

/// Two threads, one round: both pass and exactly one gets the leader result.
#[test]
fn one_round_two_threads_one_leader() {
    check("barrier: 2 threads, 1 round", 3, || {
        let s = Arc::new(Shared {
            barrier: Barrier::new(2),
            slots: [UnsafeCell::new(0), UnsafeCell::new(0)],
        });
        let s2 = s.clone();
        let other = thread::spawn(move || s2.arrive(1));
        let mine = s.arrive(0);
        let theirs = other.join().unwrap();
        assert!(
            mine != theirs,
            "exactly one leader (got {mine} and {theirs})"
        );
    });
}
