//! The bookkeeping of a mapping cache: read-only shared mappings of file ranges that a program
//! unmaps are kept mapped (idle) and handed back at its next mapping of the same range of the
//! same file, so neither the `munmap` (whose TLB shootdown interrupts every other CPU running the
//! process) nor the next `mmap` and its page faults reach the kernel. The preload
//! (`preload/src/map_cache.rs`) makes the system calls and decides what may be cached; this
//! table only says which mapping is whose.
//!
//! A `MAP_SHARED` mapping shows the file's page cache, so an idle mapping of the same file range
//! shows exactly what a fresh one would, writes and truncations included. What differs is stated
//! where the preload documents the cache: an idle mapping stays readable after the program's
//! `munmap`, and keeps its file open until it expires.

/// Mappings tracked at most (in use and idle); past it new mappings are not tracked.
pub const CAPACITY: usize = 1024;
/// Idle mappings kept at most; past it the longest idle is unmapped.
pub const MAX_IDLE: usize = 512;
/// How long a mapping may stay idle before it is unmapped (nanoseconds).
pub const IDLE_NS: u64 = 1_000_000_000;

const PAGE: usize = 4096;

/// Which file range a mapping shows: the file (device and inode), offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// `st_dev` of the file.
    pub dev: u64,
    /// `st_ino` of the file.
    pub ino: u64,
    /// The mapping's file offset.
    pub offset: u64,
    /// The mapping's length as asked (rounded up to pages where the table compares ranges).
    pub len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: usize,
    key: Key,
    /// `None` while the program holds the mapping; else since when it is idle.
    idle_since: Option<u64>,
}

impl Entry {
    fn end(&self) -> usize {
        self.addr + pages(self.key.len)
    }

    fn overlaps(&self, addr: usize, len: usize) -> bool {
        self.addr < addr.saturating_add(pages(len)) && addr < self.end()
    }
}

fn pages(len: usize) -> usize {
    len.div_ceil(PAGE).saturating_mul(PAGE)
}

/// The table: the tracked mappings, each in use by the program or idle.
#[derive(Debug)]
pub struct MapCache {
    entries: Vec<Entry>,
    idle: usize,
}

impl Default for MapCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MapCache {
    /// An empty table (its storage is allocated once, here).
    pub fn new() -> Self {
        Self {
            entries: Vec::with_capacity(CAPACITY),
            idle: 0,
        }
    }

    /// Mappings tracked, in use and idle.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Idle mappings.
    pub fn idle(&self) -> usize {
        self.idle
    }

    /// An idle mapping of `key`, now the program's (the most recently idled: its pages are the
    /// likeliest still in the TLB and caches), or `None`.
    pub fn take(&mut self, key: &Key) -> Option<usize> {
        let i = (0..self.entries.len())
            .filter(|&i| self.entries[i].key == *key)
            .filter_map(|i| self.entries[i].idle_since.map(|t| (t, i)))
            .max()?
            .1;
        self.entries[i].idle_since = None;
        self.idle -= 1;
        Some(self.entries[i].addr)
    }

    /// Tracks the program's new mapping of `key` at `addr`; `false` (not tracked) when full.
    pub fn insert(&mut self, addr: usize, key: Key) -> bool {
        if self.entries.len() == CAPACITY {
            return false;
        }
        self.entries.push(Entry {
            addr,
            key,
            idle_since: None,
        });
        true
    }

