//! x86_64 (System V): a suspended context is its stack pointer; below it on its stack, the six
//! callee-saved general registers (rbp, rbx, r12-r15) and the address `switch` returns to.
//! MXCSR and the x87 control word, callee-saved too, are switched by the runtime only when a
//! green thread changed them (`crate::fpu`).

use std::arch::global_asm;

global_asm!(
    // switch(save: *mut usize [rdi], to: usize [rsi], arg: usize [rdx]) -> usize [rax]
    ".globl flexsc_arch_switch",
    ".hidden flexsc_arch_switch",
    ".type flexsc_arch_switch, @function",
    "flexsc_arch_switch:",
    ".cfi_startproc",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "mov rax, rdx",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".cfi_endproc",
    ".size flexsc_arch_switch, . - flexsc_arch_switch",
    // The first return of a new context (see `init`): entry(data [r12], arg [rax]), which never
    // returns. The return address is undefined here, so backtraces end at this frame.
    ".globl flexsc_arch_start",
    ".hidden flexsc_arch_start",
    ".type flexsc_arch_start, @function",
    "flexsc_arch_start:",
    ".cfi_startproc",
    ".cfi_undefined rip",
    "mov rdi, r12",
    "mov rsi, rax",
    "call rbx",
    "ud2",
    ".cfi_endproc",
    ".size flexsc_arch_start, . - flexsc_arch_start",
);

unsafe extern "C" {
    fn flexsc_arch_switch(save: *mut usize, to: usize, arg: usize) -> usize;
    fn flexsc_arch_start() -> !;
}

/// Saves the calling context (its stack pointer into `*save`) and continues the context `to` (a
/// stack pointer saved by an earlier `switch`, or made by [`init`]), where the pending `switch`
/// returns `arg` (or, for a new context, its entry is called with `arg`). Returns when some
/// context switches back to the one saved here, with that switch's `arg`.
///
/// # Safety
/// `to` is a suspended context that nobody else continues, on a stack that stays mapped while it
/// runs; `save` is valid for a write and stays where the context that will switch back looks.
#[inline(always)]
pub(crate) unsafe fn switch(save: *mut usize, to: usize, arg: usize) -> usize {
    // SAFETY: the caller's contract; the routine saves and restores every callee-saved register.
    unsafe { flexsc_arch_switch(save, to, arg) }
}

/// Makes a new context on the stack below `top`: the first switch to the returned stack pointer
/// calls `entry(data, arg)`, which must never return (it ends by switching away for good).
///
/// # Safety
/// `top` is 16-byte aligned, with at least 64 writable bytes below it, in a stack only this
/// context will use.
pub(crate) unsafe fn init(
    top: usize,
    entry: unsafe extern "C" fn(usize, usize) -> !,
    data: usize,
) -> usize {
    debug_assert_eq!(top % 16, 0);
    // [top - 8]: where `switch`'s `ret` goes; then rbp, rbx, r12, r13, r14, r15 as it pops them.
    // After the pops and the `ret`, rsp is `top` (16-aligned), as `call` needs.
    let frame: [usize; 7] = [
        0,              // r15
        0,              // r14
        0,              // r13
        data,           // r12
        entry as usize, // rbx
        0,              // rbp
        flexsc_arch_start as *const () as usize,
    ];
    let sp = top - frame.len() * 8;
    // SAFETY: the caller's contract: 56 bytes below `top` are ours to write.
    unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), sp as *mut usize, frame.len()) };
    sp
}
