//! A process-wide table of the library's (green threads by `pthread_t`, their signal or
//! cancellation state) that a fork child starts afresh: the parent's threads are not the
//! child's, and the table's lock may have been held by one of them at the fork, so the child
//! leaks the old table and takes a new, empty one.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard};

/// See the module docs. Empty (`None`) until first filled.
pub(crate) struct ForkTable<T: 'static> {
    first: Mutex<Option<T>>,
    /// The table in use: null for `first`, else a fork child's, leaked, never freed.
    current: AtomicPtr<Mutex<Option<T>>>,
}

impl<T> ForkTable<T> {
    /// An empty table (for a `static`).
    pub(crate) const fn new() -> Self {
        Self {
            first: Mutex::new(None),
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The table in use, locked (a poisoned lock is taken over: the table stays consistent
    /// between statements). Call it as the library's own code (`InLib`): its lock is std's.
    pub(crate) fn lock(&'static self) -> MutexGuard<'static, Option<T>> {
        let p = self.current.load(Ordering::Acquire);
        let table = if p.is_null() {
            &self.first
        } else {
            // SAFETY: a non-null `current` is a leaked Box from `reset_after_fork`, never freed.
            unsafe { &*p }
        };
        table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// In a fork child: a fresh, empty table (the old one is leaked).
    pub(crate) fn reset_after_fork(&self) {
        let fresh = Box::into_raw(Box::new(Mutex::new(None)));
        self.current.store(fresh, Ordering::Release);
    }
}
