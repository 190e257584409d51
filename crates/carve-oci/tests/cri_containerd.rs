//! The kubelet's path to carve-oci: CRI gRPC → containerd 1.6's built-in CRI plugin → runc v2
//! shim → runtime. Each test starts its own containerd ([`carve_cri::node::Node`]: root, state,
//! sockets, config, CNI config in a temp dir; the daemon inside a network namespace of its own,
//! so the pod network's bridge never touches the host's) with two runtime handlers, `runc` and
//! `carve` (this package's carve-oci), and drives one pod scenario through the CRI against both
//! handlers: two containers sharing the pod's network, IPC and UTS namespaces, memory and CPU
//! limits from the request enforced, logs in the kubelet's format at the CRI log path, log
//! reopening, stats, resource updates, stop and removal — then checks nothing is left.

mod clients_support;
mod cri_support;
use carve_cri::api as cri;
use clients_support::require_root;
use cri_support::*;
use std::time::Duration;

/// Two containers in one pod, from inside: same network, IPC and UTS namespaces (and the pod's
/// address on eth0), different mount and PID namespaces.
fn check_shared_namespaces(w: &mut World, a: &str, b: &str) {
    let probe = "for n in net ipc uts mnt; do readlink /proc/self/ns/$n; done; hostname; ip -4 -o addr show eth0";
    let (oa, ob) = (w.sh(a, probe), w.sh(b, probe));
    let (la, lb): (Vec<&str>, Vec<&str>) = (oa.lines().collect(), ob.lines().collect());
    assert_eq!(la.len(), 6, "probe in {a}: {oa}");
    assert_eq!(la[..3], lb[..3], "net/ipc/uts differ:\n{oa}\n{ob}");
    assert_ne!(la[3], lb[3], "the two containers share a mount namespace");
    assert_eq!(la[4], lb[4], "hostname differs");
    assert!(
        la[5].contains("10.209.0."),
        "eth0 has no pod address: {}",
        la[5]
    );
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        la[0],
        host_net.to_string_lossy(),
        "the pod is in the host's network namespace"
    );
    // IPC really shared: a SysV message queue made in one is seen by the other (busybox has ipcs;
    // a file in /dev/shm, the pod's shm mount, shows the same).
    w.sh(a, "echo carve > /dev/shm/carve-ipc-probe");
    assert_eq!(w.sh(b, "cat /dev/shm/carve-ipc-probe").trim(), "carve");
}

/// Memory and CPU limits of the request, read inside and outside, and the memory limit enforced
/// (an exec that allocates more is OOM-killed); then raised with UpdateContainerResources.
fn check_limits(w: &mut World, a: &str) {
    let pid = w.pid(a);
    assert_eq!(
        cgroup_value(pid, "memory", "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(cgroup_value(pid, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_value(pid, "cpu", "cpu.cfs_period_us"), "100000");
    let inside = w.sh(a, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
    assert_eq!(inside.trim(), "67108864", "limit seen inside");
    // busybox tail -c N holds N bytes: 96 MiB in a 64 MiB cgroup.
    let r = w.exec(
        a,
        &[
            "sh",
            "-c",
            "head -c 100663296 /dev/zero | tail -c 100663296 >/dev/null",
        ],
    );
    assert_eq!(
        r.exit_code, 137,
        "allocating 96 MiB under a 64 MiB limit was not OOM-killed: {r:?}"
    );
    w.client
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: a.into(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 128 << 20,
                cpu_quota: 50000,
                cpu_period: 100000,
                cpu_shares: 2,
                ..Default::default()
            }),
            ..Default::default()
        })
        .expect("UpdateContainerResources");
    assert_eq!(
        cgroup_value(pid, "memory", "memory.limit_in_bytes"),
        "134217728"
    );
    let st = w
        .client
        .container_stats(cri::ContainerStatsRequest {
            container_id: a.into(),
        })
        .expect("ContainerStats")
        .stats
        .expect("stats");
    let ws = st.memory.and_then(|m| m.working_set_bytes).map(|v| v.value);
    assert!(ws.is_some_and(|v| v > 0), "no memory working set: {ws:?}");
}

