//! Re-running the test binary as a child process in a role: for cases whose state is
//! process-wide (signal handlers, faults, the environment). The binary's `child_process_entry`
//! test reads the role from the environment variable and does nothing when it is unset.
// Each test binary uses its own subset of the helpers.
#![allow(dead_code)]

use std::process::Command;

/// This test binary, filtered to its `child_process_entry` test, with `role_var` set to `role`.
pub fn command(role_var: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_process_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(role_var, role);
    cmd
}
