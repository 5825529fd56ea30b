//! A green thread's identity and scheduling attributes: `gettid`, CPU affinity, scheduling
//! policy and priority, and its CPU-time clock.
//!
//! The kernel only knows the carriers, so what glibc would read or set through a thread's kernel
//! tid is kept here, per green thread, and reported back; none of it changes where or in which
//! order the runtime runs green threads:
//!
//! - `gettid()` on a green thread is [`GREEN_TID_BASE`] plus a number given out per green thread
//!   (1, 2, ... per process), stable for its life and distinct from every live thread's. It is
//!   above the largest tid Linux gives out (`PID_MAX_LIMIT`, 2^22), so it never names a kernel
//!   thread: a raw system call given it (`tgkill`, `/proc/self/task/TID`) fails with `ESRCH`
//!   (or `ENOENT`) rather than reaching another thread. `syscall(SYS_gettid)` returns the same
//!   value. The main thread and glibc's threads keep their kernel tids.
//! - Affinity (`pthread_setaffinity_np`, `sched_setaffinity` with 0, a green tid, ...): recorded
//!   and reported back, not enforced (a green thread runs on whichever carrier runs it). A mask
//!   with no online CPU fails with `EINVAL`, as Linux's does; a reported mask holds the online CPUs
//!   of the recorded one. Unset, a green thread reports the CPUs its carriers run on. A new green
//!   thread starts with its creator's recorded mask, or its attribute's
//!   (`pthread_attr_setaffinity_np`).
//! - Policy and priority (`pthread_setschedparam`, `pthread_setschedprio`, an attribute with
//!   `PTHREAD_EXPLICIT_SCHED`): `SCHED_OTHER`, `SCHED_BATCH` and `SCHED_IDLE` (priority 0) are
//!   recorded and reported back, not enforced. Real-time policies fail as Linux fails them without
//!   the privilege (`EPERM`: no `CAP_SYS_NICE` and the priority above `RLIMIT_RTPRIO`); with it,
//!   they fail with `ENOTSUP` and one line on stderr, since the runtime has no priorities to honour
//!   them with.
//! - `pthread_getcpuclockid` of a green thread fails with `ENOTSUP` (one line on stderr): the
//!   runtime does not account CPU time per green thread, and the carrier's clock would count the
//!   other green threads' time too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use libc::{c_int, cpu_set_t, pid_t, pthread_attr_t, pthread_t, sched_param, size_t};

use crate::fork_table::ForkTable;
use crate::{real, rt};

/// The first green thread's `gettid()` is this plus 1: above `PID_MAX_LIMIT` (2^22), the
/// largest tid Linux can give out, so it never names a kernel thread.
pub const GREEN_TID_BASE: pid_t = 1 << 30;

/// The largest affinity mask handled: 4096 CPUs, as the kernel's `CONFIG_NR_CPUS` maximum.
const MAX_CPUS: usize = 4096;
const WORDS: usize = MAX_CPUS / 64;

/// A CPU mask, bit `n` for CPU `n`.
type Mask = [u64; WORDS];

/// One green thread's record.
pub(crate) struct Sched {
    tid: pid_t,
    /// Set (under the table lock) when the thread has ended: its creator must not publish it.
    ended: AtomicBool,
    attrs: Mutex<Attrs>,
}

/// What a green thread was given, or inherited.
#[derive(Clone, Copy)]
pub(crate) struct Attrs {
    /// `None`: never set (reported as the carriers' CPUs).
    affinity: Option<Mask>,
    policy: c_int,
    priority: c_int,
}

/// Live green threads' records, by `pthread_t` (fresh in each fork child).
static TABLE: ForkTable<HashMap<pthread_t, Arc<Sched>>> = ForkTable::new();

