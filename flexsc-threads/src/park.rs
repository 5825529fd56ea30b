//! The park protocol of a green thread, on its own so loom can check it (`loom-tests/`).
//!
//! States: RUNNING (running, or queued to run), NOTIFIED (an unpark arrived while it was running:
//! its next park returns at once), PARKED (suspended, in no queue). Only the transition PARKED ->
//! RUNNING, made by [`ParkState::unpark`], puts a green thread on a run queue, and only its
//! carrier, after the coroutine has fully suspended, makes RUNNING -> PARKED
//! ([`ParkState::try_park`]). So a green thread is on at most one queue, resumed by one carrier at
//! a time, and an unpark is never lost: it either finds the thread PARKED (and queues it) or
//! leaves NOTIFIED behind, which the park consumes.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, Ordering};

const RUNNING: u32 = 0;
const NOTIFIED: u32 = 1;
const PARKED: u32 = 2;

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
        self.state
            .compare_exchange(NOTIFIED, RUNNING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Carrier side of park, once the green thread has suspended: true if it is now parked;
    /// false if an unpark came first (then it must run again).
    pub fn try_park(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                // NOTIFIED (nobody else leaves RUNNING): consume it and keep running.
                self.state.store(RUNNING, Ordering::Release);
                false
            }
        }
    }

    /// Wakes the green thread: true if the caller must now queue it (it was parked).
    pub fn unpark(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match s {
                NOTIFIED => return false,
                RUNNING => NOTIFIED,
                _ => RUNNING,
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return s == PARKED,
                Err(now) => s = now,
            }
        }
    }
}
