//! FlexSC-Threads (paper section 4.2): the M:N runtime, carriers pinned per core, green threads
//! whose system calls are posted to their carrier's syscall pages.
//!
//! Being built (issue 3): [`Runtime`] (carriers, green threads, syscalls as switch points,
//! batching, flexsc_wait when idle, timers, work stealing) and [`stack`].

pub mod io;
pub mod overflow;
pub mod runtime;
pub mod stack;

pub use runtime::{
    Builder, CarrierStats, JoinHandle, Runtime, Unparker, current_id, current_name, park,
    park_deadline, sleep, spawn, syscall, yield_now,
};

pub use flexsc_kmod as kmod;
