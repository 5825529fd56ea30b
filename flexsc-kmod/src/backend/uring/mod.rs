//! The `uring` backend: io_uring as the kernel's own exception-less path, one ring per posting
//! core, with syscall threads for the calls io_uring has no opcode for.
//!
//! - The shared half ([`UringBackend`]) probes io_uring once and runs a `threads` backend as the
//!   fallback. Its syscall threads never spin (`executor_spins = 0`): they sleep until a submit
//!   kicks them, so they do not race the rings for entries.
//! - Core specialization: `PerCore` is inline submission on the poster's thread, with per-core
//!   fallback threads on the poster's CPUs; `Static(list)` gives each ring a SQPOLL kernel thread
//!   on a listed CPU (core c on `list[c % len]`, or on `sqpoll_cpu` if set) and pins the fallback
//!   threads to the list; `Dynamic` is refused by `Config::validate` (nothing here to move).
//! - The carrier half (`UringCore`, one per poster) owns its core's ring, set up on attach and
//!   bound to the first thread that uses it (`SINGLE_ISSUER | DEFER_TASKRUN` where available).
//!   `submit` claims each posted entry that has an opcode, queues its request with the entry's
//!   slot as `user_data`, and enters the kernel once for the whole batch; the other entries stay
//!   SUBMITTED for the syscall threads. Completions are reaped on the poster's own thread (in
//!   `submit`, `poll` and `wait`), so nothing is rung.
//! - flexsc_wait sleeps on the ring and on the core's completion doorbell at once, through an
//!   `IORING_OP_FUTEX_WAIT` on the doorbell's word (6.7+); older kernels wake every millisecond.
//!
//! Results equal the synchronous call's: `opcode` sends to the threads what io_uring would run
//! differently, and `fixup` maps back the differences that can only be seen at run time.
//!
//! Readiness waits (`poll`): epoll_wait and poll of one fd run as IORING_OP_EPOLL_WAIT and
//! IORING_OP_POLL_ADD where the kernel has them, a positive timeout as a linked
//! IORING_OP_LINK_TIMEOUT (tagged [`tag::LINK_TIMEOUT`], its completion ignored).
//!
//! Multi-calls (compound entries of calls only, each with an exact request) run as one chain
//! of linked requests (`chain`); other compounds go to the syscall threads.
//!
//! Interrupts ([`crate::interrupt`]): an entry on the ring is marked interrupted and its request
//! cancelled (`IORING_OP_ASYNC_CANCEL`); its completion is final (no continuation), and the
//! cancel's `-ECANCELED` becomes `-EINTR` (`Fix::interrupted`), while `fixup`'s own cancels keep
//! their meaning. An entry on the syscall threads is interrupted as the `threads` backend does.

mod chain;
mod fixup;
mod opcode;
mod poll;
mod ring;
mod specialize;
#[cfg(test)]
mod tests;
mod wait;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use io_uring::IoUring;
use io_uring::opcode::{AsyncCancel, LinkTimeout};
use io_uring::squeue::{Entry, Flags};
use io_uring::types::Timespec;

use crate::area::SyscallArea;
use crate::backend::threads::specialization::PosterSeat;
use crate::backend::threads::{self, Scheduler, ThreadsBackend};
use crate::backend::{Backend, CoreBackend, SplitStats};
use crate::calls;
use crate::compound::abi::NR_COMPOUND;
use crate::config::Config;
use crate::entry::{NR_FLEXSC_BASE, SyscallEntry, offsets};
use crate::page::ENTRIES_PER_PAGE;
use crate::raw;
use crate::sync::{Arc, Ordering};

use chain::{Chain, Progress};
use fixup::{Fix, Outcome};
use opcode::Route;
use ring::{Caps, Mode, Setup};
use specialize::RingSpecs;

/// `user_data` of our own requests; entries use their slot number, always below 2^32.
mod tag {
    /// The FUTEX_WAIT on the completion doorbell.
    pub(super) const FUTEX: u64 = 1 << 32;
    /// The timer bounding a wait.
    pub(super) const TIMER: u64 = FUTEX + 1;
    /// A cancel of one request.
    pub(super) const CANCEL: u64 = FUTEX + 2;
    /// A cancel of every request (`IORING_ASYNC_CANCEL_ANY`, 5.19+).
    pub(super) const CANCEL_ANY: u64 = FUTEX + 3;
    /// This bit and an entry's slot: the timeout linked to the entry's request (see `poll`).
    pub(super) const LINK_TIMEOUT: u64 = 1 << 62;
}

