// SPDX-License-Identifier: GPL-2.0
/*
 * registration.c - flexsc_register and its undoing: pinning the process's syscall pages and
 * page controls, the per-page and per-entry state kept in the kernel, completions, flexsc_wait,
 * interrupts and unregistering.
 */
#include <linux/bitmap.h>
#include <linux/cpumask.h>
#include <linux/jiffies.h>
#include <linux/mm.h>
#include <linux/pid.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "flexsc_mod.h"

/* Pins `n` pages from user address `start` for writing; every one must be private anonymous
 * memory (no page cache page, whose writeback would not expect our writes).
 */
static int flexsc_pin(unsigned long start, u32 n, struct page **pages)
{
	int got, i;

	got = pin_user_pages_fast(start, n, FOLL_WRITE | FOLL_LONGTERM, pages);
	if (got < 0)
		return got;
	if (got != n) {
		unpin_user_pages(pages, got);
		return -EFAULT;
	}
	for (i = 0; i < n; i++) {
		if (!PageAnon(pages[i])) {
			unpin_user_pages(pages, n);
			return -EINVAL;
		}
	}
	return 0;
}

static int flexsc_check_args(const struct flexsc_register_args *a)
{
	if (a->entry_size != FLEXSC_ENTRY_SIZE || a->page_size != FLEXSC_PAGE_SIZE ||
	    a->entries_per_page != FLEXSC_ENTRIES_PER_PAGE ||
	    a->control_size != sizeof(struct flexsc_page_control))
		return -EPROTO;
	if (a->flags || !a->cores || !a->pages_per_core ||
	    a->cores > FLEXSC_MAX_PAGES || a->pages_per_core > FLEXSC_MAX_PAGES ||
	    a->cores * a->pages_per_core > FLEXSC_MAX_PAGES ||
	    a->nr_syscall_cpus > FLEXSC_MAX_SYSCALL_CPUS)
		return -EINVAL;
	if (a->pages % PAGE_SIZE || a->controls % 64 || !a->pages || !a->controls)
		return -EINVAL;
	if (FLEXSC_PAGE_SIZE != PAGE_SIZE)
		return -EINVAL;
	return 0;
}

static int flexsc_read_cpus(struct flexsc_reg *reg, const struct flexsc_register_args *a)
{
	u32 i, cpu;

	reg->nsc = a->nr_syscall_cpus ? a->nr_syscall_cpus : 1;
	reg->sc = kcalloc(reg->nsc, sizeof(*reg->sc), GFP_KERNEL);
	if (!reg->sc)
		return -ENOMEM;
	for (i = 0; i < reg->nsc; i++) {
		reg->sc[i].cpu = -1;
		init_waitqueue_head(&reg->sc[i].idle_wq);
	}
	for (i = 0; i < a->nr_syscall_cpus; i++) {
		if (get_user(cpu, (u32 __user *)u64_to_user_ptr(a->syscall_cpus) + i))
			return -EFAULT;
		if (cpu >= nr_cpu_ids || !cpu_possible(cpu))
			return -EINVAL;
		reg->sc[i].cpu = cpu;
	}
	return 0;
}

static int flexsc_pin_all(struct flexsc_reg *reg, const struct flexsc_register_args *a)
{
	unsigned long ctl_start = a->controls & PAGE_MASK;
	unsigned long ctl_end = a->controls + (unsigned long)reg->npages * sizeof(*reg->ctl);
	int err;

	if (ctl_end < a->controls)
		return -EINVAL;
	reg->nctl_pages = (PAGE_ALIGN(ctl_end) - ctl_start) >> PAGE_SHIFT;
	reg->pages = kvcalloc(reg->npages, sizeof(*reg->pages), GFP_KERNEL);
	reg->ctl_pages = kvcalloc(reg->nctl_pages, sizeof(*reg->ctl_pages), GFP_KERNEL);
	if (!reg->pages || !reg->ctl_pages)
		return -ENOMEM;
	err = flexsc_pin(a->pages, reg->npages, reg->pages);
	if (err)
		goto no_pages;
	err = flexsc_pin(ctl_start, reg->nctl_pages, reg->ctl_pages);
	if (err)
		goto no_ctl;
	reg->ctl_map = vmap(reg->ctl_pages, reg->nctl_pages, VM_MAP, PAGE_KERNEL);
	if (!reg->ctl_map) {
		err = -ENOMEM;
		goto no_map;
	}
	reg->ctl = reg->ctl_map + (a->controls - ctl_start);
	return 0;

no_map:
	unpin_user_pages(reg->ctl_pages, reg->nctl_pages);
no_ctl:
	unpin_user_pages(reg->pages, reg->npages);
no_pages:
	kvfree(reg->ctl_pages);
	kvfree(reg->pages);
	reg->ctl_pages = NULL;
	reg->pages = NULL;
	return err;
}

