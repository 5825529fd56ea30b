//! Per-green-thread glibc TLS: each green thread gets its own static TLS block and thread control
//! block (TCB, glibc's `struct pthread`), and the switch points the fs base at it.
//!
//! Without this, green threads sharing a carrier share its `errno`, every C/C++ `__thread`
//! variable, the C++ exception globals, the identity glibc reads from fs:0x10 (`pthread_self`,
//! recursive FILE locks) and the malloc tcache; a migrated green thread keeps writing into the
//! previous carrier's. See `notes/glibc-tls.md` for the measurements behind every field below.
//!
//! The module has three parts:
//! - fs base access: [`read_fs_base`], [`write_fs_base`] (`rdfsbase`/`wrfsbase` when the kernel
//!   allows them, else `arch_prctl`);
//! - [`Layout`]: glibc's private entry points and the TCB field offsets, validated once against
//!   the calling thread's own TCB; anything unexpected is refused with a [`TlsError`] naming the
//!   glibc version and the failed check;
//! - [`TlsBlock`]: one green thread's block, allocated through the loader's own
//!   `_dl_allocate_tls`, with the TCB fields glibc's code relies on filled in by hand.
//!
//! Everything here is specific to glibc 2.36 on x86_64 (TCB at the thread pointer). Two rules for
//! the switch that uses it:
//! - change fs only behind an opaque boundary (the switch routine itself): compilers cache TLS
//!   addresses such as `__errno_location()` within a function;
//! - once fs is switched, Rust's own `thread_local!`s resolve to the green thread's copies, so no
//!   Rust code between [`write_fs_base`] and the green thread's code may rely on a carrier's
//!   thread-local (and scheduler code, glibc thread management, [`TlsBlock::new`],
//!   [`TlsBlock::reuse`] and dropping a block run on the carrier's own TCB).
//!
//! This is one of the crate's few `unsafe` modules: it calls glibc's GLIBC_PRIVATE functions and
//! writes TCB fields at offsets only validated at run time.

use std::alloc;
use std::arch::asm;
use std::ffi::{CStr, c_int, c_void};
use std::fmt;
use std::ops::Range;
use std::ptr::{self, NonNull};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

mod late;
pub use late::{
    StaticModule, init_in_green_blocks, new_static_modules, reset_after_fork, static_modules,
};

// ---------------------------------------------------------------------------------------------
// fs base
// ---------------------------------------------------------------------------------------------

/// `arch_prctl` codes (asm/prctl.h).
const ARCH_SET_FS: usize = 0x1002;
const ARCH_GET_FS: usize = 0x1003;
/// `HWCAP2_FSGSBASE` (asm/hwcap2.h): the kernel enabled the user-mode fs/gs base instructions.
const HWCAP2_FSGSBASE: libc::c_ulong = 1 << 1;

/// How the fs base is accessed, decided once: not yet decided.
const FS_UNKNOWN: u8 = 0;
/// `rdfsbase`/`wrfsbase`.
const FS_INSN: u8 = 1;
/// `arch_prctl(ARCH_GET_FS/ARCH_SET_FS)`.
const FS_SYSCALL: u8 = 2;

/// The cached choice (an atomic, not a thread-local: it is read while fs points anywhere).
static FS_METHOD: AtomicU8 = AtomicU8::new(FS_UNKNOWN);

#[inline]
fn fs_method() -> u8 {
    match FS_METHOD.load(Ordering::Relaxed) {
        FS_UNKNOWN => decide_fs_method(),
        m => m,
    }
}

#[cold]
fn decide_fs_method() -> u8 {
    // SAFETY: getauxval only reads the auxiliary vector; it touches no TLS (not even errno for a
    // present entry; AT_HWCAP2 is always present on x86_64 Linux >= 4.11).
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    let m = if hwcap2 & HWCAP2_FSGSBASE != 0 {
        FS_INSN
    } else {
        FS_SYSCALL
    };
    FS_METHOD.store(m, Ordering::Relaxed);
    m
}

/// Whether fs is switched with `wrfsbase` (about 11 ns) rather than `arch_prctl` (a system call,
/// about 145 ns).
pub fn uses_fsgsbase() -> bool {
    fs_method() == FS_INSN
}

/// `arch_prctl` as a raw system call: glibc's wrapper would write `errno` through fs on failure.
///
/// # Safety
/// `code` and `addr` must be valid for `arch_prctl`: ARCH_GET_FS with a writable `usize`, or
/// ARCH_SET_FS with the caller taking responsibility for what fs then points at.
unsafe fn arch_prctl(code: usize, addr: usize) -> isize {
    let ret: isize;
    // SAFETY: the `syscall` instruction with the kernel's calling convention: number in rax,
    // arguments in rdi and rsi, rcx and r11 clobbered; arch_prctl writes at most the usize the
    // caller passed for ARCH_GET_FS (no `nomem`), and the caller vouches for the arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") libc::SYS_arch_prctl as isize => ret,
            in("rdi") code,
            in("rsi") addr,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    ret
}

/// The fs base of the calling thread: its thread pointer (a glibc TCB, or a [`TlsBlock`]'s).
#[inline]
pub fn read_fs_base() -> usize {
    if fs_method() == FS_INSN {
        read_fs_base_insn()
    } else {
        read_fs_base_syscall()
    }
}

#[inline]
fn read_fs_base_insn() -> usize {
    let base: usize;
    // SAFETY: HWCAP2_FSGSBASE says the kernel set CR4.FSGSBASE, so rdfsbase is allowed in user
    // mode; it only reads the fs base into a register.
    unsafe { asm!("rdfsbase {}", out(reg) base, options(nostack, preserves_flags)) };
    base
}

fn read_fs_base_syscall() -> usize {
    let mut base = 0usize;
    // SAFETY: ARCH_GET_FS stores the fs base into `base`, a live, writable usize.
    let ret = unsafe { arch_prctl(ARCH_GET_FS, &raw mut base as usize) };
    assert_eq!(ret, 0, "arch_prctl(ARCH_GET_FS) failed");
    base
}

/// Sets the calling thread's fs base: from now on every TLS access on this kernel thread (C,
/// C++, glibc, and Rust's own `thread_local!`) resolves relative to `base`.
///
/// # Safety
/// `base` must be the thread pointer of a live TCB (a glibc thread's own, or
/// [`TlsBlock::thread_pointer`]) that stays alive while it is installed, and the caller must not
/// use any thread-local of the previous TCB until it switches back (see the module
/// documentation: call this only from an opaque switch routine).
#[inline]
pub unsafe fn write_fs_base(base: usize) {
    if fs_method() == FS_INSN {
        // SAFETY: allowed in user mode as for rdfsbase; the caller vouches for `base`.
        unsafe { write_fs_base_insn(base) };
    } else {
        // SAFETY: the caller vouches for `base`.
        unsafe { write_fs_base_syscall(base) };
    }
}

/// # Safety
/// As [`write_fs_base`], and the kernel must have enabled FSGSBASE.
#[inline]
unsafe fn write_fs_base_insn(base: usize) {
    // SAFETY: the caller guarantees FSGSBASE is enabled and that `base` is a live TCB.
    unsafe { asm!("wrfsbase {}", in(reg) base, options(nostack, preserves_flags)) };
}

/// # Safety
/// As [`write_fs_base`].
unsafe fn write_fs_base_syscall(base: usize) {
    // SAFETY: the caller vouches for `base`.
    let ret = unsafe { arch_prctl(ARCH_SET_FS, base) };
    // On failure (a non-canonical address) fs is unchanged, so panicking is still safe here.
    assert_eq!(ret, 0, "arch_prctl(ARCH_SET_FS, {base:#x}) failed");
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why green threads cannot have their own TLS here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// This glibc does not look like the one the layout was measured on: nothing was changed.
    Unsupported {
        /// `gnu_get_libc_version()`.
        glibc: String,
        /// The check that failed (a TCB field's name, a symbol, "glibc version", ...).
        check: &'static str,
        /// What was expected and what was found.
        detail: String,
    },
    /// An allocation for a block failed.
    OutOfMemory(&'static str),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Unsupported {
                glibc,
                check,
                detail,
            } => write!(
                f,
                "per-green-thread TLS refused on glibc {glibc}: check `{check}` failed: {detail}"
            ),
            TlsError::OutOfMemory(what) => {
                write!(f, "out of memory allocating a green thread's {what}")
            }
        }
    }
}

