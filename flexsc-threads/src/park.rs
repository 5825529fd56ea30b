//! The park protocol of a green thread, on its own so loom can check it (`loom-tests/`).
//!
//! States: RUNNING (running, or queued to run), NOTIFIED (an unpark arrived while it was running:
//! its next park returns at once), PARKED (suspended, in no queue, kept alive by whoever holds an
//! [`Unparker`](crate::Unparker) for it) and WAITING (suspended in a wait list: it holds a
//! reference to itself, which the unpark that ends the wait takes over, so a wait costs no
//! reference counting). Only the transitions PARKED/WAITING -> RUNNING, made by
//! [`ParkState::unpark`], put a green thread on a run queue, and only its carrier, after the
//! coroutine has fully suspended, makes RUNNING -> PARKED or WAITING ([`ParkState::try_park`]).
//! So a green thread is on at most one queue, resumed by one carrier at a time, and an unpark is
//! never lost: it either finds the thread suspended (and queues it) or leaves NOTIFIED behind,
//! which the park consumes.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, Ordering};

const RUNNING: u32 = 0;
const NOTIFIED: u32 = 1;
const PARKED: u32 = 2;
const WAITING: u32 = 3;

/// How a green thread suspends when it parks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Park {
    /// Kept alive by its unparkers (it is dropped, and its stack unwound, if none is left).
    Held,
    /// In a wait list, holding a reference to itself until an unpark takes it over.
    Waiting,
}

/// What an unpark found, and so what its caller must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unparked {
    /// Running (now NOTIFIED) or already notified: nothing to queue.
    Running,
    /// Suspended as [`Park::Held`]: queue it (with a reference of the caller's own).
    Held,
    /// Suspended as [`Park::Waiting`]: queue it, with the reference it held to itself.
    Waiting,
}

/// One green thread's park state.
#[derive(Debug)]
pub struct ParkState {
    state: AtomicU32,
}

impl Default for ParkState {
    fn default() -> Self {
        Self::new()
    }
}

impl ParkState {
    /// RUNNING, no notification.
    pub fn new() -> Self {
        Self {
            state: AtomicU32::new(RUNNING),
        }
    }

    /// Green side of park: consumes a pending notification. True if one was pending (then do not
    /// suspend).
    pub fn take_notification(&self) -> bool {
        // Look before the locked compare-exchange: a pending notification is the rare case.
        self.state.load(Ordering::Relaxed) == NOTIFIED
            && self
                .state
                .compare_exchange(NOTIFIED, RUNNING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Carrier side of park, once the green thread has suspended: true if it is now suspended as
    /// `how`; false if an unpark came first (then it must run again).
    pub fn try_park(&self, how: Park) -> bool {
        let to = match how {
            Park::Held => PARKED,
            Park::Waiting => WAITING,
        };
        match self
            .state
            .compare_exchange(RUNNING, to, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(now) => {
                // NOTIFIED (nobody else leaves RUNNING): consume it and keep running.
                debug_assert_eq!(now, NOTIFIED, "parked from a state other than running");
                self.state.store(RUNNING, Ordering::Release);
                false
            }
        }
    }

    /// Wakes the green thread; says whether the caller must now queue it, and with which
    /// reference.
    ///
    /// A notification already pending is written again rather than just seen: whoever consumes
    /// it must also see what the caller did before this unpark (a wait list's node marked
    /// woken). A pending one may be stale, left by an earlier wake the thread did not need;
    /// had this unpark only read it, the thread could consume it, look at its node before the
    /// caller's write was visible, find it still queued and park with nobody left to wake it.
    pub fn unpark(&self) -> Unparked {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match s {
                RUNNING | NOTIFIED => NOTIFIED,
                _ => RUNNING,
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return match s {
                        PARKED => Unparked::Held,
                        WAITING => Unparked::Waiting,
                        _ => Unparked::Running,
                    };
                }
                Err(now) => s = now,
            }
        }
    }
}
