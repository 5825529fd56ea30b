//! Multi-calls on io_uring: a compound entry whose ops are all calls with exact requests runs
//! as ONE chain of linked requests (`IOSQE_IO_LINK`), submitted with the batch's one enter.
//!
//! Semantics, equal to running the calls in order:
//!
//! - io_uring breaks a link when a request fails *or transfers less than asked* (a short read
//!   or write), answering the rest `-ECANCELED`. Where the call that broke it is checked and
//!   failed, that is the multi-call's stop (its 1-based index is returned, the rest did not run).
//!   Anywhere else (an unchecked failure, a short transfer) the rest is resubmitted as a new
//!   chain from the next call: one more enter, the same results as sequential execution.
//! - Anything else goes to the syscall threads: more calls than the submission queue holds (a
//!   link is queued at once and never split between submissions, where its second half would run
//!   unordered), references to results, jumps, stops, calls with no exact request (see `opcode`: the read/write family at the file position, on fds that may
//!   be non-blocking, is not exact), a step limit below the op count, a malformed program (the
//!   syscall thread rejects it with the errno).
//! - Positional reads and writes (pread, pwrite, ...) are taken: io_uring ignores the offset on
//!   a pipe or socket (the divergence `opcode` documents) and, inside a chain, waits there for
//!   data instead of failing with `-ESPIPE` (outside a chain `fixup` settles that case).
//! - An interrupt cancels the chain's requests: calls that had not completed answer
//!   `-ECANCELED` (not run), and the entry `-EINTR`.
//! - A read, write, pread or pwrite whose buffer lies in a [`crate::specialize::SharedBuffer`]
//!   registered on the ring (a compound built with `shared_buffer`) is a `READ_FIXED` or
//!   `WRITE_FIXED` request on it.

use io_uring::squeue::{Entry, Flags};

use super::fixup::Fix;
use super::opcode::{self, Route};
use super::ring::Caps;
use super::specialize::RingSpecs;
use crate::compound::abi::{Header, Op, op_flags, op_kind, src};
use crate::compound::exec::NOT_RUN;
use crate::compound::validate::{check_header, check_ops};

/// `user_data` of a chain's request: this bit, the op index at bit 32, the entry's slot below.
pub(super) const TAG: u64 = 1 << 63;

/// The slot and op index a chain request's `user_data` names.
pub(super) fn untag(user_data: u64) -> (u32, usize) {
    (user_data as u32, ((user_data & !TAG) >> 32) as usize)
}

/// One compound entry running as linked requests.
#[derive(Debug)]
pub(super) struct Chain {
    /// The header's address (results, `steps` and `stop` are written through it).
    header: u64,
    ops: Vec<Op>,
    requests: Vec<Entry>,
    results: Vec<i64>,
    /// The first op of the link in flight.
    from: usize,
    /// Its requests not completed yet.
    pending: usize,
    interrupted: bool,
}

/// What a completion did to its chain.
pub(super) enum Progress {
    /// Requests of the link are still out.
    Pending,
    /// The link broke before its end without stopping the program: submit [`Chain::link`].
    Resubmit,
    /// The program is over: complete the entry with this.
    Done(i64),
}

impl Chain {
    /// The chain for the compound at `addr`, if it is a multi-call io_uring runs exactly; calls
    /// whose buffer lies in a shared buffer registered on the ring (`specs`) read or write it as
    /// a fixed buffer.
    ///
    /// # Safety
    ///
    /// As [`crate::compound::executor::run_at`]: the poster vouched for the program at `addr`.
    pub(super) unsafe fn plan(addr: u64, caps: &Caps, specs: &RingSpecs) -> Option<Self> {
        if addr == 0 {
            return None;
        }
        // SAFETY: the caller's promise (a readable header; no alignment assumed).
        let h = unsafe { (addr as usize as *const Header).read_unaligned() };
        check_header(&h).ok()?;
        if h.max_steps < h.nops {
            return None;
        }
        let opp = h.ops as usize as *const Op;
        // SAFETY: the caller's promise: `nops` readable ops at `ops`.
        let ops: Vec<Op> = (0..h.nops as usize)
            .map(|i| unsafe { opp.add(i).read_unaligned() })
            .collect();
        check_ops(&h, &ops).ok()?;
        let mut requests = Vec::with_capacity(ops.len());
        for op in &ops {
            if op.kind != op_kind::CALL {
                return None;
            }
            let mut args = op.args;
            for (k, a) in args.iter_mut().enumerate() {
                match op.src[k] {
                    src::IMM => {}
                    src::BUF => *a = h.buf.wrapping_add(*a),
                    _ => return None,
                }
            }
            match opcode::route(op.nr, &args, caps, specs.lookup_buffer(op.nr, &args)) {
                Route::Ring(sqe, fix) if fix.chainable() => requests.push(sqe),
                _ => return None,
            }
        }
        Some(Self {
            header: addr,
            results: vec![NOT_RUN; ops.len()],
            ops,
            requests,
            from: 0,
            pending: 0,
            interrupted: false,
        })
    }

