//! Loom models of wait and wake (`flexsc_kmod::doorbell`): a completion, or posted work, racing
//! with its waiter going to sleep is never lost, and a ring wakes every sleeper.
//!
//! A lost wake-up shows as a deadlock: the sleeper stays blocked on the futex stand-in (loom's
//! mutex + condvar) with nobody left to ring, and loom fails the model.
#![cfg(loom)]

use flexsc_kmod::doorbell::Doorbell;
use flexsc_kmod::entry::{SyscallEntry, status};
use flexsc_kmod::page::{PageControl, Step, SyscallPage};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

#[derive(Clone, Copy, Debug)]
enum Ring {
    All,
    One,
}

/// flexsc_wait on one entry: the poster posts, then sleeps on the doorbell until the entry is
/// DONE; the executor claims, completes and rings. `spins` polls come before the sleep.
fn completion_wakes_poster(name: &str, bound: usize, spins: u32, ring: Ring) {
    loom_tests::check(name, bound, move || {
        let entry = Arc::new(SyscallEntry::new());
        let bell = Arc::new(Doorbell::new());
        let (e, b) = (entry.clone(), bell.clone());
        let executor = thread::spawn(move || {
            // The model's only spinner: it waits for the post (the poster blocks, never spins
            // for long), then runs the call once.
            let claim = loop {
                match e.claim() {
                    Some(c) => break c,
                    None => thread::yield_now(),
                }
            };
            claim.complete(7);
            match ring {
                Ring::All => b.ring(),
                Ring::One => b.ring_one(),
            }
        });

        entry.post(39, 0, [0; 6]);
        bell.wait_until(spins, None, || entry.status() == status::DONE, || false);
        // wait_until returns only once ready() held: the result is there now.
        assert_eq!(entry.take(), Some(7));
        executor.join().unwrap();
        assert!(!bell.has_sleepers());
    });
}

// Preemption bound 3 for every model here: a lost wake-up needs one badly placed preemption (the
// ringer between its count and its check, or the sleeper between its check and its sleep), and
// bound 3 runs each model in well under a second.

#[test]
fn completion_racing_sleep_is_not_lost() {
    completion_wakes_poster("ring, no spin", 3, 0, Ring::All);
}

#[test]
fn completion_racing_sleep_is_not_lost_ring_one() {
    completion_wakes_poster("ring_one, no spin", 3, 0, Ring::One);
}

#[test]
fn completion_during_spin_then_sleep() {
    completion_wakes_poster("ring, one spin", 3, 1, Ring::All);
}

/// An idle syscall thread: sleeps until its page has work; the poster posts, notes the page and
/// rings one sleeper (the scheduler's submit + kick). The woken thread must find the entry.
#[test]
fn posted_work_wakes_idle_drainer() {
    loom_tests::check_on_big_stack("idle drainer", 3, || {
        let page = Arc::new(SyscallPage::new());
        let ctl = Arc::new(PageControl::new());
        let bell = Arc::new(Doorbell::new());
        let (p, c, b) = (page.clone(), ctl.clone(), bell.clone());
        let drainer = thread::spawn(move || {
            b.wait_until(0, None, || c.has_work(), || false);
            let guard = c.try_lock().expect("the only drainer");
            guard.drain(&p, |claim| {
                claim.complete(0);
                Step::Continue
            })
        });

        page.entries[0].post(39, 0, [0; 6]);
        ctl.note_posted();
        bell.ring_one();
        assert_eq!(
            drainer.join().unwrap(),
            1,
            "the woken drainer missed the entry"
        );
        assert_eq!(page.entries[0].take(), Some(0));
        assert!(!ctl.has_work());
    });
}

/// Shutdown: two threads asleep on one doorbell (waiting for work that never comes) must both
/// wake when the flag they give up on is set and the doorbell rung once.
#[test]
fn ring_wakes_every_sleeper() {
    loom_tests::check("ring wakes all", 3, || {
        let bell = Arc::new(Doorbell::new());
        let shut = Arc::new(AtomicBool::new(false));
        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                let (b, s) = (bell.clone(), shut.clone());
                thread::spawn(move || {
                    b.wait_until(0, None, || false, || s.load(Ordering::Acquire));
                })
            })
            .collect();
        shut.store(true, Ordering::Release);
        bell.ring();
        for s in sleepers {
            s.join().unwrap();
        }
        assert!(!bell.has_sleepers());
    });
}
