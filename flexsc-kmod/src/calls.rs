#![allow(non_upper_case_globals)] // libc's SYS_* names
//! Which system calls may run on another thread, and which may block.
//!
//! An exception-less call runs on a syscall thread (or inside io_uring), not on the thread that
//! posted it. That is harmless for calls about files, sockets, memory or the process, but wrong
//! for calls whose meaning is "the calling thread": they would act on, or report about, the
//! syscall thread instead. Those are *thread-bound*: [`crate::Poster::call`] runs them locally
//! (synchronously), [`crate::Poster::post`] refuses them, and an executor that finds one in an
//! entry (a hand-written page) answers [`REFUSED`] without running it.

use libc::c_long;

/// The error a thread-bound call gets when found in an entry: `-EOPNOTSUPP`
/// ("not supported through the exception-less path; run it synchronously").
pub const REFUSED: i64 = -(libc::EOPNOTSUPP as i64);

/// Whether clock id `id` is the calling thread's CPU-time clock: `CLOCK_THREAD_CPUTIME_ID`, or
/// the dynamic id of a per-thread CPU clock with pid 0 (`MAKE_THREAD_CPUCLOCK(0, ...)`).
fn own_thread_clock(id: u64) -> bool {
    let id = id as i32;
    id == libc::CLOCK_THREAD_CPUTIME_ID || (id < 0 && id & 4 != 0 && id >> 3 == -1)
}

/// futex operations whose lock owner is the calling thread (priority inheritance: the kernel
/// records the caller's tid in the futex word, and only the owner may unlock).
fn pi_futex_op(op: u64) -> bool {
    const FUTEX_LOCK_PI: i32 = 6;
    const FUTEX_UNLOCK_PI: i32 = 7;
    const FUTEX_TRYLOCK_PI: i32 = 8;
    const FUTEX_WAIT_REQUEUE_PI: i32 = 11;
    const FUTEX_CMP_REQUEUE_PI: i32 = 12;
    const FUTEX_LOCK_PI2: i32 = 13;
    const FUTEX_CMD_MASK: i32 = !(128 | 256); // FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME
    matches!(
        op as i32 & FUTEX_CMD_MASK,
        FUTEX_LOCK_PI
            | FUTEX_UNLOCK_PI
            | FUTEX_TRYLOCK_PI
            | FUTEX_WAIT_REQUEUE_PI
            | FUTEX_CMP_REQUEUE_PI
            | FUTEX_LOCK_PI2
    )
}

/// The `options` argument of `wait4` (third) or `waitid` (fourth).
fn wait_options(nr: c_long, args: &[u64; 6]) -> i32 {
    (if nr == libc::SYS_wait4 {
        args[2]
    } else {
        args[3]
    }) as i32
}

/// `lsm_get_self_attr` and `lsm_set_self_attr` (Linux 6.8; not in every libc yet).
const SYS_LSM_GET_SELF_ATTR: c_long = 459;
const SYS_LSM_SET_SELF_ATTR: c_long = 460;

/// The answer to a libflexsc operation (numbers from `NR_FLEXSC_BASE` on), which no backend
/// hands to the kernel: NOP is 0, every other reserved number `-ENOSYS` (executors run
/// `NR_COMPOUND` entries before asking; inside a compound it cannot nest). None for a Linux
/// syscall number.
pub fn flexsc_op_result(nr: i64) -> Option<i64> {
    use crate::entry::{NR_FLEXSC_BASE, NR_NOP};
    if nr == NR_NOP as i64 {
        Some(0)
    } else if nr >= NR_FLEXSC_BASE as i64 {
        Some(-(libc::ENOSYS as i64))
    } else {
        None
    }
}

