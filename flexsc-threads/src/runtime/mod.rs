//! The M:N runtime: carriers, green threads, and the API to start and join them.

mod adopt;
mod carrier;
mod context;
mod interrupt;
mod local;
mod mark;
mod posting;
mod preempt;
mod queue;
mod sleeper;
mod stats;
mod syscall_names;
mod task;
mod timer;

pub use adopt::AdoptedEnd;
use std::any::Any;
use std::io;
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flexsc_kmod::specialize::{Context as SpecializationContext, Hints};
use flexsc_kmod::{BackendKind, Config, Registration, Specialization, Syscall};

use crate::join::JoinCell;
use crate::park::Park;
use crate::stack::{Stack, StackPool};
use crate::tls::TlsBlock;
use carrier::{Carrier, current};
use context::Context;
pub use interrupt::{Interrupter, interrupted, take_interrupt};
pub use local::Order;
use local::{CarrierLocal, LocalState};
pub use preempt::{Preemption, preempt_signal};
use queue::RunQueue;
pub(crate) use sleeper::{Sleeper, Woke, wait};
pub use stats::{
    BATCH_BUCKETS, COUNTED_SYSCALLS, CarrierStats, StatsTable, SyscallStats, syscall_name,
};
use stats::{StatsShared, StatsSink};
use task::{Suspend, Task};

/// Entries a carrier posts before it submits them, by default.
const DEFAULT_BATCH: usize = 64;

/// TLS blocks (about 4.5 KiB each) kept in the shared pool.
const TLS_POOL_MAX: usize = 1024;

/// Green thread ids, unique in the process (owner checks of sync primitives rely on it).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by the carriers and every handle.
pub(crate) struct Shared {
    reg: Registration,
    queues: Box<[RunQueue]>,
    /// Per carrier: green threads whose call in flight there must be interrupted.
    interrupts: Box<[interrupt::Requests]>,
    /// Per carrier: its own ready queue and pools, reached by its green threads too.
    locals: Box<[CarrierLocal]>,
    /// Green threads spawned from outside the runtime (the carriers count the rest).
    spawned_outside: AtomicU64,
    shutdown: AtomicBool,
    next_carrier: AtomicUsize,
    /// Stacks released beyond the carriers' caches.
    stacks: Mutex<StackPool>,
    /// TLS blocks (reset) released beyond the carriers' caches.
    tls_pool: Mutex<Vec<TlsBlock>>,
    /// Whether each green thread gets its own glibc TLS block and TCB.
    tls: bool,
    /// Usable bytes of a default green-thread stack (rounded to pages).
    stack_size: usize,
    batch_limit: usize,
    /// Each carrier's counters as last published, and its system calls by number (shared with
    /// the exit and SIGUSR2 printers).
    stats: Arc<StatsShared>,
    /// Whether and where green threads that keep their carrier are preempted.
    preempt: Option<Preemption>,
}

impl Shared {
    /// The carrier the caller runs on, if it is a green thread of this runtime.
    fn here(&self) -> Option<usize> {
        current()
            .filter(|(_, s, _)| std::ptr::eq(*s, self))
            .map(|(_, _, c)| c)
    }

    /// Runs `f` on carrier `c`'s local state.
    ///
    /// # Safety
    /// As [`CarrierLocal::with`]: the caller runs on carrier `c`'s kernel thread and does not
    /// resume a green thread or re-enter inside `f`.
    unsafe fn local<R>(&self, c: usize, f: impl FnOnce(&mut LocalState) -> R) -> R {
        // SAFETY: the caller's contract.
        unsafe { self.locals[c].with(f) }
    }

    /// Puts a woken green thread on its home carrier's queue: its local one when the waker is a
    /// green thread of that carrier (no lock, and no wake-up: the carrier is running the waker),
    /// else the shared one, waking the carrier if it sleeps.
    fn schedule(&self, task: Arc<Task>) {
        let c = task.home.load(Ordering::Relaxed);
        if self.here() == Some(c) {
            // SAFETY: a green thread of carrier c runs on c's kernel thread, and pushing neither
            // resumes nor re-enters.
            unsafe { self.local(c, |l| l.ready.push(task)) };
            return;
        }
        if self.queues[c].push_and_check(task) {
            self.reg.wake(c);
        }
    }

    /// Rings carrier `c`'s doorbell: it re-checks its reasons to wake.
    fn wake_carrier(&self, c: usize) {
        self.reg.wake(c);
    }

