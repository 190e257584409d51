#!/bin/sh
# The checks scripts/systemd-guest.sh runs inside its systemd guest (as carve-test.service, output
# on the serial console): carve-oci's systemd cgroup driver through podman and called directly.
# One "CARVE-SYSTEMD: ok NAME" / "CARVE-SYSTEMD: FAIL NAME: why" line per check, then the verdict;
# the guest powers off at the end.
TAG=CARVE-SYSTEMD
B=/usr/local/bin/carve-oci
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
oks=0
fails=0
check() { # NAME COMMAND...
  n=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "$TAG: ok $n"
    oks=$((oks + 1))
  else
    echo "$TAG: FAIL $n: $* is false"
    fails=$((fails + 1))
  fi
}
since() { awk -v t="$1" '{print $1 - t}' /proc/uptime; }
prop() { systemctl show -p "$2" --value "$1" 2>/dev/null; }
finish() {
  echo "$TAG: checks $oks ok, $fails failed"
  if [ "$fails" = 0 ] && [ "$oks" -gt 0 ]; then echo "$TAG: PASS"; else echo "$TAG: FAIL ($fails checks failed)"; fi
  systemctl poweroff --force --force
}
T0=$(cut -d' ' -f1 /proc/uptime)
echo "$TAG: up after ${T0}s: $(systemctl --version | head -n1), /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup), PID 1 $(cat /proc/1/comm)"
check "systemd is PID 1" [ "$(cat /proc/1/comm)" = systemd ]

# --- podman --cgroup-manager systemd --runtime carve-oci -----------------------------------------
P="podman --runtime $B --cgroup-manager systemd"
# `--rootfs` is a boolean (the first argument is then a rootfs, not an image) and `podman run`
# stops parsing its own flags at the first argument, so every option comes before `--rootfs
# /srv/bb`: after it they would be the container's command and podman would run with its default
# bridge network and no limits. With --network host podman calls no network plugin at all.
$P run -d --name carvesd --network host --memory 64m --cpus 0.5 --pids-limit 32 --rootfs /srv/bb \
  sh -c 'exec sleep 1000' >/tmp/podman.out 2>&1
rc=$?
check "podman run with carve-oci ($(tail -n1 /tmp/podman.out))" [ $rc = 0 ]
[ $rc = 0 ] || tail -n 20 /tmp/podman.out | sed "s/^/$TAG: podman run: /"
check "podman: no network plugin called" sh -c "! grep -qE 'plugin type=|netavark' /tmp/podman.out"
id=$(tail -n1 /tmp/podman.out) # `run -d` prints the full id (saves a slow podman call)
u=libpod-$id.scope
cg=/sys/fs/cgroup/machine.slice/$u
echo "$TAG: podman unit $u"
systemctl status "$u" --no-pager 2>&1 | head -n 12 | sed "s/^/$TAG: status: /"
check "podman: systemctl status shows the active scope" systemctl is-active "$u"
check "podman: scope described by carve-oci" sh -c "systemctl status '$u' --no-pager | grep -q 'carve-oci container'"
check "podman: Delegate=yes" [ "$(prop "$u" Delegate)" = yes ]
check "podman: MemoryMax=64M in the unit ($(prop "$u" MemoryMax))" [ "$(prop "$u" MemoryMax)" = 67108864 ]
check "podman: TasksMax=32 in the unit ($(prop "$u" TasksMax))" [ "$(prop "$u" TasksMax)" = 32 ]
check "podman: CPUQuotaPerSecUSec=500ms ($(prop "$u" CPUQuotaPerSecUSec))" [ "$(prop "$u" CPUQuotaPerSecUSec)" = 500ms ]
check "podman: memory.max in the cgroup" [ "$(cat "$cg/memory.max")" = 67108864 ]
check "podman: pids.max in the cgroup" [ "$(cat "$cg/pids.max")" = 32 ]
check "podman: cpu.max in the cgroup ($(cat "$cg/cpu.max"))" [ "$(cat "$cg/cpu.max")" = "50000 100000" ]
# The limits hold: a 100 MiB allocation is OOM-killed, forks beyond 32 tasks fail.
$P exec carvesd sh -c 'dd if=/dev/zero of=/dev/null bs=100M count=1' >/dev/null 2>&1
rc=$?
check "podman: a 100 MiB allocation in 64 MiB is killed (rc $rc, oom_kill $(grep oom_kill "$cg/memory.events" | cut -d' ' -f2))" [ "$(grep '^oom_kill' "$cg/memory.events" | cut -d' ' -f2)" -ge 1 ]
$P exec carvesd sh -c 'i=0; while [ $i -lt 40 ]; do sleep 100 & i=$((i + 1)); done 2>&1; echo forked; kill $(jobs -p) 2>/dev/null' >/tmp/fork.out 2>&1
check "podman: forks beyond TasksMax fail ($(grep -m1 fork /tmp/fork.out))" grep -q "can't fork" /tmp/fork.out
check "podman: pids.events max counted" [ "$(grep '^max' "$cg/pids.events" | cut -d' ' -f2)" -ge 1 ]
# podman 4.3 (bookworm) has `update`; it calls `carve-oci update --resources FILE`.
$P update --memory 96m carvesd >/tmp/update.out 2>&1
check "podman update reaches the unit (MemoryMax $(prop "$u" MemoryMax), $(tail -n1 /tmp/update.out))" [ "$(prop "$u" MemoryMax)" = 100663296 ]
check "podman update reaches memory.max" [ "$(cat "$cg/memory.max")" = 100663296 ]
$P rm -f carvesd >/dev/null 2>&1
check "podman rm: no unit left ($(prop "$u" LoadState))" [ "$(prop "$u" LoadState)" = not-found ]
check "podman rm: no cgroup left" [ ! -e "$cg" ]
echo "$TAG: podman part took $(since "$T0")s"
T1=$(cut -d' ' -f1 /proc/uptime)

