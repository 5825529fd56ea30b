//! Benchmarks of libflexsc; see `benches/` and `docs/results.md`.