thread_local! {
    /// The running green thread's record (each green thread has its own TLS block); null on OS
    /// threads. Points into the table's `Arc`, which the thread itself removes last.
    static MINE: std::cell::Cell<*const Sched> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// In a fork child: the parent's green threads are gone.
pub(crate) fn reset_after_fork() {
    TABLE.reset_after_fork();
}

fn mine() -> Option<&'static Sched> {
    let p = MINE.with(std::cell::Cell::get);
    // SAFETY: set by `register` to an Arc the table holds until `unregister`, which the same
    // green thread calls at its end, after which it makes no more calls through here.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The calling thread's kernel tid, trapped directly (the library's own code must not get a
/// green thread's number from the `gettid` export).
pub(crate) fn kernel_tid() -> pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { flexsc_threads::kmod::raw::syscall(libc::SYS_gettid, [0; 3]) as pid_t }
}

/// A new green thread's record, made by its creator: its number, and `attrs` (see [`initial`]).
pub(crate) fn new_record(attrs: Attrs) -> Arc<Sched> {
    static NEXT: AtomicI32 = AtomicI32::new(1);
    // Wraps after 2^30 - 1 green threads in one process: ids stay distinct among live ones.
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & (GREEN_TID_BASE - 1);
    Arc::new(Sched {
        tid: GREEN_TID_BASE + n.max(1),
        ended: AtomicBool::new(false),
        attrs: Mutex::new(attrs),
    })
}

/// Makes `st` the record of green thread `id`, unless that thread has already ended: done by
/// its creator once it knows the id, and by the thread itself first, whichever comes first.
pub(crate) fn publish(id: pthread_t, st: &Arc<Sched>) {
    let _lib = rt::InLib::enter();
    let mut t = TABLE.lock();
    if !st.ended.load(Ordering::Relaxed) {
        t.get_or_insert_with(HashMap::new).insert(id, st.clone());
    }
}

/// Called by a new green thread first (as the library's own code).
pub(crate) fn register(st: &Arc<Sched>) {
    MINE.with(|m| m.set(Arc::as_ptr(st)));
    // SAFETY: pthread_self has no preconditions.
    publish(unsafe { libc::pthread_self() }, st);
}

/// Called by a green thread last (as the library's own code).
pub(crate) fn unregister() {
    let Some(st) = mine() else {
        return;
    };
    MINE.with(|m| m.set(std::ptr::null()));
    let mut t = TABLE.lock();
    st.ended.store(true, Ordering::Relaxed);
    if let Some(t) = t.as_mut() {
        // SAFETY: pthread_self has no preconditions.
        t.remove(&unsafe { libc::pthread_self() });
    }
}

