//! A green thread's execution context: its stack and, while it is suspended, its saved stack
//! pointer ([`crate::arch`]). Started by the first switch to it; it runs its body, which ends by
//! switching away for good ([`super::task::Task::exit`]).

use std::mem::{align_of, size_of};
use std::ptr;

use crate::arch;
use crate::stack::Stack;

/// Bytes a new context needs below its body: the initial switch frame and room to run.
const MIN_ROOM: usize = 4096;

pub(crate) struct Context {
    stack: Stack,
    /// The saved stack pointer while suspended.
    pub(crate) sp: usize,
    /// The body, written at the top of the stack, until the first switch moves it out.
    body: Option<Body>,
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
            stack,
            sp,
            body: Some(Body {
                at,
                drop: drop_body::<F>,
            }),
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

    /// The stack back (for reuse), once the body has finished or if it never started.
    pub(crate) fn into_stack(mut self) -> Stack {
        self.drop_unstarted();
        // SAFETY: `self` is forgotten right after, so its stack is moved out exactly once.
        let stack = unsafe { ptr::read(&self.stack) };
        std::mem::forget(self);
        stack
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
