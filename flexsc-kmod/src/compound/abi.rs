//! The compound ABI, shared with `include/flexsc.h` (`struct flexsc_compound`, `struct
//! flexsc_op`) and the kernel module (`module/compound.c`).
//!
//! A compound is posted as ONE syscall entry: number [`NR_COMPOUND`], `args[0]` the address of
//! its [`Header`]. The header points at `nops` [`Op`]s, at `nops` result words, and at the shared
//! buffer area. The executor copies the header and the ops in, validates them (nothing runs if
//! anything is wrong), runs the ops, and writes every result, `steps` and `stop` back.
//!
//! The entry's return value:
//!
//! - `>= 1`: the program ran. As the multi-call paper's stub: the 1-based index of the op whose
//!   checked call failed (result < 0 with [`op_flags::CHECK`]), or `nops + 1` if the program
//!   ended normally (ran past its last op, or reached a [`op_kind::STOP`]).
//! - `< 0` with `steps == 0`: rejected before anything ran; `stop` names the offending op
//!   (`-EINVAL` malformed, `-E2BIG` too many ops, `-EPERM` a refused syscall number, `-EFAULT`
//!   an unreadable header or ops array; the kernel module may also answer `-ENOMEM`).
//! - `< 0` with `steps > 0`: stopped while running: `-ELOOP` (the step limit `max_steps` was
//!   reached), `-EINTR` (interrupted, or the registration is ending), `-ENODATA` (an argument
//!   referenced a call that has not run in this execution), `-EFAULT` (results not writable).

use crate::entry::NR_FLEXSC_BASE;

/// The entry number of a compound (`FLEXSC_NR_COMPOUND`); `args[0]` is the header's address.
pub const NR_COMPOUND: u16 = NR_FLEXSC_BASE + 1;
/// The header version this library speaks (`FLEXSC_COMPOUND_VERSION`).
pub const VERSION: u32 = 1;
/// Most ops in one compound (`FLEXSC_COMPOUND_MAX_OPS`).
pub const MAX_OPS: u32 = 1024;
/// Largest step limit (`FLEXSC_COMPOUND_MAX_STEPS`): ops executed, loops included.
pub const MAX_STEPS: u32 = 1 << 24;

/// What an op does (`Op::kind`).
pub mod op_kind {
    /// Run system call `nr` with the resolved arguments; its result goes to `results[i]`.
    pub const CALL: u8 = 1;
    /// Compare operand 0 with operand 1 (signed, as `cond` says); if true continue at `target`
    /// (`nops`: end the program), else with the next op.
    pub const JUMP: u8 = 2;
    /// End the program normally.
    pub const STOP: u8 = 3;
}

/// Op flags (`Op::flags`).
pub mod op_flags {
    /// CALL: a negative result stops the program (the paper's `check_return_value`).
    pub const CHECK: u8 = 1;
}

/// Where an argument (or a JUMP operand) comes from (`Op::src`).
pub mod src {
    /// `args[k]` itself.
    pub const IMM: u8 = 0;
    /// `results[ref[k]] + args[k]`: an earlier call's result plus an offset.
    pub const RESULT: u8 = 1;
    /// `buf + args[k]`: an address in the shared buffer area (`args[k] <= buf_len`).
    pub const BUF: u8 = 2;
}

/// JUMP conditions (`Op::cond`), on signed 64-bit operands.
pub mod cond {
    /// Always.
    pub const ALWAYS: u8 = 0;
    /// `a == b`.
    pub const EQ: u8 = 1;
    /// `a != b`.
    pub const NE: u8 = 2;
    /// `a < b`.
    pub const LT: u8 = 3;
    /// `a <= b`.
    pub const LE: u8 = 4;
    /// `a > b`.
    pub const GT: u8 = 5;
    /// `a >= b`.
    pub const GE: u8 = 6;
}

/// The compound's header (`struct flexsc_compound`), 56 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// [`VERSION`].
    pub version: u32,
    /// Number of ops, `1..=MAX_OPS`.
    pub nops: u32,
    /// The step limit: at most this many ops are executed (`1..=MAX_STEPS`; 0 is "missing").
    pub max_steps: u32,
    /// Zero.
    pub flags: u32,
    /// Address of `nops` [`Op`]s.
    pub ops: u64,
    /// Address of `nops` `i64` results (written by the executor).
    pub results: u64,
    /// Address of the shared buffer area (0 if no op uses it).
    pub buf: u64,
    /// Its length in bytes.
    pub buf_len: u64,
    /// Out: ops executed.
    pub steps: u32,
    /// Out: the op where the program ended (`nops`: past the end), or the offending op of a
    /// rejected compound.
    pub stop: u32,
}

/// One op (`struct flexsc_op`), 80 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Op {
    /// [`op_kind`].
    pub kind: u8,
    /// [`op_flags`].
    pub flags: u8,
    /// CALL: the syscall number.
    pub nr: u16,
    /// JUMP: the op to continue at (`0..=nops`).
    pub target: u16,
    /// JUMP: [`cond`].
    pub cond: u8,
    /// CALL: arguments in use (informational).
    pub nargs: u8,
    /// Per argument (JUMP: operands 0 and 1): [`src`].
    pub src: [u8; 6],
    /// Per argument with [`src::RESULT`]: the earlier CALL op whose result it uses.
    pub refs: [u16; 6],
    /// Zero.
    pub reserved: [u8; 6],
    /// Per argument: the value ([`src::IMM`]) or the offset (`RESULT`, `BUF`).
    pub args: [u64; 6],
}

mod layout {
    use super::{Header, Op};
    use memoffset::offset_of;

    const _: () = assert!(size_of::<Header>() == 56);
    const _: () = assert!(offset_of!(Header, max_steps) == 8);
    const _: () = assert!(offset_of!(Header, ops) == 16);
    const _: () = assert!(offset_of!(Header, results) == 24);
    const _: () = assert!(offset_of!(Header, buf) == 32);
    const _: () = assert!(offset_of!(Header, buf_len) == 40);
    const _: () = assert!(offset_of!(Header, steps) == 48);
    const _: () = assert!(offset_of!(Header, stop) == 52);
    const _: () = assert!(size_of::<Op>() == 80);
    const _: () = assert!(offset_of!(Op, nr) == 2);
    const _: () = assert!(offset_of!(Op, target) == 4);
    const _: () = assert!(offset_of!(Op, cond) == 6);
    const _: () = assert!(offset_of!(Op, src) == 8);
    const _: () = assert!(offset_of!(Op, refs) == 14);
    const _: () = assert!(offset_of!(Op, args) == 32);
}
