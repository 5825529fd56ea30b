//! Where a thread sleeps on a word of a synchronisation object, and how it is woken.
//!
//! - Process-private objects ([`Scope::Private`]) use the futex-address table
//!   (`flexsc_threads::futex`): a green thread parks and its carrier runs others, an OS thread
//!   parks in the same table, so every waiter of a word, whatever its kind, is seen by a wake.
//!   No system call.
//! - Process-shared objects ([`Scope::Shared`]) may be woken from another process, which only the
//!   kernel sees: `FUTEX_WAIT`/`FUTEX_WAKE` (shared, without `FUTEX_PRIVATE_FLAG`) through
//!   `flexsc_threads::syscall`. On a green thread the call is posted to its carrier's syscall
//!   pages and the green thread parks while the call sleeps in the kernel on a syscall thread (or
//!   inside io_uring), so its carrier keeps running others; on an OS thread it traps as usual.
//!
//! A wait returns when woken, when the word no longer holds the expected value, or spuriously:
//! callers always look at the word again. Only a passed deadline is reported.
//!
//! Both run as the library's own code ([`InLib`]): the futex table's and the runtime's locks are
//! std's, which wait with `syscall(SYS_futex)`, and those calls must reach the kernel rather than
//! the futex emulation of the `syscall` export (which the table itself implements).
//!
//! The condition variable and semaphore waits are cancellation points ([`cancellation_point`],
//! [`cancellable`]), through the [`Cancellation`] the preload installs.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use flexsc_threads::futex::{self, BITSET_MATCH_ANY, FutexError};

use crate::rt::InLib;

/// A wait's deadline passed.
#[derive(Debug)]
pub(crate) struct TimedOut;

/// Why [`Scope::wait_signalled`] ended without a wake.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The deadline passed.
    TimedOut,
    /// A signal handler ran on the waiting thread that ends the wait (`EINTR`, see
    /// [`Signals::interrupted`]).
    Interrupted,
}

/// Signals as the preload implements them (`signal.rs`), installed in [`SIGNALS`] when the first
/// green thread starts: a green thread waiting here runs the handlers of the signals sent to
/// it, then waits on (or fails with `EINTR`, [`Scope::wait_signalled`]). Where this module is
/// compiled on its own there is none, and waits are not interrupted.
pub(crate) trait Signals: Sync {
    /// Runs the calling green thread's pending handlers after its wait was interrupted; true if
    /// the wait must end with `EINTR`: a handler ran that does not restart it (`restartable`:
    /// an untimed wait, which Linux restarts after `SA_RESTART` handlers; a timed futex wait
    /// always ends with `EINTR` when a handler ran).
    fn interrupted(&self, restartable: bool) -> bool;
}

/// The installed [`Signals`].
pub(crate) static SIGNALS: OnceLock<&'static dyn Signals> = OnceLock::new();

/// Thread cancellation as the preload implements it (`cancel.rs`), installed in
/// [`CANCELLATION`] when the first thread is created or cancelled. Where this module is compiled
/// on its own (its test, `tests/sync.rs`) there is none, and no wait is a cancellation point.
pub(crate) trait Cancellation: Sync {
    /// A cancellation point: a request pending on the calling thread acts (the thread ends).
    fn point(&self);
    /// Before a wait on `word`: registers it, so that a request wakes the wait; false if a
    /// request is pending (do not wait). [`Cancellation::leave`] follows either way.
    fn enter(&self, word: &AtomicU32) -> bool;
    /// After [`Cancellation::enter`] (and the wait).
    fn leave(&self);
}

/// The installed [`Cancellation`].
pub(crate) static CANCELLATION: OnceLock<&'static dyn Cancellation> = OnceLock::new();

/// A cancellation point (see [`Cancellation::point`]).
pub(crate) fn cancellation_point() {
    if let Some(c) = CANCELLATION.get() {
        c.point();
    }
}

/// Runs `wait`, a wait on `word`, as a cancellable one: a cancellation request that comes
/// meanwhile wakes it. `None` (without waiting) if a request is pending; the caller then leaves
/// the object and calls [`cancellation_point`] where POSIX has the request act.
pub(crate) fn cancellable<R>(word: &AtomicU32, wait: impl FnOnce() -> R) -> Option<R> {
    let Some(c) = CANCELLATION.get() else {
        return Some(wait());
    };
    let r = c.enter(word).then(wait);
    c.leave();
    r
}

