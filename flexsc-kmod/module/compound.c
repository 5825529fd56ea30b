// SPDX-License-Identifier: GPL-2.0
/*
 * compound.c - multi-calls and compound calls (include/flexsc.h, FLEXSC_NR_COMPOUND) run inside
 * one kernel entry of a syscall thread: the program is copied in (never read twice from user
 * memory), validated completely before anything runs, then interpreted: calls go through
 * flexsc_dispatch_call (the same refusals as entries), references and comparisons are plain
 * arithmetic, and nothing but system calls runs. A step limit bounds loops; a pending signal,
 * an interrupt request or the registration ending stop the program between steps (-EINTR).
 * Mirrors libflexsc's src/compound/{validate,exec}.rs.
 */
#include <linux/errno.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "flexsc_mod.h"

#define FLEXSC_NOT_RUN (-(long)ECANCELED)
#define FLEXSC_HEADER_FAULT 0xFFFFFFFFu

/* Whether argument (or operand) k of op i is well formed; 0 or -errno. */
static int flexsc_check_source(const struct flexsc_compound *h, const struct flexsc_op *ops,
			       u32 i, u32 k)
{
	const struct flexsc_op *op = &ops[i];

	switch (op->src[k]) {
	case FLEXSC_SRC_IMM:
		return op->refs[k] ? -EINVAL : 0;
	case FLEXSC_SRC_RESULT:
		if (op->refs[k] >= i || ops[op->refs[k]].kind != FLEXSC_OP_CALL)
			return -EINVAL; /* bad reference */
		return 0;
	case FLEXSC_SRC_BUF:
		if (!h->buf)
			return -EFAULT;
		if (op->refs[k] || op->args[k] > h->buf_len)
			return -EINVAL;
		return 0;
	}
	return -EINVAL;
}

static bool flexsc_zero(const void *p, size_t n)
{
	return !memchr_inv(p, 0, n);
}

