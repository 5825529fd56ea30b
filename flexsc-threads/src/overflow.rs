//! Stack-overflow diagnostic for green threads.
//!
//! A green thread that overflows its [`Stack`](crate::stack::Stack) runs into the guard page
//! below it and takes a SIGSEGV. Without help that is an anonymous crash; with this module the
//! process prints which green thread it was and aborts:
//!
//! ```text
//! flexsc-threads: green thread 42 ("overflower") overflowed its stack (fault at 0x…, guard 0x…-0x…); aborting
//! ```
//!
//! The pieces, all called by the runtime:
//!
//! - [`install`], once per process: SIGSEGV and SIGBUS handlers (`SA_ONSTACK | SA_SIGINFO`) that
//!   remember the actions they replaced.
//! - [`AltStack::new`], once per carrier thread: the handler cannot run on the stack that just
//!   overflowed, so each carrier gets an alternate signal stack (with its own guard page).
//! - [`CarrierSlot`], once per carrier thread: a slot in a fixed global table, keyed by the
//!   carrier's kernel thread id, into which the scheduler writes the running green thread (guard
//!   range, id, name) on every switch ([`CarrierSlot::set_running`] / [`CarrierSlot::clear`]).
//!
//! # Why a global table and raw system calls
//!
//! The runtime switches the fs base per green thread, so in the handler neither Rust
//! `thread_local!`s nor anything in libc that reaches thread-local state (`errno`,
//! `pthread_self`, the locks inside `abort()`) can be trusted. The handler therefore finds its
//! carrier by a raw `gettid` in a table of atomics, formats into a fixed stack buffer by hand,
//! and talks to the kernel with raw system calls only (`write`, `rt_sigaction`,
//! `rt_sigprocmask`, `tgkill`, `exit_group`): no allocation, no locks, no TLS.
//!
//! # Faults that are not an overflow
//!
//! A fault is a guard hit only if the kernel raised it (`si_code > 0`) at an address inside the
//! guard page of the green thread registered as running on the faulting carrier. Anything else
//! is passed on as if this module were not there: to the previously installed handler (called
//! as `SA_SIGINFO` or plain, with its `sa_mask` and `SA_NODEFER` applied and `SA_RESETHAND`
//! honoured), or, if that was `SIG_DFL` (or `SIG_IGN`, which the kernel overrides for faults),
//! the default action is restored and the handler returns so the faulting instruction runs again
//! and kills the process with the original signal.
//!
//! Linux-only; the raw system calls are inline assembly on x86_64 (elsewhere they go through
//! `libc::syscall`, which touches `errno` only when a call fails).

use std::io;
use std::marker::PhantomData;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

use libc::{c_int, c_void, siginfo_t};

use crate::stack::GUARD_SIZE;

/// Carrier slots in the global table: at most this many carriers can be registered at once.
pub const SLOTS: usize = 256;

/// Bytes of a green thread's name kept for the report; longer names are cut (and shown with
/// `...`).
pub const NAME_MAX: usize = 32;

/// The smallest alternate signal stack [`AltStack::new`] maps.
pub const MIN_ALT_STACK: usize = 64 * 1024;

/// `AT_MINSIGSTKSZ` (linux/auxvec.h): the kernel's minimum signal frame size, which grows with
/// the CPU's register state (AVX-512, AMX); not exported by the libc crate for Linux.
const AT_MINSIGSTKSZ: libc::c_ulong = 51;

// ---------------------------------------------------------------------------------------------
// Installation and chaining
// ---------------------------------------------------------------------------------------------

/// A signal action we replaced, kept in atomics so the handler can read it without locks.
struct PrevAction {
    /// Set (Release) once the other fields hold the previous action.
    ready: AtomicBool,
    /// `sa_sigaction`: `SIG_DFL`, `SIG_IGN` or a handler's address.
    handler: AtomicUsize,
    /// `sa_flags`.
    flags: AtomicI32,
    /// `sa_mask`, the kernel's 64 signals.
    mask: AtomicU64,
}

impl PrevAction {
    const fn new() -> Self {
        Self {
            ready: AtomicBool::new(false),
            handler: AtomicUsize::new(libc::SIG_DFL),
            flags: AtomicI32::new(0),
            mask: AtomicU64::new(0),
        }
    }
}

