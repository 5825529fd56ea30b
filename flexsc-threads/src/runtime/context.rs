//! A green thread's execution context: its stack and, while it is suspended, its saved stack
//! pointer ([`crate::arch`]). Started by the first switch to it; it runs its body, which ends by
//! switching away for good ([`super::task::Task::exit`]).
//!
//! An *adopted* context is an OS thread's running one, taken over with its own stack (the main
//! thread as green thread 0, [`super::Runtime::adopt_current`]): it has no stack of ours and no
//! body, and is saved by the OS thread itself as it leaves it for good ([`crate::arch::adopt`]).

use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::arch;
use crate::stack::Stack;

/// Bytes a new context needs below its body: the initial switch frame and room to run.
const MIN_ROOM: usize = 4096;

pub(crate) struct Context {
    /// None: an adopted context, on a stack that is not ours.
    stack: Option<Stack>,
    /// The saved stack pointer while suspended.
    pub(crate) sp: usize,
    /// The body, written at the top of the stack, until the first switch moves it out.
    body: Option<Body>,
    /// An adopted context: set (Release) once its OS thread has saved it into `sp` and left it.
    saved: Option<&'static AtomicBool>,
}

/// A body not started yet: where it is and how to drop it.
struct Body {
    at: usize,
    drop: unsafe fn(usize),
}

impl Context {
    /// A context on `stack` whose first switch-in runs `f` (`f` must end by switching away for
    /// good: it never returns).
    pub(crate) fn new<F: FnOnce() + Send + 'static>(stack: Stack, f: F) -> Self {
        let top = stack.top();
        let align = align_of::<F>().max(16);
        let at = (top - size_of::<F>()) & !(align - 1);
        assert!(
            top - at + MIN_ROOM <= stack.size(),
            "a green thread's closure ({} bytes) does not fit its stack ({} bytes)",
            size_of::<F>(),
            stack.size()
        );
        // SAFETY: `at` is aligned for F and lies in the stack's usable part, which we own and
        // which nothing runs on yet; `init` gets the 16-aligned space below it.
        let sp = unsafe {
            ptr::write(at as *mut F, f);
            arch::init(at & !15, entry::<F>, at)
        };
        Self {
            stack: Some(stack),
            sp,
            body: Some(Body {
                at,
                drop: drop_body::<F>,
            }),
            saved: None,
        }
    }

    /// An adopted context (module doc): its OS thread writes `sp` and then sets `saved`.
    pub(crate) fn adopted(saved: &'static AtomicBool) -> Self {
        Self {
            stack: None,
            sp: 0,
            body: None,
            saved: Some(saved),
        }
    }

    /// Whether this is an adopted context (its stack is not ours: never unwound nor recycled).
    pub(crate) fn is_adopted(&self) -> bool {
        self.stack.is_none()
    }

    /// Waits until an adopted context has been saved by the OS thread leaving it (a few
    /// instructions after it was queued, unless that thread is preempted in between).
    pub(crate) fn wait_saved(&self) {
        if let Some(saved) = self.saved {
            let mut spins = 0u32;
            while !saved.load(Ordering::Acquire) {
                spins += 1;
                if spins % 64 == 0 {
                    // Trapped directly: this runs inside a switch, where an interposed
                    // `sched_yield` (the preload's) would try to switch again.
                    // SAFETY: sched_yield takes no arguments.
                    unsafe { flexsc_kmod::raw::syscall(libc::SYS_sched_yield, [0; 3]) };
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }

    /// Whether the first switch to it happened.
    pub(crate) fn started(&self) -> bool {
        self.body.is_none()
    }

    /// Called by the switch that starts the context: its body is moved out from now on.
    pub(crate) fn mark_started(&mut self) {
        self.body = None;
    }

    /// The stack back (for reuse), once the body has finished or if it never started; None for
    /// an adopted context.
    pub(crate) fn into_stack(mut self) -> Option<Stack> {
        self.drop_unstarted();
        self.stack.take()
    }

    fn drop_unstarted(&mut self) {
        if let Some(b) = self.body.take() {
            // SAFETY: the body written by `new` at `b.at`, never moved out (the context never
            // started), dropped once.
            unsafe { (b.drop)(b.at) };
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // A started context is dropped only once finished (a suspended one is unwound first, by
        // `Task`'s drop); one that never started still owns its body.
        self.drop_unstarted();
    }
}

// SAFETY: the stack and the body (F: Send) move with the context; a suspended context's frames
// are resumed by one thread at a time (the park protocol).
unsafe impl Send for Context {}

/// The body's start, called by the first switch (through `flexsc_arch_start`).
unsafe extern "C" fn entry<F: FnOnce()>(at: usize) -> ! {
    // SAFETY: `Context::new` wrote an F at `at`; the switch that started us marked it moved out,
    // so it is read exactly once, here.
    let f = unsafe { ptr::read(at as *mut F) };
    f();
    // The body ends by switching away for good; coming back here would be a runtime bug.
    std::process::abort()
}

/// Drops a body that never started.
unsafe fn drop_body<F>(at: usize) {
    // SAFETY: the caller's contract (`drop_unstarted`).
    unsafe { ptr::drop_in_place(at as *mut F) };
}
