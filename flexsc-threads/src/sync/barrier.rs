//! [`Barrier`]: a count and a generation under a [`Mutex`], and a [`Condvar`] to park on (the
//! generation tells a wake-up meant for this round from a spurious one or a later round's).

use std::fmt;

use super::{Condvar, Mutex};
use crate::shim::const_fn;

/// Lets `n` threads (green or OS) wait until all of them have arrived.
pub struct Barrier {
    state: Mutex<(usize, u64)>,
    cv: Condvar,
    n: usize,
}

/// What [`Barrier::wait`] returns: one caller per round is the leader.
#[derive(Debug, Clone, Copy)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// True for exactly one of the threads released by each round.
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier").field("n", &self.n).finish()
    }
}

impl Barrier {
    const_fn! {
        /// A barrier for `n` threads (0 and 1 never block).
        pub fn new(n: usize) -> Self {
            Self {
                state: Mutex::new((0, 0)),
                cv: Condvar::new(),
                n,
            }
        }
    }

    /// Parks until `n` threads have called `wait` in this round; the last one to arrive leads.
    pub fn wait(&self) -> BarrierWaitResult {
        let mut g = self.state.lock();
        g.0 += 1;
        if g.0 < self.n {
            let round = g.1;
            while g.1 == round {
                g = self.cv.wait(g);
            }
            BarrierWaitResult(false)
        } else {
            g.0 = 0;
            g.1 = g.1.wrapping_add(1);
            self.cv.notify_all();
            BarrierWaitResult(true)
        }
    }
}
