#!/usr/bin/env bash
# Tests net_cls and net_prio for real: boots a QEMU TCG guest WITHOUT cgroup_no_v1, mounts a hybrid
# layout as systemd does (tmpfs at /sys/fs/cgroup, name=systemd, cpu,cpuacct, net_cls,net_prio
# co-mounted, every other v1 controller alone, cgroup2 at unified), loads the dummy interface
# (dummy0), 8021q (VLAN dummy0.5 whose egress map turns skb priority 5 into PCP 3, 6 into 4) and
# sock_diag (inet_diag, tcp_diag), then
#   1. runs crates/cgroups/tests/v1_netcls.rs (static, #[ignore]d on the host) test
#      net_cls_and_net_prio_mounted: classid and ifpriomap written and read back through
#      carve_cgroups::Manager, a real process's membership, the classid on the sockets it opens
#      (sock_diag INET_DIAG_CLASS_ID) and on its existing socket after an update, the priority
#      net_prio gives the frames it sends (the PCP of its arping on dummy0.5, captured on dummy0;
#      0 from outside), an unknown interface refused naming the file, removal;
#   2. unmounts net_cls,net_prio and runs net_cls_and_net_prio_not_mounted: the same resources
#      apply without error, skipping only those two;
#   3. mounts them again and drives a static carve-oci with linux.resources.network through
#      create/start/update/delete, checking net_cls.classid and net_prio.ifpriomap from outside.
# Mounting net_cls/net_prio on this host would change how its kernel tags sockets host-wide,
# hence the guest.
# Usage: scripts/v1-guest-test.sh [--build-only]
# Prints the guest console: "CARVE-V1: ok NAME" or "CARVE-V1: FAIL NAME: why" per check, then
# "CARVE-V1: checks N ok, M failed" and a last line "CARVE-V1: PASS" or "CARVE-V1: FAIL (...)";
# exits 0 only on PASS. Kernel and modules: scripts/lib-guest.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
cache=$top/cache
CARGO=${CARGO:-cargo}
# shellcheck source=scripts/lib-guest.sh
. "$top/scripts/lib-guest.sh"

guest_kernel_and_brd
guest_static_build CARVE-V1 "the static carve-oci" carve-oci build -q -p carve-oci --bin carve-oci
oci=$bin
guest_static_build CARVE-V1 "the static test binary" v1_netcls test -q -p carve-cgroups --test v1_netcls --no-run
[ "${1:-}" = "--build-only" ] && { echo "v1-guest: built $bin and $oci"; exit 0; }

# --- initramfs: busybox, the test binary, carve-oci, a busybox bundle, three modules ----------
work=$(mktemp -d /tmp/carve-v1guest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,run,b/net}
cp /bin/busybox "$root/bin/busybox"
cp "$bin" "$root/v1-tests"
cp "$oci" "$root/bin/carve-oci"
for m in dummy inet_diag tcp_diag llc stp garp mrp 8021q; do
  guest_put_module $m "$root" || { echo "CARVE-V1: FAIL (no $m module for $kernel)"; exit 2; }
done
rfs=$root/rootfs
mkdir -p "$rfs"/{bin,proc,sys,dev,tmp,etc,root}
cp /bin/busybox "$rfs/bin/busybox"
for a in sh cat sleep; do ln -s busybox "$rfs/bin/$a"; done
"$oci" spec --bundle "$work"
jq -c '.process.terminal = false | .root = {"path": "/rootfs", "readonly": false}
  | .process.args = ["sh", "-c", "echo IN $(cat /proc/self/cgroup | tr \"\\n\" \" \"); exec sleep 1000"]
  | .linux.cgroupsPath = "/carve-v1oci"
  | .linux.resources.network = {"classID": 1048578, "priorities": [{"name": "lo", "priority": 3}, {"name": "dummy0", "priority": 4}]}
  | .linux.resources.pids = {"limit": 20}' "$work/config.json" >"$root/b/net/config.json"

guest_put_init_lib "$root"
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
TAG=CARVE-V1
. /carve-init.sh
export PATH=/bin RUST_BACKTRACE=1
T0=$(cut -d' ' -f1 /proc/uptime)
# A hybrid layout as systemd mounts it.
C=/sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs $C
mkdir $C/unified $C/systemd
mount -t cgroup2 -o nsdelegate cgroup2 $C/unified
mount -t cgroup -o none,name=systemd,xattr cgroup $C/systemd
for c in $(awk 'NR > 1 && $4 == 1 {print $1}' /proc/cgroups); do
  case $c in
    cpuacct | net_prio) continue ;;
    cpu) o=cpu,cpuacct ;;
    net_cls) o=net_cls,net_prio ;;
    *) o=$c ;;
  esac
  mkdir $C/$o
  mount -t cgroup -o $o cgroup $C/$o
