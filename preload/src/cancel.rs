//! Thread cancellation on green threads: `pthread_cancel`, `pthread_testcancel`,
//! `pthread_setcancelstate`, `pthread_setcanceltype`, and the cleanup-handler machinery the
//! `pthread_cleanup_push`/`pop` macros call (`__pthread_register_cancel`,
//! `__pthread_unregister_cancel`, their `_defer`/`_restore` forms, `__pthread_unwind_next`, and
//! the old `_pthread_cleanup_push`/`_pop` family). On any other thread (glibc's own, before the
//! runtime, the runtime's internal ones) each of them is glibc's.
//!
//! Each green thread has a [`State`], reachable by `pthread_t` from any thread: its cancel state
//! (enabled or disabled), a pending request, and "exiting" once it is ending (no request acts
//! again then, as in glibc). Only deferred cancellation exists: a request acts at a cancellation
//! point ([`point`]): the blocking wrappers of `io.rs` that glibc makes cancellation points (all
//! but `sendfile` and `flock`), the sleeps, the `sigwait` family, `pthread_join`,
//! `pthread_cond_wait`/`timedwait`/`clockwait`, `sem_wait`/`timedwait`/`clockwait` and
//! `pthread_testcancel`, before the call and when a request cut it short. `pthread_cancel` cuts
//! short what the thread waits for: its system call in flight or its park, through its
//! [`Interrupter`], and its wait in the futex table (condition variable, semaphore), which it
//! registered ([`Hooks`]) and which is woken until the thread has left it (the object's
//! other waiters see a spurious wake-up). A condition variable waiter takes its mutex back before
//! acting, as POSIX says.
//!
//! glibc's own threads keep glibc's cancellation, but the condition variables and semaphores are
//! this library's for them too: their waits there are cancellation points as well (glibc's
//! `pthread_testcancel` acts), and `pthread_cancel` of a glibc thread wakes its wait there as
//! above, knowing from glibc's `cancelhandling` whether a request is pending.
//!
//! Acting, and `pthread_exit`, end the thread as glibc does ([`exit`]): a forced unwind
//! (`_Unwind_ForcedUnwind`) from the calling frame, so C++ destructors run and a C++
//! `catch (...)` (or `catch (abi::__forced_unwind&)`) that rethrows works; C cleanup handlers
//! are longjmp targets: when the unwinding reaches the frame of the innermost registered
//! buffer, it jumps into its `pthread_cleanup_push`, which runs the handler and calls
//! `__pthread_unwind_next` to go on with the next buffer (glibc's `nptl/unwind.c`). At the green
//! thread's base frame ([`base`]) the unwinding becomes the Rust panic that `pthread.rs` catches
//! there; the thread's join value is `PTHREAD_CANCELED` (or `pthread_exit`'s), and its
//! thread-specific data destructors run as the thread ends.
//!
//! Asynchronous cancellation cannot be honoured (a green thread is never preempted): on a green
//! thread `pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS)` fails with `ENOTSUP` (one line on
//! stderr, once).

