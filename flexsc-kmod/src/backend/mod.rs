//! Backends: what executes the entries of the syscall pages.
//!
//! - `threads`: syscall threads in user space; `uring`: io_uring; `kmod`: the kernel module.
//!
//! A backend has two halves. The shared half ([`Backend`]) owns the executors (syscall threads,
//! io_uring instances) and lives as long as the registration. The carrier half ([`CoreBackend`])
//! is attached by the poster of one core and runs on that poster's thread: it hands newly posted
//! entries to the executors (`submit`), implements flexsc_wait (`wait`), and interrupts a claimed
//! entry's call (`interrupt`, see [`crate::interrupt`]).

use std::fmt::Debug;
use std::io;
use std::time::Instant;

pub mod kmod;
pub mod threads;
pub mod uring;

/// The shared half of a backend.
pub trait Backend: Send + Sync + Debug {
    /// Short name (`threads`, `uring`, `kmod`).
    fn name(&self) -> &'static str;

    /// Creates the carrier half for posting core `core`; called on the poster's thread.
    fn attach(&self, core: usize) -> io::Result<Box<dyn CoreBackend>>;

    /// Stops every executor. Entries already claimed complete with their result (or `-EINTR` if
    /// their call had to be interrupted); returns once every executor thread has exited.
    fn shutdown(&self);

    /// The core split in force now (see [`crate::config::Specialization`]).
    fn split(&self) -> SplitStats;

    /// Wakes whoever sleeps in flexsc_wait for posting core `core` (after the core's completion
    /// doorbell was rung): for backends whose `wait` sleeps somewhere the doorbell cannot reach,
    /// such as in the kernel module.
    fn wake(&self, _core: usize) {}

    /// What calls on a specialized fd skip here ([`crate::specialize`]); nothing by default.
    fn skips(&self) -> crate::specialize::Skips {
        crate::specialize::Skips::default()
    }
}

/// Where system calls execute now, and (for `Dynamic`) what the controller measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitStats {
    /// The mode: `percore`, `static` or `dynamic`.
    pub mode: &'static str,
    /// The CPUs set aside for system calls now (syscall threads, or SQPOLL threads), in the
    /// order posting cores are assigned to them. Empty: per-core execution, or an empty static
    /// list (unpinned syscall threads).
    pub syscall_cores: Vec<usize>,
    /// Whether each posting core's calls run on that core's own CPUs (`PerCore`, or `Dynamic`
    /// with no syscall core).
    pub per_core: bool,
    /// Dynamic: measurement periods completed.
    pub ticks: u64,
    /// Dynamic: times the split changed.
    pub changes: u64,
    /// Dynamic: CPU time of the posting threads measured so far (user work), in nanoseconds.
    pub user_ns: u64,
    /// Dynamic: CPU time of the syscall threads measured so far, without their idle spinning
    /// (kernel work), in nanoseconds.
    pub kernel_ns: u64,
}

/// The carrier half of a backend, owned by one poster.
pub trait CoreBackend: Send + Debug {
    /// Hands the entries posted since the last call (slots of this core, in posting order) to the
    /// executors. Entries must already be SUBMITTED.
    fn submit(&mut self, posted: &[u32]);

    /// Makes progress without blocking (for example reaping io_uring completions).
    fn poll(&mut self) {}

    /// Asks the call of entry `slot` to end early, as a signal interrupts a blocked system call
    /// (the semantics of [`crate::Poster::interrupt`], which has already answered the entry if it
    /// was unclaimed). The entry was seen BUSY; it may complete meanwhile, and then keeps its
    /// result. Never blocks; calling it again for the same posting is harmless.
    fn interrupt(&mut self, slot: u32);

    /// flexsc_wait: blocks the calling thread until `ready()` holds (some entry of this core is
    /// DONE, or whatever else the caller waits for: a ring of the core's completion doorbell
    /// makes the backend re-check it), `give_up()` does (the registration is shutting down), or
    /// `deadline` passes.
    fn wait(
        &mut self,
        ready: &mut dyn FnMut() -> bool,
        give_up: &mut dyn FnMut() -> bool,
        deadline: Option<Instant>,
    );
}
