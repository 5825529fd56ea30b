//! Loom models of interrupting one entry's call (`flexsc_kmod::interrupt`, over the entry status
//! protocol of `flexsc_kmod::entry`): the poster interrupts, as `Poster::interrupt` does, while a
//! syscall thread claims the entry and runs its call as `execute_interruptible` does.
//!
//! What the models check: a call that blocks always ends (an interrupt landing between the
//! thread's claim and its `syscall` instruction is not lost: that would leave the thread asleep
//! with nobody to wake it, a deadlock loom reports); the poster takes one result, `-EINTR` or the
//! call's own, and `-EINTR` without running it if it answered the entry itself; no signal is left
//! pending once the thread is done with the call (it would interrupt the thread's next call); and
//! a request never applies to the entry's next posting.
//!
//! The kernel is modelled: the thread's pending signals are a count under a mutex (the kernel's
//! siglock), and a blocking call sleeps on a condvar until one is pending. The thread takes
//! delivery wherever a real signal can land relative to the stub: before it (the handler does
//! nothing; the stub's own test of the request follows), in its window between that test and the
//! `syscall` instruction (the handler moves the thread to the `-EINTR` exit if the request is
//! set), in the kernel (a blocked call ends `-EINTR`), after the call, and when it takes delivery
//! of pending signals after `Interrupt::leave`.
#![cfg(loom)]

use std::sync::atomic::AtomicBool as StdAtomicBool;
use std::sync::atomic::Ordering as StdOrdering;

use flexsc_kmod::entry::{SyscallEntry, status};
use flexsc_kmod::interrupt::Interrupt;
use loom::sync::atomic::Ordering;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

/// `EINTR` on Linux (this crate has no libc).
const EINTR: i64 = 4;
/// The result of a call that returns without blocking.
const RETURNED: i64 = 7;
/// The syscall thread's kernel thread id.
const TID: i32 = 42;

/// What the entry's call does in the kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    /// Sleeps until a signal ends it (a read on an empty pipe).
    Blocks,
    /// Returns at once.
    Returns,
}

/// The syscall thread's pending signals, as the kernel keeps them.
#[derive(Default)]
struct Kernel {
    pending: Mutex<u32>,
    wake: Condvar,
}

impl Kernel {
    /// tgkill: one more pending signal; wakes the thread if it sleeps in a call.
    fn signal(&self) {
        *self.pending.lock().unwrap() += 1;
        self.wake.notify_all();
    }

    /// Delivers the pending signals (their handlers run); returns whether there were any.
    fn deliver(&self) -> bool {
        std::mem::take(&mut *self.pending.lock().unwrap()) > 0
    }

    /// A blocking call: sleeps until a signal is pending, which ends it (`-EINTR`).
    fn block(&self) -> i64 {
        let mut pending = self.pending.lock().unwrap();
        while *pending == 0 {
            pending = self.wake.wait(pending).unwrap();
        }
        *pending = 0;
        -EINTR
    }

    fn pending(&self) -> u32 {
        *self.pending.lock().unwrap()
    }
}

/// One execution's entry, its interrupt state and the syscall thread's kernel state.
#[derive(Default)]
struct Shared {
    entry: SyscallEntry,
    intr: Interrupt,
    kernel: Kernel,
    /// Whether the thread issued the call: a ghost variable outside the model (loom runs every
    /// model thread on one OS thread, so a std atomic is exact, and reading it orders nothing).
    ran: StdAtomicBool,
}

/// The syscall thread: claims the entry (the poster may have answered it first) and runs the call
/// as `execute_interruptible` does, through the modelled stub.
fn executor(s: &Shared, call: Call) {
    let Some(claim) = s.entry.claim() else {
        return;
    };
    s.ran.store(true, StdOrdering::Relaxed);
    let word = s.intr.enter(TID);
    let ret = 'stub: {
        s.kernel.deliver(); // before the stub: its test below sees the request
        if word.load(Ordering::Relaxed) != 0 {
            break 'stub -EINTR; // the stub's own test
        }
        if s.kernel.deliver() && s.intr.requested() {
            break 'stub -EINTR; // in the window: the handler moves it to the exit
        }
        let ret = match call {
            Call::Blocks => s.kernel.block(),
            Call::Returns => RETURNED,
        };
        s.kernel.deliver(); // after the call: too late to change it
        ret
    };
    if s.intr.leave() {
        s.kernel.deliver(); // raw::take_pending_signals
    }
    claim.complete(ret);
}

/// `Poster::interrupt` with the `threads` backend: answer the entry if unclaimed, else request
/// and signal the runner.
fn interrupt(s: &Shared) {
    if let Some(claim) = s.entry.claim() {
        claim.complete(-EINTR);
        return;
    }
    if s.entry.status() == status::DONE {
        return;
    }
    s.intr.request(|tid| {
        assert_eq!(tid, TID);
        s.kernel.signal();
    });
}

/// One posting of `call`, interrupted `interrupts` times while a syscall thread runs it.
fn interrupted(name: &str, bound: usize, call: Call, interrupts: usize) {
    loom_tests::check(name, bound, move || {
        let s = Arc::new(Shared::default());
        s.entry.post(0, 0, [0; 6]);
        let s1 = s.clone();
        let exec = thread::spawn(move || executor(&s1, call));
        for _ in 0..interrupts {
            interrupt(&s);
        }
        exec.join().unwrap();
        let ret = s.entry.take().expect("the entry is not done");
        let ran = s.ran.load(StdOrdering::Relaxed);
        match call {
            Call::Blocks => assert_eq!(ret, -EINTR),
            Call::Returns => assert!(ret == -EINTR || ret == RETURNED, "{ret}"),
        }
        assert!(ran || ret == -EINTR, "answered {ret} without running");
        assert_eq!(s.kernel.pending(), 0, "a signal outlived its call");
    });
}

// Two threads and a handful of atomic operations each; preemption bound 3 puts the poster's
// request, fence and runner read between any two of the thread's steps, and runs in seconds.

#[test]
fn a_blocking_call_always_ends() {
    interrupted("blocks", 3, Call::Blocks, 1);
}

#[test]
fn a_returning_call_keeps_its_result_or_never_runs() {
    interrupted("returns", 3, Call::Returns, 1);
}

#[test]
fn interrupting_twice_is_harmless() {
    interrupted("twice", 3, Call::Blocks, 2);
}

/// A request made as the call completes (or after it) is reset when the poster takes the result,
/// so the entry's next posting, never interrupted, runs and keeps its result.
#[test]
fn a_request_does_not_outlive_its_posting() {
    loom_tests::check("reset", 3, || {
        let s = Arc::new(Shared::default());
        s.entry.post(0, 0, [0; 6]);
        let s1 = s.clone();
        let first = thread::spawn(move || executor(&s1, Call::Returns));
        interrupt(&s);
        first.join().unwrap();
        assert!(s.entry.take().is_some());
        // Poster::release: the request is reset before the slot is posted again.
        s.intr.reset();
        s.entry.post(0, 0, [0; 6]);
        let s2 = s.clone();
        let second = thread::spawn(move || executor(&s2, Call::Returns));
        second.join().unwrap();
        assert_eq!(s.entry.take(), Some(RETURNED));
        assert_eq!(s.kernel.pending(), 0, "a signal outlived its call");
    });
}