static PREV_SEGV: PrevAction = PrevAction::new();
static PREV_BUS: PrevAction = PrevAction::new();

/// The outcome of the one installation, as a raw OS error.
static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();

/// Installs the process-wide SIGSEGV and SIGBUS handlers (`SA_ONSTACK | SA_SIGINFO`), saving the
/// actions they replace so that faults that are not a green thread's guard-page hit go on to
/// them.
///
/// Idempotent: only the first call installs; later calls return its result. Carriers also need
/// an [`AltStack`] (without one the kernel cannot deliver the signal on an overflowed stack and
/// the process dies by a plain SIGSEGV) and a [`CarrierSlot`].
///
/// Handlers installed later by someone else replace ours (they see every fault first), unless
/// they are installed through [`set_chained`], as the preload's `sigaction` does.
pub fn install() -> io::Result<()> {
    match INSTALLED.get_or_init(|| {
        install_one(libc::SIGSEGV, &PREV_SEGV)?;
        install_one(libc::SIGBUS, &PREV_BUS)
    }) {
        Ok(()) => Ok(()),
        Err(errno) => Err(io::Error::from_raw_os_error(*errno)),
    }
}

/// For a `sigaction` interposer (the preload): once [`install`] has put the overflow handler on
/// `sig` (SIGSEGV or SIGBUS), an application's action for it becomes the one the handler chains
/// to, instead of replacing the handler, so a green thread's overflow is still reported. `old`
/// receives the application's previous action (the one chained to). Returns false, touching
/// nothing, when the handler is not installed or `sig` is another signal: then the caller makes
/// the real `sigaction` call.
pub fn set_chained(
    sig: c_int,
    new: Option<&libc::sigaction>,
    old: Option<&mut libc::sigaction>,
) -> bool {
    let prev = match sig {
        libc::SIGSEGV => &PREV_SEGV,
        libc::SIGBUS => &PREV_BUS,
        _ => return false,
    };
    if !matches!(INSTALLED.get(), Some(Ok(()))) {
        return false;
    }
    if let Some(old) = old {
        // SAFETY: sigaction is plain C data; all-zero is a valid (empty) value.
        *old = unsafe { std::mem::zeroed() };
        old.sa_sigaction = prev.handler.load(Ordering::Relaxed);
        old.sa_flags = prev.flags.load(Ordering::Relaxed);
        // SAFETY: the first word of a sigset_t holds signals 1..=64 (see `kernel_mask`).
        unsafe {
            (&mut old.sa_mask as *mut libc::sigset_t)
                .cast::<u64>()
                .write(prev.mask.load(Ordering::Relaxed))
        };
    }
    if let Some(new) = new {
        // The handler reads the three as a group only in a fault, rare enough that a change
        // racing one is the application's own race (as with two threads calling sigaction).
        prev.flags.store(new.sa_flags, Ordering::Relaxed);
        prev.mask
            .store(kernel_mask(&new.sa_mask), Ordering::Relaxed);
        prev.handler.store(new.sa_sigaction, Ordering::Release);
    }
    true
}

fn install_one(sig: c_int, prev: &PrevAction) -> Result<(), i32> {
    // Save the old action before ours is live, so the handler never sees an unsaved one.
    // SAFETY: sigaction is plain C data; all-zero is a valid (empty) value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: queries only (no new action); `old` is a valid out-pointer.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
        return Err(errno());
    }
    prev.handler.store(old.sa_sigaction, Ordering::Relaxed);
    prev.flags.store(old.sa_flags, Ordering::Relaxed);
    prev.mask
        .store(kernel_mask(&old.sa_mask), Ordering::Relaxed);
    prev.ready.store(true, Ordering::Release);

    // SAFETY: as above.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = on_fault as *const () as usize;
    new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
    // SAFETY: `new.sa_mask` is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: installs `on_fault`, which has the SA_SIGINFO signature and is async-signal-safe.
    if unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) } != 0 {
        return Err(errno());
    }
    Ok(())
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// The first 64 signals of a glibc `sigset_t`: the kernel's signal mask on 64-bit Linux.
fn kernel_mask(set: &libc::sigset_t) -> u64 {
    // SAFETY: sigset_t is at least 8 bytes (1024 bits in glibc) of plain integers, suitably
    // aligned for u64, and its first word holds signals 1..=64.
    unsafe { (set as *const libc::sigset_t).cast::<u64>().read() }
}

