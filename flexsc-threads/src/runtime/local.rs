//! A carrier's private state that its green threads reach too: its ready queue and its caches of
//! stacks and TLS blocks (a few, kept warm; the runtime's shared pools take the rest).
//!
//! A green thread runs on its carrier's kernel thread, so when it spawns or wakes a green thread
//! of the same carrier it can push to the carrier's own queue, and take a stack and a TLS block
//! from the carrier's own pools, with no lock, no atomic read-modify-write and no wake-up: the
//! carrier is busy running it and looks at its queue as soon as it gets control back.
//!
//! The rule that makes this sound: [`CarrierLocal::with`] is called only on the carrier's own
//! kernel thread (by the carrier, or by a green thread it is resuming), and never resumes a green
//! thread inside, so two borrows of the state never overlap.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use flexsc_kmod::Syscall;

use super::posting::Posting;
use super::task::{CarrierCpu, Outcome, Suspend, Task};
use crate::overflow::RunningSlot;
use crate::stack::Stack;
use crate::tls::TlsBlock;

/// Finished green threads' stacks and TLS blocks a carrier keeps for the next spawns: enough for
/// bursts of short-lived threads, few enough that all stay warm (their pages resident).
const CACHE_MAX: usize = 16;

/// The state itself.
pub(crate) struct LocalState {
    /// Ready green threads made ready on this carrier.
    pub(crate) ready: Ready,
    /// Released stacks (all of the runtime's stack size), pages kept.
    pub(crate) stacks: Vec<Stack>,
    /// Released TLS blocks, already reset for reuse.
    pub(crate) tls: Vec<TlsBlock>,
    /// Finished tasks nothing else refers to, to be rewritten by the next spawns.
    pub(crate) tasks: Vec<Arc<Task>>,
    /// Green thread ids reserved for spawns here.
    ids: Range<u64>,
    /// The switch state: the green thread running now (the one the carrier resumed, or one
    /// handed the carrier over to since).
    pub(crate) running: Option<Arc<Task>>,
    /// What the green thread that switched back to the carrier reported.
    pub(crate) outcome: Option<Outcome>,
    /// A green thread that handed the carrier over to wait: whoever runs next makes it WAITING
    /// (see [`Task::finish_hand_over`]).
    pub(crate) deferred: Option<Arc<Task>>,
    /// Hand-overs left before the carrier takes its turn.
    pub(crate) budget: u32,
    /// Hand-overs made (green-to-green switches), for the statistics.
    pub(crate) handed_over: u64,
    /// Green threads preempted here (`super::preempt`), for the statistics.
    pub(crate) preempted: u64,
    /// The carrier's syscall pages and the green threads parked on them, set when it starts.
    pub(crate) posting: Option<Posting>,
    /// The carrier's own TCB and tid, set when it starts.
    pub(crate) cpu: CarrierCpu,
    /// Its slot in the stack-overflow table, and the green thread last published there.
    pub(crate) slot: Option<RunningSlot>,
    published: u64,
}

/// One carrier's [`LocalState`], shared only with the green threads it runs, and its counts of
/// green threads spawned, finished and resumed here and its kernel thread id (written only by
/// it, read by anyone).
pub(crate) struct CarrierLocal {
    state: UnsafeCell<LocalState>,
    spawned: AtomicU64,
    finished: AtomicU64,
    /// Green threads the carrier resumed: the preemption monitor's sign of progress.
    resumes: AtomicU64,
    tid: AtomicI32,
}

/// Ids a carrier reserves at a time, so spawning takes no shared counter.
const ID_BLOCK: u64 = 1024;

// SAFETY: the state is only touched on its carrier's kernel thread (module doc), one borrow at a
// time; it moves between threads only when the runtime is built and dropped.
unsafe impl Sync for CarrierLocal {}
// SAFETY: as above; TlsBlock and Stack are Send, Arc<Task> is Send.
unsafe impl Send for CarrierLocal {}

impl CarrierLocal {
    pub(crate) fn new(order: Order) -> Self {
        Self {
            state: UnsafeCell::new(LocalState {
                ready: Ready::new(order),
                stacks: Vec::new(),
                tls: Vec::new(),
                tasks: Vec::new(),
                ids: 0..0,
                running: None,
                outcome: None,
                deferred: None,
                budget: 0,
                handed_over: 0,
                preempted: 0,
                posting: None,
                cpu: CarrierCpu { tp: 0, tid: 0 },
                slot: None,
                published: 0,
            }),
            spawned: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            tid: AtomicI32::new(0),
        }
    }

    /// Counts a resume by the carrier; as [`CarrierLocal::count_spawn`].
    pub(crate) fn count_resume(&self) {
        let n = self.resumes.load(Ordering::Relaxed);
        self.resumes.store(n + 1, Ordering::Relaxed);
    }

