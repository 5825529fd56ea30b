//! `dlopen` while green threads exist: a module whose TLS glibc places in static TLS
//! (initial-exec) gets its initial image copied into every green thread's TLS block, which
//! glibc does not know about ([`flexsc_threads::tls::init_in_green_blocks`]).
//!
//! Two details keep the wrapper invisible:
//! - glibc's `dlopen` finds the module along the search path of the object that called it
//!   (its RUNPATH, `$ORIGIN`), which it identifies by its return address. The wrapper makes the
//!   real call return first to a `ret` instruction inside the caller's object, which returns to
//!   the wrapper: glibc sees the caller's object, as without the preload. (With a shadow stack
//!   enabled this would fault, so then the call is made directly, and one line says that the
//!   search path is libflexsc.so's.)
//! - the wrapped calls are serialised by a green-aware recursive mutex: the bracket around one
//!   call must not see another's modules, and a green thread parked inside a module's
//!   constructor (holding the loader's lock, whose owner is its carrier's tid) must not let
//!   another green thread of the same carrier into the loader.
//!
//! Not covered: a module's constructors, which run inside the real call, see zeros in the
//! static TLS of their own module on a green thread (the copy is made when `dlopen` returns);
//! modules glibc loads by itself (NSS, iconv) or `dlmopen` into other namespaces are not copied.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use flexsc_threads::sync::{MutexKind, RawMutex};
use flexsc_threads::tls;

use crate::real;

/// Serialises the wrapped calls (module doc); reset in a fork child, as glibc resets the
/// loader's lock there.
static LOCK: Resettable = Resettable(UnsafeCell::new(RawMutex::new(MutexKind::Recursive)));
/// How deep the holder of [`LOCK`] is nested (a constructor's own `dlopen`): only the outermost
/// call brackets.
static DEPTH: AtomicU32 = AtomicU32::new(0);

/// A mutex a fork child may replace (another thread may have held it at the fork).
struct Resettable(UnsafeCell<RawMutex>);

// SAFETY: the mutex is shared like any RawMutex; it is replaced only in a fork child, whose
// only thread is the one replacing it.
unsafe impl Sync for Resettable {}

impl Resettable {
    fn get(&self) -> &RawMutex {
        // SAFETY: see the Sync impl: no replacement happens while other threads use it.
        unsafe { &*self.0.get() }
    }
}

/// In a fork child (async-signal-safe): the calls in progress in other threads are gone.
pub(crate) fn reset_after_fork() {
    // SAFETY: the child's only thread; a holder that no longer exists leaves nothing to drop.
    unsafe {
        self::LOCK
            .0
            .get()
            .write(RawMutex::new(MutexKind::Recursive))
    };
    DEPTH.store(0, Ordering::Relaxed);
}

/// `dlopen(3)`: the caller's return address is passed on, so glibc can be told who called.
///
/// # Safety
/// As glibc's: `file` is null or a NUL-terminated path.
#[unsafe(no_mangle)]
#[unsafe(naked)]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    std::arch::naked_asm!("mov rdx, [rsp]", "jmp {inner}", inner = sym dlopen_from)
}

extern "C" fn dlopen_from(file: *const c_char, mode: c_int, caller: usize) -> *mut c_void {
    let real = real::dlopen() as usize;
    bracket(|| {
        // SAFETY: glibc's dlopen with the caller's own arguments; `as_caller` only changes the
        // return address glibc reads (see its contract).
        unsafe { as_caller(caller, real, file as usize, mode as usize) as *mut c_void }
    })
}

/// Runs the real call `f` serialised and, when the runtime exists and this is not a nested
/// call, copies the static TLS of the modules it loaded into the green threads' blocks.
fn bracket(f: impl FnOnce() -> *mut c_void) -> *mut c_void {
    // A recursive mutex's lock fails only on overflow of its count; the call is made anyway.
    let locked = LOCK.get().lock().is_ok();
    let outer = DEPTH.fetch_add(1, Ordering::Relaxed) == 0;
    // Blocks exist only once the runtime started (a runtime starting during this call may
    // create blocks before the module is loaded: not covered).
    let before = (outer && crate::rt::started().is_some()).then(tls::static_modules);
    let handle = f();
    if let Some(before) = before {
        match (before, tls::static_modules()) {
            (Ok(before), Ok(after)) => {
                tls::init_in_green_blocks(&tls::new_static_modules(&before, &after));
            }
            (Err(e), _) | (_, Err(e)) => refuse_once(&e),
        }
    }
    DEPTH.fetch_sub(1, Ordering::Relaxed);
    if locked {
        let _ = LOCK.get().unlock();
    }
    handle
}

fn refuse_once(e: &tls::TlsError) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log(&format!(
            "libflexsc: dlopen: static TLS of modules loaded now is not set up in green \
             threads: {e}\n"
        ))
    });
}

fn log(msg: &str) {
    // SAFETY: writes our own buffer to stderr through glibc's write.
    unsafe { real::write()(2, msg.as_ptr().cast(), msg.len()) };
}