    /// Takes what the carriers' caches did not keep.
    fn spill(&self, stack: Option<Stack>, tls: Option<TlsBlock>) {
        if let Some(s) = stack {
            self.stacks.lock().unwrap_or_else(|e| e.into_inner()).put(s);
        }
        if let Some(b) = tls {
            let mut pool = self.tls_pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < TLS_POOL_MAX {
                pool.push(b);
            }
        }
    }

    /// A stack and (with TLS on) a TLS block for a new green thread: from the spawning carrier's
    /// cache when a green thread spawns, else from the shared pools, else new.
    fn resources(
        &self,
        here: Option<usize>,
        stack_size: Option<usize>,
    ) -> io::Result<(Stack, Option<TlsBlock>)> {
        let size = match stack_size {
            Some(s) => crate::stack::usable_size(s)?,
            None => self.stack_size,
        };
        // The carriers cache stacks of the runtime's size only.
        let cached = size == self.stack_size;
        let (stack, tls) = match here {
            // SAFETY: a green thread of carrier c runs on c's kernel thread; popping neither
            // resumes nor re-enters.
            Some(c) => unsafe {
                self.local(c, |l| (l.stacks.pop().filter(|_| cached), l.tls.pop()))
            },
            None => (None, None),
        };
        let stack = match stack {
            Some(s) => s,
            None => self
                .stacks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(size)?,
        };
        let tls = match tls {
            Some(b) => Some(b),
            None if self.tls => self
                .tls_pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop(),
            None => None,
        };
        let range = stack.bottom()..stack.top();
        let tls = match tls {
            Some(b) => {
                b.set_stack(range);
                Some(b)
            }
            None if self.tls => {
                Some(TlsBlock::new(range).map_err(|e| io::Error::other(e.to_string()))?)
            }
            None => None,
        };
        Ok((stack, tls))
    }

    fn spawn<F, T>(&self, opts: SpawnOptions, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.shutdown.load(Ordering::Acquire) {
            return Err(io::Error::other("the runtime is shutting down"));
        }
        let SpawnOptions {
            name,
            stack_size,
            hold_tcb,
        } = opts;
        let here = self.here();
        let (stack, tls) = self.resources(here, stack_size)?;
        let guard = stack.guard();
        let home = here.unwrap_or_else(|| {
            self.next_carrier.fetch_add(1, Ordering::Relaxed) % self.queues.len()
        });
        let id = match here {
            // SAFETY: a green thread of carrier c runs on c's kernel thread; taking an id
            // neither resumes nor re-enters.
            Some(c) => unsafe { self.local(c, |l| l.next_id(&NEXT_ID)) },
            None => NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        // SAFETY: a green thread of carrier c runs on c's kernel thread; popping neither resumes
        // nor re-enters.
        let cached = here.and_then(|c| unsafe { self.local(c, |l| l.tasks.pop()) });
        // A cached task was this runtime's: its reference to the runtime is reused as it is.
        let (cached, runtime) = match cached {
            Some(mut t) => {
                let rt = Arc::get_mut(&mut t)
                    .expect("a cached task is unshared")
                    .take_runtime();
                (Some(t), rt)
            }
            None => (None, Arc::downgrade(&self.arc())),
        };
        let mut fresh = Task::new(id, name, home, guard, tls, runtime);
        let tcb_hold = hold_tcb.then(|| {
            Arc::new(task::HeldTcb {
                block: Mutex::new(None),
                runtime: Arc::downgrade(&self.arc()),
            })
        });
        fresh.tcb_hold = tcb_hold.clone();
        let task = match cached {
            Some(mut cached) => {
                // Unshared when cached, and nobody could have cloned it since.
                *Arc::get_mut(&mut cached).expect("a cached task is unshared") = fresh;
                cached
            }
            None => Arc::new(fresh),
        };
        let join = Arc::new(JoinCell::<_, Waiter>::new());
        let done = join.clone();
        let me = Arc::as_ptr(&task) as usize;
        let shared = self as *const Shared as usize;
        let ctx = Context::new(stack, move || {
            // SAFETY: the task owns this context, so it outlives every run of it; the runtime
            // outlives its running green threads (a carrier holds it).
            let (me, rt) = unsafe { (&*(me as *const Task), &*(shared as *const Shared)) };
            {
                // Everything here is dropped before `exit`, which never returns.
                let done = done;
                if let Some(block) = me.tls() {
                    // SAFETY: the carrier installed this block as fs before switching to us.
                    unsafe { block.first_entry() };
                    carrier::set_current(me, rt);
                }
                me.finish_hand_over(rt);
                let r = catch_unwind(AssertUnwindSafe(f));
                if let Some(block) = me.tls() {
                    // C++ thread_local and Rust thread-local destructors, before the joiner
                    // returns.
                    // SAFETY: we run on this block.
                    unsafe { block.run_tls_dtors() };
                }
                if let Some(w) = done.complete(r) {
                    w.wake();
                }
            }
            me.exit()
        });
        task.install(ctx);
        let tcb = task.thread_pointer();
        match here {
            Some(c) => self.locals[c].count_spawn(),
            None => {
                self.spawned_outside.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.schedule(task);
        Ok(JoinHandle {
            cell: join,
            tcb,
            _tcb_hold: tcb_hold,
        })
    }
}

/// How to build a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    cores: Option<usize>,
    kmod: KmodOverrides,
    stack_size: usize,
    batch_limit: Option<usize>,
    order: Option<Order>,
    tls: Option<bool>,
    stats_at_exit: Option<StatsSink>,
    preempt: Option<Preemption>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            cores: None,
            kmod: KmodOverrides::default(),
            stack_size: 256 * 1024,
            batch_limit: None,
            order: None,
            tls: None,
            stats_at_exit: None,
            preempt: None,
        }
    }
}