    /// Green threads the carrier resumed so far.
    pub(crate) fn resumes(&self) -> u64 {
        self.resumes.load(Ordering::Relaxed)
    }

    /// Records the carrier's kernel thread id, when it starts.
    pub(crate) fn set_tid(&self, tid: i32) {
        self.tid.store(tid, Ordering::Release);
    }

    /// The carrier's kernel thread id (0 before it starts).
    pub(crate) fn tid(&self) -> i32 {
        self.tid.load(Ordering::Acquire)
    }

    /// Counts a green thread spawned here. Only this carrier's thread calls it (single writer:
    /// no read-modify-write).
    pub(crate) fn count_spawn(&self) {
        let n = self.spawned.load(Ordering::Relaxed);
        self.spawned.store(n + 1, Ordering::Release);
    }

    /// Counts a green thread finished here; as [`CarrierLocal::count_spawn`].
    pub(crate) fn count_finish(&self) {
        let n = self.finished.load(Ordering::Relaxed);
        self.finished.store(n + 1, Ordering::Release);
    }

    /// Green threads spawned here so far.
    pub(crate) fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::SeqCst)
    }

    /// Green threads finished here so far.
    pub(crate) fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }

    /// Runs `f` on the state.
    ///
    /// # Safety
    /// The caller runs on this carrier's kernel thread (the carrier itself, or a green thread
    /// the carrier is resuming), and `f` neither resumes a green thread nor calls `with` again.
    pub(crate) unsafe fn with<R>(&self, f: impl FnOnce(&mut LocalState) -> R) -> R {
        // SAFETY: the caller's contract: no other borrow of the state exists meanwhile.
        f(unsafe { &mut *self.state.get() })
    }
}

impl LocalState {
    /// Records `t` as the green thread running here, for the stack-overflow diagnostic.
    /// Republished only when another green thread runs: a stale entry is harmless (a suspended
    /// green thread's guard page is touched by nobody), and a round trip of the same thread then
    /// costs no stores.
    pub(crate) fn publish(&mut self, t: &Task) {
        if self.published != t.id()
            && let Some(slot) = self.slot
        {
            slot.set_running(t.guard(), t.id(), t.name().unwrap_or("").as_bytes());
            self.published = t.id();
        }
    }

    /// A yield or an untimed wait of the running green thread: takes the next ready green thread
    /// if the budget allows, makes it the running one, and queues the caller (a yield) or leaves
    /// it to become WAITING once off its stack (a wait). The next one's address, and the
    /// carrier's TCB and tid, for the caller's switch.
    pub(crate) fn hand_over(&mut self, why: &Suspend) -> Option<(*const Task, CarrierCpu)> {
        let (to, me) = self.take_next()?;
        match why {
            Suspend::Wait(_) => {
                // Whoever handed over to this thread had its wait finished first thing.
                debug_assert!(self.deferred.is_none(), "a deferred wait was overwritten");
                self.deferred = Some(me);
            }
            _ => self.ready.push(me),
        }
        Some((to, self.cpu))
    }

    /// If the budget allows, makes the next ready green thread the running one (counted and
    /// published): its address, and the green thread that was running, for the caller to queue,
    /// defer or park.
    fn take_next(&mut self) -> Option<(*const Task, Arc<Task>)> {
        if self.budget == 0 {
            return None;
        }
        let next = self.ready.pop()?;
        self.budget -= 1;
        self.handed_over += 1;
        self.publish(&next);
        let to = Arc::as_ptr(&next);
        let me = self
            .running
            .replace(next)
            .expect("a green thread is running");
        Some((to, me))
    }

    /// A system call of the running green thread, posted by the green thread itself: it parks on
    /// the entry and, if it has its own TLS block, the budget allows and the batch is not full
    /// yet, hands the carrier to the next ready green thread (whose address, and the carrier's
    /// TCB and tid, are returned for the caller's switch); otherwise it goes back to the carrier
    /// with [`Outcome::Posted`]. Err if the call could not be posted here (the caller gives it to
    /// the carrier with [`Suspend::Syscall`]).
    pub(crate) fn post_running(
        &mut self,
        idx: usize,
        call: &Syscall,
        direct: bool,
        batch_limit: usize,
    ) -> Result<Option<(*const Task, CarrierCpu)>, ()> {
        let posting = self.posting.as_mut().expect("the carrier has started");
        let ticket = posting.try_post(call).map_err(|_| ())?;
        let batch_full = posting.poster().unsubmitted() >= batch_limit;
        let handed = (direct && !batch_full).then(|| self.take_next()).flatten();
        let (to, me) = match handed {
            Some((to, me)) => (Some((to, self.cpu)), me),
            None => {
                self.outcome = Some(Outcome::Posted);
                let me = self.running.take().expect("a green thread is running");
                (None, me)
            }
        };
        let posting = self.posting.as_mut().expect("the carrier has started");
        posting.park_on(idx, ticket, call.nr(), me);
        Ok(to)
    }

