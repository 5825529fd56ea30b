//! A green thread: its coroutine (stack and registers), its park state, and its identity.
//!
//! Its park protocol is in [`crate::park`]: a task is on at most one queue and resumed by one
//! carrier at a time.
//!
//! This is the runtime's context-switch module: the coroutine, the green thread's glibc TLS block
//! and its floating-point control state live in `UnsafeCell`s that the protocol above hands to
//! exactly one carrier at a time. A switch in (see [`Task::resume`]) writes the carrier's tid into
//! the green thread's TCB, loads its MXCSR and x87 control word if they differ from the defaults,
//! points fs at its TLS block (`wrfsbase`), and jumps to its stack; the switch out undoes that in
//! reverse, so the carrier's own code always runs on the carrier's own TCB.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use corosensei::{Coroutine, CoroutineResult, Yielder};
use flexsc_kmod::Syscall;

use crate::fpu::FpuControl;
use crate::park::{Park, Unparked};
use crate::stack::Stack;
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

/// The coroutine type of every green thread: resumed with a syscall result (0 otherwise).
pub(crate) type GreenCoroutine = Coroutine<i64, Suspend, (), Stack>;

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
    co: UnsafeCell<Option<GreenCoroutine>>,
    /// Its own glibc TLS block and TCB (None: it runs on its carrier's).
    tls: UnsafeCell<Option<TlsBlock>>,
    /// Its MXCSR and x87 control word while it is switched out.
    fpu: UnsafeCell<FpuControl>,
    /// Its yielder, valid while the coroutine has started and not finished.
    yielder: AtomicU64,
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

// SAFETY: the coroutine, TLS and FPU cells are only touched by the one carrier the park protocol
// hands the task to (see the module doc), or before the task is published; every other field is
// atomic or immutable.
unsafe impl Sync for Task {}
// SAFETY: as above; a suspended coroutine may be resumed on another carrier (its stack and
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
    /// A task without its coroutine yet ([`Task::install`] adds it, before the task is shared).
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
            co: UnsafeCell::new(None),
            tls: UnsafeCell::new(tls),
            fpu: UnsafeCell::new(FpuControl::DEFAULT),
            yielder: AtomicU64::new(0),
            resume_with: AtomicU64::new(0),
            tcb_hold: None,
        }
    }

    /// Gives the task its coroutine. Call it once, before the task is on any queue: the
    /// coroutine needs the task's address, so it is made after the task.
    pub(crate) fn install(&self, co: GreenCoroutine) {
        // SAFETY: nobody else has seen the task yet (the caller's contract, checked below).
        let cell = unsafe { &mut *self.co.get() };
        assert!(cell.is_none(), "a green thread's coroutine installed twice");
        *cell = Some(co);
    }

    /// Its TLS block's thread pointer, if it has its own.
    pub(crate) fn thread_pointer(&self) -> Option<usize> {
        // SAFETY: the block is only replaced by `take_tls`, after the coroutine finished; the
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

    /// Records the yielder; called by the coroutine itself when it starts.
    pub(crate) fn set_yielder(&self, y: &Yielder<i64, Suspend>) {
        self.yielder.store(y as *const _ as u64, Ordering::Relaxed);
    }

    /// Suspends the calling green thread (which must be this task) with `why`.
    pub(crate) fn suspend(&self, why: Suspend) -> i64 {
        let y = self.yielder.load(Ordering::Relaxed) as *const Yielder<i64, Suspend>;
        // SAFETY: the yielder was recorded by this task's coroutine when it started and lives on
        // its stack until it returns; we are running inside that coroutine (the caller found us
        // as the current task), so it is alive and ours.
        unsafe { (*y).suspend(why) }
    }

    /// Carrier: switches to the green thread until it suspends or returns. Only the carrier that
    /// took the task from a run queue (or created it) may call this, on its own TCB (`cpu`).
    ///
    /// Not inlined: fs changes only inside this function, so no caller can keep a thread-local
    /// address computed on one TCB and use it on the other.
    #[inline(never)]
    pub(crate) fn resume(&self, cpu: CarrierCpu) -> CoroutineResult<Suspend, ()> {
        // Only the carrier holding the task reads or writes it: no read-modify-write needed.
        let input = self.resume_with.load(Ordering::Relaxed) as i64;
        self.resume_with.store(0, Ordering::Relaxed);
        // SAFETY: the park protocol gives this carrier exclusive use of the coroutine, the TLS
        // block and the FPU state until the task suspends again (module doc).
        let (co, tls, fpu) = unsafe {
            (
                (*self.co.get())
                    .as_mut()
                    .expect("resumed a finished green thread"),
                (*self.tls.get()).as_ref(),
                &mut *self.fpu.get(),
            )
        };
        // Rust code on the carrier runs with the default FPU state, so loading and restoring it
        // is skipped unless the green thread changed it (only C code does).
        if *fpu != FpuControl::DEFAULT {
            fpu.restore();
        }
        let r = match tls {
            None => co.resume(input),
            Some(block) => {
                block.set_tid(cpu.tid);
                // SAFETY: the block lives as long as the task, and this carrier is the only
                // thread running on it; nothing between here and the restore below touches a
                // thread-local (the coroutine's code runs on its own block, as it should).
                unsafe { tls::write_fs_base(block.thread_pointer()) };
                let r = co.resume(input);
                // SAFETY: the carrier's own TCB, live for as long as the carrier thread.
                unsafe { tls::write_fs_base(cpu.tp) };
                r
            }
        };
        let now = FpuControl::save();
        if now != FpuControl::DEFAULT {
            FpuControl::DEFAULT.restore();
        }
        *fpu = now;
        r
    }

    /// Carrier: takes the finished coroutine out (to recycle its stack).
    pub(crate) fn take_finished(&self) -> Option<GreenCoroutine> {
        // SAFETY: called by the carrier that just saw the coroutine return: nobody else can
        // resume it any more.
        unsafe { (*self.co.get()).take() }
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
        // Dropping a suspended coroutine unwinds its stack, running its destructors: on its own
        // TLS block (they may use its thread-locals), and without a current green thread (they
        // must not suspend; with a block of its own, the block's CURRENT is cleared; without, the
        // running thread's own is hidden meanwhile).
        let Some(co) = self.co.get_mut().take() else {
            return;
        };
        match self.tls.get_mut().as_ref() {
            None => super::carrier::drop_unwinding(co),
            // SAFETY: nobody runs on the block (the task is being dropped, so no carrier resumes
            // it), and `unwind_on` restores the caller's fs before returning.
            Some(block) => unsafe { unwind_on(block.thread_pointer(), co) },
        }
    }
}

/// Drops a suspended coroutine with fs pointing at its own TLS block, then restores the caller's.
///
/// # Safety
/// `tp` must be the coroutine's live TLS block, not in use by any thread.
#[inline(never)]
unsafe fn unwind_on(tp: usize, co: GreenCoroutine) {
    let saved = tls::read_fs_base();
    // SAFETY: the caller's contract; thread-locals are touched only inside `drop_unwinding`,
    // which is not inlined, so it computes their addresses on this block.
    unsafe { tls::write_fs_base(tp) };
    super::carrier::drop_unwinding(co);
    // SAFETY: the caller's own TCB, read above.
    unsafe { tls::write_fs_base(saved) };
}
