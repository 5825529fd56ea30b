//! FlexSC-Threads (paper section 4.2): the M:N runtime, carriers pinned per core, green threads
//! whose system calls are posted to their carrier's syscall pages.
//!
//! Being built (issue 3): [`Runtime`] (carriers, green threads, syscalls as switch points,
//! batching, flexsc_wait when idle, timers, work stealing) and [`stack`].
//!
//! Under `--cfg loom` only the concurrency protocols are built, for `loom-tests/`: [`park`],
//! the run queue (as `queue`), the interrupt mark (as `mark`), [`sync`] and [`futex`], all on the loom types of the shim
//! (`shim.rs`).

#[cfg(not(loom))]
mod arch;
#[cfg(not(loom))]
pub mod fpu;
pub mod futex;
#[cfg(not(loom))]
pub mod hybrid;
#[cfg(not(loom))]
pub mod io;
pub mod join;
#[cfg(not(loom))]
pub mod map_cache;
/// A green thread's interrupt mark, on its own under loom (for real it is private to `runtime`).
#[cfg(loom)]
#[path = "runtime/mark.rs"]
pub mod mark;
#[cfg(not(loom))]
pub mod overflow;
pub mod park;
/// A carrier's run queue, on its own under loom (for real it is private to `runtime`).
#[cfg(loom)]
#[path = "runtime/queue.rs"]
pub mod queue;
#[cfg(not(loom))]
pub mod runtime;
mod shim;
#[cfg(not(loom))]
pub mod stack;
pub mod sync;
#[cfg(not(loom))]
pub mod tls;
#[cfg(not(loom))]
pub mod tune;

#[cfg(not(loom))]
pub use runtime::{
    AdoptedEnd, Builder, CarrierStats, Interrupter, JoinHandle, Order, Preemption, Runtime,
    SpawnOptions, StatsTable, Unparker, after_fork_in_child, current_id, current_name, interrupted,
    park, park_deadline, preempt_signal, sleep, spawn, specialize, syscall, syscall_on_carrier,
    take_interrupt, yield_now,
};

#[cfg(not(loom))]
pub use flexsc_kmod as kmod;
