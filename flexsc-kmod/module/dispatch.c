// SPDX-License-Identifier: GPL-2.0
/*
 * dispatch.c - running one entry's system call on the current syscall thread: the kernel's
 * syscall table (found at load time), the numbers that are not system calls, and the calls that
 * must never run on another thread (answered -EOPNOTSUPP, never executed). The lists mirror
 * libflexsc's src/calls.rs (thread_bound_reason, may_block).
 */
#include <linux/futex.h>
#include <linux/kallsyms.h>
#include <linux/kprobes.h>
#include <linux/nospec.h>
#include <linux/resource.h>
#include <linux/sched/signal.h>
#include <linux/seccomp.h>
#include <linux/task_work.h>
#include <linux/time.h>
#include <linux/wait.h>
#include <asm/syscall.h>
#include <asm/unistd.h>

#include "flexsc_mod.h"

typedef long (*flexsc_syscall_fn)(const struct pt_regs *);
typedef unsigned long (*flexsc_lookup_fn)(const char *name);

static const flexsc_syscall_fn *flexsc_table;
static void (*flexsc_task_work_run)(void);
static int (*flexsc_wake_up_state)(struct task_struct *p, unsigned int state);

/* kallsyms_lookup_name is not exported: a kprobe on it tells its address. */
static flexsc_lookup_fn flexsc_find_lookup(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	flexsc_lookup_fn fn;

	if (register_kprobe(&kp) < 0)
		return NULL;
	fn = (flexsc_lookup_fn)kp.addr;
	unregister_kprobe(&kp);
	return fn;
}

int flexsc_dispatch_init(void)
{
	flexsc_lookup_fn lookup = flexsc_find_lookup();
	unsigned long table, read_fn;

	if (!lookup) {
		pr_err("flexsc: no kprobe on kallsyms_lookup_name\n");
		return -ENOENT;
	}
	table = lookup("sys_call_table");
	read_fn = lookup("__x64_sys_read");
	flexsc_task_work_run = (void (*)(void))lookup("task_work_run");
	flexsc_wake_up_state = (int (*)(struct task_struct *, unsigned int))
		lookup("wake_up_state");
	if (!table || !read_fn || !flexsc_task_work_run || !flexsc_wake_up_state) {
		pr_err("flexsc: kernel symbols not found\n");
		return -ENOENT;
	}
	/* Sanity: the table we found is the one the kernel dispatches read through. */
	if (((const unsigned long *)table)[__NR_read] != read_fn) {
		pr_err("flexsc: sys_call_table[__NR_read] is not __x64_sys_read\n");
		return -ENOENT;
	}
	flexsc_table = (const flexsc_syscall_fn *)table;
	return 0;
}

/* What the kernel runs when a thread returns to user space, done between calls instead: the
 * deferred work of fput() and friends, so a close() through an entry takes effect at once.
 */
void flexsc_run_task_work(void)
{
	if (test_thread_flag(TIF_NOTIFY_SIGNAL))
		clear_notify_signal();
	if (task_work_pending(current)) {
		__set_current_state(TASK_RUNNING);
		flexsc_task_work_run();
	}
}

/* Makes signal_pending() true for `task` without a signal (what io_uring does to its task), so
 * its interruptible sleep ends with -ERESTARTSYS; cleared by flexsc_run_task_work.
 */
void flexsc_notify(struct task_struct *task)
{
	if (!test_and_set_tsk_thread_flag(task, TIF_NOTIFY_SIGNAL) &&
	    !flexsc_wake_up_state(task, TASK_INTERRUPTIBLE))
		kick_process(task);
}

bool flexsc_seccomp_active(void)
{
#ifdef CONFIG_SECCOMP
	return READ_ONCE(current->seccomp.mode) != SECCOMP_MODE_DISABLED;
#else
	return false;
#endif
}

/* CLOCK_THREAD_CPUTIME_ID, or MAKE_THREAD_CPUCLOCK(0, ...): the caller's own CPU clock. */
static bool own_thread_clock(u64 arg)
{
	s32 id = (s32)arg;

	return id == CLOCK_THREAD_CPUTIME_ID || (id < 0 && (id & 4) && (id >> 3) == -1);
}

