//! The pthread synchronisation objects, exported with the C ABI in glibc 2.36's object sizes and
//! static-initializer layouts: mutexes ([`mutex`]), condition variables ([`cond`]), read-write
//! locks ([`rwlock`]), spin locks ([`spin`]), barriers ([`barrier`]), unnamed semaphores
//! ([`sem`]), `pthread_once` ([`once`]) and their attribute objects ([`attr`]).
//!
//! glibc's own implementations sleep in the kernel's futex, which would block a green thread's
//! carrier (and every green thread queued on it); so the whole family is replaced, never part of
//! it. Every object keeps its state in 32-bit words inside the caller's memory, and waits on them
//! (`wait.rs`): a process-private object in `flexsc_threads::futex` (a green thread parks and its
//! carrier runs others; an OS thread parks in the same table, so green and OS threads can share
//! one object), a process-shared one in the kernel's futex, through an exception-less call on
//! green threads. An object needs no more initialisation than glibc's static initializers give
//! it (zeroed memory, plus the mutex type or rwlock kind where glibc has one).
//!
//! The exports are unversioned: under `LD_PRELOAD`, an unversioned definition binds every
//! versioned reference (`pthread_cond_wait@GLIBC_2.3.2` and `@GLIBC_2.2.5` alike).
//!
//! Errors are returned as POSIX error numbers, as pthread functions do; the `sem_*` functions
//! set `errno` and return -1. What is not supported fails clearly: robust mutexes and priority
//! protocols are refused by their attribute setters with `ENOTSUP` (and one line on stderr).

pub mod attr;
pub mod barrier;
pub mod cond;
pub mod mutex;
pub mod once;
pub mod rwlock;
pub mod sem;
pub mod spin;
mod time;
pub(crate) mod wait;

pub use attr::*;
pub use barrier::*;
pub use cond::*;
pub use mutex::*;
pub use once::*;
pub use rwlock::*;
pub use sem::*;
pub use spin::*;

use std::sync::atomic::{AtomicU32, Ordering};

use wait::Scope;

/// Views the C object at `p` as this crate's layout of it, `T` (which asserts, at compile time,
/// that `T` fits `C`'s size and alignment). `None` for a null pointer.
///
/// # Safety
/// `p` is null, or points to a `C` that stays valid for `'a`, whose bytes nobody writes except
/// through `T`'s atomics meanwhile.
unsafe fn view<'a, C, T>(p: *const C) -> Option<&'a T> {
    const {
        assert!(size_of::<C>() == size_of::<T>() && align_of::<C>() >= align_of::<T>());
    }
    // SAFETY: non-null, aligned (asserted above: `C`'s alignment is at least `T`'s) and valid by
    // the caller's contract.
    unsafe { p.cast::<T>().as_ref() }
}

/// As [`view`], for the exclusive access the attribute objects' setters have.
///
/// # Safety
/// `p` is null, or points to a `C` that stays valid for `'a` and that nobody else accesses
/// meanwhile.
unsafe fn view_mut<'a, C, T>(p: *mut C) -> Option<&'a mut T> {
    const {
        assert!(size_of::<C>() == size_of::<T>() && align_of::<C>() >= align_of::<T>());
    }
    // SAFETY: as in `view`, with exclusive access by the caller's contract.
    unsafe { p.cast::<T>().as_mut() }
}

/// A count of threads inside an object's blocking call, which its `destroy` waits to see drop
/// to zero: POSIX lets a program destroy a condition variable or barrier as soon as the threads
/// it released are released, while they may still be on their way out of the call.
///
/// The high bit says a destroyer is waiting: every thread leaving then wakes it (it sleeps on the
/// exact count it saw). Leaving is the last access a released thread makes to the object.
struct Inside<'a> {
    word: &'a AtomicU32,
    scope: Scope,
}

/// [`Inside`]'s bit: a destroyer waits for the count to drop to zero.
const DESTROYING: u32 = 1 << 31;

impl<'a> Inside<'a> {
    fn new(word: &'a AtomicU32, scope: Scope) -> Self {
        Self { word, scope }
    }

    /// Threads inside (without the destroyer's bit).
    fn count(&self) -> u32 {
        self.word.load(Ordering::SeqCst) & !DESTROYING
    }

    /// The caller enters (sequentially consistent, for the condition variable's signal).
    fn enter(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
    }

    /// The caller leaves; its last access to the object.
    fn leave(self) {
        let word: *const AtomicU32 = self.word;
        if self.word.fetch_sub(1, Ordering::Release) & DESTROYING != 0 {
            // Only the address is used: the destroyer may free the object once it sees zero.
            self.scope.wake(word, u32::MAX);
        }
    }

    /// Waits until every thread inside has left, then clears the count (for a later `init`'s
    /// object, or a static initializer's).
    fn drain(&self) {
        let mut w = self.word.fetch_or(DESTROYING, Ordering::Acquire) | DESTROYING;
        while w != DESTROYING {
            // Woken, or the count changed: look again (no deadline, so no time-out).
            let _ = self.scope.wait(self.word, w, None);
            w = self.word.load(Ordering::Acquire);
        }
        self.word.store(0, Ordering::Relaxed);
    }
}

/// The calling thread's identity for an object's owner field, never 0: its `pthread_t` (its
/// own TCB's address on a green thread). For a process-shared object the process id is mixed
/// in, since a forked child's threads have their parent's `pthread_t` values: the TCB is 64-byte
/// aligned below 2^47, so its bits 6..47 and a 22-bit pid fit in 63 bits.
fn identity(scope: Scope) -> u64 {
    // SAFETY: pthread_self has no preconditions (glibc's reads the thread pointer).
    let me = unsafe { libc::pthread_self() } as u64;
    match scope {
        Scope::Private => me,
        Scope::Shared => {
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() } as u64;
            (pid << 41) | (me >> 6)
        }
    }
}
