//! Loom models of the futex-address table (`flexsc_threads::futex`, on loom's mutex, atomics and
//! thread park; under loom the table has a single bucket, so every address of a model shares it
//! and wakes must tell addresses and bitsets apart).
//!
//! The client protocol is the usual one: a waiter waits while the word holds the old value; a
//! waker changes the word, then wakes. No wake-up is lost (a waiter parked for good is a deadlock,
//! which loom reports), and counts are exact: what `wake` returns is the number of `wait` calls
//! that return `Ok` because of it.
#![cfg(loom)]

use std::time::Instant;

use flexsc_threads::futex::{self, BITSET_MATCH_ANY, FutexError};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::thread;
use loom_tests::check;

/// Waits until `word` is no longer 0, with `bitset`; how many waits returned `Ok` (woken).
fn wait_while_zero(word: &AtomicU32, bitset: u32) -> usize {
    let mut woken = 0;
    while word.load(Ordering::Acquire) == 0 {
        match futex::wait(word, 0, bitset, None) {
            Ok(()) => woken += 1,
            Err(FutexError::WouldBlock) => {}
            Err(e) => panic!("untimed wait failed: {e:?}"),
        }
    }
    woken
}

/// One waiter, one waker: the waker's `wake` comes either after the waiter queued (and finds
/// it) or before the waiter's check under the bucket lock (which then sees the new value).
#[test]
fn wake_is_never_lost() {
    check("futex: wait vs wake", 3, || {
        let word = Arc::new(AtomicU32::new(0));
        let w2 = word.clone();
        let waiter = thread::spawn(move || wait_while_zero(&w2, BITSET_MATCH_ANY));
        word.store(1, Ordering::Release);
        let woke = futex::wake(&*word, 1, BITSET_MATCH_ANY).unwrap();
        let woken = waiter.join().unwrap();
        assert_eq!(
            woke, woken,
            "wake counted {woke}, waiter woken {woken} times"
        );
    });
}

/// Two waiters, two `wake(1)`s: each wake wakes at most one, together they leave nobody
/// parked, and the counts add up.
#[test]
fn wake_counts_are_exact() {
    check("futex: 2 waiters, 2 x wake(1)", 3, || {
        let word = Arc::new(AtomicU32::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let w = word.clone();
                thread::spawn(move || wait_while_zero(&w, BITSET_MATCH_ANY))
            })
            .collect();
        word.store(1, Ordering::Release);
        let a = futex::wake(&*word, 1, BITSET_MATCH_ANY).unwrap();
        let b = futex::wake(&*word, 1, BITSET_MATCH_ANY).unwrap();
        assert!(a <= 1 && b <= 1, "wake(1) woke {a} then {b}");
        let woken: usize = waiters.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(a + b, woken);
    });
}

/// Wakes pick only waiters of their address whose bitset shares a bit with theirs: one waiter on
/// `x` with bitset 0b01, one on `y` (same bucket) with every bit. A wake of `x` with bitset 0b10
/// wakes nobody; then a wake of `x` with 0b01 and one of `y` each wake exactly their own waiter
/// (if it was parked).
#[test]
fn wakes_match_address_and_bitset() {
    check("futex: address and bitset filters", 3, || {
        let x = Arc::new(AtomicU32::new(0));
        let y = Arc::new(AtomicU32::new(0));
        let (x2, y2) = (x.clone(), y.clone());
        let on_x = thread::spawn(move || wait_while_zero(&x2, 0b01));
        let on_y = thread::spawn(move || wait_while_zero(&y2, BITSET_MATCH_ANY));
        x.store(1, Ordering::Release);
        assert_eq!(futex::wake(&*x, u32::MAX, 0b10), Ok(0), "wrong bitset woke");
        let woke_x = futex::wake(&*x, u32::MAX, 0b01).unwrap();
        assert_eq!(on_x.join().unwrap(), woke_x);
        y.store(1, Ordering::Release);
        let woke_y = futex::wake(&*y, u32::MAX, BITSET_MATCH_ANY).unwrap();
        assert_eq!(on_y.join().unwrap(), woke_y);
    });
}

/// A timed wait racing a wake (under loom the deadline has always passed: the waiter looks once
/// for its wake-up, then withdraws from the bucket). The wake counts the waiter exactly when the
/// waiter reports `Ok`: a waiter dequeued by the waker before it could withdraw reports `Ok`,
/// never `TimedOut`.
#[test]
fn timeout_racing_wake_counts_once() {
    check("futex: timed wait vs wake", 3, || {
        let word = Arc::new(AtomicU32::new(0));
        let w2 = word.clone();
        let waiter =
            thread::spawn(move || futex::wait(&w2, 0, BITSET_MATCH_ANY, Some(Instant::now())));
        word.store(1, Ordering::Release);
        let woke = futex::wake(&*word, 1, BITSET_MATCH_ANY).unwrap();
        let r = waiter.join().unwrap();
        match r {
            Ok(()) => assert_eq!(woke, 1),
            Err(FutexError::TimedOut | FutexError::WouldBlock) => assert_eq!(woke, 0),
            Err(e) => panic!("timed wait failed: {e:?}"),
        }
    });
}

/// Two waits in a row by one thread, each ended by its own wake. The first wake may find the
/// waiter still running: it leaves a notification, which the waiter does not need (it sees its
/// node woken) and carries into its second wait. The second wake then finds that notification
/// pending and must still make its own node state visible to the waiter that consumes it: a
/// waiter that consumed the stale notification, saw its node still queued and parked for good
/// was a lost wake-up (a green thread gone missing under the preload's bounded buffer).
#[test]
fn a_stale_notification_does_not_hide_the_next_wake() {
    check("futex: second wait after a stale notification", 3, || {
        let word = Arc::new(AtomicU32::new(0));
        let w2 = word.clone();
        let waiter = thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                let _ = futex::wait(&w2, 0, BITSET_MATCH_ANY, None);
            }
            while w2.load(Ordering::Acquire) == 1 {
                let _ = futex::wait(&w2, 1, BITSET_MATCH_ANY, None);
            }
        });
        word.store(1, Ordering::Release);
        futex::wake(&*word, 1, BITSET_MATCH_ANY).unwrap();
        word.store(2, Ordering::Release);
        futex::wake(&*word, 1, BITSET_MATCH_ANY).unwrap();
        waiter.join().unwrap();
    });
}
