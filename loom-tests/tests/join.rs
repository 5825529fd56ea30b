//! Loom model of the join protocol (`flexsc_threads::join`): a joiner leaves its waker and parks
//! while the green thread finishes. The joiner always gets the result, and is woken exactly when
//! it would otherwise sleep forever.
#![cfg(loom)]

use flexsc_threads::join::JoinCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::check;

/// One join racing one completion: if the joiner was told to park (its waker was accepted), the
/// finishing side hands the waker back to be woken; the result is always there once done.
#[test]
fn join_races_completion() {
    check("join_races_completion", 3, || {
        let cell = Arc::new(JoinCell::<u32, usize>::new());
        let woken = Arc::new(AtomicUsize::new(0));
        let (c2, w2) = (cell.clone(), woken.clone());
        let finisher = loom::thread::spawn(move || {
            if let Some(w) = c2.complete(42) {
                assert_eq!(w, 7, "woke someone else's waker");
                w2.fetch_add(1, Ordering::SeqCst);
            }
        });
        let parks = cell.wait_with(7);
        finisher.join().unwrap();
        let woken = woken.load(Ordering::SeqCst);
        if parks {
            assert_eq!(woken, 1, "parked, and the completion did not wake it");
        } else {
            assert_eq!(woken, 0, "not parked, yet woken");
        }
        assert!(cell.is_done());
        assert_eq!(cell.take(), Some(42));
        assert_eq!(cell.take(), None, "the result was handed out twice");
    });
}

/// A joiner that looks before the completion finds nothing, and one that looks after finds the
/// result without parking.
#[test]
fn take_sees_the_result_only_when_done() {
    check("take_sees_the_result_only_when_done", 3, || {
        let cell = Arc::new(JoinCell::<u32, usize>::new());
        let c2 = cell.clone();
        let finisher = loom::thread::spawn(move || {
            assert!(c2.complete(5).is_none(), "no joiner waited");
        });
        let early = cell.take();
        finisher.join().unwrap();
        match early {
            Some(v) => assert_eq!(v, 5),
            None => {
                assert!(!cell.wait_with(1), "done, yet told to park");
                assert_eq!(cell.take(), Some(5));
            }
        }
    });
}
