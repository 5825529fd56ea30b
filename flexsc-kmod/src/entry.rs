//! The exception-less syscall entry (paper section 3.2, Figure 6): 64 bytes holding the status,
//! the syscall number, the argument count, six arguments and the return value.
//!
//! The status protocol, which every backend and the kernel module follow:
//!
//! ```text
//!  FREE --post (poster, Release)--> SUBMITTED --claim (one executor, CAS)--> BUSY
//!   ^                                                                          |
//!   +---- take (poster, after reading ret) <-- DONE <--complete (Release)------+
//! ```
//!
//! Only the poster moves an entry out of FREE and out of DONE, so posting and taking need no
//! atomic read-modify-write; executors race for SUBMITTED entries with one compare-and-swap, so a
//! call runs exactly once.

use crate::sync::{AtomicU32, Ordering, UnsafeCell};

/// Entry status values, shared with `include/flexsc.h`.
pub mod status {
    /// Owned by the poster, holds nothing.
    pub const FREE: u32 = 0;
    /// Filled in and published by the poster; any executor may claim it.
    pub const SUBMITTED: u32 = 1;
    /// Claimed by exactly one executor, which is running the call.
    pub const BUSY: u32 = 2;
    /// The return value is written; the poster may read it and free the entry.
    pub const DONE: u32 = 3;
}

/// First syscall number reserved for libflexsc's own operations (not Linux syscalls).
pub const NR_FLEXSC_BASE: u16 = 0xF000;
/// A no-op that returns 0: io_uring's NOP, the null call for backends that cannot run getppid
/// without a trap. The `threads` backend answers it without entering the kernel.
pub const NR_NOP: u16 = NR_FLEXSC_BASE;

/// The number, argument count and flags of a request (bytes 4..8 of the entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Head {
    /// The syscall number (x86_64 numbering), or one of the `NR_FLEXSC_*` operations.
    pub nr: u16,
    /// How many of `args` are meaningful (informational: the call reads what it needs).
    pub nargs: u8,
    /// Reserved, zero.
    pub flags: u8,
}

/// One exception-less system call: 64 bytes, one cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct SyscallEntry {
    status: AtomicU32,
    head: UnsafeCell<Head>,
    args: UnsafeCell<[u64; 6]>,
    ret: UnsafeCell<i64>,
}

// SAFETY: the cells are accessed only under the status protocol above: the request cells by the
// poster while FREE and by the one claimant while BUSY, the return value by the claimant while BUSY
// and by the poster once DONE, with Release/Acquire on the status ordering each hand-over.
unsafe impl Sync for SyscallEntry {}

impl Default for SyscallEntry {
    fn default() -> Self {
        Self::new()
    }
}

impl SyscallEntry {
    /// A FREE entry.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            status: AtomicU32::new(status::FREE),
            head: UnsafeCell::new(Head {
                nr: 0,
                nargs: 0,
                flags: 0,
            }),
            args: UnsafeCell::new([0; 6]),
            ret: UnsafeCell::new(0),
        }
    }

    /// A FREE entry.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            status: AtomicU32::new(status::FREE),
            head: UnsafeCell::new(Head::default()),
            args: UnsafeCell::new([0; 6]),
            ret: UnsafeCell::new(0),
        }
    }

    /// The current status (Acquire: a DONE seen here makes the return value visible).
    #[inline]
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }

    /// Poster: fills in a FREE entry and publishes it as SUBMITTED.
    ///
    /// The caller must be the entry's poster and the entry must be FREE; the status is written
    /// last, with Release, so no executor can see a half-written request (paper footnote 4).
    #[inline]
    pub fn post(&self, nr: u16, nargs: u8, args: [u64; 6]) {
        debug_assert_eq!(
            self.status.load(Ordering::Relaxed),
            status::FREE,
            "post on a used entry"
        );
        // The poster owns a FREE entry: no executor reads these cells until SUBMITTED is seen.
        self.head.with_mut(|h| {
            // SAFETY: exclusive access by the protocol above.
            unsafe {
                *h = Head {
                    nr,
                    nargs,
                    flags: 0,
                }
            }
        });
        self.args.with_mut(|a| {
            // SAFETY: exclusive access by the protocol above.
            unsafe { *a = args }
        });
        self.status.store(status::SUBMITTED, Ordering::Release);
    }

    /// Executor: claims a SUBMITTED entry. At most one claim succeeds per posting.
    #[inline]
    pub fn claim(&self) -> Option<Claim<'_>> {
        self.status
            .compare_exchange(
                status::SUBMITTED,
                status::BUSY,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| Claim {
                entry: self,
                done: false,
            })
    }

    /// Executor: completes an entry whose claim was [detached](Claim::detach).
    ///
    /// # Safety
    /// The caller must be the executor that claimed and detached this entry, and calls this once:
    /// otherwise the write of the return value races with the poster's read.
    #[inline]
    pub unsafe fn complete_detached(&self, ret: i64) {
        debug_assert_eq!(self.status.load(Ordering::Relaxed), status::BUSY);
        self.ret.with_mut(|r| {
            // SAFETY: the caller is the entry's only claimant (see above) and the poster reads
            // `ret` only after the Release store of DONE below.
            unsafe { *r = ret }
        });
        self.status.store(status::DONE, Ordering::Release);
    }

    /// Executor: takes back a claim it [detached](Claim::detach), to complete it on this frame
    /// (an entry parked at the `threads` backend's poller, run later by another syscall thread).
    ///
    /// # Safety
    /// The caller must be the executor that claimed and detached this entry (ownership may pass
    /// between its threads through a synchronizing hand-over), the entry must not be completed
    /// yet, and no other claim object for it may exist.
    #[inline]
    pub unsafe fn resume_detached(&self) -> Claim<'_> {
        debug_assert_eq!(self.status.load(Ordering::Relaxed), status::BUSY);
        Claim {
            entry: self,
            done: false,
        }
    }

    /// Poster: if the entry is DONE, reads the result and frees the entry.
    #[inline]
    pub fn take(&self) -> Option<i64> {
        if self.status.load(Ordering::Acquire) != status::DONE {
            return None;
        }
        let ret = self.ret.with(|r| {
            // SAFETY: DONE was published with Release after the executor's last write, and only
            // the poster touches a DONE entry.
            unsafe { *r }
        });
        self.status.store(status::FREE, Ordering::Release);
        Some(ret)
    }
}

