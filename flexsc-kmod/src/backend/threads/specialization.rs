//! Core specialization for the `threads` backend (paper sections 3.6 and 5): where each posting
//! core's syscall threads run, and the controller of the `Dynamic` mode.
//!
//! With `PerCore` and `Dynamic` every posting core has its own group of syscall threads (its own
//! [`Scheduler`], draining only that core's pages). A [`Placer`] decides where each group runs:
//!
//! - at split k = 0 (always, with `PerCore`): on its poster's CPUs, the affinity the poster's
//!   thread had when it attached ([`Placer::attach_poster`]); such threads never spin;
//! - at split k > 0 (`Dynamic` only): the k highest-numbered online CPUs are syscall cores, and
//!   group g is pinned to the (g mod k)-th of them (CPU C-1 first); its idle threads spin
//!   `executor_spins` polls before sleeping if that CPU is the group's alone (no other group, no
//!   poster's CPUs), and sleep at once otherwise.
//!
//! Moving a group is `sched_setaffinity` on each of its threads' ids; threads created later pin
//! themselves to the group's target when they start (both under the group's placement lock, so
//! none is missed).
//!
//! **The controller** (`Dynamic`) has no thread of its own: syscall threads run it when they
//! run out of work and every 64 busy passes ([`Scheduler::tick`]), and at most one does so per
//! `period`. Each tick measures, since the previous tick:
//!
//! - *user work*: CPU time of the posting threads (the threads that attached the posters);
//! - *kernel work*: CPU time of the syscall threads, minus the time they spent spinning idle
//!   (each thread times its spins with the monotonic clock, which is its CPU time as long as it
//!   is not preempted: spinning happens only on a syscall core of the group's own); otherwise a
//!   syscall core's own polling would look like kernel work and hold the split up;
//!
//! reading each thread's CPU-time clock (`clock_gettime` on the per-thread CPU clock of its
//! thread id, as `pthread_getcpuclockid` does: one system call per thread per tick). The
//! measurements add up into a window until it holds at least [`MIN_EVIDENCE`] of CPU time; then
//! [`decide`] picks the next split and the window starts over. After a change, the next
//! [`DWELL_PERIODS`] periods are not used (threads migrate and caches refill).
//!
//! The policy ([`decide`]) is proportional with hysteresis: the kernel share of the measured CPU
//! time times C online CPUs is the number of cores' worth of kernel work; the split moves to that
//! number rounded only when it is more than half a core plus [`HYSTERESIS`] away from the current
//! split, and never beyond min(C - 1, posting cores) (a group has one active thread, so more
//! syscall cores than groups would sit idle).
//!
//! Posting threads that spin in flexsc_wait (only while their syscall threads spin) count as
//! user work, which biases toward per-core execution; a poster moved to another thread is still
//! measured on the thread that attached it; application threads that are not posters are not
//! measured at all.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::backend::SplitStats;
use crate::config::Specialization;
use crate::raw;
use crate::sync::{Arc, Ordering};

use super::Scheduler;

/// Hysteresis of [`decide`], in cores: how far beyond the rounding point (half a core) the
/// measured kernel work must be before the split moves.
pub(crate) const HYSTERESIS: f64 = 0.25;

/// CPU time (user + kernel) a measurement window must hold before [`decide`] is asked.
pub(crate) const MIN_EVIDENCE: Duration = Duration::from_millis(2);

/// Periods after a change whose measurements are dropped.
pub(crate) const DWELL_PERIODS: u32 = 2;

/// CPU time measured over one window, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Measurements {
    /// The posting threads: user work.
    pub(crate) user_ns: u64,
    /// The syscall threads, without their idle spinning: kernel work.
    pub(crate) kernel_ns: u64,
}

impl Measurements {
    fn total(&self) -> u64 {
        self.user_ns.saturating_add(self.kernel_ns)
    }

    fn add(&mut self, other: Self) {
        self.user_ns = self.user_ns.saturating_add(other.user_ns);
        self.kernel_ns = self.kernel_ns.saturating_add(other.kernel_ns);
    }
}

/// The dynamic policy: the number of syscall cores for the next window, given one window's
/// measurements, the `current` number, the online CPUs and the largest allowed split `max`
/// (0 = per-core execution). Pure: see the module documentation for the rule.
pub(crate) fn decide(m: Measurements, current: usize, cpus: usize, max: usize) -> usize {
    let total = m.total();
    if total == 0 {
        return current.min(max);
    }
    let want = m.kernel_ns as f64 / total as f64 * cpus as f64;
    let cur = current as f64;
    let next = if want >= cur + 0.5 + HYSTERESIS || want <= cur - 0.5 - HYSTERESIS {
        want.round() as usize
    } else {
        current
    };
    next.min(max)
}

