//! A green thread: its context (stack and saved registers), its park state, and its identity.
//!
//! Its park protocol is in [`crate::park`]: a task is on at most one queue and resumed by one
//! carrier at a time.
//!
//! This is the runtime's context-switch module. The context, the green thread's glibc TLS block
//! and its floating-point control state live in `UnsafeCell`s that the protocol above hands to
//! exactly one carrier at a time. Whoever switches *to* a green thread (its carrier in
//! [`Task::resume`], or another green thread of the same carrier handing over directly in
//! [`Task::suspend`]) first installs its environment: the carrier's tid in its TCB, its MXCSR and
//! x87 control word if they differ from the current ones, fs pointing at its TLS block
//! (`wrfsbase`). Whoever switches *away* saves its own floating-point state. The carrier's own
//! code always runs on the carrier's own TCB and default floating-point state.
//!
//! A green thread that yields or waits hands its carrier straight to the next ready green thread
//! of the carrier's private queue (one switch instead of two through the carrier), within a budget
//! that gives the carrier its turn for completions, timers and fairness. What must happen only
//! after it is off its stack (becoming WAITING, where another carrier could resume it) is left in
//! the carrier's switch state (`LocalState::deferred`) for whoever runs next to finish.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use flexsc_kmod::Syscall;

use super::context::Context;
use crate::arch;
use crate::fpu::FpuControl;
use crate::park::{Park, Unparked};
use crate::tls::{self, TlsBlock};

/// Why a green thread gave its carrier back.
#[derive(Debug)]
pub(crate) enum Suspend {
    /// Still runnable: put it at the back of the run queue.
    Yield,
    /// Park until unparked (or, with a deadline, until then), kept alive by the unparkers.
    Park(Option<std::time::Instant>),
    /// As `Park`, in a wait list: the task holds a reference to itself meanwhile (see
    /// [`crate::park`]), so the wait list needs none.
    Wait(Option<std::time::Instant>),
    /// Run this system call exception-less; resume with its result.
    Syscall(Syscall),
}

/// What the green thread that switched back to its carrier reports.
#[derive(Debug)]
pub(crate) enum Outcome {
    Suspended(Suspend),
    /// It posted a system call and parked on the entry (the switch state no longer holds it).
    Posted,
    Finished,
}

/// The payload of the unwind that drops a suspended green thread (see `Drop for Task`): its
/// frames' destructors run, its `catch_unwind`s see this and must let it through.
pub(crate) struct ForcedUnwind;

/// What a switch restores for the carrier: its own thread pointer and kernel tid.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CarrierCpu {
    /// The carrier's own fs base (its glibc TCB).
    pub(crate) tp: usize,
    /// The carrier's kernel tid, written into each green thread's TCB at switch-in.
    pub(crate) tid: libc::pid_t,
}

impl CarrierCpu {
    /// The calling thread's: call it on the carrier, on its own TCB.
    pub(crate) fn current() -> Self {
        Self {
            tp: tls::read_fs_base(),
            // SAFETY: gettid has no preconditions and cannot fail.
            tid: unsafe { libc::gettid() },
        }
    }
}

