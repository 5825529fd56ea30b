//! The wait queue every primitive (and each bucket of the futex table) parks on: a FIFO of
//! [`Unparker`]s, each with a tag saying what it waits for, plus whatever state the primitive
//! wants edited atomically with it, behind a std mutex that is held only for those edits (never
//! across a park, and unparks happen after it is released).
//!
//! The protocol that makes wake-ups impossible to lose: a waiter is dequeued only by a waker, and
//! the waker marks it `woken` *while holding the list lock*. So a waiter whose park times out
//! takes the lock and tries to remove itself: if it is still queued, nobody woke it (it timed
//! out, and no wake was spent on it); if it is gone, a waker took it and the wake is its own
//! (it must act as woken, not as timed out, or the wake would be lost).
//!
//! Model-checked through the primitives built on it, under loom (`loom-tests/tests/mutex.rs`,
//! `condvar.rs`, `futex.rs`).

use std::collections::VecDeque;
use std::time::Instant;

use crate::shim::{
    Arc, AtomicBool, Mutex, MutexGuard, Ordering, Unparker, const_fn, expired, park, park_deadline,
};

/// One parked thread.
struct Waiter<K> {
    /// Set under the list lock by the waker that dequeued it.
    woken: AtomicBool,
    /// What the primitive queued it for (reader or writer, an address and bitset...).
    tag: K,
    unparker: Unparker,
}

/// A queued waiter's handle on its place in a [`WaitList`].
pub(crate) struct Ticket<K = u8>(Arc<Waiter<K>>);

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The condition no longer held when checked under the lock: never parked.
    Changed,
    /// Dequeued by a waker.
    Woken,
    /// The deadline passed first (and no wake was spent on us).
    TimedOut,
}

struct Inner<S, K> {
    state: S,
    queue: VecDeque<Arc<Waiter<K>>>,
}

/// A FIFO of parked threads, each tagged with a `K`, with state `S` edited under the same lock.
pub(crate) struct WaitList<S = (), K = u8> {
    inner: Mutex<Inner<S, K>>,
}

impl<S: Default, K> Default for WaitList<S, K> {
    fn default() -> Self {
        Self::new(S::default())
    }
}

impl<S, K> WaitList<S, K> {
    const_fn! {
        /// An empty list.
        pub(crate) fn new(state: S) -> Self {
            Self {
                inner: Mutex::new(Inner {
                    state,
                    queue: VecDeque::new(),
                }),
            }
        }
    }

    /// Takes the list lock (short: no parking while it is held).
    pub(crate) fn lock(&self) -> Locked<'_, S, K> {
        Locked {
            // Every edit under this lock leaves the queue consistent, so a panic in a caller's
            // closure does not make it unusable: ignore poisoning.
            guard: Some(self.inner.lock().unwrap_or_else(|e| e.into_inner())),
            wake: ToWake::default(),
        }
    }

    /// [`wait_if`](WaitList::wait_if), queued with `tag`.
    pub(crate) fn wait_tagged(
        &self,
        tag: K,
        still: impl FnOnce(&mut S) -> bool,
        deadline: Option<Instant>,
    ) -> Wait {
        // Made before locking: it clones Arcs, which need not lengthen the critical section.
        let me = Unparker::current();
        let ticket = {
            let mut l = self.lock();
            if !still(l.state()) {
                return Wait::Changed;
            }
            l.enqueue(tag, me)
        };
        self.park(&ticket, deadline)
    }

    /// Parks on `ticket` until woken or `deadline`: [`Wait::Woken`] or [`Wait::TimedOut`].
    pub(crate) fn park(&self, ticket: &Ticket<K>, deadline: Option<Instant>) -> Wait {
        loop {
            if ticket.0.woken.load(Ordering::Acquire) {
                return Wait::Woken;
            }
            match deadline {
                None => park(),
                Some(d) if !expired(d) => park_deadline(d),
                Some(_) => {
                    // Timed out, unless a waker dequeued us meanwhile (module doc).
                    return if self.lock().cancel(ticket) {
                        Wait::TimedOut
                    } else {
                        Wait::Woken
                    };
                }
            }
            // park may return spuriously: loop to re-check `woken`.
        }
    }

    /// Wakes the first waiter; false if none.
    pub(crate) fn wake_one(&self) -> bool {
        self.lock().wake_front()
    }

    /// Wakes every waiter; how many.
    pub(crate) fn wake_all(&self) -> usize {
        self.lock().wake_all()
    }
}

