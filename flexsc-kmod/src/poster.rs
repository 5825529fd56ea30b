//! The posting side of a core: finds free entries, posts calls, submits batches, waits, takes
//! results, and interrupts calls. One poster per core at a time; it is the single producer of that
//! core's pages, so posting is plain stores.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use crate::backend::CoreBackend;
use crate::calls;
use crate::entry::{NR_NOP, status};
use crate::page::ENTRIES_PER_PAGE;
use crate::raw;
use crate::register::Shared;
use crate::specialize::{self, Context, Hints};
use crate::sync::Arc;

/// A system call request: number and six arguments.
///
/// Building one with raw arguments is the unsafe step (see [`Syscall::new`]): once built, it may
/// be posted ([`Poster::post`]) or run ([`Poster::call`]) without further `unsafe`, so its
/// constructor is where the caller vouches for what the kernel will do with the arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    nr: i64,
    args: [u64; 6],
    nargs: u8,
}

impl Syscall {
    /// A call with the given arguments (at most six; the rest are zero).
    ///
    /// # Panics
    ///
    /// If `args` has more than six elements.
    ///
    /// # Safety
    ///
    /// Posting or running this request is like calling `syscall(2)` with these arguments, except
    /// that it may run on another thread, later, and asynchronously with the caller:
    ///
    /// - `nr` and `args` must be valid for the call as they would be for `syscall(2)`: every
    ///   pointer argument points to memory of the size and kind the call expects (or is one the
    ///   kernel refuses without touching memory, such as a null or unmapped address, where the
    ///   call allows that), and the call must not break invariants Rust relies on (for example by
    ///   unmapping, remapping or writing memory that live references or allocations still use).
    /// - Each time the request is posted, any memory its arguments point to must stay valid, and
    ///   unaliased as the call requires (nothing else reads what the kernel writes, nor writes
    ///   what it reads), from the post until the call's result is taken ([`Poster::take`],
    ///   [`Poster::try_take`], [`Poster::harvest`]), or, if it never is (the ticket is dropped, or
    ///   the poster is dropped with the call in flight), until the registration has been shut
    ///   down ([`crate::Registration::shutdown`] returned, or the registration was dropped).
    ///   Through [`Poster::call`] that window ends when `call` returns.
    ///
    /// Calls that act on the calling thread are refused by [`Poster::post`] and run on the
    /// calling thread by [`Poster::call`], exactly as `syscall(2)` would run them there.
    pub unsafe fn new(nr: i64, args: &[u64]) -> Self {
        assert!(args.len() <= 6, "a system call takes at most 6 arguments");
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        Self {
            nr,
            args: a,
            nargs: args.len() as u8,
        }
    }

    /// The null call of the io_uring backend (IORING_OP_NOP); returns 0. It has no arguments, so
    /// building it is safe.
    pub fn nop() -> Self {
        Self {
            nr: NR_NOP as i64,
            args: [0; 6],
            nargs: 0,
        }
    }

    /// The syscall number (x86_64), or one of the `NR_FLEXSC_*` operations.
    pub fn nr(&self) -> i64 {
        self.nr
    }

    /// The six arguments; those beyond [`Self::nargs`] are zero.
    pub fn args(&self) -> &[u64; 6] {
        &self.args
    }

