#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (debug and release), the
# loom models, and a one-iteration run of every benchmark. README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# Every backend configuration must run here: a skipped one is a failure, not a pass.
export FLEXSC_CONFORMANCE_REQUIRE_ALL=1

step "tests (debug)"
cargo test --workspace

step "tests (release)"
cargo test --workspace --release

step "loom models (bounded preemptions)"
# A separate target dir: --cfg loom changes every crate's build.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
    cargo test -p loom-tests --release

step "benchmarks, one iteration each (criterion --test)"
cargo bench -p flexsc-bench -- --test

step "echo benchmark harness smoke test (--quick: every server answers every request)"
cargo run --release -p flexsc-bench --bin echo -- --quick

step "parked-thread memory smoke test (--quick: 10,000 green threads parked at once)"
cargo run --release -p flexsc-bench --bin parked -- --quick

step "the kernel module in a VM (QEMU TCG: conformance, hostile input, M:N)"
bash scripts/vm-test.sh

step "real servers under libflexsc (Apache, MariaDB, memcached; uring and threads backends)"
FLEXSC_BIN="${CARGO_TARGET_DIR:-target}/release/flexsc" bash scripts/servers.sh

step "evaluation harness smoke test (flexsc-bench --quick: every point measured, no request failed)"
# The launcher and library the servers step used (built by the release tests).
FLEXSC_BIN="${CARGO_TARGET_DIR:-target}/release/flexsc" \
    cargo run --release -p flexsc-bench --bin flexsc-bench -- --quick

step "all passed"
