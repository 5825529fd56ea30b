//! Running one test body on each backend's runtime, with a hang guard.
// Each test binary uses its own subset of the helpers.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use flexsc_threads::Runtime;

/// Builds a runtime.
pub type Build = fn() -> Runtime;

/// Runs `f` on each of `backends` (name, builder), failing the test if it hangs for 120 s (a hang
/// guard, not a speed assertion: the heaviest bodies take 30 s and more in a debug build on a
/// machine loaded by other builds).
pub fn on_each(
    test: &'static str,
    backends: &[(&'static str, Build)],
    f: fn(&'static str, Runtime),
) {
    for &(name, build) in backends {
        let (tx, rx) = mpsc::channel();
        let h = std::thread::spawn(move || {
            f(name, build());
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(()) => h.join().unwrap(),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(h.join().unwrap_err())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{test} on {name}: hung for 120 s"),
        }
    }
}
