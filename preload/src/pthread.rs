//! Thread lifecycle: `pthread_create` makes a green thread, `pthread_join`/`pthread_detach`
//! manage it, `pthread_exit` ends it (running its cleanup handlers, [`cancel`](crate::cancel)),
//! `sched_yield` yields its carrier.
//!
//! A green thread's `pthread_t` is its own glibc TCB (the value glibc's `pthread_self` reads from
//! fs:0x10 on it), so every glibc function that only reads the calling thread's TCB keeps
//! working. Threads created before the runtime could start (or if it cannot) are glibc's own and
//! are passed to glibc's functions.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use flexsc_threads::{JoinHandle, SpawnOptions};
use libc::{c_int, pthread_attr_t, pthread_t};

use crate::fork_table::ForkTable;
use crate::{real, rt};

/// A start routine, called with the "C-unwind" ABI so `pthread_exit` can unwind through it.
type StartRoutine = extern "C-unwind" fn(*mut c_void) -> *mut c_void;

/// What a green thread's function returns: its `void *` result.
type Exit = usize;

/// Green threads not yet joined or detached, by `pthread_t` (fresh in each fork child).
static JOINABLE: ForkTable<HashMap<pthread_t, JoinHandle<Exit>>> = ForkTable::new();

/// In a fork child: the parent's threads are not the child's to join (nor to cancel), and the
/// tables' locks may have been held by one of them at the fork; the old tables are leaked.
pub(crate) fn reset_after_fork() {
    JOINABLE.reset_after_fork();
    LIVE.store(0, Ordering::SeqCst);
    MAIN_EXITED.store(false, Ordering::SeqCst);
    EXITING.store(false, Ordering::SeqCst);
    crate::cancel::reset_after_fork();
}

unsafe extern "C" {
    /// glibc's (the libc crate does not declare it).
    fn pthread_attr_getdetachstate(attr: *const pthread_attr_t, state: *mut c_int) -> c_int;
}

/// The unwinding payload that ends a green thread (`pthread_exit`, cancellation), caught at its
/// base.
struct ExitValue(Exit);

/// Ends the calling green thread with `value` from its base frame ([`crate::cancel::base`]),
/// which the forced unwind of `pthread_exit` or cancellation has reached.
pub(crate) fn unwind_to_base(value: Exit) -> ! {
    resume_unwind(Box::new(ExitValue(value)))
}

/// The stack a thread gets without an attribute: RLIMIT_STACK's soft limit, as glibc does
/// (between 64 KiB and 8 MiB; a reservation, committed as touched).
fn default_stack() -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut r) } == 0;
    let lim = if got && r.rlim_cur != libc::RLIM_INFINITY {
        r.rlim_cur as usize
    } else {
        8 << 20
    };
    lim.clamp(64 << 10, 8 << 20)
}

