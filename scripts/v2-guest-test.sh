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

# --- kernel, and the brd module of the same version --------------------------------------------
kdir=$cache/kernel
fetch_kernel() { # [package]: downloads and unpacks a Debian kernel package into cache/kernel/x
  local pkg=${1:-}
  mkdir -p "$kdir"
  if [ -z "$pkg" ]; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
    [ -n "$pkg" ] || { apt-get update -qq; pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); }
  fi
  (cd "$kdir" && apt-get download -q "$pkg" >/dev/null 2>&1)
  rm -rf "$kdir/x"
  dpkg-deb -x "$(ls -t "$kdir"/"$pkg"_*.deb | head -n1)" "$kdir/x"
}
if [ -f "$cache/guest/vmlinuz" ]; then
  kernel=$cache/guest/vmlinuz # scripts/assets.sh made it
else
  kernel=$(ls "$kdir"/x/boot/vmlinuz-* 2>/dev/null | head -n1 || true)
  if [ -z "$kernel" ]; then
    fetch_kernel
    kernel=$(ls "$kdir"/x/boot/vmlinuz-* | head -n1)
  fi
fi
# The version string sits uncompressed in the bzImage header.
kver=$(grep -a -o -m1 '[0-9]\+\.[0-9]\+\.[0-9]\+-[0-9]\+-cloud-amd64' "$kernel" | head -n1 || true)
brd=$(find "$cache" -path "*/lib/modules/$kver/*" -name 'brd.ko*' 2>/dev/null | head -n1 || true)
if [ -z "$brd" ] && [ -n "$kver" ]; then
  fetch_kernel "linux-image-$kver"
  brd=$(find "$kdir/x/lib/modules/$kver" -name 'brd.ko*' | head -n1)
fi

# --- the static test binary ------------------------------------------------------------------
buildlog=$(mktemp /tmp/carve-v2build.XXXXXX)
bin=$(RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo" \
  "$CARGO" test -q -p carve-cgroups --test v2 --no-run --target x86_64-unknown-linux-gnu \
  --message-format=json 2>"$buildlog" |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "v2" and .executable != null) | .executable' |
  tail -n1 || true)
if [ ! -x "$bin" ]; then
  cat "$buildlog" >&2
  rm -f "$buildlog"
  echo "CARVE-V2: FAIL (building the static test binary failed)"
  exit 2
fi
rm -f "$buildlog"
# --build-only: prepare kernel and binary (e.g. before a parallel test run), boot nothing.
[ "${1:-}" = "--build-only" ] && { echo "v2-guest: built $bin"; exit 0; }

# --- initramfs: busybox, the test binary, an init that mounts cgroup2 alone ------------------
work=$(mktemp -d /tmp/carve-v2guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc}
cp /bin/busybox "$root/bin/busybox"
cp "$bin" "$root/v2-tests"
case "$brd" in
  "") ;;
  *.ko.xz) xz -dc "$brd" >"$root/brd.ko" ;;
  *.ko.zst) zstd -qdc "$brd" >"$root/brd.ko" ;;
  *.ko) cp "$brd" "$root/brd.ko" ;;
esac
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
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd"

# --- boot ----------------------------------------------------------------------------------
log=$work/console.log
timeout "${CARVE_V2_TIMEOUT:-180}" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 512 \
  -kernel "$kernel" -initrd "$work/initrd" \
  -append "console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=1" \
  -nographic -no-reboot </dev/null >"$log" 2>&1 || true
tr -d '\r' <"$log"
if grep -q "^CARVE-V2: PASS" <(tr -d '\r' <"$log"); then
  exit 0
fi
grep -q "^CARVE-V2: FAIL" <(tr -d '\r' <"$log") || echo "CARVE-V2: FAIL (no result from the guest)"
exit 1