/// io_uring per posting core, syscall threads for the rest.
#[derive(Debug)]
pub struct UringBackend {
    area: Arc<SyscallArea>,
    fallback: ThreadsBackend,
    caps: Caps,
    setup: Setup,
}

impl UringBackend {
    /// Checks that io_uring is usable here (if it is not, an `Unsupported` error says so and
    /// suggests the `threads` backend), probes what the kernel supports, and starts the fallback
    /// syscall threads.
    pub fn start(area: Arc<SyscallArea>, config: &Config) -> io::Result<Self> {
        let caps = Caps::probe()?;
        let setup = Setup::new(config)?;
        let fallback = ThreadsBackend::start(
            area.clone(),
            &Config {
                executor_spins: 0,
                ..config.clone()
            },
        )?;
        Ok(Self {
            area,
            fallback,
            caps,
            setup,
        })
    }
}

impl Backend for UringBackend {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn attach(&self, core: usize) -> io::Result<Box<dyn CoreBackend>> {
        let mut ring = UringCore::new(
            self.area.clone(),
            core,
            self.fallback.group(core).clone(),
            self.caps,
            self.setup.for_core(core),
        )?;
        ring.seat = self.fallback.attach_poster(core);
        Ok(Box::new(ring))
    }

    /// Stops the fallback syscall threads. The rings belong to the posters' threads: their
    /// requests are cancelled when the poster next waits (the registration's shutdown wakes it)
    /// or is dropped.
    fn shutdown(&self) {
        self.fallback.shutdown();
    }

    /// Fixed files always (5.19+ sparse tables; a ring that cannot register them runs the calls
    /// plain); fixed buffers where READ_FIXED and WRITE_FIXED are supported.
    fn skips(&self) -> crate::specialize::Skips {
        use io_uring::opcode::{ReadFixed, WriteFixed};
        crate::specialize::Skips {
            fd_lookup: true,
            buffer_mapping: self.caps.has(ReadFixed::CODE) && self.caps.has(WriteFixed::CODE),
        }
    }

    fn split(&self) -> SplitStats {
        let mut s = self.fallback.split();
        if !self.setup.sqpoll_cpus().is_empty() {
            s.syscall_cores = self
                .setup
                .sqpoll_cpus()
                .iter()
                .map(|&c| c as usize)
                .collect();
        }
        s
    }
}

/// The carrier half: one core's ring, driven by its poster's thread.
struct UringCore {
    /// None once io_uring failed for this core: every call then goes to the syscall threads.
    ring: Option<IoUring>,
    /// The deadline of the wait in progress: no sleep in `enter` outlasts it.
    deadline: Option<Instant>,
    mode: Mode,
    /// The thread the ring is bound to ([`thread_token`]), once one has used it.
    owner: Option<u64>,
    setup: Setup,
    caps: Caps,
    area: Arc<SyscallArea>,
    core: usize,
    sched: Arc<Scheduler>,
    /// Per slot: how to complete the entry whose request is on the ring (None: not on it).
    flights: Box<[Option<Fix>]>,
    /// Per slot: the multi-call running as linked requests (see `chain`).
    chains: Box<[Option<Box<Chain>>]>,
    /// Per slot: the request on the ring was interrupted ([`CoreBackend::interrupt`]).
    interrupted: Box<[bool]>,
    /// Per slot: the interval of the timeout linked to the request (the kernel reads it when it
    /// consumes the link, before the request can complete and the slot be reused).
    link_timeouts: Box<[Timespec]>,
    in_flight: usize,
    /// Requests to [settle](Fix::settle) once the kernel has made their first attempt.
    unsettled: Vec<u32>,
    /// Scratch: this batch's entries for the syscall threads.
    to_fallback: Vec<u32>,
    /// Scratch: completions copied out of the ring.
    cqes: Vec<(u64, i32)>,
    /// Entries completed per page of this core since the last `publish_completions`, and the
    /// pages with a non-zero count.
    done_counts: Vec<u32>,
    done_pages: Vec<u32>,
    /// Our FUTEX_WAIT on the doorbell is queued and has not completed.
    futex_armed: bool,
    /// Our timer is queued and has not fired.
    timer_armed: bool,
    /// The timer's interval; the kernel reads it when it consumes the request, so it is boxed.
    timer: Box<Timespec>,
    /// Cancelling everything: completions are final (no continuations, no retries).
    draining: bool,
    /// The poster's seat at its core for the fallback threads (`PerCore`), released with it.
    seat: Option<PosterSeat>,
    /// Specialized fds registered on this ring (fixed files and buffers).
    specs: RingSpecs,
    /// io_uring_enter calls made (for the batching test).
    #[cfg(test)]
    enters: usize,
}