/// `pthread_create`: a green thread running `start(arg)` (or a glibc thread if the runtime is not
/// available).
///
/// # Safety
/// As `pthread_create(3)`: `thread` writable, `attr` null or initialised, `start` a function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut pthread_t,
    attr: *const pthread_attr_t,
    start: StartRoutine,
    arg: *mut c_void,
) -> c_int {
    let _lib = rt::InLib::enter();
    crate::cancel::install();
    let Some(runtime) = rt::get() else {
        // SAFETY: forwarded unchanged to glibc (the routine's ABI is C either way).
        return unsafe {
            real::pthread_create()(
                thread,
                attr,
                std::mem::transmute::<StartRoutine, extern "C" fn(*mut c_void) -> *mut c_void>(
                    start,
                ),
                arg,
            )
        };
    };
    crate::main_thread::adopt_if_main(runtime);
    let (mut stack, mut detached) = (default_stack(), false);
    if !attr.is_null() {
        let mut size = 0usize;
        let mut state = 0;
        // SAFETY: `attr` is an initialised attribute object (caller's contract).
        unsafe {
            if libc::pthread_attr_getstacksize(attr, &mut size) == 0 && size > 0 {
                stack = size;
            }
            if pthread_attr_getdetachstate(attr, &mut state) == 0 {
                detached = state == libc::PTHREAD_CREATE_DETACHED;
            }
        }
    }
    // Affinity and scheduling from the attribute or the creator, checked as glibc's would be.
    // SAFETY: `attr` null or initialised (the caller's contract).
    let sched = match unsafe { crate::sched::initial(attr) } {
        Ok(a) => crate::sched::new_record(a),
        Err(e) => return e,
    };
    let theirs_sched = sched.clone();
    let arg = arg as usize;
    let mask = crate::signal::creator_mask();
    let cancel = crate::cancel::new_state();
    let theirs = cancel.clone();
    // Counted before it can run (and end).
    LIVE.fetch_add(1, Ordering::SeqCst);
    // A joinable thread's pthread_t (its TCB) must not name another thread before it is joined.
    let spawned = SpawnOptions::new()
        .stack_size(stack)
        .hold_tcb(!detached)
        .spawn_on(runtime, move || {
            run(start, arg, detached, mask, theirs, theirs_sched)
        });
    let handle = match spawned {
        Ok(h) => h,
        Err(e) => {
            LIVE.fetch_sub(1, Ordering::SeqCst);
            return e.raw_os_error().unwrap_or(libc::EAGAIN);
        }
    };
    let Some(tcb) = handle.tcb() else {
        // The runtime always runs green threads on TCBs of their own (rt.rs).
        return libc::EAGAIN;
    };
    let id = tcb as pthread_t;
    // Cancellable from now on, even before it runs.
    crate::cancel::publish(id, &cancel);
    crate::sched::publish(id, &sched);
    if !detached {
        JOINABLE
            .lock()
            .get_or_insert_with(HashMap::new)
            .insert(id, handle);
    }
    // SAFETY: the caller's contract.
    unsafe { *thread = id };
    0
}

/// A green thread's body: the start routine, stopped early by `pthread_exit` or cancellation.
fn run(
    start: StartRoutine,
    arg: usize,
    detached: bool,
    mask: u64,
    cancel: std::sync::Arc<crate::cancel::State>,
    sched: std::sync::Arc<crate::sched::Sched>,
) -> Exit {
    {
        let _lib = rt::InLib::enter();
        crate::signal::register(mask);
        crate::cancel::register(&cancel);
        crate::sched::register(&sched);
    }
    if detached {
        // Recorded by the thread itself, first: it may ask before its creator returns.
        let _lib = rt::InLib::enter();
        // SAFETY: pthread_self has no preconditions.
        green_threads()
            .detached
            .insert(unsafe { libc::pthread_self() });
    }
    let v = match catch_unwind(AssertUnwindSafe(|| crate::cancel::base(start, arg))) {
        Ok(v) => v,
        Err(p) => exit_value(p),
    };
    // What follows on this green thread is the runtime's (its end: waking the joiner), whose
    // locks must reach the kernel; the TLS block is reset before it is used again.
    std::mem::forget(rt::InLib::enter());
    crate::signal::unregister();
    crate::cancel::unregister();
    crate::sched::unregister();
    forget_green_thread();
    // The last thread of a process whose main thread called pthread_exit ends the process, as
    // with glibc (the carriers alone would keep it alive).
    if LIVE.fetch_sub(1, Ordering::SeqCst) == 1 && MAIN_EXITED.load(Ordering::SeqCst) {
        exit_process();
    }
    v
}

/// Green threads created and not yet finished.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The main thread ended with `pthread_exit` while the runtime ran.
static MAIN_EXITED: AtomicBool = AtomicBool::new(false);
/// `exit_process` was called (once is enough).
static EXITING: AtomicBool = AtomicBool::new(false);

/// Counts green thread 0 (the main thread, being adopted) as a live green thread.
pub(crate) fn count_main() {
    LIVE.fetch_add(1, Ordering::SeqCst);
}

/// Takes back [`count_main`]: the main thread could not be adopted.
pub(crate) fn uncount_main() {
    LIVE.fetch_sub(1, Ordering::SeqCst);
}

