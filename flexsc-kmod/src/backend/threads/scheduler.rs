//! The syscall thread scheduler: which syscall thread runs, on which core, and when it sleeps.
//!
//! One scheduler drives one *group* of syscall threads: with `Static` specialization a single
//! group drains every page, one syscall core per listed CPU; with `PerCore` and `Dynamic` each
//! posting core has a group of its own (one syscall core, placed by the
//! [`Placer`](super::specialization::Placer)) draining only that core's pages.

use crate::os_thread::{self, OsThread};
use std::io;
use std::ops::Range;
use std::sync::Mutex;

use crate::activity::Activity;
use crate::area::SyscallArea;
use crate::config::Config;
use crate::sync::{Arc, AtomicBool, AtomicU32, AtomicUsize, Ordering};

use super::poller::Poller;
use super::specialization::{CpuSet, Placer, lock};
use super::syscall_thread::ThreadState;

/// One syscall core's threads (its active flag, idle doorbell and idle count are in
/// [`Activity`]).
#[derive(Debug, Default)]
pub(crate) struct CoreSlot {
    /// The CPU (None: unpinned).
    pub(crate) cpu: Option<usize>,
    /// Threads of this core alive.
    threads: AtomicUsize,
    /// Threads of this core inside a call that may block (between `hand_off` and `call_done`).
    in_call: AtomicUsize,
}

/// What a scheduler is made of: its pages, its syscall cores, and what it shares with the
/// other groups of the registration.
#[derive(Debug)]
pub(crate) struct Group {
    /// The pages it drains (indices into the area's pages).
    pub(crate) pages: Range<usize>,
    /// One syscall core per entry: its CPU (None: not pinned by the core).
    pub(crate) cpus: Vec<Option<usize>>,
    /// Threads of syscall core i are named `flexsc-sys{first_name + i}` (per-core groups: the
    /// posting core's number).
    pub(crate) first_name: usize,
    /// Syscall threads alive in the whole registration (the cap is on all groups together).
    pub(crate) live: Arc<AtomicUsize>,
    /// How long an idle active thread spins, in polls, to begin with.
    pub(crate) spins: u32,
    /// Places the group and runs the dynamic controller (`PerCore`, `Dynamic`).
    pub(crate) placer: Option<Arc<Placer>>,
}

/// Where a group's threads are pinned, and which threads it has.
#[derive(Debug, Default)]
struct Placement {
    /// The CPUs every thread of the group is pinned to (None: left alone).
    target: Option<CpuSet>,
    /// Every thread of the group that has started and not yet exited.
    members: Vec<Arc<ThreadState>>,
}

/// Shared state of one group of syscall threads.
#[derive(Debug)]
pub(crate) struct Scheduler {
    area: Arc<SyscallArea>,
    pages: Range<usize>,
    first_name: usize,
    slots: Box<[CoreSlot]>,
    /// Which threads are active, and where idle ones sleep: the activation protocol.
    activity: Activity,
    live: Arc<AtomicUsize>,
    max_threads: usize,
    /// Polls an idle active thread spins before sleeping; a poster's spins in flexsc_wait.
    /// Changed when the group moves (never spinning on its posters' CPUs).
    spins: AtomicU32,
    wait_spins: AtomicU32,
    shut: AtomicBool,
    /// Handles and kernel thread ids of every syscall thread, for shutdown.
    threads: Mutex<Vec<(OsThread, Arc<ThreadState>)>>,
    placement: Mutex<Placement>,
    placer: Option<Arc<Placer>>,
    /// Entries whose fd was not ready wait here, not in a syscall thread (`poller.rs`).
    poller: Poller,
}

impl Scheduler {
    pub(crate) fn new(area: Arc<SyscallArea>, config: &Config, group: Group) -> Arc<Self> {
        let this = Self {
            activity: Activity::new(group.cpus.len()),
            slots: group
                .cpus
                .into_iter()
                .map(|cpu| CoreSlot {
                    cpu,
                    ..CoreSlot::default()
                })
                .collect(),
            pages: group.pages,
            first_name: group.first_name,
            live: group.live,
            // Up to one per entry, as in the paper, within the configured cap.
            max_threads: config
                .max_syscall_threads
                .min(area.pages().len() * crate::page::ENTRIES_PER_PAGE)
                .max(1),
            area,
            spins: AtomicU32::new(0),
            wait_spins: AtomicU32::new(0),
            shut: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            placement: Mutex::new(Placement::default()),
            placer: group.placer,
            poller: Poller::default(),
        };
        this.set_spins(group.spins);
        Arc::new(this)
    }