/// What the builder was told about the syscall pages and backend; the rest comes from
/// `FLEXSC_*` variables ([`Config::from_env`]), then the runtime's defaults.
#[derive(Debug, Clone, Default)]
struct KmodOverrides {
    pages: Option<usize>,
    backend: Option<BackendKind>,
    specialization: Option<Specialization>,
    max_syscall_threads: Option<usize>,
    executor_spins: Option<u32>,
}

impl KmodOverrides {
    /// The registration request for `cores` carriers.
    fn config(&self, cores: usize) -> io::Result<Config> {
        let mut c = Config::from_env()?;
        let unset = |v: &str| std::env::var_os(v).is_none();
        // A green thread blocked in a call holds its entry (and, with the `threads` backend, a
        // syscall thread) until the call returns: servers block many calls at once, so the
        // runtime defaults to far more entries than the paper's 8 pages.
        if unset("FLEXSC_PAGES") {
            c.pages_per_core = 64;
        }
        if unset("FLEXSC_MAX_SYSCALL_THREADS") {
            c.max_syscall_threads = 4096;
        }
        if let Some(n) = self.pages {
            c.pages_per_core = n;
        }
        if let Some(b) = self.backend {
            c.backend = b;
        }
        if let Some(s) = &self.specialization {
            c.specialization = s.clone();
            c.syscall_cores.clear();
        }
        if let Some(n) = self.max_syscall_threads {
            c.max_syscall_threads = n;
        }
        if let Some(n) = self.executor_spins {
            c.executor_spins = n;
        }
        c.cores = cores;
        Ok(c)
    }
}

impl Builder {
    /// Carriers (default: `FLEXSC_CORES`, else every online CPU). Carrier i is pinned to CPU i
    /// when that CPU exists.
    pub fn cores(mut self, n: usize) -> Self {
        self.cores = Some(n);
        self
    }

    /// The static list of syscall cores (core specialization, paper section 3.6): the `threads`
    /// backend's syscall threads run there, `uring`'s SQPOLL threads too. Empty: syscall threads
    /// float. Shorthand for `specialization(Specialization::Static(cores))`.
    pub fn syscall_cores(self, cores: Vec<usize>) -> Self {
        self.specialization(Specialization::Static(cores))
    }

    /// How system calls are spread over cores (default: `Static` with no list, unless
    /// `FLEXSC_SPECIALIZATION` says otherwise): `PerCore` runs each carrier's calls on its own
    /// core (the paper's single-core mode), `Static(list)` on the listed syscall cores, `Dynamic`
    /// moves the split between carrier and syscall cores with the measured user and kernel time
    /// (`threads` backend).
    pub fn specialization(mut self, s: Specialization) -> Self {
        self.kmod.specialization = Some(s);
        self
    }

