/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * flexsc_ioctl.h - the interface of the flexsc kernel module (/dev/flexsc), shared by the module
 * (flexsc-kmod/module/) and libflexsc's `kmod` backend (flexsc-kmod/src/backend/kmod/abi.rs,
 * checked against this header by tests/abi_ioctl.rs).
 *
 * One open file of /dev/flexsc holds at most one registration: the syscall pages of one process
 * (FLEXSC_IOC_REGISTER). Only threads of the registering process (same thread group, same mm)
 * may use it. Threads the library created enter FLEXSC_IOC_WORKER and become syscall threads:
 * they stay in the kernel, draining the registration's pages, until FLEXSC_IOC_UNREGISTER (the
 * ioctl then returns 0) or a signal that must be handled in user space (it returns -1/EINTR and
 * the thread calls it again). FLEXSC_IOC_WAIT is flexsc_wait.
 *
 * Include from user space (C11 or later, or C++11) or from kernel code (__KERNEL__).
 */
#ifndef FLEXSC_IOCTL_H
#define FLEXSC_IOCTL_H

#include "flexsc.h"

#include <linux/ioctl.h> /* _IO, _IOW, _IOWR: the same macros in the kernel and in user space */

/* The device node's name, under /dev. */
#define FLEXSC_DEVICE_NAME "flexsc"

/* Most syscall pages one registration may pin (16 MiB). */
#define FLEXSC_MAX_PAGES 4096u
/* Most syscall cores one registration may list. */
#define FLEXSC_MAX_SYSCALL_CPUS 256u

/*
 * The control words the library keeps beside each syscall page (Rust: page::PageControl), one
 * per page, in page order, in one 64-byte aligned array. The module reads `posted` (bumped by
 * the page's poster after posting, release) to skip pages with nothing new, and adds to
 * `completed` (atomically) after completing entries of the page. `lock` and `drained` belong to
 * the user-space backends; the module keeps its own page lock and drain mark.
 */
struct flexsc_page_control {
	uint32_t lock;
	uint32_t posted;
	uint32_t drained;
	uint32_t completed;
	uint8_t reserved[48];
} __attribute__((aligned(64)));

FLEXSC_STATIC_ASSERT(sizeof(struct flexsc_page_control) == 64, "page control is 64 bytes");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_page_control, posted) == 4, "posted offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_page_control, completed) == 12, "completed offset");

/* FLEXSC_IOC_REGISTER: flexsc_register. */
struct flexsc_register_args {
	/* Layout check: must equal the module's FLEXSC_ENTRY_SIZE, FLEXSC_PAGE_SIZE,
	 * FLEXSC_ENTRIES_PER_PAGE and sizeof(struct flexsc_page_control). */
	uint32_t entry_size;
	uint32_t page_size;
	uint32_t entries_per_page;
	uint32_t control_size;
	/* cores * pages_per_core syscall pages, contiguous, page aligned, private anonymous
	 * memory (posting core c owns pages c * pages_per_core ..). */
	uint64_t pages;
	/* One struct flexsc_page_control per page, contiguous, 64-byte aligned. */
	uint64_t controls;
	/* nr_syscall_cpus CPU numbers (uint32_t), the static list of syscall cores in preference
	 * order; 0 with nr_syscall_cpus == 0: one syscall core, unpinned. */
	uint64_t syscall_cpus;
	uint32_t cores;
	uint32_t pages_per_core;
	uint32_t nr_syscall_cpus;
	uint32_t flags; /* zero */
};

/* FLEXSC_IOC_WORKER: the calling thread becomes a syscall thread of this syscall core (an index
 * into the registration's syscall-core list) until the registration ends. */
struct flexsc_worker_args {
	uint32_t syscall_core;
	uint32_t flags; /* zero */
};

/* FLEXSC_IOC_WAIT: flexsc_wait for posting core `core`. Returns at once if the core's
 * completion count is not `seq`; otherwise sleeps until it changes (an entry of the core is
 * DONE, FLEXSC_IOC_WAKE, or the registration ends), a signal arrives (-1/EINTR), or
 * `timeout_ns` passes (negative: no timeout). Writes the count back to `seq` either way. */
struct flexsc_wait_args {
	uint32_t core;
	uint32_t seq;
	int64_t timeout_ns;
};

/* FLEXSC_IOC_INTERRUPT: end the call of entry `slot` (page * 64 + index) of posting core `core`
 * early, if a syscall thread is running it (see docs/kernel-module.md). */
struct flexsc_slot_args {
	uint32_t core;
	uint32_t slot;
};

#define FLEXSC_IOC_MAGIC 0xF5
#define FLEXSC_IOC_REGISTER _IOW(FLEXSC_IOC_MAGIC, 1, struct flexsc_register_args)
#define FLEXSC_IOC_WORKER _IOW(FLEXSC_IOC_MAGIC, 2, struct flexsc_worker_args)
#define FLEXSC_IOC_WAIT _IOWR(FLEXSC_IOC_MAGIC, 3, struct flexsc_wait_args)
#define FLEXSC_IOC_UNREGISTER _IO(FLEXSC_IOC_MAGIC, 4)
/* Wake a syscall thread if none is active (after posting: what a submit does). */
#define FLEXSC_IOC_KICK _IO(FLEXSC_IOC_MAGIC, 5)
/* Wake the waiters of posting core `arg` (its completion count moves). */
#define FLEXSC_IOC_WAKE _IO(FLEXSC_IOC_MAGIC, 6)
#define FLEXSC_IOC_INTERRUPT _IOW(FLEXSC_IOC_MAGIC, 7, struct flexsc_slot_args)

#endif /* FLEXSC_IOCTL_H */