    /// Syscall threads sharing a core with their posters must not spin: the poster needs the
    /// CPU to post. Spinning pays only when the syscall cores are someone else's; then posters
    /// spin briefly in flexsc_wait too.
    fn set_spins(&self, spins: u32) {
        self.spins.store(spins, Ordering::Relaxed);
        let wait = if spins == 0 { 0 } else { 2_000 };
        self.wait_spins.store(wait, Ordering::Relaxed);
    }

    /// Pins every thread of the group, and those it starts later, to `target`; `spins` is the
    /// new idle spin count.
    pub(crate) fn place(&self, target: CpuSet, spins: u32) {
        self.set_spins(spins);
        let mut p = lock(&self.placement);
        for st in &p.members {
            target.apply(st.tid());
        }
        p.target = Some(target);
    }

    /// A thread of the group has started (its id is set): pin it where the group is, and
    /// count it in for later moves and measurements.
    pub(crate) fn join(&self, st: &Arc<ThreadState>) {
        let mut p = lock(&self.placement);
        if let Some(target) = &p.target {
            target.apply(0);
        }
        p.members.push(st.clone());
    }

    /// A thread of the group is exiting.
    pub(crate) fn leave(&self, st: &Arc<ThreadState>) {
        lock(&self.placement)
            .members
            .retain(|m| !Arc::ptr_eq(m, st));
    }

    /// The group's threads now.
    pub(crate) fn members(&self) -> Vec<Arc<ThreadState>> {
        lock(&self.placement).members.clone()
    }

    /// Gives the dynamic controller a chance to run (a syscall thread calls this when it runs out
    /// of work and every 64 busy passes; at most one tick per period happens).
    #[inline]
    pub(crate) fn tick(&self) {
        if let Some(p) = &self.placer {
            p.maybe_tick();
        }
    }

    /// Whether the group's threads account their idle spinning (for the dynamic controller).
    #[inline]
    pub(crate) fn measures_spins(&self) -> bool {
        self.placer.is_some()
    }

    pub(crate) fn start(this: &Arc<Self>) -> io::Result<()> {
        super::syscall_thread::install_interrupt_handler()?;
        // One thread per syscall core, up to the cap (at least 1): the cores beyond it get no
        // thread, and `kick` rings a core with an idle thread before any other.
        for core in 0..this.slots.len().min(this.max_threads) {
            Self::spawn(this, core)?;
        }
        Ok(())
    }

    pub(crate) fn area(&self) -> &SyscallArea {
        &self.area
    }

    pub(crate) fn slot(&self, core: usize) -> &CoreSlot {
        &self.slots[core]
    }

    /// The pages this group drains.
    pub(crate) fn pages(&self) -> Range<usize> {
        self.pages.clone()
    }

    pub(crate) fn spins(&self) -> u32 {
        self.spins.load(Ordering::Relaxed)
    }

