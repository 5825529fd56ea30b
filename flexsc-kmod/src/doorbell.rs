//! Wait and wake without lost wake-ups: the mechanism under `flexsc_wait` (a poster sleeping until
//! one of its entries is done) and under idle syscall threads (sleeping until work is posted).
//!
//! A doorbell is a futex word that counts rings, plus a count of sleepers so that a ring with
//! nobody asleep costs a fence, one atomic add and no system call. A sleeper registers, reads the
//! count, re-checks its condition, and sleeps only if the count is unchanged; a ringer first makes
//! its condition true, then bumps the count, then wakes if anyone registered.
//!
//! Each side puts a SeqCst fence between its write and its read (store buffering, as in Dekker's
//! algorithm): if the ringer's fence comes first in the fences' total order, the sleeper's re-check
//! sees the condition; otherwise the ringer sees the sleeper registered and wakes it, and the
//! futex's compare-and-sleep (atomic with respect to the wake) makes the sleeper either see the
//! new count or be woken. Explicit fences rather than SeqCst accesses: same guarantee in C11, and
//! loom (which models SeqCst accesses as AcqRel only) can check it. Anything else that sleeps on
//! the word (an io_uring futex wait) must follow the same steps: register, fence, read, re-check.

use std::time::Instant;

use crate::sync::{AtomicU32, Futex, Ordering, fence, spin_hint};

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
        if self.bump() {
            self.rings.wake(u32::MAX);
        }
    }

    /// Rings, waking at most one sleeper.
    #[inline]
    pub fn ring_one(&self) {
        if self.bump() {
            self.rings.wake(1);
        }
    }

    /// Counts a ring; returns whether anyone may be asleep.
    #[inline]
    fn bump(&self) -> bool {
        // Pairs with the fence in `wait_until` (see the module doc), and releases the caller's
        // condition with the count: a sleeper that reads the new count sees the condition.
        fence(Ordering::SeqCst);
        self.rings.word().fetch_add(1, Ordering::Relaxed);
        self.sleepers.load(Ordering::Relaxed) != 0
    }

    /// Whether anyone is asleep (or about to sleep) on the doorbell.
    #[inline]
    pub fn has_sleepers(&self) -> bool {
        self.sleepers.load(Ordering::SeqCst) != 0
    }

    /// The futex word sleepers wait on, for a sleeper that waits through io_uring's
    /// `IORING_OP_FUTEX_WAIT` instead of `futex(2)` (the `uring` backend). Use it only between
    /// [`Self::register_sleeper`] and [`Self::unregister_sleeper`], as [`Self::wait_until`] does.
    #[cfg(not(loom))]
    pub(crate) fn futex_word(&self) -> &AtomicU32 {
        self.rings.word()
    }

    /// The first half of [`Self::wait_until`]'s sleep: registers a sleeper and returns the ring
    /// count to sleep on. The caller must then re-check its condition, sleep only while the word
    /// still holds the returned value, and call [`Self::unregister_sleeper`] afterwards.
    #[cfg(not(loom))]
    pub(crate) fn register_sleeper(&self) -> u32 {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        self.rings.word().load(Ordering::SeqCst)
    }

    /// Ends a sleep started with [`Self::register_sleeper`].
    #[cfg(not(loom))]
    pub(crate) fn unregister_sleeper(&self) {
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Returns once `ready()` is true: spins up to `spins` polls of the ring count, re-checking
    /// `ready()` whenever it moves, then sleeps until a ring.
    ///
    /// Spinning watches the one doorbell word rather than calling `ready()`, because `ready()`
    /// typically reads cache lines the ringer is writing (entries' statuses): polling them would
    /// pull every line back and forth between the cores. A condition made true without a ring is
    /// therefore seen only once the spin ends. It also returns once `give_up()` holds or
    /// `deadline` (if any) has passed; no sleep outlasts the deadline.
    pub fn wait_until(
        &self,
        spins: u32,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
        mut give_up: impl FnMut() -> bool,
    ) {
        let mut give_up = move || give_up() || deadline.is_some_and(|d| Instant::now() >= d);
        if spins > 0 {
            let mut seen = self.rings.word().load(Ordering::Acquire);
            if ready() {
                return;
            }
            for _ in 0..spins {
                let now = self.rings.word().load(Ordering::Acquire);
                if now != seen {
                    seen = now;
                    if ready() {
                        return;
                    }
                }
                if give_up() {
                    return;
                }
                spin_hint();
            }
        }
        loop {
            if ready() || give_up() {
                return;
            }
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            // Pairs with the fence in `bump`: either the ringer sees us registered, or the
            // re-check below sees its condition.
            fence(Ordering::SeqCst);
            // Acquire: a ring counted in `seen` comes with its condition.
            let seen = self.rings.word().load(Ordering::Acquire);
            if ready() || give_up() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            // The time left, at least 1 ns (0 means "no timeout" to the futex).
            let timeout_ns = deadline.map_or(0, |d| {
                let left = d.saturating_duration_since(Instant::now()).as_nanos();
                u64::try_from(left).unwrap_or(u64::MAX).max(1)
            });
            self.rings.wait(seen, timeout_ns);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
