//! Adopting a running OS thread as a green thread: the main thread becomes green thread 0
//! (issue 4), keeping its own stack and its own glibc TCB.
//!
//! The adopting thread builds a task whose context is its own running one ([`Context::adopted`])
//! and whose TLS block is its own TCB ([`TlsBlock::adopt_current`]), queues it, and leaves that
//! context for good ([`Task::adopt_here`]): its kernel thread goes on on a small private stack,
//! where it marks the context saved and parks forever with every signal blocked, touching no TLS
//! (the TCB is now the green thread's, on whichever carrier runs it). A carrier then resumes the
//! context like any suspended green thread: the call returns there, as a green thread.
//!
//! The kernel thread is given up rather than made a carrier: a carrier on it would need a
//! scheduler stack and a TCB of its own on that thread, and every switch there would change
//! kernel threads' meaning of "the main thread"; parked, it is simply out of the way. What that
//! costs: the process leader's kernel thread stays asleep (`/proc/PID/task/PID` shows it so),
//! and anything addressed to it alone (a `tgkill` to its tid) stays pending there.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::context::Context;
use super::task::Task;
use super::{JoinHandle, NEXT_ID, Runtime, Waiter, carrier};
use crate::join::JoinCell;
use crate::tls::TlsBlock;

/// Bytes of the private stack an adopted thread's kernel thread parks on (it runs one small
/// function that makes raw system calls).
const PARK_STACK: usize = 16 << 10;

/// glibc's rseq registration signature on x86_64 (sysdeps/unix/sysv/linux/x86/bits/rseq.h).
const RSEQ_SIG: u64 = 0x5305_3053;
/// `RSEQ_FLAG_UNREGISTER` (linux/rseq.h).
const RSEQ_FLAG_UNREGISTER: u64 = 1;
/// The size glibc 2.36 registers its rseq area with (`sizeof (struct rseq_area)`).
const RSEQ_AREA_LEN: u64 = 32;
/// The rseq `cpu_id` meaning "not registered": glibc's `sched_getcpu` then asks the kernel.
const RSEQ_CPU_ID_REGISTRATION_FAILED: i32 = -2;

/// What the parked kernel thread reads after it left its context (leaked: it parks forever).
struct Parking {
    /// The adopted context's `saved` flag.
    saved: &'static AtomicBool,
    /// The TCB's rseq area: the kernel thread unregisters it, so the kernel no longer updates a
    /// CPU number that is now the green thread's, whichever carrier it runs on.
    rseq_area: usize,
}

/// The adopted thread's old kernel thread, on its private stack: no TLS, no allocation, no
/// lock (the TCB is the green thread's now), only raw system calls.
unsafe extern "C" fn park_forever(_sp_slot: *mut usize, parking: usize) -> ! {
    // SAFETY: a leaked `Parking` (see `adopt_current`).
    let p = unsafe { &*(parking as *const Parking) };
    // SAFETY: the rseq area of the TCB this kernel thread registered at its start; failing
    // (another registration size) leaves it registered, which only keeps sched_getcpu's
    // answer for the green thread at this thread's last CPU.
    let r = unsafe {
        flexsc_kmod::raw::syscall6(
            libc::SYS_rseq as u64,
            &[
                p.rseq_area as u64,
                RSEQ_AREA_LEN,
                RSEQ_FLAG_UNREGISTER,
                RSEQ_SIG,
                0,
                0,
            ],
        )
    };
    if r == 0 {
        // SAFETY: the area's cpu_id field (offset 4), no longer written by the kernel.
        unsafe {
            ((p.rseq_area + 4) as *const std::sync::atomic::AtomicI32)
                .as_ref()
                .expect("non-null")
                .store(RSEQ_CPU_ID_REGISTRATION_FAILED, Ordering::Relaxed)
        };
    }
    p.saved.store(true, Ordering::Release);
    loop {
        // Every signal is blocked: pause never returns; looped in case a debugger interrupts.
        // SAFETY: pause takes no arguments.
        unsafe { flexsc_kmod::raw::syscall(libc::SYS_pause, [0; 3]) };
    }
}

/// Ends the adopted green thread ([`AdoptedEnd::exit`]); held by whoever ends it.
pub struct AdoptedEnd {
    cell: Arc<JoinCell<std::thread::Result<usize>, Waiter>>,
    task: *const Task,
}

// SAFETY: `task` is only compared with the running green thread, never dereferenced through this.
unsafe impl Send for AdoptedEnd {}

impl std::fmt::Debug for AdoptedEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdoptedEnd").finish_non_exhaustive()
    }
}