/// Runs `f` on a green thread's attributes, as the library's own code: the lock is std's, whose
/// waits must reach the kernel (a green thread's `syscall(SYS_futex)` would wait in the futex
/// table, where a waker inside the library does not look).
fn with<R>(st: &Sched, f: impl FnOnce(&mut Attrs) -> R) -> R {
    let _lib = rt::InLib::enter();
    f(&mut st.attrs.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A copy of a green thread's attributes.
fn attrs(st: &Sched) -> Attrs {
    with(st, |a| *a)
}

/// The record of green thread `thread`, if it is one.
fn by_thread(thread: pthread_t) -> Option<Arc<Sched>> {
    let _lib = rt::InLib::enter();
    TABLE.lock().as_ref().and_then(|t| t.get(&thread).cloned())
}

/// The record of the green thread whose `gettid()` is `tid`.
fn by_tid(tid: pid_t) -> Option<Arc<Sched>> {
    if tid <= GREEN_TID_BASE {
        return None;
    }
    let _lib = rt::InLib::enter();
    TABLE
        .lock()
        .as_ref()
        .and_then(|t| t.values().find(|s| s.tid == tid).cloned())
}

/// The record a `pid` argument of the `sched_*` calls names: 0 is the calling green thread.
fn by_pid(pid: pid_t) -> Option<Arc<Sched>> {
    if !rt::application_caller() || !rt::on_green_thread() {
        return None;
    }
    if pid == 0 {
        // SAFETY: pthread_self has no preconditions.
        return by_thread(unsafe { libc::pthread_self() });
    }
    by_tid(pid)
}

/// The calling green thread's `gettid()`, if it is one (and the caller application code).
pub(crate) fn green_tid() -> Option<pid_t> {
    if !rt::application_caller() || !rt::on_green_thread() {
        return None;
    }
    mine().map(|s| s.tid)
}

/// `gettid`: a green thread's own number (see the module docs); the kernel tid elsewhere.
#[unsafe(no_mangle)]
pub extern "C" fn gettid() -> pid_t {
    green_tid().unwrap_or_else(kernel_tid)
}

/// The system calls of this module's exports, as `syscall()` makes them from a green thread (a
/// raw result); `None` for any other call, or a pid that names no green thread.
///
/// # Safety
/// `args` valid for the call `nr`.
pub(crate) unsafe fn emulated(nr: i64, args: &[u64; 6]) -> Option<i64> {
    let (pid, size) = (args[0] as pid_t, args[1] as size_t);
    match nr {
        libc::SYS_gettid => green_tid().map(i64::from),
        // SAFETY: the caller's contract: the mask valid for `size` bytes.
        libc::SYS_sched_setaffinity => unsafe { set_affinity_raw(pid, size, args[2] as _) },
        // SAFETY: as above.
        libc::SYS_sched_getaffinity => unsafe { get_affinity_raw(pid, size, args[2] as _) },
        _ => None,
    }
}

// ---- affinity ----

/// Says once on stderr that something is not supported; a raw `write(2)`.
fn say_once(said: &AtomicBool, msg: &str) {
    if said.swap(true, Ordering::Relaxed) {
        return;
    }
    let args = [2, msg.as_ptr() as u64, msg.len() as u64];
    // SAFETY: writes our own string to stderr.
    unsafe { flexsc_threads::kmod::raw::syscall(libc::SYS_write, args) };
}

/// Reads a small file with raw system calls (a green thread must not park here: the callers
/// hold a `OnceLock`'s initialisation, which other threads wait for on their carriers).
fn read_raw(path: &std::ffi::CStr, buf: &mut [u8]) -> Option<usize> {
    use flexsc_threads::kmod::raw::syscall6;
    // SAFETY: a NUL-terminated path and our own buffer; the descriptor is closed below.
    unsafe {
        let fd = syscall6(
            libc::SYS_openat as u64,
            &[
                libc::AT_FDCWD as u64,
                path.as_ptr() as u64,
                (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        );
        if fd < 0 {
            return None;
        }
        let n = syscall6(
            libc::SYS_read as u64,
            &[
                fd as u64,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
                0,
            ],
        );
        syscall6(libc::SYS_close as u64, &[fd as u64, 0, 0, 0, 0, 0]);
        (n >= 0).then_some(n as usize)
    }
}

/// A kernel cpulist file (`0-3,5`) as a mask; `None` if it cannot be read.
fn cpulist(path: &std::ffi::CStr) -> Option<Mask> {
    let mut buf = [0u8; 1024];
    let n = read_raw(path, &mut buf)?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let cpus = flexsc_threads::kmod::config::parse_cpu_list(text.trim()).ok()?;
    let mut m = [0; WORDS];
    for c in cpus {
        m[c / 64] |= 1 << (c % 64);
    }
    Some(m)
}

/// The CPUs online (read once), else all of them.
fn online() -> &'static Mask {
    static ONLINE: OnceLock<Mask> = OnceLock::new();
    ONLINE.get_or_init(|| cpulist(c"/sys/devices/system/cpu/online").unwrap_or([!0; WORDS]))
}

/// The kernel's mask size in bytes (`nr_cpu_ids` rounded up to whole longs): what
/// `sched_getaffinity` needs at least and returns.
fn kernel_mask_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| {
        let possible = cpulist(c"/sys/devices/system/cpu/possible").unwrap_or(*online());
        let top = (0..MAX_CPUS)
            .rev()
            .find(|&c| possible[c / 64] & (1 << (c % 64)) != 0)
            .unwrap_or(0);
        (top / 64 + 1) * 8
    })
}

/// The CPUs this runtime's carriers run on (their affinity masks together), looked up once per
/// runtime in `/proc/self/task` by the carriers' thread names.
fn carrier_cpus() -> Mask {
    static CACHED: Mutex<(usize, Mask)> = Mutex::new((0, [0; WORDS]));
    let key = rt::started().map_or(0, |r| r as *const _ as usize);
    {
        let c = CACHED.lock().unwrap_or_else(|e| e.into_inner());
        if c.0 == key && key != 0 {
            return c.1;
        }
    }
    let m = scan_carriers().unwrap_or(*online());
    *CACHED.lock().unwrap_or_else(|e| e.into_inner()) = (key, m);
    m
}

/// The union of the affinity masks of the threads named `flexsc-carrier*`; `None` if there is
/// none (or `/proc` cannot be read). Raw system calls only (see [`read_raw`]).
fn scan_carriers() -> Option<Mask> {
    use flexsc_threads::kmod::raw::syscall6;
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let dir = unsafe {
        syscall6(
            libc::SYS_openat as u64,
            &[
                libc::AT_FDCWD as u64,
                c"/proc/self/task".as_ptr() as u64,
                (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
                0,
                0,
                0,
            ],
        )
    };
    if dir < 0 {
        return None;
    }
    let mut tids = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: our own buffer and the directory opened above.
        let n = unsafe {
            syscall6(
                libc::SYS_getdents64 as u64,
                &[
                    dir as u64,
                    buf.as_mut_ptr() as u64,
                    buf.len() as u64,
                    0,
                    0,
                    0,
                ],
            )
        };
        if n <= 0 {
            break;
        }
        let mut off = 0;
        while off < n as usize {
            // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(tid) = std::str::from_utf8(name)
                .ok()
                .and_then(|s| s.parse::<pid_t>().ok())
            {
                tids.push(tid);
            }
            off += reclen;
        }
    }
    // SAFETY: closes the directory opened above.
    unsafe { syscall6(libc::SYS_close as u64, &[dir as u64, 0, 0, 0, 0, 0]) };
    let mut all = [0; WORDS];
    let mut found = false;
    for tid in tids {
        let path = format!("/proc/self/task/{tid}/comm\0");
        let mut comm = [0u8; 32];
        let Some(n) = read_raw(
            std::ffi::CStr::from_bytes_with_nul(path.as_bytes()).ok()?,
            &mut comm,
        ) else {
            continue;
        };
        if !comm[..n].starts_with(b"flexsc-carrier") {
            continue;
        }
        let mut m = [0u64; WORDS];
        // SAFETY: our own mask buffer, its size passed.
        let r = unsafe {
            syscall6(
                libc::SYS_sched_getaffinity as u64,
                &[
                    tid as u64,
                    size_of::<Mask>() as u64,
                    m.as_mut_ptr() as u64,
                    0,
                    0,
                    0,
                ],
            )
        };
        if r > 0 {
            found = true;
            all.iter_mut().zip(m).for_each(|(a, b)| *a |= b);
        }
    }
    found.then_some(all)
}

/// What a green thread reports: its recorded mask, else its carriers' CPUs; online ones only.
fn reported(a: &Attrs) -> Mask {
    // The caches below wait on std's locks (see `with`).
    let _lib = rt::InLib::enter();
    let mut m = a.affinity.unwrap_or_else(carrier_cpus);
    m.iter_mut().zip(online()).for_each(|(w, o)| *w &= o);
    m
}

/// Reads a caller's mask of `size` bytes; `EINVAL` unless it has an online CPU (Linux's rule).
///
/// # Safety
/// `set` readable for `size` bytes.
unsafe fn read_mask(size: size_t, set: *const cpu_set_t) -> Result<Mask, c_int> {
    // `online` waits on std's locks (see `with`).
    let _lib = rt::InLib::enter();
    if set.is_null() {
        return Err(libc::EFAULT);
    }
    let mut m = [0u64; WORDS];
    let n = size.min(size_of::<Mask>());
    // SAFETY: the caller's contract: `set` readable for `size` >= n bytes.
    unsafe { std::ptr::copy_nonoverlapping(set.cast::<u8>(), m.as_mut_ptr().cast::<u8>(), n) };
    if m.iter().zip(online()).all(|(w, o)| w & o == 0) {
        return Err(libc::EINVAL);
    }
    Ok(m)
}

/// Writes `m` into a caller's mask of `size` bytes (zeros beyond what the kernel's mask holds);
/// `EINVAL` if `size` is smaller than the kernel's mask or not whole longs, as Linux's.
///
/// # Safety
/// `set` writable for `size` bytes.
unsafe fn write_mask(m: &Mask, size: size_t, set: *mut cpu_set_t) -> Result<usize, c_int> {
    // `kernel_mask_bytes` waits on std's locks (see `with`).
    let _lib = rt::InLib::enter();
    let kernel = kernel_mask_bytes();
    if size < kernel || size % size_of::<libc::c_ulong>() != 0 {
        return Err(libc::EINVAL);
    }
    if set.is_null() {
        return Err(libc::EFAULT);
    }
    let n = kernel.min(size_of::<Mask>());
    // SAFETY: the caller's contract: `set` writable for `size` >= n bytes.
    unsafe {
        std::ptr::write_bytes(set.cast::<u8>(), 0, size);
        std::ptr::copy_nonoverlapping(m.as_ptr().cast::<u8>(), set.cast::<u8>(), n);
    }
    Ok(n)
}

/// `pthread_setaffinity_np`: a green thread's mask is recorded (see the module docs).
///
/// # Safety
/// As `pthread_setaffinity_np(3)`.
#[unsafe(export_name = "__flexsc_pthread_setaffinity_np")]
pub unsafe extern "C" fn pthread_setaffinity_np(
    thread: pthread_t,
    size: size_t,
    set: *const cpu_set_t,
) -> c_int {
    let Some(st) = by_thread(thread) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_setaffinity_np()(thread, size, set) };
    };
    // SAFETY: the caller's contract.
    match unsafe { read_mask(size, set) } {
        Ok(m) => {
            with(&st, |a| a.affinity = Some(m));
            0
        }
        Err(e) => e,
    }
}