/* Validates every op; 0, or -errno with *bad the offending op. */
static int flexsc_check_ops(const struct flexsc_compound *h, const struct flexsc_op *ops,
			    u32 *bad)
{
	u32 i, k;
	int err;

	for (i = 0; i < h->nops; i++) {
		const struct flexsc_op *op = &ops[i];
		u64 imm[6];

		*bad = i;
		if (!flexsc_zero(op->reserved, sizeof(op->reserved)))
			return -EINVAL;
		switch (op->kind) {
		case FLEXSC_OP_CALL:
			if ((op->flags & ~FLEXSC_OP_CHECK) || op->target || op->cond)
				return -EINVAL;
			if (op->nr >= FLEXSC_NR_BASE && op->nr != FLEXSC_NR_NOP)
				return -EPERM; /* compounds do not nest */
			/* Referenced arguments count as 0 (the calling thread) for this check. */
			for (k = 0; k < 6; k++)
				imm[k] = op->src[k] == FLEXSC_SRC_IMM ? op->args[k] : 0;
			if (op->nr != FLEXSC_NR_NOP && flexsc_refused(op->nr, imm))
				return -EPERM;
			for (k = 0; k < 6; k++) {
				err = flexsc_check_source(h, ops, i, k);
				if (err)
					return err;
			}
			break;
		case FLEXSC_OP_JUMP:
			if (op->flags || op->nr || op->cond > FLEXSC_COND_GE || op->target > h->nops)
				return -EINVAL;
			for (k = 0; k < 2; k++) {
				err = flexsc_check_source(h, ops, i, k);
				if (err)
					return err;
			}
			for (k = 2; k < 6; k++)
				if (op->src[k] || op->refs[k] || op->args[k])
					return -EINVAL;
			break;
		case FLEXSC_OP_STOP:
			if (op->flags || op->nr || op->target || op->cond || op->nargs ||
			    !flexsc_zero(op->src, sizeof(op->src)) ||
			    !flexsc_zero(op->refs, sizeof(op->refs)) ||
			    !flexsc_zero(op->args, sizeof(op->args)))
				return -EINVAL;
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

static int flexsc_check_header(const struct flexsc_compound *h)
{
	if (h->version != FLEXSC_COMPOUND_VERSION || h->flags || !h->nops)
		return -EINVAL;
	if (h->nops > FLEXSC_COMPOUND_MAX_OPS)
		return -E2BIG;
	if (!h->max_steps || h->max_steps > FLEXSC_COMPOUND_MAX_STEPS)
		return -EINVAL; /* no (or an excessive) step limit */
	if (!h->ops || !h->results)
		return -EFAULT;
	return 0;
}

/* The value of argument k of op `op`; false if it references a call that has not run. */
static bool flexsc_resolve(const struct flexsc_compound *h, const struct flexsc_op *op,
			   const long *results, const unsigned long *ran, u32 k, u64 *v)
{
	switch (op->src[k]) {
	case FLEXSC_SRC_RESULT:
		if (!test_bit(op->refs[k], ran))
			return false;
		*v = (u64)results[op->refs[k]] + op->args[k];
		return true;
	case FLEXSC_SRC_BUF:
		*v = h->buf + op->args[k];
		return true;
	}
	*v = op->args[k];
	return true;
}

static bool flexsc_compare(u8 cond, s64 a, s64 b)
{
	switch (cond) {
	case FLEXSC_COND_EQ: return a == b;
	case FLEXSC_COND_NE: return a != b;
	case FLEXSC_COND_LT: return a < b;
	case FLEXSC_COND_LE: return a <= b;
	case FLEXSC_COND_GT: return a > b;
	case FLEXSC_COND_GE: return a >= b;
	}
	return true;
}

/* Runs the validated program; returns the entry's value, with h->steps and h->stop set. */
static long flexsc_interpret(struct flexsc_reg *reg, u32 index, struct flexsc_compound *h,
			     const struct flexsc_op *ops, long *results, unsigned long *ran)
{
	u32 pc = 0, steps = 0, k;
	long ret, r;

	for (;;) {
		const struct flexsc_op *op;
		u64 a[6];

		if (pc >= h->nops) {
			pc = h->nops;
			ret = h->nops + 1;
			break;
		}
		if (steps >= h->max_steps) {
			ret = -ELOOP;
			break;
		}
		/* Between steps: a signal, an interrupt of this entry, the end of the registration. */
		if (signal_pending(current) || test_bit(index, reg->intr) || READ_ONCE(reg->dead)) {
			ret = -EINTR;
			break;
		}
		cond_resched();
		steps++;
		op = &ops[pc];
		if (op->kind == FLEXSC_OP_STOP) {
			ret = h->nops + 1;
			break;
		}
		for (k = 0; k < (op->kind == FLEXSC_OP_CALL ? 6 : 2); k++)
			if (!flexsc_resolve(h, op, results, ran, k, &a[k]))
				goto unset;
		if (op->kind == FLEXSC_OP_JUMP) {
			pc = flexsc_compare(op->cond, (s64)a[0], (s64)a[1]) ? op->target : pc + 1;
			continue;
		}
		r = flexsc_dispatch_call(op->nr, a);
		flexsc_run_task_work();
		/* Cut short by a signal or an interrupt of this entry: the program ends here, the call
		 * counted as not run (restart codes never reach user space).
		 */
		if (r == -ERESTARTSYS || r == -ERESTARTNOINTR || r == -ERESTARTNOHAND ||
		    r == -ERESTART_RESTARTBLOCK ||
		    (r == -EINTR && (test_bit(index, reg->intr) || READ_ONCE(reg->dead)))) {
			ret = -EINTR;
			break;
		}
		results[pc] = r;
		set_bit(pc, ran);
		if (results[pc] < 0 && (op->flags & FLEXSC_OP_CHECK)) {
			ret = pc + 1;
			break;
		}
		pc++;
	}
	h->steps = steps;
	h->stop = pc;
	return ret;
unset:
	h->steps = steps;
	h->stop = pc;
	return -ENODATA;
}

/*
 * FLEXSC_NR_COMPOUND for entry `index`: the program at user address `uaddr` (the registering
 * process's memory: syscall threads share its mm).
 */
long flexsc_compound(struct flexsc_reg *reg, u32 index, u64 uaddr)
{
	struct flexsc_compound __user *uh = u64_to_user_ptr(uaddr);
	struct flexsc_compound h;
	struct flexsc_op *ops = NULL;
	unsigned long *ran = NULL;
	long *results = NULL;
	long ret;
	u32 i, bad = FLEXSC_HEADER_FAULT;
	int err;

	if (copy_from_user(&h, uh, sizeof(h)))
		return -EFAULT;
	err = flexsc_check_header(&h);
	if (err)
		goto reject;
	ops = kvmalloc_array(h.nops, sizeof(*ops), GFP_KERNEL);
	results = kvmalloc_array(h.nops, sizeof(*results), GFP_KERNEL);
	ran = bitmap_zalloc(h.nops, GFP_KERNEL);
	if (!ops || !results || !ran) {
		err = -ENOMEM;
		goto reject;
	}
	if (copy_from_user(ops, u64_to_user_ptr(h.ops), h.nops * sizeof(*ops))) {
		err = -EFAULT;
		goto reject;
	}
	err = flexsc_check_ops(&h, ops, &bad);
	if (err)
		goto reject;
	for (i = 0; i < h.nops; i++)
		results[i] = FLEXSC_NOT_RUN;

	ret = flexsc_interpret(reg, index, &h, ops, results, ran);

	/* int64 results, one by one (long is 64 bits on x86_64, the only target). */
	BUILD_BUG_ON(sizeof(long) != sizeof(s64));
	if (copy_to_user(u64_to_user_ptr(h.results), results, h.nops * sizeof(*results)) ||
	    put_user(h.steps, &uh->steps) || put_user(h.stop, &uh->stop))
		ret = -EFAULT;
	goto out;
reject:
	/* Nothing ran: steps 0, stop the offending op. */
	ret = err;
	if (put_user(0u, &uh->steps) || put_user(bad, &uh->stop))
		ret = -EFAULT;
out:
	kvfree(ops);
	kvfree(results);
	bitmap_free(ran);
	return ret;
}