    /// The program unmaps `[addr, addr + len)` at time `now`. `true`: it is exactly one of the
    /// mappings it holds, which is idle from now on (the `munmap` is done). `false`: the caller
    /// unmaps the range itself; the mappings overlapping it are no longer tracked (idle ones
    /// are unmapped through `unmap` first, in whole).
    pub fn release(
        &mut self,
        addr: usize,
        len: usize,
        now: u64,
        unmap: &mut dyn FnMut(usize, usize),
    ) -> bool {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.idle_since.is_none() && e.addr == addr && pages(e.key.len) == pages(len))
        {
            e.idle_since = Some(now);
            self.idle += 1;
            return true;
        }
        self.forget(addr, len, unmap);
        false
    }

    /// The program is about to change `[addr, addr + len)` itself (a fixed mapping over it,
    /// `mremap`, `mprotect`, an `munmap` that is not one of its mappings): the mappings it holds
    /// there are no longer tracked (they are its own from now on), idle ones are unmapped
    /// through `unmap`.
    pub fn forget(&mut self, addr: usize, len: usize, unmap: &mut dyn FnMut(usize, usize)) {
        let mut i = 0;
        while i < self.entries.len() {
            let e = self.entries[i];
            if e.overlaps(addr, len) {
                if e.idle_since.is_some() {
                    unmap(e.addr, pages(e.key.len));
                    self.idle -= 1;
                }
                self.entries.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Unmaps (through `unmap`) the mappings idle for more than [`IDLE_NS`] at `now`, and the
    /// longest idle past [`MAX_IDLE`].
    pub fn expire(&mut self, now: u64, unmap: &mut dyn FnMut(usize, usize)) {
        let mut i = 0;
        while i < self.entries.len() {
            let e = self.entries[i];
            match e.idle_since {
                Some(t) if now.saturating_sub(t) > IDLE_NS => {
                    unmap(e.addr, pages(e.key.len));
                    self.idle -= 1;
                    self.entries.swap_remove(i);
                }
                _ => i += 1,
            }
        }
        while self.idle > MAX_IDLE {
            let (_, i) = (0..self.entries.len())
                .filter_map(|i| self.entries[i].idle_since.map(|t| (t, i)))
                .min()
                .expect("idle > 0");
            let e = self.entries.swap_remove(i);
            unmap(e.addr, pages(e.key.len));
            self.idle -= 1;
        }
    }

    /// Unmaps every idle mapping (through `unmap`).
    pub fn drain(&mut self, unmap: &mut dyn FnMut(usize, usize)) {
        self.expire(u64::MAX, unmap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64, len: usize) -> Key {
        Key {
            dev: 1,
            ino,
            offset: 0,
            len,
        }
    }

    fn unmapped(f: impl FnOnce(&mut dyn FnMut(usize, usize))) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        f(&mut |a, l| v.push((a, l)));
        v
    }

    #[test]
    fn an_unmapped_mapping_is_handed_back_for_the_same_range_only() {
        let mut c = MapCache::new();
        assert!(c.insert(0x10000, key(7, 4096)));
        assert_eq!(c.take(&key(7, 4096)), None, "in use: not handed out");
        assert!(unmapped(|u| assert!(c.release(0x10000, 4096, 5, u))).is_empty());
        assert_eq!(c.idle(), 1);
        assert_eq!(c.take(&key(8, 4096)), None, "another file");
        assert_eq!(c.take(&key(7, 8192)), None, "another length");
        let mut other_offset = key(7, 4096);
        other_offset.offset = 4096;
        assert_eq!(c.take(&other_offset), None, "another offset");
        assert_eq!(c.take(&key(7, 4096)), Some(0x10000));
        assert_eq!(c.idle(), 0);
        assert_eq!(c.take(&key(7, 4096)), None, "handed out once");
    }

    #[test]
    fn the_length_compares_in_pages() {
        let mut c = MapCache::new();
        c.insert(0x10000, key(7, 100));
        assert!(unmapped(|u| assert!(c.release(0x10000, 4096, 1, u))).is_empty());
        assert_eq!(c.take(&key(7, 100)), Some(0x10000));
    }

    #[test]
    fn the_most_recently_idled_is_handed_back_first() {
        let mut c = MapCache::new();
        c.insert(0x10000, key(7, 4096));
        c.insert(0x20000, key(7, 4096));
        unmapped(|u| assert!(c.release(0x20000, 4096, 1, u)));
        unmapped(|u| assert!(c.release(0x10000, 4096, 2, u)));
        assert_eq!(c.take(&key(7, 4096)), Some(0x10000));
        assert_eq!(c.take(&key(7, 4096)), Some(0x20000));
    }

    #[test]
    fn an_unmap_of_anything_else_untracks_what_it_overlaps() {
        let mut c = MapCache::new();
        c.insert(0x10000, key(1, 8192)); // in use, partly unmapped below
        c.insert(0x20000, key(2, 4096)); // idle, inside the range
        c.insert(0x40000, key(3, 4096)); // idle, outside
        unmapped(|u| assert!(c.release(0x20000, 4096, 1, u)));
        unmapped(|u| assert!(c.release(0x40000, 4096, 1, u)));
        let gone = unmapped(|u| assert!(!c.release(0x11000, 0x10000, 2, u)));
        assert_eq!(
            gone,
            vec![(0x20000, 4096)],
            "the idle one in the range, whole"
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c.idle(), 1);
        // The partly unmapped one is the program's own now: its later unmap passes through.
        assert!(unmapped(|u| assert!(!c.release(0x10000, 4096, 3, u))).is_empty());
        assert_eq!(c.take(&key(3, 4096)), Some(0x40000));
    }

    #[test]
    fn a_fixed_mapping_or_mprotect_over_a_mapping_untracks_it() {
        let mut c = MapCache::new();
        c.insert(0x10000, key(1, 4096));
        c.insert(0x20000, key(2, 4096));
        unmapped(|u| assert!(c.release(0x20000, 4096, 1, u)));
        let gone = unmapped(|u| c.forget(0x10000, 0x20000, u));
        assert_eq!(gone, vec![(0x20000, 4096)]);
        assert!(c.is_empty());
        assert_eq!(c.take(&key(2, 4096)), None);
        // A range that only touches a mapping's end does not overlap it.
        c.insert(0x10000, key(1, 4096));
        unmapped(|u| c.forget(0x11000, 4096, u));
        unmapped(|u| c.forget(0xf000, 4096, u));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn idle_mappings_expire_and_are_bounded() {
        let mut c = MapCache::new();
        c.insert(0x10000, key(1, 4096));
        c.insert(0x20000, key(2, 4096));
        unmapped(|u| assert!(c.release(0x10000, 4096, 10, u)));
        unmapped(|u| assert!(c.release(0x20000, 4096, 20 + IDLE_NS / 2, u)));
        assert!(unmapped(|u| c.expire(10 + IDLE_NS, u)).is_empty());
        let gone = unmapped(|u| c.expire(11 + IDLE_NS, u));
        assert_eq!(gone, vec![(0x10000, 4096)]);
        assert_eq!((c.len(), c.idle()), (1, 1));

        let mut c = MapCache::new();
        for i in 0..MAX_IDLE + 3 {
            let addr = 0x100000 + i * 0x1000;
            assert!(c.insert(addr, key(i as u64, 4096)));
            unmapped(|u| assert!(c.release(addr, 4096, i as u64, u)));
        }
        let gone = unmapped(|u| c.expire(MAX_IDLE as u64 + 3, u));
        assert_eq!(
            gone,
            vec![(0x100000, 4096), (0x101000, 4096), (0x102000, 4096)],
            "the longest idle"
        );
        assert_eq!(c.idle(), MAX_IDLE);
        assert_eq!(unmapped(|u| c.drain(u)).len(), MAX_IDLE);
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_table_tracks_no_more() {
        let mut c = MapCache::new();
        for i in 0..CAPACITY {
            assert!(c.insert(i * 0x1000, key(1, 4096)));
        }
        assert!(!c.insert(CAPACITY * 0x1000, key(1, 4096)));
        assert_eq!(c.len(), CAPACITY);
    }
}