    /// Syscall pages per carrier (64 entries each; default `FLEXSC_PAGES`, else 64). Every call
    /// blocked at once on a carrier holds one entry; calls beyond that wait for a free entry.
    pub fn pages(mut self, n: usize) -> Self {
        self.kmod.pages = Some(n);
        self
    }

    /// Cap on syscall threads (`threads` backend): each call blocked in the kernel holds one
    /// (default `FLEXSC_MAX_SYSCALL_THREADS`, else 4096).
    pub fn max_syscall_threads(mut self, n: usize) -> Self {
        self.kmod.max_syscall_threads = Some(n);
        self
    }

    /// Polls an idle syscall thread spins before sleeping (0: sleep at once; right when syscall
    /// threads share the carriers' CPUs; default `FLEXSC_SPINS`, else 20,000).
    pub fn executor_spins(mut self, n: u32) -> Self {
        self.kmod.executor_spins = Some(n);
        self
    }

    /// The backend executing entries (default `FLEXSC_BACKEND`, else `threads`, which runs any
    /// call anywhere; `uring` holds blocked I/O without a thread each).
    pub fn backend(mut self, b: BackendKind) -> Self {
        self.kmod.backend = Some(b);
        self
    }

    /// Usable stack bytes per green thread.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// The batching policy: a carrier submits its batch after this many posted entries, or when
    /// it runs out of ready green threads, whichever comes first (default `FLEXSC_BATCH`, else
    /// 64). 1 submits every call at once (lowest latency, one kernel entry per call); larger
    /// batches amortise the kernel entry over more calls while the first ones wait.
    pub fn batch_limit(mut self, n: usize) -> Self {
        self.batch_limit = Some(n.max(1));
        self
    }

    /// In which order ready green threads run ([`Order`]; default `FLEXSC_ORDER`: `fifo`, `lifo`
    /// or `lifo:N` for N `rounds`; else [`Order::DEFAULT`]).
    pub fn order(mut self, order: Order) -> Self {
        self.order = Some(order);
        self
    }

