//! The concurrency shim: every atomic, lock and park that the run queue, the sync primitives and
//! the futex table use comes from here, so the same code runs for real and, under `--cfg loom`,
//! inside loom's model checker (`loom-tests/`), as `flexsc-kmod/src/sync.rs` does for the kernel
//! side.
//!
//! For real, these are std's atomics and mutex and the runtime's wait-list park (a green thread
//! gives its carrier to others, an OS thread blocks): plain re-exports, so the shim costs nothing.
//! Under loom every waiter is a loom thread (loom's `park` and `Thread::unpark`), and time is
//! abstracted: a deadline has always passed ([`expired`]), so a timed wait looks once for its
//! wake-up and then gives up, racing its withdrawal against any wake (the interleavings in which
//! a timeout can go wrong).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

// Per-thread statics: per loom thread under loom, whose threads all run on one OS thread.
#[cfg(loom)]
pub(crate) use loom::thread_local;
#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(not(loom))]
pub(crate) use crate::runtime::{Sleeper, Woke, current_id, wait, yield_now};

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// std's `UnsafeCell` with loom's access API, so one body serves both.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// A cell holding `v`.
    pub(crate) const fn new(v: T) -> Self {
        Self(std::cell::UnsafeCell::new(v))
    }

    /// Runs `f` on a pointer to the contents (the caller rules out aliasing, as with std's).
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

use std::time::Instant;

/// Declares a `const fn` for real and a plain `fn` under loom, whose atomics and locks have no
/// const constructors: one body either way.
macro_rules! const_fn {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        $(#[$attr])*
        #[cfg(not(loom))]
        $vis const fn $($rest)*

        $(#[$attr])*
        #[cfg(loom)]
        $vis fn $($rest)*
    };
}
pub(crate) use const_fn;

/// Whether `deadline` has passed.
#[cfg(not(loom))]
#[inline]
pub(crate) fn expired(deadline: Instant) -> bool {
    Instant::now() >= deadline
}

/// Whether `deadline` has passed: always, under loom (module doc).
#[cfg(loom)]
pub(crate) fn expired(_deadline: Instant) -> bool {
    true
}

/// Whether the calling green thread has an interrupt pending (never under loom, where no
/// runtime exists).
#[cfg(not(loom))]
pub(crate) fn interrupted() -> bool {
    crate::runtime::interrupted()
}

/// Whether the calling green thread has an interrupt pending: never, under loom.
#[cfg(loom)]
pub(crate) fn interrupted() -> bool {
    false
}

/// Hint to the CPU (or to loom's scheduler) that we are spinning.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// One round of a spin that may outlast its holder's time slice: a CPU hint for the first
/// rounds, then a yield of the kernel thread (never interposed: the holder runs on another
/// one); under loom a yield to the model's scheduler.
#[inline]
pub(crate) fn spin_round(rounds: &mut u32) {
    #[cfg(not(loom))]
    {
        *rounds += 1;
        if *rounds < LOCK_SPINS {
            std::hint::spin_loop();
        } else {
            flexsc_kmod::raw::sched_yield();
        }
    }
    #[cfg(loom)]
    {
        let _ = rounds;
        loom::thread::yield_now();
    }
}

/// The wait lists' lock: for real a spin lock (held for a few instructions, never across a
/// park, so a waiter spins briefly and then yields the CPU to a holder that was preempted);
/// under loom a loom mutex, as loom cannot explore spin loops (every spin is a branch).
pub(crate) struct ListLock {
    #[cfg(not(loom))]
    locked: AtomicBool,
    #[cfg(loom)]
    mutex: Mutex<()>,
}

/// Holds a [`ListLock`]; releases it when dropped.
pub(crate) struct ListGuard<'a> {
    #[cfg(not(loom))]
    locked: &'a AtomicBool,
    #[cfg(loom)]
    _guard: MutexGuard<'a, ()>,
}

/// Spins on a held [`ListLock`] before yielding the CPU.
#[cfg(not(loom))]
const LOCK_SPINS: u32 = 100;

impl ListLock {
    const_fn! {
        /// Unlocked.
        pub(crate) fn new() -> Self {
            Self {
                #[cfg(not(loom))]
                locked: AtomicBool::new(false),
                #[cfg(loom)]
                mutex: Mutex::new(()),
            }
        }
    }

    /// Takes the lock.
    #[cfg(not(loom))]
    pub(crate) fn lock(&self) -> ListGuard<'_> {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                // The holder runs on another kernel thread (nobody parks holding it): give it
                // the CPU, even from a green thread (no green switch inside a list op).
                spin_round(&mut spins);
            }
        }
        ListGuard {
            locked: &self.locked,
        }
    }

    /// Takes the lock.
    #[cfg(loom)]
    pub(crate) fn lock(&self) -> ListGuard<'_> {
        ListGuard {
            _guard: self.mutex.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

#[cfg(not(loom))]
impl Drop for ListGuard<'_> {
    fn drop(&mut self) {
        self.locked.store(false, Ordering::Release);
    }
}

// Under loom a wait-list waiter is a loom thread with a green thread's park state: the wake-up
// under the list lock makes the state transition (as `Task::wake` does), and only a transition
// out of WAITING is followed, after the lock, by the loom unpark that stands for queueing the
// green thread on its carrier.
#[cfg(loom)]
loom::thread_local! {
    static PARK: std::sync::Arc<crate::park::ParkState> = std::sync::Arc::default();
}

/// A wait-list waiter: the model's stand-in for the runtime's `Sleeper`.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Sleeper {
    park: std::sync::Arc<crate::park::ParkState>,
    thread: loom::thread::Thread,
}

#[cfg(loom)]
impl Sleeper {
    /// The calling loom thread.
    pub(crate) fn current() -> Self {
        Self {
            park: PARK.with(|p| p.clone()),
            thread: loom::thread::current(),
        }
    }

    /// Unparks the waiter's park state under the list lock, as `Task::wake` does.
    ///
    /// # Safety
    /// None needed under loom; unsafe to match the runtime's `Sleeper::wake`.
    pub(crate) unsafe fn wake(&self) -> Woke {
        use crate::park::Unparked;
        Woke((self.park.unpark() != Unparked::Running).then(|| self.thread.clone()))
    }
}

/// A wake-up begun under a wait list's lock: the thread to "queue" (unpark), if it was waiting.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct Woke(Option<loom::thread::Thread>);

#[cfg(loom)]
impl Woke {
    /// Unparks the thread if the wake-up took it out of WAITING.
    pub(crate) fn finish(self) {
        if let Some(t) = self.0 {
            t.unpark();
        }
    }
}

/// A green thread's wait, on a loom thread: consume a notification, else suspend as WAITING and
/// sleep until a wake-up's `finish`. A timed wait's deadline passes at once (module doc): its
/// timer fires right after the park, unparking like any waker.
#[cfg(loom)]
pub(crate) fn wait(deadline: Option<Instant>) {
    use crate::park::{Park, Unparked};
    let park = PARK.with(|p| p.clone());
    if park.take_notification() || !park.try_park(Park::Waiting) {
        return;
    }
    // Only a transition out of WAITING (by a waker or by the timer) resumes us: one unpark each.
    if deadline.is_some() && park.unpark() == Unparked::Waiting {
        return; // the timer woke us
    }
    loom::thread::park();
}

/// No loom thread is a green thread.
#[cfg(loom)]
pub(crate) fn current_id() -> Option<u64> {
    None
}

#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
