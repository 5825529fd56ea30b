//! The syscall page (paper section 3.2): a 4 KiB, page-aligned table of 64 entries, and the page
//! lock a draining syscall thread holds while it issues the page's submitted entries (section 3.6).
//!
//! The lock and the posting hint live beside the page, in a [`PageControl`], because the page
//! itself is exactly 64 entries: it is the ABI shared with the kernel module and C users.

use crate::entry::{Claim, SyscallEntry};
use crate::sync::{AtomicU32, Ordering};

/// Entries per syscall page.
pub const ENTRIES_PER_PAGE: usize = 64;
/// Bytes per syscall page.
pub const PAGE_SIZE: usize = 4096;

/// A syscall page: 64 entries, 4 KiB, page aligned.
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct SyscallPage {
    /// The entries, in slot order.
    pub entries: [SyscallEntry; ENTRIES_PER_PAGE],
}

impl Default for SyscallPage {
    fn default() -> Self {
        Self::new()
    }
}

impl SyscallPage {
    /// A page of FREE entries.
    pub fn new() -> Self {
        Self {
            entries: core::array::from_fn(|_| SyscallEntry::new()),
        }
    }
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<SyscallPage>() == PAGE_SIZE);
#[cfg(not(loom))]
const _: () = assert!(core::mem::align_of::<SyscallPage>() == PAGE_SIZE);

/// Per-page control words kept off the page: the page lock and the posting hint.
///
/// Shared with the kernel module as `struct flexsc_page_control` (`include/flexsc_ioctl.h`): it
/// reads `posted` and adds to `completed`; see [`control_offsets`].
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct PageControl {
    lock: AtomicU32,
    /// Bumped by the page's single poster after each post (a load and a store, no RMW).
    posted: AtomicU32,
    /// The `posted` value the last complete drain started from (written under the lock).
    drained: AtomicU32,
    /// Bumped by executors after completing entries of the page, so the poster looks only at
    /// pages with news instead of reading lines the executors are still writing.
    completed: AtomicU32,
}

/// Byte offsets of [`PageControl`]'s words, for the C header cross-check.
#[cfg(not(loom))]
pub mod control_offsets {
    use memoffset::offset_of;
    /// The page lock.
    pub const LOCK: usize = offset_of!(super::PageControl, lock);
    /// The posting count.
    pub const POSTED: usize = offset_of!(super::PageControl, posted);
    /// The drain mark.
    pub const DRAINED: usize = offset_of!(super::PageControl, drained);
    /// The completion count.
    pub const COMPLETED: usize = offset_of!(super::PageControl, completed);
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<PageControl>() == 64);

impl PageControl {
    /// Unlocked, nothing posted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Poster: notes that an entry was posted, after its SUBMITTED store.
    ///
    /// Single producer, so a plain load and store suffice.
    #[inline]
    pub fn note_posted(&self) {
        let n = self.posted.load(Ordering::Relaxed);
        self.posted.store(n.wrapping_add(1), Ordering::Release);
    }

    /// Whether entries may have been posted since the last complete drain (a hint: a drainer
    /// that sees `false` may skip the page; entries are only ever claimed by CAS).
    #[inline]
    pub fn has_work(&self) -> bool {
        self.posted.load(Ordering::Acquire) != self.drained.load(Ordering::Relaxed)
    }

    /// Executor: `n` entries of this page were completed (after their DONE stores).
    #[inline]
    pub fn note_completed(&self, n: u32) {
        self.completed.fetch_add(n, Ordering::Release);
    }

    /// Poster: the completion count; a change since the last look means new DONE entries.
    #[inline]
    pub fn completed(&self) -> u32 {
        self.completed.load(Ordering::Acquire)
    }

    /// Takes the page lock if no other executor holds it.
    #[inline]
    pub fn try_lock(&self) -> Option<PageGuard<'_>> {
        self.lock
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| PageGuard { ctl: self })
    }
}

/// The page lock, held while issuing a page's submitted entries.
#[derive(Debug)]
pub struct PageGuard<'a> {
    ctl: &'a PageControl,
}

/// What a drain step asks of the drain loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep issuing this page's entries.
    Continue,
    /// Stop and release the page now (the executor is about to block); the page stays marked as
    /// having work so a sibling resumes where this one left off.
    Release,
}

impl PageGuard<'_> {
    /// Issues every SUBMITTED entry of `page` through `exec`, each claimed exactly once.
    ///
    /// Returns the number of entries claimed. If `exec` returns [`Step::Release`] the lock is
    /// released before returning and the page is not marked drained. Otherwise the page is marked
    /// drained up to the posting count read before the scan, so posts that raced with the scan
    /// are found by the next one.
    pub fn drain<'p>(
        self,
        page: &'p SyscallPage,
        mut exec: impl FnMut(Claim<'p>) -> Step,
    ) -> usize {
        let snapshot = self.ctl.posted.load(Ordering::Acquire);
        // Two passes: read all 64 statuses first (independent loads, so cache misses on lines
        // the poster just wrote overlap), then claim and run the submitted ones in order.
        let mut submitted = 0u64;
        for (i, entry) in page.entries.iter().enumerate() {
            if entry.status() == crate::entry::status::SUBMITTED {
                submitted |= 1 << i;
            }
        }
        let mut rest = submitted;
        while rest != 0 {
            prefetch_for_write(&page.entries[rest.trailing_zeros() as usize]);
            rest &= rest - 1;
        }
        let mut claimed = 0;
        while submitted != 0 {
            let entry = &page.entries[submitted.trailing_zeros() as usize];
            submitted &= submitted - 1;
            if let Some(claim) = entry.claim() {
                claimed += 1;
                if exec(claim) == Step::Release {
                    return claimed;
                }
            }
        }
        self.ctl.drained.store(snapshot, Ordering::Relaxed);
        claimed
    }
}

/// Asks for `entry`'s cache line in exclusive state ahead of a claim or a take (a hint: no effect
/// on correctness; none under loom).
#[inline(always)]
pub fn prefetch_for_write(entry: &SyscallEntry) {
    #[cfg(not(loom))]
    crate::raw::prefetch_for_write((entry as *const SyscallEntry).cast());
    #[cfg(loom)]
    let _ = entry;
}

impl Drop for PageGuard<'_> {
    fn drop(&mut self) {
        self.ctl.lock.store(0, Ordering::Release);
    }
}
