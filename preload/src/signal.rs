//! Signals aimed at green threads: `pthread_kill`, per-green-thread masks (`pthread_sigmask`,
//! `sigprocmask`), and the `sigwait` family.
//!
//! The kernel only knows the carriers, so a signal for one green thread is kept here: it is
//! made pending on that green thread, which is then interrupted ([`Interrupter`]): its system
//! call in flight ends early, or its next one does. The green thread runs the handler itself,
//! on its own stack and TLS, when its call returns inside the library ([`after_call`]); the call
//! then returns `EINTR`, or is restarted when every handler that ran has `SA_RESTART` (and the
//! call is one Linux restarts), or when no handler ran at all (the signal was blocked or
//! ignored: the interruption stays invisible), as the kernel does.
//!
//! A green thread's mask is its own: `pthread_sigmask` on a green thread changes it here and never
//! the carrier's, and a new green thread starts with its creator's mask. A pending signal it
//! blocks waits until it is unblocked. A signal whose action is the default one is raised on the
//! process, where the kernel applies it (terminate, stop, core), unless it is ignored by default.
//!
//! `sigwait`, `sigwaitinfo` and `sigtimedwait` on a green thread park it instead of its carrier:
//! a signal sent to it wakes it at once, a process-directed one pending in the kernel is taken
//! with a zero-timeout `rt_sigtimedwait` within 10 ms (the kernel cannot wake a green thread).
//!
//! Process-directed signals that no glibc thread lets in are routed here by
//! [`crate::process_signal`] ([`route`]): to a green thread waiting for them in `sigwait`, else
//! to one whose mask lets them in, as a signal sent to it with the kernel's siginfo.
//!
//! A green thread parked in a synchronisation object of the library (mutex, condvar, rwlock,
//! barrier, once, semaphore) runs the handler there: a mutex wait then goes on (never
//! `EINTR`), a condvar wait returns as a spurious wake-up, `sem_wait` fails with `EINTR` unless
//! every handler that ran has `SA_RESTART` (`sem_timedwait` even then, as Linux's timed futex
//! wait); deadlines stay as they were (`sync::wait`).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flexsc_threads::Interrupter;
use libc::{c_int, pthread_t, sigset_t};

use crate::fork_table::ForkTable;
use crate::{real, rt};

/// One green thread's signal state.
struct SigState {
    /// Signals sent to it and not yet handled (bit `n - 1` for signal `n`).
    pending: AtomicU64,
    /// Signals it blocks.
    mask: AtomicU64,
    /// The siginfo of signals sent with `pthread_sigqueue` or routed from the process
    /// ([`crate::process_signal`]), in sending order (each one's bit is also in `pending` until
    /// the last is delivered).
    queued: Mutex<VecDeque<(c_int, libc::siginfo_t)>>,
    /// The set it waits for in the `sigwait` family (0 when not waiting).
    waiting: AtomicU64,
    interrupter: Interrupter,
}

// SAFETY: a siginfo's pointers (a sigval, a fault address) are values the application or the
// kernel sends along; we only copy them.
unsafe impl Send for SigState {}
// SAFETY: as above; every field is behind an atomic or a mutex.
unsafe impl Sync for SigState {}

/// Live green threads' signal states, by `pthread_t` (fresh in each fork child).
static TABLE: ForkTable<HashMap<pthread_t, Arc<SigState>>> = ForkTable::new();

/// In a fork child: the parent's green threads are gone.
pub(crate) fn reset_after_fork() {
    TABLE.reset_after_fork();
}

thread_local! {
    /// The running green thread's state (each green thread has its own TLS block); null on OS
    /// threads. Points into the table's `Arc`, which the green thread itself removes last.
    static MINE: Cell<*const SigState> = const { Cell::new(std::ptr::null()) };
}

fn mine() -> Option<&'static SigState> {
    let p = MINE.with(Cell::get);
    // SAFETY: set by `register` to an Arc the table holds until `unregister`, which the same
    // green thread calls at its end, after which it makes no more calls through here.
    (!p.is_null()).then(|| unsafe { &*p })
}

fn bit(sig: c_int) -> u64 {
    1 << (sig - 1)
}