/// The CRI log file has the kubelet's format; after a rename and ReopenContainerLog, new output
/// goes to a new file at the CRI log path.
fn check_logs(w: &mut World, a: &str, log: &std::path::Path) {
    let text = wait_for_line(log, "hello-log");
    check_cri_log_format(&text);
    std::fs::rename(log, log.with_extension("log.1")).unwrap();
    w.client
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: a.into(),
        })
        .expect("ReopenContainerLog");
    w.sh(a, "touch /tmp/again");
    let text = wait_for_line(log, "again-log");
    check_cri_log_format(&text);
    assert!(
        !text.contains("hello-log"),
        "the reopened log holds old lines: {text}"
    );
}

fn scenario(w: &mut World, handler: &str) {
    let v = w.client.version(cri::VersionRequest::default()).unwrap();
    assert_eq!(v.runtime_name, "containerd");
    let pod = w.pod_spec(&format!("p-{handler}"), handler, &[]);
    let pod_id = w.run_pod(&pod);
    let a_cmd = "echo hello-log; while :; do if [ -f /tmp/again ]; then echo again-log; rm /tmp/again; fi; sleep 0.1; done";
    let mut spec_a = w.container_spec("a", &["sh", "-c", a_cmd]);
    spec_a.memory_limit = 64 << 20;
    spec_a.cpu_quota = 50000;
    spec_a.cpu_period = 100000;
    let a = w.create_start(&pod_id, &pod, &spec_a);
    let b = w.create_start(&pod_id, &pod, &w.container_spec("b", &["sleep", "1000"]));
    // The handler really ran the runtime it names: its state root holds the containers.
    let state = w.node.runtime_root(handler).join("k8s.io");
    for id in [&pod_id, &a, &b] {
        assert!(
            state.join(id).exists(),
            "{handler}: no {} under {}",
            id,
            state.display()
        );
    }
    let listed = w
        .client
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod_id.clone(),
                ..Default::default()
            }),
        })
        .unwrap()
        .containers;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .all(|c| c.state == cri::ContainerState::ContainerRunning as i32));
    check_shared_namespaces(w, &a, &b);
    let r = w.exec(&a, &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(
        (r.exit_code, &r.stdout[..], &r.stderr[..]),
        (3, &b"out\n"[..], &b"err\n"[..])
    );
    check_limits(w, &a);
    check_logs(
        w,
        &a,
        &std::path::Path::new(&pod.log_directory).join("a.log"),
    );
    w.stop_remove_container(&b, 2);
    w.stop_remove_container(&a, 2);
    w.remove_pod(&pod_id, &pod);
    assert!(
        !state.join(&pod_id).exists(),
        "{handler}: the sandbox's runtime state is left"
    );
}

#[test]
fn cri_pod_lifecycle_with_carve_and_runc_handlers() {
    if !require_root() {
        return;
    }
    let mut w = World::new();
    for handler in ["runc", "carve"] {
        scenario(&mut w, handler);
    }
    w.assert_nothing_left();
}

/// A container that exits by itself, then StopContainer/RemoveContainer and StopPodSandbox: the
/// shim's `kill --all` of a stopped container must not fail (runc's behaviour), or the CRI's
/// stop runs into its deadline.
#[test]
fn cri_exited_container_stops_and_removes_promptly() {
    if !require_root() {
        return;
    }
    let mut w = World::new();
    for handler in ["runc", "carve"] {
        let pod = w.pod_spec(&format!("x-{handler}"), handler, &[]);
        let pod_id = w.run_pod(&pod);
        let c = w.create_start(
            &pod_id,
            &pod,
            &w.container_spec("x", &["sh", "-c", "exit 7"]),
        );
        let st = w.wait_state(&c, cri::ContainerState::ContainerExited);
        assert_eq!(st.exit_code, 7, "{handler}");
        let t = std::time::Instant::now();
        w.stop_remove_container(&c, 2);
        w.remove_pod(&pod_id, &pod);
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{handler}: stopping an exited container and its pod took {:?}",
            t.elapsed()
        );
    }
    w.assert_nothing_left();
}
