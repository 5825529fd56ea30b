//! Loom models of the reader-writer lock (`flexsc_threads::sync::RwLock`: its state and FIFO of
//! waiters under the wait list's lock, with a release handing the lock over to the waiters it
//! wakes): readers share the lock, a writer excludes readers and other writers, and a release
//! never misses a waiter that is queueing.
//!
//! The holders count themselves in loom atomics inside their critical sections, and assert the
//! invariants there (no reader alongside a writer, at most one writer). A lost wake-up shows as a
//! deadlock (a waiter parked with nobody left to grant it the lock), which loom reports.
#![cfg(loom)]

use flexsc_threads::sync::RwLock;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use loom_tests::check;

/// A lock and the number of readers and writers inside it right now.
#[derive(Default)]
struct Shared {
    lock: RwLock<u32>,
    readers: AtomicUsize,
    writers: AtomicUsize,
}

impl Shared {
    /// Takes a read lock and checks no writer is inside while it holds it.
    fn read(&self) -> u32 {
        let g = self.lock.read();
        self.readers.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            self.writers.load(Ordering::SeqCst),
            0,
            "a writer beside a reader"
        );
        let v = *g;
        self.readers.fetch_sub(1, Ordering::SeqCst);
        v
    }

    /// Takes the write lock, checks nobody else is inside while it holds it, and increments.
    fn write(&self) {
        let mut g = self.lock.write();
        assert_eq!(
            self.writers.fetch_add(1, Ordering::SeqCst),
            0,
            "two writers"
        );
        assert_eq!(
            self.readers.load(Ordering::SeqCst),
            0,
            "a reader beside a writer"
        );
        *g += 1;
        self.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Two readers and a writer, one lock each: the writer never overlaps a reader, whichever order
/// they arrive and queue in (a reader behind the queued writer, the writer behind one or two
/// readers, a run of readers granted together), and every waiter is granted in the end.
#[test]
fn writer_excludes_readers() {
    check("rwlock: 2 readers + 1 writer", 2, || {
        let s = Arc::new(Shared::default());
        let (s1, s2) = (s.clone(), s.clone());
        let reader = thread::spawn(move || s1.read());
        let writer = thread::spawn(move || s2.write());
        let seen = s.read();
        let other = reader.join().unwrap();
        writer.join().unwrap();
        assert!(seen <= 1 && other <= 1);
        assert_eq!(*s.lock.read(), 1);
    });
}

/// Two readers hold the lock at once: each takes a read guard, says so, and keeps it until it
/// has seen the other say so too (spinning with `yield_now`, which loom schedules fairly). If
/// readers excluded each other (or one were wrongly queued), neither could finish.
#[test]
fn two_readers_hold_at_once() {
    check("rwlock: 2 readers at once", 3, || {
        let l = Arc::new(RwLock::new(7_u32));
        let holding = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let rendezvous = |l: &RwLock<u32>, holding: &[AtomicBool; 2], me: usize| {
            let g = l.read();
            holding[me].store(true, Ordering::SeqCst);
            while !holding[1 - me].load(Ordering::SeqCst) {
                thread::yield_now();
            }
            *g
        };
        let (l2, h2) = (l.clone(), holding.clone());
        let reader = thread::spawn(move || rendezvous(&l2, &h2, 1));
        assert_eq!(rendezvous(&l, &holding, 0), 7);
        assert_eq!(reader.join().unwrap(), 7);
        assert!(l.try_write().is_some());
    });
}

/// A writer that waits behind a reader is woken when the reader unlocks: every interleaving of
/// the writer's check-and-enqueue with the reader's release (under the wait list's lock) and
/// its park with the hand-over's wake.
#[test]
fn reader_unlock_wakes_waiting_writer() {
    check("rwlock: reader unlock wakes writer", 3, || {
        let s = Arc::new(Shared::default());
        let s2 = s.clone();
        let g = s.lock.read();
        let writer = thread::spawn(move || s2.write());
        drop(g);
        writer.join().unwrap();
        assert_eq!(*s.lock.read(), 1);
    });
}

/// The converse hand-over: readers that wait behind a writer are both woken (granted together)
/// when the writer unlocks, and see its write.
#[test]
fn writer_unlock_wakes_waiting_readers() {
    check("rwlock: writer unlock wakes 2 readers", 2, || {
        let s = Arc::new(Shared::default());
        let mut g = s.lock.write();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.read())
            })
            .collect();
        *g = 5;
        drop(g);
        for r in readers {
            assert_eq!(r.join().unwrap(), 5);
        }
        assert!(s.lock.try_write().is_some());
    });
}