/// Signals no mask can block (and glibc's internal ones, which no program may block either).
const UNBLOCKABLE: u64 = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1)) | (0b11 << 31);

/// glibc's cancellation and setxid signals, which `pthread_kill` refuses.
fn internal(sig: c_int) -> bool {
    sig == 32 || sig == 33
}

/// The calling thread's mask, as a green thread's first mask: its own if it is a green thread,
/// else the kernel's.
pub(crate) fn creator_mask() -> u64 {
    if let Some(s) = mine() {
        return s.mask.load(Ordering::Relaxed);
    }
    // SAFETY: an empty sigset is a valid out-parameter; SIG_BLOCK with a null set only reads.
    unsafe {
        let mut old: sigset_t = std::mem::zeroed();
        real::pthread_sigmask()(libc::SIG_BLOCK, std::ptr::null(), &mut old);
        to_bits(&old)
    }
}

/// The calling green thread's mask, as a set; `None` on other threads.
pub(crate) fn green_mask() -> Option<sigset_t> {
    let st = mine()?;
    // SAFETY: a zeroed sigset is valid; from_bits fills it.
    let mut set: sigset_t = unsafe { std::mem::zeroed() };
    from_bits(st.mask.load(Ordering::Relaxed), &mut set);
    Some(set)
}

/// In a child forked by a green thread (async-signal-safe): the kernel mask becomes the green
/// thread's (the carrier's was copied), and the thread has no green state any more.
pub(crate) fn forget_in_child() {
    let Some(st) = mine() else {
        return;
    };
    let bits = st.mask.load(Ordering::Relaxed);
    MINE.with(|m| m.set(std::ptr::null()));
    // SAFETY: rt_sigprocmask with a mask of our own (the kernel's 8-byte set), trapped directly.
    unsafe {
        flexsc_threads::kmod::raw::syscall6(
            libc::SYS_rt_sigprocmask as u64,
            &[
                libc::SIG_SETMASK as u64,
                &bits as *const u64 as u64,
                0,
                8,
                0,
                0,
            ],
        )
    };
}

/// What a green thread waiting in a synchronisation object does with signals sent to it.
struct WaitHooks;

impl crate::sync::wait::Signals for WaitHooks {
    fn interrupted(&self, restartable: bool) -> bool {
        after_call(-i64::from(libc::EINTR), restartable).is_some()
    }
}

/// Called by a new green thread first: records its state, starting with `mask`.
pub(crate) fn register(mask: u64) {
    let _ = crate::sync::wait::SIGNALS.set(&WaitHooks);
    let Some(interrupter) = Interrupter::current() else {
        return;
    };
    let st = Arc::new(SigState {
        pending: AtomicU64::new(0),
        mask: AtomicU64::new(mask & !UNBLOCKABLE),
        queued: Mutex::new(VecDeque::new()),
        waiting: AtomicU64::new(0),
        interrupter,
    });
    MINE.with(|m| m.set(Arc::as_ptr(&st)));
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    TABLE.lock().get_or_insert_with(HashMap::new).insert(me, st);
}

/// Called by a green thread last: signals sent to it from now on are dropped, as glibc drops
/// those sent to a thread that has exited.
pub(crate) fn unregister() {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    MINE.with(|m| m.set(std::ptr::null()));
    if let Some(t) = TABLE.lock().as_mut() {
        t.remove(&me);
    }
}

/// `pthread_kill` (`@@GLIBC_2.34`, [`crate::versions`]): to a green thread, made pending there
/// and the thread interrupted; to anything else, glibc's.
///
/// # Safety
/// As `pthread_kill(3)`.
#[unsafe(export_name = "__flexsc_pthread_kill")]
pub unsafe extern "C" fn pthread_kill(thread: pthread_t, sig: c_int) -> c_int {
    // SAFETY: forwarded unchanged when the thread is not ours.
    send(thread, sig, None, || unsafe {
        real::pthread_kill()(thread, sig)
    })
}