    /// Whether every green thread gets its own glibc TLS block and TCB (default: yes, unless
    /// `FLEXSC_TLS=0`): its own `errno`, C/C++ `__thread`/`thread_local` and Rust `thread_local!`
    /// variables, `pthread_self`, locale and resolver state, switched with the fs base at every
    /// switch. Without, green threads share their carrier's thread-locals: only for code that
    /// keeps no thread-local state across a switch point (a system call, a park, a yield), and it
    /// saves about 4.5 KiB per green thread and two fs writes per switch.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = Some(on);
        self
    }

    /// Prints the per-carrier statistics table ([`StatsTable`]) followed by the system calls by
    /// name ([`SyscallStats`]) to stderr when the runtime shuts down, when the process exits with
    /// it still running, and each time the process receives `SIGUSR2` while it runs.
    /// `FLEXSC_STATS` does the same without code: `1` (or `stderr`) for stderr, `0` for nothing,
    /// anything else is a file the table is appended to.
    ///
    /// SIGUSR2: the first runtime built with statistics on installs a handler, only if the
    /// signal's action is `SIG_DFL` then (an application's handler is never replaced; one the
    /// application installs later replaces ours, and the table then prints at exit only), and
    /// starts an internal thread that prints the table of every runtime of the process with
    /// statistics on, each to its own sink. With the handler in place SIGUSR2 no longer
    /// terminates the process. In a `fork` child SIGUSR2 does nothing until a runtime with
    /// statistics on is built there.
    pub fn stats_at_exit(mut self, on: bool) -> Self {
        self.stats_at_exit = on.then_some(StatsSink::Stderr);
        self
    }

    /// Preempts a green thread that keeps its carrier for a whole `slice` without resuming
    /// another, where `may_preempt` accepts the interrupted instruction's address (default: never;
    /// scheduling is cooperative). See [`Preemption`]: the predicate must accept only code where
    /// a [`yield_now`] would be sound, never the runtime's own code or code holding a lock that
    /// blocks kernel threads (libc's internal ones). The preload accepts the main executable.
    pub fn preempt(mut self, slice: Duration, may_preempt: fn(pc: usize) -> bool) -> Self {
        self.preempt = Some(Preemption { slice, may_preempt });
        self
    }

    /// Starts the carriers.
    pub fn build(self) -> io::Result<Runtime> {
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = match (self.cores, std::env::var("FLEXSC_CORES").ok()) {
            (Some(n), _) => n,
            (None, Some(v)) => v.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("FLEXSC_CORES={v:?} is not a number"),
                )
            })?,
            (None, None) => online,
        };
        if cores == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a runtime needs at least one carrier",
            ));
        }
        let order = match (self.order, std::env::var("FLEXSC_ORDER").ok()) {
            (Some(o), _) => o,
            (None, Some(v)) => v.parse().map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("FLEXSC_ORDER={e}"))
            })?,
            (None, None) => Order::DEFAULT,
        };
        let tls = match (self.tls, std::env::var("FLEXSC_TLS").ok()) {
            (Some(on), _) => on,
            (None, Some(v)) => match v.trim() {
                "0" | "off" | "no" => false,
                "1" | "on" | "yes" => true,
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("FLEXSC_TLS={v:?}: expected 0 or 1"),
                    ));
                }
            },
            (None, None) => true,
        };
        if tls {
            crate::tls::Layout::validate().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "per-green-thread TLS is not supported here: {e} \
                         (Builder::tls(false) or FLEXSC_TLS=0 runs green threads on their \
                         carriers' TLS)"
                    ),
                )
            })?;
        }
        let stats_at_exit = match (self.stats_at_exit, std::env::var_os("FLEXSC_STATS")) {
            (Some(s), _) => Some(s),
            (None, Some(v)) if v == "0" || v.is_empty() => None,
            (None, Some(v)) if v == "1" || v == "stderr" => Some(StatsSink::Stderr),
            (None, Some(v)) => Some(StatsSink::File(v.into())),
            (None, None) => None,
        };
        crate::overflow::install()?;
        if let Some(p) = &self.preempt {
            if p.slice.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a preemption slice must be longer than zero",
                ));
            }
            preempt::install()?;
        }
        let reg = flexsc_kmod::register(self.kmod.config(cores)?)?;
        let shared = Arc::new(Shared {
            reg,
            queues: (0..cores).map(|_| RunQueue::default()).collect(),
            interrupts: (0..cores).map(|_| interrupt::Requests::default()).collect(),
            locals: (0..cores).map(|_| CarrierLocal::new(order)).collect(),
            spawned_outside: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            next_carrier: AtomicUsize::new(0),
            stacks: Mutex::new(StackPool::new(1024)),
            tls_pool: Mutex::new(Vec::new()),
            tls,
            stack_size: crate::stack::usable_size(self.stack_size)?,
            batch_limit: match (self.batch_limit, std::env::var("FLEXSC_BATCH").ok()) {
                (Some(n), _) => n,
                (None, Some(v)) => match v.trim().parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("FLEXSC_BATCH={v:?} is not a positive number"),
                        ));
                    }
                },
                (None, None) => DEFAULT_BATCH,
            },
            stats: Arc::new(StatsShared::new(cores)),
            preempt: self.preempt,
        });
        let mut carriers = Vec::with_capacity(cores);
        for idx in 0..cores {
            let sh = shared.clone();
            let (ready, started) = std::sync::mpsc::channel();
            // glibc's own pthread_create: under the preload, the exported one makes green threads.
            let h = flexsc_kmod::os_thread::spawn(&format!("flexsc-carrier{idx}"), 0, move || {
                if idx < online {
                    // Pinning is locality, not correctness: carry on if it fails.
                    let _ = flexsc_kmod::raw::pin_to_cpu(idx);
                }
                // The poster is made on the carrier's own thread (io_uring binds to it), and so
                // are the overflow handler's alternate stack and carrier slot.
                let started = sh.reg.poster(idx).and_then(|p| {
                    let alt = crate::overflow::AltStack::new()?;
                    let slot = crate::overflow::CarrierSlot::register()
                        .ok_or_else(|| io::Error::other("overflow table full"))?;
                    Ok((p, alt, slot))
                });
                match started {
                    Ok((p, _alt, slot)) => {
                        let _ = ready.send(Ok(()));
                        Carrier::new(idx, sh, p, slot).run();
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })?;
            carriers.push(h);
            started
                .recv()
                .map_err(|_| io::Error::other("carrier died starting"))??;
        }
        let monitor = match self.preempt {
            Some(p) => {
                let sh = shared.clone();
                Some(flexsc_kmod::os_thread::spawn(
                    "flexsc-preempt",
                    0,
                    move || preempt::monitor(sh, p.slice),
                )?)
            }
            None => None,
        };
        if let Some(sink) = &stats_at_exit {
            stats::print_at_exit(&shared.stats, sink.clone());
            stats::print_on_sigusr2();
        }
        Ok(Runtime {
            shared,
            carriers,
            monitor,
        })
    }
}