done
for l in cpu:cpu,cpuacct cpuacct:cpu,cpuacct net_cls:net_cls,net_prio net_prio:net_cls,net_prio; do
  ln -s ${l#*:} $C/${l%%:*}
done
for m in dummy inet_diag tcp_diag llc stp garp mrp 8021q; do insmod /$m.ko; done
ip link set lo up
ip link set dummy0 up
# VLAN 5 on dummy0: skb priority 5 leaves as PCP 3, 6 as PCP 4 (net_prio's effect, visible).
vconfig add dummy0 5 >/dev/null
vconfig set_egress_map dummy0.5 5 3 >/dev/null
vconfig set_egress_map dummy0.5 6 4 >/dev/null
ip addr add 10.9.0.1/24 dev dummy0.5
ip link set dummy0.5 arp on up
echo "CARVE-V1: cmdline: $(cat /proc/cmdline)"
echo "CARVE-V1: mounts: $(grep cgroup /proc/mounts | cut -d' ' -f2,3 | tr '\n' ';')"
echo "CARVE-V1: links: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\n' ,)"
suite() { # TEST: one test of /v1-tests; its check lines counted
  (cd /tmp && /v1-tests -q --ignored --exact --nocapture --test-threads=1 "$1" >/tmp/t.log 2>&1)
  local rc=$?
  cat /tmp/t.log
  oks=$((oks + $(grep -c "^CARVE-V1: ok " /tmp/t.log)))
  fails=$((fails + $(grep -c "^CARVE-V1: FAIL " /tmp/t.log)))
  check "test $1 passed (exit $rc)" sh -c "[ $rc = 0 ] && grep -q '^test result: ok. 1 passed' /tmp/t.log"
}
val() { tr '\n' ' ' <"$1" | sed 's/ $//'; }

# --- 1. mounted ------------------------------------------------------------------------------
suite net_cls_and_net_prio_mounted

# --- 2. not mounted --------------------------------------------------------------------------
umount "$C/net_cls,net_prio" && rm "$C/net_cls" "$C/net_prio" && rmdir "$C/net_cls,net_prio"
check "net_cls,net_prio unmounted" sh -c "! grep -q net_cls /proc/mounts"
suite net_cls_and_net_prio_not_mounted

# --- 3. carve-oci with linux.resources.network, mounted again --------------------------------
mkdir "$C/net_cls,net_prio"
mount -t cgroup -o net_cls,net_prio cgroup "$C/net_cls,net_prio"
ln -s net_cls,net_prio $C/net_cls
ln -s net_cls,net_prio $C/net_prio
nc=$C/net_cls,net_prio/carve-v1oci
carve-oci create --bundle /b/net o1 >/tmp/o1.out 2>&1; rc=$?
cat /tmp/o1.out
check "carve-oci create ($rc)" [ $rc = 0 ]
check "carve-oci: net_cls.classid outside ($(val $nc/net_cls.classid))" [ "$(val $nc/net_cls.classid)" = 1048578 ]
check "carve-oci: ifpriomap lo 3 outside" grep -qx "lo 3" $nc/net_prio.ifpriomap
check "carve-oci: ifpriomap dummy0 4 outside" grep -qx "dummy0 4" $nc/net_prio.ifpriomap
check "carve-oci: pids.max outside ($(val $C/pids/carve-v1oci/pids.max))" [ "$(val $C/pids/carve-v1oci/pids.max)" = 20 ]
pid=$(carve-oci state o1 | tr -d ' \n' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
check "carve-oci: init $pid in the net_cls cgroup" grep -qx "$pid" $nc/cgroup.procs
check "carve-oci: /proc/PID/cgroup net_cls,net_prio:/carve-v1oci" grep -q ":net_cls,net_prio:/carve-v1oci$" /proc/$pid/cgroup
carve-oci start o1
for i in $(seq 100); do grep -q '^IN ' /tmp/o1.out && break; sleep 0.1; done
cat /tmp/o1.out
check "carve-oci: inside, its net_cls cgroup is the root of its cgroup ns" grep -q "^IN .*:net_cls,net_prio:/ " /tmp/o1.out
echo '{"network": {"classID": 1048579, "priorities": [{"name": "lo", "priority": 6}]}}' | carve-oci update --resources - o1
check "carve-oci update ($?)" [ $? = 0 ]
check "carve-oci: net_cls.classid after update ($(val $nc/net_cls.classid))" [ "$(val $nc/net_cls.classid)" = 1048579 ]
check "carve-oci: ifpriomap lo 6 after update" grep -qx "lo 6" $nc/net_prio.ifpriomap
carve-oci delete --force o1
check "carve-oci: delete --force ($?)" [ $? = 0 ]
check "carve-oci: net_cls cgroup gone" [ ! -e $nc ]
check "carve-oci: init gone" [ ! -d /proc/$pid ]

# --- nothing left ----------------------------------------------------------------------------
left=$(find $C -mindepth 2 -type d | tr '\n' ' ')
check "no cgroup left ($left)" [ -z "$left" ]
T1=$(cut -d' ' -f1 /proc/uptime)
echo "CARVE-V1: checks $oks ok, $fails failed, in $(awk -v a=$T0 -v b=$T1 'BEGIN {print b - a}') s of guest time"
if [ $fails = 0 ] && [ $oks -gt 0 ]; then echo "CARVE-V1: PASS"; else echo "CARVE-V1: FAIL ($fails checks)"; fi
poweroff -f
EOF
chmod +x "$root/init"
guest_pack "$root" "$work/initrd"

# --- boot (without cgroup_no_v1) ---------------------------------------------------------------
guest_cgroup_append="" guest_boot CARVE-V1 "${CARVE_V1_TIMEOUT:-180}" 2 512 "$work/initrd" "$work/console.log"
