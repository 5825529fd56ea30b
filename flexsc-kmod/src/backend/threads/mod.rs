//! The `threads` backend: syscall threads in user space (paper sections 3.5 and 3.6).
//!
//! Syscall threads run entries with the raw `syscall` instruction. At most one thread per
//! syscall core is *active* (draining pages) at a time; before it runs a call that may block it
//! hands the core to a sibling (waking one, or creating one up to the cap), so the pages keep
//! draining while it sleeps in the kernel. An active thread that runs out of work spins for a
//! while, then sleeps on its core's doorbell; a poster's submit rings the first syscall core's
//! doorbell only when no thread is active.
//!
//! Where they run is the core specialization (`Config::specialization`): one group of threads
//! for all posting cores, pinned to the static syscall-core list (`Static`), or one group per
//! posting core (`PerCore`, `Dynamic`), placed on its poster's CPUs or on the syscall cores the
//! dynamic controller chose (see `specialization.rs`).
//!
//! Poll arming (`poller.rs`): a read- or write-like call on an fd that is not ready (a socket,
//! pipe, tty, eventfd... probed with `poll(fd, 0)`) does not take a thread at all: the entry is
//! parked in the group's epoll set and run when the fd is ready. So calls blocked on idle
//! connections cannot pin every syscall thread (the cap is `Config::max_syscall_threads`) and
//! starve the rest of the pages.
//!
//! The poster's core never traps for a call; the syscall thread still does, once per call. The
//! gain is in where the trap happens (core specialization) and in the poster never blocking.
//!
//! Interrupts ([`crate::interrupt`]): a thread issues each call that may block through the
//! interruptible stub, with itself published as the entry's runner; an interrupt signals the
//! runner (`SIGRTMAX - 2`, whose handler closes the window before the `syscall` instruction).
//! Calls that cannot block run to completion and keep their result. An entry parked at the poller
//! has no thread: its runner is `interrupt::PARKED`, and an interrupt wakes the poller, which
//! answers it `-EINTR`.

mod poller;
mod scheduler;
pub(crate) mod specialization;
mod syscall_thread;

use std::io;
use std::time::Instant;

use crate::area::SyscallArea;
use crate::backend::{Backend, CoreBackend, SplitStats};
use crate::config::{Config, Specialization, online_cpus, usable_cpus};
use crate::sync::{Arc, AtomicUsize};

use scheduler::Group;
pub(crate) use scheduler::Scheduler;
use specialization::{Placer, PosterSeat};
pub(crate) use syscall_thread::interrupt;
pub use syscall_thread::interrupt_signal;

/// Syscall threads in user space.
#[derive(Debug)]
pub struct ThreadsBackend {
    /// One group (`Static`), or one per posting core (`PerCore`, `Dynamic`).
    groups: Box<[Arc<Scheduler>]>,
    /// Places the per-core groups (None: `Static`).
    placer: Option<Arc<Placer>>,
    /// `Static`: the list.
    static_cores: Vec<usize>,
}