/// A green thread.
pub(crate) struct Task {
    id: u64,
    name: Option<String>,
    park: crate::park::ParkState,
    /// The carrier it last ran on (a wake-up goes back there, for locality).
    pub(crate) home: AtomicUsize,
    /// Its runtime, where a wake-up from outside it queues the task (if it still exists).
    runtime: Weak<super::Shared>,
    /// Its interrupt mark and where its call is in flight ([`super::interrupt`]).
    pub(crate) interrupt: super::mark::InterruptMark,
    ctx: UnsafeCell<Option<Context>>,
    /// Its way back: the stack of the context that entered it (its carrier's `resume`, or a
    /// dropper unwinding it), recorded by the switch that continued it ([`crate::arch`]).
    back: UnsafeCell<usize>,
    /// Resumed only to unwind its stack (see `Drop for Task`).
    unwinding: UnsafeCell<bool>,
    /// Its own glibc TLS block and TCB (None: it runs on its carrier's).
    tls: UnsafeCell<Option<TlsBlock>>,
    /// Its MXCSR and x87 control word while it is switched out.
    fpu: UnsafeCell<FpuControl>,
    /// The value its next resume passes in (a syscall's result).
    resume_with: AtomicU64,
    /// Its stack's guard page, for the overflow diagnostic.
    guard: std::ops::Range<usize>,
    /// Where its TLS block goes when it finishes, if its TCB must stay unique until its
    /// [`JoinHandle`](super::JoinHandle) is dropped (see `SpawnOptions::hold_tcb`).
    pub(crate) tcb_hold: Option<TcbHold>,
}

/// A finished green thread's TLS block, kept (its TCB address not reused) until the last of the
/// task and its join handle lets go; then reset and given back to its runtime's pool.
pub(crate) type TcbHold = Arc<HeldTcb>;

/// See [`TcbHold`].
pub(crate) struct HeldTcb {
    pub(crate) block: std::sync::Mutex<Option<TlsBlock>>,
    pub(crate) runtime: Weak<super::Shared>,
}

impl Drop for HeldTcb {
    fn drop(&mut self) {
        let block = self
            .block
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let (Some(mut b), Some(rt)) = (block, self.runtime.upgrade())
            && b.reuse().is_ok()
        {
            rt.spill(None, Some(b));
        }
    }
}

// SAFETY: the context, TLS, FPU, back and unwinding cells are only touched by the one carrier the
// park protocol hands the task to (see the module doc), or by a dropper once nobody else can; every
// other field is atomic or immutable.
unsafe impl Sync for Task {}
// SAFETY: as above; a suspended context may be resumed on another carrier (its stack and
// registers move with it, and nothing in it is tied to the OS thread it last ran on).
unsafe impl Send for Task {}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

impl Task {
    /// A task without its context yet ([`Task::install`] adds it, before the task is shared).
    pub(crate) fn new(
        id: u64,
        name: Option<String>,
        home: usize,
        guard: std::ops::Range<usize>,
        tls: Option<TlsBlock>,
        runtime: Weak<super::Shared>,
    ) -> Self {
        Self {
            runtime,
            guard,
            id,
            name,
            park: crate::park::ParkState::new(),
            home: AtomicUsize::new(home),
            interrupt: Default::default(),
            ctx: UnsafeCell::new(None),
            back: UnsafeCell::new(0),
            unwinding: UnsafeCell::new(false),
            tls: UnsafeCell::new(tls),
            fpu: UnsafeCell::new(FpuControl::DEFAULT),
            resume_with: AtomicU64::new(0),
            tcb_hold: None,
        }
    }

    /// Gives the task its context. Call it once, before the task is on any queue: the context's
    /// body needs the task's address, so it is made after the task.
    pub(crate) fn install(&self, ctx: Context) {
        // SAFETY: nobody else has seen the task yet (the caller's contract, checked below).
        let cell = unsafe { &mut *self.ctx.get() };
        assert!(cell.is_none(), "a green thread's context installed twice");
        *cell = Some(ctx);
    }

    /// Its TLS block's thread pointer, if it has its own.
    pub(crate) fn thread_pointer(&self) -> Option<usize> {
        // SAFETY: the block is only replaced by `take_tls`, after the context finished; the
        // callers run on the green thread itself or on the carrier that resumes it.
        unsafe { (*self.tls.get()).as_ref().map(TlsBlock::thread_pointer) }
    }

    /// Its TLS block, for the green thread's own first and last steps (first_entry, dtors).
    pub(crate) fn tls(&self) -> Option<&TlsBlock> {
        // SAFETY: as for `thread_pointer`.
        unsafe { (*self.tls.get()).as_ref() }
    }

