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
#define FLEXSC_ZERO {} /* C++'s empty initializer: no -Wmissing-field-initializers */
#else
#define FLEXSC_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define FLEXSC_ALIGNOF(type) _Alignof(type)
#define FLEXSC_ZERO { 0 } /* C's universal zero initializer (C11 has no empty one) */
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
/* A multi-call or compound call: args[0] is the address of a struct flexsc_compound. */
#define FLEXSC_NR_COMPOUND (FLEXSC_NR_BASE + 1u)

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

/*
 * Multi-calls and compound calls (Rust: src/compound/abi.rs; module: module/compound.c).
 *
 * Posted as ONE entry: nr = FLEXSC_NR_COMPOUND, args[0] = &header. The executor copies the
 * header and ops in, validates everything before running anything, runs the ops, and writes
 * each op's result (-ECANCELED: did not run), `steps` and `stop` back. The entry's ret:
 *   >= 1: the 1-based index of the op whose checked call failed, or nops + 1 (the multi-call
 *         paper's value: every call ran, or the program stopped normally);
 *   < 0 with steps == 0: rejected, nothing ran (EINVAL malformed, E2BIG too many ops, EPERM a
 *         refused syscall such as clone, fork, execve or exit, EFAULT unreadable memory);
 *         `stop` is the offending op (0xFFFFFFFF: the header);
 *   < 0 with steps > 0: stopped while running (ELOOP step limit, EINTR interrupted, ENODATA an
 *         argument referenced a call that had not run).
 */
#define FLEXSC_COMPOUND_VERSION 1u
#define FLEXSC_COMPOUND_MAX_OPS 1024u
#define FLEXSC_COMPOUND_MAX_STEPS (1u << 24)

#define FLEXSC_OP_CALL 1u /* run nr(args) */
#define FLEXSC_OP_JUMP 2u /* if (operand 0 cond operand 1) continue at target (nops: the end) */
#define FLEXSC_OP_STOP 3u /* end normally */

#define FLEXSC_OP_CHECK 1u /* CALL: a negative result stops the program */

#define FLEXSC_SRC_IMM 0u    /* args[k] */
#define FLEXSC_SRC_RESULT 1u /* results[refs[k]] + args[k], refs[k] an earlier CALL */
#define FLEXSC_SRC_BUF 2u    /* buf + args[k], args[k] <= buf_len */

#define FLEXSC_COND_ALWAYS 0u
#define FLEXSC_COND_EQ 1u
#define FLEXSC_COND_NE 2u
#define FLEXSC_COND_LT 3u /* signed 64-bit comparisons */
#define FLEXSC_COND_LE 4u
#define FLEXSC_COND_GT 5u
#define FLEXSC_COND_GE 6u

struct flexsc_op {
	uint8_t kind;	    /* FLEXSC_OP_* */
	uint8_t flags;	    /* FLEXSC_OP_CHECK */
	uint16_t nr;	    /* CALL: syscall number */
	uint16_t target;    /* JUMP: op index, 0..nops */
	uint8_t cond;	    /* JUMP: FLEXSC_COND_* */
	uint8_t nargs;	    /* CALL: informational */
	uint8_t src[6];	    /* FLEXSC_SRC_* per argument (JUMP: operands 0 and 1) */
	uint16_t refs[6];   /* FLEXSC_SRC_RESULT: the op whose result is used */
	uint8_t reserved[6]; /* zero */
	uint64_t args[6];   /* value, or offset */
};

struct flexsc_compound {
	uint32_t version;   /* FLEXSC_COMPOUND_VERSION */
	uint32_t nops;	    /* 1..FLEXSC_COMPOUND_MAX_OPS */
	uint32_t max_steps; /* ops executed at most, 1..FLEXSC_COMPOUND_MAX_STEPS (0: missing) */
	uint32_t flags;	    /* zero */
	uint64_t ops;	    /* address of nops struct flexsc_op */
	uint64_t results;   /* address of nops int64_t, written */
	uint64_t buf;	    /* the shared buffer area (0: none) */
	uint64_t buf_len;
	uint32_t steps; /* out: ops executed */
	uint32_t stop;	/* out: where it ended (nops: past the end), or the offending op */
};

