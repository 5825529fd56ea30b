// SPDX-License-Identifier: GPL-2.0
/*
 * worker.c - syscall threads and their scheduler (paper 3.5, 3.6).
 *
 * A syscall thread is a thread of the registering process inside FLEXSC_IOC_WORKER. It belongs
 * to one syscall core of the registration's static list (pinned to that CPU, if the list names
 * CPUs). At most one thread per syscall core is *active*: it drains the pages, each under the
 * page's lock, running the calls that return promptly itself. Before a call that may block it
 * gives the core up and wakes an idle sibling (its own core's, else the first core on the list
 * not running one), so the pages keep draining while it sleeps in the call. Threads with nothing
 * to do sleep on their core's wait queue; a submit (FLEXSC_IOC_KICK) or flexsc_wait wakes the
 * first core on the list not already running one when no thread is active.
 */
#include <linux/cpumask.h>
#include <linux/errno.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/xarray.h>

#include "flexsc_mod.h"

/* Every thread inside FLEXSC_IOC_WORKER, by tid: a call it runs must not enter the module. */
static DEFINE_XARRAY(flexsc_workers);

bool flexsc_current_is_worker(void)
{
	return xa_load(&flexsc_workers, current->pid);
}

static bool flexsc_page_has_work(const struct flexsc_reg *reg, u32 i)
{
	return READ_ONCE(reg->ctl[i].posted) != READ_ONCE(reg->drained[i]) ||
	       test_bit(i, reg->rescan);
}

static bool flexsc_has_work(const struct flexsc_reg *reg)
{
	u32 i;

	for (i = 0; i < reg->npages; i++)
		if (flexsc_page_has_work(reg, i))
			return true;
	return false;
}

/* Wakes one idle thread: of syscall core `prefer` if it has one, else of the first core on the
 * list with no active thread and an idle one. Under reg->lock.
 */
static void flexsc_wake_idle_locked(struct flexsc_reg *reg, int prefer)
{
	u32 i;

	if (prefer >= 0 && !reg->sc[prefer].active && reg->sc[prefer].idle) {
		wake_up(&reg->sc[prefer].idle_wq);
		return;
	}
	for (i = 0; i < reg->nsc; i++) {
		if (!reg->sc[i].active && reg->sc[i].idle) {
			wake_up(&reg->sc[i].idle_wq);
			return;
		}
	}
}

/* Wakes a syscall thread if none is active (after work was posted). */
void flexsc_kick(struct flexsc_reg *reg)
{
	spin_lock(&reg->lock);
	if (!reg->active)
		flexsc_wake_idle_locked(reg, -1);
	spin_unlock(&reg->lock);
}

static bool flexsc_activate(struct flexsc_reg *reg, struct flexsc_worker *w)
{
	struct flexsc_sc *sc = &reg->sc[w->sc];
	bool ok = false;

	spin_lock(&reg->lock);
	if (!sc->active) {
		sc->active = current;
		reg->active++;
		ok = true;
	}
	spin_unlock(&reg->lock);
	return ok;
}

static void flexsc_deactivate_locked(struct flexsc_reg *reg, struct flexsc_worker *w)
{
	reg->sc[w->sc].active = NULL;
	reg->active--;
}

static void flexsc_deactivate(struct flexsc_reg *reg, struct flexsc_worker *w)
{
	spin_lock(&reg->lock);
	flexsc_deactivate_locked(reg, w);
	spin_unlock(&reg->lock);
}

/* Sleeps until this thread's core has no active thread and work is posted, the registration
 * ends, or a signal (or notification) is pending.
 */
static void flexsc_sleep_idle(struct flexsc_reg *reg, struct flexsc_worker *w)
{
	struct flexsc_sc *sc = &reg->sc[w->sc];

	spin_lock(&reg->lock);
	sc->idle++;
	spin_unlock(&reg->lock);
	/* Interrupted by a signal: the loop looks at it next. */
	(void)wait_event_interruptible_exclusive(sc->idle_wq, READ_ONCE(reg->dead) ||
		(!READ_ONCE(sc->active) && flexsc_has_work(reg)));
	spin_lock(&reg->lock);
	sc->idle--;
	spin_unlock(&reg->lock);
}

