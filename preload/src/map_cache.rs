//! The mapping cache (`FLEXSC_MAP_CACHE`, on unless `0`): a read-only shared mapping of a
//! regular file that the program unmaps stays mapped, idle, and the program's next `mmap` of
//! the same range of the same file gets it back without a system call.
//!
//! Why: a server that maps each file it sends (Apache, through APR, maps every static file it
//! serves `PROT_READ, MAP_SHARED` and unmaps it after the response) pays per request an `munmap`
//! whose TLB shootdown interrupts every other CPU the process runs on, and takes `mmap_lock` for
//! writing twice; under libflexsc the carriers keep the process on every CPU, so every `munmap`
//! interrupts them all (docs/results.md, "The mapping cache").
//!
//! What is cached: `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off)` exactly, of at most
//! [`MAX_LEN`] bytes, where `fd` is a regular file opened for reading on a local file system
//! (ext2/3/4, XFS, Btrfs, F2FS, tmpfs, overlayfs: the page cache is the file's truth there, where
//! a network file system revalidates at `mmap`). The key is the file (device, inode), offset and
//! length. A shared mapping shows the page cache, so a cached one shows what a new one would,
//! writes and truncations included; a file replaced under its name is another inode.
//!
//! What differs from the kernel's, and is documented (docs/usage.md):
//! - after `munmap`, the range stays readable (an idle mapping) instead of faulting;
//! - an idle mapping keeps its file open (the space of a deleted file, a busy unmount) until it
//!   expires: after [`IDLE_NS`](flexsc_threads::map_cache::IDLE_NS) idle, checked by every
//!   `mmap` and `munmap` and by a thread (`flexsc-mapcache`) that wakes every half second from
//!   the first time a mapping went idle.
//!
//! The program's own changes to a range win: a fixed mapping over it, `mremap` or `mprotect`
//! untracks the mappings there (idle ones are unmapped first), as does an `munmap` that is not
//! exactly one of its mappings. `syscall(SYS_munmap, ...)` and its kin come here too; only a
//! raw `syscall` instruction is not seen.
//!
//! Exported: `mmap`, `mmap64`, `munmap`, `mremap`, `mprotect`. Every other mapping passes
//! straight to the kernel.

use std::cell::UnsafeCell;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use flexsc_threads::kmod::raw;
use flexsc_threads::map_cache::{IDLE_NS, Key, MapCache};
use libc::{c_int, c_void, off_t, size_t};

use crate::io::settle;
use crate::rt::InLib;

/// The longest mapping cached.
const MAX_LEN: usize = 4 << 20;

/// File systems whose mappings are cached (`statfs`'s `f_type`).
const LOCAL_FS: [i64; 6] = [
    0xEF53,      // ext2/3/4
    0x5846_5342, // XFS
    0x9123_683E, // Btrfs
    0xF2F5_2010, // F2FS
    0x0102_1994, // tmpfs
    0x794C_7630, // overlayfs
];

/// The devices seen, and whether their file system is one of [`LOCAL_FS`].
const DEVICES: usize = 16;

struct State {
    cache: MapCache,
    devices: [(u64, bool); DEVICES],
    known: usize,
}

/// The state, behind [`LOCK`].
struct Shared(UnsafeCell<Option<State>>);

// SAFETY: the state is only reached through `with`, which holds `LOCK`.
unsafe impl Sync for Shared {}

static SHARED: Shared = Shared(UnsafeCell::new(None));
/// A spin lock: the sections are short, make no system calls but the unmapping of idle
/// mappings, and must not allocate or park (an allocator's own `munmap` may come here).
static LOCK: AtomicBool = AtomicBool::new(false);
/// Mappings tracked: while 0, `munmap` and fixed mappings skip the lock.
static TRACKED: AtomicUsize = AtomicUsize::new(0);
/// 0: not read yet; 1: on; 2: off.
static ENABLED: AtomicU8 = AtomicU8::new(0);
/// Whether the expiry thread runs (in this process: a fork child has none).
static EXPIRING: AtomicBool = AtomicBool::new(false);

struct Locked;

impl Locked {
    fn take() -> Self {
        let mut spins = 0u32;
        while LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins % 64 == 0 {
                // The holder may have been descheduled.
                raw::sched_yield();
            } else {
                std::hint::spin_loop();
            }
        }
        Locked
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
    }
}