use std::cell::{Cell, UnsafeCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use flexsc_threads::Interrupter;
use flexsc_threads::futex::{self, BITSET_MATCH_ANY};
use libc::{c_int, pthread_t};

use crate::fork_table::ForkTable;
use crate::real;
use crate::rt::{self, InLib};
use crate::sync::wait::{CANCELLATION, Cancellation};

/// `State::flags`: a cancellation request is pending.
const CANCELED: u32 = 1;
/// `State::flags`: cancellation is disabled (`PTHREAD_CANCEL_DISABLE`).
const DISABLED: u32 = 2;
/// `State::flags`: the thread is ending (`pthread_exit`, or a request acting): no request acts
/// again.
const EXITING: u32 = 4;

/// glibc's `cancelhandling` bits (nptl/descr.h): cancellation disabled, a request pending, the
/// thread exiting, terminated.
const GLIBC_CANCELSTATE: i32 = 1 << 0;
const GLIBC_CANCELED: i32 = 1 << 3;
const GLIBC_EXITING: i32 = 1 << 4;
const GLIBC_TERMINATED: i32 = 1 << 5;

/// `PTHREAD_CANCELED`, the join value of a cancelled thread.
const PTHREAD_CANCELED: usize = usize::MAX;
/// pthread.h's cancel states and types (the libc crate does not have them).
const PTHREAD_CANCEL_ENABLE: c_int = 0;
const PTHREAD_CANCEL_DISABLE: c_int = 1;
const PTHREAD_CANCEL_DEFERRED: c_int = 0;
const PTHREAD_CANCEL_ASYNCHRONOUS: c_int = 1;

/// One green thread's cancellation state, shared with the threads that cancel it.
pub(crate) struct State {
    /// [`CANCELED`], [`DISABLED`], [`EXITING`].
    flags: AtomicU32,
    /// The futex-table word the thread waits on in a cancellable wait ([`Hooks`]); 0: none.
    waiting: AtomicUsize,
    /// Its interrupter, from its first step on.
    interrupter: Mutex<Option<Interrupter>>,
    /// The thread has ended: it is not put (back) in the table. Changed under the table's lock.
    ended: AtomicBool,
}

impl State {
    /// `pthread_cancel` of this thread.
    fn cancel(&self) {
        let old = self.flags.fetch_or(CANCELED, Ordering::SeqCst);
        // Already requested, disabled (acted on once enabled, at a cancellation point), ending,
        // or a thread cancelling itself (it acts at its next cancellation point).
        if old & (CANCELED | DISABLED | EXITING) != 0
            || mine().is_some_and(|m| std::ptr::eq(m, self))
        {
            return;
        }
        let _lib = InLib::enter();
        let interrupter = lock(&self.interrupter).clone();
        if let Some(i) = interrupter {
            i.interrupt();
        }
        // A wait in the futex table ignores the interrupter: wake it until the thread has left
        // it (it may have seen no request yet, and not be queued yet, when woken first).
        wake_until(|| {
            let word = self.waiting.load(Ordering::SeqCst);
            (word != 0).then_some(word)
        });
    }
}

/// Wakes the futex-table waiters of the word `waiting()` gives until it gives none (the thread
/// cancelled has left its wait), yielding in between.
fn wake_until(waiting: impl Fn() -> Option<usize>) {
    // The table's locks are std's: their futex calls must reach the kernel.
    let _lib = InLib::enter();
    while let Some(word) = waiting() {
        // Only the address is used (`Invalid` only for an unaligned one, which no object has).
        let _ = futex::wake(word as *const AtomicU32, u32::MAX, BITSET_MATCH_ANY);
        if rt::on_green_thread() {
            flexsc_threads::yield_now();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Locks `m`, whose data stays consistent whoever panicked holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who can be cancelled, by `pthread_t`.
#[derive(Default)]
struct Tables {
    /// Live green threads' states.
    green: HashMap<pthread_t, Arc<State>>,
    /// glibc threads inside a cancellable wait ([`Hooks`]): the word, and the wait's number
    /// (`Local::waits`).
    glibc_waits: HashMap<pthread_t, (usize, u64)>,
}

/// The [`Tables`] (fresh in each fork child; lock it as the library's own code, [`InLib`]: its
/// lock is std's).
static TABLE: ForkTable<Tables> = ForkTable::new();

/// In a fork child: the parent's green threads are gone, the table's lock may have been held at
/// the fork (the old table is leaked), and the thread that forked is no longer a green thread.
pub(crate) fn reset_after_fork() {
    TABLE.reset_after_fork();
    LOCAL.with(|l| l.state.set(std::ptr::null()));
}

/// Makes the synchronisation objects' waits cancellation points ([`Hooks`]): done before the
/// first thread is created, and before the first request.
pub(crate) fn install() {
    let _lib = InLib::enter();
    let _ = CANCELLATION.set(&Hooks);
}

/// The state of a green thread about to be created (see [`publish`] and [`register`]).
pub(crate) fn new_state() -> Arc<State> {
    Arc::new(State {
        flags: AtomicU32::new(0),
        waiting: AtomicUsize::new(0),
        interrupter: Mutex::new(None),
        ended: AtomicBool::new(false),
    })
}

/// Makes `st` the state of green thread `id`, unless that thread has already ended: done by its
/// creator once it knows the id, and by the thread itself first, whichever comes first.
pub(crate) fn publish(id: pthread_t, st: &Arc<State>) {
    let _lib = InLib::enter();
    let mut t = TABLE.lock();
    if !st.ended.load(Ordering::Relaxed) {
        t.get_or_insert_with(Tables::default)
            .green
            .insert(id, st.clone());
    }
}

/// Called by a new green thread first (as the library's own code): `st` is its state.
pub(crate) fn register(st: &Arc<State>) {
    *lock(&st.interrupter) = Interrupter::current();
    LOCAL.with(|l| l.state.set(Arc::as_ptr(st)));
    // SAFETY: pthread_self has no preconditions.
    publish(unsafe { libc::pthread_self() }, st);
}

/// Called by a green thread last (as the library's own code): it can no longer be cancelled.
pub(crate) fn unregister() {
    let Some(st) = mine() else {
        return;
    };
    LOCAL.with(|l| l.state.set(std::ptr::null()));
    let mut t = TABLE.lock();
    st.ended.store(true, Ordering::Relaxed);
    if let Some(t) = t.as_mut() {
        // SAFETY: pthread_self has no preconditions.
        t.green.remove(&unsafe { libc::pthread_self() });
    }
}

/// glibc's `struct pthread_unwind_buf` (nptl/descr.h), the public `__pthread_unwind_buf_t`:
/// `__sigsetjmp`'s registers, then the private part.
#[repr(C)]
struct UnwindBuf {
    jmp_buf: [usize; 8],
    mask_was_saved: c_int,
    /// The next outer buffer.
    prev: *mut UnwindBuf,
    /// The innermost old-style buffer when this one was registered.
    old: *mut CleanupBuffer,
}

/// `__jmp_buf`'s saved stack pointer (x86_64 `JB_RSP`).
const JB_RSP: usize = 6;

/// glibc's `struct _pthread_cleanup_buffer` (pthread.h), of the old `_pthread_cleanup_push`
/// (`cancel_type` is the type a `_defer` push saves: always deferred here, never read).
#[repr(C)]
struct CleanupBuffer {
    routine: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
    cancel_type: c_int,
    prev: *mut CleanupBuffer,
}

/// libgcc's `struct _Unwind_Exception`.
#[repr(C, align(16))]
struct Exception {
    class: u64,
    cleanup: Option<extern "C" fn(c_int, *mut Exception)>,
    private: [usize; 2],
}

/// `_Unwind_Action`'s end-of-stack bit.
const UA_END_OF_STACK: c_int = 16;
/// `_URC_NO_REASON`.
const URC_NO_REASON: c_int = 0;

/// A forced unwind's stop function (libgcc's `_Unwind_Stop_Fn`).
type StopFn =
    extern "C-unwind" fn(c_int, c_int, u64, *mut Exception, *mut c_void, *mut c_void) -> c_int;

unsafe extern "C-unwind" {
    /// libgcc's: unwinds from its caller, calling `stop` before each frame.
    fn _Unwind_ForcedUnwind(exc: *mut Exception, stop: StopFn, param: *mut c_void) -> c_int;
}

unsafe extern "C" {
    /// libgcc's: the frame's canonical frame address.
    fn _Unwind_GetCFA(ctx: *mut c_void) -> usize;
    /// libgcc's: the start of the frame's function.
    fn _Unwind_GetRegionStart(ctx: *mut c_void) -> usize;
    /// glibc's (what its cancellation jumps with).
    fn longjmp(env: *mut c_void, val: c_int) -> !;
}

/// What each thread keeps for itself (on a green thread: its own, in its own TLS block).
struct Local {
    /// This green thread's state (null: not a green thread of ours).
    state: Cell<*const State>,
    /// The innermost registered cleanup buffer (glibc's `cleanup_jmp_buf`).
    bufs: Cell<*mut UnwindBuf>,
    /// The innermost old-style one (glibc's `cleanup`).
    old: Cell<*mut CleanupBuffer>,
    /// The value the ending thread is joined with.
    exit: Cell<usize>,
    /// The object of its forced unwind (glibc's `exc`).
    exc: UnsafeCell<Exception>,
    /// How many cancellable waits a glibc thread began ([`Tables::glibc_waits`]).
    waits: Cell<u64>,
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            state: Cell::new(std::ptr::null()),
            bufs: Cell::new(std::ptr::null_mut()),
            old: Cell::new(std::ptr::null_mut()),
            exit: Cell::new(0),
            exc: UnsafeCell::new(Exception {
                class: 0,
                cleanup: None,
                private: [0; 2],
            }),
            waits: Cell::new(0),
        }
    };
}

/// The calling green thread's state; None elsewhere.
fn mine() -> Option<&'static State> {
    let p = LOCAL.with(|l| l.state.get());
    // SAFETY: set by `register` to an Arc its green thread's `run` holds until after
    // `unregister` cleared it.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// A cancellation point: a request pending on the calling green thread, with cancellation
/// enabled, acts here (the thread ends, [`exit`]); on any other thread, glibc's
/// `pthread_testcancel`.
pub(crate) fn point() {
    match mine() {
        Some(st) => {
            if st.flags.load(Ordering::SeqCst) & (CANCELED | DISABLED | EXITING) == CANCELED {
                exit(PTHREAD_CANCELED);
            }
        }
        // SAFETY: no arguments.
        None => unsafe { real::pthread_testcancel()() },
    }
}

/// Whether glibc would act on a request at a cancellation point of the calling glibc thread
/// (`cancel_enabled_and_canceled` of its `cancelhandling`, whose offset in the TCB libc
/// describes in `_thread_db_pthread_cancelhandling`), without acting. False if libc does not
/// describe it.
fn glibc_requested() -> bool {
    static OFFSET: OnceLock<Option<usize>> = OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        // SAFETY: a symbol lookup with NUL-terminated names.
        let p = unsafe {
            libc::dlvsym(
                libc::RTLD_DEFAULT,
                c"_thread_db_pthread_cancelhandling".as_ptr(),
                c"GLIBC_PRIVATE".as_ptr(),
            )
        };
        // SAFETY: a `_thread_db_*` field descriptor is a `const uint32_t[3]` (`db_desc_t`: size
        // in bits, element count, offset) in libc's rodata.
        let [bits, count, offset] =
            (!p.is_null()).then(|| unsafe { p.cast::<[u32; 3]>().read() })?;
        ((bits, count) == (32, 1)).then_some(offset as usize)
    });
    let Some(offset) = offset else {
        return false;
    };
    // SAFETY: pthread_self has no preconditions; the calling thread's TCB holds its `int
    // cancelhandling` at `offset`, which other threads change atomically.
    let value = unsafe {
        (*((libc::pthread_self() as usize + offset) as *const AtomicI32)).load(Ordering::Relaxed)
    };
    value & (GLIBC_CANCELSTATE | GLIBC_CANCELED | GLIBC_EXITING | GLIBC_TERMINATED)
        == GLIBC_CANCELED
}