    /// Requests in the program.
    pub(super) fn len(&self) -> usize {
        self.ops.len()
    }

    /// The requests' io_uring opcodes.
    #[cfg(test)]
    pub(super) fn opcodes(&self) -> Vec<u8> {
        self.requests.iter().map(|r| r.get_opcode() as u8).collect()
    }

    /// The link from op `from` to the end, tagged for entry `slot`.
    pub(super) fn link(&mut self, slot: u32) -> Vec<Entry> {
        let n = self.ops.len();
        self.pending = n - self.from;
        (self.from..n)
            .map(|i| {
                let sqe = self.requests[i]
                    .clone()
                    .user_data(TAG | (i as u64) << 32 | u64::from(slot));
                if i + 1 < n {
                    sqe.flags(Flags::IO_LINK)
                } else {
                    sqe
                }
            })
            .collect()
    }

    /// The `user_data` of the requests of the link in flight, to cancel them.
    pub(super) fn in_flight(&self, slot: u32) -> impl Iterator<Item = u64> {
        (self.from..self.ops.len()).map(move |i| TAG | (i as u64) << 32 | u64::from(slot))
    }

    /// Marks the chain interrupted: it ends with `-EINTR` once its requests are back.
    pub(super) fn interrupt(&mut self) {
        self.interrupted = true;
    }

    /// Op `op`'s request completed with `res`.
    pub(super) fn complete(&mut self, op: usize, res: i32) -> Progress {
        self.results[op] = res.into();
        self.pending -= 1;
        if self.pending > 0 {
            return Progress::Pending;
        }
        let n = self.ops.len();
        for i in self.from..n {
            let r = self.results[i];
            if self.interrupted && r == NOT_RUN {
                return Progress::Done(self.finish(-(libc::EINTR as i64), i));
            }
            if r < 0 && self.ops[i].flags & op_flags::CHECK != 0 {
                return Progress::Done(self.finish(i as i64 + 1, i));
            }
            if i + 1 < n && self.results[i + 1] == NOT_RUN {
                if self.interrupted {
                    return Progress::Done(self.finish(-(libc::EINTR as i64), i + 1));
                }
                // Broken after a short transfer or an unchecked failure: go on from i + 1.
                self.from = i + 1;
                return Progress::Resubmit;
            }
        }
        Progress::Done(self.finish(n as i64 + 1, n))
    }

    /// Ends the program at op `stop` with `ret`, writing the results, `steps` and `stop` back.
    /// The ring is abandoned: the program ends here, `-ECANCELED`, results as they are.
    pub(super) fn abandon(&mut self) -> i64 {
        self.finish(-(libc::ECANCELED as i64), self.from)
    }

    fn finish(&mut self, ret: i64, stop: usize) -> i64 {
        let n = self.ops.len();
        let hp = self.header as usize as *mut Header;
        // SAFETY: `plan`'s promise: the header is readable and writable, and its results
        // address holds `nops` writable results, until the entry is completed (after this).
        unsafe {
            let mut h = hp.read_unaligned();
            let rp = h.results as usize as *mut i64;
            for (i, r) in self.results.iter().enumerate() {
                rp.add(i).write_unaligned(*r);
            }
            // Every op up to the stop ran (the stop itself too, unless it is the end).
            h.steps = (stop + usize::from(stop < n && ret > 0)).min(n) as u32;
            h.stop = stop as u32;
            hp.write_unaligned(h);
        }
        ret
    }
}

impl Fix {
    /// Whether the request's completion is the call's result with no follow-up: what a link
    /// needs (see the module documentation for positional calls).
    pub(super) fn chainable(&self) -> bool {
        matches!(self, Fix::Exact) || self.positional_only()
    }
}
