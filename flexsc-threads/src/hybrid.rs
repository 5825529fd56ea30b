//! The hybrid interface of paper section 4.1: exception-less system calls for event-driven code,
//! without green threads. The calling thread posts entries to its own syscall pages, gets a
//! [`Ticket`] for each, keeps working, and later polls ([`Hybrid::harvest`]) or sleeps until
//! something completes ([`Hybrid::wait`], the paper's `flexsc_wait`).
//!
//! ```
//! use flexsc_threads::hybrid::Hybrid;
//! use flexsc_threads::kmod::Syscall;
//!
//! let mut h = Hybrid::new().unwrap();
//! // SAFETY: getppid takes no arguments.
//! let t = h.post(&unsafe { Syscall::new(libc::SYS_getppid, &[]) }).unwrap();
//! h.submit();
//! // ... other work while the call runs ...
//! assert_eq!(h.take(t), unsafe { libc::getppid() } as i64);
//! ```
//!
//! A `Hybrid` belongs to the thread that made it (the `uring` backend binds its ring to that
//! thread): it is `Send` only as far as its poster is, and every call takes `&mut self`.
//! Thread-bound calls (gettid, signal masks, ...) are refused by [`Hybrid::post`] with
//! [`PostError::ThreadBound`]; [`Hybrid::call`] runs them directly.

use std::io;
use std::time::Instant;

use flexsc_kmod::{BackendKind, Config, PostError, Poster, Registration, Syscall, Ticket};

/// One thread's syscall pages and the backend executing them.
pub struct Hybrid {
    // Dropped first: the poster's entries belong to the registration.
    poster: Poster,
    reg: Registration,
}

impl std::fmt::Debug for Hybrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hybrid")
            .field("backend", &self.reg.backend_name())
            .field("capacity", &self.poster.capacity())
            .field("in_flight", &self.poster.in_flight())
            .finish()
    }
}

impl Hybrid {
    /// Registers the calling thread with the configuration `FLEXSC_*` variables describe
    /// ([`Config::from_env`]), on one posting core, with the `kmod` backend where the kernel
    /// module is loaded and the `uring` backend elsewhere, unless `FLEXSC_BACKEND` says otherwise.
    pub fn new() -> io::Result<Self> {
        let mut config = Config::from_env()?;
        if std::env::var_os("FLEXSC_BACKEND").is_none() {
            config.backend = BackendKind::kmod_or(BackendKind::Uring);
        }
        Self::with_config(config)
    }

    /// Registers the calling thread with `config` (its `cores` is set to 1: one thread, one
    /// set of syscall pages).
    pub fn with_config(config: Config) -> io::Result<Self> {
        let reg = flexsc_kmod::register(Config { cores: 1, ..config })?;
        let poster = reg.poster(0)?;
        Ok(Self { poster, reg })
    }

    /// Writes `call` into a free entry; it runs once submitted. Full pages answer
    /// [`PostError::Full`]: harvest or wait, then post again.
    pub fn post(&mut self, call: &Syscall) -> Result<Ticket, PostError> {
        self.poster.post(call)
    }

    /// Hands the entries posted since the last submit to the backend, as one batch.
    pub fn submit(&mut self) {
        self.poster.submit();
    }

    /// Calls `f(ticket, result)` for every completed entry (freeing it); returns how many.
    pub fn harvest(&mut self, f: impl FnMut(Ticket, i64)) -> usize {
        self.poster.harvest(f)
    }

    /// `flexsc_wait`: sleeps until at least one submitted entry completes (returns at once if
    /// one has, or if nothing is in flight).
    pub fn wait(&mut self) {
        self.poster.wait();
    }

    /// As [`Hybrid::wait`], also returning when `also()` turns true or `deadline` passes (the
    /// event loop's other sources: timers, a wake-up flag).
    pub fn wait_until(&mut self, also: impl FnMut() -> bool, deadline: Option<Instant>) {
        self.poster.wait_with(also, deadline);
    }

    /// The result of `ticket`, waiting for it (submitting first if it was not yet).
    pub fn take(&mut self, ticket: Ticket) -> i64 {
        self.poster.take(ticket)
    }

    /// The result of `ticket` if it is done, else the ticket back.
    pub fn try_take(&mut self, ticket: Ticket) -> Result<i64, Ticket> {
        self.poster.try_take(ticket)
    }

    /// Runs one call to completion: exception-less if it can be posted, directly if it is
    /// thread-bound.
    pub fn call(&mut self, call: &Syscall) -> i64 {
        self.poster.call(call)
    }

    /// Entries in flight (posted and not yet harvested or taken).
    pub fn in_flight(&self) -> usize {
        self.poster.in_flight()
    }

    /// Entries this thread's pages hold.
    pub fn capacity(&self) -> usize {
        self.poster.capacity()
    }

    /// The backend's name (`threads` or `uring`).
    pub fn backend(&self) -> &'static str {
        self.reg.backend_name()
    }
}