/// `pthread_kill@GLIBC_2.2.5`, for programs linked before glibc 2.34: as [`pthread_kill`], but
/// `ESRCH` for a thread that has exited and is not joined yet.
///
/// # Safety
/// As `pthread_kill(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __flexsc_pthread_kill_esrch(thread: pthread_t, sig: c_int) -> c_int {
    if crate::pthread::green_finished(thread) == Some(true) {
        return libc::ESRCH;
    }
    // SAFETY: forwarded unchanged when the thread is not ours.
    send(thread, sig, None, || unsafe {
        real::pthread_kill_esrch()(thread, sig)
    })
}

/// `pthread_sigqueue`: as [`pthread_kill`], with a value; real-time signals queue (each one sent
/// is delivered, in order, with its value), others merge as with `pthread_kill`.
///
/// # Safety
/// As `pthread_sigqueue(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_sigqueue(
    thread: pthread_t,
    sig: c_int,
    value: libc::sigval,
) -> c_int {
    // SAFETY: forwarded unchanged when the thread is not ours.
    send(thread, sig, Some(siginfo(sig, Some(value))), || unsafe {
        real::pthread_sigqueue()(thread, sig, value)
    })
}

/// Sends `sig` (with `info` if queued) to `thread` if it is a green thread, else `native()`.
fn send(
    thread: pthread_t,
    sig: c_int,
    info: Option<libc::siginfo_t>,
    native: impl FnOnce() -> c_int,
) -> c_int {
    let target = loop {
        let found = {
            let _lib = rt::InLib::enter();
            TABLE.lock().as_ref().and_then(|t| t.get(&thread).cloned())
        };
        if let Some(t) = found {
            break t;
        }
        match crate::pthread::green_finished(thread) {
            // Not ours: glibc's thread, or glibc's error.
            None => return native(),
            // Exited, not yet joined: glibc (2.34 on) reports success and sends nothing.
            Some(true) => {
                return if (0..=64).contains(&sig) && !internal(sig) {
                    0
                } else {
                    libc::EINVAL
                };
            }
            // Created, and about to register (its first step) or to finish (its last).
            Some(false) => {
                if rt::on_green_thread() {
                    flexsc_threads::yield_now();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    };
    if !(0..=64).contains(&sig) || internal(sig) {
        return libc::EINVAL;
    }
    if sig == 0 {
        return 0;
    }
    make_pending(&target, sig, info);
    0
}

/// Makes `sig` pending on `target` and gets it handled there: at once when it is the caller,
/// else by interrupting it.
fn make_pending(target: &Arc<SigState>, sig: c_int, info: Option<libc::siginfo_t>) {
    if let Some(info) = info {
        let _lib = rt::InLib::enter();
        let mut q = target.queued.lock().unwrap_or_else(|e| e.into_inner());
        // A standard signal already pending merges (and keeps its first siginfo).
        if sig >= libc::SIGRTMIN() || !q.iter().any(|&(s, _)| s == sig) {
            q.push_back((sig, info));
        }
    }
    target.pending.fetch_or(bit(sig), Ordering::SeqCst);
    if mine().is_some_and(|m| std::ptr::eq(m, &**target)) {
        // To itself: handled before the call returns, as the kernel does.
        deliver();
    } else {
        let _lib = rt::InLib::enter();
        target.interrupter.interrupt();
    }
}

/// Whether a green thread would take process-directed `sig` now ([`taker`]).
pub(crate) fn accepted(sig: c_int) -> bool {
    taker(sig).is_some()
}

/// The green thread a process-directed `sig` goes to: one waiting for it in the `sigwait`
/// family, else, if its action does something (a handler, or a default that is not to ignore
/// it), one that does not block it. An ignored signal interrupts nobody: it stays pending for
/// a `sigwait` to come.
fn taker(sig: c_int) -> Option<Arc<SigState>> {
    let _lib = rt::InLib::enter();
    let table = TABLE.lock();
    let states = table.as_ref()?.values();
    let waiting = states
        .clone()
        .find(|st| st.waiting.load(Ordering::SeqCst) & bit(sig) != 0);
    waiting
        .or_else(|| {
            if ignored_now(sig) {
                return None;
            }
            states
                .clone()
                .find(|st| st.mask.load(Ordering::Relaxed) & bit(sig) == 0)
        })
        .cloned()
}

/// Whether `sig`'s action now is to ignore it.
fn ignored_now(sig: c_int) -> bool {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only reads.
    let act = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut act);
        act
    };
    act.sa_sigaction == libc::SIG_IGN
        || (act.sa_sigaction == libc::SIG_DFL && ignored_by_default(sig))
}

/// A process-directed signal (taken by [`crate::process_signal`]) for the green threads, to
/// its [`taker`]. False when there is none.
pub(crate) fn route(sig: c_int, info: libc::siginfo_t) -> bool {
    match taker(sig) {
        Some(t) => {
            make_pending(&t, sig, Some(info));
            true
        }
        None => false,
    }
}

/// `sigpending`: on a green thread, the signals sent to it and blocked, with those pending for
/// the process (and its carrier, which blocks what it does not handle).
///
/// # Safety
/// As `sigpending(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigpending(set: *mut sigset_t) -> c_int {
    // SAFETY: forwarded unchanged.
    let r = unsafe { real::sigpending()(set) };
    if r == 0 && rt::application_caller() {
        if let Some(st) = mine() {
            // SAFETY: the kernel just filled `set`.
            let kernel = to_bits(unsafe { &*set });
            let mine = st.pending.load(Ordering::SeqCst) & st.mask.load(Ordering::Relaxed);
            // SAFETY: the caller's contract.
            from_bits(kernel | mine, unsafe { &mut *set });
        }
    }
    r
}

