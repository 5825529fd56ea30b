//! x86_64 (System V). A suspended context is its stack pointer; on its stack, from there up: the
//! address it resumes at (a landing, below), then its rbx and rbp. The other callee-saved
//! registers (r12-r15) are saved by the compiler around each switch (declared clobbered); MXCSR
//! and the x87 control word, callee-saved too, are switched by the runtime only when a green
//! thread changed them (`crate::fpu`).
//!
//! The return-stack predictor stays balanced, as in corosensei: the carrier enters a green
//! thread with an indirect `call` (its return address goes on the carrier's stack), a green
//! thread hands over to another with an indirect `jmp` (no call, no return), and whichever green
//! thread goes back to the carrier does so with the `ret` that matches the carrier's `call`. Only
//! a green thread's own return from the switch may be mispredicted, when it suspended at another
//! call site than the one that resumes.
//!
//! A landing expects: rdx = its own saved stack pointer, rcx = where to record its way back, rsp
//! = that way back (the carrier's stack, at the return address of its `call`). It records rsp,
//! moves to its own stack and restores rbx and rbp.

use std::arch::{asm, global_asm};

global_asm!(
    // The landing of a new context (see `init`): entry(data), which never returns. The return
    // address is undefined here, so backtraces end at this frame.
    ".globl flexsc_arch_start",
    ".hidden flexsc_arch_start",
    ".type flexsc_arch_start, @function",
    "flexsc_arch_start:",
    ".cfi_startproc",
    ".cfi_undefined rip",
    "mov [rcx], rsp",
    "lea rsp, [rdx + 8]",
    "pop rdi",
    "pop rax",
    "xor ebp, ebp",
    "call rax",
    "ud2",
    ".cfi_endproc",
    ".size flexsc_arch_start, . - flexsc_arch_start",
);

unsafe extern "C" {
    fn flexsc_arch_start() -> !;
}

/// Carrier: continues the suspended context `sp`, which records the way back in `*back`; returns
/// when a context [`leave`]s to that way back.
///
/// # Safety
/// `sp` is a suspended context nobody else continues, on a stack that stays mapped while it
/// runs; `back` stays valid for that context (and any it hands over to) until it leaves.
#[inline(always)]
pub(crate) unsafe fn enter(sp: usize, back: *mut usize) {
    // SAFETY: the caller's contract; rbx and rbp are saved here, every other callee-saved
    // register is declared clobbered, so the compiler saves what it needs.
    unsafe {
        asm!(
            "push rbp",
            "push rbx",
            "call [rdx]",
            "pop rbx",
            "pop rbp",
            inout("rdx") sp => _,
            inout("rcx") back => _,
            lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
            clobber_abi("sysv64"),
        );
    }
}

/// The switch away from a running green thread: save rbx, rbp and a landing address, store the
/// stack pointer into `*rdi`, take the stack `rsi`, and transfer with `$transfer`; the landing
/// (label 2) is where this context continues (module doc). `$operands` bind rdi, rsi, rdx, rcx.
macro_rules! switch_away {
    ($transfer:literal, $($operands:tt)*) => {
        asm!(
            "push rbp",
            "push rbx",
            "lea rax, [rip + 2f]",
            "push rax",
            "mov [rdi], rsp",
            "mov rsp, rsi",
            $transfer,
            "2:",
            "mov [rcx], rsp",
            "lea rsp, [rdx + 8]",
            "pop rbx",
            "pop rbp",
            $($operands)*
            lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
            clobber_abi("sysv64"),
        )
    };
}

/// Green side: suspends the calling context (its stack pointer into `*save`) and goes back to
/// the carrier at `way_back` (recorded by the landing), with the `ret` matching the carrier's
/// `call`; returns when some context continues this one.
///
/// # Safety
/// `way_back` is the way back recorded for the running context, whose carrier waits there;
/// `save` is valid for a write and is where this context's resumer will look.
#[inline(always)]
pub(crate) unsafe fn leave(save: *mut usize, way_back: usize) {
    // SAFETY: as for `enter`.
    unsafe {
        switch_away!(
            "ret",
            in("rdi") save,
            in("rsi") way_back,
            lateout("rdx") _, lateout("rcx") _,
        );
    }
}

/// Green side: suspends the calling context (into `*save`) and continues the suspended context
/// `to` with an indirect `jmp`, giving it this context's way back (`way_back`, recorded into
/// `*to_back` by its landing); returns when some context continues this one.
///
/// # Safety
/// As [`leave`], and as [`enter`] for `to` and `to_back`.
#[inline(always)]
pub(crate) unsafe fn hand_over(save: *mut usize, way_back: usize, to: usize, to_back: *mut usize) {
    // SAFETY: as for `enter`.
    unsafe {
        switch_away!(
            "jmp [rdx]",
            in("rdi") save,
            in("rsi") way_back,
            inout("rdx") to => _,
            inout("rcx") to_back => _,
        );
    }
}

/// Leaves the calling OS thread's running context for good: saves it as a suspended context
/// (its stack pointer into `*save`) and goes on, on the stack below `park_top`, with
/// `park(save, arg)`, which never returns. Returns when some carrier continues the saved
/// context ([`enter`], or a hand-over): on that carrier's kernel thread.
///
/// # Safety
/// `park_top` is 16-byte aligned, the top of a stack only `park` will use, forever; `save` is
/// valid for a write and is where the context's resumer will look, which must not resume it
/// before `park` has said so (the write is done before `park` is called).
#[inline(always)]
pub(crate) unsafe fn adopt(
    save: *mut usize,
    park_top: usize,
    park: unsafe extern "C" fn(*mut usize, usize) -> !,
    arg: usize,
) {
    // SAFETY: as for `enter`; `park` is called as a C function on a fresh, aligned stack.
    unsafe {
        switch_away!(
            "mov rsi, r8\n call r9",
            in("rdi") save,
            in("rsi") park_top,
            in("r8") arg,
            in("r9") park,
            lateout("rdx") _, lateout("rcx") _,
        );
    }
}

/// Makes a new context on the stack below `top`: entering it calls `entry(data)`, which must
/// never return (it ends by leaving for good).
///
/// # Safety
/// `top` is 16-byte aligned, with at least 24 writable bytes below it, in a stack only this
/// context will use.
pub(crate) unsafe fn init(
    top: usize,
    entry: unsafe extern "C" fn(usize) -> !,
    data: usize,
) -> usize {
    debug_assert_eq!(top % 16, 0);
    // The landing pops data and entry, leaving rsp at `top` (16-aligned), as `call` needs.
    let frame: [usize; 3] = [
        flexsc_arch_start as *const () as usize,
        data,
        entry as usize,
    ];
    let sp = top - frame.len() * 8;
    // SAFETY: the caller's contract: 24 bytes below `top` are ours to write.
    unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), sp as *mut usize, frame.len()) };
    sp
}