/// Makes green thread 0 joinable by its `pthread_t` (its own TCB, as before it was adopted).
pub(crate) fn joinable_main(handle: JoinHandle<Exit>) {
    let _lib = rt::InLib::enter();
    // SAFETY: pthread_self has no preconditions.
    let id = unsafe { libc::pthread_self() };
    JOINABLE
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(id, handle);
}

/// Green thread 0 is ending (`pthread_exit`; called on it, as the library's own code): like any
/// green thread's end in [`run`], the last one to end ends the process.
pub(crate) fn main_ended() {
    forget_green_thread();
    MAIN_EXITED.store(true, Ordering::SeqCst);
    if LIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
        exit_process();
    }
}

/// Drops what [`GreenThreads`] records of the calling green thread, which is ending.
fn forget_green_thread() {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let mut g = green_threads();
    g.detached.remove(&me);
    g.names.remove(&me);
}

/// `exit(0)`, as glibc's last thread does, by whichever of the main thread and the last green
/// thread sees the other gone first.
fn exit_process() {
    if !EXITING.swap(true, Ordering::SeqCst) {
        // SAFETY: the process ends as POSIX says it does when its last thread terminates.
        unsafe { libc::exit(0) };
    }
}

/// The value a `pthread_exit` unwind carries; any other panic continues to the joiner.
fn exit_value(p: Box<dyn Any + Send>) -> Exit {
    match p.downcast::<ExitValue>() {
        Ok(v) => v.0,
        Err(p) => resume_unwind(p),
    }
}

/// Whether `thread` is a joinable green thread that has finished (`Some(true)`) or not yet
/// (`Some(false)`); `None` if it is not a joinable green thread.
pub(crate) fn green_finished(thread: pthread_t) -> Option<bool> {
    let _lib = rt::InLib::enter();
    JOINABLE
        .lock()
        .as_ref()
        .and_then(|m| m.get(&thread).map(JoinHandle::is_finished))
}

/// `pthread_join`: a cancellation point when the thread has not finished (a request that comes
/// while it waits acts at the next one).
///
/// # Safety
/// As `pthread_join(3)`: `retval` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_join(thread: pthread_t, retval: *mut *mut c_void) -> c_int {
    // SAFETY: pthread_self has no preconditions.
    if thread == unsafe { libc::pthread_self() } {
        return libc::EDEADLK;
    }
    if green_finished(thread) != Some(true) {
        crate::cancel::point();
    }
    let _lib = rt::InLib::enter();
    let handle = JOINABLE.lock().as_mut().and_then(|m| m.remove(&thread));
    let Some(handle) = handle else {
        // Not a green thread we know: glibc's (created natively), or an error glibc reports.
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_join()(thread, retval) };
    };
    let value = match handle.join() {
        Ok(v) => v,
        // A panic that was not pthread_exit: a C++ exception or a Rust panic escaped the
        // thread, which in glibc terminates the process.
        Err(_) => {
            let msg = b"libflexsc: a thread ended with an uncaught exception\n";
            // SAFETY: writes a static message, then aborts as glibc's std::terminate would.
            unsafe {
                real::write()(2, msg.as_ptr().cast(), msg.len());
                libc::abort();
            }
        }
    };
    if !retval.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *retval = value as *mut c_void };
    }
    0
}

/// `pthread_tryjoin_np`: `EBUSY` while a green thread runs.
///
/// # Safety
/// As `pthread_tryjoin_np(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_tryjoin_np(
    thread: pthread_t,
    retval: *mut *mut c_void,
) -> c_int {
    match green_finished(thread) {
        // SAFETY: forwarded unchanged.
        None => unsafe { real::pthread_tryjoin_np()(thread, retval) },
        Some(false) => libc::EBUSY,
        // SAFETY: the caller's contract.
        Some(true) => unsafe { pthread_join(thread, retval) },
    }
}

