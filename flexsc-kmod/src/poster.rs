//! The posting side of a core: finds free entries, posts calls, submits batches, waits, and takes
//! results. One poster per core at a time; it is the single producer of that core's pages, so
//! posting is plain stores.

use std::fmt;
use std::io;

use crate::backend::CoreBackend;
use crate::calls;
use crate::entry::{NR_FLEXSC_BASE, NR_NOP, status};
use crate::page::ENTRIES_PER_PAGE;
use crate::raw;
use crate::register::Shared;
use crate::sync::Arc;

/// A system call request: number and six arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// The syscall number (x86_64), or one of the `NR_FLEXSC_*` operations.
    pub nr: i64,
    /// The arguments; unused ones are zero.
    pub args: [u64; 6],
    /// How many arguments are meaningful.
    pub nargs: u8,
}

impl Syscall {
    /// A call with the given arguments (at most six; the rest are zero).
    pub fn new(nr: i64, args: &[u64]) -> Self {
        assert!(args.len() <= 6, "a system call takes at most 6 arguments");
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        Self {
            nr,
            args: a,
            nargs: args.len() as u8,
        }
    }

    /// The null call of the io_uring backend (IORING_OP_NOP); returns 0.
    pub fn nop() -> Self {
        Self::new(NR_NOP as i64, &[])
    }
}

/// Why a call could not be posted.
#[derive(Debug, PartialEq, Eq)]
pub enum PostError {
    /// Every entry of this core is in flight or holds an untaken result: take results, then retry.
    Full,
    /// The call acts on the calling thread and must run there (see [`crate::calls`]).
    ThreadBound {
        /// The syscall number.
        nr: i64,
        /// Why it is thread-bound.
        reason: &'static str,
    },
    /// The number cannot be a system call (negative, or beyond the entry's 16-bit field).
    NoSuchCall(i64),
    /// The registration was shut down.
    ShutDown,
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => write!(f, "every syscall entry of this core is in use"),
            Self::ThreadBound { nr, reason } => write!(
                f,
                "syscall {nr} ({}) is thread-bound ({reason}): run it synchronously",
                calls::name(*nr)
            ),
            Self::NoSuchCall(nr) => write!(f, "{nr} is not a system call number"),
            Self::ShutDown => write!(f, "the FlexSC registration was shut down"),
        }
    }
}

impl std::error::Error for PostError {}

/// A posted entry's claim ticket; redeem it with [`Poster::try_take`] or [`Poster::take`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Ticket(u32);

impl Ticket {
    /// The entry's slot number within its core (page * 64 + index).
    pub fn slot(&self) -> u32 {
        self.0
    }
}

/// Counters kept by a poster (no atomics: one thread owns them).
#[derive(Clone, Copy, Debug, Default)]
pub struct PosterStats {
    /// Entries posted.
    pub posted: u64,
    /// Non-empty submits (batches handed to the backend).
    pub batches: u64,
    /// Calls to `wait` that had to block or spin.
    pub waits: u64,
    /// Thread-bound calls run locally by [`Poster::call`].
    pub local: u64,
}

/// The poster of one core (flexsc_register gave it its syscall pages).
pub struct Poster {
    shared: Arc<Shared>,
    core: usize,
    local: Box<dyn CoreBackend>,
    free: Vec<u32>,
    pending: Vec<u32>,
    inflight: Vec<u64>,
    n_inflight: usize,
    /// Entries a previous poster of this core left in flight: harvested silently.
    orphans: Vec<u64>,
    /// Harvest's per-word done masks, kept to avoid an allocation per harvest.
    scratch: Vec<u64>,
    stats: PosterStats,
}

impl fmt::Debug for Poster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poster")
            .field("core", &self.core)
            .field("in_flight", &self.n_inflight)
            .field("free", &self.free.len())
            .finish()
    }
}

