//! The syscall profiler's analysis (issue 7), after the clustering paper's profiling step
//! (`../shared/seeds/syscall-clustering-multicalls.txt`, section 3.1) and the interface study's
//! costly patterns (`poking-holes-kernel-interfaces.txt`):
//!
//! - [`trace`]: each thread's calls in order, read from libflexsc's recorder ([`record`], the
//!   format the preload dumps) or from `strace -f` output ([`strace`]);
//! - [`call`]: one call with the arguments that matter (descriptor kind, open flags, path, size);
//! - [`graph`]: the syscall graph of the paper's GraphBuilder;
//! - [`sequences`]: the hottest call sequences and the crossings a multi-call would save;
//! - [`patterns`]: known costly patterns (`open(O_TRUNC)`+`write`+`close`, `stat` next to `open`
//!   of the same path, tiny writes...);
//! - [`report`]: the tables and the Graphviz DOT that `flexsc profile` writes.

pub mod call;
pub mod graph;
pub mod patterns;
pub mod record;
pub mod report;
pub mod sequences;
pub mod strace;
pub mod trace;

pub use call::{Call, FdKind, Outcome};
pub use trace::{Thread, Trace};