/// `pthread_timedjoin_np`: as [`pthread_clockjoin_np`] on `CLOCK_REALTIME`.
///
/// # Safety
/// As `pthread_timedjoin_np(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_timedjoin_np(
    thread: pthread_t,
    retval: *mut *mut c_void,
    abstime: *const libc::timespec,
) -> c_int {
    // SAFETY: the caller's contract; forwarded unchanged for threads that are not ours.
    unsafe {
        timed_join(thread, retval, libc::CLOCK_REALTIME, abstime, || {
            real::pthread_timedjoin_np()(thread, retval, abstime)
        })
    }
}

/// `pthread_clockjoin_np`: a green thread's join that gives up with `ETIMEDOUT` at `abstime`
/// on `clock` (`CLOCK_REALTIME` or `CLOCK_MONOTONIC`); a null `abstime` waits as long as it
/// takes. The joiner looks at the thread at growing intervals up to 10 ms (the runtime's join
/// has no deadline), parking meanwhile.
///
/// # Safety
/// As `pthread_clockjoin_np(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_clockjoin_np(
    thread: pthread_t,
    retval: *mut *mut c_void,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
) -> c_int {
    // SAFETY: the caller's contract; forwarded unchanged for threads that are not ours.
    unsafe {
        timed_join(thread, retval, clock, abstime, || {
            real::pthread_clockjoin_np()(thread, retval, clock, abstime)
        })
    }
}

/// # Safety
/// `retval` null or writable, `abstime` null or valid.
unsafe fn timed_join(
    thread: pthread_t,
    retval: *mut *mut c_void,
    clock: libc::clockid_t,
    abstime: *const libc::timespec,
    native: impl FnOnce() -> c_int,
) -> c_int {
    if green_finished(thread).is_none() {
        return native();
    }
    if abstime.is_null() {
        // SAFETY: the caller's contract.
        return unsafe { pthread_join(thread, retval) };
    }
    if !matches!(clock, libc::CLOCK_REALTIME | libc::CLOCK_MONOTONIC) {
        return libc::EINVAL;
    }
    let mut nap = std::time::Duration::from_micros(100);
    loop {
        if green_finished(thread) != Some(false) {
            // Finished (or joined meanwhile by another thread: then join reports it).
            // SAFETY: the caller's contract.
            return unsafe { pthread_join(thread, retval) };
        }
        // SAFETY: the caller's contract.
        let left = match crate::io::until(clock, unsafe { &*abstime }) {
            Ok(d) => d,
            Err(e) => return e,
        };
        if left.is_zero() {
            return libc::ETIMEDOUT;
        }
        crate::cancel::point();
        let d = left.min(nap);
        if rt::on_green_thread() {
            let _lib = rt::InLib::enter();
            flexsc_threads::sleep(d);
        } else {
            std::thread::sleep(d);
        }
        nap = (nap * 2).min(std::time::Duration::from_millis(10));
    }
}

/// `pthread_detach`.
///
/// # Safety
/// As `pthread_detach(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_detach(thread: pthread_t) -> c_int {
    let _lib = rt::InLib::enter();
    match JOINABLE.lock().as_mut().and_then(|m| m.remove(&thread)) {
        Some(h) => {
            if !h.is_finished() {
                green_threads().detached.insert(thread);
            }
            0
        }
        // SAFETY: forwarded unchanged.
        None => unsafe { real::pthread_detach()(thread) },
    }
}

/// `pthread_exit`: on a green thread, unwinds to its base with `retval` as glibc does (its
/// cleanup handlers and C++ destructors run on the way: [`crate::cancel::exit`]); elsewhere
/// glibc's.
///
/// # Safety
/// As `pthread_exit(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_exit(retval: *mut c_void) -> ! {
    if rt::on_green_thread() {
        crate::cancel::exit(retval as Exit);
    }
    // SAFETY: getpid has no preconditions.
    if rt::started().is_some() && unsafe { libc::getpid() } == crate::sched::kernel_tid() {
        // The main thread: the process lives on until its last green thread ends.
        MAIN_EXITED.store(true, Ordering::SeqCst);
        if LIVE.load(Ordering::SeqCst) == 0 {
            exit_process();
        }
    }
    // SAFETY: forwarded unchanged; glibc's pthread_exit does not return.
    unsafe { real::pthread_exit()(retval) };
    unreachable!("pthread_exit returned")
}

