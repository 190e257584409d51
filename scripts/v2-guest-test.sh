#!/usr/bin/env bash
# Runs carve-cgroups' pure cgroup v2 tests (crates/cgroups/tests/v2.rs) for real: boots a QEMU TCG
# guest with only cgroup2 mounted (cgroup_no_v1=all) and runs the tests there as a static binary.
# Usage: scripts/v2-guest-test.sh [--build-only]
# Prints the guest console and a last line "CARVE-V2: PASS" or "CARVE-V2: FAIL"; exits 0 only on PASS.
#
# Kernel: cache/guest/vmlinuz (scripts/assets.sh) if present, else Debian's cloud kernel fetched
# once into cache/kernel/. The RAM disk module (brd) of the same version gives the io tests a disk.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
cache=$top/cache
CARGO=${CARGO:-cargo}

# shellcheck source=scripts/lib-guest.sh
. "$top/scripts/lib-guest.sh"

# --- kernel, and the brd module of the same version --------------------------------------------
guest_kernel_and_brd

# --- the static test binary ------------------------------------------------------------------
guest_static_build CARVE-V2 "the static test binary" v2 test -q -p carve-cgroups --test v2 --no-run
# --build-only: prepare kernel and binary (e.g. before a parallel test run), boot nothing.
[ "${1:-}" = "--build-only" ] && { echo "v2-guest: built $bin"; exit 0; }

# --- initramfs: busybox, the test binary, an init that mounts cgroup2 alone ------------------
work=$(mktemp -d /tmp/carve-v2guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$root/bin/busybox"
cp "$bin" "$root/v2-tests"
guest_put_brd "$root"
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
[ -f /brd.ko ] && insmod /brd.ko rd_nr=1 rd_size=16384
export PATH=/bin RUST_BACKTRACE=1
echo "CARVE-V2: mounts: $(grep cgroup /proc/mounts | tr '\n' ';')"
cd /tmp
if /v2-tests --ignored --test-threads=1; then
  echo "CARVE-V2: PASS"
else
  echo "CARVE-V2: FAIL"
fi
poweroff -f
EOF
chmod +x "$root/init"
guest_pack "$root" "$work/initrd"

# --- boot ----------------------------------------------------------------------------------
guest_boot CARVE-V2 "${CARVE_V2_TIMEOUT:-180}" 2 512 "$work/initrd" "$work/console.log"
