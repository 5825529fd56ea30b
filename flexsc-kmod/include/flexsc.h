/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * flexsc.h - the exception-less system call entry ABI (FlexSC, Soares & Stumm, OSDI'10),
 * shared by libflexsc (Rust: flexsc-kmod/src/entry.rs, page.rs), the kernel module and C users.
 *
 * A syscall page is 4 KiB, page aligned, and holds 64 entries of 64 bytes (one cache line each).
 * An entry's status moves
 *
 *     FREE --post--> SUBMITTED --claim--> BUSY --complete--> DONE --take--> FREE
 *
 * Only the poster moves an entry out of FREE (writing nr, nargs, flags and args first, then the
 * status with release semantics) and out of DONE (reading ret after an acquire load of the
 * status). Executors claim a SUBMITTED entry with one compare-and-swap to BUSY (acquire), so a
 * call runs exactly once, and publish ret with a release store of DONE.
 *
 * Include from user space (C11 or later, or C++11) or from kernel code (__KERNEL__).
 */
#ifndef FLEXSC_H
#define FLEXSC_H

#ifdef __KERNEL__
#include <linux/types.h>  /* the kernel's uint32_t & co. */
#include <linux/stddef.h> /* offsetof */
#else
#include <stddef.h>
#include <stdint.h>
#endif

#ifdef __cplusplus
#define FLEXSC_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#define FLEXSC_ALIGNOF(type) alignof(type)
#else
#define FLEXSC_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define FLEXSC_ALIGNOF(type) _Alignof(type)
#endif

/* Entry status values (entry.rs: status::*). */
#define FLEXSC_STATUS_FREE 0u      /* owned by the poster, holds nothing */
#define FLEXSC_STATUS_SUBMITTED 1u /* published by the poster; any executor may claim it */
#define FLEXSC_STATUS_BUSY 2u      /* claimed by exactly one executor, which runs the call */
#define FLEXSC_STATUS_DONE 3u      /* ret is written; the poster may read it and free the entry */

/* Syscall numbers from here up are libflexsc's own operations, not Linux system calls. */
#define FLEXSC_NR_BASE 0xF000u
/* A no-op that returns 0. */
#define FLEXSC_NR_NOP FLEXSC_NR_BASE

#define FLEXSC_ENTRIES_PER_PAGE 64u
#define FLEXSC_ENTRY_SIZE 64u
#define FLEXSC_PAGE_SIZE 4096u

/* One exception-less system call. */
struct flexsc_entry {
	uint32_t status; /* FLEXSC_STATUS_*; accessed atomically */
	uint16_t nr;     /* syscall number (x86_64), or FLEXSC_NR_* */
	uint8_t nargs;   /* how many of args are meaningful */
	uint8_t flags;   /* reserved, zero */
	uint64_t args[6];
	int64_t ret; /* return value, or -errno */
} __attribute__((aligned(64)));

/* A syscall page: the entries, in slot order. */
struct flexsc_page {
	struct flexsc_entry entries[FLEXSC_ENTRIES_PER_PAGE];
} __attribute__((aligned(4096)));

FLEXSC_STATIC_ASSERT(sizeof(struct flexsc_entry) == FLEXSC_ENTRY_SIZE, "entry is 64 bytes");
FLEXSC_STATIC_ASSERT(FLEXSC_ALIGNOF(struct flexsc_entry) == FLEXSC_ENTRY_SIZE,
		     "entry is cache-line aligned");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_entry, status) == 0, "status offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_entry, nr) == 4, "nr offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_entry, nargs) == 6, "nargs offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_entry, flags) == 7, "flags offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_entry, args) == 8, "args offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_entry, ret) == 56, "ret offset");
FLEXSC_STATIC_ASSERT(sizeof(struct flexsc_page) == FLEXSC_PAGE_SIZE, "page is 4 KiB of entries");
FLEXSC_STATIC_ASSERT(FLEXSC_ALIGNOF(struct flexsc_page) == FLEXSC_PAGE_SIZE,
		     "page is page aligned");

#endif /* FLEXSC_H */