/// `sched_yield`: a green thread lets its carrier's other green threads run.
#[unsafe(no_mangle)]
pub extern "C" fn sched_yield() -> c_int {
    // The library's own code (spinning on a lock held elsewhere) yields the kernel thread.
    if rt::on_green_thread() && rt::application_caller() {
        let _lib = rt::InLib::enter();
        flexsc_threads::yield_now();
        return 0;
    }
    // SAFETY: no arguments.
    unsafe { real::sched_yield()() }
}

/// What glibc would read from a green thread's TCB but cannot (the TCB's tid is its carrier's,
/// and the runtime does not fill in glibc's join state): which green threads are detached, and
/// their names.
struct GreenThreads {
    detached: BTreeSet<pthread_t>,
    names: BTreeMap<pthread_t, Vec<u8>>,
}

static GREEN: Mutex<GreenThreads> = Mutex::new(GreenThreads {
    detached: BTreeSet::new(),
    names: BTreeMap::new(),
});

fn green_threads() -> std::sync::MutexGuard<'static, GreenThreads> {
    GREEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `thread` is one of our green threads (alive, or finished and not yet joined).
fn is_green(thread: pthread_t) -> bool {
    // SAFETY: pthread_self has no preconditions.
    (thread == unsafe { libc::pthread_self() } && rt::on_green_thread())
        || JOINABLE
            .lock()
            .as_ref()
            .is_some_and(|m| m.contains_key(&thread))
        || green_threads().detached.contains(&thread)
}

/// `pthread_getattr_np`: glibc's, with a green thread's detach state (which glibc reads from a
/// TCB field the runtime does not set), and its recorded affinity and scheduling (glibc's come
/// from its carrier).
///
/// # Safety
/// As `pthread_getattr_np(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getattr_np(thread: pthread_t, attr: *mut pthread_attr_t) -> c_int {
    let _lib = rt::InLib::enter();
    // SAFETY: forwarded unchanged.
    let r = unsafe { real::pthread_getattr_np()(thread, attr) };
    if r == 0 && green_threads().detached.contains(&thread) {
        // SAFETY: glibc just initialised `attr`.
        unsafe { libc::pthread_attr_setdetachstate(attr, libc::PTHREAD_CREATE_DETACHED) };
    }
    if r == 0 {
        // SAFETY: glibc just initialised `attr`.
        unsafe { crate::sched::fill_attr(thread, attr) };
    }
    r
}

/// The name glibc allows: 15 bytes and the NUL.
const NAME_MAX: usize = 16;

/// `pthread_setname_np`: a green thread's name is kept here (glibc would rename its carrier).
///
/// # Safety
/// As `pthread_setname_np(3)`: `name` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_setname_np(thread: pthread_t, name: *const libc::c_char) -> c_int {
    let _lib = rt::InLib::enter();
    if !is_green(thread) {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_setname_np()(thread, name) };
    }
    // SAFETY: the caller's contract.
    let bytes = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes();
    if bytes.len() >= NAME_MAX {
        return libc::ERANGE;
    }
    green_threads().names.insert(thread, bytes.to_vec());
    0
}

/// `pthread_getname_np`: a green thread's name as set, else the process's.
///
/// # Safety
/// As `pthread_getname_np(3)`: `buf` writable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_getname_np(
    thread: pthread_t,
    buf: *mut libc::c_char,
    len: libc::size_t,
) -> c_int {
    let _lib = rt::InLib::enter();
    if !is_green(thread) {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_getname_np()(thread, buf, len) };
    }
    let name = green_threads()
        .names
        .get(&thread)
        .cloned()
        .unwrap_or_else(|| {
            let comm = std::fs::read("/proc/self/comm").unwrap_or_default();
            comm.strip_suffix(b"\n").unwrap_or(&comm).to_vec()
        });
    if len <= name.len() {
        return libc::ERANGE;
    }
    // SAFETY: `buf` holds at least name.len() + 1 bytes (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(name.as_ptr(), buf.cast::<u8>(), name.len());
        *buf.add(name.len()) = 0;
    }
    0
}