/// The cancellation points of the synchronisation objects (`sync/wait.rs`).
struct Hooks;

impl Cancellation for Hooks {
    fn point(&self) {
        point();
    }

    /// A thread registers `word`, then looks for a request (the other side: [`State::cancel`]
    /// for a green thread, which registers only with cancellation enabled; [`pthread_cancel`]
    /// for a glibc thread).
    fn enter(&self, word: &AtomicU32) -> bool {
        let word = word.as_ptr() as usize;
        let Some(st) = mine() else {
            let n = LOCAL.with(|l| {
                l.waits.set(l.waits.get() + 1);
                l.waits.get()
            });
            {
                let _lib = InLib::enter();
                // SAFETY: pthread_self has no preconditions.
                let me = unsafe { libc::pthread_self() };
                let mut t = TABLE.lock();
                t.get_or_insert_with(Tables::default)
                    .glibc_waits
                    .insert(me, (word, n));
            }
            return !glibc_requested();
        };
        if st.flags.load(Ordering::Relaxed) & (DISABLED | EXITING) != 0 {
            return true;
        }
        st.waiting.store(word, Ordering::SeqCst);
        st.flags.load(Ordering::SeqCst) & CANCELED == 0
    }

    fn leave(&self) {
        match mine() {
            Some(st) => st.waiting.store(0, Ordering::SeqCst),
            None => {
                let _lib = InLib::enter();
                if let Some(t) = TABLE.lock().as_mut() {
                    // SAFETY: pthread_self has no preconditions.
                    t.glibc_waits.remove(&unsafe { libc::pthread_self() });
                }
            }
        }
    }
}

