//! FlexSC-Threads (paper section 4.2): the M:N runtime, carriers pinned per core, green threads
//! whose system calls are posted to their carrier's syscall pages.
//!
//! Being built (issue 3): [`Runtime`] (carriers, green threads, syscalls as switch points,
//! batching, flexsc_wait when idle, timers, work stealing) and [`stack`].
//!
//! Under `--cfg loom` only [`park`] is built, for `loom-tests/`.

#[cfg(not(loom))]
pub mod fpu;
#[cfg(not(loom))]
pub mod io;
pub mod join;
#[cfg(not(loom))]
pub mod overflow;
pub mod park;
#[cfg(not(loom))]
pub mod runtime;
#[cfg(not(loom))]
pub mod stack;
#[cfg(not(loom))]
pub mod sync;
#[cfg(not(loom))]
pub mod tls;

#[cfg(not(loom))]
pub use runtime::{
    Builder, CarrierStats, JoinHandle, Runtime, StatsTable, Unparker, current_id, current_name,
    park, park_deadline, sleep, spawn, syscall, yield_now,
};

#[cfg(not(loom))]
pub use flexsc_kmod as kmod;
