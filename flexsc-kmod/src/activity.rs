//! Which syscall threads are active, and the activation protocol that keeps posted work from
//! being left with every syscall thread asleep (the `threads` backend's scheduler, paper 3.5-3.6).
//!
//! Each syscall core has at most one *active* thread (the one draining its pages), an idle
//! [`Doorbell`] its other threads sleep on, and a count of those sleepers. A poster publishes work
//! and then [`Activity::kick`]s: if no thread is active anywhere, it rings one idle thread. A
//! thread that runs out of work [`Activity::deactivate`]s and re-checks for work; if none raced
//! in, it sleeps in [`Activity::sleep_idle`] until its core is inactive and work is posted.
//!
//! The kick and the deactivation are store buffering (Dekker): the poster writes the work then
//! reads the active count, the thread writes the active count then reads the work, each side
//! with a SeqCst fence between its write and its read, so at least one of them sees the other:
//! either the poster sees no thread active and rings, or the thread sees the work and stays.
//!
//! Public (but hidden) only so that `loom-tests/` can model-check it; the scheduler in
//! `backend::threads` is its one real user.

use crate::doorbell::Doorbell;
use crate::sync::{AtomicBool, AtomicU32, AtomicUsize, Ordering, fence};

/// One syscall core's share of the activation state.
#[derive(Debug, Default)]
struct CoreActivity {
    /// Whether a thread is draining pages on this core (at most one: paper section 3.5).
    active: AtomicBool,
    /// Idle threads of this core sleep here.
    idle: Doorbell,
    /// Threads of this core sleeping (or about to) on `idle`.
    idle_threads: AtomicUsize,
}

/// The activation state of every syscall core: active flags, the total active count, and the
/// idle doorbells and idle-thread counts.
#[doc(hidden)]
#[derive(Debug)]
pub struct Activity {
    cores: Box<[CoreActivity]>,
    /// Threads currently active, over all cores.
    active: AtomicU32,
}

impl Activity {
    /// `cores` syscall cores (at least one), none active, nobody idle.
    pub fn new(cores: usize) -> Self {
        assert!(cores > 0, "at least one syscall core");
        Self {
            cores: (0..cores).map(|_| CoreActivity::default()).collect(),
            active: AtomicU32::new(0),
        }
    }

    /// The number of syscall cores.
    #[inline]
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// Wakes a syscall thread if none is active; call after publishing work. Pairs with
    /// [`Self::deactivate`]: the poster publishes work then reads `active`; the thread clears
    /// `active` then rereads the work, both behind a SeqCst fence, so one of them always sees
    /// the other.
    #[inline]
    pub fn kick(&self) {
        fence(Ordering::SeqCst);
        if self.active.load(Ordering::SeqCst) == 0 {
            // Paper 3.6: the first core on the list not already running a syscall thread, among
            // those with a thread free to answer: a core whose threads are all blocked in calls
            // would swallow the ring while another core's idle thread slept on. (A thread about
            // to sleep is counted in `idle_threads` before it rechecks for work, so either we see
            // it here or it sees the work.)
            let free = |s: &&CoreActivity| !s.active.load(Ordering::Relaxed);
            let core = self
                .cores
                .iter()
                .filter(free)
                .find(|s| s.idle_threads.load(Ordering::SeqCst) > 0)
                .or_else(|| self.cores.iter().find(free))
                .unwrap_or(&self.cores[0]);
            core.idle.ring_one();
        }
    }

    /// Tries to become the active thread of `core`.
    #[inline]
    pub fn activate(&self, core: usize) -> bool {
        let ok = self.cores[core]
            .active
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok();
        if ok {
            self.active.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }

    /// Gives up the active role of `core` (which the caller holds), then re-checks `has_work`;
    /// returns whether work arrived meanwhile (then the caller must make sure someone drains it).
    #[inline]
    pub fn deactivate(&self, core: usize, has_work: impl FnOnce() -> bool) -> bool {
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.cores[core].active.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        has_work()
    }

    /// Whether `core` has an active thread.
    #[inline]
    pub fn is_active(&self, core: usize) -> bool {
        self.cores[core].active.load(Ordering::SeqCst)
    }

    /// Sleeps as an idle thread of `core` until the core has no active thread and `has_work()`
    /// holds, or `give_up()` does. Counted in the core's idle threads (which [`Self::kick`]
    /// prefers to ring) from before the first check to the return.
    pub fn sleep_idle(
        &self,
        core: usize,
        mut has_work: impl FnMut() -> bool,
        give_up: impl FnMut() -> bool,
    ) {
        let slot = &self.cores[core];
        slot.idle_threads.fetch_add(1, Ordering::SeqCst);
        slot.idle
            .wait_until(0, None, || !self.is_active(core) && has_work(), give_up);
        slot.idle_threads.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether `core` has a thread sleeping (or about to) in [`Self::sleep_idle`].
    #[inline]
    pub fn has_idle_thread(&self, core: usize) -> bool {
        self.cores[core].idle_threads.load(Ordering::SeqCst) > 0
    }

    /// Wakes one idle thread of `core` (call after making its condition true).
    #[inline]
    pub fn wake_one_idle(&self, core: usize) {
        self.cores[core].idle.ring_one();
    }

    /// Wakes every idle thread of every core (shutdown: call after making `give_up` true).
    pub fn wake_all_idle(&self) {
        for s in self.cores.iter() {
            s.idle.ring();
        }
    }
}
