//! Green-thread stacks: one anonymous mapping each, with a guard page below, reserved without
//! commit (MAP_NORESERVE: only touched pages cost memory), transparent huge pages off (a 2 MiB
//! page would commit a whole stack on first touch), and pooled: a released stack is kept for the
//! next spawn of the same size. The few most recently released keep their pages (reusing them
//! costs no system call and no page fault: spawn + join in a loop never enters the kernel); the
//! rest give their pages back with MADV_DONTNEED.
//!
//! A stack overflow runs into the guard page and faults (SIGSEGV) instead of silently writing over
//! the neighbouring mapping; [`Stack::guard`] tells a fault handler whose guard was hit.
//!
//! This is one of the crate's few `unsafe` modules: mapping memory, and promising corosensei that
//! the bounds we report are a real, exclusively owned stack.

use std::io;
use std::ops::Range;
use std::ptr::NonNull;

use corosensei::stack::{STACK_ALIGNMENT, StackPointer};

/// The guard below every stack.
pub const GUARD_SIZE: usize = 4096;

/// The page size stacks are rounded to.
const PAGE: usize = 4096;

/// A mapped green-thread stack: `[guard | usable]`, growing down from [`Stack::top`].
#[derive(Debug)]
pub struct Stack {
    /// The start of the mapping: the guard page.
    map: NonNull<u8>,
    /// Bytes mapped, guard included.
    len: usize,
}

// SAFETY: a Stack owns its mapping exclusively; moving it to another thread moves that ownership.
unsafe impl Send for Stack {}

impl Stack {
    /// Maps a stack with at least `size` usable bytes (rounded up to whole pages).
    pub fn new(size: usize) -> io::Result<Self> {
        let usable = usable_size(size)?;
        let len = usable.checked_add(GUARD_SIZE).ok_or_else(too_big)?;
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing: it
        // cannot alias any memory Rust knows about.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Self {
            map: NonNull::new(map.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?,
            len,
        };
        // SAFETY: the first page of our own mapping; nothing lives there yet.
        if unsafe { libc::mprotect(map, GUARD_SIZE, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error()); // `stack` unmaps on drop
        }
        // Best effort: without THP control (a kernel built without it) stacks still work.
        // SAFETY: advice on our own mapping; MADV_NOHUGEPAGE changes no contents.
        unsafe { libc::madvise(map, len, libc::MADV_NOHUGEPAGE) };
        Ok(stack)
    }

    /// Usable bytes (the guard excluded).
    pub fn size(&self) -> usize {
        self.len - GUARD_SIZE
    }

    /// The highest address: where the stack starts, growing down.
    pub fn top(&self) -> usize {
        self.map.as_ptr() as usize + self.len
    }

    /// The lowest usable address.
    pub fn bottom(&self) -> usize {
        self.map.as_ptr() as usize + GUARD_SIZE
    }

    /// The guard page's addresses: a fault in here is this stack's overflow.
    pub fn guard(&self) -> Range<usize> {
        self.map.as_ptr() as usize..self.bottom()
    }

    /// Gives the used pages back to the kernel (they read as zero next time); the reservation
    /// and the guard stay.
    pub fn release_memory(&self) {
        // SAFETY: the usable part of our own mapping; the caller no longer runs on this stack
        // (it is being released), so nothing reads the discarded contents.
        unsafe {
            libc::madvise(
                self.bottom() as *mut libc::c_void,
                self.size(),
                libc::MADV_DONTNEED,
            )
        };
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly our own mapping, which nothing runs on any more.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.len) };
    }
}

// SAFETY: `base` and `limit` bound a mapping this Stack owns exclusively for its lifetime, both
// page-aligned (so aligned to STACK_ALIGNMENT), and `limit` includes the guard page as corosensei
// requires.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> StackPointer {
        debug_assert_eq!(self.top() % STACK_ALIGNMENT, 0);
        StackPointer::new(self.top()).expect("a mapping is never at address 0")
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.map.as_ptr() as usize).expect("a mapping is never at address 0")
    }
}

/// The usable size a request for `size` bytes gets: whole pages, at least one.
fn usable_size(size: usize) -> io::Result<usize> {
    size.max(PAGE)
        .checked_next_multiple_of(PAGE)
        .ok_or_else(too_big)
}

fn too_big() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "stack size overflows the address space",
    )
}

/// Released stacks kept for reuse, by size (spawns mostly ask for the same few sizes).
#[derive(Debug, Default)]
pub struct StackPool {
    free: Vec<Stack>,
    max_cached: usize,
}

