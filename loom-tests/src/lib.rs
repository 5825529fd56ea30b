//! Loom models of libflexsc's protocols live in `tests/`; run them with
//! `RUSTFLAGS="--cfg loom" cargo test -p loom-tests --release`.
