//! The stack-overflow diagnostic, for real: each case re-runs this test binary as a child process
//! (filtered to [`child_process_entry`], its role chosen by an environment variable), lets it
//! fault, and checks how it died and what it printed.

mod common;

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use corosensei::{Coroutine, Yielder};
use flexsc_threads::overflow::{self, AltStack, CarrierSlot};
use flexsc_threads::stack::Stack;

/// Selects the child's role; unset in the parent.
const ROLE: &str = "FLEXSC_OVERFLOW_TEST_ROLE";

/// What the user handlers below print.
const USER_SIGINFO_MSG: &[u8] = b"user siginfo handler: SIGSEGV at 0x10\n";
const USER_PLAIN_MSG: &[u8] = b"user plain handler ran\n";
/// The user SA_SIGINFO handler's exit status.
const USER_EXIT: i32 = 77;

/// Runs `role` in a child process and returns how it ended.
fn run_child(role: &str) -> (Output, String) {
    let out = common::child::command(ROLE, role).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// The child side: does nothing in a normal test run.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid rlimit; dumping no core keeps crashing children cheap.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    match role.as_str() {
        "overflow" => {
            overflow::install().unwrap();
            in_green_thread(42, b"overflower", || {
                black_box(recurse(0));
            });
        }
        "overflow_with_user_handler" => {
            set_user_handler(libc::SA_SIGINFO, user_siginfo_handler as *const () as usize);
            overflow::install().unwrap();
            in_green_thread(7, b"deep", || {
                black_box(recurse(0));
            });
        }
        "null_write_default" => {
            set_user_handler(0, libc::SIG_DFL);
            overflow::install().unwrap();
            in_green_thread(1, b"null writer", null_write);
        }
        "null_write_std_handler" => {
            // The Rust runtime's own handler (std installs one at startup) is the previous
            // action here; it restores SIG_DFL and returns.
            // SAFETY: plain C data; zero is valid.
            let mut std_act: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: query only.
            let rc = unsafe { libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut std_act) };
            assert_eq!(rc, 0);
            assert_ne!(
                std_act.sa_sigaction,
                libc::SIG_DFL,
                "std installed a handler"
            );
            overflow::install().unwrap();
            in_green_thread(1, b"null writer", null_write);
        }
        "chain_siginfo" => {
            set_user_handler(libc::SA_SIGINFO, user_siginfo_handler as *const () as usize);
            overflow::install().unwrap();
            in_green_thread(1, b"null writer", null_write);
        }
        "chain_plain_resethand" => {
            set_user_handler(libc::SA_RESETHAND, user_plain_handler as *const () as usize);
            overflow::install().unwrap();
            in_green_thread(1, b"null writer", null_write);
        }
        other => panic!("unknown role {other}"),
    }
    eprintln!("child survived");
    std::process::exit(0);
}

/// Runs `body` as green thread `id` named `name` on a small guarded stack, registered the way
/// the runtime registers its green threads, on this thread as carrier.
fn in_green_thread(id: u64, name: &[u8], body: impl FnOnce() + 'static) {
    let _alt = AltStack::new().unwrap();
    let slot = CarrierSlot::register().unwrap();
    let stack = Stack::new(64 * 1024).unwrap();
    slot.set_running(stack.guard(), id, name);
    let mut co = Coroutine::with_stack(stack, move |_: &Yielder<(), ()>, ()| body());
    co.resume(());
    slot.clear();
}

/// Recursion without a bound the compiler can see.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(frame[(depth % 32) as usize])
}

/// A write to the null page: a fault that is no guard hit.
fn null_write() {
    let p = black_box(0x10usize) as *mut u64;
    // SAFETY: not safe at all: the point is to fault. 0x10 is in the never-mapped null page
    // (non-null and aligned, so no precondition check fires first).
    unsafe { p.write_volatile(1) };
}