/// Runs `f` on the state, locked; the state is made at the first call (its one allocation).
fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let _locked = Locked::take();
    // SAFETY: `LOCK` is held: no other reference to the state exists.
    let state = unsafe { &mut *SHARED.0.get() }.get_or_insert_with(|| State {
        cache: MapCache::new(),
        devices: [(0, false); DEVICES],
        known: 0,
    });
    let r = f(state);
    TRACKED.store(state.cache.len(), Ordering::Relaxed);
    r
}

fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let _lib = InLib::enter();
            // Once: two sets of fork handlers would take the lock twice at a fork.
            static FIRST: Once = Once::new();
            FIRST.call_once(|| {
                let on = std::env::var_os("FLEXSC_MAP_CACHE")
                    .is_none_or(|v| !matches!(v.to_str().map(str::trim), Some("0" | "off")));
                // SAFETY: registers plain functions; without them a fork could copy a held
                // lock, so the cache stays off if it fails.
                let on = on
                    && unsafe { libc::pthread_atfork(Some(lock), Some(unlock), Some(child)) } == 0;
                ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            });
            ENABLED.load(Ordering::Relaxed) == 1
        }
    }
}

extern "C" fn lock() {
    std::mem::forget(Locked::take());
}

extern "C" fn unlock() {
    drop(Locked);
}

/// In a fork child: it has no expiry thread, and the parent's idle mappings are not its to
/// keep (unmapped now, as the kernel would have them), so a child that never maps again holds
/// none of the parent's files.
extern "C" fn child() {
    EXPIRING.store(false, Ordering::Relaxed);
    // SAFETY: `lock` took the lock before the fork, in this (the only) thread.
    if let Some(s) = unsafe { &mut *SHARED.0.get() } {
        s.cache.drain(&mut unmap);
        TRACKED.store(s.cache.len(), Ordering::Relaxed);
    }
    unlock();
}

/// Unmaps an idle mapping for good.
fn unmap(addr: usize, len: usize) {
    // SAFETY: the range is an idle mapping the table owns: nothing of the program's is there.
    unsafe { raw::syscall(libc::SYS_munmap, [addr as u64, len as u64, 0]) };
}

fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec we own (the vDSO's coarse clock: no system call).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The key of a mapping of `fd` that may be cached, or `None`.
fn key_of(fd: c_int, offset: off_t, len: usize) -> Option<Key> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes the struct we own; a bad fd only fails.
    let r = unsafe { raw::syscall(libc::SYS_fstat, [fd as u64, &raw mut st as u64, 0]) };
    if r < 0 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    // SAFETY: F_GETFL reads nothing of ours.
    let fl = unsafe { raw::syscall(libc::SYS_fcntl, [fd as u64, libc::F_GETFL as u64, 0]) };
    // A cached mapping skips the kernel's checks: the descriptor must be one `mmap` accepts.
    if fl < 0
        || fl & i64::from(libc::O_PATH) != 0
        || fl & i64::from(libc::O_ACCMODE) == i64::from(libc::O_WRONLY)
    {
        return None;
    }
    let dev = st.st_dev;
    let local = with(|s| {
        s.devices[..s.known]
            .iter()
            .find(|d| d.0 == dev)
            .map(|d| d.1)
    });
    let local = local.unwrap_or_else(|| {
        // SAFETY: as fstat.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatfs writes the struct we own.
        let r = unsafe { raw::syscall(libc::SYS_fstatfs, [fd as u64, &raw mut fs as u64, 0]) };
        let local = r == 0 && LOCAL_FS.contains(&fs.f_type);
        with(|s| {
            if s.known < DEVICES {
                s.devices[s.known] = (dev, local);
                s.known += 1;
            }
        });
        local
    });
    local.then_some(Key {
        dev,
        ino: st.st_ino,
        offset: offset as u64,
        len,
    })
}