/// `pthread_sigmask`: a green thread's own mask; glibc's elsewhere.
///
/// # Safety
/// As `pthread_sigmask(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_sigmask(
    how: c_int,
    set: *const sigset_t,
    old: *mut sigset_t,
) -> c_int {
    match mine().filter(|_| rt::application_caller()) {
        // SAFETY: the caller's contract.
        Some(st) => unsafe { change_mask(st, how, set, old) },
        // SAFETY: forwarded unchanged.
        None => unsafe { real::pthread_sigmask()(how, set, old) },
    }
}

/// `sigprocmask`: in a process with green threads, the calling green thread's mask (what glibc
/// does with threads too: the calling thread's).
///
/// # Safety
/// As `sigprocmask(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigprocmask(
    how: c_int,
    set: *const sigset_t,
    old: *mut sigset_t,
) -> c_int {
    match mine().filter(|_| rt::application_caller()) {
        // SAFETY: the caller's contract.
        Some(st) => match unsafe { change_mask(st, how, set, old) } {
            0 => 0,
            e => fail(e),
        },
        // SAFETY: forwarded unchanged.
        None => unsafe { real::sigprocmask()(how, set, old) },
    }
}

/// # Safety
/// `set` null or a valid sigset, `old` null or writable.
unsafe fn change_mask(
    st: &SigState,
    how: c_int,
    set: *const sigset_t,
    old: *mut sigset_t,
) -> c_int {
    let was = st.mask.load(Ordering::Relaxed);
    if !set.is_null() {
        // SAFETY: the caller's contract.
        let bits = to_bits(unsafe { &*set });
        let now = match how {
            libc::SIG_BLOCK => was | bits,
            libc::SIG_UNBLOCK => was & !bits,
            libc::SIG_SETMASK => bits,
            _ => return libc::EINVAL,
        };
        st.mask.store(now & !UNBLOCKABLE, Ordering::Relaxed);
        crate::process_signal::green_unblocked(was & !now);
    }
    if !old.is_null() {
        // SAFETY: the caller's contract.
        unsafe { from_bits(was, &mut *old) };
    }
    // Signals it just unblocked are handled before the call returns.
    if st.pending.load(Ordering::SeqCst) & !st.mask.load(Ordering::Relaxed) != 0 {
        deliver();
    }
    0
}

fn to_bits(set: &sigset_t) -> u64 {
    (1..=64)
        // SAFETY: sigismember only reads the set.
        .filter(|&s| unsafe { libc::sigismember(set, s) } == 1)
        .fold(0, |m, s| m | bit(s))
}