impl std::error::Error for TlsError {}

/// `gnu_get_libc_version()`.
pub fn glibc_version() -> &'static str {
    // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string in libc.
    let v = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) };
    v.to_str().unwrap_or("(non-UTF-8 version)")
}

/// The glibc versions whose TCB layout was measured (`notes/glibc-tls.md`).
pub const SUPPORTED_GLIBC: &[&str] = &["2.36"];

fn unsupported(check: &'static str, detail: impl Into<String>) -> TlsError {
    TlsError::Unsupported {
        glibc: glibc_version().to_owned(),
        check,
        detail: detail.into(),
    }
}

fn check_version() -> Result<&'static str, TlsError> {
    let v = glibc_version();
    if SUPPORTED_GLIBC.contains(&v) {
        Ok(v)
    } else {
        Err(unsupported(
            "glibc version",
            format!("the TCB layout is only known for glibc {SUPPORTED_GLIBC:?}"),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Symbols
// ---------------------------------------------------------------------------------------------

/// `dlvsym(RTLD_DEFAULT, name, version)`.
fn versioned(name: &CStr, version: &CStr) -> Option<NonNull<c_void>> {
    // SAFETY: both strings are NUL-terminated; dlvsym only looks the name up (for a TLS symbol
    // it returns the calling thread's instance, allocating it if needed).
    NonNull::new(unsafe { libc::dlvsym(libc::RTLD_DEFAULT, name.as_ptr(), version.as_ptr()) })
}

fn private(name: &CStr) -> Option<NonNull<c_void>> {
    versioned(name, c"GLIBC_PRIVATE")
}

fn require(name: &'static CStr, version: &CStr) -> Result<NonNull<c_void>, TlsError> {
    versioned(name, version).ok_or_else(|| {
        unsupported(
            "symbol",
            format!("dlvsym(RTLD_DEFAULT, {name:?}, {version:?}) found nothing"),
        )
    })
}

type AllocateTls = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type AllocateTlsInit = unsafe extern "C" fn(*mut c_void, bool) -> *mut c_void;
type DeallocateTls = unsafe extern "C" fn(*mut c_void, bool);
type GetTlsStaticInfo = unsafe extern "C" fn(*mut usize, *mut usize);
type VoidFn = unsafe extern "C" fn();

/// `(locale_t) -1` (locale.h).
const LC_GLOBAL_LOCALE: libc::locale_t = -1isize as libc::locale_t;

/// RSEQ_CPU_ID_REGISTRATION_FAILED: what glibc stores when rseq is not registered for a thread;
/// `sched_getcpu` then asks the kernel instead of reading the rseq area.
const RSEQ_CPU_ID_REGISTRATION_FAILED: i32 = -2;

/// The kernel's rseq area size as glibc lays it out in `struct pthread`.
const RSEQ_AREA_SIZE: usize = 32;

// ---------------------------------------------------------------------------------------------
// Offsets
// ---------------------------------------------------------------------------------------------

/// `sizeof(struct pthread)` and the offsets (from the thread pointer) of the TCB fields this
/// module reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    /// `sizeof(struct pthread)`: the TCB, at and above the thread pointer.
    pub sizeof_pthread: usize,
    /// `header.dtv`: the dynamic thread vector (`_thread_db_pthread_dtvp`).
    pub dtv: usize,
    /// `header.self`: what `pthread_self()` returns (fs:0x10). `header.tcb` is at 0 (ABI).
    pub self_ptr: usize,
    /// `header.multiple_threads` (int): glibc's x86 atomics skip `lock` when 0.
    pub multiple_threads: usize,
    /// `header.stack_guard`: the stack protector canary (fs:0x28, ABI).
    pub stack_guard: usize,
    /// `header.pointer_guard`: the PTR_MANGLE key (setjmp, atexit handlers).
    pub pointer_guard: usize,
    /// `header.feature_1` (u32): CET state.
    pub feature_1: usize,
    /// `list` (a `list_t`, two pointers): the thread's link in glibc's thread lists
    /// (`_thread_db_pthread_list`).
    pub list: usize,
    /// `tid` (pid_t) (`_thread_db_pthread_tid`).
    pub tid: usize,
    /// `stackblock` (pointer).
    pub stackblock: usize,
    /// `stackblock_size` (size_t).
    pub stackblock_size: usize,
    /// `res`: the thread's own resolver state (`struct __res_state`), where `__resp` points.
    pub res: usize,
    /// `rseq_area`: `__rseq_offset`; `cpu_id` is at +4.
    pub rseq_area: usize,
}

impl Offsets {
    /// Measured on Debian 12's glibc 2.36 (2.36-9+deb12u14).
    pub const GLIBC_2_36: Self = Self {
        sizeof_pthread: 2368,
        dtv: 0x08,
        self_ptr: 0x10,
        multiple_threads: 0x18,
        stack_guard: 0x28,
        pointer_guard: 0x30,
        feature_1: 0x48,
        list: 0x2c0,
        tid: 0x2d0,
        stackblock: 0x690,
        stackblock_size: 0x698,
        res: 0x6b8,
        rseq_area: 0x920,
    };

    /// The offsets libc describes itself (`_thread_db_sizeof_pthread`, the `_thread_db_pthread_*`
    /// descriptors `{bits, count, offset}`, and `__rseq_offset`), the measured constants for the
    /// rest. Refused if a described value differs from the measured one: then the undescribed
    /// fields (`stackblock`, `res`, the header) cannot be trusted either.
    pub fn discover() -> Result<Self, TlsError> {
        check_version()?;
        let measured = Self::GLIBC_2_36;
        let mut o = measured;
        if let Some(p) = private(c"_thread_db_sizeof_pthread") {
            // SAFETY: `_thread_db_sizeof_pthread` is a `const uint32_t` in libc's rodata.
            o.sizeof_pthread = unsafe { p.cast::<u32>().read() } as usize;
        }
        let described: [(&'static CStr, u32, &mut usize); 3] = [
            (c"_thread_db_pthread_dtvp", 64, &mut o.dtv),
            (c"_thread_db_pthread_list", 128, &mut o.list),
            (c"_thread_db_pthread_tid", 32, &mut o.tid),
        ];
        for (name, bits, field) in described {
            let Some(p) = private(name) else { continue };
            // SAFETY: each `_thread_db_*` field descriptor is a `const uint32_t[3]`
            // (`db_desc_t`: size in bits, element count, offset) in libc's rodata.
            let [b, count, offset] = unsafe { p.cast::<[u32; 3]>().read() };
            if (b, count) != (bits, 1) {
                return Err(unsupported(
                    "thread_db descriptor",
                    format!("{name:?} describes {b} bits x {count}, expected {bits} bits x 1"),
                ));
            }
            *field = offset as usize;
        }
        if let Some(p) = versioned(c"__rseq_offset", c"GLIBC_2.35") {
            // SAFETY: `__rseq_offset` is a `const ptrdiff_t` in ld.so, set before main.
            let off = unsafe { p.cast::<isize>().read() };
            o.rseq_area = usize::try_from(off).map_err(|_| {
                unsupported(
                    "rseq",
                    format!("__rseq_offset {off} is negative: the area is not in the TCB"),
                )
            })?;
        }
        if o != measured {
            return Err(unsupported(
                "struct pthread layout",
                format!("libc describes {o:?}, the measured layout is {measured:?}"),
            ));
        }
        Ok(o)
    }

    /// Every field with its width, for bounds and alignment checks.
    fn fields(&self) -> [(&'static str, usize, usize); 13] {
        [
            ("tcb", 0, 8),
            ("dtv", self.dtv, 8),
            ("self", self.self_ptr, 8),
            ("multiple_threads", self.multiple_threads, 4),
            ("stack_guard", self.stack_guard, 8),
            ("pointer_guard", self.pointer_guard, 8),
            ("feature_1", self.feature_1, 4),
            ("list", self.list, 16),
            ("tid", self.tid, 4),
            ("stackblock", self.stackblock, 8),
            ("stackblock_size", self.stackblock_size, 8),
            ("res", self.res, 8),
            ("rseq", self.rseq_area, RSEQ_AREA_SIZE),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Probing memory without faulting
// ---------------------------------------------------------------------------------------------

/// Integers: every bit pattern is a valid value.
trait Plain: Copy {
    const ZERO: Self;
}
impl Plain for u8 {
    const ZERO: Self = 0;
}
impl Plain for i32 {
    const ZERO: Self = 0;
}
impl Plain for u32 {
    const ZERO: Self = 0;
}
impl Plain for usize {
    const ZERO: Self = 0;
}

/// Reads memory that may be unmapped, through a pipe: `write(2)` fails with EFAULT instead of
/// faulting, so a wrong offset is reported, not a crash.
struct Probe {
    rd: c_int,
    wr: c_int,
}

impl Probe {
    fn new() -> Result<Self, TlsError> {
        let mut fds = [0 as c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(unsupported(
                "probe",
                format!("pipe2: {}", std::io::Error::last_os_error()),
            ));
        }
        Ok(Self {
            rd: fds[0],
            wr: fds[1],
        })
    }

    fn read<T: Plain>(&self, addr: usize) -> Option<T> {
        let n = size_of::<T>();
        // SAFETY: write(2) copies `n` bytes from `addr` into the pipe, or fails (EFAULT) if they
        // are not all mapped and readable: the kernel checks, no fault reaches us.
        let written = unsafe { libc::write(self.wr, addr as *const c_void, n) };
        if written <= 0 {
            return None;
        }
        let mut buf = [0u8; 16];
        // SAFETY: reads back exactly what was just written (at most `n` <= 16 bytes) into `buf`.
        let got = unsafe { libc::read(self.rd, buf.as_mut_ptr().cast(), written as usize) };
        if written as usize != n || got != written {
            return None;
        }
        let mut v = T::ZERO;
        // SAFETY: `n` bytes into a `T` of size `n`; T is a plain integer (any bits are valid).
        unsafe { ptr::copy_nonoverlapping(buf.as_ptr(), (&raw mut v).cast::<u8>(), n) };
        Some(v)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: closes the two descriptors this Probe created.
        unsafe {
            libc::close(self.rd);
            libc::close(self.wr);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------

/// The validated facts a [`TlsBlock`] is built from: glibc's entry points, the static TLS size
/// and the TCB offsets, checked against a real thread's TCB.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    glibc: &'static str,
    offsets: Offsets,
    static_size: usize,
    static_align: usize,
    /// Block start to thread pointer.
    tp_offset: usize,
    block_size: usize,
    /// libc's own TLS block, relative to the thread pointer (negative: below it).
    libc_tls: isize,
    libc_tls_len: usize,
    /// `errno` relative to the thread pointer.
    errno: isize,
    /// `__resp` relative to the thread pointer.
    resp: isize,
    allocate_tls: AllocateTls,
    allocate_tls_init: AllocateTlsInit,
    deallocate_tls: DeallocateTls,
    call_tls_dtors: VoidFn,
    ctype_init: VoidFn,
}

/// The validation done once per process (on the first thread that asks: a real glibc thread).
static LAYOUT: OnceLock<Result<Layout, TlsError>> = OnceLock::new();

impl Layout {
    /// Validates (once, then cached) that green threads can have their own TLS on this glibc:
    /// [`Offsets::discover`] then [`Layout::check`]. Call it on a carrier (a thread created by
    /// glibc, or the main thread), before any green thread exists.
    pub fn validate() -> Result<Layout, TlsError> {
        Self::cached().copied()
    }

    fn cached() -> Result<&'static Layout, TlsError> {
        LAYOUT
            .get_or_init(|| Offsets::discover().and_then(|o| Self::check(&o)))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Resolves glibc's private entry points and checks `expected` against the calling thread's
    /// own TCB (which must be a real glibc thread's): fs:0 and the `self` field equal the fs
    /// base, the `tid` field equals gettid(), the stack protector canary and pointer guard are
    /// readable and look like glibc's, the `list` links are consistent, the stack block matches
    /// this thread's stack, `__resp` points where glibc points it, the rseq area matches
    /// `__rseq_offset`, and libc's TLS block (holding errno and `__resp`) lies in static TLS.
    /// Memory is probed without faulting, so a wrong offset gives an error, not a crash.
    pub fn check(expected: &Offsets) -> Result<Layout, TlsError> {
        let glibc = check_version()?;
        let o = *expected;

        // glibc's private entry points.
        let get_static_info = require(c"_dl_get_tls_static_info", c"GLIBC_PRIVATE")?;
        let allocate_tls = require(c"_dl_allocate_tls", c"GLIBC_PRIVATE")?;
        let allocate_tls_init = require(c"_dl_allocate_tls_init", c"GLIBC_PRIVATE")?;
        let deallocate_tls = require(c"_dl_deallocate_tls", c"GLIBC_PRIVATE")?;
        let call_tls_dtors = require(c"__call_tls_dtors", c"GLIBC_PRIVATE")?;
        let ctype_init = require(c"__ctype_init", c"GLIBC_PRIVATE")?;
        let resp_addr = require(c"__resp", c"GLIBC_PRIVATE")?.as_ptr() as usize;
        // SAFETY: the four ld.so and two libc functions have these C signatures in glibc 2.36
        // (elf/dl-tls.c, stdlib/cxa_thread_atexit_impl.c, ctype/ctype-info.c); the version was
        // checked above. `dlvsym` returned function addresses, never null.
        let (
            get_static_info,
            allocate_tls,
            allocate_tls_init,
            deallocate_tls,
            call_tls_dtors,
            ctype_init,
        ) = unsafe {
            (
                std::mem::transmute::<*mut c_void, GetTlsStaticInfo>(get_static_info.as_ptr()),
                std::mem::transmute::<*mut c_void, AllocateTls>(allocate_tls.as_ptr()),
                std::mem::transmute::<*mut c_void, AllocateTlsInit>(allocate_tls_init.as_ptr()),
                std::mem::transmute::<*mut c_void, DeallocateTls>(deallocate_tls.as_ptr()),
                std::mem::transmute::<*mut c_void, VoidFn>(call_tls_dtors.as_ptr()),
                std::mem::transmute::<*mut c_void, VoidFn>(ctype_init.as_ptr()),
            )
        };

        // Static TLS geometry.
        let (mut static_size, mut static_align) = (0usize, 0usize);
        // SAFETY: _dl_get_tls_static_info stores two size_t values into the two locals.
        unsafe { get_static_info(&raw mut static_size, &raw mut static_align) };
        if !static_align.is_power_of_two() || static_size <= o.sizeof_pthread {
            return Err(unsupported(
                "static TLS size",
                format!(
                    "_dl_get_tls_static_info gave size {static_size}, align {static_align}; \
                     sizeof(struct pthread) is {}",
                    o.sizeof_pthread
                ),
            ));
        }
        let align = static_align.max(64); // TCB_ALIGNMENT
        let tp_offset = (static_size - o.sizeof_pthread).next_multiple_of(align);
        let block_size = (tp_offset + o.sizeof_pthread).next_multiple_of(align);

        // Field bounds and alignment.
        for (name, off, width) in o.fields() {
            let fits = off
                .checked_add(width)
                .is_some_and(|end| end <= o.sizeof_pthread);
            if !fits || off % width.min(8) != 0 {
                return Err(unsupported(
                    name,
                    format!(
                        "offset {off:#x} (width {width}) is misaligned or outside \
                         sizeof(struct pthread) = {}",
                        o.sizeof_pthread
                    ),
                ));
            }
        }

        // glibc 2.36's field order (nptl/descr.h): stackblock, stackblock_size, guardsize,
        // reported_guardsize, tpp, res. The main thread never uses its `res` (its `__resp` is the
        // global `_res`), so there this is the only check of that offset.
        if o.stackblock + 8 != o.stackblock_size {
            return Err(unsupported(
                "stackblock",
                format!(
                    "stackblock {:#x} and stackblock_size {:#x} are not adjacent as in glibc \
                     2.36's struct pthread",
                    o.stackblock, o.stackblock_size
                ),
            ));
        }
        if o.stackblock + 5 * 8 != o.res {
            return Err(unsupported(
                "res",
                format!(
                    "res {:#x} is not 40 bytes after stackblock {:#x} as in glibc 2.36's struct \
                     pthread",
                    o.res, o.stackblock
                ),
            ));
        }

        // The calling thread's own TCB.
        let probe = Probe::new()?;
        let tp = read_fs_base();
        let at = |off: usize| tp.wrapping_add(off);
        let read = |name: &'static str, off: usize| -> Result<usize, TlsError> {
            probe
                .read::<usize>(at(off))
                .ok_or_else(|| unsupported(name, format!("fs:{off:#x} is not readable")))
        };
        let read32 = |name: &'static str, off: usize| -> Result<i32, TlsError> {
            probe
                .read::<i32>(at(off))
                .ok_or_else(|| unsupported(name, format!("fs:{off:#x} is not readable")))
        };
        let mismatch = |name: &'static str, off: usize, want: String, got: String| {
            unsupported(
                name,
                format!("fs:{off:#x} holds {got}, expected {want} (fs base {tp:#x})"),
            )
        };

        if tp == 0 || tp % align != 0 {
            return Err(unsupported(
                "thread pointer",
                format!("fs base {tp:#x} is not {align}-aligned"),
            ));
        }
        if probe.read::<u8>(at(o.sizeof_pthread - 1)).is_none() {
            return Err(unsupported(
                "sizeof(struct pthread)",
                format!(
                    "the TCB's last byte fs:{:#x} is unreadable",
                    o.sizeof_pthread - 1
                ),
            ));
        }
        let tcb = read("tcb", 0)?;
        if tcb != tp {
            return Err(mismatch("tcb", 0, format!("{tp:#x}"), format!("{tcb:#x}")));
        }
        let selfp = read("self", o.self_ptr)?;
        if selfp != tp {
            return Err(mismatch(
                "self",
                o.self_ptr,
                format!("{tp:#x}"),
                format!("{selfp:#x}"),
            ));
        }
        // SAFETY: pthread_self has no preconditions; on glibc it reads fs:0x10.
        let pthread_self = unsafe { libc::pthread_self() } as usize;
        if pthread_self != tp {
            return Err(unsupported(
                "self",
                format!("pthread_self() is {pthread_self:#x}, not the fs base {tp:#x}"),
            ));
        }
        let dtv = read("dtv", o.dtv)?;
        let dtv_len = probe.read::<usize>(dtv.wrapping_sub(16));
        if !dtv_len.is_some_and(|n| (1..1 << 20).contains(&n)) {
            return Err(unsupported(
                "dtv",
                format!(
                    "fs:{:#x} = {dtv:#x} does not point at a DTV (dtv[-1] = {dtv_len:?})",
                    o.dtv
                ),
            ));
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let tcb_tid = read32("tid", o.tid)?;
        if tcb_tid != tid {
            return Err(mismatch(
                "tid",
                o.tid,
                format!("gettid() = {tid}"),
                tcb_tid.to_string(),
            ));
        }
        let mt = read32("multiple_threads", o.multiple_threads)?;
        if !(0..=1).contains(&mt) {
            return Err(mismatch(
                "multiple_threads",
                o.multiple_threads,
                "0 or 1".into(),
                mt.to_string(),
            ));
        }
        // glibc clears the canary's low byte (so string overflows cannot reproduce it).
        let guard = read("stack_guard", o.stack_guard)?;
        if guard == 0 || guard & 0xff != 0 {
            return Err(mismatch(
                "stack_guard",
                o.stack_guard,
                "a random canary with a zero low byte".into(),
                format!("{guard:#x}"),
            ));
        }
        let pointer_guard = read("pointer_guard", o.pointer_guard)?;
        if pointer_guard == 0 || pointer_guard == guard {
            return Err(mismatch(
                "pointer_guard",
                o.pointer_guard,
                "a random key distinct from the canary".into(),
                format!("{pointer_guard:#x}"),
            ));
        }
        probe
            .read::<u32>(at(o.feature_1))
            .ok_or_else(|| unsupported("feature_1", "unreadable"))?;
        let list = at(o.list);
        let (next, prev) = (read("list", o.list)?, read("list", o.list + 8)?);
        let next_prev = probe.read::<usize>(next.wrapping_add(8));
        let prev_next = probe.read::<usize>(prev);
        if next_prev != Some(list) || prev_next != Some(list) {
            return Err(unsupported(
                "list",
                format!(
                    "fs:{:#x} is not a linked list_t: next {next:#x} (->prev {next_prev:x?}), \
                     prev {prev:#x} (->next {prev_next:x?})",
                    o.list
                ),
            ));
        }
        let stackblock = read("stackblock", o.stackblock)?;
        let stackblock_size = read("stackblock_size", o.stackblock_size)?;
        // SAFETY: getpid has no preconditions.
        let main_thread = tid == unsafe { libc::getpid() };
        if main_thread {
            // The main thread: no block, and the size field holds __libc_stack_end.
            let end_var = require(c"__libc_stack_end", c"GLIBC_2.2.5")?;
            // SAFETY: `__libc_stack_end` is a `void *` in ld.so, set before main.
            let stack_end = unsafe { end_var.cast::<usize>().read() };
            if stackblock != 0 || stackblock_size != stack_end {
                return Err(unsupported(
                    "stackblock",
                    format!(
                        "main thread: fs:{:#x}/{:#x} hold {stackblock:#x}/{stackblock_size:#x}, \
                         expected 0/__libc_stack_end {stack_end:#x}",
                        o.stackblock, o.stackblock_size
                    ),
                ));
            }
        } else {
            let sp = &raw const probe as usize;
            if !(stackblock..stackblock.wrapping_add(stackblock_size)).contains(&sp) {
                return Err(unsupported(
                    "stackblock",
                    format!(
                        "fs:{:#x}/{:#x} give {stackblock:#x}+{stackblock_size:#x}, which does not \
                         contain this thread's stack ({sp:#x})",
                        o.stackblock, o.stackblock_size
                    ),
                ));
            }
        }
        let resp = probe
            .read::<usize>(resp_addr)
            .ok_or_else(|| unsupported("res", "__resp is unreadable"))?;
        let expected_resp = if main_thread {
            require(c"_res", c"GLIBC_2.2.5")?.as_ptr() as usize
        } else {
            at(o.res)
        };
        if resp != expected_resp {
            return Err(unsupported(
                "res",
                format!(
                    "__resp is {resp:#x}, expected {expected_resp:#x} ({})",
                    if main_thread {
                        "the main thread's _res"
                    } else {
                        "fs:res"
                    }
                ),
            ));
        }
        // rseq: the area glibc registered (or failed to) is where __rseq_offset says.
        if let Some(p) = versioned(c"__rseq_offset", c"GLIBC_2.35") {
            // SAFETY: `__rseq_offset` is a `const ptrdiff_t` in ld.so.
            let off = unsafe { p.cast::<isize>().read() };
            if off != o.rseq_area as isize {
                return Err(unsupported(
                    "rseq",
                    format!("__rseq_offset is {off:#x}, expected {:#x}", o.rseq_area),
                ));
            }
        }
        let rseq_size = versioned(c"__rseq_size", c"GLIBC_2.35")
            // SAFETY: `__rseq_size` is a `const unsigned int` in ld.so.
            .map_or(0, |p| unsafe { p.cast::<u32>().read() });
        let cpu_id = read32("rseq", o.rseq_area + 4)?;
        let cpu_ok = if rseq_size > 0 {
            (0..1 << 16).contains(&cpu_id)
        } else {
            cpu_id < 0
        };
        if !cpu_ok {
            return Err(mismatch(
                "rseq",
                o.rseq_area + 4,
                format!("a cpu id consistent with __rseq_size {rseq_size}"),
                cpu_id.to_string(),
            ));
        }

        // libc's own TLS block: holds errno and __resp, lies in static TLS below the TCB.
        let (libc_start, libc_len) = libc_tls_block()?;
        let libc_range = libc_start..libc_start + libc_len;
        // SAFETY: __errno_location has no preconditions.
        let errno_addr = unsafe { libc::__errno_location() } as usize;
        let static_below = tp - (static_size - o.sizeof_pthread);
        if libc_start < static_below
            || libc_range.end > tp
            || !libc_range.contains(&errno_addr)
            || !libc_range.contains(&resp_addr)
        {
            return Err(unsupported(
                "libc TLS block",
                format!(
                    "libc's TLS {libc_range:#x?} should hold errno ({errno_addr:#x}) and __resp \
                     ({resp_addr:#x}) and lie in static TLS {static_below:#x}..{tp:#x}"
                ),
            ));
        }

        Ok(Layout {
            glibc,
            offsets: o,
            static_size,
            static_align: align,
            tp_offset,
            block_size,
            libc_tls: libc_start as isize - tp as isize,
            libc_tls_len: libc_len,
            errno: errno_addr as isize - tp as isize,
            resp: resp_addr as isize - tp as isize,
            allocate_tls,
            allocate_tls_init,
            deallocate_tls,
            call_tls_dtors,
            ctype_init,
        })
    }

    /// `gnu_get_libc_version()` at validation.
    pub fn glibc_version(&self) -> &'static str {
        self.glibc
    }

    /// The validated TCB offsets.
    pub fn offsets(&self) -> &Offsets {
        &self.offsets
    }

    /// glibc's static TLS size (every module's static TLS, the surplus for later dlopens, and
    /// the TCB).
    pub fn static_size(&self) -> usize {
        self.static_size
    }

    /// The alignment of a block and of its thread pointer (at least 64).
    pub fn static_align(&self) -> usize {
        self.static_align
    }

    /// Bytes allocated per [`TlsBlock`] (the DTV and lazily allocated dlopen TLS come on top).
    pub fn block_size(&self) -> usize {
        self.block_size
    }
}

/// libc.so.6's TLS module as `dl_iterate_phdr` reports it for the calling thread.
#[derive(Debug, Default)]
struct LibcTls {
    /// The initialisation image (start of its PT_TLS segment) and its file and memory sizes.
    image: usize,
    filesz: usize,
    memsz: usize,
    /// Its module id and its block in the calling thread.
    modid: usize,
    data: usize,
}

/// Finds libc.so.6 (the loaded object containing `gnu_get_libc_version`) and its PT_TLS header;
/// None if it has none.
fn libc_tls() -> Option<LibcTls> {
    struct Search {
        /// An address inside libc's text.
        inside: usize,
        found: Option<LibcTls>,
    }

    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid dl_phdr_info, and `data` is our `Search`.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        // SAFETY: dlpi_phdr points at dlpi_phnum program headers of a loaded object.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let base = info.dlpi_addr as usize;
        let contains = phdrs.iter().any(|p| {
            p.p_type == libc::PT_LOAD
                && (base + p.p_vaddr as usize..base + (p.p_vaddr + p.p_memsz) as usize)
                    .contains(&search.inside)
        });
        if !contains {
            return 0;
        }
        if let Some(tls) = phdrs.iter().find(|p| p.p_type == libc::PT_TLS) {
            search.found = Some(LibcTls {
                image: base + tls.p_vaddr as usize,
                filesz: tls.p_filesz as usize,
                memsz: tls.p_memsz as usize,
                modid: info.dlpi_tls_modid,
                data: info.dlpi_tls_data as usize,
            });
        }
        1
    }

    let mut search = Search {
        inside: libc::gnu_get_libc_version as *const () as usize,
        found: None,
    };
    // SAFETY: `visit` matches the callback type and only uses `search` during the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    search.found
}

/// libc.so.6's PT_TLS block in the calling thread: (start, memsz).
fn libc_tls_block() -> Result<(usize, usize), TlsError> {
    match libc_tls().map(|t| (t.data, t.memsz)) {
        Some((start, len)) if start != 0 && len != 0 => Ok((start, len)),
        other => Err(unsupported(
            "libc TLS block",
            format!("libc.so.6's PT_TLS block not found for this thread ({other:x?})"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// TlsBlock
// ---------------------------------------------------------------------------------------------

/// One green thread's static TLS and TCB: install [`TlsBlock::thread_pointer`] as the fs base to
/// run the green thread with its own `errno`, `__thread` variables and glibc identity.
///
/// Lifecycle: [`TlsBlock::new`] on the carrier; at every switch-in [`TlsBlock::set_tid`] (the
/// carrier's tid) and [`write_fs_base`]; once, on the green thread after its first switch-in,
/// [`TlsBlock::first_entry`]; on the green thread at exit, [`TlsBlock::run_tls_dtors`]; then
/// back on the carrier either [`TlsBlock::reuse`] for the next green thread or drop.
///
/// An *adopted* block ([`TlsBlock::adopt_current`]) is a glibc thread's own TCB, taken over with
/// the thread's running context (the main thread as green thread 0): switched in like any block,
/// but glibc's, so never reset, pooled or freed, and kept up to date by glibc itself (it is on
/// glibc's thread list, so `dlopen` initialises its TLS).
#[derive(Debug)]
pub struct TlsBlock {
    /// Our allocation; None for an adopted TCB, which is glibc's.
    block: Option<NonNull<u8>>,
    tp: usize,
    layout: &'static Layout,
    /// Which late-loaded modules' static TLS glibc copied in ([`init_in_green_blocks`]); None
    /// for an adopted TCB (glibc initialises it).
    late: Option<Box<late::Entry>>,
}

// SAFETY: a TlsBlock owns its allocation and its DTV exclusively (an adopted one is used by its
// green thread alone, its OS thread having left it); nothing in it is tied to the kernel thread
// that created it (the tid field is rewritten at every switch-in), so it may move with its green
// thread to another carrier.
unsafe impl Send for TlsBlock {}

impl TlsBlock {
    /// A block for a green thread whose usable stack is `stack` (reported by
    /// `pthread_getattr_np`), copying the stack guard, pointer guard, CET state and tid from the
    /// calling thread's TCB. Call it on the carrier ([`Layout::validate`] runs first if it has not
    /// yet).
    pub fn new(stack: Range<usize>) -> Result<Self, TlsError> {
        let carrier = read_fs_base();
        // SAFETY: the calling thread's fs base is a live TCB: a glibc thread's own (the layout is
        // validated against one) or a TlsBlock's, which holds the same copied fields.
        unsafe { Self::with_carrier(carrier, stack) }
    }

    /// As [`TlsBlock::new`], copying from the TCB at `carrier_tp`.
    ///
    /// # Safety
    /// `carrier_tp` must be the thread pointer of a live glibc TCB (or of a [`TlsBlock`]). Call
    /// it on a carrier's own TCB: `_dl_allocate_tls` takes the loader's recursive lock, owned by
    /// the current TCB's tid.
    pub unsafe fn with_carrier(carrier_tp: usize, stack: Range<usize>) -> Result<Self, TlsError> {
        let layout = Layout::cached()?;
        let o = layout.offsets;
        let alloc_layout = alloc::Layout::from_size_align(layout.block_size, layout.static_align)
            .map_err(|_| unsupported("static TLS size", "block size overflows"))?;
        // SAFETY: block_size > sizeof(struct pthread) > 0.
        let block = NonNull::new(unsafe { alloc::alloc_zeroed(alloc_layout) })
            .ok_or(TlsError::OutOfMemory("static TLS block"))?;
        let tp = block.as_ptr() as usize + layout.tp_offset;
        let (late, epoch) = late::Entry::register(tp);
        // SAFETY: tp is static_align-aligned with (static_size - sizeof_pthread) zeroed bytes
        // below it and sizeof_pthread above, all ours: the geometry glibc's allocate_stack gives a
        // new thread. _dl_allocate_tls allocates the DTV, installs it at tp + dtv, and copies
        // every static module's TLS image below tp (dlopened modules: allocated lazily).
        let ret = unsafe { (layout.allocate_tls)(tp as *mut c_void) };
        if ret.is_null() {
            late::Entry::unregister(tp);
            // SAFETY: the block just allocated with this layout; glibc kept no reference to it.
            unsafe { alloc::dealloc(block.as_ptr(), alloc_layout) };
            return Err(TlsError::OutOfMemory("DTV"));
        }
        debug_assert_eq!(ret as usize, tp);
        late.initialised(epoch);
        let this = Self {
            block: Some(block),
            tp,
            layout,
            late: Some(late),
        };
        // SAFETY: every field lies inside our TCB (offsets validated against sizeof_pthread),
        // aligned; the carrier reads are the same validated fields of a live TCB (the caller's
        // contract). Nothing runs on this block yet.
        unsafe {
            this.put(0, tp); // header.tcb
            this.put(o.self_ptr, tp);
            this.put(o.multiple_threads, 1i32);
            this.put(o.stack_guard, read_at::<usize>(carrier_tp + o.stack_guard));
            this.put(
                o.pointer_guard,
                read_at::<usize>(carrier_tp + o.pointer_guard),
            );
            this.put(o.feature_1, read_at::<u32>(carrier_tp + o.feature_1));
            this.put(o.list, tp + o.list); // next
            this.put(o.list + 8, tp + o.list); // prev
            this.put(o.tid, read_at::<i32>(carrier_tp + o.tid));
            this.put(o.rseq_area + 4, RSEQ_CPU_ID_REGISTRATION_FAILED);
        }
        this.set_stack(stack);
        Ok(this)
    }

    /// The calling glibc thread's own TCB, to run the thread's context as a green thread (an
    /// adopted block, see the type's doc). Call it on that thread, on its own TCB.
    pub fn adopt_current() -> Result<Self, TlsError> {
        let layout = Layout::cached()?;
        let tp = read_fs_base();
        // SAFETY: fs points at the calling thread's live TCB; `self` is a validated field.
        let self_ptr: usize = unsafe { read_at(tp + layout.offsets.self_ptr) };
        if self_ptr != tp {
            return Err(unsupported(
                "adopted TCB",
                format!(
                    "fs:{:#x} holds {self_ptr:#x}, not fs {tp:#x}: not a glibc thread's own TCB",
                    layout.offsets.self_ptr
                ),
            ));
        }
        Ok(Self {
            block: None,
            tp,
            layout,
            late: None,
        })
    }

    /// Whether this is a glibc thread's own TCB ([`TlsBlock::adopt_current`]), not ours.
    pub fn is_adopted(&self) -> bool {
        self.block.is_none()
    }

    /// Writes one TCB field.
    ///
    /// # Safety
    /// `off..off + size_of::<T>()` must be a validated field of `T`'s type inside the TCB, and
    /// nothing may be reading it concurrently (no other kernel thread runs on this block).
    unsafe fn put<T>(&self, off: usize, value: T) {
        // SAFETY: the caller's contract; the TCB is part of our allocation.
        unsafe { ((self.tp + off) as *mut T).write(value) };
    }

    /// The thread pointer: the value to install as fs base, and what `pthread_self()` returns
    /// on this green thread.
    pub fn thread_pointer(&self) -> usize {
        self.tp
    }

    /// The validated layout this block was built from.
    pub fn layout(&self) -> &'static Layout {
        self.layout
    }

    /// Sets the TCB's tid: the runtime writes the carrier's kernel tid at every switch-in
    /// (glibc's recursive locks, `pthread_kill` and `raise` use it).
    #[inline]
    pub fn set_tid(&self, tid: libc::pid_t) {
        // SAFETY: the validated tid field of our own TCB; TlsBlock is !Sync and the green thread
        // is not running while its switch calls this.
        unsafe { self.put(self.layout.offsets.tid, tid) };
    }

    /// Marks the TCB's thread as one of several (`multiple_threads`): glibc's x86 atomics drop
    /// their `lock` prefix on a TCB that says otherwise.
    pub fn set_multiple_threads(&self) {
        // SAFETY: the validated multiple_threads field of this TCB, which only its own thread
        // (the caller, adopting it, or its green thread) writes.
        unsafe { self.put(self.layout.offsets.multiple_threads, 1i32) };
    }

    /// The TCB's tid field.
    pub fn tid(&self) -> libc::pid_t {
        // SAFETY: the validated tid field of our own TCB.
        unsafe { read_at(self.tp + self.layout.offsets.tid) }
    }

    /// Records the green thread's usable stack (`stackblock`, `stackblock_size`), which
    /// `pthread_getattr_np` reports and glibc's alloca cutoff uses.
    pub fn set_stack(&self, stack: Range<usize>) {
        let o = &self.layout.offsets;
        // SAFETY: the validated stackblock fields of our own TCB; see set_tid.
        unsafe {
            self.put(o.stackblock, stack.start);
            self.put(o.stackblock_size, stack.end.saturating_sub(stack.start));
        }
    }

    /// Prepares the block for the next green thread, as glibc does for a cached thread stack:
    /// frees dynamically allocated (dlopen) TLS, clears the DTV and copies every module's initial
    /// TLS image again (`_dl_allocate_tls_init(tp, true)`), except libc's own TLS block, which is
    /// kept: it holds the malloc tcache and arena pointers, which no exported function frees, so
    /// re-initialising it would leak them. [`TlsBlock::first_entry`] resets what a new thread
    /// must not inherit from it (errno, locale). Call on the carrier, with the previous green
    /// thread finished ([`TlsBlock::run_tls_dtors`] done).
    pub fn reuse(&mut self) -> Result<(), TlsError> {
        if self.is_adopted() {
            return Err(unsupported(
                "adopted TCB",
                "a glibc thread's own TCB is never reused",
            ));
        }
        self.assert_not_installed("reused");
        let late = self
            .late
            .as_mut()
            .expect("a block of ours records its late modules");
        let l = self.layout;
        let libc_tls = self.tp.wrapping_add_signed(l.libc_tls) as *mut u8;
        // libc's TLS is 144 bytes on glibc 2.36: saved on the stack, not with malloc.
        let mut on_stack = [0u8; 512];
        let mut on_heap = Vec::new();
        let saved: &mut [u8] = if l.libc_tls_len <= on_stack.len() {
            &mut on_stack[..l.libc_tls_len]
        } else {
            on_heap.resize(l.libc_tls_len, 0);
            &mut on_heap
        };
        // SAFETY: libc's TLS block lies inside our static TLS (validated offset and length).
        unsafe { ptr::copy_nonoverlapping(libc_tls, saved.as_mut_ptr(), saved.len()) };
        // SAFETY: the DTV installed at tp + dtv by _dl_allocate_tls (or resized by glibc since):
        // dtv[-1].counter is its length, entries are {val, to_free} pairs from dtv[1] on.
        // Mirrors glibc 2.36's get_cached_stack: free every to_free (malloc'd dlopen TLS, null
        // for static modules), zero dtv[0..=counter].
        unsafe {
            let dtv: *mut [usize; 2] = read_at(self.tp + l.offsets.dtv);
            let len = (*dtv.sub(1))[0];
            for i in 1..=len {
                libc::free((*dtv.add(i))[1] as *mut c_void);
            }
            ptr::write_bytes(dtv, 0, len + 1);
        }
        let epoch = late.reinitialising();
        // SAFETY: as in glibc's get_cached_stack: a thread pointer whose DTV was just cleared;
        // it re-fills the DTV and copies every static module's image below tp.
        let ret = unsafe { (l.allocate_tls_init)(self.tp as *mut c_void, true) };
        late.initialised(epoch);
        // SAFETY: puts back the bytes saved above into the same place.
        unsafe { ptr::copy_nonoverlapping(saved.as_ptr(), libc_tls, saved.len()) };
        if ret.is_null() {
            return Err(TlsError::OutOfMemory("DTV"));
        }
        Ok(())
    }

    /// Completes the thread's libc state; run it on the green thread itself, right after its fs
    /// was first switched in (and after each [`TlsBlock::reuse`]): global locale
    /// (`uselocale(LC_GLOBAL_LOCALE)`), `__ctype_init()` (without it `isalpha` crashes), `__resp`
    /// pointing at this TCB's own resolver state, and errno 0.
    ///
    /// # Safety
    /// The fs base must be this block's thread pointer (we run on this green thread).
    pub unsafe fn first_entry(&self) {
        debug_assert_eq!(read_fs_base(), self.tp, "first_entry off its green thread");
        let l = self.layout;
        // SAFETY: we run on this block (caller's contract), so both only write this block's
        // locale and ctype TLS variables; LC_GLOBAL_LOCALE is always a valid argument.
        unsafe {
            libc::uselocale(LC_GLOBAL_LOCALE);
            (l.ctype_init)();
        }
        // SAFETY: `__resp` and errno lie in libc's TLS block of this block (validated offsets);
        // `res` is inside our TCB.
        unsafe {
            self.put_signed(l.resp, self.tp + l.offsets.res);
            self.put_signed(l.errno, 0 as c_int);
        }
    }

    /// Runs the green thread's C++ `thread_local` destructors (`__call_tls_dtors`); run it on
    /// the green thread at exit, before pthread key destructors.
    ///
    /// # Safety
    /// The fs base must be this block's thread pointer: otherwise the destructors of whichever
    /// thread is current would run while that thread still uses its objects.
    pub unsafe fn run_tls_dtors(&self) {
        debug_assert_eq!(
            read_fs_base(),
            self.tp,
            "run_tls_dtors off its green thread"
        );
        // SAFETY: runs and unregisters the destructors registered on this green thread (caller's
        // contract); they are the application's own code.
        unsafe { (self.layout.call_tls_dtors)() };
    }

    /// Writes at a signed offset from the thread pointer (libc's TLS is below it).
    ///
    /// # Safety
    /// As [`TlsBlock::put`], for a validated location in this block's static TLS.
    unsafe fn put_signed<T>(&self, off: isize, value: T) {
        // SAFETY: the caller's contract.
        unsafe { (self.tp.wrapping_add_signed(off) as *mut T).write(value) };
    }

    fn assert_not_installed(&self, what: &str) {
        if read_fs_base() == self.tp {
            // Panicking would run on this block's own Rust thread-locals: report and abort.
            let msg = format!("flexsc-threads: a TlsBlock was {what} while installed as fs base\n");
            // SAFETY: writes our own buffer to stderr.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            std::process::abort();
        }
    }
}

impl Drop for TlsBlock {
    fn drop(&mut self) {
        // An adopted TCB is glibc's, and may well be installed: nothing of it is ours.
        let Some(block) = self.block else {
            return;
        };
        self.assert_not_installed("dropped");
        late::Entry::unregister(self.tp);
        let l = self.layout;
        // SAFETY: the block's DTV and dlopen TLS go back to glibc (`false`: the block itself is
        // ours, freed next); no thread runs on it (checked above for this one, and the block is
        // owned, so no other).
        unsafe { (l.deallocate_tls)(self.tp as *mut c_void, false) };
        let alloc_layout = alloc::Layout::from_size_align(l.block_size, l.static_align)
            .expect("validated at allocation");
        // SAFETY: allocated in with_carrier with this layout.
        unsafe { alloc::dealloc(block.as_ptr(), alloc_layout) };
    }
}

/// Reads a `T` at `addr`.
///
/// # Safety
/// `addr` must be a readable, aligned `T`.
unsafe fn read_at<T>(addr: usize) -> T {
    // SAFETY: the caller's contract.
    unsafe { (addr as *const T).read() }
}

/// The C fixture the tests below share with `tests/tls.rs`.
#[cfg(test)]
#[path = "../tests/common/cfixture.rs"]
mod cfixture;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fpu::FpuControl;
    use crate::stack::Stack;

    use super::cfixture::{FE_TONEAREST, FE_UPWARD, fx};

    /// A green thread as the switch will see it: its TLS block, its FPU control state, its stack.
    struct Green {
        tls: TlsBlock,
        fpu: FpuControl,
        _stack: Stack,
    }

    impl Green {
        fn new() -> Self {
            let stack = Stack::new(64 * 1024).unwrap();
            let tls = TlsBlock::new(stack.bottom()..stack.top()).unwrap();
            Self {
                tls,
                fpu: FpuControl::DEFAULT,
                _stack: stack,
            }
        }

        /// Switches in (tid, fs, FPU), runs `f` (which must only call into C: no Rust
        /// thread-locals, no panics), switches back out, restoring the carrier exactly.
        #[inline(never)]
        fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
            let carrier_fs = read_fs_base();
            let carrier_fpu = FpuControl::save();
            // SAFETY: gettid has no preconditions.
            self.tls.set_tid(unsafe { libc::gettid() });
            self.fpu.restore();
            // SAFETY: the block is live for the whole call and the carrier's fs is restored
            // before any Rust thread-local is used again.
            unsafe { write_fs_base(self.tls.thread_pointer()) };
            let r = f();
            // SAFETY: the carrier's own TCB, saved above.
            unsafe { write_fs_base(carrier_fs) };
            self.fpu = FpuControl::save();
            carrier_fpu.restore();
            r
        }
    }

    #[test]
    fn fs_base_paths_agree() {
        let base = read_fs_base();
        let fs0: usize;
        // SAFETY: reads the TCB's first word (header.tcb) through fs; it is always mapped.
        unsafe { asm!("mov {}, fs:[0]", out(reg) fs0, options(nostack, readonly)) };
        assert_eq!(base, fs0, "fs:0 is the TCB pointer");
        assert_eq!(read_fs_base_syscall(), base);
        assert!(uses_fsgsbase(), "this machine has fsgsbase (HWCAP2)");
        assert_eq!(read_fs_base_insn(), base);
        // Both write paths, each checked with the other read path (same value: nothing moves).
        // SAFETY: re-installs the current TCB.
        unsafe { write_fs_base_syscall(base) };
        assert_eq!(read_fs_base_insn(), base);
        // SAFETY: as above; FSGSBASE is enabled (asserted above).
        unsafe { write_fs_base_insn(base) };
        assert_eq!(read_fs_base_syscall(), base);
    }

    #[test]
    fn validation_passes_here_with_the_measured_layout() {
        let l = Layout::validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.glibc_version(), "2.36");
        assert_eq!(*l.offsets(), Offsets::GLIBC_2_36);
        assert_eq!(Offsets::discover().unwrap(), Offsets::GLIBC_2_36);
        assert!(l.static_align() >= 64 && l.static_align().is_power_of_two());
        assert!(l.static_size() > l.offsets().sizeof_pthread);
        assert!(l.block_size() >= l.static_size());
        // Validated against this (non-main) harness thread; again on a fresh thread.
        let again = std::thread::spawn(|| Layout::check(&Offsets::GLIBC_2_36).map(|_| ()))
            .join()
            .unwrap();
        assert_eq!(again, Ok(()));
    }

    #[test]
    fn an_adopted_block_is_the_callers_own_tcb_and_never_reused_or_freed() {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        let mut b = TlsBlock::adopt_current().unwrap_or_else(|e| panic!("{e}"));
        assert!(b.is_adopted());
        assert_eq!(b.thread_pointer(), me, "the calling thread's own TCB");
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        assert_eq!(b.tid(), tid, "glibc's tid field, read in place");
        assert!(b.reuse().is_err(), "a glibc TCB is never reset");
        // Dropped while installed (it is the running thread's): nothing is freed, no abort.
        drop(b);
        assert_eq!(read_fs_base(), me);
        // SAFETY: as above.
        let after = unsafe { libc::pthread_self() } as usize;
        assert_eq!(after, me, "the TCB is intact");
        assert!(!TlsBlock::new(0..0).unwrap().is_adopted());
    }

    #[test]
    fn wrong_offsets_are_refused_clearly() {
        let good = Offsets::GLIBC_2_36;
        type Corrupt = fn(&mut Offsets);
        let cases: [(&str, Corrupt); 9] = [
            ("tid", |o| o.tid += 4),
            ("self", |o| o.self_ptr = 0x20),
            ("stack_guard", |o| o.stack_guard = 0x20),
            ("pointer_guard", |o| o.pointer_guard = 0x28),
            ("list", |o| o.list += 16),
            ("stackblock", |o| o.stackblock += 8),
            ("res", |o| o.res += 8),
            ("rseq", |o| o.rseq_area -= 32),
            ("tid", |o| o.tid = 1 << 40), // far outside: a bounds error, not a crash
        ];
        for (field, corrupt) in cases {
            let mut o = good;
            corrupt(&mut o);
            let err = Layout::check(&o).map(|_| ()).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(&err, TlsError::Unsupported { check, .. } if *check == field),
                "{field}: {text}"
            );
            assert!(text.contains("glibc 2.36"), "{text}");
            assert!(text.contains(&format!("`{field}`")), "{text}");
        }
        let mut o = good;
        o.sizeof_pthread = 1 << 30;
        let text = Layout::check(&o).map(|_| ()).unwrap_err().to_string();
        assert!(
            text.contains("sizeof(struct pthread)") || text.contains("static TLS size"),
            "{text}"
        );
    }

    #[test]
    fn each_block_has_its_own_errno_and_tls_and_identity() {
        let fx = fx();
        // The carrier's own values first.
        (fx.set_errno)(11);
        (fx.fill)(1000);
        (fx.set_init)(-1);
        (fx.set_ie)(-7);
        let carrier_sum = (fx.sum)();
        let carrier_errno_addr = (fx.errno_addr)();
        let carrier_arr = (fx.arr_addr)();

        let mut a = Green::new();
        let mut b = Green::new();
        type Seen = (c_int, c_int, c_int, usize, usize, usize);
        let first = |g: &mut Green, errno: c_int, base: c_int| -> Seen {
            g.run(|| {
                let init = (fx.get_init)() * 100 + (fx.get_ie)(); // the initial images
                let zeroed = (fx.sum)(); // .tbss starts zeroed
                (fx.set_errno)(errno);
                (fx.fill)(base);
                (fx.set_init)(base);
                (fx.set_ie)(base + 1);
                (
                    init,
                    zeroed,
                    0,
                    (fx.self_)(),
                    (fx.errno_addr)(),
                    (fx.arr_addr)(),
                )
            })
        };
        let (a_init, a_zero, _, a_self, a_errno_addr, a_arr) = first(&mut a, 1, 100);
        let (b_init, b_zero, _, b_self, b_errno_addr, b_arr) = first(&mut b, 2, 200);
        let back = |g: &mut Green| -> (c_int, c_int, c_int, c_int) {
            g.run(|| ((fx.get_errno)(), (fx.sum)(), (fx.get_init)(), (fx.get_ie)()))
        };
        let a_back = back(&mut a);
        let b_back = back(&mut b);

        assert_eq!((a_init, b_init), (4207, 4207), "initial TLS images copied");
        assert_eq!((a_zero, b_zero), (0, 0), "zero-initialised TLS is zero");
        assert_eq!(
            a_self,
            a.tls.thread_pointer(),
            "pthread_self() is the block"
        );
        assert_eq!(b_self, b.tls.thread_pointer());
        let in_block = |addr: usize, g: &Green| {
            let tp = g.tls.thread_pointer();
            (tp - g.tls.layout().static_size()..tp).contains(&addr)
        };
        assert!(in_block(a_errno_addr, &a) && in_block(b_errno_addr, &b));
        assert_eq!(
            a_errno_addr as isize - a.tls.thread_pointer() as isize,
            a.tls.layout().errno
        );
        assert!(![carrier_arr, b_arr].contains(&a_arr) && carrier_arr != b_arr);
        let sum = |base: c_int| 16 * base + 120;
        assert_eq!(a_back, (1, sum(100), 100, 101), "A kept its errno and TLS");
        assert_eq!(b_back, (2, sum(200), 200, 201), "B kept its errno and TLS");
        // The carrier is untouched.
        assert_eq!((fx.get_errno)(), 11);
        assert_eq!((fx.sum)(), carrier_sum);
        assert_eq!(((fx.get_init)(), (fx.get_ie)()), (-1, -7));
        assert_eq!((fx.errno_addr)(), carrier_errno_addr);
        // SAFETY: pthread_self has no preconditions.
        assert_eq!(unsafe { libc::pthread_self() } as usize, read_fs_base());
    }

    #[test]
    fn first_entry_sets_up_ctype_resolver_errno_and_stack() {
        let fx = fx();
        let mut g = Green::new();
        let tls_ptr = &raw const g.tls;
        let (isalpha, res, errno, stack_rc, addr, size, malloc) = g.run(|| {
            // SAFETY: fs is this block's (we are inside run).
            unsafe { (*tls_ptr).first_entry() };
            let (mut addr, mut size) = (0usize, 0usize);
            let rc = (fx.stack)(&raw mut addr, &raw mut size);
            let (a, r, e) = (
                (fx.isalpha)(b'a' as c_int),
                (fx.res_state)(),
                (fx.get_errno)(),
            );
            (a, r, e, rc, addr, size, (fx.malloc_free)())
        });
        let tp = g.tls.thread_pointer();
        assert_eq!(isalpha, 1, "ctype tables initialised");
        assert_eq!(
            res,
            tp + Offsets::GLIBC_2_36.res,
            "__resp is the TCB's own res"
        );
        assert_eq!(errno, 0);
        assert_eq!(stack_rc, 0);
        assert_eq!(
            (addr, size),
            (g._stack.bottom(), g._stack.size()),
            "pthread_getattr_np"
        );
        assert_ne!(malloc, 0, "malloc works on the green TCB");
        // The carrier's resolver state is not the green thread's.
        assert_ne!((fx.res_state)(), res);
    }

    #[test]
    fn reuse_resets_module_tls_and_keeps_libc_tls() {
        let fx = fx();
        let mut g = Green::new();
        g.run(|| {
            (fx.fill)(5);
            (fx.set_init)(9);
            (fx.set_ie)(9);
            (fx.set_errno)(33);
            (fx.malloc_free)() // sets up this thread's tcache (libc TLS)
        });
        let l = *g.tls.layout();
        let libc_tls = g.tls.thread_pointer().wrapping_add_signed(l.libc_tls) as *const u8;
        // SAFETY: libc's TLS block inside our block; nothing runs on it now.
        let before = unsafe { std::slice::from_raw_parts(libc_tls, l.libc_tls_len) }.to_vec();
        g.tls.reuse().unwrap();
        // SAFETY: as above.
        let after = unsafe { std::slice::from_raw_parts(libc_tls, l.libc_tls_len) }.to_vec();
        assert_eq!(before, after, "libc's own TLS block is kept across reuse");
        let tls_ptr = &raw const g.tls;
        let (sum, init, ie, errno_kept, errno_after) = g.run(|| {
            let seen = ((fx.sum)(), (fx.get_init)(), (fx.get_ie)(), (fx.get_errno)());
            // SAFETY: fs is this block's.
            unsafe { (*tls_ptr).first_entry() };
            (seen.0, seen.1, seen.2, seen.3, (fx.get_errno)())
        });
        assert_eq!(
            (sum, init, ie),
            (0, 42, 7),
            "module TLS back to its initial image"
        );
        assert_eq!(errno_kept, 33, "libc TLS survived reuse");
        assert_eq!(errno_after, 0, "first_entry resets errno");
    }

    #[test]
    fn tls_destructors_run_on_their_green_thread_only() {
        let fx = fx();
        let start = (fx.dtor_sum)();
        let mut a = Green::new();
        let mut b = Green::new();
        let a_ptr = &raw const a.tls;
        let b_ptr = &raw const b.tls;
        let rc = a.run(|| (fx.register_dtor)(1) | (fx.register_dtor)(2));
        assert_eq!(rc, 0);
        assert_eq!(b.run(|| (fx.register_dtor)(100)), 0);
        // SAFETY: fs is A's inside run.
        a.run(|| unsafe { (*a_ptr).run_tls_dtors() });
        assert_eq!((fx.dtor_sum)() - start, 3, "A's destructors ran, not B's");
        // SAFETY: fs is B's inside run.
        b.run(|| unsafe { (*b_ptr).run_tls_dtors() });
        assert_eq!((fx.dtor_sum)() - start, 103);
        // Running them again finds nothing: the lists were consumed.
        // SAFETY: fs is A's inside run.
        a.run(|| unsafe { (*a_ptr).run_tls_dtors() });
        assert_eq!((fx.dtor_sum)() - start, 103);
    }

    #[test]
    fn rounding_modes_stay_with_their_green_thread() {
        let fx = fx();
        let carrier = FpuControl::save();
        let mut a = Green::new();
        let mut b = Green::new();
        let a_set = a.run(|| (fx.setround)(FE_UPWARD));
        let (b_mode, b_third) = b.run(|| ((fx.getround)(), (fx.div)(1.0, 3.0)));
        let (a_mode, a_third) = a.run(|| ((fx.getround)(), (fx.div)(1.0, 3.0)));
        assert_eq!(a_set, 0);
        assert_eq!(
            a_mode, FE_UPWARD,
            "A kept its rounding mode across B's turn"
        );
        assert_eq!(b_mode, FE_TONEAREST, "A's fesetround did not leak into B");
        assert!(a_third > b_third, "1/3 rounded up in A, to nearest in B");
        assert_eq!((a.fpu.sse_rounding(), a.fpu.x87_rounding()), (2, 2));
        assert_eq!(
            FpuControl::save(),
            carrier,
            "the carrier's state is untouched"
        );
        assert_eq!((fx.getround)(), FE_TONEAREST);
    }

    #[test]
    fn many_blocks_come_and_go() {
        let fx = fx();
        for i in 0..200 {
            let mut g = Green::new();
            let seen = g.run(|| {
                (fx.fill)(i);
                (fx.self_)()
            });
            assert_eq!(seen, g.tls.thread_pointer());
        }
    }
}