/// The kernel mask bit of `sig`.
fn sig_bit(sig: c_int) -> u64 {
    1u64 << ((sig - 1) as u32 & 63)
}

/// The SIGSEGV/SIGBUS handler. Async-signal-safe: atomics, a stack buffer and raw system calls.
extern "C" fn on_fault(sig: c_int, info: *mut siginfo_t, ctx: *mut c_void) {
    let (from_kernel, addr) = if info.is_null() {
        (false, 0)
    } else {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler; si_addr is the
        // fault address for kernel-raised SIGSEGV/SIGBUS (checked via si_code > 0 before use).
        unsafe { ((*info).si_code > 0, (*info).si_addr() as usize) }
    };
    if from_kernel && let Some(hit) = guard_hit(sys::gettid(), addr) {
        let mut msg = Msg::new();
        hit.describe(addr, &mut msg);
        sys::write_all(libc::STDERR_FILENO, msg.as_bytes());
        sys::abort();
    }
    // SAFETY: we are in a signal handler for `sig`, with the kernel's `info` and `ctx`.
    unsafe { chain(sig, from_kernel, info, ctx) }
}

/// Passes a fault that is not ours to the action [`install`] replaced.
///
/// # Safety
///
/// Only from the signal handler for `sig`, with the `info` and `ctx` the kernel passed.
unsafe fn chain(sig: c_int, from_kernel: bool, info: *mut siginfo_t, ctx: *mut c_void) {
    let prev = match sig {
        libc::SIGSEGV => &PREV_SEGV,
        libc::SIGBUS => &PREV_BUS,
        _ => return,
    };
    let (handler, flags, mask) = if prev.ready.load(Ordering::Acquire) {
        (
            prev.handler.load(Ordering::Relaxed),
            prev.flags.load(Ordering::Relaxed),
            prev.mask.load(Ordering::Relaxed),
        )
    } else {
        (libc::SIG_DFL, 0, 0)
    };

    if handler == libc::SIG_IGN {
        // The kernel does not let a process ignore its own faults: it would have reset the
        // action and killed us. A signal someone sent is ignored, as asked.
        if from_kernel {
            sys::set_default(sig);
        }
        return;
    }
    if handler == libc::SIG_DFL {
        sys::set_default(sig);
        if !from_kernel {
            // Sent, not a fault: nothing re-executes, so send it again. `sig` is blocked while
            // we run; it is delivered (and kills) as we return.
            sys::tgkill(sys::getpid(), sys::gettid(), sig);
        }
        // A fault re-executes on return, now with the default action: the normal death.
        return;
    }

    // A real handler: set up what the kernel would have for it, then call it.
    if flags & libc::SA_RESETHAND != 0 {
        sys::set_default(sig);
    }
    if !ctx.is_null() {
        // SAFETY: for an SA_SIGINFO handler `ctx` is the kernel's ucontext_t.
        let interrupted = kernel_mask(unsafe { &(*ctx.cast::<libc::ucontext_t>()).uc_sigmask });
        let mut blocked = interrupted | mask;
        if flags & libc::SA_NODEFER != 0 {
            blocked &= !sig_bit(sig);
        } else {
            blocked |= sig_bit(sig);
        }
        // The interrupted mask comes back from the ucontext when the handler returns.
        sys::set_mask(blocked);
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so `handler` is a function
        // of this signature; we pass it what the kernel passed us.
        let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute::<usize, _>(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: installed without SA_SIGINFO, `handler` is a plain `void (*)(int)`.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute::<usize, _>(handler) };
        f(sig);
    }
}

// ---------------------------------------------------------------------------------------------
// The carrier table
// ---------------------------------------------------------------------------------------------