/// Installs a user handler (or SIG_DFL) for SIGSEGV, as an application might before the runtime.
fn set_user_handler(flags: libc::c_int, handler: usize) {
    // SAFETY: plain C data; zero is valid.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    // SAFETY: `handler` is SIG_DFL or one of the handlers below, whose signature matches
    // `flags`.
    let rc = unsafe { libc::sigaction(libc::SIGSEGV, &act, std::ptr::null_mut()) };
    assert_eq!(rc, 0);
}

fn raw_stderr(msg: &[u8]) {
    // SAFETY: write(2) from a live slice; async-signal-safe.
    unsafe { libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len()) };
}

extern "C" fn user_siginfo_handler(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel's (or chained) siginfo for a SIGSEGV.
    let addr = unsafe { (*info).si_addr() } as usize;
    if sig == libc::SIGSEGV && addr == 0x10 {
        raw_stderr(USER_SIGINFO_MSG);
    } else {
        raw_stderr(b"user siginfo handler: unexpected fault\n");
    }
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(USER_EXIT) };
}

static PLAIN_CALLS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn user_plain_handler(sig: libc::c_int) {
    if sig == libc::SIGSEGV && PLAIN_CALLS.fetch_add(1, Ordering::Relaxed) == 0 {
        raw_stderr(USER_PLAIN_MSG);
    }
    // Returns: the write runs again, now under SIG_DFL (SA_RESETHAND).
}

#[test]
fn an_overflowing_green_thread_is_named_and_aborts() {
    let (out, stderr) = run_child("overflow");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains("green thread 42 (\"overflower\") overflowed its stack"),
        "{stderr}"
    );
    assert!(!stderr.contains("child survived"), "{stderr}");
}

#[test]
fn a_guard_hit_is_not_chained_to_a_previous_handler() {
    let (out, stderr) = run_child("overflow_with_user_handler");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains("green thread 7 (\"deep\") overflowed its stack"),
        "{stderr}"
    );
    assert!(!stderr.contains("user siginfo handler"), "{stderr}");
}

#[test]
fn a_null_write_still_dies_by_sigsegv_with_sig_dfl_before_us() {
    let (out, stderr) = run_child("null_write_default");
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{stderr}");
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

#[test]
fn a_null_write_still_dies_by_sigsegv_with_the_std_handler_before_us() {
    let (out, stderr) = run_child("null_write_std_handler");
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{stderr}");
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

#[test]
fn a_previous_siginfo_handler_gets_other_faults() {
    let (out, stderr) = run_child("chain_siginfo");
    assert_eq!(out.status.code(), Some(USER_EXIT), "{stderr}");
    assert!(
        stderr.contains(std::str::from_utf8(USER_SIGINFO_MSG).unwrap()),
        "{stderr}"
    );
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

#[test]
fn a_previous_plain_resethand_handler_runs_once_then_the_default_kills() {
    let (out, stderr) = run_child("chain_plain_resethand");
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{stderr}");
    assert_eq!(
        stderr
            .matches(std::str::from_utf8(USER_PLAIN_MSG).unwrap())
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

/// In-process (not in the library's test binary, where other tests may want slots): all
/// [`overflow::SLOTS`] slots can be claimed, one more cannot, and dropping frees them.
#[test]
fn the_carrier_table_fills_up_and_frees() {
    use std::sync::Barrier;
    let claimed = Barrier::new(overflow::SLOTS + 1);
    let checked = Barrier::new(overflow::SLOTS + 1);
    std::thread::scope(|s| {
        for _ in 0..overflow::SLOTS {
            s.spawn(|| {
                let slot = CarrierSlot::register();
                claimed.wait();
                checked.wait();
                assert!(slot.is_some());
            });
        }
        claimed.wait();
        assert!(CarrierSlot::register().is_none(), "all slots are taken");
        checked.wait();
    });
    assert!(CarrierSlot::register().is_some(), "released on drop");
}