/// Ends the calling green thread with `value` as its join value: `pthread_exit`, or a request
/// acting (module doc). No request acts from now on.
pub(crate) fn exit(value: usize) -> ! {
    if let Some(st) = mine() {
        st.flags.fetch_or(EXITING, Ordering::SeqCst);
    }
    LOCAL.with(|l| l.exit.set(value));
    unwind(LOCAL.with(|l| l.bufs.get()))
}

/// A forced unwind from the caller's frame to `buf`'s `pthread_cleanup_push` (null: to the
/// green thread's base), as glibc's `__pthread_unwind`.
fn unwind(buf: *mut UnwindBuf) -> ! {
    let exc = LOCAL.with(|l| l.exc.get());
    // SAFETY: this thread's own exception object, reused by each forced unwind of the thread as
    // glibc does (an earlier one was left by a longjmp); `stop` has the stop function's
    // signature and `buf` is null or a buffer registered on this thread, in a live frame.
    unsafe {
        exc.write(Exception {
            class: 0,
            cleanup: Some(not_rethrown),
            private: [0; 2],
        });
        _Unwind_ForcedUnwind(exc, stop, buf.cast());
    }
    fatal("libflexsc: FATAL: the thread could not be unwound for pthread_exit or cancellation\n")
}

/// The forced unwind's exception cleanup: only called when a C++ `catch` ended without
/// rethrowing it, which glibc does not allow either.
extern "C" fn not_rethrown(_reason: c_int, _exc: *mut Exception) {
    fatal("libflexsc: FATAL: exception not rethrown\n")
}

