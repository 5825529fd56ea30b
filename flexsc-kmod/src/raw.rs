//! Raw system calls: the `syscall` instruction itself, never libc's `syscall()` wrapper, which the
//! preload library interposes (a syscall thread calling it would re-enter the runtime).
//!
//! This is one of the few modules allowed `unsafe`; every block says why it holds.

use core::arch::asm;
use std::sync::atomic::AtomicU32;

/// Issues system call `nr` with six arguments and returns the kernel's raw result
/// (a negative errno on failure).
///
/// # Safety
/// The call runs with whatever arguments it is given: pointers in `args` must be valid for the
/// call's semantics or the kernel returns `-EFAULT`; calls that change the calling thread
/// (`exit`, `clone`, `rt_sigreturn`, ...) can break the program. Callers screen those out
/// (see [`crate::calls`]).
#[inline]
pub unsafe fn syscall6(nr: u64, args: &[u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the x86_64 Linux syscall ABI: number in rax, arguments in rdi, rsi, rdx, r10, r8,
    // r9; the kernel clobbers rcx and r11 and nothing else; the caller vouches for the call.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("rdx") args[2],
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw syscall with fewer arguments (the rest are zero).
///
/// # Safety
/// As for [`syscall6`].
#[inline]
pub unsafe fn syscall(nr: i64, a: [u64; 3]) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { syscall6(nr as u64, &[a[0], a[1], a[2], 0, 0, 0]) }
}

/// `futex(FUTEX_WAIT_PRIVATE)`: sleeps while `*word == expected`, at most `timeout_ns` if non-zero.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as i64,
        tv_nsec: (timeout_ns % 1_000_000_000) as i64,
    };
    let tsp = if timeout_ns == 0 {
        0
    } else {
        &ts as *const _ as u64
    };
    // SAFETY: `word` is a live, aligned u32; the timespec outlives the call.
    unsafe {
        syscall6(
            libc::SYS_futex as u64,
            &[
                word.as_ptr() as u64,
                (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as u64,
                expected as u64,
                tsp,
                0,
                0,
            ],
        );
    }
}

/// `futex(FUTEX_WAKE_PRIVATE)`: wakes up to `n` threads sleeping on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    // The kernel reads the count as an int: u32::MAX would be -1, which wakes just one.
    let n = n.min(i32::MAX as u32);
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only reads the address.
    unsafe {
        syscall(
            libc::SYS_futex,
            [
                word.as_ptr() as u64,
                (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as u64,
                n as u64,
            ],
        );
    }
}

/// The calling thread's kernel thread id.
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { syscall(libc::SYS_gettid, [0; 3]) as i32 }
}

/// Pins the calling thread to `cpu` (sched_setaffinity on the thread itself).
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    let mut set = [0u64; 16];
    if cpu >= set.len() * 64 {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    set[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: the mask lives on our stack for the duration of the call and its size is passed.
    let r = unsafe {
        syscall(
            libc::SYS_sched_setaffinity,
            [0, core::mem::size_of_val(&set) as u64, set.as_ptr() as u64],
        )
    };
    if r < 0 {
        Err(std::io::Error::from_raw_os_error(-r as i32))
    } else {
        Ok(())
    }
}

/// Sends signal `sig` to thread `tid` of this process.
pub(crate) fn tgkill(tid: i32, sig: i32) -> i64 {
    // SAFETY: tgkill only names a thread and a signal; no memory is passed.
    unsafe { syscall(libc::SYS_tgkill, [getpid() as u64, tid as u64, sig as u64]) }
}

/// The process id.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { syscall(libc::SYS_getpid, [0; 3]) as i32 }
}

/// Installs `handler` for `sig` without SA_RESTART, so blocked calls return `-EINTR`.
pub(crate) fn install_signal_handler(sig: i32, handler: extern "C" fn(i32)) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
    sa.sa_sigaction = handler as usize;
    sa.sa_flags = 0;
    // SAFETY: `sa` is fully initialised; the handler is async-signal-safe (it does nothing).
    let r = unsafe { libc::sigaction(sig, &sa, core::ptr::null_mut()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Blocks every signal in the calling thread except `keep` and glibc's two internal signals
/// (32, SIGCANCEL, and 33, SIGSETXID): setuid() and friends broadcast SIGSETXID to every thread
/// and wait for each to answer, so blocking it would hang the whole process.
pub(crate) fn block_signals_except(keep: i32) {
    let mut set = !0u64;
    for sig in [keep, 32, 33] {
        set &= !(1u64 << (sig - 1));
    }
    // SAFETY: rt_sigprocmask reads an 8-byte kernel sigset from our stack; no old set is asked.
    unsafe {
        syscall6(
            libc::SYS_rt_sigprocmask as u64,
            &[
                libc::SIG_SETMASK as u64,
                &set as *const u64 as u64,
                0,
                8,
                0,
                0,
            ],
        );
    }
}

/// PREFETCHW: asks for the cache line at `p` in exclusive state. Only a hint.
#[inline(always)]
pub(crate) fn prefetch_for_write(p: *const i8) {
    // SAFETY: prefetching never faults or changes memory, whatever the address; SSE is part of
    // the x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(p);
    }
}
