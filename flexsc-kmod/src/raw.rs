//! Raw system calls: the `syscall` instruction itself, never libc's `syscall()` wrapper, which the
//! preload library interposes (a syscall thread calling it would re-enter the runtime).
//!
//! This is one of the few modules allowed `unsafe`; every block says why it holds.
//!
//! It also holds the interruptible form of the instruction (`syscall6_interruptible`) and the
//! handler of the interrupt signal, which together close the window between a syscall thread
//! claiming an entry and entering the kernel for it (see [`crate::interrupt`]).

use core::arch::{asm, global_asm};
use core::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU32, Ordering};

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
pub fn tgkill(tid: i32, sig: i32) -> i64 {
    // SAFETY: tgkill only names a thread and a signal; no memory is passed.
    unsafe { syscall(libc::SYS_tgkill, [getpid() as u64, tid as u64, sig as u64]) }
}

/// The calling kernel thread's signal mask (signals 1 to 64), never an interposer's idea of it.
pub fn kernel_sigmask() -> u64 {
    let mut set = 0u64;
    // SAFETY: rt_sigprocmask with a null new set only writes the 8-byte kernel mask to `set`.
    unsafe {
        syscall6(
            libc::SYS_rt_sigprocmask as u64,
            &[
                libc::SIG_BLOCK as u64,
                0,
                &mut set as *mut u64 as u64,
                8,
                0,
                0,
            ],
        )
    };
    set
}

/// The calling kernel thread's alternate signal stack, as `sigaltstack(NULL, &old)` reports it.
pub fn altstack() -> libc::stack_t {
    let mut ss = libc::stack_t {
        ss_sp: core::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: sigaltstack with a null new stack only writes the current one to `ss`.
    unsafe {
        syscall(
            libc::SYS_sigaltstack,
            [0, &mut ss as *mut libc::stack_t as u64, 0],
        )
    };
    ss
}

/// The process id.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { syscall(libc::SYS_getpid, [0; 3]) as i32 }
}

// The interruptible syscall stub: `i64 stub(const u32 *request, u64 nr, const u64 args[6])`.
// From `begin` to `insn` (both included) r12 holds `request`; the stub returns -EINTR through
// `cancel` without entering the kernel if `*request` is non-zero there, and the signal handler
// (`on_interrupt`) moves a thread interrupted in that range to `cancel` when `*request` is set.
// The labels are hidden globals, so the handler can find them and nothing outside links to them.
global_asm!(
    ".pushsection .text.flexsc_kmod_intr_syscall,\"ax\",@progbits",
    ".p2align 4",
    ".globl flexsc_kmod_intr_syscall",
    ".hidden flexsc_kmod_intr_syscall",
    ".type flexsc_kmod_intr_syscall,@function",
    "flexsc_kmod_intr_syscall:",
    ".cfi_startproc",
    "    push r12",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_rel_offset r12, 0",
    "    mov r12, rdi",
    "    mov rax, rsi",
    "    mov r11, rdx",
    "    mov rdi, [r11]",
    "    mov rsi, [r11 + 8]",
    "    mov rdx, [r11 + 16]",
    "    mov r10, [r11 + 24]",
    "    mov r8, [r11 + 32]",
    "    mov r9, [r11 + 40]",
    ".globl flexsc_kmod_intr_begin",
    ".hidden flexsc_kmod_intr_begin",
    "flexsc_kmod_intr_begin:",
    "    cmp dword ptr [r12], 0",
    "    jne flexsc_kmod_intr_cancel",
    ".globl flexsc_kmod_intr_insn",
    ".hidden flexsc_kmod_intr_insn",
    "flexsc_kmod_intr_insn:",
    "    syscall",
    ".cfi_remember_state",
    "    pop r12",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r12",
    "    ret",
    ".cfi_restore_state",
    ".globl flexsc_kmod_intr_cancel",
    ".hidden flexsc_kmod_intr_cancel",
    "flexsc_kmod_intr_cancel:",
    "    mov rax, {eintr}",
    "    pop r12",
    ".cfi_adjust_cfa_offset -8",
    ".cfi_restore r12",
    "    ret",
    ".cfi_endproc",
    ".size flexsc_kmod_intr_syscall, . - flexsc_kmod_intr_syscall",
    ".popsection",
    eintr = const -(libc::EINTR as i64),
);

unsafe extern "C" {
    /// The stub above (SysV ABI: `request` in rdi, `nr` in rsi, `args` in rdx).
    fn flexsc_kmod_intr_syscall(request: *const u32, nr: u64, args: *const u64) -> i64;
    // Labels inside the stub, declared as functions only to take their addresses.
    fn flexsc_kmod_intr_begin();
    fn flexsc_kmod_intr_insn();
    fn flexsc_kmod_intr_cancel();
}