/* Whether a call's result says a signal (or our notification) cut it short. */
static bool flexsc_restart_code(long ret)
{
	return ret == -ERESTARTSYS || ret == -ERESTARTNOINTR || ret == -ERESTARTNOHAND ||
	       ret == -ERESTART_RESTARTBLOCK;
}

enum flexsc_ran { FLEXSC_CALLED, FLEXSC_STOPPED };

/*
 * Publishes the result of entry `index`'s call, whose restart codes never reach user space: a
 * call cut short by our notification (`requested`) or a fatal signal answers -EINTR; one cut
 * short by a stop goes back to SUBMITTED, to run again once the thread is back from user space
 * (as the kernel restarts a stopped call), and the caller must leave for user space.
 */
static enum flexsc_ran flexsc_finish(struct flexsc_reg *reg, u32 index, long ret, bool requested)
{
	if (flexsc_restart_code(ret)) {
		if (!requested && task_sigpending(current) && !fatal_signal_pending(current)) {
			/* SUBMITTED again, then the page marked for a rescan (in order: a
			 * drainer clears the mark before it scans the statuses).
			 */
			smp_store_release(&flexsc_entry_at(reg, index)->status,
					  FLEXSC_STATUS_SUBMITTED);
			smp_mb__before_atomic(); /* the status before the mark */
			set_bit(index / FLEXSC_ENTRIES_PER_PAGE, reg->rescan);
			return FLEXSC_STOPPED;
		}
		ret = -EINTR;
	}
	flexsc_complete(reg, index, ret);
	return FLEXSC_CALLED;
}

/*
 * Runs claimed entry `index` whose call may block, after handing the core to a sibling. The
 * thread publishes itself as the entry's runner (so flexsc_interrupt can notify it) unless an
 * interrupt was already requested, in which case the call never starts.
 */
static enum flexsc_ran flexsc_run_blocking(struct flexsc_reg *reg, struct flexsc_worker *w,
					   u32 index, u16 nr, const u64 args[6])
{
	bool requested;
	long ret;

	spin_lock(&reg->lock);
	flexsc_deactivate_locked(reg, w);
	/* Paper 3.5: before sleeping in a call, let a sibling keep the pages draining. */
	if (flexsc_has_work(reg))
		flexsc_wake_idle_locked(reg, w->sc);
	requested = test_bit(index, reg->intr) || READ_ONCE(reg->dead);
	if (!requested)
		w->running = index + 1;
	spin_unlock(&reg->lock);

	ret = requested ? -EINTR : flexsc_dispatch(reg, index, nr, args);

	spin_lock(&reg->lock);
	w->running = 0;
	requested = requested || test_bit(index, reg->intr) || READ_ONCE(reg->dead);
	/* No notification outlives its call: a later one finds no runner. */
	clear_notify_signal();
	spin_unlock(&reg->lock);
	flexsc_run_task_work();
	return flexsc_finish(reg, index, ret, requested);
}

enum flexsc_drain { FLEXSC_IDLE, FLEXSC_RAN, FLEXSC_HANDED_OFF, FLEXSC_SIGNALLED };

/*
 * One pass over the pages with work, each under its lock (paper 3.6): claims every SUBMITTED
 * entry once, runs the prompt calls here, and stops at the first call that may block, which it
 * runs after handing the core over (the page is left marked, so a sibling resumes it).
 */
