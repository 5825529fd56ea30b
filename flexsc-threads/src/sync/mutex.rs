//! [`Mutex`] (std-like, with guards) and [`RawMutex`] (pthread-like: kinds, owners, errnos), both
//! on one lock word that parks green threads instead of blocking their carrier.
//!
//! The lock word (the classic futex mutex): 0 unlocked, 1 locked, 2 locked and maybe waiters.
//! - lock: CAS 0 -> 1 (the fast path). Contended: `swap(2)`; if that returned 0 we own it (with
//!   state 2, which at worst costs one needless wake at unlock). Otherwise park on the wait list
//!   *if the word is still 2*, checked under the list lock.
//! - unlock: `swap(0)`; if it was 2, wake the first waiter, which competes again (no direct
//!   hand-off: a woken green thread may take a while to be scheduled, and the lock should not sit
//!   idle meanwhile).
//!
//! No lost wake-up: a waiter parks only after seeing 2 under the list lock. An unlocker that
//! makes the word 0 afterwards saw 2 (every writer of 1 or 0 other than unlock is a CAS from 0,
//! and a waiter that failed to take the lock left 2 behind), so it takes the list lock after the
//! waiter released it and finds the waiter queued. An unlock whose wake took the list lock first
//! made its `swap(0)` visible to the waiter's check (the list lock orders them), so the waiter
//! does not park: it retries.
//!
//! No poisoning: a holder that panics unlocks as its guard drops, and the data is whatever it
//! left.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::owner_tag;
use super::waitlist::{Wait, WaitList};
use crate::shim::{AtomicU32, AtomicU64, Ordering, const_fn, expired, spin_hint};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// Spins before parking, on the chance the holder (on another carrier) is about to release.
const SPINS: u32 = 64;

/// The lock word and its waiters (module doc).
pub(crate) struct LockCore {
    state: AtomicU32,
    waiters: WaitList,
}

impl LockCore {
    const_fn! {
        pub(crate) fn new() -> Self {
            Self {
                state: AtomicU32::new(UNLOCKED),
                waiters: WaitList::new(()),
            }
        }
    }

    pub(crate) fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Locks, giving up at `deadline`: false if it did.
    pub(crate) fn lock_until(&self, deadline: Option<Instant>) -> bool {
        if self.try_lock() {
            return true;
        }
        self.lock_contended(deadline)
    }

    #[cold]
    fn lock_contended(&self, deadline: Option<Instant>) -> bool {
        // Spin only while there are no waiters (with waiters, FIFO wakes are coming anyway).
        for _ in 0..SPINS {
            match self.state.load(Ordering::Relaxed) {
                UNLOCKED if self.try_lock() => return true,
                LOCKED => spin_hint(),
                _ => break,
            }
        }
        loop {
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            // The word is 2 now: whoever holds the lock will wake a waiter, so giving up here
            // strands nobody.
            if deadline.is_some_and(expired) {
                return false;
            }
            let w = self.waiters.wait_if(
                |_| self.state.load(Ordering::Relaxed) == CONTENDED,
                deadline,
            );
            if w == Wait::TimedOut {
                // Not woken, so no wake was spent on us: nothing to pass on.
                return false;
            }
        }
    }

    pub(crate) fn unlock(&self) {
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            self.waiters.wake_one();
        }
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }
}