    /// The green thread's id (unique in the process).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Its stack's guard page.
    pub(crate) fn guard(&self) -> std::ops::Range<usize> {
        self.guard.clone()
    }

    /// Its name, if it was given one.
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// An owning handle from a borrow (every task lives in an `Arc`, made in `Shared::spawn`).
    pub(crate) fn arc(&self) -> Arc<Task> {
        let p = self as *const Task;
        // SAFETY: every Task is created inside an Arc and borrowed only through one (the carrier
        // holds it while the task runs); the strong count is bumped before the second Arc exists.
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    /// Green side: suspends the calling green thread (which must be this task, running on
    /// carrier `c` of `shared`, as `carrier::current` says) with `why`; returns the value it is
    /// resumed with (a system call's result, else 0).
    ///
    /// A yield or an untimed wait hands the carrier straight to the next green thread of its
    /// private ready queue, within the carrier's budget; everything else goes back to the carrier.
    pub(crate) fn suspend(&self, shared: &super::Shared, c: usize, why: Suspend) -> i64 {
        let local = &shared.locals[c];
        let direct =
            matches!(why, Suspend::Yield | Suspend::Wait(None)) && self.thread_pointer().is_some();
        // SAFETY: on carrier c's kernel thread (we run on it), between switches.
        let next = direct
            .then(|| unsafe { local.with(|l| l.hand_over(&why)) })
            .flatten();
        match next {
            Some((to, cpu)) => {
                // SAFETY: `to` is the Arc now in the switch state's `running`, alive until it
                // switches away itself, which it cannot do before we switch to it.
                unsafe { (*to).home.store(c, Ordering::Relaxed) };
                self.switch_to(to, cpu);
            }
            None => {
                // SAFETY: as above.
                unsafe { local.with(|l| l.outcome = Some(Outcome::Suspended(why))) };
                self.switch_back();
            }
        }
        self.resumed(shared)
    }

    /// Green side: runs `call` exception-less for the calling green thread (which must be this
    /// task, running on carrier `c` of `shared`): posts it, parks on the entry and hands the
    /// carrier to the next ready green thread (or back to the carrier); returns the result.
    pub(crate) fn syscall(&self, shared: &super::Shared, c: usize, call: Syscall) -> i64 {
        let local = &shared.locals[c];
        let direct = self.thread_pointer().is_some();
        // SAFETY: on carrier c's kernel thread (we run on it), between switches.
        let posted =
            unsafe { local.with(|l| l.post_running(c, &call, direct, shared.batch_limit)) };
        match posted {
            Ok(Some((to, cpu))) => {
                // SAFETY: as in `suspend`.
                unsafe { (*to).home.store(c, Ordering::Relaxed) };
                self.switch_to(to, cpu);
            }
            Ok(None) => self.switch_back(),
            Err(()) => {
                let why = Outcome::Suspended(Suspend::Syscall(call));
                // SAFETY: as above.
                unsafe { local.with(|l| l.outcome = Some(why)) };
                self.switch_back();
            }
        }
        self.resumed(shared)
    }

    /// Green side, right after a switch into this task: unwinds if it is being dropped, finishes
    /// what the green thread that switched here left undone, and takes the resume value.
    fn resumed(&self, shared: &super::Shared) -> i64 {
        // SAFETY: only this green thread and its dropper touch the flag, never at once.
        if unsafe { *self.unwinding.get() } {
            std::panic::resume_unwind(Box::new(ForcedUnwind));
        }
        self.finish_hand_over(shared);
        let v = self.resume_with.load(Ordering::Relaxed) as i64;
        self.resume_with.store(0, Ordering::Relaxed);
        v
    }

    /// Green side, first thing after any switch into this task (including its start): a green
    /// thread that handed the carrier over to wait becomes WAITING only now that it is off its
    /// stack.
    pub(crate) fn finish_hand_over(&self, shared: &super::Shared) {
        let c = self.home.load(Ordering::Relaxed);
        // SAFETY: on carrier c's kernel thread; neither `wait` nor the push resumes anything.
        unsafe {
            shared.locals[c].with(|l| {
                if let Some(t) = l.deferred.take().and_then(Task::wait) {
                    l.ready.push(t);
                }
            })
        };
    }

    /// Green side: switches to green thread `to` of the same carrier, whose TLS block is its
    /// own, as `to`'s carrier would (see the module doc). Returns when this task is resumed.
    ///
    /// Not inlined: fs changes inside, so no caller can keep a thread-local address computed on
    /// one TCB and use it on the other.
    ///
    /// `to` is a raw pointer: it may be gone by the time this task is resumed.
    #[inline(never)]
    fn switch_to(&self, to: *const Task, cpu: CarrierCpu) {
        // SAFETY: this carrier holds both tasks (the running one, and the one it took from its
        // ready queue), so it alone touches their cells; `to`'s context is suspended (or new)
        // and its block lives as long as it. `to` is not touched after the switch. Between
        // `write_fs_base` and the switch no thread-local is touched.
        unsafe {
            let to = &*to;
            let now = FpuControl::save();
            *self.fpu.get() = now;
            let theirs = *to.fpu.get();
            if theirs != now {
                theirs.restore();
            }
            let block = (*to.tls.get())
                .as_ref()
                .expect("a direct switch goes to a green thread with its own TLS block");
            block.set_tid(cpu.tid);
            let to_sp = to.start();
            let my_sp = &mut (*self.ctx.get())
                .as_mut()
                .expect("running, so not finished")
                .sp;
            tls::write_fs_base(block.thread_pointer());
            // `to` gets our way back (the carrier waits there for whichever leaves last).
            arch::hand_over(my_sp, *self.back.get(), to_sp, to.back.get());
        }
    }

    /// Green side: switches back to the context that resumed this task (its carrier), with the
    /// carrier's default floating-point state.
    #[inline(never)]
    fn switch_back(&self) {
        // SAFETY: the running green thread's own cells; `back` was recorded when it was
        // continued, and its carrier waits there, suspended.
        unsafe {
            let now = FpuControl::save();
            *self.fpu.get() = now;
            if now != FpuControl::DEFAULT {
                FpuControl::DEFAULT.restore();
            }
            let my_sp = &mut (*self.ctx.get())
                .as_mut()
                .expect("running, so not finished")
                .sp;
            arch::leave(my_sp, *self.back.get());
        }
    }

    /// Green side: the end of the green thread. Reports it finished to its carrier (unless it
    /// was only being unwound) and switches back for good.
    pub(crate) fn exit(&self) -> ! {
        // SAFETY: as in `resumed`.
        if !unsafe { *self.unwinding.get() } {
            let (_, shared, c) = super::carrier::current().expect("exit outside a green thread");
            // SAFETY: on carrier c's kernel thread, between switches.
            unsafe { shared.locals[c].with(|l| l.outcome = Some(Outcome::Finished)) };
        }
        if FpuControl::save() != FpuControl::DEFAULT {
            FpuControl::DEFAULT.restore();
        }
        let mut gone = 0usize;
        // SAFETY: as in `switch_back`; nobody switches to this context again (its carrier, or its
        // dropper, takes the finished context and its stack).
        unsafe { arch::leave(&mut gone, *self.back.get()) };
        unreachable!("a finished green thread was resumed")
    }

    /// The saved stack pointer to switch to (marking a new context started).
    ///
    /// # Safety
    /// The caller holds the task (park protocol) and is about to switch to it.
    unsafe fn start(&self) -> usize {
        // SAFETY: the caller's contract.
        let ctx = unsafe { (*self.ctx.get()).as_mut() }.expect("resumed a finished green thread");
        ctx.wait_saved();
        ctx.mark_started();
        ctx.sp
    }

    /// The adopting OS thread's side of [`super::Runtime::adopt_current`]: records its floating-
    /// point control state as the task's, saves its running context into the task's adopted
    /// context and leaves it for `park(sp slot, arg)` on the stack below `park_top`, which sets
    /// the context's `saved` flag and parks that kernel thread for good. Returns on whichever
    /// carrier continues the task.
    ///
    /// Not inlined: the fs base is the same TCB before and after, but the kernel thread is not.
    ///
    /// # Safety
    /// The task's context is adopted ([`Context::adopted`]) and not yet saved; the task may
    /// already be queued (its resumer waits for `saved`). `park_top` is as [`arch::adopt`] says.
    #[inline(never)]
    pub(crate) unsafe fn adopt_here(
        &self,
        park_top: usize,
        park: unsafe extern "C" fn(*mut usize, usize) -> !,
        arg: usize,
    ) {
        // SAFETY: until `saved` is set nobody else touches the context or the FPU state (the
        // resumer waits for it in `start`); the switch writes the stack pointer before `park`
        // sets it.
        unsafe {
            *self.fpu.get() = FpuControl::save();
            let sp = &mut (*self.ctx.get())
                .as_mut()
                .expect("an adopted context is installed before it is saved")
                .sp;
            arch::adopt(sp, park_top, park, arg);
        }
    }

    /// Carrier: switches to the green thread until it (or a green thread it handed the carrier
    /// over to) switches back. Only the carrier that took the task from a run queue (or created
    /// it) may call this, on its own TCB (`cpu`). What came back is in the carrier's switch
    /// state (`LocalState::{running, outcome}`).
    ///
    /// Not inlined: fs changes only inside this function, so no caller can keep a thread-local
    /// address computed on one TCB and use it on the other.
    ///
    /// `this` is a raw pointer: the task may be gone by the time the carrier gets control back
    /// (handed over, it may have finished elsewhere).
    ///
    /// # Safety
    /// `this` is alive (the caller holds a reference in the switch state's `running`).
    #[inline(never)]
    pub(crate) unsafe fn resume(this: *const Task, cpu: CarrierCpu) {
        // SAFETY: the caller's contract, and the park protocol gives this carrier exclusive use
        // of the context, the TLS block and the FPU state until the task suspends again (module
        // doc); `this` is not touched after the switch, which returns only once some green
        // thread leaves to the way back it records.
        unsafe {
            let this = &*this;
            let fpu = *this.fpu.get();
            if fpu != FpuControl::DEFAULT {
                fpu.restore();
            }
            let sp = this.start();
            let back = this.back.get();
            match (*this.tls.get()).as_ref() {
                None => arch::enter(sp, back),
                Some(block) => {
                    block.set_tid(cpu.tid);
                    // Nothing between here and the restore touches a thread-local.
                    tls::write_fs_base(block.thread_pointer());
                    arch::enter(sp, back);
                    tls::write_fs_base(cpu.tp);
                }
            }
        }
    }

    /// Carrier: takes the finished context out (to recycle its stack).
    pub(crate) fn take_finished(&self) -> Option<Context> {
        // SAFETY: called by the carrier that just saw the green thread finish: nobody else can
        // resume it any more.
        unsafe { (*self.ctx.get()).take() }
    }

    /// Carrier: takes the finished green thread's TLS block out (to reuse it).
    pub(crate) fn take_tls(&self) -> Option<TlsBlock> {
        // SAFETY: as for `take_finished`: the green thread has returned and runs no more.
        unsafe { (*self.tls.get()).take() }
    }

    /// Carrier: sets the value the next resume passes in.
    pub(crate) fn set_resume_value(&self, v: i64) {
        self.resume_with.store(v as u64, Ordering::Relaxed);
    }

    /// Green side of park (see [`crate::park`]).
    pub(crate) fn take_notification(&self) -> bool {
        self.park.take_notification()
    }

    /// Carrier side of a [`Suspend::Park`] (see [`crate::park`]): true if it is now parked.
    pub(crate) fn try_park(&self) -> bool {
        self.park.try_park(Park::Held)
    }

    /// Carrier side of a [`Suspend::Wait`]: leaves the task waiting, holding the carrier's
    /// reference to itself, or hands that reference back if an unpark came first (it must run
    /// again).
    pub(crate) fn wait(self: Arc<Self>) -> Option<Arc<Self>> {
        let me = Arc::into_raw(self);
        // SAFETY: `me` is the reference just released, which nobody else can take until the
        // transition to WAITING below succeeds.
        let parked = unsafe { (*me).park.try_park(Park::Waiting) };
        // SAFETY: the park failed, so no unpark took the reference over: it is still ours.
        (!parked).then(|| unsafe { Arc::from_raw(me) })
    }

    /// Wakes the task: the reference to queue it with, if it was suspended (see [`crate::park`]).
    pub(crate) fn wake(&self) -> Option<Arc<Self>> {
        match self.park.unpark() {
            Unparked::Running => None,
            Unparked::Held => Some(self.arc()),
            // SAFETY: a waiting task holds one reference to itself, released into `wait` by its
            // carrier; leaving WAITING hands it to whoever made the transition, here us.
            Unparked::Waiting => Some(unsafe { Arc::from_raw(self) }),
        }
    }

    /// Its runtime, if it still exists.
    pub(crate) fn runtime(&self) -> &Weak<super::Shared> {
        &self.runtime
    }

    /// Takes its runtime reference (for the in-place reuse of a finished task).
    pub(crate) fn take_runtime(&mut self) -> Weak<super::Shared> {
        std::mem::take(&mut self.runtime)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // A suspended green thread is resumed one last time to unwind its stack, running its
        // destructors: on its own TLS block (they may use its thread-locals), and without a
        // current green thread (they must not suspend; with a block of its own, the block's
        // CURRENT is cleared; without, the running thread's own is hidden meanwhile). One that
        // never started or has finished has nothing on its stack to unwind.
        let Some(ctx) = self.ctx.get_mut().as_ref() else {
            return;
        };
        // An adopted context's frames are an OS thread's own (C frames up to its start): they
        // are left as they are, on a stack that is not ours.
        if !ctx.started() || ctx.is_adopted() {
            return;
        }
        *self.unwinding.get_mut() = true;
        match self.tls.get_mut().as_ref().map(TlsBlock::thread_pointer) {
            None => super::carrier::unwind_hidden(self),
            // SAFETY: nobody runs on the block (the task is being dropped, so no carrier resumes
            // it), and `unwind_on` restores the caller's fs before returning.
            Some(tp) => unsafe { unwind_on(tp, self) },
        }
    }
}

impl Task {
    /// Resumes a suspended green thread that is being dropped: it unwinds and switches back.
    pub(crate) fn unwind(&self) {
        // SAFETY: called from drop, so nobody else holds the task; the switch returns when the
        // unwound green thread leaves for good.
        unsafe { arch::enter(self.start(), self.back.get()) };
    }
}

/// Unwinds a suspended green thread with fs pointing at its own TLS block and no current green
/// thread there, then restores the caller's fs.
///
/// # Safety
/// `tp` must be the green thread's live TLS block, not in use by any thread.
#[inline(never)]
unsafe fn unwind_on(tp: usize, task: &Task) {
    let saved = tls::read_fs_base();
    // SAFETY: the caller's contract; thread-locals are touched only inside `unwind_hidden`,
    // which is not inlined, so it computes their addresses on this block.
    unsafe { tls::write_fs_base(tp) };
    super::carrier::unwind_hidden(task);
    // SAFETY: the caller's own TCB, read above.
    unsafe { tls::write_fs_base(saved) };
}
