#!/bin/bash
# ns-cost.sh BIN ROUNDS OUT: runs ns-cost (BIN) natively and under each ingredient of a container
# alone, alternating every condition with a native run in every round, all pinned to CPU 1, one
# line per run in OUT (docs/performance.md, "What a container costs, ingredient by ingredient").
# With BUNDLE=DIR (a bundle whose process runs BIN, linux.resources.cpu.cpus "1") it also runs
# the bundle under carve-oci ($CARVE_OCI) and runc. The v1 cgroups it makes are removed at exit.
set -u
BIN=$1; R=$2; OUT=$3
T="taskset -c 1"
CG=carve-nscost-$$
cleanup() {
  for d in /sys/fs/cgroup/*/$CG-*; do [ -d "$d" ] && rmdir "$d"; done
  rm -rf "/run/$CG-oci" "/run/$CG-runc"
}
trap cleanup EXIT
# incg CONTROLLERS CMD...: CMD in a fresh cgroup of each named v1 controller (or "unified").
incg() {
  local tag=$1; shift
  ( for c in ${tag//,/ }; do
      d=/sys/fs/cgroup/$c/$CG-${tag//,/-}
      mkdir -p "$d"
      if [ "$c" = cpuset ]; then
        cat /sys/fs/cgroup/cpuset/cpuset.cpus > "$d/cpuset.cpus"
        cat /sys/fs/cgroup/cpuset/cpuset.mems > "$d/cpuset.mems"
      fi
      echo $BASHPID > "$d/cgroup.procs" || exit 1
    done
    exec "$@" )
}
declare -A C=(
  [native]="$T $BIN"
  [pid]="unshare --pid --fork $T $BIN"
  [mnt]="unshare --mount $T $BIN"
  [net]="unshare --net $T $BIN"
  [uts]="unshare --uts $T $BIN"
  [ipc]="unshare --ipc $T $BIN"
  [user]="unshare --user $T $BIN"
  [cgroupns]="unshare --cgroup $T $BIN"
  [time]="unshare --time --fork $T $BIN"
  [allns]="unshare --pid --fork --mount --net --uts --ipc --cgroup $T $BIN"
  [cg-cpu]="incg cpu $T $BIN"
  [cg-cpuacct]="incg cpuacct $T $BIN"
  [cg-cpuset]="incg cpuset $T $BIN"
  [cg-memory]="incg memory $T $BIN"
  [cg-pids]="incg pids $T $BIN"
  [cg-unified]="incg unified $T $BIN"
  [cg-all]="incg cpu,cpuacct,cpuset,memory,pids,devices,freezer,blkio,unified $T $BIN"
  [nnp]="setpriv --no-new-privs $T $BIN"
  [nocaps]="setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all $T $BIN"
  [envi]="env -i $T $BIN"
  [noaslr]="setarch -R $T $BIN"
  [cpu0]="taskset -c 0 $BIN"
)
if [ -n "${BUNDLE:-}" ]; then
  C[carve-oci]="${CARVE_OCI:-carve-oci} --root /run/$CG-oci run --bundle $BUNDLE $CG-\$RANDOM"
  C[runc]="runc --root /run/$CG-runc run --bundle $BUNDLE $CG-\$RANDOM"
  C[diy]="incg cpu,cpuacct,cpuset,memory,pids,devices,freezer,blkio unshare --pid --fork --mount --net --uts --ipc --cgroup setpriv --no-new-privs $T $BIN"
fi
names=("${!C[@]}")
n=${#names[@]}
for ((r = 0; r < R; r++)); do
  for ((k = 0; k < n; k++)); do
    name=${names[$(((k + r) % n))]}
    [ "$name" = native ] && continue
    echo "$name $(eval "${C[$name]}")" >> "$OUT"
    echo "native $(${C[native]})" >> "$OUT"
  done
done
