//! The runtime under the preload: started by the first `pthread_create` (so daemons fork before
//! it exists), configured by the `FLEXSC_*` variables (`flexsc run` sets them), never stopped
//! (its statistics print at exit with `FLEXSC_STATS`).
//!
//! If it cannot start (an unknown glibc layout, no io_uring, a bad variable), the program keeps
//! running on glibc's own threads and one line says why: slower, never wrong.
//!
//! After `fork` the child has one thread, the one that forked, and none of the runtime's: the
//! child forgets the runtime (leaking it: its carriers are gone, nothing can stop them) and
//! starts a new one at its next `pthread_create`; until then every call is glibc's.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, Ordering};

use flexsc_threads::Runtime;

/// The current process's runtime (null: none yet, or it failed).
static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());
/// Serialises starting it; true once tried (a failure is reported once, not retried).
static START: Mutex<bool> = Mutex::new(false);

/// The runtime, started on first use; `None` if it could not start.
pub(crate) fn get() -> Option<&'static Runtime> {
    if let Some(rt) = started() {
        return Some(rt);
    }
    let mut tried = START.lock().unwrap_or_else(|e| e.into_inner());
    // Another thread may have started it (or failed) while we waited for the lock.
    if *tried {
        return started();
    }
    *tried = true;
    match crate::process_signal::while_starting(build) {
        Ok(rt) => {
            let rt: &'static Runtime = Box::leak(Box::new(rt));
            RUNTIME.store(rt as *const Runtime as *mut Runtime, Ordering::Release);
            Some(rt)
        }
        Err(e) => {
            let msg = format!("libflexsc: running on native threads: {e}\n");
            // SAFETY: writes our own buffer to stderr through glibc's write.
            unsafe { crate::real::write()(2, msg.as_ptr().cast(), msg.len()) };
            None
        }
    }
}

/// The runtime if it has started (and not otherwise).
pub(crate) fn started() -> Option<&'static Runtime> {
    let p = RUNTIME.load(Ordering::Acquire);
    // SAFETY: a non-null pointer is a leaked Box<Runtime>, never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn build() -> std::io::Result<Runtime> {
    // The runtime's own set-up (its signal handlers among it) is the library's, not the program's.
    let _lib = InLib::enter();
    // A green thread's pthread_t is its own TCB: per-green-thread TLS is not optional here.
    if std::env::var_os("FLEXSC_TLS").is_some_and(|v| v == "0") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "FLEXSC_TLS=0 is not supported under the preload (pthread_self needs a TCB per thread)",
        ));
    }
    let mut b = Runtime::builder().tls(true);
    if let Some(slice) = crate::preempt::slice()? {
        crate::preempt::find_program_text();
        b = b.preempt(slice, crate::preempt::may_preempt);
    }
    if std::env::var_os("FLEXSC_ORDER").is_none() {
        // A C server's threads expect the kernel's fairness: under the Rust API's newest-first
        // order some of Apache's connections waited 0.1 to 1 s while others ran, for no
        // throughput (docs/results.md, "Run order").
        b = b.order(flexsc_threads::Order::Fifo);
    }
    if std::env::var_os("FLEXSC_BACKEND").is_none() {
        // Servers block many calls at once: io_uring holds them without a thread each; the
        // kernel module, where it is loaded, runs every call without a trap.
        use flexsc_threads::kmod::BackendKind;
        b = b.backend(BackendKind::kmod_or(BackendKind::Uring));
    }
    if dynamic_by_default() {
        b = b.specialization(flexsc_threads::kmod::Specialization::dynamic());
    }
    b.build()
}

/// Whether the `threads` backend gets the dynamic split of cores between carriers and syscall
/// threads: asked for with two carriers or more and no specialization set. On 2 CPUs it ran
/// Apache with keep-alive at 2.01x NPTL against 0.90x with floating syscall threads (the
/// runtime's own default), MariaDB and memcached a little better (docs/results.md, the
/// variants); with one carrier there is no core to move calls to, and floating syscall threads
/// did better there (1.21x against 0.99x).
fn dynamic_by_default() -> bool {
    let var = |v| std::env::var(v).ok();
    if var("FLEXSC_SPECIALIZATION").is_some() || var("FLEXSC_SYSCALL_CORES").is_some() {
        return false;
    }
    if var("FLEXSC_BACKEND").as_deref().map(str::trim) != Some("threads") {
        return false;
    }
    let carriers = match var("FLEXSC_CORES") {
        // A malformed value: the builder says so.
        Some(v) => v.trim().parse().unwrap_or(0),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    carriers >= 2
}

/// Registers the fork child handler when the library is loaded, before the program's own
/// handlers: child handlers run in registration order, and the program's may lock and unlock
/// mutexes, which needs the child's fresh futex table.
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_FORK_HANDLER: extern "C" fn() = register_fork_handler;

extern "C" fn register_fork_handler() {
    // SAFETY: registers a plain function; failure (ENOMEM) only loses the fork handling.
    unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
}

/// In the child of a fork made by a green thread: the thread stops being one (its calls trap,
/// its kernel mask is its green mask) and the runtime is forgotten. Async-signal-safe (no
/// allocation, no lock), so the child of `_Fork` (and so of a green `vfork`) can run it.
pub(crate) fn become_plain_in_child() {
    flexsc_threads::after_fork_in_child();
    crate::signal::forget_in_child();
    crate::dl::reset_after_fork();
    RUNTIME.store(std::ptr::null_mut(), Ordering::Release);
}

/// The child side of `fork`: the runtime's threads did not come along.
extern "C" fn forget_in_child() {
    become_plain_in_child();
    flexsc_threads::futex::reset_after_fork();
    crate::pthread::reset_after_fork();
    crate::signal::reset_after_fork();
    crate::sched::reset_after_fork();
    crate::main_thread::reset_after_fork();
    crate::tune::reset_after_fork();
    // The child may start its own runtime (the lock may have been held across fork by another
    // thread, which does not exist here: start from a fresh one).
    START.clear_poison();
    if let Ok(mut tried) = START.try_lock() {
        *tried = false;
    }
}

/// Whether the caller is a green thread of this process's current runtime.
pub(crate) fn on_green_thread() -> bool {
    started().is_some_and(Runtime::owns_current)
}

thread_local! {
    /// Set while the calling thread runs libflexsc's own code on behalf of an export.
    static IN_LIB: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as running the library's own code until dropped. The runtime's locks
/// (std's, which wait with `syscall(SYS_futex)`) must reach the kernel, not the futex table they
/// are part of: the `syscall` export passes everything straight through meanwhile.
pub(crate) struct InLib(bool);

impl InLib {
    pub(crate) fn enter() -> Self {
        Self(IN_LIB.with(|c| c.replace(true)))
    }

    /// Runs `f` as application code (a signal handler) from inside the library's own.
    pub(crate) fn outside<R>(f: impl FnOnce() -> R) -> R {
        let was = IN_LIB.with(|c| c.replace(false));
        let r = f();
        IN_LIB.with(|c| c.set(was));
        r
    }
}

impl Drop for InLib {
    fn drop(&mut self) {
        IN_LIB.with(|c| c.set(self.0));
    }
}

/// Whether the caller is the application's own code on an application thread (not the
/// library's code, not one of the runtime's internal threads).
pub(crate) fn application_caller() -> bool {
    !IN_LIB.with(Cell::get) && !flexsc_threads::kmod::os_thread::is_internal()
}