fn from_bits(bits: u64, set: &mut sigset_t) {
    // SAFETY: sigemptyset/sigaddset write the set we were given; signals 1..=64 are valid.
    unsafe {
        libc::sigemptyset(set);
        for s in (1..=64).filter(|&s| bits & bit(s) != 0) {
            libc::sigaddset(set, s);
        }
    }
}

/// `sigwait`: on a green thread, waits without holding its carrier (see [`wait_for`]).
///
/// # Safety
/// As `sigwait(3)`: `set` a valid set, `sig` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn sigwait(set: *const sigset_t, sig: *mut c_int) -> c_int {
    if mine().is_none() || !rt::application_caller() {
        // SAFETY: forwarded unchanged.
        return unsafe { real::sigwait()(set, sig) };
    }
    // SAFETY: the caller's contract.
    let bits = to_bits(unsafe { &*set });
    loop {
        match wait_for(bits, None) {
            Ok((s, _)) => {
                // SAFETY: the caller's contract.
                unsafe { *sig = s };
                return 0;
            }
            // sigwait does not fail with EINTR: a handler ran, wait on.
            Err(libc::EINTR) => continue,
            Err(e) => return e,
        }
    }
}

/// `sigwaitinfo`: on a green thread, as [`sigtimedwait`] without a timeout.
///
/// # Safety
/// As `sigwaitinfo(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn sigwaitinfo(
    set: *const sigset_t,
    info: *mut libc::siginfo_t,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { sigtimedwait(set, info, std::ptr::null()) }
}

/// `sigtimedwait`: on a green thread, waits for a signal of `set` sent to it or to the process
/// without holding its carrier (see [`wait_for`]); `EAGAIN` at the timeout, `EINTR` if a handler
/// of another signal ran meanwhile.
///
/// # Safety
/// As `sigtimedwait(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn sigtimedwait(
    set: *const sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> c_int {
    if mine().is_none() || !rt::application_caller() {
        // SAFETY: forwarded unchanged.
        return unsafe { real::sigtimedwait()(set, info, timeout) };
    }
    let deadline = if timeout.is_null() {
        None
    } else {
        // SAFETY: the caller's contract.
        match crate::io::duration(unsafe { &*timeout }) {
            Ok(d) => Some(Instant::now() + d),
            Err(e) => return fail(e),
        }
    };
    // SAFETY: the caller's contract.
    let bits = to_bits(unsafe { &*set });
    match wait_for(bits, deadline) {
        Ok((s, got)) => {
            if !info.is_null() {
                // SAFETY: the caller's contract.
                unsafe { *info = got };
            }
            s
        }
        Err(e) => fail(e),
    }
}

/// -1 with `errno`.
fn fail(e: c_int) -> c_int {
    crate::io::set_errno(e);
    -1
}

/// Longest a green thread in `sigwait` goes without looking for process-directed signals.
const SIGWAIT_POLL_MAX: Duration = Duration::from_millis(10);

/// The wait of the `sigwait` family on a green thread: takes a signal of `set` sent to this green
/// thread ([`pthread_kill`]), or pending for the process (or its carrier) in the kernel, taken
/// with a zero-timeout `rt_sigtimedwait`. Between looks the green thread parks, so its carrier
/// runs others: a signal sent to it wakes it at once; process-directed ones are seen within
/// [`SIGWAIT_POLL_MAX`] (the kernel has no way to wake a green thread for them).
/// A cancellation point (`cancel.rs`; a request ends the park through the interrupter).
fn wait_for(set: u64, deadline: Option<Instant>) -> Result<(c_int, libc::siginfo_t), c_int> {
    let st = mine().expect("a green thread");
    let set = set & !UNBLOCKABLE;
    st.waiting.store(set, Ordering::SeqCst);
    crate::process_signal::green_unblocked(set);
    let got = wait_for_set(st, set, deadline);
    st.waiting.store(0, Ordering::SeqCst);
    got
}

