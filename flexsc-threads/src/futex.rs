//! The futex-address table: process-private `FUTEX_WAIT` and `FUTEX_WAKE`, and their `_BITSET`
//! forms (which glibc's condvars and semaphores use), emulated in user space so that a green
//! thread waiting on a futex parks instead of blocking its carrier. This is what the preload is
//! to route a program's process-private futex calls to.
//!
//! A fixed table of buckets, each a wait list (`sync/waitlist.rs`, the one every sync primitive
//! parks on) of waiters tagged with their address and bitset; an address hashes to one bucket.
//! [`wait`] compares the word with the expected value *under the bucket lock* and queues itself
//! in the same critical section; [`wake`] takes that lock to dequeue. So a waker that changed the
//! word before calling [`wake`] either finds the waiter queued or made its change visible to the
//! waiter's comparison (the lock orders them), which then fails with `EAGAIN`: no wake-up is
//! lost. A timed-out waiter withdraws under the lock; if a waker dequeued it first, the wait
//! reports success instead, so a wake is never counted for a waiter that then claims it timed out
//! (the kernel's rule too).
//!
//! Plain OS threads go through the same table (their waiter is the OS thread, parked with
//! `std::thread::park`), so green threads and OS threads can share one futex word: every waiter
//! of an address, whatever its kind, is in the one bucket a wake looks at. Words outside this
//! table's view (another process, or the kernel's own futex calls on the same address) are not
//! seen: this is for process-private futexes whose every wait and wake comes through here. The
//! buckets' own locks are std mutexes, which sleep on real futexes: those calls must not be
//! routed back here.
//!
//! The comparison is ordered by the bucket lock, not by the load, and returning gives no more
//! ordering than the kernel's futex does: callers re-read the word with the ordering they need.
//!
//! Cost per wait: one allocation (the waiter's node), as for every sync primitive here; nothing
//! per wake beyond the list of threads to unpark. Model-checked in `loom-tests/tests/futex.rs`.

use std::fmt;
use std::time::Instant;

use crate::shim::{AtomicU32, Ordering};
use crate::sync::waitlist::{Wait, WaitList};

/// The bitset of plain `FUTEX_WAIT` and `FUTEX_WAKE`: matches every waiter.
pub const BITSET_MATCH_ANY: u32 = u32::MAX;

/// Why a futex call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexError {
    /// `EAGAIN`: the word did not hold the expected value.
    WouldBlock,
    /// `ETIMEDOUT`: the deadline passed before a wake.
    TimedOut,
    /// `EINVAL`: a bitset of 0, or an address not aligned to 4 bytes.
    Invalid,
    /// `EINTR`: the green thread was interrupted ([`wait_interruptible`]).
    Interrupted,
}

impl FutexError {
    /// The errno the futex system call would fail with.
    pub fn errno(self) -> i32 {
        match self {
            Self::WouldBlock => libc::EAGAIN,
            Self::TimedOut => libc::ETIMEDOUT,
            Self::Invalid => libc::EINVAL,
            Self::Interrupted => libc::EINTR,
        }
    }
}

impl fmt::Display for FutexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WouldBlock => "the futex word did not hold the expected value",
            Self::TimedOut => "the futex wait timed out",
            Self::Invalid => "invalid futex argument",
            Self::Interrupted => "the futex wait was interrupted",
        })
    }
}

impl std::error::Error for FutexError {}

/// What a waiter waits for: a wake on this address with a bitset sharing a bit with its own.
#[derive(Clone, Copy, Debug)]
struct Key {
    addr: usize,
    bitset: u32,
}

type Bucket = WaitList<(), Key>;

/// Buckets in the table: a power of two. One under loom, so that every waiter of a model shares
/// a bucket and wakes must tell addresses apart.
const BUCKETS: usize = if cfg!(loom) { 1 } else { 256 };

/// One bucket per cache line, so waits on unrelated words do not contend on a line.
#[repr(align(64))]
struct Slot(Bucket);

type Table = [Slot; BUCKETS];

/// The table in use. A static one to begin with; [`reset_after_fork`] installs a fresh one (the
/// old one is leaked: a lock in it may be held by a thread that does not exist in the child).
#[cfg(not(loom))]
static FIRST: Table = [const { Slot(WaitList::new(())) }; BUCKETS];
#[cfg(not(loom))]
static CURRENT: std::sync::atomic::AtomicPtr<Table> =
    std::sync::atomic::AtomicPtr::new(&FIRST as *const Table as *mut Table);

