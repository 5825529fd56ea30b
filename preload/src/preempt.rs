//! Preemption under the preload (`FLEXSC_PREEMPT`): which green threads the runtime may make
//! yield when they keep a carrier for a whole slice (`flexsc_threads::Preemption`).
//!
//! Only the main executable's own code is preempted. A yield there is as sound as a call to
//! `sched_yield` the program could have made at that instruction. Everywhere else a yield could
//! hold a lock that makes kernel threads wait: libc's internal ones (malloc's arenas, stdio,
//! the loader), the runtime's own (`std::sync` in this library), so a green thread of the same
//! carrier wanting it would block the carrier on a thread queued behind it. Shared libraries the
//! program uses are not preempted either (they may be called back from libc with such a lock
//! held); a spin loop there still livelocks as under cooperative scheduling.
//!
//! Also left alone: an instruction at or just after a `syscall` (a raw system call the program
//! makes, interrupted or about to be restarted: a restart must happen on the kernel thread that
//! began the call), and the library's own code running for the program (`InLib`).

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::rt;

/// The default slice: long next to a green thread's usual run between calls (microseconds),
/// short next to the time a livelocked server's clients wait.
const DEFAULT_SLICE: Duration = Duration::from_millis(10);

/// Executable segments of the main program kept: `[start, end)` pairs, 0 when unused.
const SEGMENTS: usize = 4;
static TEXT: [AtomicUsize; 2 * SEGMENTS] = [const { AtomicUsize::new(0) }; 2 * SEGMENTS];

/// The slice `FLEXSC_PREEMPT` asks for, in milliseconds (`0` or `off`: none); the default when
/// unset.
pub(crate) fn slice() -> std::io::Result<Option<Duration>> {
    let Some(v) = std::env::var_os("FLEXSC_PREEMPT") else {
        return Ok(Some(DEFAULT_SLICE));
    };
    flexsc_threads::Preemption::parse_slice(&v.to_string_lossy()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("FLEXSC_PREEMPT={e}"),
        )
    })
}

/// Records where the main program's code is (call before the runtime starts).
pub(crate) fn find_program_text() {
    extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, _: *mut c_void) -> c_int {
        // SAFETY: dl_iterate_phdr passes a valid record whose headers it keeps mapped during
        // the callback; the first record is the main program.
        let info = unsafe { &*info };
        // SAFETY: as above: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        let text = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0);
        for (i, p) in text.take(SEGMENTS).enumerate() {
            let start = info.dlpi_addr as usize + p.p_vaddr as usize;
            TEXT[2 * i].store(start, Ordering::Relaxed);
            TEXT[2 * i + 1].store(start + p.p_memsz as usize, Ordering::Release);
        }
        // Only the first record: stop.
        1
    }
    // SAFETY: `each` follows dl_iterate_phdr's callback contract.
    unsafe { libc::dl_iterate_phdr(Some(each), std::ptr::null_mut()) };
}

/// The predicate given to the runtime (async-signal-safe: atomics, a read of the program's own
/// code, and thread-locals of this library's static TLS).
pub(crate) fn may_preempt(pc: usize) -> bool {
    let in_text = (0..SEGMENTS).find_map(|i| {
        let end = TEXT[2 * i + 1].load(Ordering::Acquire);
        let start = TEXT[2 * i].load(Ordering::Relaxed);
        (start <= pc && pc < end).then_some((start, end))
    });
    let Some((start, end)) = in_text else {
        return false;
    };
    // `syscall` is 0f 05: the interrupted instruction, or the one just before it.
    let at = |a: usize| {
        // SAFETY: both bytes lie inside an executable segment of the program, which is mapped
        // readable for as long as the program runs.
        a >= start && a + 2 <= end && unsafe { *(a as *const [u8; 2]) } == [0x0f, 0x05]
    };
    if at(pc) || pc.checked_sub(2).is_some_and(at) {
        return false;
    }
    rt::application_caller()
}
