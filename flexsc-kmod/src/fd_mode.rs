//! Descriptors vouched for as blocking by their only owner.
//!
//! The uring backend has to know whether a request that must wait is on an `O_NONBLOCK` file
//! (then the call returns `-EAGAIN` instead, see `backend/uring/fixup.rs`), and asking the kernel
//! is a synchronous `fcntl(F_GETFL)`: one trap per waiting request, about one per message of a
//! request/response server. An owner that knows its descriptor is in blocking mode, and that
//! nothing else can change that, vouches for it here and the backend skips the question.
//!
//! `O_NONBLOCK` belongs to the open file description, which every dup of the descriptor and
//! every forked child shares: a vouch is only sound while the owner holds the description's
//! only descriptor in the only process. So a vouch names the *fork epoch* it was made in, and a
//! fork (an atfork handler, registered with the first vouch) withdraws every vouch and starts a
//! new epoch; the owner withdraws before closing, duplicating or lending out the descriptor, and
//! before making it non-blocking.
//!
//! Descriptors from 0 to [`MAX_FD`] can be vouched for; the others are always asked about.

use std::os::fd::RawFd;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// One past the highest descriptor that can be vouched for (a bit each: 8 KiB).
pub const MAX_FD: RawFd = 65_536;

static VOUCHED: [AtomicU64; MAX_FD as usize / 64] =
    [const { AtomicU64::new(0) }; MAX_FD as usize / 64];

/// Bumped by every fork, before the vouches are withdrawn.
static EPOCH: AtomicU64 = AtomicU64::new(0);

static AT_FORK: Once = Once::new();

/// The current fork epoch: what an owner records when it gets a descriptor of its own, and
/// passes to [`vouch_blocking`].
pub fn epoch() -> u64 {
    EPOCH.load(Ordering::Acquire)
}

fn bit(fd: RawFd) -> Option<(&'static AtomicU64, u64)> {
    let i = usize::try_from(fd).ok().filter(|&i| i < MAX_FD as usize)?;
    Some((&VOUCHED[i / 64], 1 << (i % 64)))
}

/// Vouches that `fd` is in blocking mode and that its owner, who got it in fork epoch `epoch`,
/// holds the only descriptor of its open file description. Ignored if a fork happened since
/// `epoch` (the description may be shared with the child now).
pub fn vouch_blocking(fd: RawFd, epoch: u64) {
    AT_FORK.call_once(|| {
        // Without the handler no vouch can be trusted: the epoch that none can match.
        if !crate::raw::at_fork_prepare(on_fork) {
            EPOCH.store(u64::MAX, Ordering::Release);
        }
    });
    let Some((word, mask)) = bit(fd) else {
        return;
    };
    if epoch != self::epoch() || epoch == u64::MAX {
        return;
    }
    word.fetch_or(mask, Ordering::AcqRel);
    // A fork between the check and the store withdrew everything before our store: undo it.
    if EPOCH.load(Ordering::Acquire) != epoch {
        word.fetch_and(!mask, Ordering::AcqRel);
    }
}

/// Withdraws the vouch for `fd`, if any: before it is closed, duplicated, lent out or made
/// non-blocking.
pub fn withdraw(fd: RawFd) {
    if let Some((word, mask)) = bit(fd)
        && word.load(Ordering::Relaxed) & mask != 0
    {
        word.fetch_and(!mask, Ordering::AcqRel);
    }
}

/// Whether `fd` is vouched for as blocking.
pub(crate) fn vouched_blocking(fd: RawFd) -> bool {
    bit(fd).is_some_and(|(word, mask)| word.load(Ordering::Acquire) & mask != 0)
}

/// Before a fork: the child will share every open file description, so no vouch holds any more,
/// in either process.
extern "C" fn on_fork() {
    EPOCH.fetch_add(1, Ordering::AcqRel);
    for w in &VOUCHED {
        w.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the process-wide table, and a fork clears all of it.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_vouch_holds_until_withdrawn_and_only_in_its_epoch() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let fd = 4_000;
        assert!(!vouched_blocking(fd));
        vouch_blocking(fd, epoch());
        assert!(vouched_blocking(fd));
        withdraw(fd);
        assert!(!vouched_blocking(fd));
        // A vouch from another epoch (before a fork) is ignored.
        vouch_blocking(fd, epoch() + 1);
        assert!(!vouched_blocking(fd));
        // Out of range: never vouched, never an error.
        vouch_blocking(-1, epoch());
        vouch_blocking(MAX_FD, epoch());
        assert!(!vouched_blocking(-1) && !vouched_blocking(MAX_FD));
    }

    #[test]
    fn fork_withdraws_every_vouch() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let fd = 5_000;
        vouch_blocking(fd, epoch());
        assert!(vouched_blocking(fd));
        // SAFETY: the child only calls async-signal-safe functions (an atomic load, _exit).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = if vouched_blocking(fd) { 1 } else { 0 };
            // SAFETY: ends the forked child without running the test harness's exit handlers.
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0, "fork");
        let mut status = 0;
        // SAFETY: waits for the child just forked, into a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(!vouched_blocking(fd), "the parent's vouch survived a fork");
    }
}
