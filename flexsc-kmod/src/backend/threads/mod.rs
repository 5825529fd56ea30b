//! The `threads` backend: syscall threads in user space (paper sections 3.5 and 3.6).
//!
//! Each syscall thread is pinned to one core of the static syscall-core list and runs entries
//! with the raw `syscall` instruction. At most one thread per syscall core is *active* (draining
//! pages) at a time; before it runs a call that may block it hands the core to a sibling (waking
//! one, or creating one up to the cap), so the pages keep draining while it sleeps in the kernel.
//! An active thread that runs out of work spins for a while, then sleeps on its core's doorbell;
//! a poster's submit rings the first syscall core's doorbell only when no thread is active.
//!
//! The poster's core never traps for a call; the syscall thread still does, once per call. The
//! gain is in where the trap happens (core specialization) and in the poster never blocking.

mod scheduler;
mod syscall_thread;

use std::io;
use std::time::Instant;

use crate::area::SyscallArea;
use crate::backend::{Backend, CoreBackend};
use crate::config::Config;
use crate::sync::Arc;

pub(crate) use scheduler::Scheduler;

/// Syscall threads in user space.
#[derive(Debug)]
pub struct ThreadsBackend {
    sched: Arc<Scheduler>,
}

impl ThreadsBackend {
    /// Starts one syscall thread per syscall core, within the thread cap (more are created as
    /// calls block).
    pub fn start(area: Arc<SyscallArea>, config: &Config) -> io::Result<Self> {
        let sched = Scheduler::new(area, config)?;
        Scheduler::start(&sched)?;
        Ok(Self { sched })
    }

    /// The scheduler, for the `uring` backend, whose fallback path hands entries to it.
    pub(crate) fn scheduler(&self) -> &Arc<Scheduler> {
        &self.sched
    }

    /// Number of syscall threads alive now.
    pub fn threads(&self) -> usize {
        self.sched.live_threads()
    }
}

impl Backend for ThreadsBackend {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn attach(&self, core: usize) -> io::Result<Box<dyn CoreBackend>> {
        Ok(Box::new(ThreadsCore {
            sched: self.sched.clone(),
            core,
        }))
    }

    fn shutdown(&self) {
        self.sched.shutdown();
    }
}

impl Drop for ThreadsBackend {
    fn drop(&mut self) {
        self.sched.shutdown();
    }
}

/// The carrier half: submit marks the posted pages and wakes a syscall thread if none is active;
/// wait sleeps on the core's completion doorbell.
#[derive(Debug)]
struct ThreadsCore {
    sched: Arc<Scheduler>,
    core: usize,
}

impl CoreBackend for ThreadsCore {
    fn submit(&mut self, posted: &[u32]) {
        self.sched.submit(self.core, posted);
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
