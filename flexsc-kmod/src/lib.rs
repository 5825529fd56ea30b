//! The kernel side of FlexSC (Soares & Stumm, OSDI'10): exception-less system calls.
//!
//! A thread *posts* a system call by writing a 64-byte [`SyscallEntry`] into one of its core's
//! [`SyscallPage`]s and keeps running; an *executor* (a syscall thread, or io_uring) claims the
//! entry, runs the call and marks it done; the poster later takes the result, or sleeps in
//! [`Poster::wait`] (flexsc_wait) until something completes.
//!
//! - [`entry`]: the entry ABI and its status protocol (shared with `include/flexsc.h`).
//! - [`page`]: syscall pages and the page lock.
//! - [`doorbell`]: wait and wake without lost wake-ups.
//! - [`interrupt`]: ending one entry's call early, as a signal interrupts a blocked call.
//! - `activity`: which syscall threads are active, and when an idle one must be woken (hidden:
//!   public only for `loom-tests/`).
//! - [`register()`]: flexsc_register; [`Poster`]: posting, submitting, waiting.
//! - [`backend`]: the executors: `threads` (syscall threads in user space), `uring`, and `kmod`
//!   (the kernel module's in-kernel syscall threads, `module/`, `docs/kernel-module.md`).
//! - [`compound`]: multi-calls and compound calls, posted as one entry.
//! - [`specialize`]: specialization contexts (declared invariants of a connection; io_uring fixed
//!   files and buffers).
//! - [`calls`]: which calls are thread-bound (never run remotely) and which may block.
//! - [`fd_mode`]: descriptors vouched for as blocking by their only owner (no `F_GETFL` per
//!   waiting request on the uring backend).
//! - [`raw`]: the raw `syscall` instruction and the few other raw calls we need.
//! - [`os_thread`]: the library's own kernel threads, made with glibc's own `pthread_create`.
//!
//! Under `--cfg loom` only the protocol modules are built, on loom's atomics, for `loom-tests/`.

#[doc(hidden)]
pub mod activity;
pub mod doorbell;
pub mod entry;
pub mod interrupt;
pub mod page;
/// The `threads` backend's parking protocol alone, for `loom-tests/` (built in `backend` otherwise).
#[cfg(loom)]
#[doc(hidden)]
#[path = "backend/threads/poller.rs"]
pub mod poller;
mod sync;

#[cfg(not(loom))]
pub mod area;
#[cfg(not(loom))]
pub mod backend;
#[cfg(not(loom))]
pub mod calls;
#[cfg(not(loom))]
pub mod compound;
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
pub mod fd_mode;
#[cfg(not(loom))]
pub mod os_thread;
#[cfg(not(loom))]
mod poster;
#[cfg(not(loom))]
pub mod raw;
#[cfg(not(loom))]
mod register;
#[cfg(not(loom))]
pub mod specialize;

pub use entry::SyscallEntry;
pub use page::SyscallPage;

#[cfg(not(loom))]
pub use backend::SplitStats;
#[cfg(not(loom))]
pub use config::{BackendKind, Config, Specialization};
#[cfg(not(loom))]
pub use poster::{PostError, Poster, PosterStats, Syscall, Ticket};
#[cfg(not(loom))]
pub use register::{Registration, register};
