//! The wait queue every primitive (and each bucket of the futex table) parks on: an intrusive
//! FIFO of waiters, each a node on its own stack with a tag saying what it waits for, plus
//! whatever state the primitive wants edited atomically with it, behind a spin lock held only for
//! those edits (never across a park).
//!
//! Nodes live in the waiting function's frame, so queueing allocates nothing, and they name a
//! green thread by address: a green thread waiting here holds a reference to itself (see
//! [`crate::park`]), which the wake-up takes over. A wait therefore costs two locked operations
//! on the list lock, plus the park state's, and no reference counting.
//!
//! A node's state goes QUEUED -> WAKING -> WOKEN, both steps made by the waker that dequeued it,
//! under the list lock, with the unpark in between:
//! - the waiter returns only once it sees WOKEN, so its node and (for a green thread) the thread
//!   itself outlive every use the waker makes of them;
//! - WAKING is stored before the unpark, so a waiter that consumed that unpark and looks again
//!   sees WAKING or WOKEN and spins the few instructions to WOKEN (yielding its kernel thread if
//!   the waker's was preempted there), instead of parking again with nobody left to wake it.
//!   This holds also when the unpark found a notification already pending (a stale one, from a
//!   wake the waiter did not need): the unpark writes it again, so the waiter that consumes it
//!   sees WAKING ([`crate::park`]).
//!
//! A waiter whose deadline passes takes the lock: if its node is still QUEUED, nobody woke it (it
//! unlinks itself and timed out, and no wake was spent on it); otherwise a waker took it (and,
//! under the lock, finished: WOKEN), so it must act as woken, or the wake would be lost.
//!
//! Model-checked through the primitives built on it, under loom (`loom-tests/tests/mutex.rs`,
//! `condvar.rs`, `futex.rs`, `rwlock.rs`, ...).

use std::cell::Cell;
use std::ptr;
use std::time::Instant;

use crate::shim::{
    AtomicU8, ListGuard, ListLock, Ordering, Sleeper, UnsafeCell, Woke, const_fn, expired,
    interrupted, spin_round, wait,
};

const QUEUED: u8 = 0;
const WAKING: u8 = 1;
const WOKEN: u8 = 2;

/// One waiter, on its own stack while queued.
struct Node<K> {
    /// Links, touched only under the list lock.
    prev: Cell<*const Node<K>>,
    next: Cell<*const Node<K>>,
    /// What the primitive queued it for (reader or writer, an address and bitset...).
    tag: K,
    /// QUEUED, WAKING, WOKEN (module doc).
    state: AtomicU8,
    sleeper: Sleeper,
}

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The condition no longer held when checked under the lock: never parked.
    Changed,
    /// Dequeued by a waker.
    Woken,
    /// The deadline passed first (and no wake was spent on us).
    TimedOut,
    /// The green thread was interrupted first ([`WaitList::wait_interruptible`]; no wake was
    /// spent on us).
    Interrupted,
}

struct Inner<S, K> {
    state: S,
    head: *const Node<K>,
    tail: *const Node<K>,
}

/// A FIFO of parked threads, each tagged with a `K`, with state `S` edited under the same lock.
pub(crate) struct WaitList<S = (), K = u8> {
    lock: ListLock,
    inner: UnsafeCell<Inner<S, K>>,
}