/// One carrier's record. Written only by its carrier (through its [`CarrierSlot`]); read by the
/// fault handler. The running green thread is published under a sequence lock (`seq` odd while a
/// write is in progress), so a reader never trusts a half-written record.
#[repr(align(128))] // its own cache lines: every carrier writes its slot on every switch
struct Slot {
    /// The owning carrier's kernel thread id; 0 when free.
    tid: AtomicI32,
    /// Sequence lock over the fields below.
    seq: AtomicU32,
    guard_start: AtomicUsize,
    guard_end: AtomicUsize,
    id: AtomicU64,
    /// The name's full length (only the first [`NAME_MAX`] bytes are kept).
    name_len: AtomicUsize,
    /// The name's first [`NAME_MAX`] bytes, packed in native byte order.
    name: [AtomicU64; NAME_MAX / 8],
}

impl Slot {
    const fn new() -> Self {
        Self {
            tid: AtomicI32::new(0),
            seq: AtomicU32::new(0),
            guard_start: AtomicUsize::new(0),
            guard_end: AtomicUsize::new(0),
            id: AtomicU64::new(0),
            name_len: AtomicUsize::new(0),
            name: [const { AtomicU64::new(0) }; NAME_MAX / 8],
        }
    }

    /// Publishes a record. Only the slot's owner calls this (single writer).
    fn publish(&self, guard: Range<usize>, id: u64, name: &[u8]) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.guard_start.store(guard.start, Ordering::Relaxed);
        self.guard_end.store(guard.end, Ordering::Relaxed);
        self.id.store(id, Ordering::Relaxed);
        // Most green threads have no name: replacing one empty name by another writes nothing.
        let was_unnamed = self.name_len.load(Ordering::Relaxed) == 0;
        self.name_len.store(name.len(), Ordering::Relaxed);
        let kept = &name[..name.len().min(NAME_MAX)];
        // (An empty name's words are all zero.)
        let words = if was_unnamed && kept.is_empty() {
            0
        } else {
            NAME_MAX / 8
        };
        for (i, word) in self.name.iter().enumerate().take(words) {
            let mut bytes = [0u8; 8];
            if let Some(chunk) = kept.get(i * 8..) {
                let n = chunk.len().min(8);
                bytes[..n].copy_from_slice(&chunk[..n]);
            }
            word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
        }
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// A consistent copy of the record, or `None` if a write was in progress.
    fn read(&self) -> Option<Running> {
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let guard =
            self.guard_start.load(Ordering::Relaxed)..self.guard_end.load(Ordering::Relaxed);
        let id = self.id.load(Ordering::Relaxed);
        let name_len = self.name_len.load(Ordering::Relaxed);
        let mut name = [0u8; NAME_MAX];
        for (chunk, word) in name.chunks_exact_mut(8).zip(&self.name) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == before).then_some(Running {
            guard,
            id,
            name_len,
            name,
        })
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// A snapshot of the green thread registered as running on a carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Running {
    guard: Range<usize>,
    id: u64,
    /// The full name's length; `name` holds at most [`NAME_MAX`] bytes of it.
    name_len: usize,
    name: [u8; NAME_MAX],
}

impl Running {
    /// Formats the overflow report, with no allocation.
    fn describe(&self, fault: usize, out: &mut Msg) {
        out.push(b"flexsc-threads: green thread ");
        out.push_dec(self.id);
        out.push(b" (\"");
        out.push_escaped(&self.name[..self.name_len.min(NAME_MAX)]);
        if self.name_len > NAME_MAX {
            out.push(b"...");
        }
        out.push(b"\") overflowed its stack (fault at ");
        out.push_hex(fault);
        out.push(b", guard ");
        out.push_hex(self.guard.start);
        out.push(b"-");
        out.push_hex(self.guard.end);
        out.push(b"); aborting\n");
    }
}

/// The running green thread of carrier `tid` if `addr` is in its guard page.
fn guard_hit(tid: i32, addr: usize) -> Option<Running> {
    if tid <= 0 {
        return None;
    }
    let slot = TABLE
        .iter()
        .find(|s| s.tid.load(Ordering::Acquire) == tid)?;
    slot.read().filter(|r| r.guard.contains(&addr))
}

