//! `libflexsc.so`: the pthread ABI and the blocking libc wrappers on top of FlexSC-Threads, for
//! unmodified programs under `LD_PRELOAD` (or linked in place of `-lpthread`).
//!
//! Being built (issue 4). What exists:
//! - [`sync`]: the pthread synchronisation objects (mutex, condvar, rwlock, spin, barrier,
//!   semaphores, once) implemented in glibc's own object layouts on the futex-address table, so
//!   a green thread that waits parks instead of blocking its carrier.

pub mod sync;

pub use flexsc_threads as threads;
