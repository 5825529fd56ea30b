//! Interrupting one entry's call: what a signal does to a blocked system call, for one entry.
//!
//! [`crate::Poster::interrupt`] ends a call early. An entry nobody has claimed yet is claimed by
//! the poster itself and answered `-EINTR`, so its call never runs (the status protocol of
//! [`crate::entry`] decides that race). A claimed entry's call is interrupted by its executor's
//! means: io_uring cancels the request; a syscall thread gets a signal (no `SA_RESTART`), so a call
//! blocked in the kernel returns what an interrupted call returns (`-EINTR`, or a partial count).
//!
//! The signal alone has a window: the thread may have claimed the entry and not yet entered the
//! kernel, where the signal does nothing and the call would then block for good. This module's
//! [`Interrupt`], one per entry (off the ABI page), closes it, as musl closes the window of thread
//! cancellation:
//!
//! - The poster stores the *request* in the entry's word, then reads which thread (if any) is the
//!   entry's *runner*; if one is, it signals that thread.
//! - The thread stores itself as the runner, then issues the call through a small assembly stub
//!   (`raw::syscall6_interruptible`) that reads the word and returns `-EINTR` without entering
//!   the kernel if it is set. The signal handler, if the thread was between that read and the
//!   `syscall` instruction with the word set, moves it to the stub's `-EINTR` exit. Past the
//!   instruction, the kernel interrupts the call itself.
//!
//! Each side puts a SeqCst fence between its store and its load (store buffering, as in Dekker's
//! algorithm): either the stub sees the request, or the poster sees the runner and signals it.
//!
//! The signal must also never reach a *later* call of the same thread (a stray `-EINTR`): once its
//! call is over the thread clears the runner, fences, and reads the word; if a request is there,
//! it waits until the poster has finished signalling (the word leaves `SIGNALLING`) and then takes
//! delivery of whatever is pending with one system call, before it completes the entry. A poster
//! that reads the runner after the clear signals nobody. `loom-tests/tests/interrupt.rs` checks
//! both properties on this code.
//!
//! The request stays set until the poster frees the entry ([`Interrupt::reset`], when it takes the
//! result), so it never applies to a later posting of the entry.

use crate::sync::{AtomicI32, AtomicU32, Ordering, fence, spin_hint, yield_now};

/// No request.
const IDLE: u32 = 0;
/// Requested; the poster is not signalling.
const REQUESTED: u32 = 1;
/// Requested; the poster may be signalling the runner it read.
const SIGNALLING: u32 = 2;

/// The runner of an entry parked at a poller (the `threads` backend's poll arming): no thread
/// runs its call, so an interrupt wakes the poller instead of signalling a thread; the poller
/// then completes the entry with `-EINTR`.
pub const PARKED: i32 = -1;

/// One entry's interrupt state: the poster's request and the thread running the call.
#[derive(Debug, Default)]
pub struct Interrupt {
    /// `IDLE`, `REQUESTED` or `SIGNALLING`; the stub and the signal handler read it (non-zero:
    /// requested).
    request: AtomicU32,
    /// Kernel thread id of the syscall thread between [`Self::enter`] and [`Self::leave`] (0: none).
    runner: AtomicI32,
}

impl Interrupt {
    /// No request, no runner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Poster: asks the entry's call to end early. If a thread runs the call, `signal(tid)` is
    /// called to interrupt it. Never waits; repeating it is harmless.
    pub fn request(&self, signal: impl FnOnce(i32)) {
        self.request.store(SIGNALLING, Ordering::Relaxed);
        // Pairs with the fence in `enter` (and in `leave`): see the module documentation.
        fence(Ordering::SeqCst);
        let tid = self.runner.load(Ordering::Relaxed);
        if tid != 0 {
            signal(tid);
        }
        // Release: a runner that reads this in `leave` knows the signal is sent.
        self.request.store(REQUESTED, Ordering::Release);
    }

    /// Poster: forgets the request, once the entry's result is taken (before the entry is posted
    /// again; that post's Release store of SUBMITTED publishes this).
    pub fn reset(&self) {
        self.request.store(IDLE, Ordering::Relaxed);
    }

    /// Whether a request is set (what the stub and the signal handler test).
    pub fn requested(&self) -> bool {
        self.request.load(Ordering::Relaxed) != IDLE
    }

    /// Executor: thread `tid` is about to issue the entry's call (or [`PARKED`]: the entry waits
    /// at a poller, whose wake-up is the "signal"). Returns the word the stub and the signal
    /// handler test (non-zero: requested); the stub must read it only after this returns, and
    /// [`Self::leave`] must follow the call (or the parking).
    pub fn enter(&self, tid: i32) -> &AtomicU32 {
        debug_assert!(tid > 0 || tid == PARKED);
        self.runner.store(tid, Ordering::Relaxed);
        // Pairs with the poster's fence in `request`: either the stub's read sees the request or
        // the poster sees this runner.
        fence(Ordering::SeqCst);
        &self.request
    }

    /// Executor: the call is over. Returns whether a signal may have been sent for it: the caller
    /// must then take delivery of pending signals (one system call) before its next call.
    pub fn leave(&self) -> bool {
        self.runner.store(0, Ordering::Relaxed);
        // Pairs with the poster's fence: a poster that still read our id has stored its
        // SIGNALLING before, and we see it below.
        fence(Ordering::SeqCst);
        if self.request.load(Ordering::Relaxed) == IDLE {
            return false;
        }
        // The poster signals between two of its own stores: a short wait, never on a call.
        let mut spins = 0u32;
        while self.request.load(Ordering::Acquire) == SIGNALLING {
            if spins < 100 {
                spins += 1;
                spin_hint();
            } else {
                yield_now();
            }
        }
        true
    }
}
