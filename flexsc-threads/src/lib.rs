//! FlexSC-Threads (paper section 4.2): the M:N runtime, carriers pinned per core, green threads
//! whose system calls are posted to their carrier's syscall pages.
//!
//! Not built yet (issue 3). Today the crate re-exports the kernel side it will stand on.

pub use flexsc_kmod as kmod;