/// `pthread_getaffinity_np`: a green thread's recorded mask, or its carriers' CPUs.
///
/// # Safety
/// As `pthread_getaffinity_np(3)`.
#[unsafe(export_name = "__flexsc_pthread_getaffinity_np")]
pub unsafe extern "C" fn pthread_getaffinity_np(
    thread: pthread_t,
    size: size_t,
    set: *mut cpu_set_t,
) -> c_int {
    let Some(st) = by_thread(thread) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_getaffinity_np()(thread, size, set) };
    };
    let m = reported(&attrs(&st));
    // SAFETY: the caller's contract.
    match unsafe { write_mask(&m, size, set) } {
        Ok(_) => 0,
        Err(e) => e,
    }
}

/// `sched_setaffinity`: 0 on a green thread, or a green thread's `gettid()`, records its mask;
/// any other tid is the kernel's.
///
/// # Safety
/// As `sched_setaffinity(2)`.
#[unsafe(export_name = "__flexsc_sched_setaffinity")]
pub unsafe extern "C" fn sched_setaffinity(
    pid: pid_t,
    size: size_t,
    set: *const cpu_set_t,
) -> c_int {
    // SAFETY: the caller's contract.
    match unsafe { set_affinity_raw(pid, size, set) } {
        Some(r) => crate::io::settle(r) as c_int,
        // SAFETY: forwarded unchanged.
        None => unsafe { real::sched_setaffinity()(pid, size, set) },
    }
}

