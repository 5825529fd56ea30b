//! [`Condvar`]: a sequence number and a wait list (the futex condvar).
//!
//! A waiter reads `seq` *before* unlocking the mutex, then parks only if `seq` is unchanged,
//! checked under the list lock. A notifier takes the list lock, bumps `seq` and wakes.
//!
//! No lost notification: a notification that matters to this waiter is one made after the waiter
//! unlocked the mutex (a notifier holding the mutex is ordered after our unlock, so after our read
//! of `seq`). Its bump is therefore after our read. If the notifier takes the list lock after our
//! check-and-enqueue, it finds us queued; if before, its bump precedes our check, which sees `seq`
//! changed and does not park. Either way we return. (A notification racing
//! with the read may also make us return: a spurious wake-up, which callers allow for.)
//!
//! A timed-out waiter that a notifier dequeued in the same instant reports "woken" (see the wait
//! list), so `notify_one` is never spent on a waiter that then claims it timed out.

use std::fmt;
use std::time::{Duration, Instant};

use super::mutex::{MutexGuard, RawMutex};
use super::waitlist::{Locked, Wait, WaitList};
use crate::shim::{AtomicU64, Ordering, const_fn};

/// A condition variable for [`Mutex`](super::Mutex) (and [`RawMutex`]) that parks green
/// threads. Spurious wake-ups are possible, lost notifications are not.
pub struct Condvar {
    seq: AtomicU64,
    waiters: WaitList,
}

/// Whether a timed condvar wait returned because its time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait timed out (it was not notified).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

impl Default for Condvar {
    fn default() -> Self {
        Self::new()
    }
}

impl Condvar {
    const_fn! {
        /// A condvar nobody waits on.
        pub fn new() -> Self {
            Self {
                seq: AtomicU64::new(0),
                waiters: WaitList::new(()),
            }
        }
    }

    /// Parks unless `seq` moved on from `seen` (read before the caller's mutex was released).
    /// True if it timed out.
    fn sleep(&self, seen: u64, deadline: Option<Instant>) -> bool {
        let w = self
            .waiters
            .wait_if(|_| self.seq.load(Ordering::Relaxed) == seen, deadline);
        w == Wait::TimedOut
    }

    /// Unlocks the guard's mutex, parks until notified (or spuriously), relocks.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        // Read before unlocking: see the module doc.
        let seen = self.seq.load(Ordering::Relaxed);
        let m = guard.unlocked();
        self.sleep(seen, None);
        m.lock()
    }

    /// Waits while `condition` holds.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// As [`wait`](Self::wait), giving up after `timeout`.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        self.wait_deadline(guard, Instant::now() + timeout)
    }

    /// As [`wait`](Self::wait), giving up at `deadline`. The mutex is relocked either way.
    pub fn wait_deadline<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Instant,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let seen = self.seq.load(Ordering::Relaxed);
        let m = guard.unlocked();
        let timed_out = self.sleep(seen, Some(deadline));
        (m.lock(), WaitTimeoutResult(timed_out))
    }

    /// Waits while `condition` holds, giving up after `timeout`; timed out if it still holds.
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let deadline = Instant::now() + timeout;
        while condition(&mut *guard) {
            let (g, r) = self.wait_deadline(guard, deadline);
            guard = g;
            if r.timed_out() {
                let still = condition(&mut *guard);
                return (guard, WaitTimeoutResult(still));
            }
        }
        (guard, WaitTimeoutResult(false))
    }

    /// `pthread_cond_(timed)wait` on a [`RawMutex`] the caller holds: releases it entirely (all
    /// recursion levels), parks until notified or `deadline`, relocks it (restoring the depth).
    /// `Ok(true)` if it timed out; `Err(EPERM)` if the mutex is checked and not held.
    pub fn wait_raw(&self, m: &RawMutex, deadline: Option<Instant>) -> Result<bool, i32> {
        let seen = self.seq.load(Ordering::Relaxed);
        let depth = m.unlock_all()?;
        let timed_out = self.sleep(seen, deadline);
        m.relock_depth(depth);
        Ok(timed_out)
    }

    /// Wakes one waiter, if any.
    pub fn notify_one(&self) {
        let mut l = self.waiters.lock();
        self.bump(&mut l);
        l.wake_front();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        let mut l = self.waiters.lock();
        self.bump(&mut l);
        l.wake_all();
    }

    /// Moves `seq` on. Every writer holds the list lock (the `_locked` witness), so a plain load
    /// and store suffice: no locked read-modify-write.
    fn bump(&self, _locked: &mut Locked<'_, ()>) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
    }
}