/// Cached stacks that keep their pages (the rest are released to the kernel).
const WARM: usize = 16;

impl StackPool {
    /// A pool keeping at most `max_cached` released stacks (the rest are unmapped).
    pub fn new(max_cached: usize) -> Self {
        Self {
            free: Vec::new(),
            max_cached,
        }
    }

    /// A stack with at least `size` usable bytes: a cached one of the same rounded size if any.
    pub fn get(&mut self, size: usize) -> io::Result<Stack> {
        let want = usable_size(size)?;
        match self.free.iter().rposition(|s| s.size() == want) {
            Some(i) => Ok(self.free.swap_remove(i)),
            None => Stack::new(want),
        }
    }

    /// Takes back a stack nothing runs on any more: the mapping is kept; its pages too if few
    /// stacks are cached, else they are released.
    pub fn put(&mut self, stack: Stack) {
        if self.free.len() < self.max_cached {
            if self.free.len() >= WARM {
                stack.release_memory();
            }
            self.free.push(stack);
        }
    }

    /// Stacks cached now.
    pub fn cached(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corosensei::{Coroutine, CoroutineResult};

    /// The protection string /proc/self/maps gives the mapping that contains `addr`.
    fn protection_at(addr: usize) -> String {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for line in maps.lines() {
            let (range, rest) = line.split_once(' ').unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let (a, b) = (
                usize::from_str_radix(a, 16).unwrap(),
                usize::from_str_radix(b, 16).unwrap(),
            );
            if (a..b).contains(&addr) {
                return rest[..4].to_string();
            }
        }
        panic!("{addr:#x} is not mapped");
    }

    #[test]
    fn sizes_round_up_and_the_guard_is_inaccessible() {
        let s = Stack::new(10_000).unwrap();
        assert_eq!(s.size(), 12_288);
        assert_eq!(s.top() - s.bottom(), s.size());
        assert_eq!(s.guard().len(), GUARD_SIZE);
        assert_eq!(protection_at(s.guard().start), "---p");
        assert_eq!(protection_at(s.bottom()), "rw-p");
        assert_eq!(protection_at(s.top() - 1), "rw-p");
    }

    #[test]
    fn pooled_stacks_are_reused_warm_first_then_released() {
        let mut pool = StackPool::new(64);
        let stacks: Vec<Stack> = (0..=WARM).map(|_| pool.get(64 * 1024).unwrap()).collect();
        let words: Vec<*mut u64> = stacks.iter().map(|s| (s.top() - 8) as *mut u64).collect();
        for &p in &words {
            // SAFETY: the last word of a stack's usable part, which nothing else uses.
            unsafe { p.write(0xdead_beef) };
        }
        for s in stacks {
            pool.put(s);
        }
        assert_eq!(pool.cached(), WARM + 1);
        // Last in, first out: the one put beyond the warm set had its pages released...
        let s = pool.get(64 * 1024 - 100).unwrap(); // rounds up to the same size
        assert_eq!(
            s.top() - 8,
            words[WARM] as usize,
            "the cached mapping is reused"
        );
        // SAFETY: as above; MADV_DONTNEED left the page mapped, reading as zero.
        assert_eq!(unsafe { words[WARM].read() }, 0);
        // ...the warm ones kept theirs.
        let w = pool.get(64 * 1024).unwrap();
        assert_eq!(w.top() - 8, words[WARM - 1] as usize);
        // SAFETY: as above.
        assert_eq!(unsafe { words[WARM - 1].read() }, 0xdead_beef);
        let other = pool.get(128 * 1024).unwrap();
        assert!(
            words.iter().all(|&p| other.top() - 8 != p as usize),
            "another size is new"
        );
    }

    #[test]
    fn a_coroutine_runs_on_it() {
        let stack = Stack::new(64 * 1024).unwrap();
        let (bottom, top) = (stack.bottom(), stack.top());
        let mut co = Coroutine::with_stack(stack, |y: &corosensei::Yielder<(), usize>, ()| {
            let local = 0u8;
            y.suspend(&local as *const u8 as usize);
            7
        });
        match co.resume(()) {
            CoroutineResult::Yield(addr) => assert!((bottom..top).contains(&addr)),
            CoroutineResult::Return(_) => panic!("yielded first"),
        }
        assert!(matches!(co.resume(()), CoroutineResult::Return(7)));
    }

    #[test]
    fn absurd_sizes_are_refused() {
        assert_eq!(
            Stack::new(usize::MAX).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