/// A mutual-exclusion lock whose waiters park (a green thread gives its carrier to others; an OS
/// thread blocks). Works across green threads of any runtime and plain OS threads alike.
///
/// Unlike std's, it is not poisoned: a holder that panics unlocks it as its guard drops.
pub struct Mutex<T: ?Sized> {
    core: LockCore,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands the data to one thread at a time, so sending and sharing the mutex is as
// safe as sending a `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: as above: `&Mutex<T>` only gives access to `T` under the lock.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    const_fn! {
        /// An unlocked mutex holding `value`.
        pub fn new(value: T) -> Self {
            Self {
                core: LockCore::new(),
                data: UnsafeCell::new(value),
            }
        }
    }

    /// The data, consuming the mutex.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, parking until the lock is free.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.core.lock_until(None);
        MutexGuard::new(self)
    }

    /// Locks if it is free now.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.core.try_lock().then(|| MutexGuard::new(self))
    }

    /// Locks, giving up after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<MutexGuard<'_, T>> {
        self.lock_deadline(Instant::now() + timeout)
    }

    /// Locks, giving up at `deadline`.
    pub fn lock_deadline(&self, deadline: Instant) -> Option<MutexGuard<'_, T>> {
        self.core
            .lock_until(Some(deadline))
            .then(|| MutexGuard::new(self))
    }

    /// Whether someone holds it (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.core.is_locked()
    }

    /// The data, through a unique borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Holds a [`Mutex`] locked; unlocks when dropped.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    lock: &'a Mutex<T>,
    /// Not `Send`, like std's guard (a plain `&Mutex` would make it `Sync` for any `Send` T).
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard shares only `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    fn new(lock: &'a Mutex<T>) -> Self {
        Self {
            lock,
            _not_send: PhantomData,
        }
    }

    /// Unlocks, returning the mutex (for [`Condvar`](super::Condvar), which relocks it).
    pub(crate) fn unlocked(self) -> &'a Mutex<T> {
        let m = self.lock;
        drop(self);
        m
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other guard exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock and is borrowed mutably: this is the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.core.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The pthread mutex types a [`RawMutex`] can behave as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MutexKind {
    /// `PTHREAD_MUTEX_NORMAL`: relocking by the owner deadlocks; unlocking is not checked.
    #[default]
    Normal,
    /// `PTHREAD_MUTEX_RECURSIVE`: the owner may relock; it unlocks as often as it locked.
    Recursive,
    /// `PTHREAD_MUTEX_ERRORCHECK`: relocking by the owner is `EDEADLK`, unlocking by anyone else
    /// `EPERM`.
    ErrorCheck,
}

/// A data-less mutex with pthread semantics (for the preload's `pthread_mutex_*`): kinds, owner
/// tracking (the green thread's id, or an id of the OS thread), errno results.
pub struct RawMutex {
    core: LockCore,
    kind: MutexKind,
    /// The holder's [`owner_tag`], 0 if none (not tracked for [`MutexKind::Normal`]). Only the
    /// holder writes its own tag, so a thread reading its own tag here really holds the lock.
    owner: AtomicU64,
    /// Recursion depth; touched only by the holder.
    count: AtomicU32,
}

impl fmt::Debug for RawMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMutex")
            .field("kind", &self.kind)
            .field("locked", &self.core.is_locked())
            .field("owner", &self.owner.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for RawMutex {
    fn default() -> Self {
        Self::new(MutexKind::Normal)
    }
}

impl RawMutex {
    const_fn! {
        /// An unlocked mutex of `kind`.
        pub fn new(kind: MutexKind) -> Self {
            Self {
                core: LockCore::new(),
                kind,
                owner: AtomicU64::new(0),
                count: AtomicU32::new(0),
            }
        }
    }

    /// Its kind.
    pub fn kind(&self) -> MutexKind {
        self.kind
    }

    /// Whether someone holds it (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.core.is_locked()
    }

    /// Locks, parking until it is free. `Err(EDEADLK)`: an error-check mutex the caller holds;
    /// `Err(EAGAIN)`: the recursion count would overflow.
    pub fn lock(&self) -> Result<(), i32> {
        self.acquire(|c| c.lock_until(None), 0)
    }

    /// Locks if it is free now (or the caller holds it recursively); `Err(EBUSY)` otherwise.
    pub fn try_lock(&self) -> Result<(), i32> {
        self.acquire(LockCore::try_lock, libc::EBUSY)
    }

    /// Locks, giving up at `deadline` with `Err(ETIMEDOUT)` (`pthread_mutex_timedlock`).
    pub fn lock_deadline(&self, deadline: Instant) -> Result<(), i32> {
        self.acquire(|c| c.lock_until(Some(deadline)), libc::ETIMEDOUT)
    }

    /// As [`lock_deadline`](Self::lock_deadline), `timeout` from now.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<(), i32> {
        self.lock_deadline(Instant::now() + timeout)
    }

    fn acquire(&self, take: impl FnOnce(&LockCore) -> bool, fail: i32) -> Result<(), i32> {
        if self.kind == MutexKind::Normal {
            return if take(&self.core) { Ok(()) } else { Err(fail) };
        }
        let me = owner_tag();
        if self.owner.load(Ordering::Relaxed) == me {
            return match self.kind {
                MutexKind::Recursive => {
                    let n = self.count.load(Ordering::Relaxed);
                    let n = n.checked_add(1).ok_or(libc::EAGAIN)?;
                    self.count.store(n, Ordering::Relaxed);
                    Ok(())
                }
                _ => Err(libc::EDEADLK),
            };
        }
        if !take(&self.core) {
            return Err(fail);
        }
        self.owner.store(me, Ordering::Relaxed);
        self.count.store(1, Ordering::Relaxed);
        Ok(())
    }

    /// Unlocks (once, for a recursive mutex). `Err(EPERM)`: a recursive or error-check mutex the
    /// caller does not hold. A normal mutex is not checked (as in glibc).
    pub fn unlock(&self) -> Result<(), i32> {
        if self.kind == MutexKind::Normal {
            self.core.unlock();
            return Ok(());
        }
        if self.owner.load(Ordering::Relaxed) != owner_tag() {
            return Err(libc::EPERM);
        }
        let n = self.count.load(Ordering::Relaxed) - 1;
        self.count.store(n, Ordering::Relaxed);
        if n == 0 {
            self.owner.store(0, Ordering::Relaxed);
            self.core.unlock();
        }
        Ok(())
    }

    /// For a condvar wait: releases the lock entirely and returns the recursion depth to restore
    /// with [`relock_depth`](Self::relock_depth). `Err(EPERM)` if checked and not held.
    pub(crate) fn unlock_all(&self) -> Result<u32, i32> {
        if self.kind == MutexKind::Normal {
            self.core.unlock();
            return Ok(1);
        }
        if self.owner.load(Ordering::Relaxed) != owner_tag() {
            return Err(libc::EPERM);
        }
        let n = self.count.swap(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Relaxed);
        self.core.unlock();
        Ok(n)
    }

    /// Relocks after [`unlock_all`](Self::unlock_all), restoring the depth.
    pub(crate) fn relock_depth(&self, depth: u32) {
        self.core.lock_until(None);
        if self.kind != MutexKind::Normal {
            self.owner.store(owner_tag(), Ordering::Relaxed);
            self.count.store(depth, Ordering::Relaxed);
        }
    }
}
