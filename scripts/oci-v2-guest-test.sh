#!/usr/bin/env bash
# Runs carve-oci for real on a pure cgroup v2 host: boots a QEMU TCG guest with only cgroup2
# mounted (cgroup_no_v1=all) and drives a static carve-oci through a busybox bundle with memory,
# pids and cpu limits: create, state, start, the limits read inside the container and checked
# from outside, pause/resume (cgroup.freeze), kill, delete, and the cgroup dir gone.
# Usage: scripts/oci-v2-guest-test.sh [--build-only]
# Prints the guest console and a last line "CARVE-OCI-V2: PASS" or "CARVE-OCI-V2: FAIL"; exits 0
# only on PASS. Kernel: cache/guest/vmlinuz (scripts/assets.sh), else the one
# scripts/v2-guest-test.sh fetched into cache/kernel/.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
cache=$top/cache
CARGO=${CARGO:-cargo}

if [ -f "$cache/guest/vmlinuz" ]; then
  kernel=$cache/guest/vmlinuz
else
  kernel=$(ls "$cache"/kernel/x/boot/vmlinuz-* 2>/dev/null | head -n1 || true)
fi
[ -n "$kernel" ] || { echo "CARVE-OCI-V2: FAIL (no guest kernel: run scripts/assets.sh or scripts/v2-guest-test.sh --build-only)"; exit 2; }

# --- the static runtime ------------------------------------------------------------------------
buildlog=$(mktemp /tmp/carve-ociv2build.XXXXXX)
bin=$(RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo" \
  "$CARGO" build -q -p carve-oci --bin carve-oci --target x86_64-unknown-linux-gnu \
  --message-format=json 2>"$buildlog" |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "carve-oci" and .executable != null) | .executable' |
  tail -n1 || true)
if [ ! -x "$bin" ]; then
  cat "$buildlog" >&2
  rm -f "$buildlog"
  echo "CARVE-OCI-V2: FAIL (building the static carve-oci failed)"
  exit 2
fi
rm -f "$buildlog"
[ "${1:-}" = "--build-only" ] && { echo "oci-v2-guest: built $bin"; exit 0; }