/// `sched_getaffinity`: as [`sched_setaffinity`] for the pids it names.
///
/// # Safety
/// As `sched_getaffinity(2)`.
#[unsafe(export_name = "__flexsc_sched_getaffinity")]
pub unsafe extern "C" fn sched_getaffinity(pid: pid_t, size: size_t, set: *mut cpu_set_t) -> c_int {
    // SAFETY: the caller's contract.
    match unsafe { get_affinity_raw(pid, size, set) } {
        // glibc's wrapper returns 0 (the system call returns the bytes written).
        Some(r) => crate::io::settle(r.min(0)) as c_int,
        // SAFETY: forwarded unchanged.
        None => unsafe { real::sched_getaffinity()(pid, size, set) },
    }
}

/// The `sched_setaffinity` system call on a green thread's record (a raw result), or `None` if
/// `pid` names none.
///
/// # Safety
/// `set` readable for `size` bytes.
pub(crate) unsafe fn set_affinity_raw(
    pid: pid_t,
    size: size_t,
    set: *const cpu_set_t,
) -> Option<i64> {
    let st = by_pid(pid)?;
    // SAFETY: the caller's contract.
    Some(match unsafe { read_mask(size, set) } {
        Ok(m) => {
            with(&st, |a| a.affinity = Some(m));
            0
        }
        Err(e) => -i64::from(e),
    })
}