# --- carve-oci --systemd-cgroup directly ----------------------------------------------------------
# The bundle (made by scripts/systemd-guest.sh with jq): busybox at /srv/bb, `sleep 1000`, memory
# 64 MiB, cpu quota 50 ms / 100 ms on cpu 0, 16 pids, cgroupsPath carve-test.slice:carve:direct1.
b=/usr/local/share/carve-bundle
u=carve-direct1.scope
cg=/sys/fs/cgroup/carve.slice/carve-test.slice/$u
$B --systemd-cgroup create --bundle $b d1 >/tmp/create.out 2>&1
check "carve-oci --systemd-cgroup create ($(tail -n1 /tmp/create.out))" [ $? = 0 ]
$B --systemd-cgroup start d1
pid=$($B state d1 | tr -d ' \n' | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
systemctl status "$u" --no-pager 2>&1 | head -n 8 | sed "s/^/$TAG: status: /"
check "direct: the scope is active" systemctl is-active "$u"
check "direct: in carve-test.slice" [ "$(prop "$u" Slice)" = carve-test.slice ]
check "direct: init is in the scope's cgroup" grep -qx "0::/carve.slice/carve-test.slice/$u" "/proc/$pid/cgroup"
check "direct: MemoryMax ($(prop "$u" MemoryMax))" [ "$(prop "$u" MemoryMax)" = 67108864 ]
check "direct: TasksMax ($(prop "$u" TasksMax))" [ "$(prop "$u" TasksMax)" = 16 ]
check "direct: CPUQuotaPerSecUSec ($(prop "$u" CPUQuotaPerSecUSec))" [ "$(prop "$u" CPUQuotaPerSecUSec)" = 500ms ]
check "direct: AllowedCPUs ($(prop "$u" AllowedCPUs))" [ "$(prop "$u" AllowedCPUs)" = 0 ]
check "direct: DevicePolicy strict" [ "$(prop "$u" DevicePolicy)" = strict ]
check "direct: cgroup files (memory.max, pids.max, cpu.max, cpuset.cpus)" \
  [ "$(cat $cg/memory.max) $(cat $cg/pids.max) $(cat $cg/cpu.max) $(cat $cg/cpuset.cpus)" = "67108864 16 50000 100000 0" ]
$B --systemd-cgroup update --memory 100m --pids-limit 20 d1 >/tmp/update.out 2>&1
check "direct: update ($(tail -n1 /tmp/update.out))" [ $? = 0 ]
check "direct: update reaches the unit (MemoryMax $(prop "$u" MemoryMax), TasksMax $(prop "$u" TasksMax))" \
  [ "$(prop "$u" MemoryMax) $(prop "$u" TasksMax)" = "104857600 20" ]
check "direct: update reaches the files" [ "$(cat $cg/memory.max) $(cat $cg/pids.max)" = "104857600 20" ]
$B --systemd-cgroup delete --force d1 >/tmp/delete.out 2>&1
check "direct: delete --force ($(tail -n1 /tmp/delete.out))" [ $? = 0 ]
check "direct: no unit left ($(prop "$u" LoadState))" [ "$(prop "$u" LoadState)" = not-found ]
check "direct: no cgroup left" [ ! -e "$cg" ]
check "direct: no init left" [ ! -e "/proc/$pid" ]

# --- nothing left behind ---------------------------------------------------------------------------
check "no libpod or carve scope loaded" sh -c "! systemctl list-units --all --no-legend | grep -E 'libpod-|carve-direct'"
check "no carve-oci state left" sh -c "[ -z \"\$(ls /run/carve-oci 2>/dev/null)\" ]"
echo "$TAG: direct part took $(since "$T1")s, guest checks $(since "$T0")s"
finish