/// One line on stderr, then abort.
fn fatal(msg: &str) -> ! {
    // SAFETY: writes our own buffer to stderr through glibc's write, then aborts.
    unsafe {
        real::write()(2, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}

/// The forced unwind's stop function, called before each frame is unwound (glibc's
/// `unwind_stop`): jumps into `param`'s `pthread_cleanup_push` once the unwinding reaches its
/// frame, runs the old-style handlers of the frames it leaves, and at the green thread's base
/// hands over to the Rust panic `pthread.rs` catches there.
extern "C-unwind" fn stop(
    _version: c_int,
    actions: c_int,
    _class: u64,
    _exc: *mut Exception,
    ctx: *mut c_void,
    param: *mut c_void,
) -> c_int {
    let buf = param.cast::<UnwindBuf>();
    let end = actions & UA_END_OF_STACK != 0;
    // SAFETY: `ctx` is the unwinder's context of the frame about to be unwound; the CFA it gives
    // is that frame's stack pointer at its call (glibc's comment: a function's CFA is not in its
    // own frame).
    let (cfa, func) = unsafe { (_Unwind_GetCFA(ctx), _Unwind_GetRegionStart(ctx)) };
    let at_base = func == base as *const () as usize;
    // SAFETY: a registered buffer lies in a frame not yet left, its registers saved by
    // `__sigsetjmp` on this thread.
    let at_buf = !buf.is_null() && (end || cfa >= unsafe { jmpbuf_sp(buf) });
    let upto = if buf.is_null() {
        std::ptr::null_mut()
    } else {
        // SAFETY: as above.
        unsafe { (*buf).old }
    };
    run_old_handlers(cfa, end || at_buf || at_base, upto);
    if at_buf {
        // SAFETY: the frames between here and the buffer's were unwound (their cleanups ran);
        // the jump lands in its pthread_cleanup_push, which runs its handler and goes on with
        // `__pthread_unwind_next`: glibc's own step. Nothing here needs dropping.
        unsafe { longjmp(buf.cast(), 1) }
    }
    if at_base {
        crate::pthread::unwind_to_base(LOCAL.with(|l| l.exit.get()));
    }
    if end && crate::main_thread::is_green_main() {
        // Green thread 0 has no base of ours: its frames are main's, down to glibc's start,
        // every cleanup among them run now.
        crate::main_thread::end(LOCAL.with(|l| l.exit.get()));
    }
    if end {
        fatal(
            "libflexsc: FATAL: the thread's unwinding found neither a cleanup buffer nor its base\n",
        );
    }
    URC_NO_REASON
}

/// Runs, innermost first, the old-style handlers registered after `upto` whose frames the
/// frame at `cfa` leaves (all of them if `all`), as glibc's `unwind_stop`.
fn run_old_handlers(cfa: usize, all: bool, upto: *mut CleanupBuffer) {
    loop {
        let cur = LOCAL.with(|l| l.old.get());
        if cur.is_null() || cur == upto || !(all || cfa >= cur as usize) {
            return;
        }
        // SAFETY: a buffer registered on this thread by `_pthread_cleanup_push`, in a frame not
        // yet left; it is unlinked before its handler runs.
        unsafe {
            LOCAL.with(|l| l.old.set((*cur).prev));
            ((*cur).routine)((*cur).arg);
        }
    }
}

/// The stack pointer saved in `buf` (glibc mangles it with the thread's pointer guard).
///
/// # Safety
/// `buf` was filled by `__sigsetjmp` on the calling thread.
unsafe fn jmpbuf_sp(buf: *const UnwindBuf) -> usize {
    let guard: usize;
    // SAFETY: reads the pointer guard from the calling thread's TCB (`tcbhead_t`, fs:0x30),
    // which a green thread's TCB holds too.
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0x30]", out(reg) guard,
            options(nostack, readonly, preserves_flags));
    }
    // SAFETY: the caller's contract.
    let mangled = unsafe { (*buf).jmp_buf[JB_RSP] };
    // PTR_DEMANGLE: rotate right by 17, then xor with the guard.
    mangled.rotate_right(0x11) ^ guard
}