    /// A new green thread id, from this carrier's reserved block (refilled from `global`).
    pub(crate) fn next_id(&mut self, global: &AtomicU64) -> u64 {
        if self.ids.is_empty() {
            let start = global.fetch_add(ID_BLOCK, Ordering::Relaxed);
            self.ids = start..start + ID_BLOCK;
        }
        self.ids.next().expect("refilled above")
    }

    /// Keeps a finished green thread's task (unshared), stack and TLS block (reset for reuse) if
    /// the caches have room; hands back the stack and block it does not keep, for the shared
    /// pools (a task not kept is freed after the caller's borrow ends).
    pub(crate) fn keep(
        &mut self,
        task: Option<Arc<Task>>,
        stack: Option<Stack>,
        tls: Option<TlsBlock>,
    ) -> (Option<Stack>, Option<TlsBlock>) {
        fn keep_one<T>(cache: &mut Vec<T>, item: Option<T>) -> Option<T> {
            match item {
                Some(x) if cache.len() < CACHE_MAX => {
                    cache.push(x);
                    None
                }
                other => other,
            }
        }
        // A finished task's drop runs no code of its own (its coroutine is gone): dropping one the
        // cache has no room for, here, cannot re-enter.
        drop(keep_one(&mut self.tasks, task));
        (
            keep_one(&mut self.stacks, stack),
            keep_one(&mut self.tls, tls),
        )
    }
}

/// In which order a carrier runs its ready green threads (`Builder::order`, `FLEXSC_ORDER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Strict arrival order: every ready green thread waits its turn (round robin). The fairest
    /// and the tightest tail latency; with thousands of connections every turn touches each
    /// connection's state once, so little of it is still in the caches.
    Fifo,
    /// Green threads whose system call just completed run newest first, so a busy subset of
    /// connections keeps its stacks, TLS and kernel socket state in the caches; the others are
    /// served once they have waited `rounds` times as many turns as there were ready green
    /// threads when they were queued, which bounds the unfairness. Green threads that yielded
    /// or were woken keep arrival order.
    Lifo {
        /// How many rounds of the ready queue a ready green thread may be overtaken for. A bound
        /// relative to the queue, not a fixed number of turns: the gain needs several rounds
        /// (with 10,000 connections, several rounds of 10,000 turns), while a fixed 32,768 turns
        /// let an Apache connection among 128 per carrier wait a second (docs/results.md).
        rounds: u32,
    },
}

impl std::str::FromStr for Order {
    type Err = String;

    /// `fifo`, `lifo` (the default `rounds`) or `lifo:N` (N rounds, N > 0): the syntax of
    /// `FLEXSC_ORDER`.
    fn from_str(v: &str) -> Result<Self, String> {
        let bad = || format!("{v:?}: expected fifo, lifo or lifo:N (N rounds > 0)");
        match v.trim() {
            "fifo" => Ok(Order::Fifo),
            "lifo" => Ok(Order::DEFAULT),
            other => {
                let n: u32 = other
                    .strip_prefix("lifo:")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(bad)?;
                if n == 0 {
                    return Err(bad());
                }
                Ok(Order::Lifo { rounds: n })
            }
        }
    }
}

impl Order {
    /// The default of the Rust API: `Lifo` with `rounds` 64 (docs/results.md, "Run order").
    /// The preload's is `Fifo`.
    pub const DEFAULT: Order = Order::Lifo { rounds: 64 };
}

/// A carrier's ready green threads, in two queues: `fresh` for those whose system call completed
/// (newest first under [`Order::Lifo`]), `queued` for the rest (arrival order). Each entry
/// carries the turn by which it must run.
pub(crate) struct Ready {
    fresh: VecDeque<(Arc<Task>, u64)>,
    queued: VecDeque<(Arc<Task>, u64)>,
    order: Order,
    /// Turns taken so far (one per pop).
    turn: u64,
}

impl Ready {
    fn new(order: Order) -> Self {
        Self {
            fresh: VecDeque::new(),
            queued: VecDeque::new(),
            order,
            turn: 0,
        }
    }

    /// The turn by which a green thread queued now must run: `rounds` times the queue ahead.
    fn deadline(&self) -> u64 {
        match self.order {
            Order::Fifo => self.turn,
            Order::Lifo { rounds } => self.turn + u64::from(rounds) * (self.len() as u64 + 1),
        }
    }

    /// Queues a green thread that yielded, was woken or was spawned (arrival order).
    pub(crate) fn push(&mut self, t: Arc<Task>) {
        let by = self.deadline();
        self.queued.push_back((t, by));
    }