/// The M:N runtime: carriers running green threads whose system calls are exception-less.
pub struct Runtime {
    shared: Arc<Shared>,
    carriers: Vec<flexsc_kmod::os_thread::OsThread>,
    /// The preemption monitor, if preemption is on.
    monitor: Option<flexsc_kmod::os_thread::OsThread>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("carriers", &self.carriers.len())
            .finish()
    }
}

impl Runtime {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts a green thread.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared
            .spawn(SpawnOptions::new(), f)
            .expect("spawn a green thread")
    }

    /// Starts a named green thread (the name shows in diagnostics such as a stack overflow).
    pub fn spawn_named<F, T>(&self, name: impl Into<String>, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared
            .spawn(SpawnOptions::new().name(name), f)
            .expect("spawn a green thread")
    }

    /// Runs `f` on a green thread and returns its result (re-raising its panic).
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.spawn(f).join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// Per-carrier counters, as of each carrier's last idle moment (or exit).
    pub fn stats(&self) -> Vec<CarrierStats> {
        self.shared.stats.carriers()
    }

    /// The system calls the green threads made, by number, summed over the carriers: those
    /// posted as entries and those the carriers ran themselves (thread-bound, or through
    /// [`syscall_on_carrier`]). Live: every call
    /// is counted when its carrier posts (or runs) it, whether or not statistics are printed.
    pub fn syscall_stats(&self) -> SyscallStats {
        self.shared.stats.syscalls()
    }

    /// Whether the caller is one of this runtime's green threads.
    pub fn owns_current(&self) -> bool {
        current().is_some_and(|(_, s, _)| std::ptr::eq(s, Arc::as_ptr(&self.shared)))
    }

    /// Specializes `fd` for this runtime's registration (see [`flexsc_kmod::specialize`]).
    pub fn specialize(&self, fd: RawFd, hints: Hints) -> io::Result<SpecializationContext> {
        self.shared.reg.specialize(fd, hints)
    }

    /// Green threads started and not yet finished.
    pub fn live(&self) -> usize {
        let sh = &self.shared;
        // Finishes first: every green thread counted finished was counted spawned before.
        let finished: u64 = sh.locals.iter().map(CarrierLocal::finished).sum();
        let spawned: u64 = sh.locals.iter().map(CarrierLocal::spawned).sum::<u64>()
            + sh.spawned_outside.load(Ordering::SeqCst);
        spawned.saturating_sub(finished) as usize
    }

    /// Stops the carriers and returns their counters. Green threads still parked are dropped
    /// (their stacks unwound).
    pub fn shutdown(mut self) -> Vec<CarrierStats> {
        self.stop();
        self.shared.stats.carriers()
    }

    fn stop(&mut self) {
        if self.carriers.is_empty() {
            return;
        }
        self.shared.shutdown.store(true, Ordering::Release);
        for c in 0..self.shared.queues.len() {
            self.shared.reg.wake(c);
        }
        for h in self.carriers.drain(..) {
            let _ = h.join();
        }
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
        // The table, if one was asked for and not yet printed.
        stats::print_now(&self.shared.stats);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a green thread on the current runtime (the caller must be a green thread).
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (_, shared, _) = current().expect("flexsc_threads::spawn outside a green thread");
    shared
        .spawn(SpawnOptions::new(), f)
        .expect("spawn a green thread")
}

/// How to start one green thread, as `std::thread::Builder`: a name (shown in diagnostics such
/// as a stack overflow) and a stack size (default: the runtime's, `Builder::stack_size`). A
/// stack is a reservation: only the pages a green thread touches cost memory, so sizes as large
/// as `RLIMIT_STACK` (8 MiB) are cheap.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    name: Option<String>,
    stack_size: Option<usize>,
    hold_tcb: bool,
}

impl SpawnOptions {
    /// No name, the runtime's stack size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the green thread.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Usable stack bytes (rounded up to whole pages).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Keeps the green thread's TCB (its `pthread_t`, [`JoinHandle::tcb`]) from being reused by
    /// another green thread until its join handle is dropped, as POSIX thread ids are (the
    /// preload needs it; it costs the TCB's reuse: about 4.5 KiB held per unjoined thread).
    pub fn hold_tcb(mut self, hold: bool) -> Self {
        self.hold_tcb = hold;
        self
    }

