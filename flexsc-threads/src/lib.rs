//! FlexSC-Threads (paper section 4.2): the M:N runtime, carriers pinned per core, green threads
//! whose system calls are posted to their carrier's syscall pages.
//!
//! Being built (issue 3). So far: [`stack`], the green threads' stacks.

pub mod stack;

pub use flexsc_kmod as kmod;