/// A green thread's start routine, called from its base frame, where the unwinding of
/// [`exit`] ends ([`stop`] knows the frame by this function's address).
#[inline(never)]
pub(crate) fn base(start: extern "C-unwind" fn(*mut c_void) -> *mut c_void, arg: usize) -> usize {
    // Kept opaque so the call is not a tail call: this frame must stay on the stack.
    std::hint::black_box(start(arg as *mut c_void)) as usize
}

/// `pthread_cancel`: to a green thread, a request (acted on at its next cancellation point, its
/// blocking call or wait cut short); 0 for one that has ended and is not joined yet; anything
/// else glibc's, its wait in a condition variable or semaphore woken.
///
/// # Safety
/// As `pthread_cancel(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_cancel(thread: pthread_t) -> c_int {
    install();
    let target = {
        let _lib = InLib::enter();
        TABLE
            .lock()
            .as_ref()
            .and_then(|t| t.green.get(&thread).cloned())
    };
    if let Some(st) = target {
        st.cancel();
        return 0;
    }
    // Its outcome is settled (glibc 2.34 on: success, nothing done).
    if crate::pthread::green_finished(thread).is_some() {
        return 0;
    }
    // SAFETY: forwarded unchanged.
    let r = unsafe { real::pthread_cancel()(thread) };
    if r == 0 {
        // Its wait that has begun: the glibc thread saw no request when it began, or it would not
        // wait (see `Hooks::enter`).
        let glibc_wait = || {
            let _lib = InLib::enter();
            TABLE
                .lock()
                .as_ref()
                .and_then(|t| t.glibc_waits.get(&thread).copied())
        };
        if let Some(first) = glibc_wait() {
            wake_until(|| (glibc_wait() == Some(first)).then_some(first.0));
        }
    }
    r
}

/// `pthread_testcancel`: a cancellation point.
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pthread_testcancel() {
    point();
}

/// `pthread_setcancelstate`: on a green thread its own state (a pending request acts at the
/// next cancellation point once enabled).
///
/// # Safety
/// As `pthread_setcancelstate(3)`: `old` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_setcancelstate(state: c_int, old: *mut c_int) -> c_int {
    let Some(st) = mine() else {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_setcancelstate()(state, old) };
    };
    let was = match state {
        PTHREAD_CANCEL_ENABLE => st.flags.fetch_and(!DISABLED, Ordering::SeqCst),
        PTHREAD_CANCEL_DISABLE => st.flags.fetch_or(DISABLED, Ordering::SeqCst),
        _ => return libc::EINVAL,
    };
    if !old.is_null() {
        let was = if was & DISABLED != 0 {
            PTHREAD_CANCEL_DISABLE
        } else {
            PTHREAD_CANCEL_ENABLE
        };
        // SAFETY: the caller's contract.
        unsafe { *old = was };
    }
    0
}