    /// Starts the green thread on the caller's runtime (the caller must be a green thread).
    /// Errors: out of memory or mappings for the stack, or the runtime is shutting down.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (_, shared, _) = current().ok_or_else(|| {
            io::Error::other("SpawnOptions::spawn outside a green thread (use spawn_on)")
        })?;
        shared.spawn(self, f)
    }

    /// Starts the green thread on `rt`.
    pub fn spawn_on<F, T>(self, rt: &Runtime, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        rt.shared.spawn(self, f)
    }
}

impl Shared {
    /// An owning handle to this runtime, from a borrow obtained through `current`.
    fn arc(&self) -> Arc<Shared> {
        let p = self as *const Shared;
        // SAFETY: every `Shared` lives in an `Arc` (built in `Builder::build`), and `current`
        // only hands out borrows of it while a carrier holding that Arc runs; bumping the strong
        // count before making a second Arc keeps the counts balanced.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }
}

/// Lets other green threads run; returns when this one is scheduled again. On an OS thread,
/// `std::thread::yield_now`.
pub fn yield_now() {
    match current() {
        Some((t, s, c)) => {
            t.suspend(s, c, Suspend::Yield);
        }
        None => std::thread::yield_now(),
    }
}

/// Sleeps the calling green thread (or OS thread) for at least `d`, without blocking its carrier.
pub fn sleep(d: Duration) {
    let until = Instant::now() + d;
    if current().is_none() {
        return std::thread::sleep(d);
    }
    while Instant::now() < until {
        park_until(Some(until));
    }
}

/// Parks the calling green thread until unparked (or until `deadline`); may return spuriously.
fn park_until(deadline: Option<Instant>) {
    park_as(Park::Held, deadline);
}

/// Parks the calling green thread as `how` (an OS thread blocks) until unparked or `deadline`;
/// may return spuriously.
fn park_as(how: Park, deadline: Option<Instant>) {
    match current() {
        Some((t, s, c)) => {
            if !t.take_notification() {
                t.suspend(
                    s,
                    c,
                    match how {
                        Park::Held => Suspend::Park(deadline),
                        Park::Waiting => Suspend::Wait(deadline),
                    },
                );
            }
        }
        None => match deadline {
            Some(d) => std::thread::park_timeout(d.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        },
    }
}

/// Runs a system call: on a green thread it is posted to the carrier's syscall pages and the
/// green thread parks until it completes (exception-less); elsewhere it traps as usual. Returns
/// the raw result (negative errno on failure). `sched_yield` on a green thread is a yield point:
/// the carrier runs its other ready green threads first.
///
/// # Safety
/// As for `syscall(2)` (see [`Syscall::new`]): the arguments must be valid for the call.
pub unsafe fn syscall(nr: i64, args: &[u64]) -> i64 {
    // SAFETY: forwarded to our caller.
    let call = unsafe { Syscall::new(nr, args) };
    match current() {
        // On a green thread, sched_yield yields to the other green threads of its carrier.
        Some((t, s, c)) if nr == libc::SYS_sched_yield => {
            t.suspend(s, c, Suspend::Yield);
            0
        }
        Some((t, s, c)) => t.syscall(s, c, call),
        None => {
            // Posted calls are checked by the poster; this one traps here.
            flexsc_kmod::specialize::note_call(nr, args);
            let mut a = [0u64; 6];
            a[..args.len()].copy_from_slice(args);
            // SAFETY: forwarded to our caller.
            unsafe { flexsc_kmod::raw::syscall6(nr as u64, &a) }
        }
    }
}

/// Specializes `fd` for the calling green thread's runtime (see [`flexsc_kmod::specialize`]):
/// calls on it skip the per-call work the backend can skip while the context lives. An error
/// on an OS thread (use [`Runtime::specialize`] there).
pub fn specialize(fd: RawFd, hints: Hints) -> io::Result<SpecializationContext> {
    match current() {
        Some((_, s, _)) => s.reg.specialize(fd, hints),
        None => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "specialize: not on a green thread of a flexsc-threads runtime \
             (use Runtime::specialize)",
        )),
    }
}