/// Calls `f(a0, a1)` so that the return address it sees lies in the object containing
/// `caller`: on a `ret` instruction there, which returns to us.
///
/// # Safety
/// `f` must be a function of two word arguments returning a word, callable with `a0` and `a1`,
/// that uses its return address only to identify its caller (glibc's `dlopen`).
unsafe fn as_caller(caller: usize, f: usize, a0: usize, a1: usize) -> usize {
    match ret_in_object_of(caller) {
        // SAFETY: `ret` is a 0xc3 byte in an executable, readable segment of a loaded object:
        // executed, it returns to the continuation the trampoline pushed; the caller vouches for
        // `f` and its arguments.
        Some(ret) => unsafe { flexsc_call_returning_via(a0, a1, 0, ret, f) },
        None => {
            // SAFETY: the caller vouches for `f` and its arguments.
            let f: extern "C" fn(usize, usize) -> usize = unsafe { std::mem::transmute(f) };
            f(a0, a1)
        }
    }
}

unsafe extern "C" {
    /// `f(a0, a1, a2)` entered with `ret` as its return address and our continuation below it.
    fn flexsc_call_returning_via(a0: usize, a1: usize, a2: usize, ret: usize, f: usize) -> usize;
}

// Entry: rsp = 8 mod 16. After push rbp and the pad: 8 mod 16; two pushes leave `f` entered
// with rsp = 8 mod 16, as after a call. `f` returns to `ret` (rsp + 8), whose ret pops the
// continuation (rsp + 16 = our frame). rdi, rsi, rdx pass through.
std::arch::global_asm!(
    ".globl flexsc_call_returning_via",
    ".hidden flexsc_call_returning_via",
    ".type flexsc_call_returning_via, @function",
    "flexsc_call_returning_via:",
    ".cfi_startproc",
    "push rbp",
    ".cfi_def_cfa_offset 16",
    ".cfi_offset rbp, -16",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "sub rsp, 8",
    "lea rax, [rip + 2f]",
    "push rax",
    "push rcx",
    "jmp r8",
    "2:",
    "leave",
    ".cfi_def_cfa rsp, 8",
    "ret",
    ".cfi_endproc",
    ".size flexsc_call_returning_via, . - flexsc_call_returning_via",
);

/// A `ret` (0xc3) byte in an executable segment of the object containing `addr`, or of the
/// executable when no object contains it (glibc's own default for an unknown caller); `None`
/// when a shadow stack is on or nothing is found.
fn ret_in_object_of(addr: usize) -> Option<usize> {
    if shadow_stack_enabled() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            log(
                "libflexsc: dlopen: shadow stack enabled: modules are searched for along \
                 libflexsc.so's path, not the caller's\n",
            )
        });
        return None;
    }
    struct Search {
        addr: usize,
        first: bool,
        ret: Option<usize>,
        main: Option<usize>,
    }
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _: usize, d: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid info; `d` is our `Search`.
        let (info, s) = unsafe { (&*info, &mut *d.cast::<Search>()) };
        // SAFETY: dlpi_phdr points at dlpi_phnum headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let base = info.dlpi_addr as usize;
        let range = |p: &libc::Elf64_Phdr| {
            base + p.p_vaddr as usize..base + (p.p_vaddr + p.p_filesz) as usize
        };
        let loads = || phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        let exec =
            || loads().filter(|p| p.p_flags & libc::PF_X != 0 && p.p_flags & libc::PF_R != 0);
        let find = || {
            exec().find_map(|p| {
                let r = range(p);
                // SAFETY: a loaded PT_LOAD segment with PF_R: mapped readable for its filesz.
                let bytes = unsafe { std::slice::from_raw_parts(r.start as *const u8, r.len()) };
                bytes.iter().position(|&b| b == 0xc3).map(|i| r.start + i)
            })
        };
        let first = std::mem::replace(&mut s.first, false);
        if first {
            s.main = find();
        }
        if loads().any(|p| {
            range(p).contains(&s.addr) || {
                let end = base + (p.p_vaddr + p.p_memsz) as usize;
                (range(p).start..end).contains(&s.addr)
            }
        }) {
            s.ret = find();
            return 1;
        }
        0
    }
    let mut s = Search {
        addr,
        first: true,
        ret: None,
        main: None,
    };
    // SAFETY: `visit` matches the callback type and uses `s` only during the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut s).cast()) };
    s.ret.or(s.main)
}

/// Whether the calling thread runs with a user shadow stack (`ARCH_SHSTK_STATUS`).
fn shadow_stack_enabled() -> bool {
    const ARCH_SHSTK_STATUS: usize = 0x5005;
    const ARCH_SHSTK_SHSTK: u64 = 1;
    let mut features = 0u64;
    let rc: isize;
    // SAFETY: a raw arch_prctl (the exported `syscall()` would route it to a syscall thread):
    // ARCH_SHSTK_STATUS writes one u64 into `features`; kernels without it fail with EINVAL.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_arch_prctl as isize => rc,
            in("rdi") ARCH_SHSTK_STATUS,
            in("rsi") &raw mut features,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    rc == 0 && features & ARCH_SHSTK_SHSTK != 0
}