/// An entry claimed by one executor. Completing it publishes the result; dropping it without
/// completing (a panic in an executor) completes it with `-ECANCELED`, so no poster waits forever.
#[derive(Debug)]
pub struct Claim<'a> {
    entry: &'a SyscallEntry,
    done: bool,
}

impl<'a> Claim<'a> {
    /// The claimed entry.
    #[inline]
    pub fn entry(&self) -> &'a SyscallEntry {
        self.entry
    }

    /// The syscall number, argument count and flags.
    #[inline]
    pub fn head(&self) -> Head {
        self.entry.head.with(|h| {
            // SAFETY: BUSY: the poster does not write the request until the entry is FREE again,
            // and the claim's Acquire made the poster's writes visible.
            unsafe { *h }
        })
    }

    /// The six arguments.
    #[inline]
    pub fn args(&self) -> [u64; 6] {
        self.entry.args.with(|a| {
            // SAFETY: as for `head`.
            unsafe { *a }
        })
    }

    /// Writes the return value and publishes DONE.
    #[inline]
    pub fn complete(mut self, ret: i64) {
        self.finish(ret);
    }

    /// Ends the claim object without completing the entry, which stays BUSY until
    /// [`SyscallEntry::complete_detached`]: for executors whose completion arrives later, on
    /// another stack frame (io_uring).
    #[inline]
    pub fn detach(mut self) {
        self.done = true;
    }

    fn finish(&mut self, ret: i64) {
        self.entry.ret.with_mut(|r| {
            // SAFETY: a BUSY entry is written only by its one claimant; the poster reads `ret`
            // only after the Release store of DONE below.
            unsafe { *r = ret }
        });
        self.entry.status.store(status::DONE, Ordering::Release);
        self.done = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.finish(-(libc::ECANCELED as i64));
        }
    }
}

#[cfg(not(loom))]
mod layout {
    use super::{Head, SyscallEntry};
    use memoffset::offset_of;

    const _: () = assert!(core::mem::size_of::<SyscallEntry>() == 64);
    const _: () = assert!(core::mem::align_of::<SyscallEntry>() == 64);
    const _: () = assert!(core::mem::size_of::<Head>() == 4);
    const _: () = assert!(offset_of!(SyscallEntry, status) == 0);
    const _: () = assert!(offset_of!(SyscallEntry, head) == 4);
    const _: () = assert!(offset_of!(Head, nr) == 0);
    const _: () = assert!(offset_of!(Head, nargs) == 2);
    const _: () = assert!(offset_of!(Head, flags) == 3);
    const _: () = assert!(offset_of!(SyscallEntry, args) == 8);
    const _: () = assert!(offset_of!(SyscallEntry, ret) == 56);
}

/// Byte offsets of the entry's fields, for the C header cross-check.
#[cfg(not(loom))]
pub mod offsets {
    use memoffset::offset_of;
    /// Offset of the status word.
    pub const STATUS: usize = offset_of!(super::SyscallEntry, status);
    /// Offset of the syscall number.
    pub const NR: usize = offset_of!(super::SyscallEntry, head) + offset_of!(super::Head, nr);
    /// Offset of the argument count.
    pub const NARGS: usize = offset_of!(super::SyscallEntry, head) + offset_of!(super::Head, nargs);
    /// Offset of the flags byte.
    pub const FLAGS: usize = offset_of!(super::SyscallEntry, head) + offset_of!(super::Head, flags);
    /// Offset of the six arguments.
    pub const ARGS: usize = offset_of!(super::SyscallEntry, args);
    /// Offset of the return value.
    pub const RET: usize = offset_of!(super::SyscallEntry, ret);
}
