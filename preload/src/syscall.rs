//! `syscall()`: what programs call for system calls libc has no wrapper for, and some (InnoDB)
//! for `futex` itself.
//!
//! From application code, process-private `FUTEX_WAIT`/`FUTEX_WAKE` and their `_BITSET` forms:
//! a green thread waits in the futex-address table (it parks; its carrier runs others), an OS
//! thread waits in the kernel as usual; a wake wakes table waiters first and, for the rest of its
//! count, kernel waiters, so green and OS threads waiting on one word (InnoDB's mutexes, or a
//! Rust program's std locks) wake each other. Other futex operations are refused with `ENOSYS`
//! and one log line. A signal sent to a green thread in `FUTEX_WAIT` runs its handler there and
//! ends or restarts the wait as Linux does. `gettid` and `sched_{get,set}affinity` on a green thread answer as their
//! exports do ([`sched`](crate::sched)). `FLEXSC_NR_COMPOUND` runs the compound as
//! `flexsc_compound_run` does ([`compound`](crate::compound)), on any application thread. Any
//! other call on a green thread is exception-less. Everything else (OS
//! threads' other calls, the library's own code, its internal threads) traps directly.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use flexsc_threads::futex::{self, BITSET_MATCH_ANY, FutexError};
use flexsc_threads::kmod::compound::abi::NR_COMPOUND;
use libc::{c_long, timespec};

use crate::io::{self, settle};
use crate::rt::{self, InLib};

const FUTEX_WAIT: c_long = 0;
const FUTEX_WAKE: c_long = 1;
const FUTEX_WAIT_BITSET: c_long = 9;
const FUTEX_WAKE_BITSET: c_long = 10;
const FUTEX_PRIVATE_FLAG: c_long = 128;
const FUTEX_CLOCK_REALTIME: c_long = 256;

/// `syscall(2)`. Declared with six arguments after the number: for a variadic C caller on
/// x86_64 those are the registers it passes them in (unused ones hold garbage, which the kernel
/// and the futex emulation ignore, as with glibc's own `syscall`).
///
/// # Safety
/// As `syscall(2)`: the arguments must be valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(
    nr: c_long,
    a: c_long,
    b: c_long,
    c: c_long,
    d: c_long,
    e: c_long,
    f: c_long,
) -> c_long {
    let args = [a, b, c, d, e, f].map(|x| x as u64);
    // Any caller's: the mapping cache must see every change to the mappings it tracks.
    if let Some(r) = crate::map_cache::syscall(nr, &args) {
        return settle(r);
    }
    if rt::application_caller() {
        if nr == c_long::from(NR_COMPOUND) {
            // SAFETY: the caller's contract: `a` is the address of a compound's header.
            return settle(unsafe { crate::compound::run(a as u64) });
        }
        let _lib = InLib::enter();
        if nr == libc::SYS_futex && b & FUTEX_PRIVATE_FLAG != 0 {
            // SAFETY: the caller's contract: `a` is a futex word, `d` null or a timespec.
            if let Some(r) = unsafe { emulate_futex(a, b, c, d, f) } {
                return r;
            }
        }
        if rt::on_green_thread() {
            drop(_lib);
            // SAFETY: the caller's contract.
            if let Some(r) = unsafe { crate::sched::emulated(nr, &args) } {
                return settle(r);
            }
            // Not a cancellation point: glibc's syscall() is not one.
            // SAFETY: the caller's contract.
            return settle(unsafe { io::green_call(nr, &args, false) });
        }
    }
    // SAFETY: the caller's contract; a raw trap, so nothing of ours can recurse.
    settle(unsafe { flexsc_threads::kmod::raw::syscall6(nr as u64, &args) })
}

