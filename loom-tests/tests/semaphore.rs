//! Loom models of the semaphore (`flexsc_threads::sync::Semaphore`: an atomic permit count and a
//! wait list, on loom's atomics, mutex and thread park): with one permit its holders exclude
//! each other, and a release never misses a waiter that is parking.
//!
//! Overlapping holders show as a failed assertion on a loom atomic count of holders, and as a
//! data race on a loom cell they all write (each holder's writes must happen before the next
//! holder's reads through the permit count alone). A lost wake-up shows as a deadlock (a waiter
//! parked with nobody left to unpark it), which loom reports.
#![cfg(loom)]

use std::time::Duration;

use flexsc_threads::sync::Semaphore;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use loom_tests::check;

/// A semaphore, the number of holders inside it now, and a cell written only by holders.
struct Shared {
    sem: Semaphore,
    inside: AtomicUsize,
    cell: UnsafeCell<u32>,
}

// SAFETY: `cell` is only touched by permit holders, one at a time with one permit (what the
// model checks).
unsafe impl Sync for Shared {}

impl Shared {
    fn new(permits: usize) -> Self {
        Self {
            sem: Semaphore::new(permits),
            inside: AtomicUsize::new(0),
            cell: UnsafeCell::new(0),
        }
    }

    /// Acquires, checks it is alone inside, increments the cell, releases.
    fn increment(&self) {
        self.sem.acquire();
        assert_eq!(self.inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
        // SAFETY: the permit gives this thread the only access to the cell.
        self.cell.with_mut(|p| unsafe { *p += 1 });
        self.inside.fetch_sub(1, Ordering::SeqCst);
        self.sem.release(1);
    }

    fn count(&self) -> u32 {
        self.sem.acquire();
        // SAFETY: as in `increment`.
        let n = self.cell.with(|p| unsafe { *p });
        self.sem.release(1);
        n
    }
}

/// One permit, two acquirers: never both inside, whether the second finds the permit taken and
/// parks, or races the release; no increment is lost and the permit comes back.
#[test]
fn one_permit_excludes() {
    check("semaphore: 1 permit, 2 acquirers", 3, || {
        let s = Arc::new(Shared::new(1));
        let s2 = s.clone();
        let other = thread::spawn(move || s2.increment());
        s.increment();
        other.join().unwrap();
        assert_eq!(s.count(), 2);
        assert_eq!(s.sem.available(), 1);
    });
}

/// No permit at first: the waiter checks the count under the wait list's lock, the releaser adds
/// the permit and then wakes under that lock, so the waiter either sees the permit or is queued
/// when the wake comes.
#[test]
fn release_wakes_a_waiter() {
    check("semaphore: release wakes waiter", 3, || {
        let s = Arc::new(Semaphore::new(0));
        let s2 = s.clone();
        let waiter = thread::spawn(move || s2.acquire());
        s.release(1);
        waiter.join().unwrap();
        assert_eq!(s.available(), 0);
    });
}

/// Two waiters, two single releases: a woken waiter may lose the permit to the other and queue
/// again; each still gets one in the end.
#[test]
fn two_releases_wake_two_waiters() {
    check("semaphore: 2 waiters, 2 releases", 2, || {
        let s = Arc::new(Semaphore::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.acquire())
            })
            .collect();
        s.release(1);
        s.release(1);
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(s.available(), 0);
    });
}

/// A timed acquire (under loom its deadline has always passed: it looks once for the permit or a
/// wake-up, then gives up) racing an untimed waiter for one released permit: if the timed one
/// took the permit it gives it back; if it gave up, it must not have spent the release's wake,
/// or the untimed waiter would never return.
#[test]
fn timed_out_acquire_never_swallows_a_wake() {
    check("semaphore: timed acquire vs waiter", 2, || {
        let s = Arc::new(Semaphore::new(0));
        let (s1, s2) = (s.clone(), s.clone());
        let untimed = thread::spawn(move || s1.acquire());
        let timed = thread::spawn(move || {
            if s2.acquire_timeout(Duration::from_secs(1)) {
                s2.release(1);
            }
        });
        s.release(1);
        untimed.join().unwrap();
        timed.join().unwrap();
        assert_eq!(s.available(), 0);
    });
}
