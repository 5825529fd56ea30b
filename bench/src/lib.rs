//! Benchmarks of libflexsc; see `benches/`, the binaries in `src/bin/` (`flexsc-bench`, the
//! evaluation on real servers, is made of the modules in `src/eval/`) and `docs/results.md`.

pub mod opts;
pub mod plot;
pub mod summary;