impl fmt::Debug for UringCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UringCore")
            .field("core", &self.core)
            .field("mode", &self.mode)
            .field("ring", &self.ring.as_ref().map(|r| r.as_raw_fd()))
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl UringCore {
    fn new(
        area: Arc<SyscallArea>,
        core: usize,
        sched: Arc<Scheduler>,
        caps: Caps,
        setup: Setup,
    ) -> io::Result<Self> {
        let (ring, mode) = setup.create()?;
        let n = area.pages_per_core() * ENTRIES_PER_PAGE;
        let key = crate::specialize::key(&area);
        Ok(Self {
            ring: Some(ring),
            deadline: None,
            mode,
            owner: None,
            setup,
            caps,
            area,
            core,
            sched,
            flights: (0..n).map(|_| None).collect(),
            chains: (0..n).map(|_| None).collect(),
            interrupted: vec![false; n].into_boxed_slice(),
            link_timeouts: vec![Timespec::new(); n].into_boxed_slice(),
            in_flight: 0,
            unsettled: Vec::new(),
            to_fallback: Vec::with_capacity(n),
            cqes: Vec::with_capacity(n),
            done_counts: vec![0; n / crate::page::ENTRIES_PER_PAGE],
            done_pages: Vec::new(),
            futex_armed: false,
            timer_armed: false,
            timer: Box::new(wait::TICK.into()),
            draining: false,
            seat: None,
            specs: RingSpecs::new(key),
            #[cfg(test)]
            enters: 0,
        })
    }

    /// Makes the ring usable from the calling thread; false if this core runs without one.
    ///
    /// The first thread to use the ring owns it (a `Deferred` ring is enabled here). A poster
    /// moved to another thread cannot enter the old ring (`-EEXIST`, or completion work queued to
    /// the old thread): the ring is abandoned, its requests answered `-ECANCELED` (see
    /// [`Self::abandon`]), and a new ring is made for this thread.
    fn bind(&mut self) -> bool {
        if self.ring.is_none() {
            return false;
        }
        if !self.mode.thread_bound() {
            return true;
        }
        let me = thread_token();
        match self.owner {
            Some(owner) if owner == me => true,
            Some(_) => {
                self.abandon();
                match self.setup.create() {
                    Ok((ring, mode)) => {
                        self.ring = Some(ring);
                        self.specs.reset();
                        self.mode = mode;
                        self.enable(me)
                    }
                    Err(_) => false,
                }
            }
            None => self.enable(me),
        }
    }

    fn enable(&mut self, me: u64) -> bool {
        let Some(ring) = &self.ring else {
            return false;
        };
        if self.mode == Mode::Deferred && ring.submitter().register_enable_rings().is_err() {
            self.ring = None;
            self.specs.reset();
            return false;
        }
        self.owner = Some(me);
        true
    }

    /// Whether the calling thread may enter the ring.
    fn on_owner(&self) -> bool {
        !self.mode.thread_bound() || self.owner == Some(thread_token())
    }

    /// Brings the ring's fixed files and buffers up to date with the specialization registry
    /// (one atomic load when nothing changed). Only on the ring's owner.
    #[inline]
    fn sync_specs(&mut self) {
        if self.specs.stale()
            && let Some(ring) = &self.ring
            && self.on_owner()
        {
            self.specs.sync(ring);
        }
    }

    /// Puts entry `slot`'s request on the ring (the entry is claimed and detached).
    fn start(&mut self, slot: u32, sqe: Entry, fix: Fix) {
        if fix.wants_settle() {
            self.unsettled.push(slot);
        }
        let timeout = fix.link_timeout();
        self.flights[slot as usize] = Some(fix);
        self.in_flight += 1;
        self.issue(slot, sqe, timeout);
    }

    /// Queues entry `slot`'s request, linked to a timeout of `timeout` if there is one (the
    /// timeout cancels the request; its own completion is ignored).
    fn issue(&mut self, slot: u32, sqe: Entry, timeout: Option<Duration>) {
        let sqe = sqe.user_data(slot.into());
        let Some(t) = timeout else {
            return self.push(sqe);
        };
        self.link_timeouts[slot as usize] = t.into();
        let timer = LinkTimeout::new(&self.link_timeouts[slot as usize])
            .build()
            .user_data(tag::LINK_TIMEOUT | u64::from(slot));
        self.push_link(&[sqe.flags(Flags::IO_LINK), timer]);
    }

    /// Queues one request; a full queue is handed to the kernel first.
    fn push(&mut self, sqe: Entry) {
        loop {
            let Some(ring) = &mut self.ring else {
                return;
            };
            // SAFETY: an entry's request points at the poster's call arguments (buffers, paths,
            // iovecs, msghdrs), which the poster leaves alone until it takes the result, exactly
            // as for a syscall thread; invalid pointers make the kernel answer -EFAULT. Our own
            // requests point at memory that outlives the ring: the doorbell word (in the area,
            // held by our Arc), the boxed timer interval, the boxed iovec copies of `fixup`.
            if unsafe { ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            if self.mode == Mode::SqPoll {
                // The polling thread empties the queue: wait for room (IORING_ENTER_SQ_WAIT).
                let _ = ring.submitter().squeue_wait();
            } else {
                self.enter(0);
            }
        }
    }

    /// Queues a link's requests all at once (one tail update): a link must never be split
    /// between two submissions (a SQPOLL thread could take part of it; an enter to make room
    /// would submit part of it), or its second part would run unordered. The caller checked
    /// that it fits in the queue ([`Self::link_fits`]).
    fn push_link(&mut self, link: &[Entry]) {
        loop {
            let Some(ring) = &mut self.ring else {
                return;
            };
            // SAFETY: as in `push`: the requests point at the poster's call arguments (the
            // compound's buffers), left alone until the entry is completed.
            if unsafe { ring.submission().push_multiple(link) }.is_ok() {
                return;
            }
            if self.mode == Mode::SqPoll {
                let _ = ring.submitter().squeue_wait();
            } else {
                self.enter(0);
            }
        }
    }

    /// Whether a link of `n` requests fits in the submission queue at all.
    fn link_fits(&self, n: usize) -> bool {
        self.ring
            .as_ref()
            .is_some_and(|r| n <= r.params().sq_entries() as usize)
    }

    /// One io_uring_enter: submits what is queued, runs deferred completion work, and with
    /// `want` > 0 sleeps until that many completions are posted (or a signal). An unexpected
    /// failure abandons the ring.
    fn enter(&mut self, want: usize) {
        // A sleep never outlasts the current wait's deadline (EXT_ARG timeout, 5.11+).
        let left = match self.deadline {
            Some(d) if want > 0 => Some(d.saturating_duration_since(Instant::now())),
            _ => None,
        };
        if left == Some(Duration::ZERO) {
            return self.enter(0);
        }
        let Some(ring) = &mut self.ring else {
            return;
        };
        if let Some(left) = left {
            let ts = Timespec::from(left);
            let args = io_uring::types::SubmitArgs::new().timespec(&ts);
            let res = ring.submitter().submit_with_args(want, &args);
            self.entered(res);
            return;
        }
        #[cfg(test)]
        {
            self.enters += 1;
        }
        let res = if self.mode == Mode::SqPoll {
            // Enters only to wake the polling thread or to wait.
            ring.submit_and_wait(want)
        } else {
            // GETEVENTS even with nothing to wait for: a Deferred ring posts completions only then.
            // Exactly the queued count: when fewer are submitted the kernel skips the wait.
            let flags = io_uring::EnterFlags::GETEVENTS.bits();
            let to_submit = ring.submission().len() as u32;
            // SAFETY: no extra argument is passed, and `to_submit` entries are queued.
            unsafe {
                ring.submitter()
                    .enter::<libc::sigset_t>(to_submit, want as u32, flags, None)
            }
        };
        self.entered(res);
    }

    /// After an io_uring_enter: interrupted, short of memory, or the completion queue
    /// overflowed, the callers loop (and reap); any other failure means the ring is unusable.
    fn entered(&mut self, res: std::io::Result<usize>) {
        if let Err(e) = res
            && !matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::ETIME)
            )
        {
            self.abandon();
        }
    }

    /// One io_uring_enter that submits what is queued and runs completion work until `want`
    /// completions are posted or no more can be without sleeping (a zero timeout).
    fn enter_nowait(&mut self, want: usize) {
        #[cfg(test)]
        {
            self.enters += 1;
        }
        let Some(ring) = &mut self.ring else {
            return;
        };
        let ts = Timespec::new();
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        let res = ring.submitter().submit_with_args(want, &args);
        self.entered(res);
    }

    /// Enters if the kernel has something for us to do (queued requests, deferred completion
    /// work, an overflowed completion queue), then reaps and settles.
    fn progress(&mut self) {
        let Some(ring) = &mut self.ring else {
            return;
        };
        let sq = ring.submission();
        let needed = !sq.is_empty() || sq.taskrun() || sq.cq_overflow();
        drop(sq);
        if needed {
            self.enter(0);
        }
        self.reap();
        self.settle();
    }

    /// Takes every posted completion.
    fn reap(&mut self) {
        let Some(ring) = &mut self.ring else {
            return;
        };
        // Out of `self`: handling one may abandon the ring, which reaps again.
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(user_data, res) in &cqes {
            match user_data {
                tag::FUTEX => self.futex_armed = false,
                tag::TIMER => self.timer_armed = false,
                // Before 5.19 a cancel matches one request only: cancel each of ours.
                tag::CANCEL_ANY if res == -libc::EINVAL => self.cancel_each(),
                tag::CANCEL | tag::CANCEL_ANY => {}
                ud if ud & chain::TAG != 0 => self.chain_completion(ud, res),
                ud if ud & tag::LINK_TIMEOUT != 0 => {}
                slot => self.finish(slot as u32, res),
            }
        }
        self.cqes = cqes;
        self.publish_completions();
    }

    /// Bumps each touched page's completion count once (see `PageControl::note_completed`).
    fn publish_completions(&mut self) {
        for page in self.done_pages.drain(..) {
            let n = std::mem::take(&mut self.done_counts[page as usize]);
            self.area
                .control_of(self.core, page * crate::page::ENTRIES_PER_PAGE as u32)
                .note_completed(n);
        }
    }

    /// A completion of entry `slot`'s request: complete the entry, or issue its follow-up.
    fn finish(&mut self, slot: u32, res: i32) {
        let ring_fd = self.ring.as_ref().map_or(-1, |r| r.as_raw_fd());
        let Some(fix) = self.flights.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        // An interrupted call ends with this completion: no continuation, no retry.
        let interrupted = self.interrupted[slot as usize];
        match fix.complete(res, !self.draining && !interrupted, ring_fd) {
            Outcome::Again(sqe) => {
                let timeout = fix.link_timeout();
                self.issue(slot, sqe, timeout);
            }
            Outcome::Done(ret) => {
                let ret = if interrupted {
                    self.interrupted[slot as usize] = false;
                    fix.interrupted(ret)
                } else {
                    ret
                };
                self.flights[slot as usize] = None;
                // `start` claimed and detached this entry when it put the request on the ring,
                // and this is the request's last completion: its flight was set until the line
                // above.
                self.complete_entry(slot, ret);
            }
        }
    }

    /// Puts entry `slot`'s multi-call on the ring as one link (the entry is claimed and
    /// detached).
    fn start_chain(&mut self, slot: u32, mut chain: Box<Chain>) {
        let link = chain.link(slot);
        self.push_link(&link);
        self.chains[slot as usize] = Some(chain);
        self.in_flight += 1;
    }

    /// A completion of a chain's request: resubmit the rest of a broken link, or complete the
    /// entry once the program is over.
    fn chain_completion(&mut self, user_data: u64, res: i32) {
        let (slot, op) = chain::untag(user_data);
        let Some(chain) = self.chains.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        match chain.complete(op, res) {
            Progress::Pending => {}
            Progress::Resubmit if !self.draining => {
                let link = chain.link(slot);
                self.push_link(&link);
            }
            Progress::Resubmit => {
                let ret = chain.abandon();
                self.complete_chain(slot, ret);
            }
            Progress::Done(ret) => self.complete_chain(slot, ret),
        }
    }

    fn complete_chain(&mut self, slot: u32, ret: i64) {
        self.chains[slot as usize] = None;
        // `submit` claimed and detached this entry when it started the chain, and the chain was
        // set until the line above.
        self.complete_entry(slot, ret);
    }

    /// Completes entry `slot`, which this core claimed and detached and whose flight or chain
    /// the caller just ended (so it is completed once, by its claimant), and counts it for its
    /// page (published once per reap: `publish_completions`).
    fn complete_entry(&mut self, slot: u32, ret: i64) {
        self.in_flight -= 1;
        let entry = self.area.entry(self.core, slot);
        // SAFETY: the caller's contract above: the entry is claimed and detached by this core,
        // and nothing else completes it.
        unsafe { entry.complete_detached(ret) };
        let page = slot as usize / crate::page::ENTRIES_PER_PAGE;
        if self.done_counts[page] == 0 {
            self.done_pages.push(page as u32);
        }
        self.done_counts[page] += 1;
    }

    /// Settles the requests still pending after their first attempt, once the kernel has made
    /// it (consumed the queue): those on `O_NONBLOCK` fds are cancelled.
    fn settle(&mut self) {
        if self.unsettled.is_empty() {
            return;
        }
        let Some(ring) = &mut self.ring else {
            self.unsettled.clear();
            return;
        };
        if !ring.submission().is_empty() {
            return;
        }
        // Inline completions are posted before the queue head moves: reap them first.
        self.reap();
        let list = std::mem::take(&mut self.unsettled);
        for &slot in &list {
            let cancel = self
                .flights
                .get_mut(slot as usize)
                .and_then(Option::as_mut)
                .is_some_and(Fix::settle);
            if cancel {
                self.push(AsyncCancel::new(slot.into()).build().user_data(tag::CANCEL));
            }
        }
        self.unsettled = list;
        self.unsettled.clear();
    }

    /// Queues a cancel for each of our requests on the ring.
    fn cancel_each(&mut self) {
        for slot in 0..self.flights.len() {
            if self.flights[slot].is_some() {
                let cancel = AsyncCancel::new(slot as u64).build();
                self.push(cancel.user_data(tag::CANCEL));
            }
            self.cancel_chain(slot as u32);
        }
    }

    /// Queues a cancel for each request of entry `slot`'s chain in flight, if it has one.
    fn cancel_chain(&mut self, slot: u32) {
        let Some(chain) = &self.chains[slot as usize] else {
            return;
        };
        let tags: Vec<u64> = chain.in_flight(slot).collect();
        for t in tags {
            self.push(AsyncCancel::new(t).build().user_data(tag::CANCEL));
        }
    }

    /// Gives up the ring without entering it (another thread owns it, or it failed): takes the
    /// completions already posted, answers every other request of ours `-ECANCELED` (it may
    /// still run, as with any cancel), and closes the ring, which cancels what is left.
    fn abandon(&mut self) {
        self.draining = true;
        self.reap();
        for slot in 0..self.flights.len() {
            if self.flights[slot].is_some() {
                self.finish(slot as u32, -libc::ECANCELED);
            }
            if let Some(mut chain) = self.chains[slot].take() {
                let ret = chain.abandon();
                self.chains[slot] = Some(chain);
                self.complete_chain(slot as u32, ret);
            }
        }
        self.publish_completions();
        self.draining = false;
        self.close_ring();
    }

    /// Closes the ring. A FUTEX_WAIT still queued on it would stay among the doorbell's sleepers
    /// until the kernel tears the ring down, counted as a sleeper that can never act on a wake:
    /// wake it now, so it goes; nobody else sleeps on this core's completion doorbell.
    fn close_ring(&mut self) {
        self.ring = None;
        self.specs.reset();
        self.owner = None;
        self.unsettled.clear();
        self.timer_armed = false;
        if std::mem::take(&mut self.futex_armed) {
            let word = self.area.core(self.core).completions.futex_word();
            raw::futex_wake(word, i32::MAX as u32);
        }
    }
}

