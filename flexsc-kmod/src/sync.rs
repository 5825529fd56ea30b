//! The concurrency shim: every atomic, cell and futex the protocols use comes from here, so the
//! same code runs on real hardware and, under `--cfg loom`, inside loom's model checker
//! (see `loom-tests/`).
//!
//! The futex is the only primitive that is not an atomic: for real it is the Linux futex
//! (process-private), and under loom a mutex + condvar pair that gives the same guarantee that
//! matters to us: the compare of the word and the sleep are atomic with respect to a wake.

// Under loom only the protocol modules are built, and they use a subset of these.
#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering, fence,
};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering, fence,
};

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Hint to the CPU (or to loom's scheduler) that we are spinning.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Gives the CPU to another thread (or lets loom's scheduler run another), for waits that may
/// outlast a spin.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    crate::raw::sched_yield();
}

/// An `UnsafeCell` with loom's closure API, so loom can check every access for data races.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// An `UnsafeCell` with loom's closure API (the real one: zero cost).
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        Self(core::cell::UnsafeCell::new(v))
    }
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A 32-bit word threads can sleep on until it changes (Linux futex semantics).
#[derive(Debug, Default)]
pub(crate) struct Futex {
    word: AtomicU32,
    #[cfg(loom)]
    lock: loom::sync::Mutex<()>,
    #[cfg(loom)]
    cond: loom::sync::Condvar,
}

impl Futex {
    /// The word itself.
    #[inline]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Sleeps while the word equals `expected`; may return spuriously.
    /// `timeout_ns` of 0 means no timeout (ignored under loom).
    pub(crate) fn wait(&self, expected: u32, timeout_ns: u64) {
        #[cfg(not(loom))]
        crate::raw::futex_wait(&self.word, expected, timeout_ns);
        #[cfg(loom)]
        {
            let _ = timeout_ns;
            let g = self.lock.lock().unwrap();
            if self.word.load(Ordering::SeqCst) == expected {
                drop(self.cond.wait(g).unwrap());
            }
        }
    }

    /// Wakes up to `n` sleepers.
    pub(crate) fn wake(&self, n: u32) {
        #[cfg(not(loom))]
        crate::raw::futex_wake(&self.word, n);
        #[cfg(loom)]
        {
            let _g = self.lock.lock().unwrap();
            if n == 1 {
                self.cond.notify_one();
            } else {
                self.cond.notify_all();
            }
        }
    }
}
