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
//! **Mappings.** The kernel caps a process's mappings (VMAs) at `vm.max_map_count` (65530 by
//! default). A guard made with `mprotect(PROT_NONE)` splits the stack's mapping in two, so 100,000
//! green threads would need 200,000 mappings. Where the kernel has guard regions
//! (`MADV_GUARD_INSTALL`, Linux 6.13) the guard is a marker in the page tables instead: the
//! mapping stays whole, and adjacent stacks (same flags) even merge into one mapping. Older
//! kernels get the `mprotect` guard; [`mappings_per_stack`] says which one is in use. When the
//! kernel refuses a mapping for lack of room (`ENOMEM`), the error names `vm.max_map_count` with
//! the process's count and the limit, rather than a bare "out of memory".
//!
//! This is one of the crate's few `unsafe` modules: mapping memory, and promising corosensei that
//! the bounds we report are a real, exclusively owned stack.

use std::io::{self, Read};
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};

use corosensei::stack::{STACK_ALIGNMENT, StackPointer};

/// The guard below every stack.
pub const GUARD_SIZE: usize = 4096;

/// The page size stacks are rounded to.
const PAGE: usize = 4096;

/// `madvise` advice (Linux 6.13) that turns a range into a guard region: any access faults with
/// SIGSEGV, as `PROT_NONE` memory does, without changing the mapping's protection (so without
/// splitting it). Not in the `libc` crate yet; older kernels answer `EINVAL`.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Whether [`MADV_GUARD_INSTALL`] works here: not known yet, yes, or no (the `mprotect` guard).
static GUARD_REGIONS: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const YES: u8 = 1;
const NO: u8 = 2;

