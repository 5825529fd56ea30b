//! [`Semaphore`]: a permit count and a wait list.
//!
//! No lost wake-up (the futex pattern): a waiter parks only if the count is still 0, checked under
//! the list lock; `release` adds permits first, then takes the list lock to wake. So a release
//! either finds the waiter queued or is seen by its check. A woken waiter competes for the permit
//! again (it may lose it to a newcomer, then it queues again: the count is never wrong, only the
//! order).

use std::fmt;
use std::time::{Duration, Instant};

use super::waitlist::{Wait, WaitList};
use crate::shim::{AtomicUsize, Ordering, const_fn, expired};

/// A counting semaphore whose waiters park.
pub struct Semaphore {
    permits: AtomicUsize,
    waiters: WaitList,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("permits", &self.available())
            .finish()
    }
}

impl Semaphore {
    const_fn! {
        /// A semaphore with `permits` available.
        pub fn new(permits: usize) -> Self {
            Self {
                permits: AtomicUsize::new(permits),
                waiters: WaitList::new(()),
            }
        }
    }

    /// Permits available now (a snapshot).
    pub fn available(&self) -> usize {
        self.permits.load(Ordering::Relaxed)
    }

    /// Takes a permit if one is available now.
    pub fn try_acquire(&self) -> bool {
        self.permits
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Takes a permit, parking until one is available.
    pub fn acquire(&self) {
        self.acquire_until(None);
    }

    /// Takes a permit, giving up after `timeout`: false if it did.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_until(Some(Instant::now() + timeout))
    }

    /// Takes a permit, giving up at `deadline`: false if it did.
    pub fn acquire_deadline(&self, deadline: Instant) -> bool {
        self.acquire_until(Some(deadline))
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.try_acquire() {
                return true;
            }
            if deadline.is_some_and(expired) {
                return false;
            }
            let w = self
                .waiters
                .wait_if(|_| self.permits.load(Ordering::Relaxed) == 0, deadline);
            if w == Wait::TimedOut {
                // Not woken: no release's wake was spent on us, so nothing to pass on.
                return false;
            }
        }
    }

    /// Returns `n` permits and wakes up to `n` waiters.
    pub fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.permits.fetch_add(n, Ordering::Release);
        let mut l = self.waiters.lock();
        for _ in 0..n {
            if !l.wake_front() {
                break;
            }
        }
    }
}