FLEXSC_STATIC_ASSERT(sizeof(struct flexsc_op) == 80, "op is 80 bytes");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_op, src) == 8, "op src offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_op, refs) == 14, "op refs offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_op, args) == 32, "op args offset");
FLEXSC_STATIC_ASSERT(sizeof(struct flexsc_compound) == 56, "compound header is 56 bytes");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_compound, ops) == 16, "compound ops offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_compound, steps) == 48, "compound steps offset");

#ifndef __KERNEL__
/*
 * A multi-call (System Call Clustering, Figure 2) in C: fills `ops` with one CALL per request
 * and `h` with the header; post it as an entry {FLEXSC_NR_COMPOUND, args[0] = (uint64_t)h}.
 * nrs[i], args[i][0..6], check[i]: the calls. Returns -1 if count is out of range.
 */
static inline int flexsc_multicall_init(struct flexsc_compound *h, struct flexsc_op *ops,
					int64_t *results, uint32_t count, const uint16_t *nrs,
					const uint64_t (*args)[6], const uint8_t *check)
{
	struct flexsc_compound zero = FLEXSC_ZERO;
	uint32_t i, k;

	if (count == 0 || count > FLEXSC_COMPOUND_MAX_OPS)
		return -1;
	for (i = 0; i < count; i++) {
		struct flexsc_op op = FLEXSC_ZERO;

		op.kind = FLEXSC_OP_CALL;
		op.flags = check[i] ? FLEXSC_OP_CHECK : 0;
		op.nr = nrs[i];
		op.nargs = 6;
		for (k = 0; k < 6; k++)
			op.args[k] = args[i][k];
		ops[i] = op;
	}
	*h = zero;
	h->version = FLEXSC_COMPOUND_VERSION;
	h->nops = count;
	h->max_steps = count;
	h->ops = (uint64_t)(uintptr_t)ops;
	h->results = (uint64_t)(uintptr_t)results;
	return 0;
}

/*
 * Running them: libflexsc.so (the preload, or -lflexsc) exports the two functions below; a C
 * user that does not link it can still post the entry itself on its own syscall page. On a
 * green thread the compound is posted as ONE entry on the thread's syscall page and the green
 * thread switches while it runs; on any other thread it runs in-process (each call trapping),
 * with the same results. `syscall(FLEXSC_NR_COMPOUND, h)` does the same under libflexsc
 * (returning -1 and errno instead of -errno).
 */

/* One call of a multi-call (System Call Clustering's struct sys_params). */
struct flexsc_call {
	int64_t nr;	   /* syscall number */
	uint64_t args[6];  /* its arguments, as for syscall(2) */
	int32_t check;	   /* nonzero: a negative result stops the multi-call */
	int64_t result;	   /* out: the call's result (-errno; -ECANCELED: it did not run) */
};

FLEXSC_STATIC_ASSERT(sizeof(struct flexsc_call) == 72, "call is 72 bytes");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_call, check) == 56, "call check offset");
FLEXSC_STATIC_ASSERT(offsetof(struct flexsc_call, result) == 64, "call result offset");

#ifdef __cplusplus
extern "C" {
#endif
/*
 * Runs the compound `h` (header, ops, results and buffer as above) and returns exactly what its
 * entry returns: the 1-based index of the checked call that failed, or nops + 1; < 0 with
 * h->steps == 0: rejected, nothing ran; < 0 with h->steps > 0: stopped while running.
 */
long flexsc_compound_run(struct flexsc_compound *h);

/*
 * The multi-call: runs calls[0..count) in order as one compound, stopping after the first call
 * with `check` set whose result is negative. Every calls[i].result is written (-ECANCELED for
 * the calls that did not run). Returns the paper's value (1-based index of the failed checked
 * call, or count + 1), or -errno if the sequence was rejected before anything ran (EINVAL:
 * count 0; E2BIG: count above FLEXSC_COMPOUND_MAX_OPS; EPERM: a call that acts on the calling
 * thread, such as clone, fork, execve or exit, or a number from FLEXSC_NR_BASE up, which no
 * system call has).
 */
long flexsc_multicall(struct flexsc_call *calls, uint32_t count);
#ifdef __cplusplus
}
#endif
#endif

#endif /* FLEXSC_H */
