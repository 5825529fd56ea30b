//! The syscall area: every syscall page of a registration, grouped per posting core, with the
//! control words beside them (page locks, posting hints, completion doorbells, and each entry's
//! interrupt state).

use crate::doorbell::Doorbell;
use crate::entry::SyscallEntry;
use crate::interrupt::Interrupt;
use crate::page::{ENTRIES_PER_PAGE, PageControl, SyscallPage};
use crate::sync::{AtomicBool, Ordering};

/// Per posting core: its completion doorbell (flexsc_wait sleeps on it) and its ownership flag.
#[derive(Debug, Default)]
pub struct CoreControl {
    /// Rung by executors after completing one of this core's entries.
    pub completions: Doorbell,
    attached: AtomicBool,
}

/// All syscall pages of a registration.
#[derive(Debug)]
pub struct SyscallArea {
    pages: Box<[SyscallPage]>,
    controls: Box<[PageControl]>,
    /// One per entry, in entry order (page after page).
    interrupts: Box<[Interrupt]>,
    cores: Box<[CoreControl]>,
    pages_per_core: usize,
}

impl SyscallArea {
    /// `cores` x `pages_per_core` pages of FREE entries.
    pub fn new(cores: usize, pages_per_core: usize) -> Self {
        let n = cores * pages_per_core;
        Self {
            pages: (0..n).map(|_| SyscallPage::new()).collect(),
            controls: (0..n).map(|_| PageControl::new()).collect(),
            interrupts: (0..n * ENTRIES_PER_PAGE)
                .map(|_| Interrupt::new())
                .collect(),
            cores: (0..cores).map(|_| CoreControl::default()).collect(),
            pages_per_core,
        }
    }

    /// Number of posting cores.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// Syscall pages per core.
    pub fn pages_per_core(&self) -> usize {
        self.pages_per_core
    }

    /// Every page, core after core.
    pub fn pages(&self) -> &[SyscallPage] {
        &self.pages
    }

    /// The control words of every page, in page order (one array: the kernel module pins it).
    pub fn controls(&self) -> &[PageControl] {
        &self.controls
    }

    /// Control words of page `i` (index into [`Self::pages`]).
    pub fn control(&self, i: usize) -> &PageControl {
        &self.controls[i]
    }

    /// The posting core that owns page `i`.
    pub fn core_of_page(&self, i: usize) -> usize {
        i / self.pages_per_core
    }

    /// Per-core control.
    pub fn core(&self, core: usize) -> &CoreControl {
        &self.cores[core]
    }

    /// The entry with global slot number `slot` of `core` (slot = page * 64 + index).
    #[inline]
    pub fn entry(&self, core: usize, slot: u32) -> &SyscallEntry {
        let slot = slot as usize;
        let page = core * self.pages_per_core + slot / ENTRIES_PER_PAGE;
        &self.pages[page].entries[slot % ENTRIES_PER_PAGE]
    }

    /// The page control of the page holding `slot` of `core`.
    #[inline]
    pub fn control_of(&self, core: usize, slot: u32) -> &PageControl {
        &self.controls[core * self.pages_per_core + slot as usize / ENTRIES_PER_PAGE]
    }

    /// The interrupt state of `slot` of `core`.
    #[inline]
    pub fn interrupt(&self, core: usize, slot: u32) -> &Interrupt {
        &self.interrupts[core * self.pages_per_core * ENTRIES_PER_PAGE + slot as usize]
    }

    /// The interrupt state of `entry`, an entry of this area.
    ///
    /// # Panics
    ///
    /// If `entry` is not one of this area's entries.
    #[inline]
    pub fn interrupt_of(&self, entry: &SyscallEntry) -> &Interrupt {
        // The pages are one array of 64-entry pages with no gaps: an entry's offset from the first
        // one, in entries, is its index in `interrupts`.
        let offset =
            (entry as *const SyscallEntry as usize).wrapping_sub(self.pages.as_ptr() as usize);
        &self.interrupts[offset / size_of::<SyscallEntry>()]
    }

    /// The index of `entry`, an entry of this area, among all its entries (page after page).
    #[inline]
    pub(crate) fn index_of(&self, entry: &SyscallEntry) -> usize {
        let offset =
            (entry as *const SyscallEntry as usize).wrapping_sub(self.pages.as_ptr() as usize);
        let i = offset / size_of::<SyscallEntry>();
        assert!(i < self.interrupts.len(), "not an entry of this area");
        i
    }

    /// The entry at `index` (see [`Self::index_of`]).
    #[inline]
    pub(crate) fn entry_at(&self, index: usize) -> &SyscallEntry {
        &self.pages[index / ENTRIES_PER_PAGE].entries[index % ENTRIES_PER_PAGE]
    }

    /// Marks `core` as having a poster; false if it already has one.
    pub(crate) fn attach(&self, core: usize) -> bool {
        !self.cores[core].attached.swap(true, Ordering::AcqRel)
    }

    /// Releases `core`'s poster slot.
    pub(crate) fn detach(&self, core: usize) {
        self.cores[core].attached.store(false, Ordering::Release);
    }
}
