//! [`RwLock`]: a reader-writer lock whose waiters park.
//!
//! The state (reader count, writer flag, queued writers) lives under the wait list's lock with the
//! FIFO of waiters, and a release *hands the lock over*: the waker updates the state on the
//! waiters' behalf before waking them, so a woken thread already holds the lock and never has to
//! compete again (no barging, nothing to lose: a waiter is queued and granted under one lock).
//!
//! Writer-preferring: a new reader queues as soon as any writer waits, so a stream of readers
//! cannot starve writers. Waiters are served in arrival order (a run of readers at the front is
//! admitted together), so writers cannot starve readers either.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use super::waitlist::WaitList;
use crate::shim::const_fn;

const READ: u8 = 0;
const WRITE: u8 = 1;

#[derive(Default)]
struct State {
    readers: usize,
    writer: bool,
    writers_waiting: usize,
}

/// A reader-writer lock that parks green threads (and blocks OS threads). Not poisoned: a holder
/// that panics releases it as its guard drops.
pub struct RwLock<T: ?Sized> {
    q: WaitList<State>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&mut T` to one thread at a time (needs `T: Send`) and `&T` to many
// at once (needs `T: Sync`), like std's.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    const_fn! {
        /// An unlocked lock holding `value`.
        pub fn new(value: T) -> Self {
            Self {
                q: WaitList::new(State {
                    readers: 0,
                    writer: false,
                    writers_waiting: 0,
                }),
                data: UnsafeCell::new(value),
            }
        }
    }

    /// The data, consuming the lock.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access, parking while a writer holds or waits for the lock.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        if let Some(g) = self.try_read() {
            return g;
        }
        let still = |s: &mut State| {
            if !s.writer && s.writers_waiting == 0 {
                s.readers += 1;
                return false;
            }
            true
        };
        // Either way it is ours: taken under the lock, or granted by the waker, which counted us
        // in `readers`.
        self.q.wait_tagged(READ, still, None);
        RwLockReadGuard::new(self)
    }

    /// Shared access if no writer holds or waits for the lock now.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let mut l = self.q.lock();
        let s = l.state();
        (!s.writer && s.writers_waiting == 0).then(|| {
            s.readers += 1;
            RwLockReadGuard::new(self)
        })
    }

    /// Exclusive access, parking until every holder is gone (and earlier waiters served).
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let still = |s: &mut State| {
            // Free implies nobody queued: a release with waiters hands the lock over at once.
            if !s.writer && s.readers == 0 {
                s.writer = true;
                return false;
            }
            s.writers_waiting += 1;
            true
        };
        // Either way it is ours: taken under the lock, or granted by the waker, which set
        // `writer` for us.
        self.q.wait_tagged(WRITE, still, None);
        RwLockWriteGuard::new(self)
    }

    /// Exclusive access if the lock is free now.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let mut l = self.q.lock();
        let s = l.state();
        (!s.writer && s.readers == 0).then(|| {
            s.writer = true;
            RwLockWriteGuard::new(self)
        })
    }

    /// The data, through a unique borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn read_unlock(&self) {
        let mut l = self.q.lock();
        let s = l.state();
        s.readers -= 1;
        if s.readers == 0 {
            Self::grant(&mut l);
        }
    }

    fn write_unlock(&self) {
        let mut l = self.q.lock();
        l.state().writer = false;
        Self::grant(&mut l);
    }

    /// The lock just became free: hand it to the first waiter, or to the run of readers at the
    /// front of the queue.
    fn grant(l: &mut super::waitlist::Locked<'_, State>) {
        match l.front_tag() {
            Some(WRITE) => {
                let s = l.state();
                s.writer = true;
                s.writers_waiting -= 1;
                l.wake_front();
            }
            Some(_) => {
                while l.front_tag() == Some(READ) {
                    l.state().readers += 1;
                    l.wake_front();
                }
            }
            None => {}
        }
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Shared access to an [`RwLock`]; released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard shares only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<'a, T: ?Sized> RwLockReadGuard<'a, T> {
    fn new(lock: &'a RwLock<T>) -> Self {
        Self {
            lock,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while `readers` counts it, so no writer exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Exclusive access to an [`RwLock`]; released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard shares only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<'a, T: ?Sized> RwLockWriteGuard<'a, T> {
    fn new(lock: &'a RwLock<T>) -> Self {
        Self {
            lock,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard exists only while `writer` is set for it: no other guard exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
