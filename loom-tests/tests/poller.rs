//! Loom models of poll arming's parked state (`flexsc_kmod::poller`, the `threads` backend's
//! `backend/threads/poller.rs`), over the entry status protocol and `flexsc_kmod::interrupt`.
//!
//! A parked entry is claimed (BUSY, detached) and listed in the poller's table, with
//! `interrupt::PARKED` as its runner. Three parties may end its stay: the poller when its fd
//! fires (it moves to the ready queue and a syscall thread runs it through the interruptible
//! stub), the poller when an interrupt woke it (`take_interrupted`, completing it `-EINTR`), and
//! the parker itself when it sees the request. The models check that the entry is completed
//! exactly once (a second completion trips the status assertion, and loom reports unordered
//! accesses to its result cell as data races), that an interrupt is never lost (the entry never
//! stays parked with a request set), and that the table and ready queue end empty.
//!
//! The poller's eventfd is a flag the poller resets when it wakes: once the interrupter has set
//! it the poller scans the table once, either during the model (a concurrent scan) or after it
//! (the wake-up still pending).
#![cfg(loom)]

use flexsc_kmod::entry::{SyscallEntry, status};
use flexsc_kmod::interrupt::{Interrupt, PARKED};
use flexsc_kmod::poller::{Park, Parking, READABLE, Waiter};
use loom::sync::atomic::Ordering;
use loom::sync::{Arc, Mutex};
use loom::thread;

/// `EINTR` on Linux (this crate has no libc).
const EINTR: i64 = 4;
/// The result of the call when it runs (the fd was ready).
const RAN: i64 = 7;
/// The syscall thread's kernel thread id.
const TID: i32 = 42;
const FD: i32 = 5;
const W: Waiter = Waiter {
    entry: 0,
    events: READABLE,
};

struct Shared {
    entry: SyscallEntry,
    intr: Interrupt,
    parking: Parking,
    /// The poller's wake-up eventfd (a mutex, as the kernel's eventfd has its lock: loom 0.7.3
    /// can order an atomic swap's write after a store it did not read, so no atomic RMW here).
    woke: Mutex<bool>,
}

impl Shared {
    /// An entry posted and claimed by a syscall thread, its claim detached (as `arm` does).
    fn new() -> Arc<Self> {
        let s = Arc::new(Self {
            entry: SyscallEntry::new(),
            intr: Interrupt::new(),
            parking: Parking::default(),
            woke: Mutex::new(false),
        });
        s.entry.post(0, 3, [FD as u64, 0, 8, 0, 0, 0]);
        s.entry.claim().expect("claim").detach();
        s
    }

    /// Completes the entry on behalf of the executor that detached it (`poller::complete`).
    fn complete(&self, ret: i64) {
        self.intr.leave();
        // SAFETY: the caller took the entry out of the table, ready queue or parker exclusively.
        unsafe { self.entry.complete_detached(ret) };
    }

    /// `Poster::interrupt` through the `threads` backend's `interrupt`: a parked runner means
    /// the poller is woken, any other is signalled (the models' calls never block, so the
    /// signal only has to be taken by `leave`'s caller, which the interrupt model checks).
    fn interrupt(&self) {
        self.intr.request(|tid| {
            if tid == PARKED {
                *self.woke.lock().unwrap() = true;
            } else {
                assert_eq!(tid, TID);
            }
        });
    }

    /// The poller, woken by the eventfd (reading it resets it): completes every parked entry
    /// with a request.
    fn poller_scan(&self) {
        let woken = std::mem::take(&mut *self.woke.lock().unwrap());
        if woken {
            for e in self.parking.take_interrupted(|_| &self.intr) {
                assert_eq!(e, W.entry);
                self.complete(-EINTR);
            }
        }
    }

    /// A syscall thread running a ready entry: the interruptible stub's test of the request.
    fn run_ready(&self) {
        if let Some(e) = self.parking.pop_ready() {
            assert_eq!(e, W.entry);
            let request = self.intr.enter(TID);
            let ret = if request.load(Ordering::Relaxed) != 0 {
                -EINTR
            } else {
                RAN
            };
            // SAFETY: popped from the ready queue: this thread owns the claim now.
            let claim = unsafe { self.entry.resume_detached() };
            let _ = self.intr.leave();
            claim.complete(ret);
        }
    }

    /// After the model's threads: the poller's next wake-up, then the poster's take.
    fn settle(&self) -> i64 {
        self.poller_scan();
        assert_eq!(self.parking.parked(), 0, "an entry stayed parked");
        assert!(!self.parking.has_ready(), "an entry stayed ready");
        assert_eq!(self.entry.status(), status::DONE, "never completed");
        self.entry.take().expect("done")
    }
}

/// A syscall thread parks the entry while the poster interrupts it and the poller, if woken,
/// scans: the entry ends `-EINTR`, once, whoever sees the request.
#[test]
fn interrupt_races_parking() {
    loom_tests::check("interrupt_races_parking", 3, || {
        let s = Shared::new();
        let parker = {
            let s = s.clone();
            thread::spawn(move || match s.parking.park(FD, W, &s.intr, |_, _, _| 0) {
                Park::Interrupted => s.complete(-EINTR),
                Park::Parked => {}
                Park::Refused(e) => panic!("refused {e}"),
            })
        };
        let interrupter = {
            let s = s.clone();
            thread::spawn(move || s.interrupt())
        };
        s.poller_scan();
        parker.join().unwrap();
        interrupter.join().unwrap();
        assert_eq!(s.settle(), -EINTR);
    });
}

/// A parked entry's fd fires (it moves to the ready queue and a syscall thread runs it) while
/// the poster interrupts it and the poller, if woken, scans: it completes once, `-EINTR` or
/// with the call's result, and the interrupt is never left for a later call.
#[test]
fn interrupt_races_readiness() {
    loom_tests::check("interrupt_races_readiness", 3, || {
        let s = Shared::new();
        assert_eq!(s.parking.park(FD, W, &s.intr, |_, _, _| 0), Park::Parked);
        let runner = {
            let s = s.clone();
            thread::spawn(move || {
                s.parking.fire(FD, READABLE, |_, _, _| 0);
                s.run_ready();
            })
        };
        let interrupter = {
            let s = s.clone();
            thread::spawn(move || s.interrupt())
        };
        s.poller_scan();
        runner.join().unwrap();
        interrupter.join().unwrap();
        let ret = s.settle();
        assert!(ret == -EINTR || ret == RAN, "{ret}");
    });
}

/// The fd's registration is found gone by the poller's sweep (the fd was closed) while the
/// entry is interrupted: it runs again or ends `-EINTR`, once.
#[test]
fn interrupt_races_sweep() {
    loom_tests::check("interrupt_races_sweep", 3, || {
        let s = Shared::new();
        assert_eq!(s.parking.park(FD, W, &s.intr, |_, _, _| 0), Park::Parked);
        let sweeper = {
            let s = s.clone();
            thread::spawn(move || {
                // EBADF: the fd was closed.
                s.parking.sweep(|_, _, _| 9, |_| {});
                s.run_ready();
            })
        };
        s.interrupt();
        s.poller_scan();
        sweeper.join().unwrap();
        let ret = s.settle();
        assert!(ret == -EINTR || ret == RAN, "{ret}");
    });
}
