//! Loom models of the condvar (`flexsc_threads::sync::Condvar` with its `Mutex`, on loom's
//! atomics, mutex and thread park): a notification made after the predicate changed under the
//! mutex is never lost, whether it comes under the mutex or after unlocking it, and a timed wait
//! that gives up never swallows a `notify_one`.
//!
//! A lost notification shows as a deadlock (the waiter parked for good), which loom reports.
#![cfg(loom)]

use std::time::Duration;

use flexsc_threads::sync::{Condvar, Mutex};
use loom::sync::Arc;
use loom::thread;
use loom_tests::check;

/// A flag under a mutex and the condvar its waiters park on.
#[derive(Default)]
struct Flag {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Flag {
    /// Waits (untimed) until the flag is set.
    fn wait(&self) {
        let g = self.set.lock();
        let g = self.cv.wait_while(g, |set| !*set);
        assert!(*g);
    }
}

#[derive(Clone, Copy, Debug)]
enum Notify {
    /// `notify_one` while holding the mutex.
    OneLocked,
    /// `notify_one` after unlocking it.
    OneUnlocked,
    /// `notify_all` after unlocking it.
    AllUnlocked,
}

/// `waiters` threads wait for the flag; the main thread sets it under the mutex and notifies.
fn notify_after_predicate(name: &str, bound: usize, waiters: usize, how: Notify) {
    check(name, bound, move || {
        let f = Arc::new(Flag::default());
        let ws: Vec<_> = (0..waiters)
            .map(|_| {
                let f = f.clone();
                thread::spawn(move || f.wait())
            })
            .collect();
        let mut g = f.set.lock();
        *g = true;
        match how {
            Notify::OneLocked => {
                f.cv.notify_one();
                drop(g);
            }
            Notify::OneUnlocked => {
                drop(g);
                f.cv.notify_one();
            }
            Notify::AllUnlocked => {
                drop(g);
                f.cv.notify_all();
            }
        }
        for w in ws {
            w.join().unwrap();
        }
    });
}

/// One waiter, `notify_one` under the mutex: the waiter reads the sequence before unlocking, so
/// a notifier that got the mutex after it either finds it queued or changed the sequence its
/// check sees.
#[test]
fn notify_one_under_the_mutex_is_not_lost() {
    notify_after_predicate("condvar: notify_one locked", 3, 1, Notify::OneLocked);
}

/// One waiter, `notify_one` after unlocking.
#[test]
fn notify_one_after_unlock_is_not_lost() {
    notify_after_predicate("condvar: notify_one unlocked", 3, 1, Notify::OneUnlocked);
}

/// Two waiters, one `notify_all`: both return (each either queued before the wake or sees the
/// flag), even as they contend for the mutex on their way in and out.
#[test]
fn notify_all_wakes_every_waiter() {
    notify_after_predicate("condvar: notify_all, 2 waiters", 2, 2, Notify::AllUnlocked);
}

/// A timed wait racing a `notify_one` (under loom the deadline has always passed: the timed
/// waiter looks once for its wake-up, then withdraws from the wait list). One untimed waiter
/// waits for the flag; the timed one waits once and, if it was notified, passes the
/// notification on, as a waiter that consumed a wake meant for someone else must. If it claimed
/// to time out after a notifier had dequeued it, the wake would be lost and the untimed waiter
/// would never return.
#[test]
fn timed_out_waiter_never_swallows_notify_one() {
    check("condvar: timed wait vs notify_one", 2, || {
        let f = Arc::new(Flag::default());
        let (f1, f2) = (f.clone(), f.clone());
        let untimed = thread::spawn(move || f1.wait());
        let timed = thread::spawn(move || {
            let g = f2.set.lock();
            let (g, r) = f2.cv.wait_timeout(g, Duration::from_secs(1));
            drop(g);
            if !r.timed_out() {
                f2.cv.notify_one();
            }
        });
        *f.set.lock() = true;
        f.cv.notify_one();
        untimed.join().unwrap();
        timed.join().unwrap();
    });
}
