//! The main thread as green thread 0 (issue 4).
//!
//! At the main thread's first `pthread_create` once the runtime runs, the main thread is adopted
//! ([`flexsc_threads::Runtime::adopt_current`]): it keeps its stack and its TCB (so its
//! `pthread_self`, `errno` and `__thread` variables are what they were), becomes a green thread
//! on a carrier (its blocking calls are posted, its waits park it, signals reach it through the
//! dispatcher), and its kernel thread parks for good with every signal blocked. Before that,
//! nothing changes (a daemon forks first, on glibc's threads).
//!
//! `main` returning calls `exit` on green thread 0: atexit handlers and static destructors run
//! there, other green threads still runnable. `pthread_exit` on it ends only it ([`end`]): its
//! cleanup handlers and key destructors run, its joiners get the value, and the process exits 0
//! when its last green thread ends. A fork child gets its only thread back as a plain thread
//! (the kernel sets the main TCB's tid to the child's, `CLONE_CHILD_SETTID`), and may adopt
//! again at its next `pthread_create`.
//!
//! `FLEXSC_MAIN=plain` keeps the main thread a glibc thread (the behaviour before adoption
//! existed); `green`, the default, adopts it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use flexsc_threads::{AdoptedEnd, Runtime};

use crate::fork_table::ForkTable;
use crate::{real, rt};

/// The main thread's TCB (its thread pointer), recorded when the library is loaded.
static MAIN_TCB: AtomicUsize = AtomicUsize::new(0);
/// This process's main thread was adopted (or adopting it failed: not retried).
static ADOPTED: AtomicBool = AtomicBool::new(false);
/// Green thread 0 is ending through `pthread_exit` (its key destructors run, unlike at `exit`).
static ENDING: AtomicBool = AtomicBool::new(false);
/// How green thread 0 ends ([`end`]); taken once (fresh in each fork child).
static END: ForkTable<AdoptedEnd> = ForkTable::new();

#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_MAIN_TCB: extern "C" fn() = record_main_tcb;

/// Runs when the library is loaded: on the main thread, whether preloaded or linked (a
/// `dlopen` by another thread records nothing, and the main thread is never adopted).
extern "C" fn record_main_tcb() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != crate::sched::kernel_tid() {
        return;
    }
    // SAFETY: pthread_self has no preconditions (glibc's TCB is set up before constructors).
    MAIN_TCB.store(unsafe { libc::pthread_self() } as usize, Ordering::Relaxed);
}

/// `FLEXSC_MAIN`: whether the main thread becomes green thread 0. The launcher checks the value
/// with the same rule (`flexsc run --main`).
fn wanted() -> bool {
    match std::env::var("FLEXSC_MAIN").as_deref() {
        Err(_) | Ok("green") => true,
        Ok("plain") => false,
        Ok(other) => {
            let msg = format!(
                "libflexsc: FLEXSC_MAIN={other:?} is neither `green` nor `plain`: the main thread stays plain\n"
            );
            // SAFETY: writes our own buffer to stderr through glibc's write.
            unsafe { real::write()(2, msg.as_ptr().cast(), msg.len()) };
            false
        }
    }
}

/// Whether the caller runs on the main thread's TCB (the main thread, adopted or not).
fn on_main_tcb() -> bool {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as usize;
    me != 0 && me == MAIN_TCB.load(Ordering::Relaxed)
}

/// Whether the caller is green thread 0 (the adopted main thread).
pub(crate) fn is_green_main() -> bool {
    ADOPTED.load(Ordering::Relaxed) && on_main_tcb() && rt::on_green_thread()
}

/// Whether thread-specific data destructors must be skipped for the calling thread: the main
/// thread's do not run at `exit` (as with glibc), but green thread 0's run when it ends with
/// `pthread_exit`.
pub(crate) fn skip_key_destructors() -> bool {
    // SAFETY: getpid has no preconditions.
    let native_main = unsafe { libc::getpid() } == crate::sched::kernel_tid();
    (native_main || is_green_main()) && !ENDING.load(Ordering::SeqCst)
}

