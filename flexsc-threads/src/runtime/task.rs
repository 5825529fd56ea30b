//! A green thread: its coroutine (stack and registers), its park state, and its identity.
//!
//! Its park protocol is in [`crate::park`]: a task is on at most one queue and resumed by one
//! carrier at a time.
//!
//! This is the runtime's context-switch module: the coroutine lives in an `UnsafeCell` that the
//! protocol above hands to exactly one carrier at a time.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use corosensei::{Coroutine, CoroutineResult, Yielder};
use flexsc_kmod::Syscall;

use crate::stack::Stack;

/// Why a green thread gave its carrier back.
#[derive(Debug)]
pub(crate) enum Suspend {
    /// Still runnable: put it at the back of the run queue.
    Yield,
    /// Park until unparked (or, with a deadline, until then).
    Park(Option<std::time::Instant>),
    /// Run this system call exception-less; resume with its result.
    Syscall(Syscall),
}

/// The coroutine type of every green thread: resumed with a syscall result (0 otherwise).
pub(crate) type GreenCoroutine = Coroutine<i64, Suspend, (), Stack>;

/// A green thread.
pub(crate) struct Task {
    id: u64,
    name: Option<String>,
    park: crate::park::ParkState,
    /// The carrier it last ran on (a wake-up goes back there, for locality).
    pub(crate) home: AtomicUsize,
    co: UnsafeCell<Option<GreenCoroutine>>,
    /// Its yielder, valid while the coroutine has started and not finished.
    yielder: AtomicU64,
    /// The value its next resume passes in (a syscall's result).
    resume_with: AtomicU64,
    /// Its stack's guard page, for the overflow diagnostic.
    guard: std::ops::Range<usize>,
}

// SAFETY: the coroutine cell is only touched by the one carrier the park protocol hands the task
// to (see the module doc); every other field is atomic or immutable.
unsafe impl Sync for Task {}
// SAFETY: as above; a suspended coroutine may be resumed on another carrier (its stack and
// registers move with it, and nothing in it is tied to the OS thread it last ran on).
unsafe impl Send for Task {}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl Task {
    pub(crate) fn new(
        id: u64,
        name: Option<String>,
        home: usize,
        guard: std::ops::Range<usize>,
        co: GreenCoroutine,
    ) -> Self {
        Self {
            guard,
            id,
            name,
            park: crate::park::ParkState::new(),
            home: AtomicUsize::new(home),
            co: UnsafeCell::new(Some(co)),
            yielder: AtomicU64::new(0),
            resume_with: AtomicU64::new(0),
        }
    }

    /// The green thread's id (unique in the process).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Its stack's guard page.
    pub(crate) fn guard(&self) -> std::ops::Range<usize> {
        self.guard.clone()
    }

    /// Its name, if it was given one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// An owning handle from a borrow (every task lives in an `Arc`, made in `Shared::spawn`).
    pub(crate) fn arc(&self) -> std::sync::Arc<Task> {
        let p = self as *const Task;
        // SAFETY: every Task is created inside an Arc and borrowed only through one (the carrier
        // holds it while the task runs); the strong count is bumped before the second Arc exists.
        unsafe {
            std::sync::Arc::increment_strong_count(p);
            std::sync::Arc::from_raw(p)
        }
    }

    /// Records the yielder; called by the coroutine itself when it starts.
    pub(crate) fn set_yielder(&self, y: &Yielder<i64, Suspend>) {
        self.yielder.store(y as *const _ as u64, Ordering::Relaxed);
    }

    /// Suspends the calling green thread (which must be this task) with `why`.
    pub(crate) fn suspend(&self, why: Suspend) -> i64 {
        let y = self.yielder.load(Ordering::Relaxed) as *const Yielder<i64, Suspend>;
        // SAFETY: the yielder was recorded by this task's coroutine when it started and lives on
        // its stack until it returns; we are running inside that coroutine (the caller found us
        // as the current task), so it is alive and ours.
        unsafe { (*y).suspend(why) }
    }

    /// Carrier: resumes the coroutine until it suspends or returns. Only the carrier that took
    /// the task from a run queue (or created it) may call this.
    pub(crate) fn resume(&self) -> CoroutineResult<Suspend, ()> {
        let input = self.resume_with.swap(0, Ordering::Relaxed) as i64;
        // SAFETY: the park protocol gives this carrier exclusive use of the coroutine until the
        // task suspends again (module doc).
        let co = unsafe { &mut *self.co.get() };
        co.as_mut()
            .expect("resumed a finished green thread")
            .resume(input)
    }

    /// Carrier: takes the finished coroutine out (to recycle its stack).
    pub(crate) fn take_finished(&self) -> Option<GreenCoroutine> {
        // SAFETY: called by the carrier that just saw the coroutine return: nobody else can
        // resume it any more.
        unsafe { (*self.co.get()).take() }
    }

    /// Carrier: sets the value the next resume passes in.
    pub(crate) fn set_resume_value(&self, v: i64) {
        self.resume_with.store(v as u64, Ordering::Relaxed);
    }

    /// Green side of park (see [`crate::park`]).
    pub(crate) fn take_notification(&self) -> bool {
        self.park.take_notification()
    }

    /// Carrier side of park (see [`crate::park`]).
    pub(crate) fn try_park(&self) -> bool {
        self.park.try_park()
    }

    /// Wakes the task: true if the caller must now schedule it (see [`crate::park`]).
    pub(crate) fn unpark(&self) -> bool {
        self.park.unpark()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // Dropping a suspended coroutine unwinds its stack, running its destructors; they must
        // not take whichever green thread is running here for their own.
        if let Some(co) = self.co.get_mut().take() {
            super::carrier::without_current(move || drop(co));
        }
    }
}