/// Runs a system call on the calling thread's own kernel thread, trapping as usual: for calls
/// that cannot wait (an `O_NONBLOCK` socket, a zero-timeout poll), where posting buys no
/// batching, only a round trip through the syscall pages and a switch (the paper's hybrid rule).
/// On a green thread that kernel thread is its carrier, and the call is counted as run on the
/// carrier in the statistics. Returns the raw result (negative errno on failure).
///
/// # Safety
/// As for `syscall(2)`: the arguments must be valid for the call.
pub unsafe fn syscall_on_carrier(nr: i64, args: &[u64]) -> i64 {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: forwarded to our caller.
    let r = unsafe { flexsc_kmod::raw::syscall6(nr as u64, &a) };
    if let Some((_, s, c)) = current() {
        // SAFETY: on carrier c's kernel thread (the green thread runs on it), between switches;
        // counting resumes nothing.
        unsafe {
            s.locals[c].with(|l| {
                if let Some(p) = l.posting.as_mut() {
                    p.count_local(nr);
                }
            })
        };
    }
    r
}

/// In the child of a `fork` made by a green thread: the child's only thread stops being a green
/// thread (the runtime's carriers did not survive the fork) and from now on runs as a plain OS
/// thread: its calls trap, its waits block. Call it first thing in the child (an atfork child
/// handler); the parent's runtime must not be used in the child.
pub fn after_fork_in_child() {
    carrier::clear_current();
    crate::tls::reset_after_fork();
}

/// The running green thread's id, or None on an OS thread.
pub fn current_id() -> Option<u64> {
    current().map(|(t, _, _)| t.id())
}

/// The running green thread's name, if any.
pub fn current_name() -> Option<String> {
    current().and_then(|(t, _, _)| t.name().map(str::to_owned))
}

/// A handle that wakes one parked thread, green or OS: what sync primitives keep in their wait
/// lists. Waking a thread that is not parked makes its next park return at once.
#[derive(Clone)]
pub struct Unparker(Waiter);

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Waiter::Green(t, _) => write!(f, "Unparker(green thread {})", t.id()),
            Waiter::Os(t) => write!(f, "Unparker({:?})", t.id()),
        }
    }
}

impl Unparker {
    /// The calling thread's unparker.
    pub fn current() -> Self {
        Self(match current() {
            Some((t, s, _)) => Waiter::Green(t.arc(), s.arc()),
            None => Waiter::Os(std::thread::current()),
        })
    }

    /// Wakes the thread (see [`park`]).
    pub fn unpark(&self) {
        self.0.wake();
    }
}

/// Parks the calling thread until its [`Unparker`] is used; may return spuriously (callers
/// re-check their condition). A green thread gives its carrier to others meanwhile.
pub fn park() {
    park_until(None);
}

/// As [`park`], returning no later than `deadline`.
pub fn park_deadline(deadline: Instant) {
    park_until(Some(deadline));
}

/// Who waits for a green thread to finish.
#[derive(Clone)]
enum Waiter {
    Green(Arc<Task>, Arc<Shared>),
    Os(std::thread::Thread),
}

impl Waiter {
    fn wake(&self) {
        match self {
            Waiter::Green(task, shared) => {
                if let Some(t) = task.wake() {
                    shared.schedule(t);
                }
            }
            Waiter::Os(t) => t.unpark(),
        }
    }
}

/// Owns a green thread's result; [`JoinHandle::join`] waits for it.
pub struct JoinHandle<T> {
    cell: Arc<JoinCell<std::thread::Result<T>, Waiter>>,
    tcb: Option<usize>,
    /// Keeps the finished green thread's TCB allocated (`SpawnOptions::hold_tcb`).
    _tcb_hold: Option<task::TcbHold>,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    /// The green thread's glibc thread control block: what `pthread_self()` returns on it (None
    /// when green threads share their carriers' TLS, `Builder::tls(false)`).
    pub fn tcb(&self) -> Option<usize> {
        self.tcb
    }

    /// Whether the green thread has finished.
    pub fn is_finished(&self) -> bool {
        self.cell.is_done()
    }

    /// Waits for the green thread (parking a green caller, blocking an OS thread) and returns its
    /// result, or its panic.
    pub fn join(self) -> Result<T, Box<dyn Any + Send + 'static>> {
        if self.cell.wait_with(Unparker::current().0) {
            while !self.cell.is_done() {
                park_until(None);
            }
        }
        self.cell
            .take()
            .expect("a finished green thread leaves its result")
    }
}