impl CoreBackend for UringCore {
    fn submit(&mut self, posted: &[u32]) {
        let usable = self.bind();
        if usable {
            self.sync_specs();
        }
        self.to_fallback.clear();
        let mut queued = false;
        let mut chained = 0;
        for &slot in posted {
            let entry = self.area.entry(self.core, slot);
            let (nr, args) = request_of(entry);
            if nr < NR_FLEXSC_BASE && calls::is_thread_bound(nr.into(), &args) {
                // Never posted by a Poster; a hand-written page may hold one.
                if let Some(claim) = entry.claim() {
                    claim.complete(calls::REFUSED);
                    self.area.control_of(self.core, slot).note_completed(1);
                }
                continue;
            }
            if usable && nr == NR_COMPOUND {
                // SAFETY: the entry's poster vouched for the program (`Compound::entry_call`).
                let chain = unsafe { Chain::plan(args[0], &self.caps, &self.specs) };
                if let Some(chain) = chain.filter(|c| self.link_fits(c.len())) {
                    let Some(claim) = entry.claim() else {
                        continue;
                    };
                    claim.detach();
                    chained += chain.len();
                    self.start_chain(slot, Box::new(chain));
                    queued = true;
                    continue;
                }
            }
            let route = if usable {
                let fixed = self.specs.lookup(nr, &args);
                opcode::route(nr, &args, &self.caps, fixed)
            } else {
                Route::Fallback
            };
            match route {
                Route::Fallback => self.to_fallback.push(slot),
                Route::Ring(sqe, fix) => {
                    // A syscall thread draining this page may claim it first: then it runs it.
                    let Some(claim) = entry.claim() else {
                        continue;
                    };
                    claim.detach();
                    self.start(slot, sqe, fix);
                    queued = true;
                }
            }
        }
        if !self.to_fallback.is_empty() {
            self.sched.submit(self.core, &self.to_fallback);
        }
        if queued {
            // The batch's one system call. With linked requests it also waits, without sleeping,
            // for as many completions as there are requests: a deferred-taskrun ring issues each
            // linked request from the previous one's completion work, which a plain enter runs
            // only one step of.
            if chained > 0 {
                self.enter_nowait(chained);
            } else {
                self.enter(0);
            }
            self.reap();
            self.settle();
        }
    }

