//! Loom models of a carrier's run queue (`flexsc_threads::queue::RunQueue`, the runtime's
//! `runtime/queue.rs` built on loom's mutex and atomics): green threads pushed by wakers on other
//! threads are each run exactly once, by their carrier's pop or another carrier's steal, and a
//! carrier going idle never misses a push whose waker did not ring it.
#![cfg(loom)]

use flexsc_threads::queue::RunQueue;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use loom_tests::check;

/// Records that green thread `t` (a bit in `delivered`) was taken from the queue; fails if it
/// already was.
fn deliver(delivered: &AtomicUsize, t: usize) {
    let before = delivered.fetch_or(1 << t, Ordering::Relaxed);
    assert_eq!(before & (1 << t), 0, "green thread {t} taken twice");
}

/// Two wakers push a green thread each (`Shared::schedule`), another carrier tries to steal
/// once, and the owner pops until both have been taken. Each is taken exactly once (a lost one
/// would leave the owner spinning forever, which loom reports), and the queue ends empty, its
/// length mirror agreeing.
#[test]
fn pushes_are_taken_exactly_once() {
    check("run queue: two pushes, pop and steal", 2, || {
        let q: Arc<RunQueue> = Arc::new(RunQueue::default());
        let delivered = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (0..2)
            .map(|t| {
                let q = q.clone();
                thread::spawn(move || q.push(t))
            })
            .collect();
        let (q2, d2) = (q.clone(), delivered.clone());
        let thief = thread::spawn(move || {
            if let Some(t) = q2.steal() {
                deliver(&d2, t);
            }
        });
        while delivered.load(Ordering::Relaxed) != 0b11 {
            match q.pop() {
                Some(t) => deliver(&delivered, t),
                None => thread::yield_now(),
            }
        }
        for w in wakers {
            w.join().unwrap();
        }
        thief.join().unwrap();
        assert!(q.is_empty());
        assert!(!q.has_spare());
        assert_eq!(q.pop(), None);
        assert_eq!(q.steal(), None);
    });
}

/// The idle handshake between a waker and the carrier (`RunQueue::push_and_check` in
/// `Shared::schedule`, `RunQueue::sleep_begin` in `Carrier::idle`): either the waker is told to
/// ring the carrier, or the carrier's last look sees the push, and a carrier that saw it finds it
/// with its next `pop` (whose fast path is a relaxed load).
#[test]
fn idle_carrier_never_misses_a_push() {
    check("run queue: push vs idle check", 3, || {
        let q: Arc<RunQueue> = Arc::new(RunQueue::default());
        let q2 = q.clone();
        // True: the waker rings the carrier's doorbell.
        let waker = thread::spawn(move || q2.push_and_check(7));
        let mut waker = Some(waker);
        let got = match q.pop() {
            Some(t) => t,
            None => {
                if q.sleep_begin() {
                    // Asleep until rung: the waker's ring happens before the carrier wakes (the
                    // doorbell orders them), which the join stands for.
                    let rang = waker.take().unwrap().join().unwrap();
                    assert!(rang, "the carrier sleeps and the waker does not ring it");
                }
                q.sleep_end();
                q.pop()
                    .expect("the idle check saw the push (or was rung), so pop must find it")
            }
        };
        assert_eq!(got, 7);
        if let Some(w) = waker {
            w.join().unwrap();
        }
        assert!(q.is_empty());
    });
}