/// [`syscall6`], unless `request` is set: then `-EINTR`, without entering the kernel. With the
/// handler of [`install_interrupt_handler`], an interrupt signal that arrives once `request` is
/// set ends the call too: before the `syscall` instruction the handler makes the stub return
/// `-EINTR`; after it, the kernel interrupts the call (no `SA_RESTART`).
///
/// `request` must have been published as [`crate::interrupt::Interrupt::enter`] says; the stub
/// reads it with a plain load (as a Relaxed atomic load).
///
/// # Safety
/// As for [`syscall6`].
#[inline]
pub(crate) unsafe fn syscall6_interruptible(nr: u64, args: &[u64; 6], request: &AtomicU32) -> i64 {
    // SAFETY: the stub reads `*request` (a live AtomicU32) and the six arguments (a live array),
    // then issues the call exactly as `syscall6` does, or returns -EINTR; it follows the SysV
    // calling convention (r12, the only callee-saved register it uses, is saved and restored).
    // The caller vouches for the call itself.
    unsafe { flexsc_kmod_intr_syscall(request.as_ptr(), nr, args.as_ptr()) }
}

/// The interrupt signal's handler: if the thread was interrupted inside the stub, before or at its
/// `syscall` instruction, and the stub's request word is set, it resumes at the stub's `-EINTR`
/// exit instead. Anywhere else it does nothing (the signal has then already done its work: woken
/// a blocked call, or arrived outside any call). Async-signal-safe: two loads and a store.
extern "C" fn on_interrupt(_sig: c_int, _info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes an SA_SIGINFO handler a valid ucontext of the interrupted thread,
    // which sigreturn reloads when the handler returns; nothing else uses it meanwhile.
    let uc = unsafe { &mut *ctx.cast::<libc::ucontext_t>() };
    let gregs = &mut uc.uc_mcontext.gregs;
    let rip = gregs[libc::REG_RIP as usize] as usize;
    let begin = flexsc_kmod_intr_begin as *const () as usize;
    let insn = flexsc_kmod_intr_insn as *const () as usize;
    if !(begin..=insn).contains(&rip) {
        return;
    }
    let request = gregs[libc::REG_R12 as usize] as usize as *const AtomicU32;
    // SAFETY: from `begin` to `insn` the stub keeps its `request` argument in r12 (a rewound
    // restart keeps r12 too), and that word outlives the stub's call.
    if unsafe { (*request).load(Ordering::Relaxed) } != 0 {
        gregs[libc::REG_RIP as usize] = flexsc_kmod_intr_cancel as *const () as i64;
    }
}

