#!/usr/bin/env bash
# The demo: examples/gateway.toml on this host, live (docs/demo.md).
#   core 1: the packet fast path (AES-128-GCM over 1 KiB packets from a shared-memory ring);
#   core 0: Linux, the control container (packet generator + busybox httpd serving the fast
#           path's counters) and a VM that fetches that page over the bridge and prints it.
# Then `carve down`, and a before/after snapshot of the host shows it was restored.
#
#   ./scripts/demo.sh              prepare the assets, measure, run the demo (as root)
#   ./scripts/demo.sh --prepare    only install packages, build, and prepare the assets
#   DEMO_SECONDS=20                how long the live view runs (default 20)
#   DEMO_MEASURE=0                 skip the `carve up` timing and the bare-loop reference
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_LIVE=${DEMO_SECONDS:-20}
MEASURE=${DEMO_MEASURE:-1}
PREPARE_ONLY=0
[ "${1:-}" = "--prepare" ] && PREPARE_ONLY=1

say() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "demo: run as root (it dedicates a core, makes cgroups, a bridge and a VM)" >&2; exit 1; }

# ---- 1. packages and binaries --------------------------------------------------------------
bash scripts/setup.sh
T=${CARGO_TARGET_DIR:-$ROOT/target}
say "building carve, carve-oci, carve-leakcheck and a static carve-pktcrypt"
cargo build --release --quiet -p carve -p carve-oci
cargo build --release --quiet -p carve-testkit --bin carve-leakcheck
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet -p carve-fastpath \
  --bin carve-pktcrypt --target x86_64-unknown-linux-gnu
carve=$T/release/carve
leakcheck=$T/release/carve-leakcheck
pktcrypt_static=$T/x86_64-unknown-linux-gnu/release/carve-pktcrypt

# ---- 2. assets, all into the git-ignored cache/ -----------------------------------------------
say "assets (cache/): guest kernel + initramfs, busybox rootfs, static carve-pktcrypt"
G=cache/gateway
$carve image guest cache/guest                       # = scripts/assets.sh
if [ ! -x $G/rootfs/bin/busybox ]; then
  $carve image busybox $G/rootfs
fi
mkdir -p $G/bin $G/rootfs/bin
install -m 0755 "$pktcrypt_static" $G/bin/carve-pktcrypt      # the fast path (host side)
install -m 0755 "$pktcrypt_static" $G/rootfs/bin/carve-pktcrypt   # the generator (container)
echo "cache/guest: $(ls cache/guest | tr '\n' ' ')"
echo "$G/rootfs: busybox rootfs + carve-pktcrypt (static); $G/bin/carve-pktcrypt (the fast path)"
[ $PREPARE_ONLY = 1 ] && { echo "demo: assets ready"; exit 0; }

export PATH=$ROOT/$G/bin:$PATH                       # `carve-pktcrypt` in the plan's fast path
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

say "carve plan check examples/gateway.toml"
$carve plan check examples/gateway.toml

if $carve ps 2>/dev/null | grep -q .; then
  if $carve ps | awk 'NR>1{print $1}' | grep -qx gateway; then
    echo "demo: plan gateway is already up; take it down first: $carve down gateway" >&2; exit 1
  fi
fi

say "host snapshot before (IRQ affinities, sysctls, workqueue masks, cpusets, cgroups, mounts, netns, links, qemu, journals)"
mkdir -p $G/run
$leakcheck snapshot $G/run/before.json
ls -A /run/carve 2>/dev/null | grep -v '^journal$' >$G/run/before-run-carve.txt || true
echo "saved $G/run/before.json"

# ---- 3. measurement: `carve up` of the plan vs its partitions started alone -------------------
# Each partition alone is one-partition plan (cache/gateway/alone/*.toml); the container and the
# VM alone are measured while the fast path alone holds core 1, as in the whole plan.
up_ms() {
  local t0 log=$G/run/up-$(basename "$1" .toml).log
  t0=$(now_ms)
  if ! $carve up -d "$1" >"$log" 2>&1; then
    { echo "demo: carve up -d $1 failed:"; cat "$log"; } >&2
    return 1
  fi
  echo $(( $(now_ms) - t0 ))
}
if [ "$MEASURE" = 1 ]; then
  say "measuring: carve up -d of each partition alone, then of the whole plan"
  A=$ROOT/$G/alone; mkdir -p $A
  cat >$A/gwa-fastpath.toml <<EOF
[host]
housekeeping = [0]
[[partition]]
name = "fastpath"
kind = "dedicated"
cpus = [1]
memory = "64MiB"
hugepages = "2MiB"
sched = "fifo:80"
command = ["carve-pktcrypt", "--ring", "/run/carve/gwa-fastpath/partitions/fastpath/ring", "--mlock"]
rlimits = { memlock = "unlimited" }
EOF
  net='[network.carve0]
namespace = "carve-demo"
subnet = "10.77.0.0/24"
gateway = "10.77.0.1"'
  cat >$A/gwa-control.toml <<EOF
[host]
housekeeping = [0]
$net
[[partition]]
name = "control"
kind = "container"
cpus = [0]
memory = "256MiB"
rootfs = "$ROOT/$G/rootfs"
command = ["/bin/sh", "-c", "httpd -p 8080 -h /etc && exec sleep 100000"]
network = { bridge = "carve0", address = "10.77.0.2/24" }
EOF
  cat >$A/gwa-legacy.toml <<EOF