/// Called by `pthread_create` once the runtime runs (as the library's own code): the main
/// thread, the first time, becomes green thread 0 (module doc); any other caller, or a later
/// call, changes nothing. If adopting fails, one line says why and the main thread stays plain.
pub(crate) fn adopt_if_main(runtime: &Runtime) {
    if ADOPTED.load(Ordering::Relaxed) || !on_main_tcb() || rt::on_green_thread() {
        return;
    }
    ADOPTED.store(true, Ordering::Relaxed);
    if !wanted() {
        return;
    }
    // Its green mask: the kernel mask it had (the kernel thread then blocks everything).
    let mask = crate::signal::creator_mask();
    // SAFETY: a null attribute: the calling thread's own scheduling.
    let sched = match unsafe { crate::sched::initial(std::ptr::null()) } {
        Ok(a) => crate::sched::new_record(a),
        Err(_) => return,
    };
    let cancel = crate::cancel::new_state();
    crate::pthread::count_main();
    // SAFETY: the main thread runs on its own TCB (checked above) and is not green; nothing
    // joins the main kernel thread or signals it by tid (the library's own tables name it by
    // its TCB, which moves with it); its stack is the process's, mapped until exit.
    let adopted = unsafe { runtime.adopt_current(Some("main".into()), stack_guard()) };
    let (handle, end) = match adopted {
        Ok(a) => a,
        Err(e) => {
            crate::pthread::uncount_main();
            let msg = format!("libflexsc: the main thread stays a glibc thread: {e}\n");
            // SAFETY: writes our own buffer to stderr through glibc's write.
            unsafe { real::write()(2, msg.as_ptr().cast(), msg.len()) };
            return;
        }
    };
    // Green thread 0 from here, on a carrier, on the main TCB.
    crate::signal::register(mask);
    crate::cancel::register(&cancel);
    crate::sched::register(&sched);
    crate::pthread::joinable_main(handle);
    *END.lock() = Some(end);
}

/// Where an overflow of the main stack faults: the kernel's guard gap below the lowest address
/// the stack may grow to (as `pthread_getattr_np` reports it, from RLIMIT_STACK), and its last
/// page. Empty if glibc cannot tell.
fn stack_guard() -> std::ops::Range<usize> {
    /// Linux's default `stack_guard_gap` (256 pages).
    const GAP: usize = 256 << 12;
    // SAFETY: a zeroed attribute is a valid out-parameter for pthread_getattr_np, destroyed
    // after use; getstack writes our own variables.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if real::pthread_getattr_np()(libc::pthread_self(), &mut attr) != 0 {
            return 0..0;
        }
        let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
        let r = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if r != 0 {
            return 0..0;
        }
        let lo = addr as usize;
        lo.saturating_sub(GAP)..lo + 4096
    }
}

/// `pthread_exit` on green thread 0, once its unwinding has run its cleanup handlers and
/// reached the end of its stack ([`crate::cancel`]): it ends with `value` for its joiners; the
/// process goes on until its last green thread ends.
pub(crate) fn end(value: usize) -> ! {
    ENDING.store(true, Ordering::SeqCst);
    // What follows is the library's own code (its locks must reach the kernel).
    std::mem::forget(rt::InLib::enter());
    crate::signal::unregister();
    crate::cancel::unregister();
    crate::sched::unregister();
    let end = END.lock().take().expect("green thread 0 ends once");
    crate::pthread::main_ended();
    end.exit(value)
}

/// In a fork child: its only thread is plain, and may be adopted again by the child's runtime.
pub(crate) fn reset_after_fork() {
    // The parent's end belongs to the parent's runtime, gone here.
    END.reset_after_fork();
    ADOPTED.store(false, Ordering::Relaxed);
    ENDING.store(false, Ordering::SeqCst);
}