fn wait_for_set(
    st: &SigState,
    set: u64,
    deadline: Option<Instant>,
) -> Result<(c_int, libc::siginfo_t), c_int> {
    let mut nap = Duration::from_millis(1);
    loop {
        crate::cancel::point();
        if let Some(got) = take_sent(st, set) {
            return Ok(got);
        }
        // SAFETY: zeroed siginfo and sigset are valid; a zero timeout makes the call a poll; the
        // call is trapped here (the exported `syscall` would post it to another thread).
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let mut kset: sigset_t = std::mem::zeroed();
            from_bits(set, &mut kset);
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let args = [
                &kset as *const sigset_t as u64,
                &mut info as *mut libc::siginfo_t as u64,
                &zero as *const libc::timespec as u64,
                8,
                0,
                0,
            ];
            let r = flexsc_threads::kmod::raw::syscall6(libc::SYS_rt_sigtimedwait as u64, &args);
            if r > 0 {
                return Ok((r as c_int, info));
            }
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(libc::EAGAIN);
        }
        let wake = deadline.map_or(now + nap, |d| d.min(now + nap));
        {
            let _lib = rt::InLib::enter();
            flexsc_threads::park_deadline(wake);
        }
        // A signal of the set sent meanwhile is taken above, before its handler could run.
        if st.pending.load(Ordering::SeqCst) & set == 0 && handled_any() {
            return Err(libc::EINTR);
        }
        nap = (nap * 2).min(SIGWAIT_POLL_MAX);
    }
}

/// Takes the lowest signal of `set` sent to this green thread, with its siginfo.
fn take_sent(st: &SigState, set: u64) -> Option<(c_int, libc::siginfo_t)> {
    loop {
        let ready = st.pending.load(Ordering::SeqCst) & set;
        if ready == 0 {
            return None;
        }
        let sig = ready.trailing_zeros() as c_int + 1;
        let Some(info) = take_one(st, sig) else {
            continue;
        };
        return Some((sig, info.unwrap_or_else(|| siginfo(sig, None))));
    }
}

/// Takes one instance of pending `sig` (and its queued siginfo, if any): None if another taker
/// got it first.
fn take_one(st: &SigState, sig: c_int) -> Option<Option<libc::siginfo_t>> {
    let mut q = st.queued.lock().unwrap_or_else(|e| e.into_inner());
    let value = q
        .iter()
        .position(|&(s, _)| s == sig)
        .and_then(|i| q.remove(i))
        .map(|(_, v)| v);
    // Another queued instance keeps the signal pending.
    if !q.iter().any(|&(s, _)| s == sig)
        && st.pending.fetch_and(!bit(sig), Ordering::SeqCst) & bit(sig) == 0
    {
        return None;
    }
    Some(value)
}

/// The siginfo a `tgkill` (or, with a value, an `rt_tgsigqueueinfo`) from this process gives.
fn siginfo(sig: c_int, value: Option<libc::sigval>) -> libc::siginfo_t {
    // SAFETY: a zeroed siginfo_t is valid; the fields written are those of its `_rt` member at
    // their x86_64 offsets: si_signo, si_errno, si_code, then (after padding) si_pid, si_uid
    // and, 8-byte aligned, si_value.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let raw = &mut info as *mut libc::siginfo_t as *mut c_int;
        *raw = sig;
        *raw.add(2) = if value.is_some() {
            libc::SI_QUEUE
        } else {
            libc::SI_TKILL
        };
        *raw.add(4) = libc::getpid();
        *raw.add(5) = libc::getuid() as c_int;
        if let Some(v) = value {
            *(raw.add(6) as *mut libc::sigval) = v;
        }
        info
    }
}

/// What running the pending signals did.
#[derive(Clone, Copy, Debug, Default)]
struct Ran {
    /// Some handler ran.
    any: bool,
    /// Every handler that ran has `SA_RESTART`.
    all_restart: bool,
}

/// After a green thread's system call returned `r` (a raw result): runs the handlers of the
/// signals pending on it, and says whether to restart the call (`None`) or return `r`.
/// `restartable`: Linux restarts this call after an `SA_RESTART` handler.
pub(crate) fn after_call(r: i64, restartable: bool) -> Option<i64> {
    if !flexsc_threads::take_interrupt() && r != -i64::from(libc::EINTR) {
        return Some(r);
    }
    let ran = deliver();
    let interrupted = r == -i64::from(libc::EINTR);
    if interrupted && (!ran.any || (restartable && ran.all_restart)) {
        return None;
    }
    Some(r)
}

