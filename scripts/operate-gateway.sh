#!/usr/bin/env bash
# docs/operate.md "With the gateway up": brings examples/gateway.toml up (after
# `scripts/demo.sh --prepare`), samples the dedicated core's figures once a second from the API
# socket and the TCP listener, starts a CPU load in the control container half-way
# (`carve exec control ...`), takes the screenshots during the load, and takes the plan down.
# Holds the test host lock while core 1 is dedicated.
#
#   scripts/operate-gateway.sh [SECONDS_BEFORE] [SECONDS_LOAD]     (default 15 20)
#   CARVE=target/release/carve   SHOTS=docs (where the PNGs go; SHOTS= skips them)
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:-15}
load=${2:-20}
carve=${CARVE:-target/release/carve}
shots=${SHOTS-docs}
export PATH=$PWD/cache/gateway/bin:$PATH
if $carve ps | awk 'NR>1{print $1}' | grep -qx gateway; then
  echo "gateway is already up: not touching it" >&2; exit 1
fi
# Core 1 must be free: wait (10 min at most) for the other plans using it and for the host lock.
deadline=$((SECONDS + 600))
trap '$carve down gateway >/dev/null 2>&1 || true' EXIT
until { exec 9>/run/carve-test-host.lock; flock -x 9; $carve up -d examples/gateway.toml; }; do
  exec 9>&-
  [ $SECONDS -lt $deadline ] || { echo "core 1 stayed taken for 10 minutes" >&2; exit 1; }
  echo "waiting for core 1 ($(date +%T))"; sleep 10
done
sock=/run/carve/gateway/api.sock
tcp=$(cat /run/carve/gateway/metrics.addr)
metric() { # TEXT NAME-PREFIX → value of the first matching sample
  awk -v m="$2" 'index($0, m) == 1 { print $NF; exit }' <<<"$1"
}
sample() { # LABEL
  local a b
  a=$(curl -s --unix-socket $sock http://carve/metrics)
  b=$(curl -s http://$tcp/metrics)
  printf '%s %-5s sock: stolen %6.3f%%  gap %5.0f us  irq/s-probe %6.0f  offcpu %6.3f%%  core0 busy %5.1f%%  core1 hv-steal %5.2f%% | tcp: stolen %6.3f%%\n' \
    "$(date +%T)" "$1" \
    "$(awk '{print $1*100}' <<<"$(metric "$a" 'carve_dedicated_core_stolen_ratio{')")" \
    "$(awk '{print $1*1e6}' <<<"$(metric "$a" 'carve_dedicated_core_longest_gap_seconds{')")" \
    "$(metric "$a" 'carve_dedicated_core_interruptions_per_second{')" \
    "$(awk '{print $1*100}' <<<"$(metric "$a" 'carve_partition_offcpu_ratio{plan="gateway",partition="fastpath"}')")" \
    "$(awk '{print $1*100}' <<<"$(metric "$a" 'carve_core_busy_ratio{plan="gateway",cpu="0"}')")" \
    "$(awk '{print $1*100}' <<<"$(metric "$a" 'carve_core_hypervisor_steal_ratio{plan="gateway",cpu="1"}')")" \
    "$(awk '{print $1*100}' <<<"$(metric "$b" 'carve_dedicated_core_stolen_ratio{')")"
}
sleep 3
for _ in $(seq $before); do sample idle; sleep 1; done
echo "== load: carve exec control -- sh -c 'for i in 1 2 3 4; do timeout $((load + 5)) sh -c \"while :; do :; done\" & done; wait'"
$carve exec control -- sh -c "for i in 1 2 3 4; do timeout $((load + 5)) sh -c 'while :; do :; done' & done; wait" &
loadpid=$!
for _ in $(seq 5); do sample load; sleep 1; done
if [ -n "$shots" ]; then
  CARVE=$carve TOP_WAIT=4 bash scripts/operate-shots.sh gateway "$shots" >/dev/null
fi
for _ in $(seq $((load - 10))); do sample load; sleep 1; done
curl -s --unix-socket $sock http://carve/v1/overview | jq -c '.cores[] | {cpu, owners, irqs: .irqs[:4]}'
curl -s --unix-socket $sock http://carve/metrics | grep -E '^carve_(vm_|link_receive_bytes|dedicated_probe|observer)' || true
wait $loadpid || true
for _ in $(seq 5); do sample after; sleep 1; done
$carve top --once --json | jq -c '{plan, partitions: [.partitions[] | {name, state, cpu_ratio}]}'