static bool pi_futex_op(u64 op)
{
	switch ((s32)op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)) {
	case FUTEX_LOCK_PI:
	case FUTEX_UNLOCK_PI:
	case FUTEX_TRYLOCK_PI:
	case FUTEX_WAIT_REQUEUE_PI:
	case FUTEX_CMP_REQUEUE_PI:
	case FUTEX_LOCK_PI2:
		return true;
	}
	return false;
}

#define FLEXSC_NR_LSM_GET_SELF_ATTR 459
#define FLEXSC_NR_LSM_SET_SELF_ATTR 460

/* Whether the call acts on (or reports about) the calling thread, or ends, copies or replaces
 * it: such a call must never run on a syscall thread. Mirrors calls.rs.
 */
static bool flexsc_thread_bound(u16 nr, const u64 a[6])
{
	bool self = a[0] == 0;

	switch (nr) {
	case __NR_gettid:
	case __NR_set_tid_address:
	case __NR_set_robust_list:
	case __NR_rt_sigprocmask:
	case __NR_rt_sigpending:
	case __NR_rt_sigsuspend:
	case __NR_rt_sigtimedwait:
	case __NR_sigaltstack:
	case __NR_rt_sigreturn:
	case __NR_pause:
	case __NR_restart_syscall:
	case __NR_sched_yield:
	case __NR_getcpu:
	case __NR_ptrace:
	case __NR_set_mempolicy:
	case __NR_get_mempolicy:
	case __NR_set_thread_area:
	case __NR_get_thread_area:
	case __NR_landlock_restrict_self:
	case FLEXSC_NR_LSM_GET_SELF_ATTR:
	case FLEXSC_NR_LSM_SET_SELF_ATTR:
	case __NR_prctl:
	case __NR_arch_prctl:
	case __NR_rseq:
	case __NR_seccomp:
	case __NR_personality:
	case __NR_clone:
	case __NR_clone3:
	case __NR_fork:
	case __NR_vfork:
	case __NR_execve:
	case __NR_execveat:
	case __NR_exit:
	case __NR_exit_group:
	case __NR_setns:
	case __NR_unshare:
	case __NR_setuid:
	case __NR_setgid:
	case __NR_setreuid:
	case __NR_setregid:
	case __NR_setresuid:
	case __NR_setresgid:
	case __NR_setfsuid:
	case __NR_setfsgid:
	case __NR_setgroups:
	case __NR_capset:
	case __NR_io_uring_enter:
	case __NR_io_uring_setup:
	case __NR_io_uring_register:
	case __NR_iopl:
	case __NR_ioperm:
		return true;
	case __NR_get_robust_list:
	case __NR_sched_setaffinity:
	case __NR_sched_getaffinity:
	case __NR_sched_setscheduler:
	case __NR_sched_getscheduler:
	case __NR_sched_setparam:
	case __NR_sched_getparam:
	case __NR_sched_setattr:
	case __NR_sched_getattr:
		return self;
	case __NR_setpriority:
	case __NR_getpriority:
		return a[0] == PRIO_PROCESS && a[1] == 0;
	case __NR_ioprio_set:
	case __NR_ioprio_get:
		return a[0] == 1 && a[1] == 0;
	case __NR_getrusage:
		return (s32)a[0] == RUSAGE_THREAD;
	case __NR_clock_gettime:
	case __NR_clock_getres:
	case __NR_clock_nanosleep:
	case __NR_timer_create:
		return own_thread_clock(a[0]);
	case __NR_futex:
		return pi_futex_op(a[1]);
	case __NR_perf_event_open:
		return (s32)a[1] == 0;
	case __NR_wait4:
		return (s32)a[2] & __WNOTHREAD;
	case __NR_waitid:
		return (s32)a[3] & __WNOTHREAD;
	}
	return false;
}

/* Whether a call may sleep for an unbounded time (a syscall thread hands its core to a sibling
 * before running one). Conservative: anything not known to return promptly.
 */