# --- initramfs: busybox, carve-oci, a busybox bundle, an init that mounts cgroup2 alone -------
work=$(mktemp -d /tmp/carve-ociv2guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,run}
cp /bin/busybox "$root/bin/busybox"
cp "$bin" "$root/bin/carve-oci"
b=$root/bundle
mkdir -p "$b"/rootfs/{bin,proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$b/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do
  [ "$a" = busybox ] || ln -s busybox "$b/rootfs/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$b/rootfs/etc/passwd"
printf 'root:x:0:\n' >"$b/rootfs/etc/group"
"$bin" spec --bundle "$b"
# The container prints its own cgroup's limits, then waits to be paused, resumed and killed.
jq '.process.terminal = false | .root.readonly = false
  | .process.args = ["sh", "-c", "echo IN memory.max=$(cat /sys/fs/cgroup/memory.max) pids.max=$(cat /sys/fs/cgroup/pids.max) cpu.max=$(cat /sys/fs/cgroup/cpu.max | tr \" \" _) cgroup=$(cat /proc/self/cgroup); exec sleep 1000"]
  | .linux.cgroupsPath = "/carve-ociv2"
  | .linux.resources.memory = {"limit": 67108864}
  | .linux.resources.pids = {"limit": 32}
  | .linux.resources.cpu = {"quota": 50000, "period": 100000}' \
  "$b/config.json" >"$work/config.json"
mv "$work/config.json" "$b/config.json"

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
# pivot_root cannot move the initramfs (rootfs) root: copy everything onto a tmpfs and switch_root
# to it first, as a real host's root would be.
if [ ! -e /switched ]; then
  /bin/busybox mkdir /newroot
  /bin/busybox mount -t tmpfs -o size=200m tmpfs /newroot
  for f in /*; do [ "$f" = /newroot ] || /bin/busybox cp -a "$f" /newroot/; done
  /bin/busybox touch /newroot/switched
  exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
export PATH=/bin
echo "CARVE-OCI-V2: mounts: $(grep cgroup /proc/mounts | tr '\n' ';')"
fails=0
check() { # name, condition...
  local n=$1; shift
  if "$@"; then echo "CARVE-OCI-V2: ok $n"; else echo "CARVE-OCI-V2: not ok $n"; fails=$((fails + 1)); fi
}
status() { carve-oci state c1 | tr -d ' \n' | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p'; }
cg=/sys/fs/cgroup/carve-ociv2
carve-oci create --bundle /bundle c1 >/tmp/out 2>/tmp/err; rc=$?
cat /tmp/err
check "create" [ $rc = 0 ]
check "status created ($(status))" [ "$(status)" = created ]
check "cgroup dir made" [ -d $cg ]
check "memory.max outside ($(cat $cg/memory.max))" [ "$(cat $cg/memory.max)" = 67108864 ]
check "pids.max outside ($(cat $cg/pids.max))" [ "$(cat $cg/pids.max)" = 32 ]
check "cpu.max outside ($(cat $cg/cpu.max))" [ "$(cat $cg/cpu.max)" = "50000 100000" ]
pid=$(carve-oci state c1 | tr -d ' \n' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
check "init $pid in the cgroup" grep -qx "0::/carve-ociv2" /proc/$pid/cgroup
carve-oci start c1; check "start" [ $? = 0 ]
for i in $(seq 100); do grep -q '^IN ' /tmp/out && break; sleep 0.1; done
cat /tmp/out
check "status running ($(status))" [ "$(status)" = running ]
check "memory.max inside" grep -q "memory.max=67108864 " /tmp/out
check "pids.max inside" grep -q "pids.max=32 " /tmp/out
check "cpu.max inside" grep -q "cpu.max=50000_100000 " /tmp/out
check "own cgroup is the root of its cgroup ns" grep -q "cgroup=0::/$" /tmp/out
carve-oci exec c1 cat /proc/self/cgroup >/tmp/exec 2>&1
check "exec joins the cgroup ($(cat /tmp/exec))" grep -qx "0::/" /tmp/exec
echo '{"memory": {"limit": 33554432}, "pids": {"limit": 16}}' | carve-oci update --resources - c1
check "update" [ $? = 0 ]
check "memory.max after update ($(cat $cg/memory.max))" [ "$(cat $cg/memory.max)" = 33554432 ]
check "pids.max after update ($(cat $cg/pids.max))" [ "$(cat $cg/pids.max)" = 16 ]
carve-oci pause c1; check "pause" [ $? = 0 ]
check "status paused ($(status))" [ "$(status)" = paused ]
check "cgroup.freeze 1" [ "$(cat $cg/cgroup.freeze)" = 1 ]
check "frozen in cgroup.events" grep -qx "frozen 1" $cg/cgroup.events
carve-oci resume c1; check "resume" [ $? = 0 ]
check "status running after resume ($(status))" [ "$(status)" = running ]
check "cgroup.freeze 0" [ "$(cat $cg/cgroup.freeze)" = 0 ]
carve-oci kill c1 KILL; check "kill" [ $? = 0 ]
for i in $(seq 100); do [ "$(status)" = stopped ] && break; sleep 0.1; done
check "status stopped ($(status))" [ "$(status)" = stopped ]
carve-oci delete c1; check "delete" [ $? = 0 ]
check "cgroup dir gone" [ ! -e $cg ]
check "state gone" [ ! -e /run/carve-oci/c1 ]
carve-oci state c1 >/tmp/gone 2>&1
check "state after delete says does not exist" grep -q "does not exist" /tmp/gone
if [ $fails = 0 ]; then echo "CARVE-OCI-V2: PASS"; else echo "CARVE-OCI-V2: FAIL ($fails checks)"; fi
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd"

# --- boot ----------------------------------------------------------------------------------
log=$work/console.log
timeout "${CARVE_OCI_V2_TIMEOUT:-120}" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 512 \
  -kernel "$kernel" -initrd "$work/initrd" \
  -append "console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=1" \
  -nographic -no-reboot </dev/null >"$log" 2>&1 || true
tr -d '\r' <"$log"
if grep -q "^CARVE-OCI-V2: PASS" <(tr -d '\r' <"$log"); then
  exit 0
fi
grep -q "^CARVE-OCI-V2: FAIL" <(tr -d '\r' <"$log") || echo "CARVE-OCI-V2: FAIL (no result from the guest)"
exit 1