static enum flexsc_drain flexsc_drain(struct flexsc_reg *reg, struct flexsc_worker *w,
				      u32 *start)
{
	enum flexsc_drain result = FLEXSC_IDLE;
	u32 k, i, j;

	*start = (*start + 1) % reg->npages;
	for (k = 0; k < reg->npages; k++) {
		u32 posted;

		i = (*start + k) % reg->npages;
		if (!flexsc_page_has_work(reg, i) || test_and_set_bit_lock(i, reg->page_lock))
			continue;
		clear_bit(i, reg->rescan);
		smp_mb__after_atomic(); /* the mark cleared before the statuses are read */
		/* Pairs with the poster's release of `posted`, after its SUBMITTED stores. */
		posted = smp_load_acquire(&reg->ctl[i].posted);
		for (j = 0; j < FLEXSC_ENTRIES_PER_PAGE; j++) {
			u32 index = i * FLEXSC_ENTRIES_PER_PAGE + j;
			struct flexsc_entry *e = flexsc_entry_at(reg, index);
			u64 args[6];
			long ret;
			u16 nr;
			int a;

			if (READ_ONCE(e->status) != FLEXSC_STATUS_SUBMITTED ||
			    cmpxchg(&e->status, FLEXSC_STATUS_SUBMITTED, FLEXSC_STATUS_BUSY) !=
			    FLEXSC_STATUS_SUBMITTED)
				continue;
			/* One copy of the request: the page is the poster's to scribble on. */
			nr = READ_ONCE(e->nr);
			for (a = 0; a < 6; a++)
				args[a] = READ_ONCE(e->args[a]);
			result = FLEXSC_RAN;
			if (flexsc_may_block(nr, args)) {
				clear_bit_unlock(i, reg->page_lock);
				if (flexsc_run_blocking(reg, w, index, nr, args) == FLEXSC_STOPPED)
					return FLEXSC_SIGNALLED;
				return FLEXSC_HANDED_OFF;
			}
			ret = flexsc_dispatch(reg, index, nr, args);
			flexsc_run_task_work();
			if (flexsc_finish(reg, index, ret, false) == FLEXSC_STOPPED) {
				clear_bit_unlock(i, reg->page_lock);
				flexsc_deactivate(reg, w);
				return FLEXSC_SIGNALLED;
			}
			cond_resched();
		}
		WRITE_ONCE(reg->drained[i], posted);
		clear_bit_unlock(i, reg->page_lock);
	}
	return result;
}

static long flexsc_worker_loop(struct flexsc_reg *reg, struct flexsc_worker *w)
{
	u32 start = 0;

	for (;;) {
		enum flexsc_drain d;

		if (READ_ONCE(reg->dead))
			return 0;
		if (fatal_signal_pending(current))
			return -EINTR;
		if (task_sigpending(current))
			return -ERESTARTSYS; /* a stop: taken in user space, then back here */
		flexsc_run_task_work();
		if (!flexsc_activate(reg, w)) {
			flexsc_sleep_idle(reg, w);
			continue;
		}
		do {
			d = flexsc_drain(reg, w, &start);
		} while (d == FLEXSC_RAN && !READ_ONCE(reg->dead) && !signal_pending(current));
		if (d == FLEXSC_HANDED_OFF || d == FLEXSC_SIGNALLED)
			continue; /* already inactive */
		flexsc_deactivate(reg, w);
		if (d == FLEXSC_RAN || flexsc_has_work(reg))
			continue;
		flexsc_sleep_idle(reg, w);
	}
}

/* FLEXSC_IOC_WORKER: the calling thread becomes a syscall thread of syscall core `sc` until the
 * registration ends (0) or a signal must be handled in user space (-EINTR, -ERESTARTSYS).
 */
long flexsc_worker(struct flexsc_reg *reg, u32 sc)
{
	struct flexsc_worker w = { .task = current, .sc = sc };
	long ret;
	int err;

	if (sc >= reg->nsc)
		return -EINVAL;
	err = xa_insert(&flexsc_workers, current->pid, &w, GFP_KERNEL);
	if (err)
		return err == -EBUSY ? -EDEADLK : err;
	spin_lock(&reg->lock);
	list_add(&w.node, &reg->workers);
	spin_unlock(&reg->lock);
	if (reg->sc[sc].cpu >= 0)
		set_cpus_allowed_ptr(current, cpumask_of(reg->sc[sc].cpu)); /* a preference only */

	ret = flexsc_worker_loop(reg, &w);

	spin_lock(&reg->lock);
	list_del(&w.node);
	spin_unlock(&reg->lock);
	xa_erase(&flexsc_workers, current->pid);
	return ret;
}