impl AdoptedEnd {
    /// Ends the adopted green thread, which must be the caller: runs its C++ and Rust
    /// `thread_local` destructors, gives its joiner `value` and switches away for good. Its
    /// stack (the OS thread's own) is left as it is, its TCB (glibc's) too.
    pub fn exit(self, value: usize) -> ! {
        let (me, _, _) = carrier::current().expect("AdoptedEnd::exit outside a green thread");
        assert!(
            std::ptr::eq(me, self.task),
            "AdoptedEnd::exit called by another green thread than the adopted one"
        );
        if let Some(block) = me.tls() {
            // SAFETY: the green thread runs on its own (adopted) TCB.
            unsafe { block.run_tls_dtors() };
        }
        if let Some(w) = self.cell.complete(Ok(value)) {
            w.wake();
        }
        drop(self);
        me.exit()
    }
}

impl Runtime {
    /// Makes the calling OS thread one of this runtime's green threads, keeping its stack and
    /// its glibc TCB (so its `pthread_self`, `errno` and `__thread` variables stay what they
    /// were): the call returns on a carrier, as that green thread. The OS thread's kernel thread
    /// parks for good with every signal blocked. `guard` is the address range where an overflow
    /// of the thread's stack faults (the overflow diagnostic names the green thread there).
    ///
    /// Returns its join handle (its value is what [`AdoptedEnd::exit`] gives) and the end.
    /// Errors: this runtime runs green threads on their carriers' TLS, or the calling thread's
    /// TCB is not glibc's own (already a green thread), or the runtime is shutting down.
    ///
    /// # Safety
    /// The caller is an OS thread running on its own glibc TCB (not a green thread), whose
    /// kernel thread nothing will need again: nobody joins it as an OS thread, nothing is
    /// addressed to its kernel tid. Its stack stays mapped as long as the process lives.
    pub unsafe fn adopt_current(
        &self,
        name: Option<String>,
        guard: Range<usize>,
    ) -> io::Result<(JoinHandle<usize>, AdoptedEnd)> {
        let shared = &self.shared;
        if !shared.tls {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "adopting a thread needs per-green-thread TLS (its TCB becomes the green thread's)",
            ));
        }
        if carrier::current().is_some() {
            return Err(io::Error::other("adopt_current on a green thread"));
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return Err(io::Error::other("the runtime is shutting down"));
        }
        let block = TlsBlock::adopt_current().map_err(|e| io::Error::other(e.to_string()))?;
        let tp = block.thread_pointer();
        let rseq_area = tp + block.layout().offsets().rseq_area;
        // Set by glibc once a second thread exists; the carriers exist, but they may have been
        // created by another thread.
        block.set_multiple_threads();
        let saved: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let parking: &'static Parking = Box::leak(Box::new(Parking { saved, rseq_area }));
        let park_stack: &'static mut [u8] = vec![0u8; PARK_STACK].leak();
        let park_top = (park_stack.as_mut_ptr() as usize + PARK_STACK) & !15;
        let home = shared.next_carrier.fetch_add(1, Ordering::Relaxed) % shared.queues.len();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let task = Arc::new(Task::new(
            id,
            name,
            home,
            guard,
            Some(block),
            Arc::downgrade(&shared.arc()),
        ));
        task.install(Context::adopted(saved));
        let cell = Arc::new(JoinCell::new());
        let end = AdoptedEnd {
            cell: cell.clone(),
            task: Arc::as_ptr(&task),
        };
        // From here on no signal handler may run on this kernel thread: the TCB and the stack
        // become the green thread's as soon as a carrier resumes it.
        block_all_signals();
        shared.spawned_outside.fetch_add(1, Ordering::Relaxed);
        let me = Arc::as_ptr(&task);
        // Queued before it is saved: its resumer waits for `saved` (Context::wait_saved).
        shared.schedule(task);
        // SAFETY: the context is adopted and unsaved; `park_top` tops a leaked stack only
        // `park_forever` uses; the task is alive (a queue or its carrier holds it) until it
        // finishes, which needs this call to return first.
        unsafe { (*me).adopt_here(park_top, park_forever, parking as *const Parking as usize) };
        // Now a green thread, on a carrier, on the same TCB: its current-task record lives there.
        // SAFETY: the carrier resuming us holds the task (and the runtime).
        let me = unsafe { &*me };
        carrier::set_current(me, Arc::as_ptr(&self.shared));
        me.finish_hand_over(&self.shared);
        Ok((
            JoinHandle {
                cell,
                tcb: Some(tp),
                _tcb_hold: None,
            },
            end,
        ))
    }
}

/// Blocks every signal on the calling kernel thread, trapping directly (an interposed
/// `sigprocmask` would record a green mask instead).
fn block_all_signals() {
    let all = !0u64;
    // SAFETY: rt_sigprocmask with our own 8-byte set and no old set.
    unsafe {
        flexsc_kmod::raw::syscall6(
            libc::SYS_rt_sigprocmask as u64,
            &[
                libc::SIG_SETMASK as u64,
                &all as *const u64 as u64,
                0,
                8,
                0,
                0,
            ],
        )
    };
}