impl<S> WaitList<S> {
    /// Futex-style wait: under the lock, parks only if `still(state)` holds; then until a waker
    /// dequeues us or `deadline` passes.
    pub(crate) fn wait_if(
        &self,
        still: impl FnOnce(&mut S) -> bool,
        deadline: Option<Instant>,
    ) -> Wait {
        self.wait_tagged(0, still, deadline)
    }
}

/// The list, locked. Threads it wakes are unparked when it is dropped, after the lock is released.
pub(crate) struct Locked<'a, S, K = u8> {
    guard: Option<MutexGuard<'a, Inner<S, K>>>,
    wake: ToWake<K>,
}

/// The waiters a [`Locked`] dequeued, to unpark once the lock is released. Most wakes are of one
/// thread: that one needs no allocation.
struct ToWake<K> {
    first: Option<Arc<Waiter<K>>>,
    rest: Vec<Arc<Waiter<K>>>,
}

impl<K> Default for ToWake<K> {
    fn default() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<K> ToWake<K> {
    fn push(&mut self, w: Arc<Waiter<K>>) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    fn unpark_all(&mut self) {
        for w in self.first.take().into_iter().chain(self.rest.drain(..)) {
            w.unparker.unpark();
        }
    }
}

impl<S, K> Locked<'_, S, K> {
    fn inner(&mut self) -> &mut Inner<S, K> {
        self.guard
            .as_mut()
            .expect("the list is locked until dropped")
    }

    /// The primitive's state.
    pub(crate) fn state(&mut self) -> &mut S {
        &mut self.inner().state
    }

    /// Queues `unparker` at the back with `tag`.
    pub(crate) fn enqueue(&mut self, tag: K, unparker: Unparker) -> Ticket<K> {
        let w = Arc::new(Waiter {
            woken: AtomicBool::new(false),
            tag,
            unparker,
        });
        self.inner().queue.push_back(w.clone());
        Ticket(w)
    }

    /// The first waiter's tag.
    pub(crate) fn front_tag(&mut self) -> Option<K>
    where
        K: Copy,
    {
        self.inner().queue.front().map(|w| w.tag)
    }

    /// Dequeues the first waiter and wakes it (once the lock is released); false if none.
    pub(crate) fn wake_front(&mut self) -> bool {
        match self.inner().queue.pop_front() {
            Some(w) => {
                w.woken.store(true, Ordering::Release);
                self.wake.push(w);
                true
            }
            None => false,
        }
    }

    /// Wakes every waiter; how many.
    pub(crate) fn wake_all(&mut self) -> usize {
        let mut n = 0;
        while self.wake_front() {
            n += 1;
        }
        n
    }

    /// Dequeues, front first, up to `max` waiters whose tag satisfies `wanted`, and wakes them
    /// (once the lock is released); how many.
    pub(crate) fn wake_matching(
        &mut self,
        max: usize,
        mut wanted: impl FnMut(&K) -> bool,
    ) -> usize {
        let Self { guard, wake } = self;
        let q = &mut guard
            .as_mut()
            .expect("the list is locked until dropped")
            .queue;
        let mut n = 0;
        q.retain(|w| {
            if n == max || !wanted(&w.tag) {
                return true;
            }
            w.woken.store(true, Ordering::Release);
            wake.push(w.clone());
            n += 1;
            false
        });
        n
    }

    /// Removes a waiter that gives up: true if it was still queued (so nobody woke it).
    pub(crate) fn cancel(&mut self, t: &Ticket<K>) -> bool {
        let q = &mut self.inner().queue;
        match q.iter().position(|w| Arc::ptr_eq(w, &t.0)) {
            Some(i) => {
                q.remove(i);
                true
            }
            None => false,
        }
    }
}

impl<S, K> Drop for Locked<'_, S, K> {
    fn drop(&mut self) {
        // Unlock first: an unpark may schedule a green thread (another lock), and the woken
        // thread's first act is often to take this lock again.
        drop(self.guard.take());
        self.wake.unpark_all();
    }
}