/// A private futex operation with green threads in mind; `None`: the kernel's (an OS thread's
/// wait).
///
/// # Safety
/// `addr` must be a valid, 4-byte aligned futex word; `timeout` null or a valid timespec.
unsafe fn emulate_futex(
    addr: c_long,
    op: c_long,
    val: c_long,
    timeout: c_long,
    val3: c_long,
) -> Option<c_long> {
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    // An OS thread waits (and runs any other operation) in the kernel; only wakes must also
    // reach the table, for green waiters.
    if !matches!(cmd, FUTEX_WAKE | FUTEX_WAKE_BITSET) && !rt::on_green_thread() {
        return None;
    }
    // SAFETY: the caller's contract.
    let r = unsafe { on_table(addr, op, val, timeout, val3) };
    if r >= 0 && matches!(cmd, FUTEX_WAKE | FUTEX_WAKE_BITSET) && r < val {
        // The rest of the count for waiters in the kernel (OS threads).
        let args = [addr, op, val - r, 0, 0, val3].map(|x| x as u64);
        // SAFETY: a wake only uses the address; the caller vouched for it.
        let k = unsafe { flexsc_threads::kmod::raw::syscall6(libc::SYS_futex as u64, &args) };
        return Some(r + k.max(0) as c_long);
    }
    Some(r)
}

/// The operation on the futex table.
///
/// # Safety
/// As [`emulate_futex`].
unsafe fn on_table(addr: c_long, op: c_long, val: c_long, timeout: c_long, val3: c_long) -> c_long {
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    if addr == 0 || addr % 4 != 0 {
        return settle(-i64::from(libc::EINVAL));
    }
    // SAFETY: the caller's contract: a live, aligned u32.
    let word = unsafe { &*(addr as *const AtomicU32) };
    let ts = timeout as *const timespec;
    let r = match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if cmd == FUTEX_WAIT {
                BITSET_MATCH_ANY
            } else {
                val3 as u32
            };
            // SAFETY: the caller's contract.
            let deadline = match unsafe { deadline(cmd, op, ts) } {
                Ok(d) => d,
                Err(e) => return settle(-i64::from(e)),
            };
            wait_handling_signals(word, val as u32, bitset, deadline)
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if cmd == FUTEX_WAKE {
                BITSET_MATCH_ANY
            } else {
                val3 as u32
            };
            futex::wake(word, val as u32, bitset).map(|n| n as i64)
        }
        _ => {
            unsupported(cmd);
            return settle(-i64::from(libc::ENOSYS));
        }
    };
    match r {
        Ok(n) => n as c_long,
        Err(e) => settle(-i64::from(e.errno())),
    }
}

/// `FUTEX_WAIT`: a signal sent to the waiting green thread runs its handler there (outside the
/// library), then the wait goes on, as Linux restarts it (no handler ran, or an untimed wait and
/// every handler has `SA_RESTART`; with its first deadline), or fails with `EINTR`.
fn wait_handling_signals(
    word: &AtomicU32,
    val: u32,
    bitset: u32,
    deadline: Option<Instant>,
) -> Result<i64, FutexError> {
    loop {
        match futex::wait_interruptible(word, val, bitset, deadline) {
            Err(FutexError::Interrupted) => {
                let eintr = InLib::outside(|| {
                    crate::signal::after_call(-i64::from(libc::EINTR), deadline.is_none()).is_some()
                });
                if eintr {
                    return Err(FutexError::Interrupted);
                }
            }
            r => return r.map(|()| 0),
        }
    }
}

/// The wait's deadline: FUTEX_WAIT's timeout is relative (CLOCK_MONOTONIC), FUTEX_WAIT_BITSET's
/// absolute (CLOCK_MONOTONIC, or CLOCK_REALTIME with the flag).
///
/// # Safety
/// `ts` null or a valid timespec.
unsafe fn deadline(cmd: c_long, op: c_long, ts: *const timespec) -> Result<Option<Instant>, i32> {
    if ts.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    let ts = unsafe { &*ts };
    let d = if cmd == FUTEX_WAIT {
        io::duration(ts)?
    } else if op & FUTEX_CLOCK_REALTIME != 0 {
        io::until(libc::CLOCK_REALTIME, ts)?
    } else {
        io::until(libc::CLOCK_MONOTONIC, ts)?
    };
    Ok(Some(Instant::now() + d))
}

/// One line on stderr the first time a futex operation the table does not emulate is asked for.
fn unsupported(cmd: c_long) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        let msg = format!(
            "libflexsc: syscall(SYS_futex) operation {cmd} is not supported for green threads \\
             (ENOSYS)\\n"
        );
        // SAFETY: writes our own buffer to stderr through glibc's write.
        unsafe { crate::real::write()(2, msg.as_ptr().cast(), msg.len()) };
    }
}
