//! The join protocol of a green thread, on its own so loom can check it (`loom-tests/`): a
//! one-shot cell for the result and a slot for the one joiner to wake.
//!
//! States: RUNNING, WAITING (the joiner left its waker and will park), DONE (the result is in).
//! The joiner writes its waker, then moves RUNNING -> WAITING; the finishing thread writes the
//! result, then swaps in DONE, and wakes the waker if it found WAITING. Each side makes one atomic
//! read-modify-write, and neither can miss the other: whichever comes second sees the first's
//! state and acts on it.

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(loom)]
use loom::sync::atomic::{AtomicU8, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, Ordering};

const RUNNING: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;

/// The real cell, with loom's closure API (zero cost).
#[cfg(not(loom))]
#[derive(Debug, Default)]
struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    fn new(v: T) -> Self {
        Self(std::cell::UnsafeCell::new(v))
    }
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A green thread's result and its joiner's waker `W`.
#[derive(Debug)]
pub struct JoinCell<T, W> {
    state: AtomicU8,
    result: UnsafeCell<Option<T>>,
    waiter: UnsafeCell<Option<W>>,
}

// SAFETY: the cells are written by one side before its release operation on `state` and read by
// the other only after acquiring it (module doc); T and W cross threads, so they must be Send.
unsafe impl<T: Send, W: Send> Sync for JoinCell<T, W> {}

impl<T, W> Default for JoinCell<T, W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, W> JoinCell<T, W> {
    /// RUNNING: no result, no joiner.
    pub fn new() -> Self {
        Self {
            state: AtomicU8::new(RUNNING),
            result: UnsafeCell::new(None),
            waiter: UnsafeCell::new(None),
        }
    }

    /// The finishing side, once: stores the result and returns the joiner's waker, if the joiner
    /// is waiting, for the caller to wake.
    pub fn complete(&self, value: T) -> Option<W> {
        // SAFETY: only the finishing side writes the result, once, and the joiner reads it only
        // after seeing DONE (released below).
        self.result.with_mut(|r| unsafe { *r = Some(value) });
        if self.state.swap(DONE, Ordering::AcqRel) == WAITING {
            // SAFETY: the joiner wrote its waker before releasing WAITING, which we acquired, and
            // touches it no more.
            self.waiter.with_mut(|w| unsafe { (*w).take() })
        } else {
            None
        }
    }

    /// Whether the result is in.
    pub fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    /// The joiner, once: leaves `waker` for the finishing side. False if the result is already in
    /// (then do not park: take it).
    pub fn wait_with(&self, waker: W) -> bool {
        if self.is_done() {
            return false;
        }
        // SAFETY: only the joiner writes the waker, before releasing WAITING; the finishing side
        // reads it only after acquiring WAITING.
        self.waiter.with_mut(|w| unsafe { *w = Some(waker) });
        self.state
            .compare_exchange(RUNNING, WAITING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The joiner: the result, if it is in (taken: a second call returns None).
    pub fn take(&self) -> Option<T> {
        if !self.is_done() {
            return None;
        }
        // SAFETY: DONE was released after the result was written, and we acquired it; the
        // finishing side writes nothing more.
        self.result.with_mut(|r| unsafe { (*r).take() })
    }
}