/* Frees what flexsc_reg_create allocated, whatever it got to (the pins are undone by the
 * caller that made them).
 */
static void flexsc_reg_free(struct flexsc_reg *reg)
{
	kfree(reg->core);
	kfree(reg->sc);
	bitmap_free(reg->page_lock);
	bitmap_free(reg->rescan);
	bitmap_free(reg->intr);
	kvfree(reg->drained);
	if (reg->mm)
		mmdrop(reg->mm);
	put_pid(reg->tgid);
	kfree(reg);
}

struct flexsc_reg *flexsc_reg_create(const struct flexsc_register_args *a)
{
	struct flexsc_reg *reg;
	u32 i;
	int err = flexsc_check_args(a);

	if (err)
		return ERR_PTR(err);
	reg = kzalloc(sizeof(*reg), GFP_KERNEL);
	if (!reg)
		return ERR_PTR(-ENOMEM);
	spin_lock_init(&reg->lock);
	INIT_LIST_HEAD(&reg->workers);
	reg->tgid = get_pid(task_tgid(current));
	reg->mm = current->mm;
	mmgrab(reg->mm);
	reg->cores = a->cores;
	reg->pages_per_core = a->pages_per_core;
	reg->npages = a->cores * a->pages_per_core;

	reg->page_lock = bitmap_zalloc(reg->npages, GFP_KERNEL);
	reg->rescan = bitmap_zalloc(reg->npages, GFP_KERNEL);
	reg->intr = bitmap_zalloc(reg->npages * FLEXSC_ENTRIES_PER_PAGE, GFP_KERNEL);
	reg->drained = kvcalloc(reg->npages, sizeof(*reg->drained), GFP_KERNEL);
	reg->core = kcalloc(reg->cores, sizeof(*reg->core), GFP_KERNEL);
	if (!reg->page_lock || !reg->rescan || !reg->intr || !reg->drained || !reg->core) {
		err = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < reg->cores; i++) {
		atomic_set(&reg->core[i].seq, 0);
		init_waitqueue_head(&reg->core[i].wq);
	}
	err = flexsc_read_cpus(reg, a);
	if (err)
		goto fail;
	err = flexsc_pin_all(reg, a);
	if (err)
		goto fail;
	/* Pages whose hint says "posted" before we came: look at them once. */
	for (i = 0; i < reg->npages; i++)
		reg->drained[i] = READ_ONCE(reg->ctl[i].posted) - 1;
	return reg;

fail:
	flexsc_reg_free(reg);
	return ERR_PTR(err);
}

/* The last reference to the file is gone: no thread is inside an ioctl of it. */
void flexsc_reg_destroy(struct flexsc_reg *reg)
{
	WARN_ON_ONCE(!list_empty(&reg->workers));
	vunmap(reg->ctl_map);
	unpin_user_pages_dirty_lock(reg->ctl_pages, reg->nctl_pages, true);
	unpin_user_pages_dirty_lock(reg->pages, reg->npages, true);
	kvfree(reg->ctl_pages);
	kvfree(reg->pages);
	flexsc_reg_free(reg);
}

/* Only the registering process, in the address space it registered, may use it (a child after
 * fork, or the process after execve, may not).
 */
bool flexsc_reg_owned_by_current(const struct flexsc_reg *reg)
{
	return task_tgid(current) == reg->tgid && current->mm == reg->mm;
}

/* Entry `index` (page * 64 + slot) of the registration; index < npages * 64. */
struct flexsc_entry *flexsc_entry_at(const struct flexsc_reg *reg, u32 index)
{
	struct flexsc_page *page = page_address(reg->pages[index / FLEXSC_ENTRIES_PER_PAGE]);

	return &page->entries[index % FLEXSC_ENTRIES_PER_PAGE];
}

