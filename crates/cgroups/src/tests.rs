//! Path and format logic against a temp dir laid out like cgroupfs (the kernel is tested in
//! tests/).

use super::*;
use std::fs as sfs;

/// A fake hybrid root: v1 cpu, cpuset, memory, pids, devices, freezer, name=systemd; cgroup2 at
/// unified with hugetlb. Knob files exist in every directory made below (created on the fly).
fn fake_hybrid() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for c in [
        "cpu", "cpuset", "memory", "pids", "devices", "freezer", "systemd",
    ] {
        let p = d.path().join(c);
        sfs::create_dir(&p).unwrap();
        sfs::write(p.join("cgroup.procs"), "").unwrap();
    }
    let u = d.path().join("unified");
    sfs::create_dir(&u).unwrap();
    sfs::write(u.join("cgroup.controllers"), "hugetlb\n").unwrap();
    d
}

/// Creates the knob files a kernel would show in each new directory.
fn touch(dir: &Path, files: &[&str]) {
    for f in files {
        sfs::write(dir.join(f), "").unwrap();
    }
}

fn read(p: PathBuf) -> String {
    sfs::read_to_string(p).unwrap()
}

#[test]
fn hybrid_routes_each_resource_to_its_hierarchy() {
    let root = fake_hybrid();
    let mut m = Manager::new(root.path(), "/carve-unit/c1").unwrap();
    assert_eq!(m.mode(), Mode::Hybrid);
    m.create().unwrap();
    let cpuset = m.path_on("cpuset").unwrap();
    assert_eq!(cpuset, root.path().join("cpuset/carve-unit/c1"));
    assert_eq!(
        m.path_on("hugetlb").unwrap(),
        root.path().join("unified/carve-unit/c1")
    );
    // (The kernel makes cgroup.subtree_control in new directories; a fake has only the root's.)
    sfs::write(root.path().join("unified/cgroup.subtree_control"), "").unwrap();
    m.create().unwrap();
    assert_eq!(
        read(root.path().join("unified/cgroup.subtree_control")),
        "+hugetlb"
    );
    assert!(m.path_on("name=systemd").is_some());
    assert!(m.path_on("net_cls").is_none());

    touch(&cpuset, &["cpuset.cpus", "cpuset.mems"]);
    touch(
        &m.path_on("cpu").unwrap(),
        &["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"],
    );
    touch(
        &m.path_on("memory").unwrap(),
        &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.oom_control",
        ],
    );
    touch(&m.path_on("pids").unwrap(), &["pids.max"]);
    touch(
        &m.path_on("devices").unwrap(),
        &["devices.allow", "devices.deny"],
    );
    touch(
        &m.path_on("unified").unwrap(),
        &["hugetlb.2MB.max", "memory.high"],
    );
    let res: LinuxResources = serde_json::from_str(
        r#"{
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "1", "mems": "0"},
        "memory": {"limit": 1048576, "swap": 2097152, "disableOOMKiller": true},
        "pids": {"limit": 0},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3}],
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "network": {"classID": 7},
        "unified": {"memory.high": "1000000"}
    }"#,
    )
    .unwrap();
    m.apply(&res).unwrap();
    let cpu = m.path_on("cpu").unwrap();
    assert_eq!(read(cpu.join("cpu.shares")), "512");
    assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(cpuset.join("cpuset.cpus")), "1");
    let mem = m.path_on("memory").unwrap();
    assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "2097152");
    assert_eq!(read(mem.join("memory.oom_control")), "1");
    assert_eq!(read(m.path_on("pids").unwrap().join("pids.max")), "max");
    // The fake file keeps only the last write: the allow rule, in v1 line form.
    assert_eq!(
        read(m.path_on("devices").unwrap().join("devices.allow")),
        "c 1:3 rwm"
    );
    let u = m.path_on("unified").unwrap();
    assert_eq!(read(u.join("hugetlb.2MB.max")), "4194304");
    assert_eq!(read(u.join("memory.high")), "1000000");

    // Serialized and read back (as a container's state would), remove() still knows the parents.
    let m2: Manager = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(m2, m);
    for d in m2.dirs() {
        for e in sfs::read_dir(&d).unwrap() {
            sfs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    m2.remove().unwrap();
    m2.remove().unwrap();
    assert!(!m2.exists());
    for c in ["cpu", "cpuset", "memory", "unified"] {
        assert!(!root.path().join(c).join("carve-unit").exists(), "{c}");
    }
}

#[test]
fn unknown_controller_and_bad_values_are_errors_naming_them() {
    let root = fake_hybrid();
    let m = Manager::new(root.path(), "carve-unit-2").unwrap();
    let res: LinuxResources = serde_json::from_str(r#"{"blockIO": {"weight": 500}}"#).unwrap();
    assert_eq!(
        m.apply(&res).unwrap_err().to_string(),
        "the blkio controller is not mounted on any hierarchy"
    );
    let res: LinuxResources =
        serde_json::from_str(r#"{"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}"#).unwrap();
    let e = m.apply(&res).unwrap_err().to_string();
    assert!(e.contains("pageSize") && e.contains("2XB"), "{e}");
    let res: LinuxResources = serde_json::from_str(r#"{"unified": {"../cpu.max": "1"}}"#).unwrap();
    assert!(m
        .apply(&res)
        .unwrap_err()
        .to_string()
        .contains("../cpu.max"));
    assert!(matches!(
        Manager::new(root.path(), "/"),
        Err(Error::EmptyPath)
    ));
}

#[test]
fn pure_v2_fake_enables_controllers_down_the_path() {
    let d = tempfile::tempdir().unwrap();
    sfs::write(d.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    sfs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
    let mut m = Manager::new(d.path(), "/a/b").unwrap();
    assert_eq!(m.mode(), Mode::V2);
    m.create().unwrap();
    assert_eq!(
        read(d.path().join("cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    let dir = m.path_on("memory").unwrap();
    touch(
        &dir,
        &["cpu.weight", "cpu.max", "memory.max", "memory.swap.max"],
    );
    let res: LinuxResources = serde_json::from_str(
        r#"{"cpu": {"shares": 1024, "quota": -1, "period": 50000},
            "memory": {"limit": 1000, "swap": 3000}}"#,
    )
    .unwrap();
    m.apply(&res).unwrap();
    assert_eq!(read(dir.join("cpu.weight")), "100");
    assert_eq!(read(dir.join("cpu.max")), "max 50000");
    assert_eq!(read(dir.join("memory.swap.max")), "2000");
    let res: LinuxResources =
        serde_json::from_str(r#"{"cpu": {"realtimeRuntime": 1000}}"#).unwrap();
    assert!(matches!(m.apply(&res), Err(Error::Realtime(_))));
}

#[test]
fn systemd_paths() {
    assert_eq!(
        systemd_path("system.slice:docker:abc").unwrap(),
        "/system.slice/docker-abc.scope"
    );
    assert_eq!(
        systemd_path("a-b.slice:crio:x").unwrap(),
        "/a.slice/a-b.slice/crio-x.scope"
    );
    assert_eq!(systemd_path("-.slice::x").unwrap(), "/x.scope");
    assert_eq!(systemd_path(":p:n").unwrap(), "/system.slice/p-n.scope");
    assert!(systemd_path("/abs/path").is_none());
}

#[test]
fn sizes_and_rules() {
    assert_eq!(kb_to_size(2048), "2MB");
    assert_eq!(kb_to_size(1_048_576), "1GB");
    assert_eq!(kb_to_size(64), "64KB");
    let r: LinuxDeviceCgroup =
        serde_json::from_str(r#"{"allow": true, "type": "b", "major": 8, "access": "r"}"#).unwrap();
    assert_eq!(device_rule_string(&r), "b 8:* r");
}