/// The `sched_getaffinity` system call on a green thread's record (a raw result: the bytes
/// written), or `None` if `pid` names none.
///
/// # Safety
/// `set` writable for `size` bytes.
pub(crate) unsafe fn get_affinity_raw(
    pid: pid_t,
    size: size_t,
    set: *mut cpu_set_t,
) -> Option<i64> {
    let st = by_pid(pid)?;
    let m = reported(&attrs(&st));
    // SAFETY: the caller's contract.
    Some(match unsafe { write_mask(&m, size, set) } {
        Ok(n) => n as i64,
        Err(e) => -i64::from(e),
    })
}

/// The size of glibc's `cpu_set_t`, which the `GLIBC_2.3.3` affinity calls assume.
const OLD_SET: size_t = size_of::<cpu_set_t>();

/// `pthread_setaffinity_np@GLIBC_2.3.3` ([`crate::versions`]): no size argument.
///
/// # Safety
/// As `pthread_setaffinity_np(3)` with a 128-byte set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __flexsc_pthread_setaffinity_old(
    thread: pthread_t,
    set: *const cpu_set_t,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { pthread_setaffinity_np(thread, OLD_SET, set) }
}

/// `pthread_getaffinity_np@GLIBC_2.3.3`: no size argument.
///
/// # Safety
/// As `pthread_getaffinity_np(3)` with a 128-byte set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __flexsc_pthread_getaffinity_old(
    thread: pthread_t,
    set: *mut cpu_set_t,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { pthread_getaffinity_np(thread, OLD_SET, set) }
}

/// `sched_setaffinity@GLIBC_2.3.3`: no size argument.
///
/// # Safety
/// As `sched_setaffinity(2)` with a 128-byte set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __flexsc_sched_setaffinity_old(
    pid: pid_t,
    set: *const cpu_set_t,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { sched_setaffinity(pid, OLD_SET, set) }
}

/// `sched_getaffinity@GLIBC_2.3.3`: no size argument.
///
/// # Safety
/// As `sched_getaffinity(2)` with a 128-byte set.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __flexsc_sched_getaffinity_old(pid: pid_t, set: *mut cpu_set_t) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { sched_getaffinity(pid, OLD_SET, set) }
}

// ---- policy and priority ----

