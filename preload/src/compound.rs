//! The C API of multi-calls and compound calls (`flexsc.h`): `flexsc_compound_run` and
//! `flexsc_multicall`, and `syscall(FLEXSC_NR_COMPOUND, header)` (the [`syscall`](crate::syscall)
//! export comes here).
//!
//! On a green thread the compound is posted as ONE entry (`FLEXSC_NR_COMPOUND`) on its carrier's
//! syscall page, as any call; the green thread switches while it runs. Anywhere else (before the
//! runtime starts, on glibc's threads) it runs in-process with the same interpreter and the same
//! checks, each call trapping: the results are the same, only the crossings differ.

use libc::c_long;

use flexsc_threads::kmod::compound::abi::{Header, MAX_OPS, NR_COMPOUND, Op, VERSION};
use flexsc_threads::kmod::compound::abi::{op_flags, op_kind};
use flexsc_threads::kmod::compound::exec::NOT_RUN;
use flexsc_threads::kmod::compound::executor;

use crate::rt::{self, InLib};

/// One call of a multi-call (`struct flexsc_call`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Call {
    /// The syscall number.
    pub nr: i64,
    /// Its arguments.
    pub args: [u64; 6],
    /// Nonzero: a negative result stops the multi-call.
    pub check: i32,
    /// Out: the result (`-ECANCELED`: it did not run).
    pub result: i64,
}

const _: () = assert!(size_of::<Call>() == 72);
const _: () = assert!(std::mem::offset_of!(Call, check) == 56);
const _: () = assert!(std::mem::offset_of!(Call, result) == 64);

/// Runs the compound whose header is at `addr` and returns its entry's raw return value.
///
/// # Safety
/// `addr` is 0 or the address of a compound as `flexsc.h` describes it (header, ops, results,
/// buffer and the calls' own arguments valid until this returns).
pub(crate) unsafe fn run(addr: u64) -> i64 {
    if rt::application_caller() && rt::on_green_thread() {
        let r = {
            let _lib = InLib::enter();
            // SAFETY: the caller's contract; the posting green thread waits for the result, so
            // the compound outlives the entry.
            unsafe { flexsc_threads::syscall(NR_COMPOUND.into(), &[addr]) }
        };
        // Handlers of signals sent meanwhile run now; an interrupted compound is not restarted
        // (its first calls already ran): it ends -EINTR with its steps, as documented.
        let _ = crate::signal::after_call(r, false);
        return r;
    }
    // SAFETY: the caller's contract; the executor validates the program before running it.
    unsafe { executor::run_here(addr) }
}

/// `flexsc_compound_run`: runs the compound `h` and returns what its entry returns.
///
/// # Safety
/// `h` is null or points at a compound as `flexsc.h` describes it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flexsc_compound_run(h: *mut Header) -> c_long {
    // SAFETY: the caller's contract (null is answered -EFAULT).
    unsafe { run(h as u64) }
}

/// `flexsc_multicall`: runs `calls[..count]` in order as one compound, filling every result;
/// returns the paper's value or `-errno` (rejected, nothing ran).
///
/// # Safety
/// `calls` points at `count` calls, each valid as for `syscall(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flexsc_multicall(calls: *mut Call, count: u32) -> c_long {
    if calls.is_null() || count == 0 {
        return -c_long::from(libc::EINVAL);
    }
    if count > MAX_OPS {
        return -c_long::from(libc::E2BIG);
    }
    // SAFETY: the caller's contract: `count` calls at `calls`, ours until we return.
    let calls = unsafe { std::slice::from_raw_parts_mut(calls, count as usize) };
    let ops: Vec<Op> = calls
        .iter()
        .map(|c| Op {
            kind: op_kind::CALL,
            flags: if c.check != 0 { op_flags::CHECK } else { 0 },
            // Out-of-range numbers become 0xFFFF, which the validator refuses (EPERM).
            nr: u16::try_from(c.nr).unwrap_or(u16::MAX),
            nargs: 6,
            args: c.args,
            ..Op::default()
        })
        .collect();
    let mut results = vec![NOT_RUN; ops.len()];
    let mut h = Header {
        version: VERSION,
        nops: count,
        max_steps: count,
        ops: ops.as_ptr() as u64,
        results: results.as_mut_ptr() as u64,
        ..Header::default()
    };
    // SAFETY: the header points at our ops and results, alive until `run` returns; the calls'
    // arguments are the caller's contract.
    let ret = unsafe { run(&mut h as *mut Header as u64) };
    for (c, r) in calls.iter_mut().zip(&results) {
        c.result = *r;
    }
    ret
}
