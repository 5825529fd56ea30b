#!/usr/bin/env bash
# Installs libflexsc under PREFIX (default /usr/local): bin/flexsc (the launcher), lib/libflexsc.so,
# include/flexsc.h (the syscall page ABI) and lib/pkgconfig/flexsc.pc (link with -lflexsc in place
# of -lpthread). The launcher finds the library in ../lib from its own directory.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="$(realpath -m "${1:-/usr/local}")"
cargo build --release -p flexsc-preload
target="${CARGO_TARGET_DIR:-target}/release"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' preload/Cargo.toml | head -1)"
install -D -m 755 "$target/flexsc" "$prefix/bin/flexsc"
install -D -m 755 "$target/libflexsc.so" "$prefix/lib/libflexsc.so"
install -D -m 644 flexsc-kmod/include/flexsc.h "$prefix/include/flexsc.h"
mkdir -p "$prefix/lib/pkgconfig"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" preload/flexsc.pc.in \
    > "$prefix/lib/pkgconfig/flexsc.pc"
echo "installed libflexsc $version under $prefix"
