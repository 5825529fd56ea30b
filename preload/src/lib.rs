//! `libflexsc.so`: exports the pthread ABI and the blocking libc wrappers on top of
//! FlexSC-Threads, for unmodified programs under LD_PRELOAD.
//!
//! Not built yet (issue 4): the library exports nothing so far.

pub use flexsc_threads as threads;
