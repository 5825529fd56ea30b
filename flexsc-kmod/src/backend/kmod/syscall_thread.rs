//! One syscall thread of the kmod backend: a thread of this process that blocks its signals and
//! enters the module (`FLEXSC_IOC_WORKER`), where it runs entries until the registration ends.

use std::io;

use super::device::Device;
use crate::os_thread::{self, OsThread};
use crate::raw;
use crate::sync::Arc;

/// Starts syscall thread number `n`, serving syscall core `syscall_core`.
pub(super) fn spawn(dev: Arc<Device>, n: usize, syscall_core: u32) -> io::Result<OsThread> {
    // The thread lives in the kernel: its user stack is barely touched.
    os_thread::spawn(&format!("flexsc-kmod{n}"), 64 * 1024, move || {
        // Process-directed signals belong to the application's threads. (SIGKILL stands for
        // "none kept": it cannot be blocked; glibc's internal signals stay unblocked.)
        raw::block_signals_except(libc::SIGKILL);
        loop {
            match dev.worker(syscall_core) {
                // The registration ended.
                Ok(()) => return,
                // A signal (a stop, glibc's setxid broadcast) was taken in user space: back in.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("FLEXSC_IOC_WORKER failed: {e}"),
            }
        }
    })
}