/// Why a call is thread-bound, for documentation and error messages.
pub fn thread_bound_reason(nr: c_long, args: &[u64; 6]) -> Option<&'static str> {
    use libc::*;
    let self_target = args[0] == 0; // pid/tid 0 names the calling thread
    Some(match nr {
        SYS_gettid => "returns the caller's thread id",
        SYS_set_tid_address | SYS_set_robust_list => "per-thread kernel bookkeeping",
        SYS_get_robust_list if self_target => "per-thread kernel bookkeeping",
        SYS_rt_sigprocmask | SYS_rt_sigpending | SYS_rt_sigsuspend | SYS_rt_sigtimedwait
        | SYS_sigaltstack | SYS_rt_sigreturn | SYS_pause | SYS_restart_syscall => {
            "signal state is per thread"
        }
        SYS_sched_setaffinity
        | SYS_sched_getaffinity
        | SYS_sched_setscheduler
        | SYS_sched_getscheduler
        | SYS_sched_setparam
        | SYS_sched_getparam
        | SYS_sched_setattr
        | SYS_sched_getattr
            if self_target =>
        {
            "sched_*(0) acts on the calling thread"
        }
        SYS_sched_yield => "yields the calling thread",
        SYS_getcpu => "reports the caller's CPU",
        SYS_setpriority | SYS_getpriority if args[0] == PRIO_PROCESS as u64 && args[1] == 0 => {
            "priority of tid 0 is the calling thread's"
        }
        SYS_ioprio_set | SYS_ioprio_get if args[0] == 1 && args[1] == 0 => {
            "I/O priority of who=0 is the calling thread's"
        }
        SYS_getrusage if args[0] as i32 == RUSAGE_THREAD => "RUSAGE_THREAD is the caller's",
        SYS_clock_gettime | SYS_clock_getres | SYS_clock_nanosleep | SYS_timer_create
            if own_thread_clock(args[0]) =>
        {
            "the caller's CPU-time clock"
        }
        SYS_futex if pi_futex_op(args[1]) => "a priority-inheritance futex is owned by a thread",
        SYS_perf_event_open if args[1] as i32 == 0 => "perf_event_open(pid 0) measures the caller",
        SYS_wait4 | SYS_waitid if wait_options(nr, args) & __WNOTHREAD != 0 => {
            "__WNOTHREAD waits for the caller's own children"
        }
        SYS_ptrace => "a tracer is a thread: later requests must come from it",
        SYS_set_mempolicy | SYS_get_mempolicy => "the NUMA policy is per thread",
        SYS_set_thread_area | SYS_get_thread_area => "TLS descriptors are per thread",
        SYS_landlock_restrict_self | SYS_LSM_GET_SELF_ATTR | SYS_LSM_SET_SELF_ATTR => {
            "security attributes of the calling thread"
        }
        SYS_prctl | SYS_arch_prctl | SYS_rseq | SYS_seccomp | SYS_personality => {
            "per-thread settings (prctl, arch_prctl, rseq, seccomp)"
        }
        SYS_clone | SYS_clone3 | SYS_fork | SYS_vfork => "creates a copy of the calling thread",
        SYS_execve | SYS_execveat => "replaces the calling thread's program",
        SYS_exit | SYS_exit_group => "ends the calling thread",
        SYS_setns | SYS_unshare => "changes the calling thread's namespaces",
        SYS_setuid | SYS_setgid | SYS_setreuid | SYS_setregid | SYS_setresuid | SYS_setresgid
        | SYS_setfsuid | SYS_setfsgid | SYS_setgroups | SYS_capset => {
            "credentials are per thread in the kernel"
        }
        SYS_io_uring_enter | SYS_io_uring_setup | SYS_io_uring_register => {
            "rings may be bound to their submitting thread"
        }
        SYS_iopl | SYS_ioperm => "I/O port permissions are per thread",
        _ => return None,
    })
}

/// Whether `nr` with `args` must run on the calling thread.
#[inline]
pub fn is_thread_bound(nr: c_long, args: &[u64; 6]) -> bool {
    thread_bound_reason(nr, args).is_some()
}