/// Installs the interrupt handler for `sig` (SA_SIGINFO, without SA_RESTART, so a blocked call
/// returns `-EINTR`; see [`syscall6_interruptible`] for the rest).
pub(crate) fn install_interrupt_handler(sig: i32) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
    sa.sa_sigaction = on_interrupt as *const () as usize;
    sa.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `sa` is fully initialised; the handler is async-signal-safe (see `on_interrupt`).
    let r = unsafe { libc::sigaction(sig, &sa, core::ptr::null_mut()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Enters and leaves the kernel once (getppid), so that every signal pending for the calling
/// thread and not blocked is delivered (its handler has run) when this returns.
pub(crate) fn take_pending_signals() {
    // SAFETY: getppid takes no arguments and cannot fail.
    unsafe { syscall(libc::SYS_getppid, [0; 3]) };
}

/// Registers `prepare` to run in the forking thread before every `fork` (pthread_atfork), false
/// if it could not be (ENOMEM).
pub(crate) fn at_fork_prepare(prepare: extern "C" fn()) -> bool {
    // SAFETY: registers a plain function; glibc copies the pointer, which is 'static.
    unsafe { libc::pthread_atfork(Some(prepare), None, None) == 0 }
}

/// sched_yield on the calling thread, trapped directly: an interposed `sched_yield` (the
/// preload's, which switches green threads) is never reached, so library code spinning on a
/// lock held by another kernel thread gives that thread the CPU.
pub fn sched_yield() {
    // SAFETY: sched_yield takes no arguments and cannot fail.
    unsafe { syscall(libc::SYS_sched_yield, [0; 3]) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicI32};
    use std::thread;
    use std::time::{Duration, Instant};

    const EINTR: i64 = -(libc::EINTR as i64);

    /// A pipe nobody writes to: (read end, write end).
    fn pipe() -> [i32; 2] {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds into our array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        fds
    }

    fn close(fds: [i32; 2]) {
        for fd in fds {
            // SAFETY: closing our own fds.
            unsafe { libc::close(fd) };
        }
    }

    /// read(fd, buf, len) as syscall arguments.
    fn read_args(fd: i32, buf: &mut [u8]) -> [u64; 6] {
        let (addr, len) = (buf.as_mut_ptr() as u64, buf.len() as u64);
        [fd as u64, addr, len, 0, 0, 0]
    }

    fn label(f: unsafe extern "C" fn()) -> usize {
        f as usize
    }

    #[test]
    fn the_stub_runs_the_call_unless_requested() {
        let word = AtomicU32::new(0);
        // SAFETY: getppid takes no arguments.
        let ppid = unsafe { syscall6_interruptible(libc::SYS_getppid as u64, &[0; 6], &word) };
        assert_eq!(ppid, i64::from(std::os::unix::process::parent_id()));
        word.store(1, Ordering::Relaxed);
        let fds = pipe();
        let mut buf = [0u8; 4];
        let args = read_args(fds[0], &mut buf);
        // SAFETY: a read into our live buffer; requested, so it never even runs.
        let r = unsafe { syscall6_interruptible(libc::SYS_read as u64, &args, &word) };
        assert_eq!(r, EINTR);
        close(fds);
    }

    #[test]
    fn the_handler_moves_only_a_requested_thread_in_the_window() {
        let word = AtomicU32::new(0);
        let begin = label(flexsc_kmod_intr_begin);
        let insn = label(flexsc_kmod_intr_insn);
        let cancel = label(flexsc_kmod_intr_cancel);
        let handled = |rip: usize, requested: bool| {
            word.store(requested.into(), Ordering::Relaxed);
            // SAFETY: an all-zero ucontext_t is valid (integers and null pointers).
            let mut uc: libc::ucontext_t = unsafe { core::mem::zeroed() };
            uc.uc_mcontext.gregs[libc::REG_RIP as usize] = rip as i64;
            uc.uc_mcontext.gregs[libc::REG_R12 as usize] = word.as_ptr() as i64;
            let ctx = (&raw mut uc).cast::<c_void>();
            on_interrupt(libc::SIGRTMAX() - 2, core::ptr::null_mut(), ctx);
            uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize
        };
        for rip in [begin, (begin + insn) / 2, insn] {
            assert_eq!(handled(rip, true), cancel, "requested, at {rip:#x}");
            assert_eq!(handled(rip, false), rip, "not requested, at {rip:#x}");
        }
        // Before the stub's test of the word (which will see it), and in or past the kernel.
        for rip in [begin - 1, insn + 2, cancel] {
            assert_eq!(handled(rip, true), rip, "outside the window, at {rip:#x}");
        }
    }

    /// The real path from the kernel to the `-EINTR` exit: a handler installed with SA_RESTART
    /// makes the kernel rewind a blocked call to its `syscall` instruction before running the
    /// handler, so it finds the thread in the window: not requested, the call resumes; requested,
    /// the handler moves it to the exit.
    #[test]
    fn a_signal_in_the_window_leaves_through_the_eintr_exit() {
        let sig = libc::SIGRTMAX() - 3;
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
        let mut sa: libc::sigaction = unsafe { core::mem::zeroed() };
        sa.sa_sigaction = on_interrupt as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        // SAFETY: `sa` is initialised; the handler is async-signal-safe.
        let r = unsafe { libc::sigaction(sig, &sa, core::ptr::null_mut()) };
        assert_eq!(r, 0);
        let fds = pipe();
        let (word, tid, back) = (AtomicU32::new(0), AtomicI32::new(0), AtomicBool::new(false));
        thread::scope(|s| {
            s.spawn(|| {
                tid.store(gettid(), Ordering::Release);
                let mut buf = [0u8; 4];
                let args = read_args(fds[0], &mut buf);
                // SAFETY: a read into our live buffer from a pipe nobody writes to.
                let r = unsafe { syscall6_interruptible(libc::SYS_read as u64, &args, &word) };
                back.store(true, Ordering::Release);
                assert_eq!(r, EINTR);
            });
            while tid.load(Ordering::Acquire) == 0 {
                thread::yield_now();
            }
            let tid = tid.load(Ordering::Acquire);
            thread::sleep(Duration::from_millis(20));
            assert_eq!(tgkill(tid, sig), 0);
            thread::sleep(Duration::from_millis(20));
            assert!(
                !back.load(Ordering::Acquire),
                "an unrequested signal ended it"
            );
            word.store(1, Ordering::SeqCst);
            assert_eq!(tgkill(tid, sig), 0);
            let deadline = Instant::now() + Duration::from_secs(2);
            while !back.load(Ordering::Acquire) {
                if Instant::now() > deadline {
                    // Free the reader, so the test fails instead of hanging in the join.
                    // SAFETY: writes one byte from a static buffer to our pipe.
                    unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
                    panic!("the requested call did not end");
                }
                thread::sleep(Duration::from_millis(1));
            }
        });
        close(fds);
    }
}
