/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flexsc_mod.h - internals of the flexsc module: the registration, its syscall cores and
 * syscall threads, shared by device.c, registration.c, worker.c and dispatch.c.
 */
#ifndef FLEXSC_MOD_H
#define FLEXSC_MOD_H

#include <linux/atomic.h>
#include <linux/list.h>
#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/wait.h>

#include "flexsc_ioctl.h"

struct pid;
struct task_struct;

/* A syscall core (paper 3.6): at most one active syscall thread of the process at a time. */
struct flexsc_sc {
	int cpu;			/* -1: unpinned */
	struct task_struct *active;	/* the thread draining pages now; reg->lock */
	unsigned int idle;		/* threads sleeping on idle_wq; reg->lock */
	wait_queue_head_t idle_wq;
};

/* A posting core: flexsc_wait sleeps on wq until seq moves. */
struct flexsc_core {
	atomic_t seq;
	wait_queue_head_t wq;
};

/* A syscall thread (a thread of the registering process inside FLEXSC_IOC_WORKER). */
struct flexsc_worker {
	struct list_head node;		/* reg->workers; reg->lock */
	struct task_struct *task;
	u32 sc;				/* its syscall core */
	u32 running;			/* 1 + index of the entry it runs (0: none); reg->lock */
};

struct flexsc_reg {
	/* Who may use it: the registering thread group, in the address space it registered. */
	struct pid *tgid;
	struct mm_struct *mm;		/* mmgrab'd: compared, never used */

	u32 cores, pages_per_core, npages;
	struct page **pages;		/* pinned syscall pages */
	struct page **ctl_pages;	/* pinned pages holding the page controls */
	u32 nctl_pages;
	void *ctl_map;			/* vmap of ctl_pages */
	struct flexsc_page_control *ctl; /* npages controls, inside ctl_map */

	unsigned long *page_lock;	/* bit per page: a thread is issuing its entries */
	unsigned long *rescan;		/* bit per page: an entry went back to SUBMITTED */
	u32 *drained;			/* per page: `posted` when its last complete drain began */
	unsigned long *intr;		/* bit per entry: an interrupt was requested */

	struct flexsc_core *core;	/* cores */
	struct flexsc_sc *sc;		/* nsc, in list order */
	u32 nsc;

	spinlock_t lock;		/* activation, idle counts, workers, interrupts */
	struct list_head workers;
	unsigned int active;		/* syscall cores with an active thread */
	bool dead;			/* unregistered: threads leave, waits return */
};

/* One open file of /dev/flexsc. */
struct flexsc_file {
	struct mutex mutex;		/* serialises REGISTER */
	struct flexsc_reg *reg;		/* set once, with release */
};

/* registration.c */
struct flexsc_reg *flexsc_reg_create(const struct flexsc_register_args *args);
void flexsc_reg_destroy(struct flexsc_reg *reg);
bool flexsc_reg_owned_by_current(const struct flexsc_reg *reg);
struct flexsc_entry *flexsc_entry_at(const struct flexsc_reg *reg, u32 index);
void flexsc_complete(struct flexsc_reg *reg, u32 index, long ret);
void flexsc_wake_core(struct flexsc_reg *reg, u32 core);
void flexsc_unregister(struct flexsc_reg *reg);
long flexsc_wait(struct flexsc_reg *reg, struct flexsc_wait_args *args);
long flexsc_interrupt(struct flexsc_reg *reg, u32 core, u32 slot);

/* worker.c */
long flexsc_worker(struct flexsc_reg *reg, u32 sc);
void flexsc_kick(struct flexsc_reg *reg);
bool flexsc_current_is_worker(void);
void flexsc_notify(struct task_struct *task);

/* dispatch.c */
int flexsc_dispatch_init(void);
long flexsc_dispatch(struct flexsc_reg *reg, u32 index, u16 nr, const u64 args[6]);
long flexsc_dispatch_call(u16 nr, const u64 args[6]);
bool flexsc_refused(u16 nr, const u64 args[6]);
bool flexsc_may_block(u16 nr, const u64 args[6]);
void flexsc_run_task_work(void);
bool flexsc_seccomp_active(void);

/* compound.c */
long flexsc_compound(struct flexsc_reg *reg, u32 index, u64 uaddr);

#endif /* FLEXSC_MOD_H */