    /// How many arguments are meaningful.
    pub fn nargs(&self) -> u8 {
        self.nargs
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

/// A posted entry's claim ticket; redeem it with [`Poster::try_take`] or [`Poster::take`], or end
/// its call early with [`Poster::interrupt`].
///
/// It names the entry's slot and the slot's generation when the call was posted: the poster bumps
/// a slot's generation whenever it frees the slot (its result taken by `take`, `try_take` or
/// [`Poster::harvest`]), so a ticket whose call's result was already taken is recognised as stale
/// even after the slot was reused. Redeeming a stale ticket is a programming error and panics.
/// The ticket [`Poster::harvest`] reports for a call equals the one `post` returned for it.
/// A ticket is only meaningful to the poster that issued it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    slot: u32,
    generation: u32,
}

impl Ticket {
    /// The entry's slot number within its core (page * 64 + index).
    pub fn slot(&self) -> u32 {
        self.slot
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
    /// Each slot's generation, bumped when the slot is freed: tells live tickets from stale ones.
    generations: Vec<u32>,
    /// Slots whose interrupt request may be set: reset when the slot is freed.
    interrupted: Vec<u64>,
    /// Harvest's per-word done masks, kept to avoid an allocation per harvest.
    scratch: Vec<u64>,
    /// Per page: the completion count `harvest` last saw.
    seen: Vec<u32>,
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
            generations: vec![0; n],
            interrupted: vec![0; n.div_ceil(64)],
            scratch: Vec::with_capacity(n.div_ceil(64)),
            seen: (0..n.div_ceil(64))
                .map(|w| shared.area.control_of(core, w as u32 * 64).completed())
                .collect(),
            stats: PosterStats::default(),
            shared,
        };
        // A previous poster may have left entries in flight: they stay owned until done. It may
        // also have interrupted them: their requests are reset when they are freed.
        for slot in (0..n as u32).rev() {
            let entry = p.shared.area.entry(core, slot);
            if entry.status() == status::FREE || entry.take().is_some() {
                p.shared.area.interrupt(core, slot).reset();
                p.free.push(slot);
            } else {
                p.inflight[slot as usize / 64] |= 1 << (slot % 64);
                p.orphans[slot as usize / 64] |= 1 << (slot % 64);
                p.interrupted[slot as usize / 64] |= 1 << (slot % 64);
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
    ///
    /// The call runs asynchronously: any memory its arguments point to must stay valid and
    /// unaliased as the call requires until its result is taken (with the returned ticket, or by
    /// [`Self::harvest`]), or, if it never is, until the registration is shut down. That is the
    /// promise made when the request was built with the unsafe [`Syscall::new`].
    pub fn post(&mut self, call: &Syscall) -> Result<Ticket, PostError> {
        // A close or dup onto a specialized fd ends its contexts before it can run.
        specialize::note_call(call.nr, &call.args);
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
        Ok(self.ticket(slot))
    }

    /// Specializes `fd` for this registration, as [`crate::Registration::specialize`].
    pub fn specialize(&self, fd: RawFd, hints: Hints) -> io::Result<Context> {
        self.shared.specialize(fd, hints)
    }

    /// Hands every posted entry to the backend: the end of a batch.
    pub fn submit(&mut self) {
        if !self.pending.is_empty() {
            self.local.submit(&self.pending);
            self.pending.clear();
            self.stats.batches += 1;
        }
    }

    /// Asks the call behind `ticket` to end early, as a signal interrupts a blocked system call.
    ///
    /// - Not yet claimed by an executor (posted, or submitted and still waiting): the entry is
    ///   answered `-EINTR` at once and the call never runs.
    /// - Running: the call is interrupted. One blocked in the kernel, or about to block, returns
    ///   what the kernel returns to an interrupted call: `-EINTR`, or, if it had made progress, its
    ///   partial result (bytes transferred so far). With io_uring the request is cancelled and
    ///   its `-ECANCELED` answered `-EINTR`. A call that does not block, or completes anyway,
    ///   keeps its real result (so does one that io_uring's `fixup` answers itself: a request on
    ///   an `O_NONBLOCK` fd still answers `-EAGAIN`).
    /// - Already done: nothing changes, its result stands.
    ///
    /// Never blocks: the result arrives like any other, and is taken exactly once, with the
    /// ticket or by [`Self::harvest`]. Interrupting the same call again, or with a stale ticket
    /// (its result already taken, even if the slot holds a new call now), does nothing.
    ///
    /// A syscall thread running the call is sent a signal. A thread that has claimed the entry
    /// but not yet entered the kernel does not enter it: the request and the thread's claim are
    /// ordered so that either the thread sees the request before its `syscall` instruction or the
    /// signal finds it (see [`crate::interrupt`]); and no signal outlives the call it was sent for.
    ///
    /// # Panics
    ///
    /// If `ticket`'s slot is beyond this poster's entries: it is another poster's. (Another
    /// poster's ticket within range cannot always be told apart: do not pass one.)
    pub fn interrupt(&mut self, ticket: &Ticket) {
        let slot = ticket.slot as usize;
        assert!(
            slot < self.generations.len(),
            "ticket {ticket:?} interrupted on the poster of core {}, which has {} entries: it is \
             another poster's",
            self.core,
            self.generations.len(),
        );
        if !self.is_live(ticket) {
            return;
        }
        let entry = self.shared.area.entry(self.core, ticket.slot);
        if let Some(claim) = entry.claim() {
            claim.complete(-(libc::EINTR as i64));
            self.shared
                .area
                .control_of(self.core, ticket.slot)
                .note_completed(1);
            // Answered: the backend need not hear of it.
            if let Some(i) = self.pending.iter().position(|&s| s == ticket.slot) {
                self.pending.remove(i);
            }
            return;
        }
        if entry.status() == status::DONE {
            return;
        }
        self.interrupted[slot / 64] |= 1 << (slot % 64);
        self.local.interrupt(ticket.slot);
    }

    /// The result of `ticket` if its call is done (the entry is then free again).
    ///
    /// # Panics
    ///
    /// If `ticket` is stale: its call's result was already taken (by `take`, `try_take` or
    /// [`Self::harvest`]), or it was not issued by this poster.
    pub fn try_take(&mut self, ticket: Ticket) -> Result<i64, Ticket> {
        self.check(&ticket);
        let entry = self.shared.area.entry(self.core, ticket.slot);
        if entry.status() != status::DONE {
            self.local.poll();
        }
        match entry.take() {
            Some(ret) => {
                self.release(ticket.slot);
                Ok(ret)
            }
            None => Err(ticket),
        }
    }

    /// The result of `ticket`, submitting and waiting as needed.
    ///
    /// # Panics
    ///
    /// If `ticket` is stale, as [`Self::try_take`].
    pub fn take(&mut self, mut ticket: Ticket) -> i64 {
        self.check(&ticket);
        self.submit();
        loop {
            match self.try_take(ticket) {
                Ok(r) => return r,
                Err(t) => ticket = t,
            }
            let slot = ticket.slot;
            let (area, core, shared) = (&self.shared.area, self.core, &self.shared);
            if shared.executors_gone() {
                // Posted after the shutdown sweep: nobody will run it.
                if let Some(claim) = area.entry(core, slot).claim() {
                    claim.complete(-(libc::ECANCELED as i64));
                    area.control_of(core, slot).note_completed(1);
                }
            }
            self.stats.waits += 1;
            self.local.wait(
                &mut || area.entry(core, slot).status() == status::DONE,
                &mut || shared.executors_gone(),
                None,
            );
        }
    }

    /// flexsc_wait: submits, then blocks until at least one in-flight entry is done.
    /// Returns at once if nothing is in flight.
    pub fn wait(&mut self) {
        if self.n_inflight == 0 {
            self.submit();
            return;
        }
        self.wait_with(|| false, None);
    }

    /// flexsc_wait for a scheduler: submits, then blocks until an in-flight entry is done,
    /// `also()` holds, or `deadline` passes. Whoever makes `also()` true must then ring this
    /// core's completion doorbell ([`crate::Registration::wake`]) so the sleeper re-checks it.
    pub fn wait_with(&mut self, mut also: impl FnMut() -> bool, deadline: Option<Instant>) {
        self.submit();
        if self.any_news() || also() {
            return;
        }
        self.stats.waits += 1;
        let (area, core, inflight, seen, shared) = (
            &self.shared.area,
            self.core,
            &self.inflight,
            &self.seen,
            &self.shared,
        );
        self.local.wait(
            &mut || any_news(area, core, inflight, seen) || also(),
            &mut || shared.executors_gone(),
            deadline,
        );
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
                    self.shared
                        .area
                        .control_of(self.core, slot)
                        .note_completed(1);
                }
            }
        }
    }

