//! Multi-calls and compound calls: several system calls executed as one unit, posted as ONE
//! syscall entry ([`abi::NR_COMPOUND`]) so they batch with everything else on the syscall page.
//!
//! - A *multi-call* (Rajagopalan et al., "System Call Clustering"): a sequence of calls, each
//!   with a check flag; it stops at the first checked call that fails and returns the paper's
//!   value, the 1-based index of that call or `count + 1` ([`multi_call`],
//!   [`crate::Poster::multi_call`]).
//! - A *compound* (Purohit et al., "Cosy"): calls whose arguments reference earlier results (plus
//!   an offset), comparisons that skip, stop or jump (backwards too: loops), a step limit so
//!   nothing runs forever, and a shared buffer area the calls read and write by offset
//!   ([`Builder`]). Only system calls, references and comparisons: no user code runs in the
//!   executor, which may be the kernel.
//!
//! Every executor validates the program before running anything ([`validate`]); the kernel
//! module does so on its own copy. Backends: `threads` runs the whole program on one syscall
//! thread, back to back; `uring` runs a multi-call whose calls all have exact opcodes as one
//! chain of linked requests, anything else on a syscall thread; `kmod` runs it inside one kernel
//! entry of a syscall thread (`module/compound.c`). See `docs/beyond-flexsc.md`.

pub mod abi;
pub mod exec;
pub mod executor;
pub mod validate;

use std::fmt;

use crate::calls;
use crate::poster::Syscall;
use crate::raw;
use crate::specialize::SharedBuffer;
use abi::{Header, NR_COMPOUND, Op, op_flags, op_kind, src};
pub use validate::Malformed;

/// An op of a compound under construction, to reference its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(u16);

impl OpId {
    /// The op's index in the program.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A place in the program a jump can go to; [bound](Builder::bind) once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Where an argument (or a comparison operand) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// This value.
    Imm(u64),
    /// An earlier call's result plus an offset (wrapping): `Ref(read, 0)` is "what read
    /// returned", `Ref(mmap, 16)` an address 16 bytes into what mmap returned.
    Ref(OpId, u64),
    /// The address of this offset in the shared buffer area.
    Buf(u64),
}

/// A comparison of two signed 64-bit operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    /// `a == b`.
    Eq,
    /// `a != b`.
    Ne,
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
}

impl Cond {
    fn code(self) -> u8 {
        use abi::cond::*;
        match self {
            Cond::Eq => EQ,
            Cond::Ne => NE,
            Cond::Lt => LT,
            Cond::Le => LE,
            Cond::Gt => GT,
            Cond::Ge => GE,
        }
    }
}

/// Builds a [`Compound`].
#[derive(Debug, Default)]
pub struct Builder {
    ops: Vec<Op>,
    /// Per label: the op index it is bound to.
    labels: Vec<Option<u16>>,
    /// Jump ops and the label each goes to.
    jumps: Vec<(usize, Label)>,
    buf_len: usize,
    /// The buffer is a [`SharedBuffer`] (registered with the io_uring rings).
    registered: bool,
    max_steps: u32,
}

impl Builder {
    /// An empty program with no shared buffer and no step limit (one must be set for a program
    /// with a backward jump, a loop; otherwise it defaults to the number of ops).
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the program a zeroed shared buffer area of `len` bytes ([`Arg::Buf`]).
    pub fn buffer(&mut self, len: usize) -> &mut Self {
        self.buf_len = len;
        self.registered = false;
        self
    }

    /// As [`Self::buffer`], the area a [`SharedBuffer`]: registered with every io_uring ring
    /// while the compound lives, so that on the `uring` backend the reads and writes of a
    /// multi-call's chain (and single entries) with their buffer in it use fixed buffers. Each
    /// build maps a new one (1 byte to 1 GiB), unregistered when its compound is dropped.
    pub fn shared_buffer(&mut self, len: usize) -> &mut Self {
        self.buf_len = len;
        self.registered = true;
        self
    }

    /// At most `steps` ops are executed (calls, jumps and the stop each count one); a program
    /// that gets there stops with [`CompoundError::StepLimit`].
    pub fn max_steps(&mut self, steps: u32) -> &mut Self {
        self.max_steps = steps;
        self
    }

    /// Appends `call`; with `check`, a negative result stops the program.
    pub fn call(&mut self, call: Syscall, check: bool) -> OpId {
        let args: Vec<Arg> = call.args()[..call.nargs() as usize]
            .iter()
            .map(|&a| Arg::Imm(a))
            .collect();
        // SAFETY: `call` was built with `Syscall::new`, whose caller vouched for exactly these
        // arguments; running it inside a compound is running it exception-lessly.
        unsafe { self.call_with(call.nr(), &args, check) }
    }

