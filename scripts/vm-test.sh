#!/usr/bin/env bash
# The kernel module (flexsc-kmod/module) tested in a VM: our hosts cannot load modules, so this
# builds flexsc.ko against Debian's kernel, static test binaries (Rust, +crt-static), and a busybox
# initramfs, boots Debian's kernel under QEMU TCG and runs, inside the guest, the backend
# conformance suite's kmod configurations, the hostile-input test and the M:N test; then checks
# the kernel log and that the module unloads (scripts/vm/init). Fails unless the guest's last line
# says `0 failed`.
#
# Needs qemu-system-x86, busybox-static and linux-headers-$KV-amd64 installed (.ci/run installs
# them); KV defaults to the version the linux-image-amd64 metapackage points at, and the matching
# kernel image is downloaded and unpacked here (never installed).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

KV=${FLEXSC_VM_KV:-$(apt-cache depends linux-image-amd64 |
    sed -n 's/.*Depends: linux-image-\(.*-amd64\)$/\1/p' | head -1)}
[ -n "$KV" ] || { echo "vm-test: cannot resolve the kernel version" >&2; exit 1; }
HEADERS=/usr/src/linux-headers-$KV
[ -d "$HEADERS" ] || { echo "vm-test: $HEADERS missing (apt-get install linux-headers-$KV)" >&2; exit 1; }
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
case $TARGET in /*) ;; *) TARGET=$PWD/$TARGET ;; esac
WORK=$TARGET/vm
mkdir -p "$WORK"

step "kernel image $KV (unpacked from its .deb, not installed)"
VMLINUZ=$WORK/vmlinuz-$KV
if [ ! -f "$VMLINUZ" ]; then
    rm -rf "$WORK/deb" && mkdir -p "$WORK/deb"
    (cd "$WORK/deb" && apt-get download "linux-image-$KV" && dpkg-deb -x linux-image-*.deb x)
    cp "$WORK/deb/x/boot/vmlinuz-$KV" "$VMLINUZ"
    rm -rf "$WORK/deb"
fi

step "flexsc.ko against $HEADERS"
make -s -C "$HEADERS" M="$PWD/flexsc-kmod/module" modules

step "static test binaries (+crt-static)"
# --target keeps RUSTFLAGS off build scripts and proc macros; a target dir of its own keeps the
# static build from invalidating the normal one.
STATIC=$TARGET/vm-static
build() {
    RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=$STATIC \
        cargo test --release --no-run --target x86_64-unknown-linux-gnu "$@" \
        --message-format=json-render-diagnostics
}
executable() { # the test binary of target $1 in cargo's JSON on stdin
    grep "\"name\":\"$1\"" | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4
}
json=$(build -p flexsc-kmod --test conformance --test kmod_hostile)
conformance=$(executable conformance <<< "$json")
hostile=$(executable kmod_hostile <<< "$json")
json=$(build -p flexsc-threads --test kmod_mn)
mn=$(executable kmod_mn <<< "$json")

step "initramfs"
ROOT=$WORK/root
rm -rf "$ROOT" && mkdir -p "$ROOT"/{bin,dev,proc,sys,tmp,tests}
cp /bin/busybox "$ROOT/bin/busybox"
cp scripts/vm/init "$ROOT/init"
cp flexsc-kmod/module/flexsc.ko "$ROOT/"
cp "$conformance" "$ROOT/tests/conformance"
cp "$hostile" "$ROOT/tests/kmod_hostile"
cp "$mn" "$ROOT/tests/kmod_mn"
(cd "$ROOT" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$WORK/initramfs.gz"

# FLEXSC_VM_APPEND adds kernel parameters: FLEXSC_VM_APPEND=slub_debug=FZP checks every slab
# object (red zones, poisoning), so a write past or after the end of the module's allocations
# shows in the kernel log; it makes the run about 3 times slower, so it is not the default.
step "boot (QEMU TCG, 2 CPUs, 1 GiB)"
LOG=$WORK/serial.log
timeout 900 qemu-system-x86_64 -accel tcg -smp 2 -m 1G -nographic -no-reboot \
    -kernel "$VMLINUZ" -initrd "$WORK/initramfs.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=4 ${FLEXSC_VM_APPEND:-}" | tee "$LOG" || true

summary=$(grep -a '^FLEXSC-VM: [0-9]* passed, [0-9]* failed' "$LOG" | tail -1 | tr -d '\r')
echo
echo "vm-test: ${summary:-no summary from the guest} ($((SECONDS - started)) s)"
case $summary in
    *" passed, 0 failed") exit 0 ;;
    *) exit 1 ;;
esac