/// Whether Linux would let this process take a real-time `priority`: `CAP_SYS_NICE` in its
/// effective set, or `RLIMIT_RTPRIO` at least `priority`.
fn may_realtime(priority: c_int) -> bool {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut r) } == 0
        && r.rlim_cur >= priority as libc::rlim_t
    {
        return true;
    }
    // struct __user_cap_header_struct { u32 version; int pid; }, version 3; two data words of
    // { effective, permitted, inheritable }.
    let mut header = [0x2008_0522u32, 0];
    let mut data = [0u32; 6];
    // SAFETY: capget fills our buffers, sized for version 3.
    let r = unsafe {
        flexsc_threads::kmod::raw::syscall(
            libc::SYS_capget,
            [header.as_mut_ptr() as u64, data.as_mut_ptr() as u64, 0],
        )
    };
    const CAP_SYS_NICE: u32 = 23;
    r == 0 && data[0] & (1 << CAP_SYS_NICE) != 0
}

/// Linux's checks of a policy and priority for a green thread: `Ok` for the ones recorded.
fn check_policy(policy: c_int, priority: c_int) -> Result<(), c_int> {
    static SAID: AtomicBool = AtomicBool::new(false);
    match policy & !libc::SCHED_RESET_ON_FORK {
        libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE if priority == 0 => Ok(()),
        libc::SCHED_FIFO | libc::SCHED_RR if (1..=99).contains(&priority) => {
            if !may_realtime(priority) {
                return Err(libc::EPERM);
            }
            say_once(
                &SAID,
                "libflexsc: real-time scheduling (SCHED_FIFO, SCHED_RR) is not supported for green \
                 threads (ENOTSUP)\n",
            );
            Err(libc::ENOTSUP)
        }
        _ => Err(libc::EINVAL),
    }
}

/// `pthread_setschedparam`: a green thread's policy and priority are recorded (see the module
/// docs).
///
/// # Safety
/// As `pthread_setschedparam(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setschedparam(
    thread: pthread_t,
    policy: c_int,
    param: *const sched_param,
) -> c_int {
    let Some(st) = by_thread(thread) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_setschedparam()(thread, policy, param) };
    };
    // SAFETY: the caller's contract.
    let Some(param) = (unsafe { param.as_ref() }) else {
        return libc::EINVAL;
    };
    if let Err(e) = check_policy(policy, param.sched_priority) {
        return e;
    }
    with(&st, |a| {
        a.policy = policy & !libc::SCHED_RESET_ON_FORK;
        a.priority = param.sched_priority;
    });
    0
}

/// `pthread_getschedparam`: a green thread's recorded policy and priority.
///
/// # Safety
/// As `pthread_getschedparam(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getschedparam(
    thread: pthread_t,
    policy: *mut c_int,
    param: *mut sched_param,
) -> c_int {
    let Some(st) = by_thread(thread) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_getschedparam()(thread, policy, param) };
    };
    let a = attrs(&st);
    // SAFETY: the caller's contract: both writable.
    unsafe {
        *policy = a.policy;
        (*param).sched_priority = a.priority;
    }
    0
}

/// `pthread_setschedprio`: a green thread's priority, checked against its recorded policy.
///
/// # Safety
/// As `pthread_setschedprio(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setschedprio(thread: pthread_t, priority: c_int) -> c_int {
    let Some(st) = by_thread(thread) else {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_setschedprio()(thread, priority) };
    };
    let policy = attrs(&st).policy;
    if let Err(e) = check_policy(policy, priority) {
        return e;
    }
    with(&st, |a| a.priority = priority);
    0
}

/// `pthread_getcpuclockid`: `ENOTSUP` for a green thread (see the module docs).
///
/// # Safety
/// As `pthread_getcpuclockid(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getcpuclockid(
    thread: pthread_t,
    clock: *mut libc::clockid_t,
) -> c_int {
    static SAID: AtomicBool = AtomicBool::new(false);
    if by_thread(thread).is_none() {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_getcpuclockid()(thread, clock) };
    }
    say_once(
        &SAID,
        "libflexsc: pthread_getcpuclockid of a green thread is not supported (no per-green-thread \
         CPU time; ENOTSUP)\n",
    );
    libc::ENOTSUP
}