void flexsc_wake_core(struct flexsc_reg *reg, u32 core)
{
	struct flexsc_core *c = &reg->core[core];

	atomic_inc(&c->seq);
	if (wq_has_sleeper(&c->wq))
		wake_up_interruptible_all(&c->wq);
}

/*
 * Publishes entry `index`'s result: ret, then DONE (release), then the page's completion count
 * and the core's waiters. An interrupt requested for it is forgotten: either flexsc_interrupt
 * sees DONE and clears its own request, or we see the request here (a full barrier on each
 * side between the write and the read).
 */
void flexsc_complete(struct flexsc_reg *reg, u32 index, long ret)
{
	struct flexsc_entry *e = flexsc_entry_at(reg, index);
	u32 page = index / FLEXSC_ENTRIES_PER_PAGE;

	WRITE_ONCE(e->ret, ret);
	/* ret before DONE: pairs with the poster's acquire load of the status. */
	smp_store_release(&e->status, FLEXSC_STATUS_DONE);
	/* DONE before the request bit is read: pairs with flexsc_interrupt's barrier. */
	smp_mb();
	if (test_bit(index, reg->intr))
		clear_bit(index, reg->intr);
	atomic_inc((atomic_t *)&reg->ctl[page].completed);
	flexsc_wake_core(reg, page / reg->pages_per_core);
}

/* Ends the registration: syscall threads finish their calls (blocked ones are interrupted) and
 * leave FLEXSC_IOC_WORKER; waits return. Idempotent.
 */
void flexsc_unregister(struct flexsc_reg *reg)
{
	struct flexsc_worker *w;
	u32 i;

	spin_lock(&reg->lock);
	WRITE_ONCE(reg->dead, true);
	list_for_each_entry(w, &reg->workers, node)
		if (w->running)
			flexsc_notify(w->task);
	spin_unlock(&reg->lock);
	for (i = 0; i < reg->nsc; i++)
		wake_up_all(&reg->sc[i].idle_wq);
	for (i = 0; i < reg->cores; i++)
		flexsc_wake_core(reg, i);
}

long flexsc_wait(struct flexsc_reg *reg, struct flexsc_wait_args *a)
{
	struct flexsc_core *c;
	long left = MAX_SCHEDULE_TIMEOUT;
	long r = 0;

	if (a->core >= reg->cores)
		return -EINVAL;
	c = &reg->core[a->core];
	if (atomic_read(&c->seq) == a->seq && !READ_ONCE(reg->dead)) {
		/* Paper 3.6: flexsc_wait is where an idle process's syscall threads get woken. */
		flexsc_kick(reg);
		if (a->timeout_ns >= 0)
			left = a->timeout_ns ? max(nsecs_to_jiffies(a->timeout_ns), 1UL) : 0;
		if (left)
			r = wait_event_interruptible_timeout(c->wq,
							     atomic_read(&c->seq) != a->seq ||
							     READ_ONCE(reg->dead),
							     left);
	}
	a->seq = atomic_read(&c->seq);
	return r < 0 ? -EINTR : 0;
}

/*
 * Asks the call of entry `slot` of posting core `core` to end early. Only a claimed (BUSY)
 * entry is affected: the request is recorded, and the syscall thread running it, if any, is
 * notified (its interruptible sleep ends, the call answers -EINTR). A thread that claimed it and
 * has not started the call sees the request and does not start it.
 */
long flexsc_interrupt(struct flexsc_reg *reg, u32 core, u32 slot)
{
	struct flexsc_worker *w;
	u32 index;

	if (core >= reg->cores || slot >= reg->pages_per_core * FLEXSC_ENTRIES_PER_PAGE)
		return -EINVAL;
	index = core * reg->pages_per_core * FLEXSC_ENTRIES_PER_PAGE + slot;
	spin_lock(&reg->lock);
	set_bit(index, reg->intr);
	/* The request before the status is read: pairs with flexsc_complete's smp_mb(). */
	smp_mb__after_atomic();
	if (READ_ONCE(flexsc_entry_at(reg, index)->status) != FLEXSC_STATUS_BUSY) {
		clear_bit(index, reg->intr);
	} else {
		list_for_each_entry(w, &reg->workers, node) {
			if (w->running == index + 1) {
				flexsc_notify(w->task);
				break;
			}
		}
	}
	spin_unlock(&reg->lock);
	return 0;
}
