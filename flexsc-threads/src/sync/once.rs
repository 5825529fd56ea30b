//! [`Once`]: a state word and a wait list. Callers that find the initializer running park until
//! it finishes; the futex pattern (park only if the word still says "running", checked under the
//! list lock; the runner changes the word, then takes the list lock to wake everyone) means no
//! caller misses the end.

use std::fmt;

use super::waitlist::WaitList;
use crate::shim::{AtomicU8, Ordering, const_fn};

const INCOMPLETE: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETE: u8 = 2;

/// Runs an initializer exactly once; concurrent callers park (green threads give up their carrier)
/// until it is done.
///
/// Not poisoned: if the initializer panics, the `Once` goes back to incomplete and the next
/// caller (or a parked one) runs its own initializer.
pub struct Once {
    state: AtomicU8,
    waiters: WaitList,
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("completed", &self.is_completed())
            .finish()
    }
}

impl Default for Once {
    fn default() -> Self {
        Self::new()
    }
}

/// Resets the `Once` and wakes the parked callers if the initializer unwinds.
struct Reset<'a>(&'a Once);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.finish(INCOMPLETE);
    }
}

impl Once {
    const_fn! {
        /// A `Once` that has not run.
        pub fn new() -> Self {
            Self {
                state: AtomicU8::new(INCOMPLETE),
                waiters: WaitList::new(()),
            }
        }
    }

    /// Whether an initializer has completed.
    pub fn is_completed(&self) -> bool {
        self.state.load(Ordering::Acquire) == COMPLETE
    }

    /// Runs `f` if no initializer has completed; otherwise (or if one is running) returns once
    /// one has completed. Everything `f` did is visible to every caller after it returns.
    pub fn call_once(&self, f: impl FnOnce()) {
        if self.is_completed() {
            return;
        }
        let mut f = Some(f);
        loop {
            match self.state.compare_exchange(
                INCOMPLETE,
                RUNNING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let reset = Reset(self);
                    (f.take().expect("runs at most once"))();
                    std::mem::forget(reset);
                    self.finish(COMPLETE);
                    return;
                }
                Err(COMPLETE) => return,
                Err(_) => {
                    self.waiters
                        .wait_if(|_| self.state.load(Ordering::Acquire) == RUNNING, None);
                }
            }
        }
    }

    fn finish(&self, to: u8) {
        self.state.store(to, Ordering::Release);
        self.waiters.wake_all();
    }
}
