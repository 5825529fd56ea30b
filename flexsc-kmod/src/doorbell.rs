//! Wait and wake without lost wake-ups: the mechanism under `flexsc_wait` (a poster sleeping until
//! one of its entries is done) and under idle syscall threads (sleeping until work is posted).
//!
//! A doorbell is a futex word that counts rings, plus a count of sleepers so that a ring with
//! nobody asleep costs one atomic add and no system call. A sleeper registers, reads the count,
//! re-checks its condition, and sleeps only if the count is unchanged; a ringer first makes its
//! condition true, then bumps the count, then wakes if anyone registered. Both sides order these
//! with SeqCst, so either the ringer sees the sleeper or the sleeper sees the ring.

use crate::sync::{AtomicU32, Futex, Ordering, spin_hint};

/// A futex doorbell.
#[derive(Debug, Default)]
pub struct Doorbell {
    rings: Futex,
    sleepers: AtomicU32,
}

impl Doorbell {
    /// A doorbell nobody waits on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rings: wakes every sleeper. Call after making the awaited condition true.
    #[inline]
    pub fn ring(&self) {
        self.rings.word().fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.rings.wake(u32::MAX);
        }
    }

    /// Rings, waking at most one sleeper.
    #[inline]
    pub fn ring_one(&self) {
        self.rings.word().fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.rings.wake(1);
        }
    }

    /// Whether anyone is asleep (or about to sleep) on the doorbell.
    #[inline]
    pub fn has_sleepers(&self) -> bool {
        self.sleepers.load(Ordering::SeqCst) != 0
    }

    /// Returns once `ready()` is true: polls it `spins` times, then sleeps until a ring.
    ///
    /// `timeout_ns` (0: none) bounds each sleep; the function still returns only when `ready()`
    /// holds or `give_up()` does.
    pub fn wait_until(
        &self,
        spins: u32,
        timeout_ns: u64,
        mut ready: impl FnMut() -> bool,
        mut give_up: impl FnMut() -> bool,
    ) {
        for _ in 0..spins {
            if ready() || give_up() {
                return;
            }
            spin_hint();
        }
        loop {
            if ready() || give_up() {
                return;
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let seen = self.rings.word().load(Ordering::SeqCst);
            if ready() || give_up() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            self.rings.wait(seen, timeout_ns);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
