//! Checking a compound before anything of it runs (mirrored by `module/compound.c`).

use std::fmt;

use super::abi::{Header, MAX_OPS, MAX_STEPS, Op, VERSION, cond, op_flags, op_kind, src};
use crate::calls;
use crate::entry::{NR_FLEXSC_BASE, NR_NOP};

/// Why a compound was rejected: the op at fault (if one is) and the errno executors answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// The offending op's index, if the fault is in an op.
    pub op: Option<u32>,
    /// `EINVAL`, `E2BIG`, `EPERM` or `EFAULT`.
    pub errno: i32,
    /// What is wrong.
    pub what: &'static str,
}

impl Malformed {
    fn at(op: usize, errno: i32, what: &'static str) -> Self {
        Self {
            op: Some(op as u32),
            errno,
            what,
        }
    }

    fn header(errno: i32, what: &'static str) -> Self {
        Self {
            op: None,
            errno,
            what,
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Some(op) => write!(f, "malformed compound: op {op}: {}", self.what),
            None => write!(f, "malformed compound: {}", self.what),
        }
    }
}

impl std::error::Error for Malformed {}

/// Checks the header's own fields (before its ops are read).
pub fn check_header(h: &Header) -> Result<(), Malformed> {
    use libc::{E2BIG, EFAULT, EINVAL};
    if h.version != VERSION {
        return Err(Malformed::header(EINVAL, "unknown version"));
    }
    if h.flags != 0 {
        return Err(Malformed::header(EINVAL, "unknown flags"));
    }
    if h.nops == 0 {
        return Err(Malformed::header(EINVAL, "no ops"));
    }
    if h.nops > MAX_OPS {
        return Err(Malformed::header(
            E2BIG,
            "more ops than FLEXSC_COMPOUND_MAX_OPS",
        ));
    }
    if h.max_steps == 0 {
        return Err(Malformed::header(EINVAL, "no step limit (max_steps is 0)"));
    }
    if h.max_steps > MAX_STEPS {
        return Err(Malformed::header(
            EINVAL,
            "step limit above FLEXSC_COMPOUND_MAX_STEPS",
        ));
    }
    if h.ops == 0 || h.results == 0 {
        return Err(Malformed::header(EFAULT, "null ops or results address"));
    }
    Ok(())
}

/// Checks every op of a compound whose header passed [`check_header`].
pub fn check_ops(h: &Header, ops: &[Op]) -> Result<(), Malformed> {
    use libc::{EINVAL, EPERM};
    debug_assert_eq!(ops.len(), h.nops as usize);
    for (i, op) in ops.iter().enumerate() {
        if op.reserved != [0; 6] {
            return Err(Malformed::at(i, EINVAL, "reserved bytes are not zero"));
        }
        match op.kind {
            op_kind::CALL => {
                if op.flags & !op_flags::CHECK != 0 {
                    return Err(Malformed::at(i, EINVAL, "unknown flags"));
                }
                if op.target != 0 || op.cond != 0 {
                    return Err(Malformed::at(i, EINVAL, "a call has a jump target"));
                }
                if op.nr >= NR_FLEXSC_BASE && op.nr != NR_NOP {
                    return Err(Malformed::at(
                        i,
                        EPERM,
                        "libflexsc operations (compounds) do not nest",
                    ));
                }
                // Referenced arguments are not known yet: checked as 0 ("the calling thread"
                // for the calls that take a pid), the conservative reading; executors check the
                // resolved call again.
                let mut imm = op.args;
                for (a, &s) in imm.iter_mut().zip(&op.src) {
                    if s != src::IMM {
                        *a = 0;
                    }
                }
                if op.nr != NR_NOP && calls::is_thread_bound(op.nr.into(), &imm) {
                    return Err(Malformed::at(
                        i,
                        EPERM,
                        "refused syscall (acts on, creates, replaces or ends the calling thread)",
                    ));
                }
                for k in 0..6 {
                    check_source(h, ops, i, op, k)?;
                }
            }
            op_kind::JUMP => {
                if op.flags != 0 || op.nr != 0 {
                    return Err(Malformed::at(i, EINVAL, "a jump has call fields"));
                }
                if op.cond > cond::GE {
                    return Err(Malformed::at(i, EINVAL, "unknown condition"));
                }
                if u32::from(op.target) > h.nops {
                    return Err(Malformed::at(i, EINVAL, "jump target out of range"));
                }
                for k in 0..2 {
                    check_source(h, ops, i, op, k)?;
                }
                if op.src[2..] != [src::IMM; 4] || op.args[2..] != [0; 4] || op.refs[2..] != [0; 4]
                {
                    return Err(Malformed::at(i, EINVAL, "a jump has only two operands"));
                }
            }
            op_kind::STOP => {
                if *op
                    != (Op {
                        kind: op_kind::STOP,
                        ..Op::default()
                    })
                {
                    return Err(Malformed::at(i, EINVAL, "a stop has operands"));
                }
            }
            _ => return Err(Malformed::at(i, EINVAL, "unknown op kind")),
        }
    }
    Ok(())
}

/// Argument (or operand) `k` of op `i`.
fn check_source(h: &Header, ops: &[Op], i: usize, op: &Op, k: usize) -> Result<(), Malformed> {
    use libc::{EFAULT, EINVAL};
    match op.src[k] {
        src::IMM if op.refs[k] == 0 => Ok(()),
        src::IMM => Err(Malformed::at(
            i,
            EINVAL,
            "an immediate argument has a reference",
        )),
        src::RESULT => {
            let r = op.refs[k] as usize;
            if r >= i {
                Err(Malformed::at(
                    i,
                    EINVAL,
                    "bad reference: it names an op that does not come before this one",
                ))
            } else if ops[r].kind != op_kind::CALL {
                Err(Malformed::at(
                    i,
                    EINVAL,
                    "bad reference: it names an op that is not a call",
                ))
            } else {
                Ok(())
            }
        }
        src::BUF if h.buf == 0 => Err(Malformed::at(
            i,
            EFAULT,
            "a buffer argument without a shared buffer",
        )),
        src::BUF if op.refs[k] != 0 => Err(Malformed::at(
            i,
            EINVAL,
            "a buffer argument has a reference",
        )),
        src::BUF if op.args[k] > h.buf_len => Err(Malformed::at(
            i,
            EINVAL,
            "buffer offset beyond the shared buffer",
        )),
        src::BUF => Ok(()),
        _ => Err(Malformed::at(i, EINVAL, "unknown argument source")),
    }
}
