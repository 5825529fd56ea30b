//! A green thread's interrupt mark and the handshake that keeps an interrupt from missing a call
//! being posted (see `interrupt.rs`).
//!
//! Dekker's handshake: the interrupter sets the mark, then (after a `SeqCst` fence) reads the
//! carrier the green thread's call is in flight on; the carrier records that carrier, then
//! (after a fence) reads the mark. At least one of them sees the other, so a call posted around an
//! interrupt is always interrupted: by its carrier at once, or on the interrupter's request.
//! (Fences rather than `SeqCst` accesses: what loom models exactly.)

use crate::shim::{AtomicBool, AtomicUsize, Ordering, fence};

/// See the module docs.
#[derive(Debug, Default)]
pub struct InterruptMark {
    marked: AtomicBool,
    /// The carrier index + 1 while a call of this green thread is in flight; 0 otherwise.
    in_call: AtomicUsize,
}

impl InterruptMark {
    /// Interrupter side: sets the mark; returns the carrier whose call in flight must then be
    /// interrupted on request, if one is.
    pub fn mark(&self) -> Option<usize> {
        self.marked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.in_flight_on()
    }

    /// Whether the mark is set (it stays set).
    pub fn is_set(&self) -> bool {
        self.marked.load(Ordering::Acquire)
    }

    /// The green thread itself: takes the mark (true once per mark).
    pub fn take(&self) -> bool {
        // A load first: the usual answer (no mark) costs no locked instruction.
        self.marked.load(Ordering::Relaxed) && self.marked.swap(false, Ordering::AcqRel)
    }

    /// Carrier side, after posting a call of this green thread on carrier `c`: true if the call
    /// must be interrupted at once (the mark was set before the carrier could be asked).
    pub fn posted_on(&self, c: usize) -> bool {
        self.in_call.store(c + 1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.marked.load(Ordering::Relaxed)
    }

    /// Carrier side: the call completed (its result was harvested).
    pub fn completed(&self) {
        self.in_call.store(0, Ordering::Relaxed);
    }

    /// The carrier the green thread's call is in flight on, if any.
    pub fn in_flight_on(&self) -> Option<usize> {
        self.in_call.load(Ordering::Relaxed).checked_sub(1)
    }
}
