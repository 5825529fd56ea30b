//! Running a compound found in an entry: `args[0]` is the address of its header, in this
//! process (the `threads` backend's syscall threads, the poster's local fallback, and the
//! preload's `flexsc_compound_run` on an OS thread).

use super::abi::Header;
use super::exec::{self, Issue};
use super::validate::{check_header, check_ops};

/// Copies in, validates and runs the compound at `addr`, writes its results, `steps` and
/// `stop` back, and returns the entry's return value (see [`super::abi`]).
///
/// # Safety
///
/// `addr` must be the address of a readable and writable [`Header`] (or 0, answered `-EFAULT`)
/// whose `ops` and `results` addresses, once the header passes its check, point at `nops`
/// readable ops and `nops` writable results, which nothing else accesses meanwhile: the promise
/// whoever posted the entry made (see [`crate::compound::Compound::entry_call`]). Unlike the
/// kernel module, code in the process cannot check an address without trapping.
pub unsafe fn run_at(addr: u64, issue: &mut dyn Issue) -> i64 {
    if addr == 0 {
        return -(libc::EFAULT as i64);
    }
    let hp = addr as usize as *mut Header;
    // SAFETY: the caller promises a readable header at `addr` (no alignment assumed).
    let mut h = unsafe { hp.read_unaligned() };
    let reject = |h: &mut Header, op: Option<u32>, errno: i32| {
        h.steps = 0;
        h.stop = op.unwrap_or(u32::MAX);
        // SAFETY: as above, the header is writable.
        unsafe { hp.write_unaligned(*h) };
        -(errno as i64)
    };
    if let Err(m) = check_header(&h) {
        return reject(&mut h, m.op, m.errno);
    }
    let n = h.nops as usize;
    let opp = h.ops as usize as *const super::abi::Op;
    // SAFETY: the caller promises `nops` readable ops at `ops` (copied: no alignment assumed,
    // and later writes by the poster cannot change what was validated).
    let ops: Vec<_> = (0..n)
        .map(|i| unsafe { opp.add(i).read_unaligned() })
        .collect();
    if let Err(m) = check_ops(&h, &ops) {
        return reject(&mut h, m.op, m.errno);
    }
    let mut results = vec![0i64; n];
    let ran = exec::run(&h, &ops, &mut results, issue);
    let rp = h.results as usize as *mut i64;
    for (i, r) in results.iter().enumerate() {
        // SAFETY: the caller promises `nops` writable results at `results`.
        unsafe { rp.add(i).write_unaligned(*r) };
    }
    h.steps = ran.steps;
    h.stop = ran.stop;
    // SAFETY: as above.
    unsafe { hp.write_unaligned(h) };
    ran.ret
}

/// [`run_at`] on the calling thread, each call trapping directly (thread-bound calls resolved
/// at run time refused as in any entry): what a poster without executors, or an OS thread
/// outside any runtime, does with a compound.
///
/// # Safety
///
/// As [`run_at`].
pub unsafe fn run_here(addr: u64) -> i64 {
    // SAFETY: forwarded to our caller.
    unsafe { run_at(addr, &mut |nr, a: &[u64; 6]| Some(super::issue_here(nr, a))) }
}
