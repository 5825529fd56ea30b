// SPDX-License-Identifier: GPL-2.0
/*
 * compound.c - multi-calls and compound calls (include/flexsc.h, FLEXSC_NR_COMPOUND) run inside
 * one kernel entry of a syscall thread: the program is copied in (never read twice from user
 * memory), validated completely before anything runs, then interpreted: calls go through
 * flexsc_dispatch_call (the same refusals as entries), references and comparisons are plain
 * arithmetic, and nothing but system calls runs. A step limit bounds loops; a pending signal,
 * an interrupt request or the registration ending stop the program between steps (-EINTR).
 * Mirrors libflexsc's src/compound/{validate,exec}.rs.
 *
 * The shared buffer (header buf/buf_len) is pinned and mapped into the kernel once per
 * execution, the first time a read, write, pread64 or pwrite64 has its whole buffer inside it;
 * those calls then run as kernel_read/kernel_write on the mapping (no user-memory access, no
 * faults; the data is still copied once). Anything else takes the plain path, so results are
 * always the system call's.
 */
#include <linux/errno.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <asm/unistd.h>

#include "flexsc_mod.h"

#define FLEXSC_NOT_RUN (-(long)ECANCELED)
#define FLEXSC_HEADER_FAULT 0xFFFFFFFFu

/* Larger shared buffers are not pinned (their calls take the plain path). */
#define FLEXSC_BUF_MAX_PAGES 4096

/*
 * Counters in /sys/module/flexsc/parameters/ (read-only), so a test can see which path ran:
 * calls answered on the pinned buffer, and buffers that could not be pinned.
 */
static atomic_long_t flexsc_buf_calls = ATOMIC_LONG_INIT(0);
static atomic_long_t flexsc_buf_pin_failures = ATOMIC_LONG_INIT(0);

static int flexsc_counter_get(char *buffer, const struct kernel_param *kp)
{
	return sysfs_emit(buffer, "%ld\n", atomic_long_read((atomic_long_t *)kp->arg));
}

static const struct kernel_param_ops flexsc_counter_ops = {
	.get = flexsc_counter_get,
};

module_param_cb(compound_buf_calls, &flexsc_counter_ops, &flexsc_buf_calls, 0444);
MODULE_PARM_DESC(compound_buf_calls, "compound calls run on the pinned shared buffer");
module_param_cb(compound_buf_pin_failures, &flexsc_counter_ops, &flexsc_buf_pin_failures, 0444);
MODULE_PARM_DESC(compound_buf_pin_failures, "shared buffers that could not be pinned");

/* A compound's shared buffer, pinned and mapped for one execution. */
struct flexsc_buf {
	u64 start, len;		/* the header's area (user addresses) */
	struct page **pages;
	int npages;		/* pinned so far */
	void *map;		/* vmap of pages; NULL: not (or not successfully) mapped */
	bool tried;		/* pinning was attempted: never twice per execution */
	bool dirty;		/* a read wrote into the pages */
};

static void flexsc_buf_release(struct flexsc_buf *b)
{
	if (b->map)
		vunmap(b->map);
	if (b->npages)
		unpin_user_pages_dirty_lock(b->pages, b->npages, b->dirty);
	kvfree(b->pages);
	b->map = NULL;
	b->pages = NULL;
	b->npages = 0;
}

/*
 * Pins and maps the area, once; false (and the plain path) if it cannot be: unmapped or
 * read-only pages (FOLL_WRITE: reads write into them), I/O mappings, or too large.
 */
static bool flexsc_buf_map(struct flexsc_buf *b)
{
	int want, n;

	if (b->tried)
		return b->map;
	b->tried = true;
	if (b->len > (u64)FLEXSC_BUF_MAX_PAGES * PAGE_SIZE)
		return false;
	want = DIV_ROUND_UP(offset_in_page(b->start) + b->len, PAGE_SIZE);
	b->pages = kvmalloc_array(want, sizeof(*b->pages), GFP_KERNEL);
	if (!b->pages)
		goto fail;
	n = pin_user_pages_fast(b->start & PAGE_MASK, want, FOLL_WRITE, b->pages);
	if (n > 0)
		b->npages = n;
	if (n != want)
		goto fail;
	b->map = vmap(b->pages, want, VM_MAP, PAGE_KERNEL);
	if (!b->map)
		goto fail;
	return true;
fail:
	atomic_long_inc(&flexsc_buf_pin_failures);
	flexsc_buf_release(b);
	return false;
}