// SAFETY: the state and the queue are only reached under the lock, which hands them to one
// thread at a time; the nodes they point to are alive while queued (their waiters do not return
// before a waker or they themselves unlink them, under the lock). Tags and state move between
// threads with them, hence `Send` bounds.
unsafe impl<S: Send, K: Send> Send for WaitList<S, K> {}
// SAFETY: as above.
unsafe impl<S: Send, K: Send> Sync for WaitList<S, K> {}

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
                lock: ListLock::new(),
                inner: UnsafeCell::new(Inner {
                    state,
                    head: ptr::null(),
                    tail: ptr::null(),
                }),
            }
        }
    }

    /// Takes the list lock (short: no parking while it is held).
    pub(crate) fn lock(&self) -> Locked<'_, S, K> {
        Locked {
            list: self,
            guard: Some(self.lock.lock()),
            wake: ToWake::default(),
        }
    }

    /// Futex-style wait queued with `tag`: under the lock, parks only if `still(state)` holds
    /// (it may also edit the state); then until a waker dequeues us or `deadline` passes.
    pub(crate) fn wait_tagged(
        &self,
        tag: K,
        still: impl FnOnce(&mut S) -> bool,
        deadline: Option<Instant>,
    ) -> Wait {
        self.wait_tagged_or(tag, still, deadline, false)
    }

    /// As [`wait_tagged`](WaitList::wait_tagged), and also ends, with [`Wait::Interrupted`],
    /// when the calling green thread is interrupted (a signal for it): its interrupt mark is
    /// left for the caller to take.
    pub(crate) fn wait_interruptible(
        &self,
        tag: K,
        still: impl FnOnce(&mut S) -> bool,
        deadline: Option<Instant>,
    ) -> Wait {
        self.wait_tagged_or(tag, still, deadline, true)
    }

    fn wait_tagged_or(
        &self,
        tag: K,
        still: impl FnOnce(&mut S) -> bool,
        deadline: Option<Instant>,
        interruptible: bool,
    ) -> Wait {
        let node = Node {
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
            tag,
            state: AtomicU8::new(QUEUED),
            sleeper: Sleeper::current(),
        };
        {
            let mut l = self.lock();
            if !still(l.state()) {
                return Wait::Changed;
            }
            l.push_back(&node);
        }
        // `node` stays in this frame, unmoved, until the loop below sees it dequeued.
        let mut waking_rounds = 0;
        loop {
            match node.state.load(Ordering::Acquire) {
                WOKEN => return Wait::Woken,
                // A waker is between its unpark and WOKEN: a few instructions (module doc),
                // unless its kernel thread was preempted there.
                WAKING => {
                    spin_round(&mut waking_rounds);
                    continue;
                }
                _ => {}
            }
            // The interrupter sets the mark before it unparks us: a park that returns for it
            // finds the mark here.
            let stop = match deadline {
                Some(d) if expired(d) => Some(Wait::TimedOut),
                _ if interruptible && interrupted() => Some(Wait::Interrupted),
                _ => None,
            };
            match stop {
                Some(stop) => {
                    let mut l = self.lock();
                    if node.state.load(Ordering::Relaxed) == QUEUED {
                        l.unlink(&node);
                        return stop;
                    }
                    // Dequeued by a waker, which finished under the lock: woken (module doc).
                }
                // May return spuriously: loop to look at the node again.
                _ => wait(deadline),
            }
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
    /// [`wait_tagged`](WaitList::wait_tagged) with the default tag.
    pub(crate) fn wait_if(
        &self,
        still: impl FnOnce(&mut S) -> bool,
        deadline: Option<Instant>,
    ) -> Wait {
        self.wait_tagged(0, still, deadline)
    }
}

/// The list, locked. Wake-ups it starts are finished when it is dropped, after the lock is
/// released (queueing a green thread, unparking an OS thread).
pub(crate) struct Locked<'a, S, K = u8> {
    list: &'a WaitList<S, K>,
    guard: Option<ListGuard<'a>>,
    wake: ToWake,
}

/// The wake-ups a [`Locked`] started, to finish once the lock is released. Most wakes are of one
/// thread: that one needs no allocation.
#[derive(Default)]
struct ToWake {
    first: Option<Woke>,
    rest: Vec<Woke>,
}

impl ToWake {
    fn push(&mut self, w: Woke) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    fn finish_all(&mut self) {
        if let Some(w) = self.first.take() {
            w.finish();
        }
        if !self.rest.is_empty() {
            self.rest.drain(..).for_each(Woke::finish);
        }
    }
}

