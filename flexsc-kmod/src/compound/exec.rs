//! Running a validated compound: the interpreter the `threads` backend's syscall threads (and
//! the poster's local fallback) use; `module/compound.c` is its kernel twin.

use super::abi::{Header, Op, cond, op_flags, op_kind, src};

/// The result every op starts with (`-ECANCELED`: did not run).
pub const NOT_RUN: i64 = -(libc::ECANCELED as i64);

/// How the interpreter issues one call: its result, or `None` if the compound must stop as
/// interrupted (`-EINTR`).
pub trait Issue {
    /// Runs `nr(args)`.
    fn issue(&mut self, nr: u16, args: &[u64; 6]) -> Option<i64>;
}

impl<F: FnMut(u16, &[u64; 6]) -> Option<i64>> Issue for F {
    fn issue(&mut self, nr: u16, args: &[u64; 6]) -> Option<i64> {
        self(nr, args)
    }
}

/// What a run did: the entry's return value, the ops executed, where it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ran {
    /// The entry's return value (see [`super::abi`]).
    pub ret: i64,
    /// Ops executed.
    pub steps: u32,
    /// The op where it ended (`nops`: past the end).
    pub stop: u32,
}

/// Runs `ops` (validated with `h`) filling `results` (one per op, reset to [`NOT_RUN`] first).
pub fn run(h: &Header, ops: &[Op], results: &mut [i64], issue: &mut dyn Issue) -> Ran {
    let nops = ops.len();
    results.fill(NOT_RUN);
    let mut ran = [0u64; (super::abi::MAX_OPS as usize).div_ceil(64)];
    let mut pc = 0usize;
    let mut steps = 0u32;
    let end = |ret: i64, steps: u32, pc: usize| Ran {
        ret,
        steps,
        stop: pc as u32,
    };
    loop {
        if pc >= nops {
            return end(nops as i64 + 1, steps, nops);
        }
        if steps >= h.max_steps {
            return end(-(libc::ELOOP as i64), steps, pc);
        }
        steps += 1;
        let op = &ops[pc];
        // Resolves argument k; None: it references a call that has not run.
        let arg = |k: usize| -> Option<u64> {
            match op.src[k] {
                src::RESULT => {
                    let r = op.refs[k] as usize;
                    (ran[r / 64] & (1 << (r % 64)) != 0)
                        .then(|| (results[r] as u64).wrapping_add(op.args[k]))
                }
                src::BUF => Some(h.buf.wrapping_add(op.args[k])),
                _ => Some(op.args[k]),
            }
        };
        match op.kind {
            op_kind::CALL => {
                let mut args = [0u64; 6];
                for (k, a) in args.iter_mut().enumerate() {
                    match arg(k) {
                        Some(v) => *a = v,
                        None => return end(-(libc::ENODATA as i64), steps, pc),
                    }
                }
                let Some(r) = issue.issue(op.nr, &args) else {
                    return end(-(libc::EINTR as i64), steps, pc);
                };
                results[pc] = r;
                ran[pc / 64] |= 1 << (pc % 64);
                if r < 0 && op.flags & op_flags::CHECK != 0 {
                    return end(pc as i64 + 1, steps, pc);
                }
                pc += 1;
            }
            op_kind::JUMP => {
                let (Some(a), Some(b)) = (arg(0), arg(1)) else {
                    return end(-(libc::ENODATA as i64), steps, pc);
                };
                let (a, b) = (a as i64, b as i64);
                let taken = match op.cond {
                    cond::EQ => a == b,
                    cond::NE => a != b,
                    cond::LT => a < b,
                    cond::LE => a <= b,
                    cond::GT => a > b,
                    cond::GE => a >= b,
                    _ => true,
                };
                pc = if taken { op.target as usize } else { pc + 1 };
            }
            _ => return end(nops as i64 + 1, steps, pc),
        }
    }
}