    fn poll(&mut self) {
        if self.in_flight > 0 && self.bind() {
            self.sync_specs();
            self.progress();
        }
    }

    fn interrupt(&mut self, slot: u32) {
        if let Some(chain) = self.chains[slot as usize].as_mut() {
            chain.interrupt();
            if self.bind() {
                self.cancel_chain(slot);
                self.enter(0);
                self.reap();
            }
            return;
        }
        if self.flights[slot as usize].is_none() {
            // Not on the ring: a syscall thread claimed it.
            threads::interrupt(&self.sched, self.core, slot);
            return;
        }
        self.interrupted[slot as usize] = true;
        // A ring this thread cannot enter is abandoned here, completing the entry.
        if self.bind() && self.flights[slot as usize].is_some() {
            self.push(AsyncCancel::new(slot.into()).build().user_data(tag::CANCEL));
            self.enter(0);
            self.reap();
        }
    }

    fn wait(
        &mut self,
        ready: &mut dyn FnMut() -> bool,
        give_up: &mut dyn FnMut() -> bool,
        deadline: Option<Instant>,
    ) {
        self.wait_for(ready, give_up, deadline);
    }
}

impl Drop for UringCore {
    /// The poster is gone: every request on the ring is cancelled and its entry completed (with
    /// its result, or `-ECANCELED`) before the ring closes.
    fn drop(&mut self) {
        self.drain();
        self.close_ring();
    }
}

/// The request in an entry this thread posted: its number and arguments.
fn request_of(entry: &SyscallEntry) -> (u16, [u64; 6]) {
    let base = std::ptr::from_ref(entry).cast::<u8>();
    // SAFETY: `offsets` give the entry's ABI layout (asserted at compile time in `entry`): a
    // 2-byte-aligned u16 and an 8-byte-aligned [u64; 6], both inside the 64-byte entry, in
    // `UnsafeCell`s that a shared reference may read through. Only the entry's poster writes
    // them, and only while the entry is FREE; we are that poster, called with entries it has
    // posted, so no write can race with these reads (executors only read them too).
    unsafe {
        (
            base.add(offsets::NR).cast::<u16>().read(),
            base.add(offsets::ARGS).cast::<[u64; 6]>().read(),
        )
    }
}

/// A number naming the calling thread, never reused in this process. (Cheaper than
/// `thread::current().id()`, and usable in thread-local destructors, where a Poster kept in a
/// thread-local is dropped.)
fn thread_token() -> u64 {
    thread_local!(static TOKEN: Cell<u64> = const { Cell::new(0) });
    static NEXT: AtomicU64 = AtomicU64::new(1);
    TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}