/// The syscall cores of split `k` on `cpus` online CPUs: the highest-numbered first.
pub(crate) fn syscall_cpus(cpus: usize, k: usize) -> Vec<usize> {
    (0..k.min(cpus)).map(|i| cpus - 1 - i).collect()
}

/// Words of a CPU mask: 1024 CPUs, as `raw::pin_to_cpu`.
const MASK_WORDS: usize = 16;

/// A CPU affinity mask in the kernel's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CpuSet([u64; MASK_WORDS]);

impl CpuSet {
    /// CPUs `0..n`.
    pub(crate) fn first(n: usize) -> Self {
        let mut s = Self([0; MASK_WORDS]);
        for cpu in 0..n.min(MASK_WORDS * 64) {
            s.0[cpu / 64] |= 1 << (cpu % 64);
        }
        s
    }

    /// Whether `cpu` is in the set.
    pub(crate) fn contains(&self, cpu: usize) -> bool {
        cpu < MASK_WORDS * 64 && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }

    /// Just `cpu` (empty if it is beyond the mask).
    pub(crate) fn single(cpu: usize) -> Self {
        let mut s = Self([0; MASK_WORDS]);
        if cpu < MASK_WORDS * 64 {
            s.0[cpu / 64] |= 1 << (cpu % 64);
        }
        s
    }

    /// The CPUs in the set, in increasing order.
    #[cfg(test)]
    pub(crate) fn cpus(&self) -> Vec<usize> {
        (0..MASK_WORDS * 64).filter(|&c| self.contains(c)).collect()
    }

    /// The affinity of thread `tid` of this process (0: the calling thread).
    pub(crate) fn of_thread(tid: i32) -> Option<Self> {
        let mut set = [0u64; MASK_WORDS];
        // SAFETY: sched_getaffinity writes at most the passed size (the whole array, on our
        // stack) and returns how much it wrote; it names a thread by id and reads no memory.
        let r = unsafe {
            raw::syscall(
                libc::SYS_sched_getaffinity,
                [
                    tid as u64,
                    core::mem::size_of_val(&set) as u64,
                    set.as_mut_ptr() as u64,
                ],
            )
        };
        (r > 0).then_some(Self(set))
    }

    /// Pins thread `tid` of this process (0: the calling thread) to this set. Best effort: the
    /// set may name CPUs outside the process's cpuset, and pinning is locality, not correctness.
    pub(crate) fn apply(&self, tid: i32) {
        if self.0.iter().all(|&w| w == 0) {
            return;
        }
        // SAFETY: sched_setaffinity reads the mask (an array on our stack, its size passed) and
        // names a thread by id; it writes no memory.
        unsafe {
            raw::syscall(
                libc::SYS_sched_setaffinity,
                [
                    tid as u64,
                    core::mem::size_of_val(&self.0) as u64,
                    self.0.as_ptr() as u64,
                ],
            );
        }
    }
}