/// Whether a call may sleep in the kernel for an unbounded time (so a syscall thread about to run
/// it hands the page over to a sibling first, paper section 3.5). Conservative: anything not known
/// to return promptly may block.
#[inline]
pub fn may_block(nr: c_long) -> bool {
    use libc::*;
    !matches!(
        nr,
        SYS_getpid
            | SYS_getppid
            | SYS_getuid
            | SYS_geteuid
            | SYS_getgid
            | SYS_getegid
            | SYS_getpgid
            | SYS_getsid
            | SYS_getpgrp
            | SYS_getgroups
            | SYS_getresuid
            | SYS_getresgid
            | SYS_uname
            | SYS_umask
            | SYS_getcwd
            | SYS_time
            | SYS_gettimeofday
            | SYS_clock_gettime
            | SYS_clock_getres
            | SYS_times
            | SYS_sysinfo
            | SYS_getrlimit
            | SYS_prlimit64
            | SYS_getrusage
            | SYS_lseek
            | SYS_fstat
            | SYS_newfstatat
            | SYS_statx
            | SYS_stat
            | SYS_lstat
            | SYS_access
            | SYS_faccessat
            | SYS_faccessat2
            | SYS_readlink
            | SYS_readlinkat
            | SYS_dup
            | SYS_dup2
            | SYS_dup3
            | SYS_pipe
            | SYS_pipe2
            | SYS_eventfd2
            | SYS_socket
            | SYS_socketpair
            | SYS_bind
            | SYS_listen
            | SYS_getsockname
            | SYS_getpeername
            | SYS_setsockopt
            | SYS_getsockopt
            | SYS_shutdown
            | SYS_epoll_create1
            | SYS_epoll_ctl
            | SYS_mmap
            | SYS_munmap
            | SYS_mprotect
            | SYS_madvise
            | SYS_brk
            | SYS_mremap
            | SYS_kill
            | SYS_tgkill
            | SYS_tkill
            | SYS_timerfd_create
            | SYS_timerfd_settime
            | SYS_timerfd_gettime
            | SYS_signalfd4
            | SYS_memfd_create
            | SYS_getdents64
            | SYS_mkdir
            | SYS_mkdirat
            | SYS_rmdir
            | SYS_unlink
            | SYS_unlinkat
            | SYS_rename
            | SYS_renameat
            | SYS_renameat2
            | SYS_chmod
            | SYS_fchmod
            | SYS_fchmodat
            | SYS_symlink
            | SYS_symlinkat
            | SYS_link
            | SYS_linkat
            | SYS_truncate
            | SYS_ftruncate
    )
}

/// The name of a syscall number, for errors and statistics.
pub fn name(nr: c_long) -> &'static str {
    use libc::*;
    match nr {
        SYS_read => "read",
        SYS_write => "write",
        SYS_open => "open",
        SYS_openat => "openat",
        SYS_close => "close",
        SYS_getppid => "getppid",
        SYS_getpid => "getpid",
        SYS_gettid => "gettid",
        SYS_futex => "futex",
        SYS_pread64 => "pread64",
        SYS_pwrite64 => "pwrite64",
        SYS_readv => "readv",
        SYS_writev => "writev",
        SYS_accept => "accept",
        SYS_accept4 => "accept4",
        SYS_connect => "connect",
        SYS_sendto => "sendto",
        SYS_recvfrom => "recvfrom",
        SYS_sendmsg => "sendmsg",
        SYS_recvmsg => "recvmsg",
        SYS_fstat => "fstat",
        SYS_newfstatat => "newfstatat",
        SYS_statx => "statx",
        SYS_poll => "poll",
        SYS_epoll_wait => "epoll_wait",
        SYS_nanosleep => "nanosleep",
        SYS_fsync => "fsync",
        _ if nr == crate::compound::abi::NR_COMPOUND as c_long => "compound",
        _ if nr >= crate::entry::NR_FLEXSC_BASE as c_long => "flexsc-op",
        _ => "other",
    }
}