    /// Appends call `nr` with arguments resolved when it runs.
    ///
    /// # Safety
    ///
    /// As [`Syscall::new`], for the arguments as they will be resolved: for example a read into
    /// `Arg::Buf(off)` must not be longer than the buffer's `len - off`, and a referenced result
    /// used as a length or address must be valid as one whatever it turns out to be (or the
    /// program must compare it first).
    pub unsafe fn call_with(&mut self, nr: i64, args: &[Arg], check: bool) -> OpId {
        assert!(args.len() <= 6, "a system call takes at most 6 arguments");
        let mut op = Op {
            kind: op_kind::CALL,
            flags: if check { op_flags::CHECK } else { 0 },
            // Out-of-range numbers become 0xFFFF, which the validator refuses.
            nr: u16::try_from(nr).unwrap_or(u16::MAX),
            nargs: args.len() as u8,
            ..Op::default()
        };
        for (k, a) in args.iter().enumerate() {
            set_arg(&mut op, k, *a);
        }
        self.push(op)
    }

    /// A new label, to [bind](Self::bind) where a jump should land.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `label` to the next op appended (or to the end of the program).
    ///
    /// # Panics
    ///
    /// If `label` is already bound.
    pub fn bind(&mut self, label: Label) {
        assert!(self.labels[label.0].is_none(), "label bound twice");
        self.labels[label.0] = Some(self.ops.len().min(u16::MAX as usize) as u16);
    }

    /// Continues at `to` if `a cond b`, else with the next op.
    pub fn jump_if(&mut self, cond: Cond, a: Arg, b: Arg, to: Label) {
        let mut op = Op {
            kind: op_kind::JUMP,
            cond: cond.code(),
            ..Op::default()
        };
        set_arg(&mut op, 0, a);
        set_arg(&mut op, 1, b);
        self.jumps.push((self.ops.len(), to));
        self.push(op);
    }

    /// Continues at `to`.
    pub fn jump(&mut self, to: Label) {
        self.jumps.push((self.ops.len(), to));
        self.push(Op {
            kind: op_kind::JUMP,
            cond: abi::cond::ALWAYS,
            ..Op::default()
        });
    }

    /// Ends the program normally here.
    pub fn stop(&mut self) {
        self.push(Op {
            kind: op_kind::STOP,
            ..Op::default()
        });
    }

    fn push(&mut self, op: Op) -> OpId {
        self.ops.push(op);
        OpId((self.ops.len() - 1).min(u16::MAX as usize) as u16)
    }

    /// The program, checked exactly as executors check it (a shared buffer that cannot be
    /// mapped is answered as `ENOMEM`, or `EINVAL` for a length out of range).
    pub fn build(&self) -> Result<Compound, Malformed> {
        let mut ops = self.ops.clone();
        for &(at, label) in &self.jumps {
            match self.labels[label.0] {
                Some(t) => ops[at].target = t,
                None => {
                    return Err(Malformed {
                        op: Some(at as u32),
                        errno: libc::EINVAL,
                        what: "jump to a label never bound",
                    });
                }
            }
        }
        // Without a backward jump no op runs twice: the op count is a limit.
        let forward = self
            .jumps
            .iter()
            .all(|&(at, _)| usize::from(ops[at].target) > at);
        let max_steps = if self.max_steps == 0 && forward {
            ops.len() as u32
        } else {
            self.max_steps
        };
        let buf = if self.registered {
            Area::Shared(SharedBuffer::new(self.buf_len).map_err(|e| Malformed {
                op: None,
                errno: if e.kind() == std::io::ErrorKind::InvalidInput {
                    libc::EINVAL
                } else {
                    libc::ENOMEM
                },
                what: "the shared buffer could not be mapped",
            })?)
        } else {
            Area::Plain(vec![0u8; self.buf_len].into_boxed_slice())
        };
        let mut c = Compound {
            header: Box::new(Header {
                version: abi::VERSION,
                nops: ops.len().min(u32::MAX as usize) as u32,
                max_steps,
                ..Header::default()
            }),
            results: vec![exec::NOT_RUN; ops.len()].into_boxed_slice(),
            ops: ops.into_boxed_slice(),
            buf,
        };
        c.point();
        validate::check_header(&c.header)?;
        validate::check_ops(&c.header, &c.ops)?;
        Ok(c)
    }
}

fn set_arg(op: &mut Op, k: usize, a: Arg) {
    let (s, r, v) = match a {
        Arg::Imm(v) => (src::IMM, 0, v),
        Arg::Ref(id, off) => (src::RESULT, id.0, off),
        Arg::Buf(off) => (src::BUF, 0, off),
    };
    op.src[k] = s;
    op.refs[k] = r;
    op.args[k] = v;
}

/// A compound's shared buffer area.
#[derive(Debug)]
enum Area {
    Plain(Box<[u8]>),
    Shared(SharedBuffer),
}

impl std::ops::Deref for Area {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Area::Plain(b) => b,
            Area::Shared(b) => b,
        }
    }
}

impl std::ops::DerefMut for Area {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Area::Plain(b) => b,
            Area::Shared(b) => b,
        }
    }
}

/// A validated program with its results and shared buffer, ready to run any number of times
/// ([`crate::Poster::compound`]).
#[derive(Debug)]
pub struct Compound {
    header: Box<Header>,
    ops: Box<[Op]>,
    results: Box<[i64]>,
    buf: Area,
}