impl ThreadsBackend {
    /// Starts one syscall thread per syscall core (`Static`: per listed CPU, within the thread
    /// cap; `PerCore`, `Dynamic`: per posting core); more are created as calls block.
    pub fn start(area: Arc<SyscallArea>, config: &Config) -> io::Result<Self> {
        let spec = config.effective_specialization()?;
        let live = Arc::new(AtomicUsize::new(0));
        let this = match spec {
            Specialization::Static(list) => {
                let cpus = if list.is_empty() {
                    vec![None]
                } else {
                    list.iter().copied().map(Some).collect()
                };
                // Unpinned syscall threads spin only if a CPU is left over by the posters: on
                // the posters' own CPUs a spinner takes the time the posters need (Apache under
                // the preload on 2 CPUs: 4x slower with spinning). The CPUs counted are those the
                // process may use: a server under `taskset -c 0` has none to spare, however many
                // the machine has (memcached pinned to 1 CPU of 2: 1.3k ops/s spinning).
                let spins = if list.is_empty() && usable_cpus() <= area.cores() {
                    0
                } else {
                    config.executor_spins
                };
                let group = Group {
                    pages: 0..area.pages().len(),
                    cpus,
                    first_name: 0,
                    live,
                    spins,
                    placer: None,
                };
                Self {
                    groups: Box::new([Scheduler::new(area, config, group)]),
                    placer: None,
                    static_cores: list,
                }
            }
            spec => {
                let cores = area.cores();
                let placer = Arc::new(Placer::new(
                    &spec,
                    cores,
                    online_cpus(),
                    config.executor_spins,
                ));
                let per_core = area.pages_per_core();
                let groups: Box<[_]> = (0..cores)
                    .map(|c| {
                        let group = Group {
                            pages: c * per_core..(c + 1) * per_core,
                            cpus: vec![None],
                            first_name: c,
                            live: live.clone(),
                            spins: 0,
                            placer: Some(placer.clone()),
                        };
                        Scheduler::new(area.clone(), config, group)
                    })
                    .collect();
                placer.set_groups(&groups);
                Self {
                    groups,
                    placer: Some(placer),
                    static_cores: Vec::new(),
                }
            }
        };
        // On an error `this` is dropped, which stops the groups already started.
        for g in this.groups.iter() {
            Scheduler::start(g)?;
        }
        Ok(this)
    }

    /// The group that drains posting core `core`'s pages (the `uring` backend's fallback path
    /// hands entries to it).
    pub(crate) fn group(&self, core: usize) -> &Arc<Scheduler> {
        if self.placer.is_some() {
            &self.groups[core]
        } else {
            &self.groups[0]
        }
    }

    /// A poster of `core` attaches on the calling thread (`PerCore`, `Dynamic`: its CPUs become
    /// the core's home, and its CPU time is measured as user work). Keep the seat as long as the
    /// poster.
    pub(crate) fn attach_poster(&self, core: usize) -> Option<PosterSeat> {
        self.placer.as_ref().map(|p| Placer::attach_poster(p, core))
    }

    /// Number of syscall threads alive now.
    pub fn threads(&self) -> usize {
        self.groups[0].live_threads()
    }
}

impl Backend for ThreadsBackend {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn attach(&self, core: usize) -> io::Result<Box<dyn CoreBackend>> {
        Ok(Box::new(ThreadsCore {
            sched: self.group(core).clone(),
            core,
            _seat: self.attach_poster(core),
        }))
    }

    fn shutdown(&self) {
        for g in self.groups.iter() {
            g.shutdown();
        }
    }

    fn split(&self) -> SplitStats {
        match &self.placer {
            Some(p) => p.stats(),
            None => SplitStats {
                mode: "static",
                syscall_cores: self.static_cores.clone(),
                ..SplitStats::default()
            },
        }
    }
}

impl Drop for ThreadsBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The carrier half: submit marks the posted pages and wakes a syscall thread if none is active;
/// wait sleeps on the core's completion doorbell.
#[derive(Debug)]
struct ThreadsCore {
    sched: Arc<Scheduler>,
    core: usize,
    /// The poster's seat at its core (`PerCore`, `Dynamic`), released with it.
    _seat: Option<PosterSeat>,
}

impl CoreBackend for ThreadsCore {
    fn submit(&mut self, posted: &[u32]) {
        self.sched.submit(self.core, posted);
    }

    fn interrupt(&mut self, slot: u32) {
        interrupt(&self.sched, self.core, slot);
    }

    fn wait(
        &mut self,
        ready: &mut dyn FnMut() -> bool,
        give_up: &mut dyn FnMut() -> bool,
        deadline: Option<Instant>,
    ) {
        // A short spin first: a remote syscall thread often answers within a few hundred ns.
        self.sched.area().core(self.core).completions.wait_until(
            self.sched.wait_spins(),
            deadline,
            ready,
            give_up,
        );
    }
}