    /// Queues a green thread whose system call just completed.
    pub(crate) fn push_completed(&mut self, t: Arc<Task>) {
        let by = self.deadline();
        match self.order {
            Order::Fifo => self.queued.push_back((t, by)),
            Order::Lifo { .. } => self.fresh.push_back((t, by)),
        }
    }

    /// The next green thread to run.
    pub(crate) fn pop(&mut self) -> Option<Arc<Task>> {
        self.turn += 1;
        let next = match self.order {
            Order::Fifo => self.queued.pop_front(),
            Order::Lifo { .. } => {
                // The overdue one with the earliest deadline, else the newest completion.
                let turn = self.turn;
                let due = |q: &VecDeque<(Arc<Task>, u64)>| {
                    q.front().map(|&(_, by)| by).filter(|&by| turn > by)
                };
                match (due(&self.fresh), due(&self.queued)) {
                    (Some(f), q) if q.is_none_or(|q| f <= q) => self.fresh.pop_front(),
                    (_, Some(_)) => self.queued.pop_front(),
                    _ => self.fresh.pop_back().or_else(|| self.queued.pop_front()),
                }
            }
        };
        next.map(|(t, _)| t)
    }

    /// A green thread to give away to another carrier: the one that would run last.
    pub(crate) fn pop_last(&mut self) -> Option<Arc<Task>> {
        self.queued
            .pop_back()
            .or_else(|| self.fresh.pop_front())
            .map(|(t, _)| t)
    }

    /// Ready green threads.
    pub(crate) fn len(&self) -> usize {
        self.fresh.len() + self.queued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64) -> Arc<Task> {
        Arc::new(Task::new(id, None, 0, 0..0, None, Default::default()))
    }

    fn ids(r: &mut Ready, n: usize) -> Vec<u64> {
        (0..n).map(|_| r.pop().expect("ready").id()).collect()
    }

    #[test]
    fn fifo_runs_in_arrival_order() {
        let mut r = Ready::new(Order::Fifo);
        r.push(task(1));
        r.push_completed(task(2));
        r.push(task(3));
        r.push_completed(task(4));
        assert_eq!(ids(&mut r, 4), [1, 2, 3, 4]);
        assert!(r.pop().is_none());
    }

    #[test]
    fn lifo_runs_completions_newest_first_then_the_rest() {
        let mut r = Ready::new(Order::Lifo { rounds: 100 });
        r.push(task(1));
        r.push_completed(task(2));
        r.push_completed(task(3));
        r.push(task(4));
        assert_eq!(r.len(), 4);
        assert_eq!(ids(&mut r, 4), [3, 2, 1, 4]);
    }

    #[test]
    fn lifo_serves_a_thread_overtaken_for_its_rounds() {
        let mut r = Ready::new(Order::Lifo { rounds: 2 });
        r.push_completed(task(1)); // the oldest completion: alone, due within 2 turns
        r.push(task(2)); // a yield behind it: one ahead, due within 4 turns
        let mut order = Vec::new();
        // A stream of fresh completions that would otherwise always run first.
        for id in 10..18 {
            r.push_completed(task(id));
            order.push(r.pop().expect("ready").id());
        }
        let pos = |id| order.iter().position(|&x| x == id);
        assert_eq!(pos(1), Some(2), "{order:?}");
        assert_eq!(pos(2), Some(4), "{order:?}");
    }

    #[test]
    fn lifo_bounds_grow_with_the_queue() {
        // With 100 ready, one queued behind them is overtaken for up to 2 x 101 turns.
        let mut r = Ready::new(Order::Lifo { rounds: 2 });
        for id in 0..100 {
            r.push_completed(task(id));
        }
        r.push(task(1000));
        let mut served = None;
        for n in 1..=300 {
            r.push_completed(task(2000 + n));
            if r.pop().expect("ready").id() == 1000 {
                served = Some(n);
                break;
            }
        }
        let n = served.expect("served within the bound");
        assert!((150..=203).contains(&n), "served at turn {n}");
    }

    #[test]
    fn orders_parse_as_flexsc_order_spells_them() {
        assert_eq!("fifo".parse(), Ok(Order::Fifo));
        assert_eq!("lifo".parse(), Ok(Order::DEFAULT));
        assert_eq!(" lifo:7 ".parse(), Ok(Order::Lifo { rounds: 7 }));
        for bad in [
            "", "lifo:0", "lifo:", "lifo:-1", "lifo:5ms", "LIFO", "random",
        ] {
            assert!(bad.parse::<Order>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_last_to_run_is_given_away_first() {
        let mut r = Ready::new(Order::DEFAULT);
        r.push_completed(task(1));
        r.push(task(2));
        assert_eq!(r.pop_last().map(|t| t.id()), Some(2));
        assert_eq!(r.pop_last().map(|t| t.id()), Some(1));
        assert!(r.pop_last().is_none());
    }
}
