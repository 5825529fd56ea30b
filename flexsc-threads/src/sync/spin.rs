//! [`Spin`]: a test-and-test-and-set lock for very short critical sections. It spins briefly,
//! then yields (a green thread yields its carrier, so the holder, maybe queued on the same
//! carrier, can run and release it).

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::shim::{AtomicBool, Ordering, const_fn, spin_hint, yield_now};

/// Spins before each yield.
const SPINS: u32 = 100;

/// A spin lock that yields instead of spinning forever.
pub struct Spin<T: ?Sized> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands the data to one thread at a time, like a mutex.
unsafe impl<T: ?Sized + Send> Send for Spin<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send> Sync for Spin<T> {}

impl<T> Spin<T> {
    const_fn! {
        /// An unlocked spin lock holding `value`.
        pub fn new(value: T) -> Self {
            Self {
                locked: AtomicBool::new(false),
                data: UnsafeCell::new(value),
            }
        }
    }

    /// The data, consuming the lock.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for Spin<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized> Spin<T> {
    /// Locks if it is free now.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            // Lazily: a guard built for a failed attempt would unlock someone else's lock.
            .then(|| SpinGuard {
                lock: self,
                _not_send: PhantomData,
            })
    }

    /// Locks: spins, then yields, until free.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            // Spin on a plain load (no cache-line ping-pong) until it looks free.
            for _ in 0..SPINS {
                if !self.locked.load(Ordering::Relaxed) {
                    break;
                }
                spin_hint();
            }
            if self.locked.load(Ordering::Relaxed) {
                yield_now();
            }
        }
    }

    /// The data, through a unique borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Spin<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Spin");
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Holds a [`Spin`] locked; unlocks when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SpinGuard<'a, T: ?Sized> {
    lock: &'a Spin<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard shares only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for SpinGuard<'_, T> {}

impl<T: ?Sized> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock: no other guard exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}
