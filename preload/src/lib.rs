//! `libflexsc.so`: the pthread ABI and the blocking libc wrappers on top of FlexSC-Threads, for
//! unmodified programs under `LD_PRELOAD` (or linked in place of `-lpthread`).
//!
//! Being built (issue 4). What exists:
//! - [`pthread`]: `pthread_create` makes green threads (started lazily, [`rt`]), join, detach,
//!   exit, `sched_yield`; `main_thread`: the main thread becomes green thread 0 at its first
//!   `pthread_create` (`FLEXSC_MAIN`);
//! - [`sync`]: the pthread synchronisation objects (mutex, condvar, rwlock, spin, barrier,
//!   semaphores, once) implemented in glibc's own object layouts on the futex-address table, so
//!   a green thread that waits parks instead of blocking its carrier;
//! - [`io`]: the blocking libc wrappers, exception-less on green threads;
//! - [`signal`]: `pthread_kill` to green threads (handlers run on them, their blocked calls and
//!   synchronisation waits interrupted) and per-green-thread signal masks; [`process_signal`]:
//!   process-directed signals handed to a green thread that lets them in;
//! - [`sigaction`](mod@sigaction): applications' `sigaction`/`signal`, chained behind the
//!   stack-overflow handler, and the library's interrupt signal kept from them;
//! - [`key`]: thread-specific data whose destructors run when green threads end too;
//! - [`cancel`]: deferred cancellation of green threads (`pthread_cancel`, cancel state,
//!   cancellation points, cleanup handlers), which `pthread_exit` shares;
//! - [`c11`]: the C11 `<threads.h>` functions (`thrd_*`, `mtx_*`, `cnd_*`, `tss_*`, `call_once`)
//!   on the exports above, which glibc's own call past;
//! - [`sched`]: `gettid` and the affinity, scheduling and CPU-clock calls for green threads
//!   (recorded per green thread and reported back);
//! - [`spawn`]: `system`, `posix_spawn`, `vfork` and `_Fork` from green threads (the green
//!   thread waits, not its carrier; the child never reaches the syscall pages);
//! - [`dl`]: `dlopen` sets up the static TLS of the modules it loads in every green thread;
//! - [`uring`]: liburing's wait for a completion of the application's own rings parks the green
//!   thread (a `poll` on the ring), not its carrier;
//! - [`syscall`](mod@syscall): `syscall()`, private futex operations emulated on the futex table;
//! - [`compound`]: the C API of multi-calls and compound calls (`flexsc_multicall`,
//!   `flexsc_compound_run`), posted as one entry on green threads.
//!
//! `direct`: the hybrid rule, which green threads' calls run on the carrier instead of being
//! posted (calls on non-blocking descriptors, ready polls, the stat family), with `nonblock`,
//! the descriptors known to be non-blocking, [`descriptors`], the calls that tell, and `tune`,
//! which measures whether calls on non-blocking descriptors cost the process less on the carrier
//! or posted.
//!
//! `map_cache`: the mapping cache, which keeps the read-only file mappings a program unmaps for
//! its next mapping of the same range (`mmap`, `munmap`, `mremap`, `mprotect`).
//!
//! [`profile`]: the syscall profiler's recorder (`FLEXSC_PROFILE`, `flexsc profile`).
//!
//! [`versions`]: glibc's symbol versions of the exports, and its `__pthread_*` names.
//!
//! Every export works for any caller at any time: before the runtime starts, on glibc's own
//! threads and on the runtime's internal threads it falls through to glibc ([`real`]).

pub mod c11;
pub mod cancel;
pub mod compound;
pub mod descriptors;
mod direct;
pub mod dl;
mod fork_table;
pub mod io;
pub mod key;
mod main_thread;
mod map_cache;
mod nonblock;
mod preempt;
mod process_signal;
mod profile;
pub mod pthread;
mod real;
mod rt;
pub mod sched;
pub mod sigaction;
pub mod signal;
pub mod spawn;
pub mod sync;
pub mod syscall;
mod tune;
pub mod uring;
mod versions;

pub use flexsc_threads as threads;