/// After a green thread's park returned: runs the handlers of the signals sent to it meanwhile;
/// true if one ran (an interruptible wait then ends with `EINTR`).
pub(crate) fn handled_any() -> bool {
    flexsc_threads::take_interrupt() && deliver().any
}

/// Runs the handlers of the calling green thread's deliverable pending signals.
fn deliver() -> Ran {
    let mut ran = Ran {
        any: false,
        all_restart: true,
    };
    let Some(st) = mine() else {
        return ran;
    };
    loop {
        let mask = st.mask.load(Ordering::Relaxed);
        let ready = st.pending.load(Ordering::SeqCst) & !mask;
        if ready == 0 {
            return ran;
        }
        let sig = ready.trailing_zeros() as c_int + 1;
        let Some(info) = take_one(st, sig) else {
            continue;
        };
        let info = info.unwrap_or_else(|| siginfo(sig, None));
        if let Some(restart) = run_action(st, sig, info) {
            ran.any = true;
            ran.all_restart &= restart;
        }
    }
}

/// Signals whose default action is to do nothing.
fn ignored_by_default(sig: c_int) -> bool {
    matches!(
        sig,
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH
    )
}

/// Takes `sig`'s action on the calling green thread: `Some(SA_RESTART?)` if a handler ran.
fn run_action(st: &SigState, sig: c_int, info: libc::siginfo_t) -> Option<bool> {
    // SAFETY: a zeroed sigaction is a valid out-parameter; a null new action only reads.
    let act = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut act);
        act
    };
    match act.sa_sigaction {
        libc::SIG_IGN => None,
        libc::SIG_DFL if ignored_by_default(sig) => None,
        libc::SIG_DFL => {
            raise_on_process(sig);
            None
        }
        handler => {
            let was = st.mask.load(Ordering::Relaxed);
            let mut block = to_bits(&act.sa_mask);
            if act.sa_flags & libc::SA_NODEFER == 0 {
                block |= bit(sig);
            }
            st.mask
                .store((was | block) & !UNBLOCKABLE, Ordering::Relaxed);
            if act.sa_flags & libc::SA_RESETHAND != 0 {
                // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask.
                unsafe {
                    let dfl: libc::sigaction = std::mem::zeroed();
                    libc::sigaction(sig, &dfl, std::ptr::null_mut());
                }
            }
            call_handler(handler, sig, info, act.sa_flags & libc::SA_SIGINFO != 0);
            st.mask.store(was, Ordering::Relaxed);
            Some(act.sa_flags & libc::SA_RESTART != 0)
        }
    }
}

/// Calls a handler as the kernel would, with `info`.
fn call_handler(handler: usize, sig: c_int, mut info: libc::siginfo_t, siginfo: bool) {
    if siginfo {
        // SAFETY: a zeroed ucontext_t is valid and getcontext fills it from the calling thread;
        // the handler was installed with SA_SIGINFO, so it has the three-argument form.
        unsafe {
            let mut uc: libc::ucontext_t = std::mem::zeroed();
            libc::getcontext(&mut uc);
            let f: extern "C-unwind" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                std::mem::transmute(handler);
            f(sig, &mut info, (&mut uc as *mut libc::ucontext_t).cast());
        }
    } else {
        // SAFETY: an installed handler of the classic form.
        let f: extern "C-unwind" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

/// A signal with its default action: raised on this carrier thread, unblocked there, so the
/// kernel applies the action to the process.
fn raise_on_process(sig: c_int) {
    // SAFETY: unblocking one signal on the calling thread and signalling it are always valid.
    unsafe {
        let mut set: sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        real::pthread_sigmask()(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        // Trapped directly: the exported `syscall` would post it to another thread.
        let args = [
            libc::getpid() as u64,
            crate::sched::kernel_tid() as u64,
            sig as u64,
            0,
            0,
            0,
        ];
        flexsc_threads::kmod::raw::syscall6(libc::SYS_tgkill as u64, &args);
    }
}