/// `pthread_setcanceltype`: a green thread's type is always deferred; asking for asynchronous
/// cancellation there fails with `ENOTSUP` (and one line on stderr, once).
///
/// # Safety
/// As `pthread_setcanceltype(3)`: `old` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn pthread_setcanceltype(kind: c_int, old: *mut c_int) -> c_int {
    if mine().is_none() {
        // SAFETY: forwarded unchanged.
        return unsafe { real::pthread_setcanceltype()(kind, old) };
    }
    if kind != PTHREAD_CANCEL_DEFERRED && kind != PTHREAD_CANCEL_ASYNCHRONOUS {
        return libc::EINVAL;
    }
    if !old.is_null() {
        // SAFETY: the caller's contract.
        unsafe { *old = PTHREAD_CANCEL_DEFERRED };
    }
    if kind == PTHREAD_CANCEL_ASYNCHRONOUS {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            let msg = "libflexsc: asynchronous cancellation (PTHREAD_CANCEL_ASYNCHRONOUS) is not \
                       supported for green threads (ENOTSUP)\n";
            // SAFETY: writes our own buffer to stderr through glibc's write.
            unsafe { real::write()(2, msg.as_ptr().cast(), msg.len()) };
        }
        return libc::ENOTSUP;
    }
    0
}

/// Links `buf` in as the calling green thread's innermost cleanup buffer.
///
/// # Safety
/// `buf` points to a writable `__pthread_unwind_buf_t`.
unsafe fn push(buf: *mut UnwindBuf) {
    LOCAL.with(|l| {
        // SAFETY: the caller's contract.
        unsafe {
            (*buf).prev = l.bufs.get();
            (*buf).old = l.old.get();
        }
        l.bufs.set(buf);
    });
}

/// Unlinks `buf`, the calling green thread's innermost cleanup buffer.
///
/// # Safety
/// `buf` is the buffer `push` linked in last and not yet unlinked.
unsafe fn pop(buf: *mut UnwindBuf) {
    // SAFETY: the caller's contract.
    let prev = unsafe { (*buf).prev };
    LOCAL.with(|l| l.bufs.set(prev));
}

/// The four cleanup-buffer exports: `ours` on a green thread of ours, else glibc's function,
/// looked up (by `theirs`) only then.
///
/// # Safety
/// As `ours` and `theirs`: `buf` is what the export was given.
unsafe fn route(
    buf: *mut c_void,
    ours: unsafe fn(*mut UnwindBuf),
    theirs: fn() -> unsafe extern "C-unwind" fn(*mut c_void),
) {
    if mine().is_some() {
        // SAFETY: the caller's contract.
        unsafe { ours(buf.cast()) }
    } else {
        // SAFETY: forwarded unchanged.
        unsafe { theirs()(buf) }
    }
}

/// `__pthread_register_cancel` (`pthread_cleanup_push` in C without exceptions): `buf`, whose
/// `__sigsetjmp` the macro just did, becomes the innermost cleanup buffer.
///
/// # Safety
/// `buf` points to a writable `__pthread_unwind_buf_t` that stays live until unregistered.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __pthread_register_cancel(buf: *mut c_void) {
    // SAFETY: the caller's contract, passed on.
    unsafe { route(buf, push, real::__pthread_register_cancel) }
}

/// `__pthread_register_cancel_defer` (`pthread_cleanup_push_defer_np`): as
/// [`__pthread_register_cancel`]; the type it saves is deferred, the only one here.
///
/// # Safety
/// As [`__pthread_register_cancel`].
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __pthread_register_cancel_defer(buf: *mut c_void) {
    // SAFETY: the caller's contract, passed on.
    unsafe { route(buf, push, real::__pthread_register_cancel_defer) }
}

/// `__pthread_unregister_cancel` (`pthread_cleanup_pop`): `buf` stops being a cleanup buffer.
///
/// # Safety
/// `buf` is the innermost registered buffer.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __pthread_unregister_cancel(buf: *mut c_void) {
    // SAFETY: the caller's contract, passed on.
    unsafe { route(buf, pop, real::__pthread_unregister_cancel) }
}

/// `__pthread_unregister_cancel_restore` (`pthread_cleanup_pop_restore_np`): as
/// [`__pthread_unregister_cancel`] (the type it restores is deferred).
///
/// # Safety
/// As [`__pthread_unregister_cancel`].
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __pthread_unregister_cancel_restore(buf: *mut c_void) {
    // SAFETY: the caller's contract, passed on.
    unsafe { route(buf, pop, real::__pthread_unregister_cancel_restore) }
}

