//! Loom models of a green thread's interrupt mark (`flexsc_threads::mark::InterruptMark`, the
//! runtime's `runtime/mark.rs`): an interrupt racing with its green thread's call being posted is
//! never missed, and the green thread takes each mark once.
#![cfg(loom)]

use flexsc_threads::mark::InterruptMark;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use loom_tests::check;

/// The interrupter marks while carrier 0 posts the green thread's call. Either the carrier saw
/// the mark (and interrupts the call at once) or the interrupter saw the call in flight on
/// carrier 0 (and asks it to): never neither.
#[test]
fn an_interrupt_racing_a_post_is_never_missed() {
    check("interrupt mark: mark vs post", 3, || {
        let m = Arc::new(InterruptMark::default());
        let asked = Arc::new(AtomicBool::new(false));
        let interrupter = {
            let (m, asked) = (m.clone(), asked.clone());
            thread::spawn(move || {
                if let Some(c) = m.mark() {
                    assert_eq!(c, 0, "the call is in flight on carrier 0");
                    asked.store(true, Ordering::Relaxed);
                }
            })
        };
        let seen_by_carrier = m.posted_on(0);
        interrupter.join().unwrap();
        assert!(
            seen_by_carrier || asked.load(Ordering::Relaxed),
            "an interrupt missed a call being posted"
        );
    });
}

/// Two interrupts and the green thread taking its mark: after both interrupts and a final take,
/// the mark is clear; a take that returned false never hid a mark set before it (the final take
/// then sees it).
#[test]
fn a_mark_is_taken_once() {
    check("interrupt mark: take", 3, || {
        let m = Arc::new(InterruptMark::default());
        let interrupters: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || {
                    m.mark();
                })
            })
            .collect();
        let first = m.take();
        for t in interrupters {
            t.join().unwrap();
        }
        let last = m.take();
        assert!(first || last, "two interrupts left no mark to take");
        assert!(!m.take(), "a mark taken twice");
    });
}
