# The dedicated-container checks of the pure cgroup v2 guest (issue 13), sourced by the guest's
# /init that scripts/oci-v2-guest-test.sh --dedicated builds (it defines check, run, pid_of,
# status, stopped, val, keyed, alive and gone, and the bundles ded and dedx).
#
# A dedicated container on CPU 1 of 2: its cgroup an isolated cpuset partition, host masks moved
# and restored; `exec` into it runs on the housekeeping CPU 0 in its exec sibling cgroup
# (/carve-ded.carve-exec) with a copy of its limits and device program, frozen with it, removed
# at delete --force and at delete after its init was killed.

# --- a dedicated container: an isolated cpuset partition below the root cgroup ----------------
wq0=$(cat /sys/devices/virtual/workqueue/cpumask)
dcg=/sys/fs/cgroup/carve-ded
xcg=/sys/fs/cgroup/carve-ded.carve-exec
journal_empty() { [ -z "$(ls /run/carve/journal 2>/dev/null)" ]; }
run ded ded
check "start ded (dedicated: CPU 1)" [ $? = 0 ]
cat /tmp/ded.out
dpid=$(pid_of ded)
check "ded: cpuset.cpus.partition ($(val $dcg/cpuset.cpus.partition))" [ "$(val $dcg/cpuset.cpus.partition)" = isolated ]
check "ded: workqueue mask moved ($(cat /sys/devices/virtual/workqueue/cpumask), was $wq0)" [ "$(cat /sys/devices/virtual/workqueue/cpumask)" != "$wq0" ]
check "ded: the pod's journal records the exec sibling (kill, then remove)" \
  grep -q "\"$xcg/cgroup.kill\"" /run/carve/journal/pod-ded.jsonl
check "ded: no exec sibling before the first exec" [ ! -e $xcg ]

# --- exec: on the housekeeping CPU 0, in the exec sibling, with the container's limits --------
carve-oci exec ded sh -c 'grep Cpus_allowed_list /proc/self/status; cat /proc/self/cgroup' >/tmp/ded.exec 2>&1
cat /tmp/ded.exec
check "ded: exec runs on the housekeeping CPU 0" grep -q "^Cpus_allowed_list:[[:space:]]*0$" /tmp/ded.exec
check "ded: exec's cgroup is the sibling, seen from the container's cgroup ns" grep -qx "0::/../carve-ded.carve-exec" /tmp/ded.exec
check "ded: sibling cpuset.cpus ($(val $xcg/cpuset.cpus))" [ "$(val $xcg/cpuset.cpus)" = 0 ]
check "ded: container cpuset.cpus ($(val $dcg/cpuset.cpus))" [ "$(val $dcg/cpuset.cpus)" = 1 ]
for f in memory.max memory.swap.max pids.max cpu.max cpuset.mems hugetlb.2MB.max; do
  check "ded: sibling $f = container's ($(val $xcg/$f) = $(val $dcg/$f))" [ "$(val $xcg/$f)" = "$(val $dcg/$f)" ]
