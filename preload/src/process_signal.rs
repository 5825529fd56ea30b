//! Process-directed signals (`kill(getpid())`, `alarm`, `SIGCHLD`, a terminal's `SIGINT`) for
//! green threads.
//!
//! The kernel delivers such a signal to a thread that does not block it. Green threads are not
//! threads to the kernel, so the runtime's own threads (carriers, syscall threads) start with
//! every routable signal blocked ([`while_starting`]): a glibc thread that lets the signal in
//! (the main thread under `FLEXSC_MAIN=plain`, or before it is adopted as green thread 0, whose
//! kernel thread then blocks them all) still gets it from the kernel, as natively; when none
//! does, it
//! stays pending for the process, and the dispatcher thread takes it from a `signalfd` and
//! hands it to a green thread ([`crate::signal::route`]): one waiting for it in `sigwait`, else
//! one whose mask lets it in, which runs the handler itself (its stack, TLS and errno) with the
//! kernel's siginfo, its parked call ending with `EINTR` unless `SA_RESTART` applies. When every
//! green thread blocks it too, it is left pending for the process (a glibc thread's `sigwait`
//! or unblock takes it, a green `sigwait` polls it) and routed again once a green thread
//! unblocks it.
//!
//! Not routed (left to the kernel, on whichever thread it picks): the fault signals (SIGSEGV,
//! SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS), which must run on the faulting thread; SIGPIPE and
//! SIGXFSZ, which the kernel directs at the thread that made the call (a carrier or syscall
//! thread); SIGPROF, which profilers direct at threads; glibc's internal signals and the
//! library's interrupt signal.

use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use flexsc_threads::kmod::backend::threads::interrupt_signal;
use flexsc_threads::preempt_signal;
use libc::{c_int, sigset_t};

use crate::real;

/// Whether the dispatcher routes `sig` (module doc).
fn routable(sig: c_int) -> bool {
    !matches!(
        sig,
        libc::SIGKILL
            | libc::SIGSTOP
            | libc::SIGSEGV
            | libc::SIGBUS
            | libc::SIGFPE
            | libc::SIGILL
            | libc::SIGTRAP
            | libc::SIGSYS
            | libc::SIGPIPE
            | libc::SIGXFSZ
            | libc::SIGPROF
            | 32
            | 33
    ) && sig != interrupt_signal()
        && sig != preempt_signal()
}