/*
 * Files whose read_iter/write_iter take a kernel iterator the way they take a user one:
 * regular files without O_DIRECT (direct I/O wants user pages), pipes and sockets; and only
 * with the iter method alone, as kernel_read/kernel_write require.
 */
static bool flexsc_buf_file_ok(struct file *file, bool is_read)
{
	umode_t mode = file_inode(file)->i_mode;

	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode))
		return false;
	if (file->f_flags & O_DIRECT)
		return false;
	if (is_read)
		return file->f_op->read_iter && !file->f_op->read;
	return file->f_op->write_iter && !file->f_op->write;
}

/*
 * read, write, pread64 or pwrite64 with its whole buffer inside the shared buffer, run on the
 * pinned mapping with ksys_read/ksys_pread64's (and the write side's) checks, in their order.
 * False: not such a call, or the buffer or the file does not allow it (the plain path runs it).
 */
static bool flexsc_buf_call(struct flexsc_buf *b, u16 nr, const u64 a[6], long *ret)
{
	bool is_read, positional, locked = false;
	u64 addr = a[1], count = a[2];
	loff_t pos = (loff_t)a[3], *ppos = &pos;
	struct file *file;
	void *p;

	switch (nr) {
	case __NR_read:
		is_read = true;
		positional = false;
		break;
	case __NR_write:
		is_read = false;
		positional = false;
		break;
	case __NR_pread64:
		is_read = true;
		positional = true;
		break;
	case __NR_pwrite64:
		is_read = false;
		positional = true;
		break;
	default:
		return false;
	}
	if (!b->len || addr < b->start || count > b->len || addr - b->start > b->len - count)
		return false;
	/* The plain path refuses calls on a thread under seccomp (-EPERM): let it. */
	if (flexsc_seccomp_active())
		return false;
	if (!flexsc_buf_map(b))
		return false;
	p = b->map + offset_in_page(b->start) + (addr - b->start);

	if (positional && pos < 0) {
		*ret = -EINVAL;
		goto counted;
	}
	file = fget((unsigned int)a[0]);	/* no O_PATH files, as fdget_pos */
	if (!file) {
		*ret = -EBADF;
		goto counted;
	}
	if (positional && !(file->f_mode & (is_read ? FMODE_PREAD : FMODE_PWRITE))) {
		*ret = -ESPIPE;
		goto put;
	}
	if (!(file->f_mode & (is_read ? FMODE_READ : FMODE_WRITE))) {
		*ret = -EBADF;
		goto put;
	}
	if (!(file->f_mode & (is_read ? FMODE_CAN_READ : FMODE_CAN_WRITE))) {
		*ret = -EINVAL;
		goto put;
	}
	if (!flexsc_buf_file_ok(file, is_read)) {
		fput(file);
		return false;
	}
	if (!positional) {
		/*
		 * __fdget_pos is not exported: take f_pos_lock as it does for a file with another
		 * reference (we hold one of our own), and use f_pos unless the file is a stream.
		 */
		if (file->f_mode & FMODE_ATOMIC_POS) {
			mutex_lock(&file->f_pos_lock);
			locked = true;
		}
		if (file->f_mode & FMODE_STREAM)
			ppos = NULL;
		else
			pos = file->f_pos;
	}
	if (is_read) {
		*ret = kernel_read(file, p, count, ppos);
		b->dirty = true;
	} else {
		*ret = kernel_write(file, p, count, ppos);
	}
	if (!positional && *ret >= 0 && ppos)
		file->f_pos = pos;
	if (locked)
		mutex_unlock(&file->f_pos_lock);
put:
	fput(file);
counted:
	atomic_long_inc(&flexsc_buf_calls);
	return true;
}

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
			     const struct flexsc_op *ops, long *results, unsigned long *ran,
			     struct flexsc_buf *buf)
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
		if (!flexsc_buf_call(buf, op->nr, a, &r))
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
	struct flexsc_buf buf = { };
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

	buf.start = h.buf;
	buf.len = h.buf_len;
	ret = flexsc_interpret(reg, index, &h, ops, results, ran, &buf);
	flexsc_buf_release(&buf);

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