/// `mmap` through the cache; a raw result.
fn map(addr: usize, len: usize, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> i64 {
    let fixed = flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0;
    if fixed && TRACKED.load(Ordering::Relaxed) > 0 {
        with(|s| s.cache.forget(addr, len, &mut unmap));
    }
    let cacheable = addr == 0
        && prot == libc::PROT_READ
        && flags == libc::MAP_SHARED
        && fd >= 0
        && (1..=MAX_LEN).contains(&len)
        && enabled();
    let key = if cacheable {
        key_of(fd, off, len)
    } else {
        None
    };
    if let Some(key) = key {
        let hit = with(|s| {
            s.cache.expire(now(), &mut unmap);
            s.cache.take(&key)
        });
        if let Some(a) = hit {
            return a as i64;
        }
    }
    let args = [
        addr,
        len,
        prot as usize,
        flags as usize,
        fd as usize,
        off as usize,
    ];
    // SAFETY: the caller's mapping request, unchanged.
    let r = unsafe { raw::syscall6(libc::SYS_mmap as u64, &args.map(|a| a as u64)) };
    if let (Some(key), true) = (key, r >= 0) {
        with(|s| s.cache.insert(r as usize, key));
    }
    r
}

/// `munmap` through the cache; a raw result.
fn unmap_call(addr: usize, len: usize) -> i64 {
    if TRACKED.load(Ordering::Relaxed) > 0 {
        let kept = with(|s| {
            let now = now();
            let kept = s.cache.release(addr, len, now, &mut unmap);
            s.cache.expire(now, &mut unmap);
            kept
        });
        if kept {
            start_expiry();
            return 0;
        }
    }
    // SAFETY: the caller's unmapping, unchanged.
    unsafe { raw::syscall(libc::SYS_munmap, [addr as u64, len as u64, 0]) }
}

/// Untracks what the program is about to change in `[addr, addr + len)`.
fn forget(addr: usize, len: usize) {
    if TRACKED.load(Ordering::Relaxed) > 0 {
        with(|s| s.cache.forget(addr, len, &mut unmap));
    }
}

/// Starts the thread that unmaps expired idle mappings while the program makes no mapping call.
fn start_expiry() {
    if EXPIRING.swap(true, Ordering::Relaxed) {
        return;
    }
    let _lib = InLib::enter();
    let spawned = flexsc_threads::kmod::os_thread::spawn("flexsc-mapcache", 64 << 10, || {
        loop {
            std::thread::sleep(std::time::Duration::from_nanos(IDLE_NS / 2));
            if TRACKED.load(Ordering::Relaxed) > 0 {
                with(|s| s.cache.expire(now(), &mut unmap));
            }
        }
    });
    if spawned.is_err() {
        // Expiry then waits for the program's next mapping call; try again at the next idle.
        EXPIRING.store(false, Ordering::Relaxed);
    }
}

/// The mapping calls of `syscall()`, through the cache: `Some(raw result)`, or `None` for any
/// other number.
pub(crate) fn syscall(nr: i64, a: &[u64; 6]) -> Option<i64> {
    let u = |i: usize| a[i] as usize;
    match nr {
        libc::SYS_mmap => Some(map(
            u(0),
            u(1),
            a[2] as c_int,
            a[3] as c_int,
            a[4] as c_int,
            a[5] as off_t,
        )),
        libc::SYS_munmap => Some(unmap_call(u(0), u(1))),
        libc::SYS_mremap | libc::SYS_mprotect => {
            forget(u(0), u(1));
            if nr == libc::SYS_mremap && a[3] & libc::MREMAP_FIXED as u64 != 0 {
                forget(u(4), u(2));
            }
            // SAFETY: the caller's request, unchanged.
            Some(unsafe { raw::syscall6(nr as u64, a) })
        }
        _ => None,
    }
}

fn pointer(r: i64) -> *mut c_void {
    if r < 0 {
        settle(r);
        libc::MAP_FAILED
    } else {
        r as *mut c_void
    }
}

/// `mmap`, through the mapping cache.
///
/// # Safety
/// As `mmap(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    pointer(map(addr as usize, len, prot, flags, fd, off))
}

/// `mmap64`, glibc's other name for `mmap` on x86_64.
///
/// # Safety
/// As `mmap(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    pointer(map(addr as usize, len, prot, flags, fd, off))
}

/// `munmap`, through the mapping cache.
///
/// # Safety
/// As `munmap(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: size_t) -> c_int {
    settle(unmap_call(addr as usize, len)) as c_int
}

/// `mremap`: the cache untracks the ranges first. Variadic in C: the fifth argument arrives in
/// its register and is read only with `MREMAP_FIXED`, as the kernel does.
///
/// # Safety
/// As `mremap(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: size_t,
    new_len: size_t,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let a = [
        old as u64,
        old_len as u64,
        new_len as u64,
        flags as u64,
        new_addr as u64,
        0,
    ];
    pointer(syscall(libc::SYS_mremap, &a).expect("a mapping call"))
}

/// `mprotect`: the cache untracks the range first.
///
/// # Safety
/// As `mprotect(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mprotect(addr: *mut c_void, len: size_t, prot: c_int) -> c_int {
    forget(addr as usize, len);
    // SAFETY: the caller's request, unchanged.
    let r = unsafe { raw::syscall(libc::SYS_mprotect, [addr as u64, len as u64, prot as u64]) };
    settle(r) as c_int
}