/// How many kernel mappings (VMAs, counted against `vm.max_map_count`) one stack costs at most:
/// 1 with guard regions (Linux 6.13+; stacks mapped next to each other share one, so usually far
/// fewer), 2 with an `mprotect` guard page. Probes the kernel with a small stack the first time.
pub fn mappings_per_stack() -> usize {
    if GUARD_REGIONS.load(Ordering::Relaxed) == UNKNOWN {
        // The probe's answer is recorded whether or not the stack could be made.
        let _ = Stack::new(PAGE);
    }
    match GUARD_REGIONS.load(Ordering::Relaxed) {
        YES => 1,
        _ => 2,
    }
}

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
    ///
    /// Fails with [`io::ErrorKind::OutOfMemory`] naming `vm.max_map_count` (and how many mappings
    /// the process has) if the kernel refuses the mapping or its guard for lack of room.
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
            return Err(explain("mmap", io::Error::last_os_error()));
        }
        let stack = Self {
            map: NonNull::new(map.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?,
            len,
        };
        stack.install_guard()?; // on failure `stack` unmaps on drop
        // Best effort: without THP control (a kernel built without it) stacks still work.
        // SAFETY: advice on our own mapping; MADV_NOHUGEPAGE changes no contents.
        unsafe { libc::madvise(map, len, libc::MADV_NOHUGEPAGE) };
        Ok(stack)
    }

    /// Makes the first page the guard: a guard region where the kernel has them, else
    /// `PROT_NONE` (which splits the mapping in two).
    fn install_guard(&self) -> io::Result<()> {
        let guard = self.map.as_ptr().cast::<libc::c_void>();
        if GUARD_REGIONS.load(Ordering::Relaxed) != NO {
            // SAFETY: the first page of our own fresh mapping; nothing lives there yet, and a
            // guard region only makes later accesses to it fault.
            if unsafe { libc::madvise(guard, GUARD_SIZE, MADV_GUARD_INSTALL) } == 0 {
                GUARD_REGIONS.store(YES, Ordering::Relaxed);
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(explain("madvise(MADV_GUARD_INSTALL)", e));
            }
            // A kernel before 6.13: use mprotect from now on.
            GUARD_REGIONS.store(NO, Ordering::Relaxed);
        }
        // SAFETY: the first page of our own mapping; nothing lives there yet.
        if unsafe { libc::mprotect(guard, GUARD_SIZE, libc::PROT_NONE) } != 0 {
            return Err(explain("mprotect", io::Error::last_os_error()));
        }
        Ok(())
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
pub(crate) fn usable_size(size: usize) -> io::Result<usize> {
    size.max(PAGE)
        .checked_next_multiple_of(PAGE)
        .ok_or_else(too_big)
}

/// The error for a failed `what` (mmap, mprotect, madvise) of a stack. `ENOMEM` there usually
/// means the process ran out of mappings (`vm.max_map_count`), not of memory: the error says so,
/// with the process's mapping count and the limit, and how to raise it.
fn explain(what: &str, e: io::Error) -> io::Error {
    if e.raw_os_error() != Some(libc::ENOMEM) {
        return e;
    }
    let count = mapping_count();
    let max = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    let per = match GUARD_REGIONS.load(Ordering::Relaxed) {
        YES => "at most 1 mapping (guard regions)",
        _ => "2 mappings (its guard page is mprotect'ed)",
    };
    let show = |v: Option<usize>| v.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
    let full = matches!((count, max), (Some(c), Some(m)) if c + 8 >= m);
    let msg = if full {
        format!(
            "{what} for a green-thread stack failed ({e}): the process has {} memory mappings and \
             vm.max_map_count is {}; each green thread's stack costs {per}. Raise the limit \
             (as root: sysctl vm.max_map_count=N) or run fewer green threads at once",
            show(count),
            show(max),
        )
    } else {
        format!(
            "{what} for a green-thread stack failed ({e}); the process has {} memory mappings \
             (vm.max_map_count {}), so this is address space or memory, not the mapping limit",
            show(count),
            show(max),
        )
    };
    io::Error::new(io::ErrorKind::OutOfMemory, msg)
}

/// The process's mappings: lines of /proc/self/maps, counted through a fixed buffer (with the
/// mapping limit reached, a growing heap buffer might itself fail to map).
fn mapping_count() -> Option<usize> {
    let mut f = std::fs::File::open("/proc/self/maps").ok()?;
    let mut buf = [0u8; 4096];
    let mut lines = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Some(lines),
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
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

    /// Whether the kernel lets us read the word at `addr` (process_vm_readv on ourselves: no
    /// fault, and no FOLL_FORCE, which would read PROT_NONE pages anyway).
    fn readable(addr: usize) -> bool {
        let mut word = 0u64;
        let local = libc::iovec {
            iov_base: (&mut word as *mut u64).cast(),
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: 8,
        };
        // SAFETY: the kernel writes at most 8 bytes into `word`, a live local; the remote side
        // is only read through the kernel, which checks it.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        n == 8
    }

    #[test]
    fn sizes_round_up_and_the_guard_is_inaccessible() {
        let s = Stack::new(10_000).unwrap();
        assert_eq!(s.size(), 12_288);
        assert_eq!(s.top() - s.bottom(), s.size());
        assert_eq!(s.guard().len(), GUARD_SIZE);
        assert!(!readable(s.guard().start) && !readable(s.guard().end - 8));
        assert!(readable(s.bottom()) && readable(s.top() - 8));
        assert_eq!(protection_at(s.bottom()), "rw-p");
        assert_eq!(protection_at(s.top() - 1), "rw-p");
        match mappings_per_stack() {
            // A guard region leaves the mapping whole.
            1 => assert_eq!(protection_at(s.guard().start), "rw-p"),
            _ => assert_eq!(protection_at(s.guard().start), "---p"),
        }
    }

    /// Selects the child's role in `running_out_of_mappings_names_vm_max_map_count`.
    const EXHAUST_CHILD: &str = "FLEXSC_STACK_TEST_EXHAUST_MAPPINGS";

    /// A process that has used up its mappings is told so by name: the child fills its
    /// mapping table to `vm.max_map_count` (every other page of a read-only region made
    /// PROT_NONE, each a mapping of its own) and then asks for stacks.
    #[test]
    fn running_out_of_mappings_names_vm_max_map_count() {
        if std::env::var_os(EXHAUST_CHILD).is_some() {
            exhaust_mappings_then_map_stacks();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "stack::tests::running_out_of_mappings_names_vm_max_map_count",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(EXHAUST_CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "child: {stdout}");
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("stack error: ").map(|(_, e)| e))
            .unwrap_or_else(|| panic!("no stack error reported: {stdout}"));
        assert!(line.contains("vm.max_map_count is"), "{line}");
        assert!(line.contains("memory mappings"), "{line}");
    }

    /// The child of the test above: prints the stack error and exits without returning to the
    /// test harness (which, without free mappings, could not even start a thread).
    fn exhaust_mappings_then_map_stacks() -> ! {
        const PAGES: usize = 1 << 17; // more than twice any usual vm.max_map_count
        // SAFETY: a fresh read-only reservation at an address of the kernel's choosing.
        let region = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGES * PAGE,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(region, libc::MAP_FAILED);
        // Every other page made PROT_NONE splits off a mapping, until the kernel refuses.
        for page in (1..PAGES).step_by(2) {
            let at = region as usize + page * PAGE;
            // SAFETY: a page of our own region, which nothing uses.
            if unsafe { libc::mprotect(at as *mut libc::c_void, PAGE, libc::PROT_NONE) } != 0 {
                break;
            }
        }
        // A stack mapped next to another stack could join its mapping; ask a few times so one
        // lands where it cannot.
        let mut kept = Vec::new();
        let msg = loop {
            match Stack::new(64 * 1024) {
                Ok(s) if kept.len() < 64 => kept.push(s),
                Ok(_) => break "every stack found room".to_owned(),
                Err(e) => break format!("{:?}: {e}", e.kind()),
            }
        };
        let line = format!("stack error: {msg}\n");
        // SAFETY: writes our own buffer to stdout; then leaves without unwinding or atexit
        // handlers (nothing else may need a mapping).
        unsafe {
            libc::write(1, line.as_ptr().cast(), line.len());
            libc::_exit(0)
        }
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
