//! Which descriptors are known to be in non-blocking mode (`O_NONBLOCK`), learned from the
//! calls that set or report it through the library's exports: `fcntl(F_SETFL)` and
//! `fcntl(F_GETFL)`, `ioctl(FIONBIO)`, `accept4(SOCK_NONBLOCK)`. A call on such a descriptor
//! cannot wait, so the [`direct`](crate::direct) rule runs it on the carrier.
//!
//! The table errs one way only. A descriptor not known to be non-blocking is posted, as every
//! call was before; that is always right. A stale "non-blocking" bit on a descriptor that would
//! block makes its calls run on the carrier: still the same result, but the carrier waits in
//! the kernel meanwhile instead of running other green threads. So a bit is withdrawn on
//! everything that can end or replace the descriptor that the library sees (`close`, `dup2`,
//! `dup3`, `close_range`, `closefrom`, a new descriptor of that number from `open`, `accept`,
//! `fcntl(F_DUPFD)` or `dup`), and every bit is withdrawn at `fork` (the child shares every
//! open file description, and may change its flags unseen). What the library cannot see: a
//! descriptor closed inside glibc (`fclose` of an `fdopen`ed socket) and reused unseen, and
//! another process changing the flags of a description it shares with us (received through a
//! Unix socket, or inherited before we started).
//!
//! Descriptors from 0 to [`MAX_FD`] are tracked; the others are never known non-blocking.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use libc::c_int;

/// One past the highest descriptor tracked (a bit each: 8 KiB).
const MAX_FD: usize = 65_536;

static NONBLOCKING: [AtomicU64; MAX_FD / 64] = [const { AtomicU64::new(0) }; MAX_FD / 64];

static AT_FORK: Once = Once::new();
/// Set if the fork handler could not be registered: then nothing is ever marked.
static DISABLED: AtomicU64 = AtomicU64::new(0);

fn bit(fd: i64) -> Option<(&'static AtomicU64, u64)> {
    let i = usize::try_from(fd).ok().filter(|&i| i < MAX_FD)?;
    Some((&NONBLOCKING[i / 64], 1 << (i % 64)))
}

/// Whether `fd` is known to be in non-blocking mode.
#[inline]
pub(crate) fn known(fd: i64) -> bool {
    bit(fd).is_some_and(|(w, m)| w.load(Ordering::Relaxed) & m != 0)
}

/// Records `fd`'s mode: non-blocking or not.
pub(crate) fn set(fd: i64, nonblocking: bool) {
    let Some((w, m)) = bit(fd) else {
        return;
    };
    if nonblocking {
        AT_FORK.call_once(|| {
            // SAFETY: registers a plain 'static function as the prepare handler.
            if unsafe { libc::pthread_atfork(Some(forget_all), None, None) } != 0 {
                // Without it a fork could leave stale bits: never mark anything.
                DISABLED.store(1, Ordering::Relaxed);
            }
        });
        if DISABLED.load(Ordering::Relaxed) == 0 {
            w.fetch_or(m, Ordering::Relaxed);
        }
    } else if w.load(Ordering::Relaxed) & m != 0 {
        w.fetch_and(!m, Ordering::Relaxed);
    }
}

/// Forgets `fd` (closed, replaced, or a new descriptor of that number whose mode is not known).
#[inline]
pub(crate) fn forget(fd: i64) {
    set(fd, false);
}

/// Forgets every descriptor from `first` to `last` (inclusive).
pub(crate) fn forget_range(first: u64, last: u64) {
    let last = last.min(MAX_FD as u64 - 1);
    for fd in first..=last {
        forget(fd as i64);
    }
}

/// Before a fork, in the forking thread: the child will share every open file description.
extern "C" fn forget_all() {
    for w in &NONBLOCKING {
        w.store(0, Ordering::Relaxed);
    }
}

/// Before call `nr` with `args` runs (any thread): a descriptor it ends is forgotten first, so
/// that a concurrent open of the same number is never taken for it.
#[inline]
pub(crate) fn before(nr: i64, args: &[u64]) {
    if nr == libc::SYS_close {
        forget(args[0] as c_int as i64);
    }
}

/// After call `nr` with `args` returned `r` (libc's result: -1 on failure): what it tells of
/// the descriptors' modes.
#[inline]
pub(crate) fn after(nr: i64, args: &[u64], r: i64) {
    if r < 0 {
        return;
    }
    match nr {
        // Accepted sockets do not inherit the listener's O_NONBLOCK.
        libc::SYS_accept => forget(r),
        libc::SYS_accept4 => set(r, args[3] as c_int & libc::SOCK_NONBLOCK != 0),
        libc::SYS_openat => forget(r),
        _ => {}
    }
}

/// After `fcntl(fd, cmd, arg)` returned `r`.
pub(crate) fn after_fcntl(fd: c_int, cmd: c_int, arg: libc::c_ulong, r: c_int) {
    if r < 0 {
        return;
    }
    match cmd {
        libc::F_SETFL => set(fd.into(), arg as c_int & libc::O_NONBLOCK != 0),
        libc::F_GETFL => set(fd.into(), r & libc::O_NONBLOCK != 0),
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => forget(r.into()),
        _ => {}
    }
}
