#!/usr/bin/env bash
# Where a CRI pod start goes, per runtime call (docs/performance.md, "Kubernetes CRI").
#
# Runs `carve bench cri --json` with each handler's runtime binary behind a logging wrapper (bash,
# timestamps from $EPOCHREALTIME: no fork), then prints
#   - each runtime subcommand the runc v2 shim ran: count and median wall time, carve-oci vs runc;
#   - per handler, the runtime's share of pod start (the shim's create + start of the pause
#     container in RunPodSandbox and of the container in StartContainer) and the floor: pod start
#     minus that share, round by round — what pod start would be with a runtime taking 0 ms;
#   - the best carve/runc pod-start ratio any runtime could reach: floor / runc's pod start.
# The wrapper's own cost (one bash start, ~1-3 ms per call) is counted as runtime time for both.
#
# Usage: scripts/bench-cri-calls.sh [RUNS]      (after cargo build --release -p carve -p carve-oci)
# Env:   CARVE (target/release/carve), CARVE_OCI (beside CARVE), RUNC (/usr/sbin/runc)
set -euo pipefail
runs=${1:-10}
carve=${CARVE:-target/release/carve}
oci=$(realpath "${CARVE_OCI:-$(dirname "$carve")/carve-oci}")
runc=$(realpath "${RUNC:-/usr/sbin/runc}")
w=$(mktemp -d /tmp/carve-cri-calls.XXXXXX)
trap 'rm -rf "$w"' EXIT

for h in carve runc; do
    real=$oci
    [ "$h" = runc ] && real=$runc
    cat >"$w/$h" <<EOF
#!/bin/bash
s=\$EPOCHREALTIME
"$real" "\$@"
rc=\$?
echo "$h \$s \$EPOCHREALTIME \$rc \$*" >>"$w/calls.log"
exit \$rc
EOF
    chmod +x "$w/$h"
done

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$carve" bench cri --runs "$runs" --json --carve-oci "$w/carve" --runc "$w/runc" >"$w/samples.json"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

# One line per call: handler, subcommand, milliseconds.
awk '{
    sub_ = "?"
    for (i = 5; i <= NF; i++)
        if ($i ~ /^(create|start|state|kill|delete|features|update|exec|ps|events|pause|resume)$/ || $i == "--version") { sub_ = $i; break }
    if (sub_ == "kill" || sub_ == "delete")
        for (j = i; j <= NF; j++) if ($j == "--all" || $j == "--force") sub_ = sub_ " " $j
    printf "%s\t%s\t%.3f\n", $1, sub_, ($3 - $2) * 1000
}' "$w/calls.log" >"$w/calls.tsv"

med() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo
echo "runtime calls made by the shim (all rounds, warm-up included): median wall ms"
printf "%-16s %5s %9s %9s %7s\n" call n carve-oci runc ratio
for c in $(cut -f2 "$w/calls.tsv" | tr ' ' '_' | sort -u); do
    cs=${c//_/ }
    n=$(awk -F'\t' -v c="$cs" '$1 == "carve" && $2 == c' "$w/calls.tsv" | wc -l)
    a=$(awk -F'\t' -v c="$cs" '$1 == "carve" && $2 == c {print $3}' "$w/calls.tsv" | med)
    b=$(awk -F'\t' -v c="$cs" '$1 == "runc" && $2 == c {print $3}' "$w/calls.tsv" | med)
    printf "%-16s %5s %9.1f %9.1f %7s\n" "$cs" "$n" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')"
done

# Per round: the 2 creates + 2 starts (pause, then container) in call order; round 0 is the
# bench's unrecorded warm-up.
echo
echo "pod start per handler (median ms over $runs rounds): total, runtime's share, floor (total - share)"
printf "%-6s %9s %9s %9s\n" handler total runtime floor
for h in carve runc; do
    awk -F'\t' -v h="$h" '$1 == h && ($2 == "create" || $2 == "start") {print $3}' "$w/calls.tsv" |
        awk '{s += $1} NR % 4 == 0 {print s; s = 0}' | tail -n +2 >"$w/$h.share"
    jq -r --arg h "$h" '.[] | select(.handler == $h) | .start_ms[]' "$w/samples.json" >"$w/$h.start"
    paste "$w/$h.start" "$w/$h.share" | awk '{print $1 - $2}' >"$w/$h.floor"
    printf "%-6s %9.1f %9.1f %9.1f\n" "$h" "$(med <"$w/$h.start")" "$(med <"$w/$h.share")" "$(med <"$w/$h.floor")"
done
floor=$(cat "$w/carve.floor" "$w/runc.floor" | med)
runc_start=$(med <"$w/runc.start")
carve_start=$(med <"$w/carve.start")
echo
awk -v f="$floor" -v r="$runc_start" -v c="$carve_start" 'BEGIN {
    printf "measured carve/runc pod start: %.3fx\n", c / r
    printf "floor (both handlers, runtime at 0 ms): %.1f ms = %.3fx of runc pod start (the best any runtime can reach here)\n", f, f / r
}'