done
lim="$(val $xcg/memory.max)/$(val $xcg/pids.max)/$(val $xcg/cpu.max)"
check "ded: the pod's limits in the sibling ($lim)" [ "$lim" = "67108864/32/100000 100000" ]
carve-oci exec -d --pid-file /tmp/ded.xpid ded sleep 1000
check "ded: exec -d" [ $? = 0 ]
xpid=$(cat /tmp/ded.xpid)
check "ded: the detached process $xpid sits in the sibling (host view)" grep -qx "0::/carve-ded.carve-exec" /proc/$xpid/cgroup
check "ded: ... on CPU 0" grep -q "^Cpus_allowed_list:[[:space:]]*0$" /proc/$xpid/status
check "ded: init stays on CPU 1" grep -q "^Cpus_allowed_list:[[:space:]]*1$" /proc/$dpid/status
check "ded: ... in the container's cgroup" grep -qx "0::/carve-ded" /proc/$dpid/cgroup
carve-oci ps --format json ded >/tmp/dedps 2>&1
check "ded: ps lists the exec'd process $xpid ($(val /tmp/dedps))" sh -c "[ -n '$xpid' ] && grep -qw '$xpid' /tmp/dedps"
carve-oci pause ded
check "ded: pause" [ $? = 0 ]
check "ded: pause froze the sibling too" grep -qx "frozen 1" $xcg/cgroup.events
carve-oci resume ded
check "ded: resume thawed the sibling" grep -qx "frozen 0" $xcg/cgroup.events
# The memory limit holds in the sibling: a 96 MiB buffer in a 64 MiB cgroup is OOM-killed there,
# the container's own cgroup untouched (counted apart).
carve-oci exec ded sh -c 'dd if=/dev/zero of=/dev/null bs=96M count=1 2>/dev/null; echo HOG rc=$?' >/tmp/ded.hog 2>&1
cat /tmp/ded.hog
check "ded: an exec'd memory hog is OOM-killed" grep -q "^HOG rc=137" /tmp/ded.hog
check "ded: ... in the sibling (oom_kill $(keyed $xcg/memory.events oom_kill))" [ "$(keyed $xcg/memory.events oom_kill)" -ge 1 ]
check "ded: ... not in the container (oom_kill $(keyed $dcg/memory.events oom_kill))" [ "$(keyed $dcg/memory.events oom_kill)" = 0 ]
check "ded: init survived" alive "$dpid"
# The device program holds in the sibling: mknod of a block device is refused even with
# CAP_MKNOD.
carve-oci exec --cap CAP_MKNOD ded sh -c 'mknod /tmp/ram b 1 0; echo MKNOD rc=$?' >/tmp/ded.mknod 2>&1
cat /tmp/ded.mknod
check "ded: the container's device program applies in the sibling (mknod refused)" grep -q "^MKNOD rc=1" /tmp/ded.mknod
check "ded: ... with EPERM" grep -q "Operation not permitted" /tmp/ded.mknod
carve-oci delete --force ded
check "ded: delete --force" [ $? = 0 ]
check "ded: the exec'd process is gone" gone "$xpid"
check "ded: workqueue mask restored ($(cat /sys/devices/virtual/workqueue/cpumask))" [ "$(cat /sys/devices/virtual/workqueue/cpumask)" = "$wq0" ]
check "ded: no cgroup left" [ ! -e $dcg ]
check "ded: no sibling left" [ ! -e $xcg ]
check "ded: no journal left ($(ls /run/carve/journal 2>/dev/null))" journal_empty

# --- init killed with an exec'd process in the sibling; then delete (what containerd does) ----
run ded2 ded
check "ded2: start" [ $? = 0 ]
dpid=$(pid_of ded2)
carve-oci exec -d --pid-file /tmp/ded2.xpid ded2 sleep 1000
xpid=$(cat /tmp/ded2.xpid)
check "ded2: the exec'd process is in the sibling" grep -qx "0::/carve-ded.carve-exec" /proc/$xpid/cgroup
kill -9 "$dpid"
stopped ded2
check "ded2: stopped after its init was killed ($(status ded2))" [ "$(status ded2)" = stopped ]
carve-oci delete ded2
check "ded2: delete" [ $? = 0 ]
check "ded2: the exec'd process is gone" gone "$xpid"
check "ded2: no cgroup left" [ ! -e $dcg ]
check "ded2: no sibling left" [ ! -e $xcg ]
check "ded2: no journal left ($(ls /run/carve/journal 2>/dev/null))" journal_empty

# --- carve.dev/exec-cpus: dedicated: exec on the pod's own CPU, no sibling --------------------
run dedx dedx
check "dedx: start" [ $? = 0 ]
carve-oci exec dedx grep Cpus_allowed_list /proc/self/status >/tmp/dedx.exec 2>&1
check "dedx: exec on the pod's CPU 1 ($(val /tmp/dedx.exec))" grep -q "^Cpus_allowed_list:[[:space:]]*1$" /tmp/dedx.exec
check "dedx: no sibling" [ ! -e /sys/fs/cgroup/carve-dedx.carve-exec ]
check "dedx: no sibling in the pod's journal" sh -c '! grep -q carve-exec /run/carve/journal/pod-dedx.jsonl'
carve-oci delete --force dedx
check "dedx: no cgroup left" [ ! -e /sys/fs/cgroup/carve-dedx ]
check "dedx: no journal left" journal_empty