    pub(crate) fn wait_spins(&self) -> u32 {
        self.wait_spins.load(Ordering::Relaxed)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    pub(crate) fn live_threads(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Poster side of a batch: mark the pages, then wake a syscall thread if none is active.
    pub(crate) fn submit(&self, core: usize, posted: &[u32]) {
        let mut last_page = u32::MAX;
        for &slot in posted {
            let page = slot / crate::page::ENTRIES_PER_PAGE as u32;
            if page != last_page {
                self.area.control_of(core, slot).note_posted();
                last_page = page;
            }
        }
        self.kick();
    }

    /// Wakes a syscall thread if none is active (see [`Activity::kick`]).
    #[inline]
    pub(crate) fn kick(&self) {
        self.activity.kick();
    }

    /// Tries to become the active thread of `core`.
    #[inline]
    pub(crate) fn activate(&self, core: usize) -> bool {
        self.activity.activate(core)
    }

    /// Gives up the active role of `core`; returns whether work arrived meanwhile (then the
    /// caller must make sure someone drains it).
    #[inline]
    pub(crate) fn deactivate(&self, core: usize) -> bool {
        self.activity.deactivate(core, || self.has_work())
    }

    /// Sleeps as an idle thread of `core` until the core is inactive and work is posted, or
    /// shutdown.
    pub(crate) fn sleep_idle(&self, core: usize) {
        self.activity
            .sleep_idle(core, || self.has_work(), || self.is_shut_down());
    }

    /// Whether any page of the group may hold unclaimed work, or a parked entry is ready.
    pub(crate) fn has_work(&self) -> bool {
        self.poller.has_ready() || self.pages().any(|i| self.area.control(i).has_work())
    }

    /// The group's poller (entries parked until their fd is ready).
    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    /// Hands `core` to a sibling before a call that may block (the caller has deactivated):
    /// if work is waiting, wake an idle sibling; and keep at least one thread of the core out of
    /// blocking calls, creating one if none is idle (up to the cap), so later kicks find it.
    ///
    /// A new thread is made only when every thread of the core is inside a call: a sibling that
    /// is between calls (back from one, about to become active or to sleep idle, or just made)
    /// drains the pages itself, so most calls that "may block" but do not cost no thread. Each
    /// caller counts itself in `in_call` first and decides on the count it got back, so of two
    /// concurrent hand-offs the later one sees both. The caller must call [`Self::call_done`]
    /// when its call returns.
    pub(crate) fn hand_off(this: &Arc<Self>, core: usize, work_waiting: bool) {
        let slot = &this.slots[core];
        let in_calls = slot.in_call.fetch_add(1, Ordering::SeqCst) + 1;
        if this.activity.has_idle_thread(core) {
            if work_waiting {
                this.activity.wake_one_idle(core);
            }
            return;
        }
        if slot.threads.load(Ordering::SeqCst) > in_calls {
            return;
        }
        if this.live.load(Ordering::Relaxed) < this.max_threads
            && !this.is_shut_down()
            && Self::spawn(this, core).is_ok()
        {
            return;
        }
        // No thread of this core is left out of blocking calls and none can be made (the cap,
        // or a failed spawn): let another core's idle thread take the pages, if one is idle.
        this.kick();
    }

    /// The call a [`Self::hand_off`] preceded has returned.
    pub(crate) fn call_done(&self, core: usize) {
        self.slots[core].in_call.fetch_sub(1, Ordering::SeqCst);
    }

    fn spawn(this: &Arc<Self>, core: usize) -> io::Result<()> {
        let state = Arc::new(ThreadState::default());
        let (sched, st) = (this.clone(), state.clone());
        this.live.fetch_add(1, Ordering::SeqCst);
        this.slots[core].threads.fetch_add(1, Ordering::SeqCst);
        let spawned = os_thread::spawn(
            &format!("flexsc-sys{}", this.first_name + core),
            64 * 1024,
            move || super::syscall_thread::run(sched, core, st),
        );
        match spawned {
            Ok(h) => {
                this.threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((h, state));
                Ok(())
            }
            Err(e) => {
                this.live.fetch_sub(1, Ordering::SeqCst);
                this.slots[core].threads.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    pub(crate) fn thread_exited(&self, core: usize) {
        self.slots[core].threads.fetch_sub(1, Ordering::SeqCst);
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    /// Stops every syscall thread and joins it; blocked calls are interrupted with a signal.
    pub(crate) fn shutdown(&self) {
        if self.shut.swap(true, Ordering::AcqRel) {
            return;
        }
        loop {
            self.activity.wake_all_idle();
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            let (done, running): (Vec<_>, Vec<_>) =
                threads.drain(..).partition(|(h, _)| h.is_finished());
            *threads = running;
            for (h, _) in done {
                let _ = h.join();
            }
            if threads.is_empty() {
                // No syscall thread is left to run what waits at the poller.
                self.poller.shutdown(&self.area);
                return;
            }
            for (_, st) in threads.iter() {
                st.interrupt();
            }
            drop(threads);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_spawns_one_thread_per_syscall_core_within_the_cap() {
        // (syscall cores, cap, threads at start)
        for (cores, cap, want) in [(3, 1, 1), (3, 2, 2), (2, 1024, 2), (1, 1, 1)] {
            let area = Arc::new(SyscallArea::new(1, 1));
            let config = Config {
                max_syscall_threads: cap,
                ..Config::default()
            };
            let group = Group {
                pages: 0..1,
                cpus: vec![Some(0); cores],
                first_name: 0,
                live: Arc::new(AtomicUsize::new(0)),
                spins: 0,
                placer: None,
            };
            let sched = Scheduler::new(area, &config, group);
            Scheduler::start(&sched).unwrap();
            assert_eq!(sched.live_threads(), want, "{cores} cores, cap {cap}");
            sched.shutdown();
        }
    }
}