impl Poster {
    pub(crate) fn new(shared: Arc<Shared>, core: usize) -> io::Result<Self> {
        if core >= shared.area.cores() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "core {core} out of range (registered {})",
                    shared.area.cores()
                ),
            ));
        }
        if !shared.area.attach(core) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("core {core} already has a poster"),
            ));
        }
        let local = match shared.backend.attach(core) {
            Ok(l) => l,
            Err(e) => {
                shared.area.detach(core);
                return Err(e);
            }
        };
        let n = shared.area.pages_per_core() * ENTRIES_PER_PAGE;
        let mut p = Self {
            core,
            local,
            free: Vec::with_capacity(n),
            pending: Vec::with_capacity(n),
            inflight: vec![0; n.div_ceil(64)],
            n_inflight: 0,
            orphans: vec![0; n.div_ceil(64)],
            scratch: Vec::with_capacity(n.div_ceil(64)),
            stats: PosterStats::default(),
            shared,
        };
        // A previous poster may have left entries in flight: they stay owned until done.
        for slot in (0..n as u32).rev() {
            let entry = p.shared.area.entry(core, slot);
            if entry.status() == status::FREE || entry.take().is_some() {
                p.free.push(slot);
            } else {
                p.inflight[slot as usize / 64] |= 1 << (slot % 64);
                p.orphans[slot as usize / 64] |= 1 << (slot % 64);
                p.n_inflight += 1;
            }
        }
        Ok(p)
    }

    /// The core whose pages this poster owns.
    pub fn core(&self) -> usize {
        self.core
    }

    /// Entries this core has in all.
    pub fn capacity(&self) -> usize {
        self.inflight.len() * 64
    }

    /// Entries posted and not yet taken.
    pub fn in_flight(&self) -> usize {
        self.n_inflight
    }

    /// Posted entries not yet handed to the backend.
    pub fn unsubmitted(&self) -> usize {
        self.pending.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> PosterStats {
        self.stats
    }

    /// Posts `call` into a free entry (plain stores, no trap, no atomic read-modify-write).
    /// It is not executed before [`Self::submit`] (or a wait) hands it over, unless a spinning
    /// executor finds it first.
    pub fn post(&mut self, call: &Syscall) -> Result<Ticket, PostError> {
        if self.shared.is_shut_down() {
            return Err(PostError::ShutDown);
        }
        let Ok(nr) = u16::try_from(call.nr) else {
            return Err(PostError::NoSuchCall(call.nr));
        };
        if let Some(reason) = calls::thread_bound_reason(call.nr, &call.args) {
            return Err(PostError::ThreadBound {
                nr: call.nr,
                reason,
            });
        }
        let slot = self.free.pop().ok_or(PostError::Full)?;
        self.shared
            .area
            .entry(self.core, slot)
            .post(nr, call.nargs, call.args);
        self.pending.push(slot);
        self.inflight[slot as usize / 64] |= 1 << (slot % 64);
        self.n_inflight += 1;
        self.stats.posted += 1;
        Ok(Ticket(slot))
    }

    /// Hands every posted entry to the backend: the end of a batch.
    pub fn submit(&mut self) {
        if !self.pending.is_empty() {
            self.local.submit(&self.pending);
            self.pending.clear();
            self.stats.batches += 1;
        }
    }

    /// The result of `ticket` if its call is done (the entry is then free again).
    pub fn try_take(&mut self, ticket: Ticket) -> Result<i64, Ticket> {
        let entry = self.shared.area.entry(self.core, ticket.0);
        if entry.status() != status::DONE {
            self.local.poll();
        }
        match entry.take() {
            Some(ret) => {
                self.release(ticket.0);
                Ok(ret)
            }
            None => Err(ticket),
        }
    }

    /// The result of `ticket`, submitting and waiting as needed.
    pub fn take(&mut self, mut ticket: Ticket) -> i64 {
        self.submit();
        loop {
            match self.try_take(ticket) {
                Ok(r) => return r,
                Err(t) => ticket = t,
            }
            let slot = ticket.0;
            let (area, core, shared) = (&self.shared.area, self.core, &self.shared);
            if shared.executors_gone() {
                // Posted after the shutdown sweep: nobody will run it.
                if let Some(claim) = area.entry(core, slot).claim() {
                    claim.complete(-(libc::ECANCELED as i64));
                }
            }
            self.stats.waits += 1;
            self.local.wait(
                &mut || area.entry(core, slot).status() == status::DONE,
                &mut || shared.executors_gone(),
            );
        }
    }

    /// flexsc_wait: submits, then blocks until at least one in-flight entry is done.
    /// Returns at once if nothing is in flight.
    pub fn wait(&mut self) {
        self.submit();
        if self.n_inflight == 0 || self.any_done() {
            return;
        }
        self.stats.waits += 1;
        let (area, core, inflight, shared) =
            (&self.shared.area, self.core, &self.inflight, &self.shared);
        self.local
            .wait(&mut || any_done(area, core, inflight), &mut || {
                shared.executors_gone()
            });
        if self.shared.executors_gone() {
            self.cancel_unclaimed();
        }
    }

    /// Once the executors are gone nobody claims entries any more, but one posted while the
    /// registration was shutting down (after `post` checked, before its store) can still be
    /// SUBMITTED, missed by the shutdown's sweep: answer this core's with `-ECANCELED`, so a
    /// `wait` + `harvest` loop ends, as [`Self::take`] does for one ticket.
    fn cancel_unclaimed(&mut self) {
        for w in 0..self.inflight.len() {
            let mut bits = self.inflight[w];
            while bits != 0 {
                let slot = w as u32 * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                if let Some(claim) = self.shared.area.entry(self.core, slot).claim() {
                    claim.complete(-(libc::ECANCELED as i64));
                }
            }
        }
    }

    /// Takes every done entry, calling `f` with its ticket and result; returns how many.
    pub fn harvest(&mut self, mut f: impl FnMut(Ticket, i64)) -> usize {
        self.local.poll();
        // Executors wrote these lines, so each read is a cache miss; most of the cost of taking
        // results is overlapping those misses. Pass one reads every in-flight status (independent
        // loads); pass two asks for the done lines in exclusive state, all at once, then takes them.
        // Lines still in flight are only read, never pulled away from a working executor.
        let mut done = std::mem::take(&mut self.scratch);
        done.clear();
        for (w, &bits) in self.inflight.iter().enumerate() {
            let mut bits = bits;
            let mut d = 0u64;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                if self
                    .shared
                    .area
                    .entry(self.core, w as u32 * 64 + b)
                    .status()
                    == status::DONE
                {
                    d |= 1 << b;
                }
            }
            done.push(d);
        }
        for (w, &d) in done.iter().enumerate() {
            let mut d = d;
            while d != 0 {
                let slot = w as u32 * 64 + d.trailing_zeros();
                d &= d - 1;
                crate::page::prefetch_for_write(self.shared.area.entry(self.core, slot));
            }
        }
        let mut n = 0;
        for (w, &d) in done.iter().enumerate() {
            let mut d = d;
            while d != 0 {
                let b = d.trailing_zeros();
                d &= d - 1;
                let slot = w as u32 * 64 + b;
                if let Some(ret) = self.shared.area.entry(self.core, slot).take() {
                    let orphan = self.orphans[w] & (1 << b) != 0;
                    self.orphans[w] &= !(1 << b);
                    self.release(slot);
                    if !orphan {
                        f(Ticket(slot), ret);
                        n += 1;
                    }
                }
            }
        }
        self.scratch = done;
        n
    }

    /// Runs one call and returns its raw result (negative errno on failure), like `syscall(2)`.
    ///
    /// Thread-bound calls run synchronously on this thread; numbers that cannot be system calls
    /// return `-ENOSYS`; when every entry is taken the call runs synchronously too (the hybrid
    /// rule: never stall a caller on a full page). Otherwise: post, submit, wait, take.
    pub fn call(&mut self, call: &Syscall) -> i64 {
        match self.post(call) {
            Ok(t) => self.take(t),
            Err(PostError::ThreadBound { .. } | PostError::Full | PostError::ShutDown) => {
                self.stats.local += 1;
                run_local(call)
            }
            Err(PostError::NoSuchCall(_)) => -(libc::ENOSYS as i64),
        }
    }

    fn any_done(&self) -> bool {
        any_done(&self.shared.area, self.core, &self.inflight)
    }

    fn release(&mut self, slot: u32) {
        self.inflight[slot as usize / 64] &= !(1 << (slot % 64));
        self.n_inflight -= 1;
        self.free.push(slot);
    }
}

fn any_done(area: &crate::area::SyscallArea, core: usize, inflight: &[u64]) -> bool {
    inflight.iter().enumerate().any(|(w, &bits)| {
        let mut bits = bits;
        while bits != 0 {
            let b = bits.trailing_zeros();
            bits &= bits - 1;
            if area.entry(core, w as u32 * 64 + b).status() == status::DONE {
                return true;
            }
        }
        false
    })
}

/// Runs a call synchronously on the calling thread, with the raw instruction.
pub(crate) fn run_local(call: &Syscall) -> i64 {
    if call.nr == NR_NOP as i64 {
        return 0;
    }
    if call.nr < 0 || call.nr >= NR_FLEXSC_BASE as i64 {
        return -(libc::ENOSYS as i64);
    }
    // SAFETY: the caller asked for exactly this call on its own thread, as `syscall(2)` would.
    unsafe { raw::syscall6(call.nr as u64, &call.args) }
}

impl Drop for Poster {
    fn drop(&mut self) {
        // Entries held by syscall threads still run; a later poster of this core inherits them
        // as orphans. (io_uring requests die with the ring: the uring backend cancels them.)
        self.submit();
        self.harvest(|_, _| {});
        self.shared.area.detach(self.core);
    }
}
