//! Loom model of the green-thread park protocol (`flexsc_threads::park`): a green thread parks
//! (consume a notification, else suspend and let its carrier try to park it) while another thread
//! unparks it. No wake-up is lost, and the green thread is queued at most once per park.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use flexsc_threads::park::{Park, ParkState, Unparked};
use loom::sync::Arc;
use loom_tests::check;

/// One park racing one unpark, for both kinds of park: afterwards the green thread is either
/// running (it consumed the notification, or its carrier's park lost the race) or parked *and*
/// the unparker was told to queue it, with the right reference (its own, for a waiting one);
/// never parked with nobody to wake it, never queued twice.
#[test]
fn park_races_unpark() {
    for how in [Park::Held, Park::Waiting] {
        park_races_unpark_as(how);
    }
}

fn park_races_unpark_as(how: Park) {
    check(&format!("park_races_unpark ({how:?})"), 3, move || {
        let st = Arc::new(ParkState::new());
        let queued = Arc::new(AtomicUsize::new(0));
        let (s2, q2) = (st.clone(), queued.clone());
        let waker = loom::thread::spawn(move || {
            let u = s2.unpark();
            if u != Unparked::Running {
                assert_eq!(
                    u == Unparked::Waiting,
                    how == Park::Waiting,
                    "wrong reference"
                );
                q2.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The green thread's park, then its carrier's half.
        let parked = !st.take_notification() && st.try_park(how);
        waker.join().unwrap();
        let queued = queued.load(Ordering::Relaxed);
        if parked {
            assert_eq!(queued, 1, "parked, and the unpark was lost");
        } else {
            assert_eq!(queued, 0, "running, yet queued by the unpark");
        }
    });
}

/// Two unparks racing one park: the green thread is queued at most once, and exactly once if it
/// parked.
#[test]
fn two_unparks_queue_once() {
    for how in [Park::Held, Park::Waiting] {
        two_unparks_queue_once_as(how);
    }
}

fn two_unparks_queue_once_as(how: Park) {
    check(&format!("two_unparks_queue_once ({how:?})"), 3, move || {
        let st = Arc::new(ParkState::new());
        let queued = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (0..2)
            .map(|_| {
                let (s, q) = (st.clone(), queued.clone());
                loom::thread::spawn(move || {
                    let u = s.unpark();
                    if u != Unparked::Running {
                        assert_eq!(
                            u == Unparked::Waiting,
                            how == Park::Waiting,
                            "wrong reference"
                        );
                        q.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let parked = !st.take_notification() && st.try_park(how);
        for w in wakers {
            w.join().unwrap();
        }
        let queued = queued.load(Ordering::Relaxed);
        assert!(queued <= 1, "queued twice");
        assert_eq!(queued == 1, parked, "parked = {parked}, queued = {queued}");
    });
}
