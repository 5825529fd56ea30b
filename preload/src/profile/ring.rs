//! Per-thread ring buffers of [`Record`]s: one per green thread (its own TLS block holds the
//! pointer) and one per OS thread, allocated at the thread's first recorded call and never freed
//! (the dump at exit reads the rings of threads that have ended too).
//!
//! The recording path takes no lock and makes no system call: a thread-local load, two relaxed
//! stores of the record's words and a release store of the head (single writer: the thread
//! itself). The dump reads the head with acquire and the slots with relaxed loads; a thread still
//! running then can overwrite its oldest slots meanwhile, so the oldest record of such a thread
//! may be torn (never unsound: every slot is an atomic).

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use flexsc_profile::record::Record;

/// Records per ring unless `FLEXSC_PROFILE_RING` says otherwise (1 MiB of address space per
/// thread; its pages are only touched as they fill).
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 16;

/// Records per ring (a power of two), set once at load time.
static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_CAPACITY);

/// The most recently made ring; each links to the one made before it.
static RINGS: AtomicPtr<Ring> = AtomicPtr::new(std::ptr::null_mut());

/// Numbers for OS threads' rings (green threads use their runtime id).
static NEXT_OS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The calling thread's ring (null until its first recorded call). No destructor: a
    /// green thread's TLS block is reset from the image when reused, so a new green thread
    /// starts with null again.
    static MINE: Cell<*const Ring> = const { Cell::new(std::ptr::null()) };
}

/// One thread's ring.
pub(crate) struct Ring {
    /// The green thread's id, or a number among OS threads.
    pub(crate) id: u64,
    /// Whether the thread was a green thread.
    pub(crate) green: bool,
    /// Records ever written (the next goes to `head % capacity`).
    head: AtomicU64,
    /// Records written before this process existed (a fork child's copy of its parent's ring).
    base: AtomicU64,
    slots: Box<[[AtomicU64; 2]]>,
    /// The ring made before this one.
    next: *const Ring,
}

/// The largest ring: 2^24 records, 256 MiB of address space per thread.
pub(crate) const MAX_CAPACITY: usize = 1 << 24;

/// Sets the ring size (records, rounded up to a power of two, within 2..=[`MAX_CAPACITY`]).
/// Called once, before any ring exists.
pub(crate) fn set_capacity(n: usize) {
    CAPACITY.store(
        n.clamp(2, MAX_CAPACITY).next_power_of_two(),
        Ordering::Relaxed,
    );
}

/// Appends `rec` to the calling thread's ring.
#[inline]
pub(crate) fn push(rec: Record) {
    let ring = MINE.with(|m| {
        let p = m.get();
        if !p.is_null() {
            return p;
        }
        let new = Ring::make();
        m.set(new);
        new
    });
    // SAFETY: rings are leaked, never freed.
    let ring = unsafe { &*ring };
    let h = ring.head.load(Ordering::Relaxed);
    let slot = &ring.slots[h as usize & (ring.slots.len() - 1)];
    let [a, b] = rec.to_words();
    slot[0].store(a, Ordering::Relaxed);
    slot[1].store(b, Ordering::Relaxed);
    ring.head.store(h + 1, Ordering::Release);
}

impl Ring {
    /// A new ring for the calling thread, linked into the list.
    fn make() -> *const Ring {
        let cap = CAPACITY.load(Ordering::Relaxed);
        let (id, green) = match flexsc_threads::current_id() {
            Some(id) => (id, true),
            None => (NEXT_OS.fetch_add(1, Ordering::Relaxed), false),
        };
        let layout = std::alloc::Layout::array::<[AtomicU64; 2]>(cap).expect("ring size");
        // SAFETY: a non-zero size; zeroed memory is a valid AtomicU64 array. calloc-backed, so a
        // large ring's pages are only touched as the ring fills.
        let slots = unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<[AtomicU64; 2]>();
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, cap))
        };
        let ring = Box::leak(Box::new(Ring {
            id,
            green,
            head: AtomicU64::new(0),
            base: AtomicU64::new(0),
            slots,
            next: std::ptr::null(),
        }));
        let mut head = RINGS.load(Ordering::Relaxed);
        loop {
            ring.next = head;
            match RINGS.compare_exchange_weak(head, ring, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return ring,
                Err(now) => head = now,
            }
        }
    }

    /// Calls recorded in this process, and the records still held: (total, oldest index, end
    /// index), indices counting from the ring's first record ever.
    pub(crate) fn span(&self) -> (u64, u64, u64) {
        let head = self.head.load(Ordering::Acquire);
        let base = self.base.load(Ordering::Relaxed).min(head);
        let start = base.max(head.saturating_sub(self.slots.len() as u64));
        (head - base, start, head)
    }

    /// Record `i` (an index from [`Ring::span`]).
    pub(crate) fn get(&self, i: u64) -> Record {
        let slot = &self.slots[i as usize & (self.slots.len() - 1)];
        Record::from_words([
            slot[0].load(Ordering::Relaxed),
            slot[1].load(Ordering::Relaxed),
        ])
    }
}

/// Every ring made in this process (and, in a fork child, its parent's, emptied by
/// [`forget_parent`]), newest first.
pub(crate) fn all() -> impl Iterator<Item = &'static Ring> {
    let mut p: *const Ring = RINGS.load(Ordering::Acquire);
    std::iter::from_fn(move || {
        // SAFETY: rings are leaked, never freed; `next` was set before the ring was published.
        let r = unsafe { p.as_ref()? };
        p = r.next;
        Some(r)
    })
}

/// In a fork child: what the rings hold is the parent's (its dump has it); the child records
/// from here on. Async-signal-safe (atomics only).
pub(crate) fn forget_parent() {
    for r in all() {
        r.base
            .store(r.head.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}