#[cfg(not(loom))]
fn table() -> &'static Table {
    // SAFETY: CURRENT always points at FIRST or at a leaked Box<Table>, never freed.
    unsafe { &*CURRENT.load(std::sync::atomic::Ordering::Acquire) }
}

/// In the child of a `fork`: starts from an empty table. The child has one thread, which is not
/// waiting, so no waiter is lost; a bucket lock held at the fork by another (now absent) thread
/// would otherwise block the child's first wait or wake on that bucket forever.
#[cfg(not(loom))]
pub fn reset_after_fork() {
    let fresh: Box<Table> = Box::new(std::array::from_fn(|_| Slot(WaitList::new(()))));
    CURRENT.store(Box::into_raw(fresh), std::sync::atomic::Ordering::Release);
}

// Loom objects live for one execution of a model: loom builds the table anew in each.
#[cfg(loom)]
loom::lazy_static! {
    static ref TABLE: [Slot; BUCKETS] = std::array::from_fn(|_| Slot(WaitList::new(())));
}

#[cfg(loom)]
fn table() -> &'static Table {
    &TABLE
}

/// The bucket of `addr` (Fibonacci hashing: the product's high bits mix every address bit).
fn bucket(addr: usize) -> &'static Bucket {
    let h = ((addr >> 2) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    &table()[h as usize & (BUCKETS - 1)].0
}

/// `FUTEX_WAIT_BITSET`: if `word` holds `expected` (compared under the bucket lock), parks the
/// caller (a green thread gives its carrier to others; an OS thread blocks) until a [`wake`] on
/// this address with a bitset sharing a bit with `bitset` picks it, or until `deadline`.
/// Plain `FUTEX_WAIT` is `bitset` [`BITSET_MATCH_ANY`] (and its relative timeout, made absolute).
///
/// `Ok(())`: woken by a [`wake`] (never spuriously). Errors: [`FutexError::WouldBlock`] if the
/// word differed, [`FutexError::TimedOut`], [`FutexError::Invalid`] for a bitset of 0.
pub fn wait(
    word: &AtomicU32,
    expected: u32,
    bitset: u32,
    deadline: Option<Instant>,
) -> Result<(), FutexError> {
    wait_or(word, expected, bitset, deadline, false)
}

/// As [`wait`], and also ends with [`FutexError::Interrupted`] when the calling green thread is
/// interrupted (a signal was sent to it), as `FUTEX_WAIT` ends with `EINTR`; its interrupt mark
/// is left for the caller to take (`take_interrupt`).
pub fn wait_interruptible(
    word: &AtomicU32,
    expected: u32,
    bitset: u32,
    deadline: Option<Instant>,
) -> Result<(), FutexError> {
    wait_or(word, expected, bitset, deadline, true)
}

fn wait_or(
    word: &AtomicU32,
    expected: u32,
    bitset: u32,
    deadline: Option<Instant>,
    interruptible: bool,
) -> Result<(), FutexError> {
    if bitset == 0 {
        return Err(FutexError::Invalid);
    }
    let key = Key {
        addr: word as *const AtomicU32 as usize,
        bitset,
    };
    let still = |_: &mut ()| word.load(Ordering::Relaxed) == expected;
    let list = bucket(key.addr);
    let w = if interruptible {
        list.wait_interruptible(key, still, deadline)
    } else {
        list.wait_tagged(key, still, deadline)
    };
    match w {
        Wait::Woken => Ok(()),
        Wait::Changed => Err(FutexError::WouldBlock),
        Wait::TimedOut => Err(FutexError::TimedOut),
        Wait::Interrupted => Err(FutexError::Interrupted),
    }
}

/// `FUTEX_WAKE_BITSET`: wakes up to `n` threads waiting in [`wait`] on `word` whose bitset shares
/// a bit with `bitset`, oldest first, and returns how many it woke. Plain `FUTEX_WAKE` is
/// `bitset` [`BITSET_MATCH_ANY`]. Only the address is used: `word` may point to memory that is
/// gone (a waiter may free the word as soon as it is woken).
///
/// `n` of 0 wakes nobody (Linux wakes one). [`FutexError::Invalid`]: a bitset of 0, or `word`
/// not 4-byte aligned.
pub fn wake(word: *const AtomicU32, n: u32, bitset: u32) -> Result<usize, FutexError> {
    if bitset == 0 || !word.is_aligned() {
        return Err(FutexError::Invalid);
    }
    let addr = word as usize;
    let woken = bucket(addr)
        .lock()
        .wake_matching(n as usize, |k| k.addr == addr && k.bitset & bitset != 0);
    Ok(woken)
}