impl Compound {
    /// Points the header at the ops, results and buffer (their addresses never change: boxed or
    /// mapped).
    fn point(&mut self) {
        self.header.ops = self.ops.as_ptr() as u64;
        self.header.results = self.results.as_mut_ptr() as u64;
        let (buf, len) = if self.buf.is_empty() {
            (0, 0)
        } else {
            (self.buf.as_mut_ptr() as u64, self.buf.len() as u64)
        };
        self.header.buf = buf;
        self.header.buf_len = len;
    }

    /// The ops (the ABI form).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The result of op `id` in the last run ([`exec::NOT_RUN`] if it did not run).
    pub fn result(&self, id: OpId) -> i64 {
        self.results[id.index()]
    }

    /// Every op's result in the last run (jumps and stops keep [`exec::NOT_RUN`]).
    pub fn results(&self) -> &[i64] {
        &self.results
    }

    /// The shared buffer area.
    pub fn buffer(&self) -> &[u8] {
        &self.buf
    }

    /// The shared buffer area, to fill before a run.
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// The entry that runs this compound: number [`NR_COMPOUND`], the header's address.
    ///
    /// # Safety
    ///
    /// The compound (header, ops, results, buffer) must not be touched, moved out of or dropped
    /// from the post until the entry's result is taken, or until the registration is shut down,
    /// as for [`Syscall::new`]'s memory; the calls' own arguments obey what was promised to
    /// [`Builder::call_with`]. [`crate::Poster::compound`] does all this for a synchronous run.
    pub unsafe fn entry_call(&mut self) -> Syscall {
        self.point();
        // SAFETY: the caller keeps the program alive and untouched while the entry is in
        // flight; the executor validates it before running anything.
        unsafe { Syscall::new(NR_COMPOUND.into(), &[&*self.header as *const Header as u64]) }
    }

    /// Reads a finished run's outcome from the entry's return value `ret`.
    pub fn outcome(&self, ret: i64) -> Result<Outcome, CompoundError> {
        let (steps, stop) = (self.header.steps, self.header.stop);
        if ret >= 1 {
            return Ok(Outcome {
                ret: ret as u64,
                nops: self.ops.len(),
                steps,
            });
        }
        let errno = (-ret).clamp(0, i32::MAX.into()) as i32;
        Err(CompoundError { errno, steps, stop })
    }
}

/// A compound that ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The paper's return value: the 1-based index of the checked call that failed, or
    /// `nops + 1`.
    pub ret: u64,
    /// Ops in the program.
    pub nops: usize,
    /// Ops executed.
    pub steps: u32,
}

impl Outcome {
    /// The checked call that failed and stopped the program, if one did.
    pub fn failed(&self) -> Option<OpId> {
        (self.ret as usize <= self.nops).then(|| OpId(self.ret as u16 - 1))
    }
}

/// A compound that was rejected, or stopped without completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompoundError {
    /// The errno (see [`abi`]).
    pub errno: i32,
    /// Ops executed (0: rejected before anything ran).
    pub steps: u32,
    /// The op at fault or where it stopped (`u32::MAX`: the header).
    pub stop: u32,
}

impl CompoundError {
    /// Whether the executor refused the program before running anything.
    pub fn rejected(&self) -> bool {
        self.steps == 0
    }
}

impl fmt::Display for CompoundError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.errno {
            libc::ELOOP => "step limit reached",
            libc::EINTR => "interrupted",
            libc::ENODATA => "an argument references a call that has not run",
            libc::EPERM => "refused system call",
            libc::E2BIG => "too many ops",
            libc::EFAULT => "bad address",
            libc::EINVAL => "malformed program",
            libc::ENOSYS => "this executor does not run compounds",
            _ => "failed",
        };
        let at = if self.stop == u32::MAX {
            "the header".to_string()
        } else {
            format!("op {}", self.stop)
        };
        if self.rejected() {
            write!(
                f,
                "compound rejected at {at}: {what} (errno {})",
                self.errno
            )
        } else {
            write!(
                f,
                "compound stopped at {at} after {} steps: {what} (errno {})",
                self.steps, self.errno
            )
        }
    }
}

impl std::error::Error for CompoundError {}

/// A multi-call of `calls`, each with its check flag: runs them in order, stopping after the
/// first checked call that fails.
pub fn multi_call(calls: &[(Syscall, bool)]) -> Result<Compound, Malformed> {
    let mut b = Builder::new();
    for &(call, check) in calls {
        b.call(call, check);
    }
    b.build()
}

/// Runs one call of a compound on the calling thread (a syscall thread, or the poster's local
/// fallback): thread-bound calls resolved at run time are refused as in any entry.
pub(crate) fn issue_here(nr: u16, args: &[u64; 6]) -> i64 {
    if let Some(r) = calls::flexsc_op_result(nr.into()) {
        return r;
    }
    if calls::is_thread_bound(nr.into(), args) {
        return calls::REFUSED;
    }
    // SAFETY: not thread-bound; the pointer arguments are the poster's, vouched for when the
    // compound was built, and checked by the kernel (-EFAULT).
    unsafe { raw::syscall6(nr.into(), args) }
}