bool flexsc_may_block(u16 nr, const u64 args[6])
{
	if (nr == FLEXSC_NR_COMPOUND)
		return true; /* any of its calls may */
	switch (nr) {
	case __NR_getpid: case __NR_getppid: case __NR_getuid: case __NR_geteuid:
	case __NR_getgid: case __NR_getegid: case __NR_getpgid: case __NR_getsid:
	case __NR_getpgrp: case __NR_getgroups: case __NR_getresuid: case __NR_getresgid:
	case __NR_uname: case __NR_umask: case __NR_getcwd: case __NR_time:
	case __NR_gettimeofday: case __NR_clock_gettime: case __NR_clock_getres:
	case __NR_times: case __NR_sysinfo: case __NR_getrlimit: case __NR_prlimit64:
	case __NR_getrusage: case __NR_lseek: case __NR_fstat: case __NR_newfstatat:
	case __NR_statx: case __NR_stat: case __NR_lstat: case __NR_access:
	case __NR_faccessat: case __NR_faccessat2: case __NR_readlink: case __NR_readlinkat:
	case __NR_dup: case __NR_dup2: case __NR_dup3: case __NR_pipe: case __NR_pipe2:
	case __NR_eventfd2: case __NR_socket: case __NR_socketpair: case __NR_bind:
	case __NR_listen: case __NR_getsockname: case __NR_getpeername:
	case __NR_setsockopt: case __NR_getsockopt: case __NR_shutdown:
	case __NR_epoll_create1: case __NR_epoll_ctl: case __NR_mmap: case __NR_munmap:
	case __NR_mprotect: case __NR_madvise: case __NR_brk: case __NR_mremap:
	case __NR_kill: case __NR_tgkill: case __NR_tkill: case __NR_timerfd_create:
	case __NR_timerfd_settime: case __NR_timerfd_gettime: case __NR_signalfd4:
	case __NR_memfd_create: case __NR_getdents64: case __NR_mkdir: case __NR_mkdirat:
	case __NR_rmdir: case __NR_unlink: case __NR_unlinkat: case __NR_rename:
	case __NR_renameat: case __NR_renameat2: case __NR_chmod: case __NR_fchmod:
	case __NR_fchmodat: case __NR_symlink: case __NR_symlinkat: case __NR_link:
	case __NR_linkat: case __NR_truncate: case __NR_ftruncate:
		return false;
	}
	/* Answered at once: numbers beyond the table, and calls refused as thread-bound. */
	return nr < NR_syscalls && !flexsc_thread_bound(nr, args);
}

/* Whether a compound must refuse call `nr(args)` (thread-bound: clone, fork, execve, exit, ...). */
bool flexsc_refused(u16 nr, const u64 args[6])
{
	return flexsc_thread_bound(nr, args);
}

/* Runs entry `index`'s request: a compound (compound.c), or one call. */
long flexsc_dispatch(struct flexsc_reg *reg, u32 index, u16 nr, const u64 args[6])
{
	if (nr == FLEXSC_NR_COMPOUND)
		return flexsc_compound(reg, index, args[0]);
	return flexsc_dispatch_call(nr, args);
}

/*
 * Runs call `nr(args)` on the current thread and returns its raw result: 0 for the flexsc
 * no-op, -ENOSYS for other reserved numbers and numbers beyond the table, -EOPNOTSUPP for calls
 * bound to the calling thread; otherwise the kernel's own implementation, through its table.
 */
long flexsc_dispatch_call(u16 nr, const u64 args[6])
{
	struct pt_regs regs = {};

	if (nr == FLEXSC_NR_NOP)
		return 0;
	if (nr >= NR_syscalls)
		return -ENOSYS;
	if (flexsc_thread_bound(nr, args))
		return -EOPNOTSUPP;
	/* Dispatched calls bypass seccomp: a filtered thread gets none run. */
	if (flexsc_seccomp_active())
		return -EPERM;
	regs.di = args[0];
	regs.si = args[1];
	regs.dx = args[2];
	regs.r10 = args[3];
	regs.r8 = args[4];
	regs.r9 = args[5];
	regs.orig_ax = nr;
	regs.ax = -ENOSYS;
	return flexsc_table[array_index_nospec(nr, NR_syscalls)](&regs);
}