    /// Takes every done entry, calling `f` with its ticket and result; returns how many.
    ///
    /// The ticket passed to `f` equals the one [`Self::post`] returned for that call, and the
    /// result is now taken: that ticket (and any copy the caller kept) is stale, and redeeming it
    /// with [`Self::take`] or [`Self::try_take`] panics.
    pub fn harvest(&mut self, mut f: impl FnMut(Ticket, i64)) -> usize {
        self.local.poll();
        // Executors wrote these lines, so each read is a cache miss; most of the cost of taking
        // results is overlapping those misses. Pass one reads every in-flight status (independent
        // loads); pass two asks for the done lines in exclusive state, all at once, then takes them.
        // Lines still in flight are only read, never pulled away from a working executor.
        // Only pages whose completion count moved are read at all (one word per page: a page is
        // 64 entries).
        let mut done = std::mem::take(&mut self.scratch);
        done.clear();
        for (w, &bits) in self.inflight.iter().enumerate() {
            let mut bits = bits;
            let mut d = 0u64;
            if bits != 0 {
                let c = self
                    .shared
                    .area
                    .control_of(self.core, w as u32 * 64)
                    .completed();
                if c == self.seen[w] {
                    bits = 0;
                }
                self.seen[w] = c;
            }
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
                    // Its generation as posted: `release` makes the ticket stale.
                    let ticket = self.ticket(slot);
                    let orphan = self.orphans[w] & (1 << b) != 0;
                    self.orphans[w] &= !(1 << b);
                    self.release(slot);
                    if !orphan {
                        f(ticket, ret);
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
    /// rule: never stall a caller on a full page). Otherwise: post, submit, wait, take. Either
    /// way the call is over when this returns (the promise made to [`Syscall::new`] ends there).
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

    /// Runs compound `c` as one entry (batched with whatever is posted and not yet submitted)
    /// and waits for it: every op's result is then in `c`.
    pub fn compound(
        &mut self,
        c: &mut crate::compound::Compound,
    ) -> Result<crate::compound::Outcome, crate::compound::CompoundError> {
        // SAFETY: `c` is borrowed mutably until `call` has taken the entry's result.
        let call = unsafe { c.entry_call() };
        let ret = self.call(&call);
        c.outcome(ret)
    }

    /// A multi-call (System Call Clustering, Figure 2): runs `calls` in order as one entry,
    /// stopping after the first one flagged `true` (checked) that fails, and returns the
    /// paper's value: the 1-based index of that call, or `calls.len() + 1`. `results` (at least
    /// `calls.len()` long) gets every call's result (`-ECANCELED` for those that did not run).
    pub fn multi_call(
        &mut self,
        calls: &[(Syscall, bool)],
        results: &mut [i64],
    ) -> Result<usize, crate::compound::CompoundError> {
        let mut c =
            crate::compound::multi_call(calls).map_err(|m| crate::compound::CompoundError {
                errno: m.errno,
                steps: 0,
                stop: m.op.unwrap_or(u32::MAX),
            })?;
        let out = self.compound(&mut c)?;
        results[..calls.len()].copy_from_slice(c.results());
        Ok(out.ret as usize)
    }

    fn any_news(&self) -> bool {
        any_news(&self.shared.area, self.core, &self.inflight, &self.seen)
    }

    /// The ticket of the call now in `slot`.
    fn ticket(&self, slot: u32) -> Ticket {
        Ticket {
            slot,
            generation: self.generations[slot as usize],
        }
    }

    /// Whether `ticket` names a call of this poster whose result is still to be taken.
    fn is_live(&self, ticket: &Ticket) -> bool {
        let slot = ticket.slot as usize;
        self.generations.get(slot) == Some(&ticket.generation)
            && self.inflight[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// Panics unless `ticket` [is live](Self::is_live).
    fn check(&self, ticket: &Ticket) {
        let slot = ticket.slot as usize;
        assert!(
            self.is_live(ticket),
            "stale ticket {ticket:?} redeemed on the poster of core {}: its call's result was \
             already taken (by take, try_take or harvest; the slot is now at generation {:?}), or \
             the ticket is another poster's",
            self.core,
            self.generations.get(slot),
        );
    }

    /// Frees `slot` (its result taken); outstanding tickets for it become stale.
    fn release(&mut self, slot: u32) {
        let (w, bit) = (slot as usize / 64, 1 << (slot % 64));
        if self.interrupted[w] & bit != 0 {
            self.interrupted[w] &= !bit;
            self.shared.area.interrupt(self.core, slot).reset();
        }
        self.inflight[w] &= !bit;
        self.n_inflight -= 1;
        // Wraps after 2^32 reuses of one slot: a ticket kept that long is not told apart.
        self.generations[slot as usize] = self.generations[slot as usize].wrapping_add(1);
        self.free.push(slot);
    }
}

/// Whether a page with entries in flight has completions not yet looked at by `harvest`.
fn any_news(area: &crate::area::SyscallArea, core: usize, inflight: &[u64], seen: &[u32]) -> bool {
    inflight
        .iter()
        .zip(seen)
        .enumerate()
        .any(|(w, (&bits, &seen))| {
            bits != 0 && area.control_of(core, w as u32 * 64).completed() != seen
        })
}

/// Runs a call synchronously on the calling thread, with the raw instruction.
pub(crate) fn run_local(call: &Syscall) -> i64 {
    if call.nr < 0 {
        return -(libc::ENOSYS as i64);
    }
    if call.nr == i64::from(crate::compound::abi::NR_COMPOUND) {
        // SAFETY: whoever built this entry call vouched for the program it points at
        // (`Compound::entry_call`, or `Syscall::new` for a hand-made one).
        return unsafe { crate::compound::executor::run_here(call.args[0]) };
    }
    if let Some(r) = calls::flexsc_op_result(call.nr) {
        return r;
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

#[cfg(test)]
mod tests {
    use crate::{Config, Registration, Syscall, register};

    fn registration() -> Registration {
        register(Config {
            cores: 1,
            pages_per_core: 1,
            executor_spins: 0,
            ..Config::default()
        })
        .unwrap()
    }

    /// Posts a no-op and harvests it; returns the ticket `post` gave and the one `harvest` did.
    fn post_and_harvest(p: &mut super::Poster) -> (super::Ticket, super::Ticket) {
        let posted = p.post(&Syscall::nop()).unwrap();
        let mut harvested = None;
        while harvested.is_none() {
            p.wait();
            p.harvest(|t, r| {
                assert_eq!(r, 0);
                harvested = Some(t);
            });
        }
        (posted, harvested.unwrap())
    }

    #[test]
    fn harvest_reports_the_ticket_post_gave() {
        let reg = registration();
        let mut p = reg.poster(0).unwrap();
        let (a, ha) = post_and_harvest(&mut p);
        assert_eq!(ha, a);
        // The free list is LIFO: the next call reuses the slot, under a new generation.
        let (b, hb) = post_and_harvest(&mut p);
        assert_eq!(hb, b);
        assert_eq!(b.slot(), a.slot());
        assert_ne!(b, a);
        // A live ticket of a reused slot is redeemed normally.
        let c = p.post(&Syscall::nop()).unwrap();
        assert_eq!(c.slot(), a.slot());
        assert_eq!(p.take(c), 0);
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    #[should_panic(expected = "stale ticket")]
    fn taking_a_harvested_ticket_panics() {
        let reg = registration();
        let mut p = reg.poster(0).unwrap();
        let (posted, _) = post_and_harvest(&mut p);
        // Another call now holds the slot: the stale ticket must not take its result.
        let other = p.post(&Syscall::nop()).unwrap();
        assert_eq!(other.slot(), posted.slot());
        p.take(posted);
    }

    #[test]
    #[should_panic(expected = "stale ticket")]
    fn try_taking_a_harvested_ticket_panics() {
        let reg = registration();
        let mut p = reg.poster(0).unwrap();
        let (posted, _) = post_and_harvest(&mut p);
        let _ = p.try_take(posted);
    }

    #[test]
    #[should_panic(expected = "stale ticket")]
    fn a_ticket_of_another_poster_beyond_this_ones_slots_panics() {
        let (_big, _q, last) = ticket_in_a_second_page();
        let reg = registration();
        let mut p = reg.poster(0).unwrap();
        let _ = p.try_take(last);
    }

    /// A ticket of slot 64, from a two-page registration's poster (both returned: they outlive
    /// the ticket's use), beyond the slots of [`registration`]'s one page.
    fn ticket_in_a_second_page() -> (Registration, super::Poster, super::Ticket) {
        let big = register(Config {
            cores: 1,
            pages_per_core: 2,
            executor_spins: 0,
            ..Config::default()
        })
        .unwrap();
        let mut q = big.poster(0).unwrap();
        let last = (0..65)
            .map(|_| q.post(&Syscall::nop()).unwrap())
            .last()
            .unwrap();
        assert_eq!(last.slot(), 64);
        (big, q, last)
    }

    #[test]
    fn interrupting_a_harvested_ticket_does_nothing() {
        let reg = registration();
        let mut p = reg.poster(0).unwrap();
        let (posted, _) = post_and_harvest(&mut p);
        p.interrupt(&posted);
        // The slot's next call is not touched.
        let next = p.post(&Syscall::nop()).unwrap();
        assert_eq!(next.slot(), posted.slot());
        p.interrupt(&posted);
        assert_eq!(p.take(next), 0);
    }

    #[test]
    #[should_panic(expected = "another poster's")]
    fn interrupting_a_ticket_beyond_this_posters_slots_panics() {
        let (_big, _q, last) = ticket_in_a_second_page();
        let reg = registration();
        let mut p = reg.poster(0).unwrap();
        p.interrupt(&last);
    }
}
