//! flexsc_register: set up the syscall pages of every posting core and start a backend.

use std::io;
use std::os::fd::RawFd;

use crate::area::SyscallArea;
use crate::backend::{
    Backend, SplitStats, kmod::KmodBackend, threads::ThreadsBackend, uring::UringBackend,
};
use crate::config::{BackendKind, Config};
use crate::poster::Poster;
use crate::specialize::{Context, Hints};
use crate::sync::{Arc, AtomicBool, Ordering};

pub(crate) struct Shared {
    pub(crate) area: Arc<SyscallArea>,
    pub(crate) backend: Box<dyn Backend>,
    shut: AtomicBool,
    gone: AtomicBool,
}

impl Shared {
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    pub(crate) fn executors_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    pub(crate) fn specialize(&self, fd: RawFd, hints: Hints) -> io::Result<Context> {
        if self.is_shut_down() {
            return Err(io::Error::other("the FlexSC registration was shut down"));
        }
        Context::new(&self.area, self.backend.skips(), fd, hints)
    }
}

/// A live registration: the syscall pages and the backend executing them. Dropping it shuts the
/// backend down.
pub struct Registration {
    shared: Arc<Shared>,
    config: Config,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("backend", &self.shared.backend.name())
            .field("config", &self.config)
            .finish()
    }
}

/// flexsc_register: maps `config.pages_per_core` syscall pages for each of `config.cores`
/// posting cores and starts the chosen backend, its executors placed as
/// `config.specialization` says.
pub fn register(config: Config) -> io::Result<Registration> {
    config.validate()?;
    let area = Arc::new(SyscallArea::new(config.cores, config.pages_per_core));
    let backend: Box<dyn Backend> = match config.backend {
        BackendKind::Threads => Box::new(ThreadsBackend::start(area.clone(), &config)?),
        BackendKind::Uring => Box::new(UringBackend::start(area.clone(), &config)?),
        BackendKind::Kmod => Box::new(KmodBackend::start(area.clone(), &config)?),
    };
    Ok(Registration {
        shared: Arc::new(Shared {
            area,
            backend,
            shut: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        }),
        config,
    })
}

impl Registration {
    /// Becomes the poster of `core` (an error if the core has one already or does not exist).
    /// Call it on the thread that will post: backends may bind per-core state to that thread.
    pub fn poster(&self, core: usize) -> io::Result<Poster> {
        if self.shared.is_shut_down() {
            return Err(io::Error::other("the FlexSC registration was shut down"));
        }
        Poster::new(self.shared.clone(), core)
    }

    /// The configuration it was registered with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The syscall pages.
    pub fn area(&self) -> &SyscallArea {
        &self.shared.area
    }

    /// Rings core `core`'s completion doorbell: a poster sleeping in [`Poster::wait_with`]
    /// re-checks its condition (how a scheduler wakes another core's idle carrier).
    pub fn wake(&self, core: usize) {
        self.shared.area.core(core).completions.ring();
        self.shared.backend.wake(core);
    }

    /// Specializes `fd` ([`crate::specialize`]): declares that it stays bound to the file it
    /// names now (and, with a pool in `hints`, the size of its messages), so that the backend
    /// skips per-call work on it until the returned context is dropped or invalidated.
    pub fn specialize(&self, fd: RawFd, hints: Hints) -> io::Result<Context> {
        self.shared.specialize(fd, hints)
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.shared.backend.name()
    }

    /// Where system calls execute now: the core split of `config().specialization` (with
    /// `Dynamic`, as the controller last set it, and what it measured).
    pub fn split(&self) -> SplitStats {
        self.shared.backend.split()
    }

    /// Stops the backend: new posts fail with `ShutDown`, calls already claimed finish (blocked
    /// ones are interrupted and answer `-EINTR`), entries never claimed answer `-ECANCELED`, and
    /// every syscall thread has exited when this returns. Idempotent.
    pub fn shutdown(&self) {
        if self.shared.shut.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.backend.shutdown();
        // Anything still SUBMITTED was never claimed: answer it so no poster waits forever.
        for (i, page) in self.shared.area.pages().iter().enumerate() {
            let mut cancelled = 0;
            for e in &page.entries {
                if let Some(c) = e.claim() {
                    c.complete(-(libc::ECANCELED as i64));
                    cancelled += 1;
                }
            }
            if cancelled > 0 {
                self.shared.area.control(i).note_completed(cancelled);
                let core = self.shared.area.core_of_page(i);
                self.shared.area.core(core).completions.ring();
            }
        }
        self.shared.gone.store(true, Ordering::Release);
        for c in 0..self.shared.area.cores() {
            self.wake(c);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shutdown();
    }
}
