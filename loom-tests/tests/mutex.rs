//! Loom models of the mutex (`flexsc_threads::sync::Mutex`: the futex-style lock word and its
//! wait list, built on loom's atomics, mutex and thread park): unlock never misses a waiter that
//! is parking, and holders exclude each other.
//!
//! A lost wake-up shows as a deadlock (a waiter parked with nobody left to unpark it), which
//! loom reports; overlapping holders show as a data race on the protected loom cell, since each
//! holder's writes must happen before the next holder's reads through the lock word alone.
#![cfg(loom)]

use std::time::{Duration, Instant};

use flexsc_threads::sync::Mutex;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use loom_tests::check;

/// A counter only ever touched under the mutex.
type Counter = Mutex<UnsafeCell<u32>>;

/// Locks, increments the counter (a read then a write, checked by loom for races), unlocks.
fn increment(m: &Counter) {
    let g = m.lock();
    // SAFETY: the guard gives this thread the only access to the cell (what the model checks).
    g.with_mut(|p| unsafe { *p += 1 });
}

fn count(m: &Counter) -> u32 {
    let g = m.lock();
    // SAFETY: as in `increment`.
    g.with(|p| unsafe { *p })
}

/// Two threads lock and unlock twice each: every interleaving of the fast path, the contended
/// `swap(2)`, the check-and-enqueue under the wait list lock and the unlocker's `swap(0)` + wake.
/// No waiter is stranded and no increment is lost.
#[test]
fn unlock_never_misses_a_parking_waiter() {
    check("mutex: 2 threads x 2 locks", 3, || {
        let m = Arc::new(Counter::new(UnsafeCell::new(0)));
        let m2 = m.clone();
        let other = thread::spawn(move || {
            increment(&m2);
            increment(&m2);
        });
        increment(&m);
        increment(&m);
        other.join().unwrap();
        assert_eq!(count(&m), 4);
        assert!(!m.is_locked());
    });
}

/// Three threads, one lock each: mutual exclusion and no lost wake-up with two waiters queued
/// at once (a wake goes to one; the other must be woken by a later unlock).
#[test]
fn three_threads_exclude_each_other() {
    check("mutex: 3 threads", 2, || {
        let m = Arc::new(Counter::new(UnsafeCell::new(0)));
        let others: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || increment(&m))
            })
            .collect();
        increment(&m);
        for t in others {
            t.join().unwrap();
        }
        assert_eq!(count(&m), 3);
        assert!(!m.is_locked());
    });
}

/// A timed lock that gives up (under loom a deadline has always passed, so it gives up as soon
/// as it finds the lock held) after leaving the word "contended" strands no other waiter: the
/// holder's unlock still wakes the one that is parked.
#[test]
fn giving_up_a_timed_lock_strands_nobody() {
    check("mutex: timed lock gives up", 2, || {
        let m = Arc::new(Counter::new(UnsafeCell::new(0)));
        let g = m.lock();
        let (m2, m3) = (m.clone(), m.clone());
        let waiter = thread::spawn(move || increment(&m2));
        let quitter = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(1);
            if let Some(g) = m3.lock_deadline(deadline) {
                // SAFETY: as in `increment`.
                g.with_mut(|p| unsafe { *p += 1 });
                true
            } else {
                false
            }
        });
        drop(g);
        waiter.join().unwrap();
        let took = quitter.join().unwrap();
        assert_eq!(count(&m), 1 + u32::from(took));
        assert!(!m.is_locked());
    });
}