/// Who may wait on and wake an object's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Threads of this process only (`PTHREAD_PROCESS_PRIVATE`).
    Private,
    /// Any process mapping the object (`PTHREAD_PROCESS_SHARED`).
    Shared,
}

impl Scope {
    /// `Shared` if `shared`.
    pub(crate) fn new(shared: bool) -> Self {
        if shared { Self::Shared } else { Self::Private }
    }

    /// Sleeps while `word` holds `expected`, until a [`Scope::wake`] or `deadline`. A signal
    /// sent to the waiting green thread runs its handler and ends the wait as a spurious
    /// wake-up (the caller looks at the word again, and may wait on with the same deadline).
    pub(crate) fn wait(
        self,
        word: &AtomicU32,
        expected: u32,
        deadline: Option<Instant>,
    ) -> Result<(), TimedOut> {
        match self.wait_signalled(word, expected, deadline) {
            Err(Stop::TimedOut) => Err(TimedOut),
            Ok(()) | Err(Stop::Interrupted) => Ok(()),
        }
    }

    /// As [`Scope::wait`], telling whether a handler ran that ends the wait with `EINTR` (for
    /// `sem_wait` and `sem_timedwait`, which report it).
    pub(crate) fn wait_signalled(
        self,
        word: &AtomicU32,
        expected: u32,
        deadline: Option<Instant>,
    ) -> Result<(), Stop> {
        let signalled = {
            let _lib = InLib::enter();
            match self {
                Self::Private => {
                    match futex::wait_interruptible(word, expected, BITSET_MATCH_ANY, deadline) {
                        Err(FutexError::TimedOut) => return Err(Stop::TimedOut),
                        Err(FutexError::Interrupted) => true,
                        // Woken, or the word had changed (`Invalid` needs a zero bitset).
                        Ok(()) | Err(FutexError::WouldBlock | FutexError::Invalid) => false,
                    }
                }
                Self::Shared => kernel_wait(word, expected, deadline)?,
            }
        };
        // The handlers are the application's code: run outside the library's (InLib ended).
        match SIGNALS.get() {
            Some(s) if signalled && s.interrupted(deadline.is_none()) => Err(Stop::Interrupted),
            _ => Ok(()),
        }
    }

    /// Wakes up to `n` threads sleeping on `word`; returns how many it woke. Only the address
    /// is used: the object may be gone by then (a woken thread may destroy it).
    pub(crate) fn wake(self, word: *const AtomicU32, n: u32) -> usize {
        let _lib = InLib::enter();
        match self {
            // `Invalid` only for an unaligned word: the objects' layouts align every word.
            Self::Private => futex::wake(word, n, BITSET_MATCH_ANY).unwrap_or(0),
            Self::Shared => {
                // The kernel reads the count as an int.
                let n = n.min(i32::MAX as u32);
                let args = [word as u64, libc::FUTEX_WAKE as u64, u64::from(n)];
                // SAFETY: FUTEX_WAKE only uses the address; a stale one wakes nobody or fails
                // with EFAULT.
                let r = unsafe { flexsc_threads::syscall(libc::SYS_futex, &args) };
                usize::try_from(r).unwrap_or(0)
            }
        }
    }
}

/// `FUTEX_WAIT` on a shared word, with the time left until `deadline` as its timeout: true if
/// it ended with `EINTR` (a signal).
fn kernel_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Result<bool, Stop> {
    let ts;
    let timeout: *const libc::timespec = match deadline {
        None => std::ptr::null(),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Stop::TimedOut);
            }
            ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(left.subsec_nanos()),
            };
            &ts
        }
    };
    let args = [
        word.as_ptr() as u64,
        libc::FUTEX_WAIT as u64,
        u64::from(expected),
        timeout as u64,
    ];
    // SAFETY: `word` is a live aligned u32 and `ts` outlives the call, which returns (here or on
    // a syscall thread, while this thread is parked) before this function does.
    let r = unsafe { flexsc_threads::syscall(libc::SYS_futex, &args) };
    if r == -i64::from(libc::ETIMEDOUT) {
        Err(Stop::TimedOut)
    } else {
        // 0 (woken) or EAGAIN (changed): look again; EINTR: a signal.
        Ok(r == -i64::from(libc::EINTR))
    }
}