[host]
housekeeping = [0]
$net
[[partition]]
name = "legacy"
kind = "vm"
vcpus = 1
cpus = [0]
memory = "256MiB"
kernel = "$ROOT/cache/guest/vmlinuz"
initrd = "$ROOT/cache/guest/initrd.img"
append = "quiet"
network = { bridge = "carve0", address = "10.77.0.3/24" }
EOF
  trap 'for p in gwa-legacy gwa-control gwa-fastpath; do $carve down $p >/dev/null 2>&1 || true; done' EXIT INT TERM
  t_ded=$(up_ms $A/gwa-fastpath.toml)
  sleep 1
  t_ct=$(up_ms $A/gwa-control.toml);  $carve down gwa-control >/dev/null
  t_vm=$(up_ms $A/gwa-legacy.toml);   $carve down gwa-legacy >/dev/null
  $carve down gwa-fastpath >/dev/null
  trap - EXIT INT TERM
  sum=$(( t_ded + t_ct + t_vm ))
  echo "alone: fastpath ${t_ded} ms, control ${t_ct} ms (core 1 taken), legacy ${t_vm} ms (core 1 taken): sum ${sum} ms"
fi

# ---- 4. the demo ------------------------------------------------------------------------------
say "carve up -d examples/gateway.toml"
t0=$(now_ms)
if ! $carve up -d examples/gateway.toml; then
  echo "demo: carve up failed (it rolled back); comparing the host with the snapshot:" >&2
  $leakcheck compare $G/run/before.json || true
  exit 1
fi
t_all=$(( $(now_ms) - t0 ))
echo "carve up -d took ${t_all} ms"
if [ "$MEASURE" = 1 ]; then
  echo "whole plan ${t_all} ms vs partitions alone ${sum} ms: $(awk -v a=$t_all -v s=$sum 'BEGIN{printf "%.2f", a/s}')x" \
    | tee $G/run/timing.txt
fi

cleanup() { $carve down gateway >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

say "live for ${SECONDS_LIVE}s: carve ps (stolen % of the dedicated core), the fast path's counters, the page as the VM saw it"
end=$(( $(date +%s) + SECONDS_LIVE ))
while [ "$(date +%s)" -lt "$end" ]; do
  echo "--- $(date +%T)"
  $carve ps
  echo "fast path (carve logs fastpath): $($carve logs fastpath | grep 'packets/s' | tail -n 1 | sed 's/^carve-pktcrypt: *//')"
  page=$($carve logs legacy | grep -a '"packets"' | tail -n 1 || true)
  echo "VM saw (carve logs legacy):      ${page:-(not yet: the guest is booting under $(grep -q kvm_intel /proc/modules 2>/dev/null && echo KVM || echo TCG))}"
  sleep 3
done

say "waiting (up to 120 s) for the VM to print the page, if it has not yet"
for _ in $(seq 120); do
  $carve logs legacy | grep -qa '"packets"' && break
  sleep 1
done
say "carve logs legacy (the guest console)"
page_ok=0
if $carve logs legacy | grep -qa '"packets"'; then
  page_ok=1
  $carve logs legacy | grep -a -m 1 'carve-guest-ready' || true
  $carve logs legacy | grep -a '"packets"' | tail -n 3
else
  echo "demo: the VM did NOT print the page within the time; its console:" >&2
  $carve logs legacy | tail -n 20
fi

$carve logs fastpath >$G/run/fastpath.log
ns_demo=$(grep 'packets/s' $G/run/fastpath.log | awk '$2>0{print $4}' | sort -n | awk '{a[NR]=$1}END{if(NR)print a[int((NR+1)/2)]}')
pps_demo=$(grep 'packets/s' $G/run/fastpath.log | awk '$2>0{print $2}' | sort -n | awk '{a[NR]=$1}END{if(NR)print a[int((NR+1)/2)]}')
echo "fast path in the demo: median of per-second reports ${pps_demo:-?} packets/s, ${ns_demo:-?} ns/packet"

say "carve down gateway"
trap - EXIT INT TERM
$carve down gateway

say "host after carve down"
status=0
$leakcheck compare $G/run/before.json || status=1
left=$(ls -A /run/carve 2>/dev/null | grep -v '^journal$' | grep -vxF -f $G/run/before-run-carve.txt || true)
j=$(ls /run/carve/journal 2>/dev/null || true)
shm=$(ls /dev/shm | grep -i carve || true)
q=$(pgrep -a qemu-system || true)
echo "/run/carve: ${left:-nothing new}; journals: ${j:-none}; /dev/shm carve files: ${shm:-none}; qemu: ${q:-none}"
[ -z "$left$j$shm$q" ] || status=1

# ---- 5. the bare loop on the same dedicated core, for reference ------------------------------
if [ "$MEASURE" = 1 ]; then
  say "reference: the bare loop (no ring) on dedicated core 1, SCHED_FIFO 80"
  bare=$($carve run --dedicated 1 --sched fifo:80 -- $G/bin/carve-pktcrypt --bare --packets 5000000 --cpu 1 | tail -n 1)
  echo "$bare"
  ns_bare=$(echo "$bare" | sed -n 's/.*packets, \([0-9.]*\) ns\/packet (mean).*/\1/p')
  echo "fast path in the demo ${ns_demo:-?} ns/packet vs bare ${ns_bare:-?} ns/packet: $(awk -v d=${ns_demo:-0} -v b=${ns_bare:-0} 'BEGIN{if(d>0)printf "%.2fx", b/d; else print "?"}') (bare/demo)" \
    | tee -a $G/run/timing.txt
  $leakcheck compare $G/run/before.json >/dev/null || { echo "demo: host changed after carve run" >&2; status=1; }
fi

if [ $status = 0 ]; then
  say "the host is exactly as before"
else
  say "the host was NOT fully restored (see above)"
fi
if [ $page_ok = 0 ]; then
  echo "demo: the VM never printed the fast path's page (see its console above)" >&2
  status=1
fi
exit $status
