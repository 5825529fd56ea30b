//! Preemption (`Builder::preempt`): a green thread that keeps its carrier a whole slice is made to
//! yield where the predicate allows it, and only there.
//!
//! The spinning is done by a small assembly function whose address range is exactly what the
//! predicate accepts, so nothing else of the test (or the runtime) is ever preempted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flexsc_threads::{Runtime, preempt_signal};

std::arch::global_asm!(
    ".text",
    ".globl flexsc_test_spin",
    ".type flexsc_test_spin,@function",
    // Spins until the byte at rdi is non-zero: no call, no yield.
    "flexsc_test_spin:",
    "2:",
    "pause",
    "cmpb $0, (%rdi)",
    "je 2b",
    "ret",
    ".globl flexsc_test_spin_end",
    "flexsc_test_spin_end:",
    "ud2",
    options(att_syntax)
);

unsafe extern "C" {
    fn flexsc_test_spin(flag: *const AtomicBool);
    fn flexsc_test_spin_end();
}

/// Spins on `flag` in the assembly loop until it is set.
fn spin_until(flag: &AtomicBool) {
    // SAFETY: the function only reads the byte `flag` points at, which lives on.
    unsafe { flexsc_test_spin(flag) }
}

/// The predicate: only the assembly spin loop.
fn in_spin_loop(pc: usize) -> bool {
    (flexsc_test_spin as *const () as usize..flexsc_test_spin_end as *const () as usize)
        .contains(&pc)
}

fn never(_: usize) -> bool {
    false
}

#[test]
fn a_spinning_green_thread_is_preempted_so_the_one_it_waits_for_runs() {
    // One carrier: the setter can only run if the spinner yields.
    let rt = Runtime::builder()
        .cores(1)
        .preempt(Duration::from_millis(2), in_spin_loop)
        .build()
        .unwrap();
    static FLAG: AtomicBool = AtomicBool::new(false);
    let spinner = rt.spawn(|| spin_until(&FLAG));
    let setter = rt.spawn(|| FLAG.store(true, Ordering::Release));
    setter.join().unwrap();
    spinner.join().unwrap();
    let stats = rt.shutdown();
    assert!(stats[0].preempted >= 1, "{stats:?}");
}

#[test]
fn two_spinners_pass_a_turn_back_and_forth() {
    let rt = Runtime::builder()
        .cores(1)
        .preempt(Duration::from_millis(1), in_spin_loop)
        .build()
        .unwrap();
    const ROUNDS: usize = 10;
    static TURN: [AtomicBool; 2] = [AtomicBool::new(true), AtomicBool::new(false)];
    let players: Vec<_> = (0..2)
        .map(|me| {
            rt.spawn(move || {
                for _ in 0..ROUNDS {
                    spin_until(&TURN[me]);
                    TURN[me].store(false, Ordering::Relaxed);
                    TURN[1 - me].store(true, Ordering::Release);
                }
            })
        })
        .collect();
    for p in players {
        p.join().unwrap();
    }
    let stats = rt.shutdown();
    assert!(stats[0].preempted >= ROUNDS as u64, "{stats:?}");
}

#[test]
fn code_the_predicate_refuses_is_never_preempted() {
    let rt = Runtime::builder()
        .cores(1)
        .preempt(Duration::from_millis(1), never)
        .build()
        .unwrap();
    static OTHER_RAN: AtomicBool = AtomicBool::new(false);
    let busy = rt.spawn(|| {
        // Busy in code the predicate refuses for many slices: nothing else may run meanwhile.
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        OTHER_RAN.load(Ordering::Acquire)
    });
    let other = rt.spawn(|| OTHER_RAN.store(true, Ordering::Release));
    assert!(!busy.join().unwrap(), "the busy green thread was preempted");
    other.join().unwrap();
    let stats = rt.shutdown();
    assert_eq!(stats[0].preempted, 0, "{stats:?}");
}

#[test]
fn a_zero_slice_is_refused() {
    let e = Runtime::builder()
        .cores(1)
        .preempt(Duration::ZERO, never)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
}

#[test]
fn slices_parse_as_flexsc_preempt_spells_them() {
    use flexsc_threads::Preemption;
    assert_eq!(
        Preemption::parse_slice("10"),
        Ok(Some(Duration::from_millis(10)))
    );
    assert_eq!(Preemption::parse_slice(" off "), Ok(None));
    assert_eq!(Preemption::parse_slice("0"), Ok(None));
    for bad in ["", "-1", "1.5", "60001", "ten"] {
        assert!(Preemption::parse_slice(bad).is_err(), "{bad:?}");
    }
    assert!(preempt_signal() > 32 && preempt_signal() <= libc::SIGRTMAX());
}