fn routable_set() -> sigset_t {
    // SAFETY: a zeroed sigset is valid; sigemptyset/sigaddset write the one we own.
    unsafe {
        let mut set: sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in (1..=64).filter(|&s| routable(s)) {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Runs `start` (which creates the runtime's threads) with every routable signal blocked on the
/// calling thread, so the threads it creates inherit that mask; then, if it succeeded, starts
/// the dispatcher (once per process). The caller's mask is restored.
pub(crate) fn while_starting<T, E>(start: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let set = routable_set();
    // SAFETY: a zeroed sigset is a valid out-parameter; blocking signals is always allowed.
    let mut old: sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { real::pthread_sigmask()(libc::SIG_BLOCK, &set, &mut old) };
    let r = start();
    if r.is_ok() {
        start_dispatcher(&set);
    }
    // SAFETY: puts back the mask saved above.
    unsafe { real::pthread_sigmask()(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    r
}

/// The dispatcher's signalfd (kept across fork: a child's dispatcher reads the same one).
static FD: AtomicI32 = AtomicI32::new(-1);
/// Routable signals the dispatcher leaves alone for now: the last one pending found no green
/// thread to take it, so it stays pending for the process (for a glibc thread's `sigwait` or
/// unblock, or a green `sigwait`, which polls the kernel) until a green thread unblocks it
/// ([`green_unblocked`]).
static PAUSED: AtomicU64 = AtomicU64::new(0);

fn bit(sig: c_int) -> u64 {
    1 << (sig - 1)
}

/// Points the signalfd at the routable signals not [`PAUSED`] (which wakes its poller).
fn update_mask() {
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let mut set = routable_set();
    let paused = PAUSED.load(Ordering::SeqCst);
    for sig in (1..=64).filter(|&s| paused & bit(s) != 0) {
        // SAFETY: removes a valid signal from our own set.
        unsafe { libc::sigdelset(&mut set, sig) };
    }
    // SAFETY: changes the mask of our own signalfd.
    unsafe { libc::signalfd(fd, &set, 0) };
}

/// A green thread unblocked `bits`: signals among them left pending for the process are
/// routed again.
pub(crate) fn green_unblocked(bits: u64) {
    if PAUSED.load(Ordering::Relaxed) & bits != 0 {
        PAUSED.fetch_and(!bits, Ordering::SeqCst);
        update_mask();
    }
}

/// Starts the dispatcher thread (a glibc thread, not a green one) with the calling thread's
/// mask, which blocks `set`.
fn start_dispatcher(set: &sigset_t) {
    let mut fd = FD.load(Ordering::Relaxed);
    if fd < 0 {
        // SAFETY: a new signalfd for a valid set.
        fd = unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            log_once(&format!(
                "libflexsc: process-directed signals stay with the kernel (signalfd: {})\n",
                std::io::Error::last_os_error()
            ));
            return;
        }
        FD.store(fd, Ordering::Relaxed);
    }
    PAUSED.store(0, Ordering::SeqCst);
    update_mask();
    // Marked internal by os_thread: its calls go to glibc.
    if flexsc_threads::kmod::os_thread::spawn("flexsc-signals", 64 * 1024, move || dispatch(fd))
        .is_err()
    {
        log_once("libflexsc: process-directed signals stay with the kernel (no thread)\n");
    }
}

/// The dispatcher: waits until a routable signal is pending for the process (the signalfd
/// polls readable), then takes each one a green thread accepts, with its siginfo, and routes
/// it; one that no green thread accepts is left pending and [`PAUSED`].
fn dispatch(fd: c_int) {
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one descriptor of ours.
        if unsafe { real::poll()(&mut p, 1, -1) } < 0 {
            continue; // EINTR
        }
        // SAFETY: a zeroed sigset is a valid out-parameter.
        let mut pending: sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { real::sigpending()(&mut pending) };
        let paused = PAUSED.load(Ordering::SeqCst);
        let mut newly_paused = 0;
        for sig in (1..=64).filter(|&s| routable(s) && paused & bit(s) == 0) {
            // SAFETY: reads our own set.
            if unsafe { libc::sigismember(&pending, sig) } != 1 {
                continue;
            }
            if !crate::signal::accepted(sig) {
                newly_paused |= bit(sig);
                continue;
            }
            let Some(info) = take(sig) else { continue };
            if !crate::signal::route(sig, info) {
                // Its taker changed its mind meanwhile: back to the process.
                requeue(sig, &info);
            }
        }
        if newly_paused != 0 {
            PAUSED.fetch_or(newly_paused, Ordering::SeqCst);
            update_mask();
        }
    }
}

/// Takes pending `sig` (blocked here) with its siginfo, without waiting.
fn take(sig: c_int) -> Option<libc::siginfo_t> {
    // SAFETY: zeroed siginfo and sigset are valid; a zero timeout makes it a poll; trapped
    // directly (the exported `syscall` would post it to another thread).
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let set: u64 = bit(sig);
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let r = flexsc_threads::kmod::raw::syscall6(
            libc::SYS_rt_sigtimedwait as u64,
            &[
                &set as *const u64 as u64,
                &raw mut info as u64,
                &zero as *const libc::timespec as u64,
                8,
                0,
                0,
            ],
        );
        (r == i64::from(sig)).then_some(info)
    }
}

/// Puts a signal back on the process. The kernel lets another thread queue only a negative
/// si_code, so a kernel or kill() siginfo comes back as SI_QUEUE with the same fields.
fn requeue(sig: c_int, info: &libc::siginfo_t) {
    let mut info = *info;
    // SAFETY: si_code is the third int of a siginfo_t.
    unsafe {
        let code = (&raw mut info).cast::<c_int>().add(2);
        if *code >= 0 || *code == libc::SI_TKILL {
            *code = libc::SI_QUEUE;
        }
    }
    // SAFETY: getpid has no preconditions; rt_sigqueueinfo to our own process with a valid
    // siginfo; trapped directly.
    let r = unsafe {
        flexsc_threads::kmod::raw::syscall6(
            libc::SYS_rt_sigqueueinfo as u64,
            &[
                libc::getpid() as u64,
                sig as u64,
                &raw const info as u64,
                0,
                0,
                0,
            ],
        )
    };
    if r < 0 {
        log_once(&format!(
            "libflexsc: signal {sig} lost: re-queueing it failed ({r})\n"
        ));
    }
}

fn log_once(msg: &str) {
    static ONCE: Once = Once::new();
    // SAFETY: writes our own buffer to stderr through glibc's write.
    ONCE.call_once(|| unsafe {
        real::write()(2, msg.as_ptr().cast(), msg.len());
    });
}