/// CPU time used so far by thread `tid` of this process, in nanoseconds (None: no such thread).
fn thread_cpu_ns(tid: i32) -> Option<u64> {
    // The kernel's per-thread CPU clock id, MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): what
    // pthread_getcpuclockid returns.
    let clock = ((!tid) << 3) | 6;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, a live variable on our stack; a clock id naming
    // no thread of this process is refused (-EINVAL) without writing.
    let r = unsafe {
        raw::syscall(
            libc::SYS_clock_gettime,
            [i64::from(clock) as u64, (&raw mut ts) as u64, 0],
        )
    };
    (r == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// One posting core, as its poster left it.
#[derive(Debug, Default)]
struct Seat {
    /// The poster thread's affinity when it attached: where the core's syscall threads run at
    /// split 0. None before the first poster.
    home: Option<CpuSet>,
    /// The poster's thread id, 0 while the core has no poster.
    tid: i32,
}

/// Places the syscall-thread groups of `PerCore` and `Dynamic`, and runs the controller.
#[derive(Debug)]
pub(crate) struct Placer {
    mode: &'static str,
    /// Online CPUs (C).
    cpus: usize,
    /// Polls an idle syscall thread spins at split > 0.
    executor_spins: u32,
    /// One group per posting core (weak: the groups point back here).
    groups: OnceLock<Box<[Weak<Scheduler>]>>,
    seats: Mutex<Box<[Seat]>>,
    /// The split (k syscall cores; 0: per-core). Held while groups are placed, so placements
    /// happen in the order of the splits they are for.
    split: Mutex<usize>,
    controller: Option<Controller>,
}

/// The dynamic controller's clock, state and counters.
#[derive(Debug)]
struct Controller {
    period: Duration,
    epoch: Instant,
    /// Nanoseconds since `epoch` before which no tick is due.
    next_tick: AtomicU64,
    state: Mutex<ControllerState>,
    ticks: AtomicU64,
    changes: AtomicU64,
    user_ns: AtomicU64,
    kernel_ns: AtomicU64,
}

#[derive(Debug, Default)]
struct ControllerState {
    /// Per thread id: its CPU time and (syscall threads) spin time at the last tick.
    last: HashMap<i32, (u64, u64)>,
    /// Measurements not yet decided on.
    window: Measurements,
    /// When the split last changed (nanoseconds since `epoch`).
    last_change: Option<u64>,
}

impl Placer {
    /// The placer of `cores` posting cores for `spec` (`PerCore` or `Dynamic`), at split 0.
    pub(crate) fn new(
        spec: &Specialization,
        cores: usize,
        cpus: usize,
        executor_spins: u32,
    ) -> Self {
        let controller = match spec {
            Specialization::Dynamic { period } => Some(Controller {
                period: *period,
                epoch: Instant::now(),
                next_tick: AtomicU64::new(period.as_nanos() as u64),
                state: Mutex::new(ControllerState::default()),
                ticks: AtomicU64::new(0),
                changes: AtomicU64::new(0),
                user_ns: AtomicU64::new(0),
                kernel_ns: AtomicU64::new(0),
            }),
            _ => None,
        };
        Self {
            mode: spec.name(),
            cpus: cpus.max(1),
            executor_spins,
            groups: OnceLock::new(),
            seats: Mutex::new((0..cores).map(|_| Seat::default()).collect()),
            split: Mutex::new(0),
            controller,
        }
    }

    /// Records the groups (group g drains posting core g's pages). Called once, before any
    /// thread starts.
    pub(crate) fn set_groups(&self, groups: &[Arc<Scheduler>]) {
        let _ = self.groups.set(groups.iter().map(Arc::downgrade).collect());
    }

    /// The poster of `core` attached on the calling thread: its affinity becomes the core's
    /// home (where the core's syscall threads run at split 0) and its CPU time user work.
    pub(crate) fn attach_poster(this: &Arc<Self>, core: usize) -> PosterSeat {
        let tid = raw::gettid();
        {
            let mut seats = lock(&this.seats);
            seats[core] = Seat {
                home: CpuSet::of_thread(0),
                tid,
            };
        }
        let split = lock(&this.split);
        if *split == 0 {
            this.place(core, 0);
        } else {
            // Every group: the new home may be a syscall core's CPU, where none may spin.
            this.place_all(*split);
        }
        drop(split);
        PosterSeat {
            placer: this.clone(),
            core,
            tid,
        }
    }

    /// Points group `g` at its CPUs for split `k` (the caller holds the split lock).
    ///
    /// At split 0 the group runs on its poster's CPUs and never spins. At split k > 0 it runs
    /// on its syscall core, and its idle threads spin only if that CPU is theirs alone: no other
    /// group there and no poster's CPUs including it (a spinning thread would take the CPU from
    /// whoever shares it, and the time a preempted spin loses would be taken off its work).
    fn place(&self, g: usize, k: usize) {
        let Some(groups) = self.groups.get() else {
            return;
        };
        let Some(group) = groups.get(g).and_then(Weak::upgrade) else {
            return;
        };
        let seats = lock(&self.seats);
        if k == 0 {
            let home = seats[g].home.clone();
            drop(seats);
            group.place(home.unwrap_or_else(|| CpuSet::first(self.cpus)), 0);
            return;
        }
        let cpus = syscall_cpus(self.cpus, k);
        let cpu = cpus[g % cpus.len()];
        // Groups g, g + k, g + 2k, ... share a syscall core.
        let alone = g < cpus.len() && g + cpus.len() >= groups.len();
        let posters_there = seats
            .iter()
            .any(|s| s.home.as_ref().is_some_and(|h| h.contains(cpu)));
        drop(seats);
        let spins = if alone && !posters_there {
            self.executor_spins
        } else {
            0
        };
        group.place(CpuSet::single(cpu), spins);
    }

    /// The largest split: a syscall core per group at most, and at least one user core.
    fn max_split(&self) -> usize {
        let groups = self.groups.get().map_or(0, |g| g.len());
        (self.cpus - 1).min(groups)
    }

    /// Moves every group to split `k`.
    fn set_split(&self, k: usize) {
        let mut split = lock(&self.split);
        *split = k;
        self.place_all(k);
    }

    /// Places every group for split `k` (the caller holds the split lock).
    fn place_all(&self, k: usize) {
        for g in 0..self.groups.get().map_or(0, |g| g.len()) {
            self.place(g, k);
        }
    }

    /// Runs the controller if a period has passed since its last run and no other thread is
    /// running it (a syscall thread calls this when it runs out of work, and every 64 passes).
    pub(crate) fn maybe_tick(&self) {
        let Some(ctl) = &self.controller else {
            return;
        };
        let now = ctl.epoch.elapsed().as_nanos() as u64;
        if now < ctl.next_tick.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut state) = ctl.state.try_lock() else {
            return;
        };
        if now < ctl.next_tick.load(Ordering::Relaxed) {
            return; // another thread has just ticked
        }
        ctl.next_tick
            .store(now + ctl.period.as_nanos() as u64, Ordering::Relaxed);
        let m = self.measure(&mut state);
        self.step(ctl, &mut state, m, now);
    }

    /// What the posting and syscall threads used since the last measurement.
    fn measure(&self, state: &mut ControllerState) -> Measurements {
        let mut m = Measurements::default();
        let mut seen = HashMap::with_capacity(state.last.len());
        let mut delta = |tid: i32, cpu: u64, spin: u64| {
            seen.insert(tid, (cpu, spin));
            // A thread first seen now has no baseline: its time so far is not this window's.
            state.last.get(&tid).map_or(0, |&(c, s)| {
                cpu.saturating_sub(c).saturating_sub(spin.saturating_sub(s))
            })
        };
        let posters: Vec<i32> = lock(&self.seats)
            .iter()
            .map(|s| s.tid)
            .filter(|&t| t > 0)
            .collect();
        for tid in posters {
            if let Some(cpu) = thread_cpu_ns(tid) {
                m.user_ns += delta(tid, cpu, 0);
            }
        }
        for group in self.groups.get().into_iter().flatten() {
            let Some(group) = group.upgrade() else {
                continue;
            };
            for st in group.members() {
                if let Some(cpu) = thread_cpu_ns(st.tid()) {
                    m.kernel_ns += delta(st.tid(), cpu, st.spin_ns());
                }
            }
        }
        state.last = seen;
        m
    }

    /// Books one tick's measurements and, when the window holds enough, decides.
    fn step(&self, ctl: &Controller, state: &mut ControllerState, m: Measurements, now: u64) {
        ctl.ticks.fetch_add(1, Ordering::Relaxed);
        ctl.user_ns.fetch_add(m.user_ns, Ordering::Relaxed);
        ctl.kernel_ns.fetch_add(m.kernel_ns, Ordering::Relaxed);
        let dwell = ctl.period.as_nanos() as u64 * u64::from(DWELL_PERIODS);
        if state
            .last_change
            .is_some_and(|t| now.saturating_sub(t) < dwell)
        {
            return; // settling after a move: these measurements are dropped
        }
        state.window.add(m);
        if state.window.total() < MIN_EVIDENCE.as_nanos() as u64 {
            return;
        }
        let window = std::mem::take(&mut state.window);
        let current = *lock(&self.split);
        let next = decide(window, current, self.cpus, self.max_split());
        if next != current {
            self.set_split(next);
            ctl.changes.fetch_add(1, Ordering::Relaxed);
            state.last_change = Some(now);
        }
    }

    /// Where syscall work runs now.
    pub(crate) fn stats(&self) -> SplitStats {
        let k = *lock(&self.split);
        let mut s = SplitStats {
            mode: self.mode,
            syscall_cores: syscall_cpus(self.cpus, k),
            per_core: k == 0,
            ..SplitStats::default()
        };
        if let Some(ctl) = &self.controller {
            s.ticks = ctl.ticks.load(Ordering::Relaxed);
            s.changes = ctl.changes.load(Ordering::Relaxed);
            s.user_ns = ctl.user_ns.load(Ordering::Relaxed);
            s.kernel_ns = ctl.kernel_ns.load(Ordering::Relaxed);
        }
        s
    }
}

/// A poster's place at its core ([`Placer::attach_poster`]); dropped with the poster.
#[derive(Debug)]
pub(crate) struct PosterSeat {
    placer: Arc<Placer>,
    core: usize,
    tid: i32,
}

impl Drop for PosterSeat {
    fn drop(&mut self) {
        let mut seats = lock(&self.placer.seats);
        let seat = &mut seats[self.core];
        if seat.tid == self.tid {
            seat.tid = 0; // the home stays: the next poster will likely sit there too
        }
    }
}

/// Locks `m`, ignoring poisoning (every critical section here leaves consistent state).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::area::SyscallArea;
    use crate::backend::Backend;
    use crate::backend::threads::ThreadsBackend;
    use crate::config::{Config, online_cpus};

    const MS: u64 = 1_000_000;

    fn m(user_ms: u64, kernel_ms: u64) -> Measurements {
        Measurements {
            user_ns: user_ms * MS,
            kernel_ns: kernel_ms * MS,
        }
    }

    #[test]
    fn decide_is_proportional_with_hysteresis() {
        // (user ms, kernel ms, current split, CPUs, max split, expected split)
        let cases = [
            // Nothing measured: stay.
            (0, 0, 1, 2, 1, 1),
            // Two CPUs: up at 0.75 cores of kernel work (37.5 %), down at 0.25 (12.5 %).
            (100, 0, 0, 2, 1, 0),
            (70, 30, 0, 2, 1, 0),
            (60, 40, 0, 2, 1, 1),
            (20, 80, 0, 2, 1, 1),
            (80, 20, 1, 2, 1, 1),
            (86, 14, 1, 2, 1, 1),
            (90, 10, 1, 2, 1, 0),
            // Four CPUs: straight to the rounded target once outside the band.
            (50, 50, 0, 4, 3, 2),
            (40, 60, 2, 4, 3, 2),
            (30, 70, 2, 4, 3, 3),
            (0, 100, 1, 4, 3, 3),
            (90, 10, 3, 4, 3, 0),
            (60, 40, 3, 4, 3, 2),
            // Never beyond the cap (one posting core, or one CPU).
            (0, 100, 0, 8, 1, 1),
            (0, 100, 0, 1, 0, 0),
        ];
        for (u, k, cur, cpus, max, want) in cases {
            assert_eq!(
                decide(m(u, k), cur, cpus, max),
                want,
                "user {u} ms, kernel {k} ms, at {cur} of {cpus} CPUs (max {max})"
            );
        }
    }

    #[test]
    fn decide_does_not_flap_around_a_boundary() {
        // A kernel share wobbling around 50 % on 2 CPUs (0.8 .. 1.2 cores of kernel work)
        // settles at one syscall core and stays; around 25 % (0.4 .. 0.6) it stays per-core.
        let mut k = 0;
        let mut moves = 0;
        for i in 0..100 {
            let kernel = if i % 2 == 0 { 40 } else { 60 };
            let next = decide(m(100 - kernel, kernel), k, 2, 1);
            moves += usize::from(next != k);
            k = next;
        }
        assert_eq!((k, moves), (1, 1));
        for i in 0..100 {
            let kernel = if i % 2 == 0 { 20 } else { 30 };
            assert_eq!(decide(m(100 - kernel, kernel), 0, 2, 1), 0);
        }
    }

    #[test]
    fn syscall_cores_are_the_highest_numbered() {
        assert_eq!(syscall_cpus(4, 0), Vec::<usize>::new());
        assert_eq!(syscall_cpus(4, 2), vec![3, 2]);
        assert_eq!(syscall_cpus(2, 5), vec![1, 0]);
    }

    #[test]
    fn cpu_sets() {
        assert_eq!(CpuSet::first(3).cpus(), vec![0, 1, 2]);
        assert_eq!(CpuSet::single(70).cpus(), vec![70]);
        assert!(CpuSet::single(5000).cpus().is_empty());
        let mine = CpuSet::of_thread(0).expect("sched_getaffinity");
        assert!(!mine.cpus().is_empty());
        assert!(thread_cpu_ns(raw::gettid()).is_some());
        // PID_MAX_LIMIT: no thread has this id.
        assert_eq!(thread_cpu_ns(4 << 20), None);
    }

    /// The controller, fed synthetic measurements, moves the split and re-pins the syscall
    /// thread; the split shows in the stats.
    #[test]
    fn controller_moves_and_repins_on_synthetic_measurements() {
        // A period long enough that no real tick comes between the synthetic ones.
        let config = Config {
            specialization: Specialization::Dynamic {
                period: Duration::from_secs(10),
            },
            executor_spins: 100,
            ..Config::default()
        };
        let area = Arc::new(SyscallArea::new(1, 1));
        let b = ThreadsBackend::start(area, &config).unwrap();
        let placer = b.placer.clone().unwrap();
        let ctl = placer.controller.as_ref().unwrap();
        let group = b.group(0).clone();
        // The poster attaches on a thread pinned to CPU 0: the core's home.
        let core = std::thread::scope(|s| {
            s.spawn(|| {
                raw::pin_to_cpu(0).unwrap();
                b.attach(0).unwrap()
            })
            .join()
            .unwrap()
        });
        let home = CpuSet::single(0);
        let thread_cpus = || {
            let members = group.members();
            assert!(!members.is_empty(), "the syscall thread has started");
            CpuSet::of_thread(members[0].tid()).unwrap()
        };
        let started = Instant::now();
        while group.members().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::yield_now();
        }
        assert_eq!(thread_cpus(), home, "split 0: the poster's CPUs");
        let cpus = online_cpus();
        let mut state = lock(&ctl.state);
        let period = ctl.period.as_nanos() as u64;
        // Too little evidence: no decision.
        placer.step(ctl, &mut state, m(0, 1), period);
        assert_eq!(placer.stats().changes, 0);
        // Kernel-heavy: one syscall core (if there is a CPU to spare).
        placer.step(ctl, &mut state, m(10, 90), 2 * period);
        let s = placer.stats();
        assert_eq!((s.mode, s.ticks), ("dynamic", 2));
        assert_eq!((s.user_ns, s.kernel_ns), (10 * MS, 91 * MS));
        if cpus < 2 {
            assert_eq!((s.per_core, s.changes), (true, 0));
            return;
        }
        assert_eq!(s.syscall_cores, vec![cpus - 1]);
        assert_eq!((s.per_core, s.changes), (false, 1));
        assert_eq!(thread_cpus().cpus(), vec![cpus - 1]);
        assert_eq!(group.spins(), 100, "a syscall core's idle threads spin");
        // Right after a move the measurements are dropped, whatever they say.
        placer.step(ctl, &mut state, m(100, 0), 3 * period);
        assert_eq!(placer.stats().changes, 1);
        // User-heavy, once settled: back to per-core, on the poster's CPUs again.
        placer.step(ctl, &mut state, m(100, 0), 5 * period);
        let s = placer.stats();
        assert_eq!((s.per_core, s.changes), (true, 2));
        assert!(s.syscall_cores.is_empty());
        assert_eq!(thread_cpus(), home);
        assert_eq!(group.spins(), 0, "never on the poster's CPUs");
        drop(state);
        drop(core);
        b.shutdown();
    }

    /// A real syscall-heavy load: the controller ticks and measures both sides (no assertion on
    /// what it decides: that depends on the machine).
    #[test]
    fn controller_measures_a_real_load() {
        let config = Config {
            specialization: Specialization::Dynamic {
                period: Duration::from_millis(2),
            },
            ..Config::default()
        };
        let area = Arc::new(SyscallArea::new(1, 1));
        let b = ThreadsBackend::start(area.clone(), &config).unwrap();
        let mut core = b.attach(0).unwrap();
        let started = Instant::now();
        loop {
            for slot in 0..64u32 {
                area.entry(0, slot)
                    .post(libc::SYS_getppid as u16, 0, [0; 6]);
            }
            core.submit(&(0..64).collect::<Vec<u32>>());
            for slot in 0..64u32 {
                let e = area.entry(0, slot);
                core.wait(
                    &mut || e.status() == crate::entry::status::DONE,
                    &mut || false,
                    None,
                );
                assert_eq!(
                    e.take(),
                    Some(i64::from(std::os::unix::process::parent_id()))
                );
            }
            let s = b.split();
            if s.ticks >= 3 && s.kernel_ns > 0 && s.user_ns > 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the controller never measured: {s:?}"
            );
        }
        drop(core);
        b.shutdown();
    }
}