// ---- new threads ----

unsafe extern "C" {
    fn pthread_attr_getaffinity_np(
        attr: *const pthread_attr_t,
        size: size_t,
        set: *mut cpu_set_t,
    ) -> c_int;
    fn pthread_attr_setaffinity_np(
        attr: *mut pthread_attr_t,
        size: size_t,
        set: *const cpu_set_t,
    ) -> c_int;
}

/// A new green thread's attributes: its attribute object's affinity and, with
/// `PTHREAD_EXPLICIT_SCHED`, its policy and priority; otherwise its creator's. An error is
/// what `pthread_create` returns (Linux's checks, as glibc's `pthread_create` applies them).
///
/// # Safety
/// `attr` null or an initialised attribute object.
pub(crate) unsafe fn initial(attr: *const pthread_attr_t) -> Result<Attrs, c_int> {
    let mut a = match mine() {
        Some(st) => attrs(st),
        None => {
            let (mut policy, mut param) = (0, sched_param { sched_priority: 0 });
            // SAFETY: glibc's for the calling (glibc) thread, into our own out-parameters.
            let r = unsafe {
                real::pthread_getschedparam()(libc::pthread_self(), &mut policy, &mut param)
            };
            Attrs {
                affinity: None,
                policy: if r == 0 { policy } else { libc::SCHED_OTHER },
                priority: if r == 0 { param.sched_priority } else { 0 },
            }
        }
    };
    if attr.is_null() {
        return Ok(a);
    }
    let mut m = [0u64; WORDS];
    // SAFETY: an initialised attribute (the caller's contract) and our own buffer.
    let r = unsafe { pthread_attr_getaffinity_np(attr, size_of::<Mask>(), m.as_mut_ptr().cast()) };
    // glibc fills an attribute without a mask with ones.
    if r == 0 && m.iter().any(|&w| w != !0) {
        // SAFETY: our own buffer, of that size.
        a.affinity = Some(unsafe { read_mask(size_of::<Mask>(), m.as_ptr().cast())? });
    }
    let mut inherit = 0;
    // SAFETY: as above, into our own out-parameters.
    unsafe {
        if libc::pthread_attr_getinheritsched(attr, &mut inherit) == 0
            && inherit == libc::PTHREAD_EXPLICIT_SCHED
        {
            let (mut policy, mut param) = (0, sched_param { sched_priority: 0 });
            libc::pthread_attr_getschedpolicy(attr, &mut policy);
            libc::pthread_attr_getschedparam(attr, &mut param);
            check_policy(policy, param.sched_priority)?;
            a.policy = policy;
            a.priority = param.sched_priority;
        }
    }
    Ok(a)
}

/// After glibc's `pthread_getattr_np` of green thread `thread` (which reads its carrier's kernel
/// state): its recorded affinity and scheduling in `attr`.
///
/// # Safety
/// `attr` initialised by glibc's `pthread_getattr_np`.
pub(crate) unsafe fn fill_attr(thread: pthread_t, attr: *mut pthread_attr_t) {
    let Some(st) = by_thread(thread) else {
        return;
    };
    let a = attrs(&st);
    let m = reported(&a);
    let param = sched_param {
        sched_priority: a.priority,
    };
    // SAFETY: an initialised attribute (the caller's contract) and our own values. glibc's
    // setter takes only SCHED_OTHER, SCHED_FIFO and SCHED_RR; its pthread_getattr_np stores any
    // policy in the field after the sched_param (`struct pthread_attr`, nptl/internaltypes.h),
    // and so does this.
    unsafe {
        pthread_attr_setaffinity_np(attr, kernel_mask_bytes(), m.as_ptr().cast());
        libc::pthread_attr_setschedparam(attr, &param);
        if libc::pthread_attr_setschedpolicy(attr, a.policy) != 0 {
            *attr.cast::<c_int>().add(1) = a.policy;
        }
    }
}