impl<S, K> Locked<'_, S, K> {
    /// Runs `f` on the locked list.
    fn with<R>(&mut self, f: impl FnOnce(&mut Inner<S, K>) -> R) -> R {
        // SAFETY: we hold the lock (made in `WaitList::lock`, released in drop), so nobody else
        // reaches `inner`; `f` is one of this module's short edits and does not re-lock.
        self.list.inner.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// The primitive's state.
    pub(crate) fn state(&mut self) -> &mut S {
        let p = self.with(|i| &mut i.state as *mut S);
        // SAFETY: as in `with`; the borrow is tied to `self`, which keeps the lock held.
        unsafe { &mut *p }
    }

    fn push_back(&mut self, node: &Node<K>) {
        let n: *const Node<K> = node;
        self.with(|i| {
            node.prev.set(i.tail);
            node.next.set(ptr::null());
            match i.tail.is_null() {
                true => i.head = n,
                // SAFETY: queued nodes are alive (the type's SAFETY note); we hold the lock.
                false => unsafe { (*i.tail).next.set(n) },
            }
            i.tail = n;
        });
    }

    fn unlink(&mut self, node: &Node<K>) {
        let (prev, next) = (node.prev.get(), node.next.get());
        self.with(|i| {
            match prev.is_null() {
                true => i.head = next,
                // SAFETY: as in `push_back`.
                false => unsafe { (*prev).next.set(next) },
            }
            match next.is_null() {
                true => i.tail = prev,
                // SAFETY: as in `push_back`.
                false => unsafe { (*next).prev.set(prev) },
            }
        });
    }

    /// Dequeues `node` and wakes it: WAKING, the unpark, WOKEN (module doc).
    fn wake_node(&mut self, node: &Node<K>) {
        self.unlink(node);
        node.state.store(WAKING, Ordering::Relaxed);
        // SAFETY: the waiter cannot return before it sees WOKEN, stored below.
        let w = unsafe { node.sleeper.wake() };
        node.state.store(WOKEN, Ordering::Release);
        self.wake.push(w);
    }

    /// The first waiter, if any.
    fn front(&mut self) -> Option<&Node<K>> {
        let head = self.with(|i| i.head);
        // SAFETY: queued nodes are alive while we hold the lock (the type's SAFETY note).
        (!head.is_null()).then(|| unsafe { &*head })
    }

    /// The first waiter's tag.
    pub(crate) fn front_tag(&mut self) -> Option<K>
    where
        K: Copy,
    {
        self.front().map(|n| n.tag)
    }

    /// Dequeues the first waiter and wakes it; false if none.
    pub(crate) fn wake_front(&mut self) -> bool {
        let Some(n) = self.front().map(|n| n as *const Node<K>) else {
            return false;
        };
        // SAFETY: a queued node, alive until we store WOKEN into it.
        self.wake_node(unsafe { &*n });
        true
    }

    /// Wakes every waiter; how many.
    pub(crate) fn wake_all(&mut self) -> usize {
        let mut n = 0;
        while self.wake_front() {
            n += 1;
        }
        n
    }

    /// Dequeues, front first, up to `max` waiters whose tag satisfies `wanted`, and wakes them;
    /// how many.
    pub(crate) fn wake_matching(
        &mut self,
        max: usize,
        mut wanted: impl FnMut(&K) -> bool,
    ) -> usize {
        let mut n = 0;
        let mut at = self.with(|i| i.head);
        while n < max && !at.is_null() {
            // SAFETY: a queued node (the type's SAFETY note); its successor is read before it is
            // woken, after which it may be gone.
            let node = unsafe { &*at };
            at = node.next.get();
            if wanted(&node.tag) {
                self.wake_node(node);
                n += 1;
            }
        }
        n
    }
}

impl<S, K> Drop for Locked<'_, S, K> {
    fn drop(&mut self) {
        // Unlock first: finishing a wake may queue a green thread (another lock) or unpark an OS
        // thread (a system call), and the woken thread's first act is often to take this lock.
        drop(self.guard.take());
        self.wake.finish_all();
    }
}