/// `__pthread_unwind_next`: called by a `pthread_cleanup_push` whose handler the unwinding ran;
/// unwinds on to the next outer buffer (or the thread's base).
///
/// # Safety
/// `buf` is the buffer the unwinding jumped into.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __pthread_unwind_next(buf: *mut c_void) -> ! {
    if mine().is_some() {
        // SAFETY: the caller's contract.
        let prev = unsafe { (*buf.cast::<UnwindBuf>()).prev };
        LOCAL.with(|l| l.bufs.set(prev));
        unwind(prev)
    }
    // SAFETY: forwarded unchanged; glibc's does not return.
    unsafe { real::__pthread_unwind_next()(buf) };
    unreachable!("__pthread_unwind_next returned")
}

/// Links an old-style buffer in.
///
/// # Safety
/// `buffer` points to a writable `struct _pthread_cleanup_buffer` that stays live until popped.
unsafe fn push_old(
    buffer: *mut CleanupBuffer,
    routine: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
) {
    LOCAL.with(|l| {
        // SAFETY: the caller's contract.
        unsafe {
            (*buffer).routine = routine;
            (*buffer).arg = arg;
            (*buffer).prev = l.old.get();
        }
        l.old.set(buffer);
    });
}

/// Unlinks an old-style buffer, then runs its handler if `execute`.
///
/// # Safety
/// `buffer` is the innermost old-style buffer.
unsafe fn pop_old(buffer: *mut CleanupBuffer, execute: c_int) {
    // SAFETY: the caller's contract.
    let (prev, routine, arg) = unsafe { ((*buffer).prev, (*buffer).routine, (*buffer).arg) };
    LOCAL.with(|l| l.old.set(prev));
    if execute != 0 {
        // SAFETY: the handler registered with this buffer, with its argument.
        unsafe { routine(arg) };
    }
}

/// `_pthread_cleanup_push`, the old interface of `pthread_cleanup_push`.
///
/// # Safety
/// `buffer` points to a writable `struct _pthread_cleanup_buffer` that stays live until popped;
/// `routine` may be called with `arg`.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn _pthread_cleanup_push(
    buffer: *mut c_void,
    routine: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
) {
    if mine().is_some() {
        // SAFETY: the caller's contract.
        unsafe { push_old(buffer.cast(), routine, arg) }
    } else {
        // SAFETY: forwarded unchanged.
        unsafe { real::_pthread_cleanup_push()(buffer, routine, arg) }
    }
}

/// `_pthread_cleanup_pop`: unlinks `buffer`, then runs its handler if `execute` is non-zero.
///
/// # Safety
/// `buffer` is the innermost buffer `_pthread_cleanup_push` linked in.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn _pthread_cleanup_pop(buffer: *mut c_void, execute: c_int) {
    if mine().is_some() {
        // SAFETY: the caller's contract.
        unsafe { pop_old(buffer.cast(), execute) }
    } else {
        // SAFETY: forwarded unchanged.
        unsafe { real::_pthread_cleanup_pop()(buffer, execute) }
    }
}

/// `_pthread_cleanup_push_defer` (glibc's compatibility symbol): as [`_pthread_cleanup_push`]
/// (the type it saves is deferred).
///
/// # Safety
/// As [`_pthread_cleanup_push`].
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn _pthread_cleanup_push_defer(
    buffer: *mut c_void,
    routine: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
) {
    if mine().is_some() {
        // SAFETY: the caller's contract.
        unsafe { push_old(buffer.cast(), routine, arg) }
    } else {
        // SAFETY: forwarded unchanged.
        unsafe { real::_pthread_cleanup_push_defer()(buffer, routine, arg) }
    }
}

/// `_pthread_cleanup_pop_restore` (glibc's compatibility symbol): as [`_pthread_cleanup_pop`]
/// (the type it restores is deferred).
///
/// # Safety
/// As [`_pthread_cleanup_pop`].
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn _pthread_cleanup_pop_restore(buffer: *mut c_void, execute: c_int) {
    if mine().is_some() {
        // SAFETY: the caller's contract.
        unsafe { pop_old(buffer.cast(), execute) }
    } else {
        // SAFETY: forwarded unchanged.
        unsafe { real::_pthread_cleanup_pop_restore()(buffer, execute) }
    }
}