/// The calling OS thread's (carrier's) claim on a slot of the global carrier table, through which
/// the scheduler tells the fault handler which green thread is running.
///
/// Lock-free and async-signal-safe throughout. Tied to the thread that registered it (neither
/// `Send` nor `Sync`): the table is keyed by that thread's kernel id. Dropping it clears and
/// releases the slot.
#[derive(Debug)]
pub struct CarrierSlot {
    index: usize,
    /// Keeps the claim on its thread.
    _thread: PhantomData<*const ()>,
}

impl CarrierSlot {
    /// Claims a slot for the calling OS thread. `None` if all [`SLOTS`] are taken or this thread
    /// already holds one.
    pub fn register() -> Option<CarrierSlot> {
        let tid = sys::gettid();
        if tid <= 0 || TABLE.iter().any(|s| s.tid.load(Ordering::Relaxed) == tid) {
            return None;
        }
        let index = TABLE.iter().position(|s| {
            s.tid
                .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        Some(CarrierSlot {
            index,
            _thread: PhantomData,
        })
    }

    /// The slot's handle for green threads running on this carrier, which publish the green
    /// thread they hand the carrier over to.
    pub(crate) fn running_slot(&self) -> RunningSlot {
        RunningSlot(self.index)
    }

    /// Records the green thread about to run on this carrier: its stack's guard range
    /// ([`Stack::guard`](crate::stack::Stack::guard)), its id and its name (bytes beyond
    /// [`NAME_MAX`] are not kept). A fault in `guard` from now on is reported as its overflow.
    pub fn set_running(&self, guard: Range<usize>, id: u64, name: &[u8]) {
        TABLE[self.index].publish(guard, id, name);
    }

    /// Records that no green thread runs on this carrier (the scheduler itself does).
    pub fn clear(&self) {
        TABLE[self.index].publish(0..0, 0, &[]);
    }
}

/// A carrier's slot, as code running on that carrier sees it (see
/// [`CarrierSlot::running_slot`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunningSlot(usize);

impl RunningSlot {
    /// As [`CarrierSlot::set_running`]; call it only on the slot's carrier thread.
    pub(crate) fn set_running(&self, guard: Range<usize>, id: u64, name: &[u8]) {
        TABLE[self.0].publish(guard, id, name);
    }
}

impl Drop for CarrierSlot {
    fn drop(&mut self) {
        self.clear();
        TABLE[self.index].tid.store(0, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// The alternate signal stack
// ---------------------------------------------------------------------------------------------

/// A carrier's alternate signal stack, on which the fault handler runs (the faulting stack is,
/// after all, full). `[guard | stack]`, installed with `sigaltstack` for the calling thread.
///
/// Tied to that thread (neither `Send` nor `Sync`). Dropping it reinstates the alternate stack
/// that was there before (or none) and unmaps it; drop nested ones in reverse order.
#[derive(Debug)]
pub struct AltStack {
    map: NonNull<u8>,
    len: usize,
    prev: libc::stack_t,
    _thread: PhantomData<*const ()>,
}

impl AltStack {
    /// Maps an alternate signal stack of at least max(`SIGSTKSZ`, [`MIN_ALT_STACK`], four of the
    /// kernel's minimum signal frames) bytes, below a guard page, and installs it for the calling
    /// thread.
    pub fn new() -> io::Result<AltStack> {
        // SAFETY: getauxval has no preconditions; 0 means "not provided".
        let min_frame = unsafe { libc::getauxval(AT_MINSIGSTKSZ) } as usize;
        let size = libc::SIGSTKSZ
            .max(MIN_ALT_STACK)
            .max(min_frame.saturating_mul(4))
            .next_multiple_of(GUARD_SIZE);
        let len = size + GUARD_SIZE;
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let unmap = |err| {
            // SAFETY: our own fresh mapping, not installed, nothing runs on it.
            unsafe { libc::munmap(map, len) };
            Err(err)
        };
        // SAFETY: the first page of our own fresh mapping.
        if unsafe { libc::mprotect(map, GUARD_SIZE, libc::PROT_NONE) } != 0 {
            return unmap(io::Error::last_os_error());
        }
        let new = libc::stack_t {
            // SAFETY: GUARD_SIZE < len: still inside the mapping.
            ss_sp: unsafe { map.cast::<u8>().add(GUARD_SIZE) }.cast(),
            ss_flags: 0,
            ss_size: size,
        };
        // SAFETY: stack_t is plain C data; all-zero is a valid value.
        let mut prev: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: `new` describes memory we own and keep mapped until it is uninstalled (Drop);
        // `prev` is a valid out-pointer.
        if unsafe { libc::sigaltstack(&new, &mut prev) } != 0 {
            return unmap(io::Error::last_os_error());
        }
        Ok(AltStack {
            map: NonNull::new(map.cast()).expect("mmap succeeded, so not NULL"),
            len,
            prev,
            _thread: PhantomData,
        })
    }

    /// The usable addresses (the guard excluded).
    pub fn range(&self) -> Range<usize> {
        let start = self.map.as_ptr() as usize;
        start + GUARD_SIZE..start + self.len
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let restore = if self.prev.ss_flags & libc::SS_DISABLE == 0 {
            libc::stack_t {
                ss_flags: 0,
                ..self.prev
            }
        } else {
            libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            }
        };
        // SAFETY: reinstates the alternate stack that was current when we installed ours (its
        // owner outlives us when drops are nested) or disables alternate stacks.
        if unsafe { libc::sigaltstack(&restore, std::ptr::null_mut()) } != 0 {
            // Still installed (we are running on it?): leaking beats unmapping a live stack.
            return;
        }
        // SAFETY: our own mapping, no longer installed, which nothing runs on.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.len) };
    }
}

// ---------------------------------------------------------------------------------------------
// Allocation-free message formatting
// ---------------------------------------------------------------------------------------------

/// A bounded message buffer on the stack; pushes past the end are cut off.
struct Msg {
    buf: [u8; 256],
    len: usize,
}

impl Msg {
    fn new() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_dec(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn push_hex(&mut self, v: usize) {
        let mut digits = [0u8; 2 + 2 * size_of::<usize>()];
        let mut i = digits.len();
        let mut v = v;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[v & 0xf];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        digits[i - 2..i].copy_from_slice(b"0x");
        self.push(&digits[i - 2..]);
    }

    /// Printable ASCII as is, except `"` and `\` escaped; anything else as `\xNN`.
    fn push_escaped(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'"' | b'\\' => self.push(&[b'\\', b]),
                0x20..=0x7e => self.push(&[b]),
                _ => {
                    let hex = b"0123456789abcdef";
                    self.push(&[
                        b'\\',
                        b'x',
                        hex[usize::from(b >> 4)],
                        hex[usize::from(b & 0xf)],
                    ]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw system calls: no errno, no TLS
// ---------------------------------------------------------------------------------------------

mod sys {
    use libc::{c_int, c_long};

    /// A raw system call with up to four arguments; returns the kernel's value (`-errno` on
    /// failure).
    ///
    /// # Safety
    ///
    /// As for the system call `nr` with these arguments.
    #[cfg(target_arch = "x86_64")]
    unsafe fn syscall4(nr: c_long, a0: usize, a1: usize, a2: usize, a3: usize) -> isize {
        let ret: isize;
        // SAFETY: the x86_64 Linux syscall ABI: number in rax, arguments in rdi, rsi, rdx, r10,
        // result in rax, rcx and r11 clobbered, no stack use. The caller vouches for the call.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") a0,
                in("rsi") a1,
                in("rdx") a2,
                in("r10") a3,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// Fallback: libc's `syscall`, which writes `errno` (TLS) only when a call fails; failures
    /// read as -1.
    ///
    /// # Safety
    ///
    /// As for the system call `nr` with these arguments.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn syscall4(nr: c_long, a0: usize, a1: usize, a2: usize, a3: usize) -> isize {
        // SAFETY: the caller vouches for the call.
        unsafe { libc::syscall(nr, a0, a1, a2, a3) as isize }
    }

    /// The calling thread's kernel id.
    pub(super) fn gettid() -> i32 {
        // SAFETY: gettid takes no arguments and cannot fail.
        unsafe { syscall4(libc::SYS_gettid, 0, 0, 0, 0) as i32 }
    }

    /// The process id.
    pub(super) fn getpid() -> i32 {
        // SAFETY: getpid takes no arguments and cannot fail.
        unsafe { syscall4(libc::SYS_getpid, 0, 0, 0, 0) as i32 }
    }

    /// Writes all of `bytes` to `fd`, retrying partial writes and EINTR; gives up on errors.
    pub(super) fn write_all(fd: c_int, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // SAFETY: write reads `bytes.len()` bytes from a live slice.
            let n = unsafe {
                syscall4(
                    libc::SYS_write,
                    fd as usize,
                    bytes.as_ptr() as usize,
                    bytes.len(),
                    0,
                )
            };
            if n == -(libc::EINTR as isize) {
                continue;
            }
            if n <= 0 {
                return;
            }
            bytes = &bytes[n as usize..];
        }
    }

    /// Sets `sig`'s action to `SIG_DFL` (the kernel's `struct sigaction`, all zero: no handler,
    /// no flags, empty mask).
    pub(super) fn set_default(sig: c_int) {
        let dfl = [0u64; 8]; // larger than any architecture's kernel sigaction
        // SAFETY: rt_sigaction reads the kernel sigaction from `dfl` (all zero = SIG_DFL) and
        // writes no old action; the kernel sigset is 8 bytes on 64-bit Linux.
        unsafe {
            syscall4(
                libc::SYS_rt_sigaction,
                sig as usize,
                dfl.as_ptr() as usize,
                0,
                8,
            )
        };
    }

    /// Replaces the calling thread's signal mask (the kernel's 64 signals).
    pub(super) fn set_mask(mask: u64) {
        // SAFETY: rt_sigprocmask reads an 8-byte set from a live local; no old set is written.
        unsafe {
            syscall4(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK as usize,
                &mask as *const u64 as usize,
                0,
                8,
            )
        };
    }

    /// Sends `sig` to thread `tid` of process `pid`.
    pub(super) fn tgkill(pid: i32, tid: i32, sig: c_int) {
        // SAFETY: tgkill takes plain integers.
        unsafe {
            syscall4(
                libc::SYS_tgkill,
                pid as usize,
                tid as usize,
                sig as usize,
                0,
            )
        };
    }

    /// Dies by SIGABRT like `abort()`, without glibc's `abort` (whose lock and `raise` rely on
    /// the thread pointer).
    pub(super) fn abort() -> ! {
        set_default(libc::SIGABRT);
        let abrt = super::sig_bit(libc::SIGABRT);
        // SAFETY: rt_sigprocmask reads an 8-byte set from a live local; no old set is written.
        unsafe {
            syscall4(
                libc::SYS_rt_sigprocmask,
                libc::SIG_UNBLOCK as usize,
                &abrt as *const u64 as usize,
                0,
                8,
            )
        };
        // Delivered, with the default action, on the way out of the kill.
        tgkill(getpid(), gettid(), libc::SIGABRT);
        loop {
            // SAFETY: exit_group takes a status and does not return.
            unsafe { syscall4(libc::SYS_exit_group, 128 + libc::SIGABRT as usize, 0, 0, 0) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(id: u64, name: &[u8]) -> Running {
        let mut kept = [0u8; NAME_MAX];
        let n = name.len().min(NAME_MAX);
        kept[..n].copy_from_slice(&name[..n]);
        Running {
            guard: 0x1000..0x2000,
            id,
            name_len: name.len(),
            name: kept,
        }
    }

    fn report(r: &Running, fault: usize) -> String {
        let mut msg = Msg::new();
        r.describe(fault, &mut msg);
        String::from_utf8(msg.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn the_report_names_the_green_thread() {
        assert_eq!(
            report(&running(42, b"overflower"), 0x1ff8),
            "flexsc-threads: green thread 42 (\"overflower\") overflowed its stack \
             (fault at 0x1ff8, guard 0x1000-0x2000); aborting\n"
        );
        assert!(report(&running(0, b""), 0).contains("green thread 0 (\"\")"));
        assert!(
            report(&running(u64::MAX, b"a\"b\\c\n\xff"), usize::MAX)
                .contains("green thread 18446744073709551615 (\"a\\\"b\\\\c\\x0a\\xff\")")
        );
        assert!(report(&running(1, b"x"), usize::MAX).contains("0xffffffffffffffff"));
        let long = [b'n'; 40];
        assert!(report(&running(7, &long), 0).contains(&format!("(\"{}...\")", "n".repeat(32))));
    }

    #[test]
    fn messages_are_bounded() {
        let mut msg = Msg::new();
        for _ in 0..100 {
            msg.push(b"0123456789");
        }
        assert_eq!(msg.as_bytes().len(), 256);
    }

    #[test]
    fn a_registered_carrier_is_found_only_for_its_guard() {
        let tid = sys::gettid();
        assert_eq!(guard_hit(tid, 0x1000), None, "not registered yet");
        let slot = CarrierSlot::register().unwrap();
        assert!(CarrierSlot::register().is_none(), "one slot per thread");
        assert_eq!(guard_hit(tid, 0x1000), None, "nothing running");

        slot.set_running(0x1000..0x2000, 42, b"overflower");
        let hit = guard_hit(tid, 0x1fff).unwrap();
        assert_eq!(hit, running(42, b"overflower"));
        assert_eq!(guard_hit(tid, 0x2000), None, "just above the guard");
        assert_eq!(guard_hit(tid, 0xfff), None, "just below the guard");
        assert_eq!(guard_hit(tid + 1, 0x1000), None, "another carrier");

        slot.set_running(0x5000..0x6000, 43, &[b'z'; 40]);
        let hit = guard_hit(tid, 0x5000).unwrap();
        assert_eq!((hit.id, hit.name_len, hit.name), (43, 40, [b'z'; NAME_MAX]));
        assert_eq!(
            guard_hit(tid, 0x1000),
            None,
            "the previous green thread is gone"
        );

        slot.clear();
        assert_eq!(guard_hit(tid, 0x5000), None);
        slot.set_running(0x1000..0x2000, 1, b"x");
        drop(slot);
        assert_eq!(guard_hit(tid, 0x1000), None, "released");
        let again = CarrierSlot::register().unwrap();
        assert_eq!(
            guard_hit(tid, 0x1000),
            None,
            "a reclaimed slot starts cleared"
        );
        drop(again);
    }

    #[test]
    fn install_is_idempotent_and_saves_the_previous_action() {
        install().unwrap();
        install().unwrap();
        assert!(PREV_SEGV.ready.load(Ordering::Acquire));
        assert!(PREV_BUS.ready.load(Ordering::Acquire));
        // SAFETY: plain C data; zero is valid.
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: query only.
        let rc = unsafe { libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut now) };
        assert_eq!(rc, 0);
        assert_eq!(now.sa_sigaction, on_fault as *const () as usize);
        assert_eq!(
            now.sa_flags & (libc::SA_ONSTACK | libc::SA_SIGINFO),
            libc::SA_ONSTACK | libc::SA_SIGINFO
        );
        assert_ne!(
            PREV_SEGV.handler.load(Ordering::Relaxed),
            on_fault as *const () as usize,
            "the saved action is the one we replaced, not ours"
        );
    }

    fn current_altstack() -> libc::stack_t {
        // SAFETY: plain C data; zero is valid.
        let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: query only.
        assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut cur) }, 0);
        cur
    }

    #[test]
    fn the_alt_stack_is_installed_guarded_and_restored() {
        let before = current_altstack();
        let alt = AltStack::new().unwrap();
        let cur = current_altstack();
        assert_eq!(cur.ss_sp as usize, alt.range().start);
        assert!(cur.ss_size >= MIN_ALT_STACK.max(libc::SIGSTKSZ));
        assert_eq!(cur.ss_size, alt.range().len());
        let inner = AltStack::new().unwrap();
        assert_eq!(current_altstack().ss_sp as usize, inner.range().start);
        drop(inner);
        assert_eq!(current_altstack().ss_sp as usize, alt.range().start);
        drop(alt);
        let after = current_altstack();
        assert_eq!(
            after.ss_flags & libc::SS_DISABLE,
            before.ss_flags & libc::SS_DISABLE
        );
        if before.ss_flags & libc::SS_DISABLE == 0 {
            assert_eq!((after.ss_sp, after.ss_size), (before.ss_sp, before.ss_size));
        }
    }
}
