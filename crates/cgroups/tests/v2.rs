//! The pure cgroup v2 driver against a real kernel with only cgroup2 mounted.
//!
//! This host is hybrid, so these tests are `#[ignore]`d here: `tests/v2_guest.rs` builds this file
//! as a static binary, boots a QEMU TCG guest (`cgroup_no_v1=all`, cgroup2 alone at
//! /sys/fs/cgroup) and runs them there with `--ignored` (scripts/v2-guest-test.sh).

mod common;

use carve_cgroups::{FreezerState, Layout, Manager, Mode};
use carve_testkit::unique_name;
use common::{cpu_ticks, read, settled_cpu_ticks, Cg, Proc};
use oci_spec::runtime::LinuxResources;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

/// A cgroup under the v2 root; also checks that the host really is pure v2.
fn cg(tag: &str) -> (Cg, String) {
    let l = Layout::detect(Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(l.mode, Mode::V2, "not a pure-v2 host: {l:?}");
    let name = unique_name(tag);
    let c = Cg::new(&format!("/{name}"));
    assert_eq!(c.0.mode(), Mode::V2);
    (c, name)
}

fn dir(c: &Cg) -> std::path::PathBuf {
    c.0.path_on("unified").unwrap()
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_layout_and_placement() {
    let l = Layout::detect(Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(l.mode, Mode::V2);
    assert!(l.v1.is_empty());
    let u = l.unified.unwrap();
    for c in ["cpuset", "cpu", "io", "memory", "hugetlb", "pids"] {
        assert!(u.has(c), "{c} in {:?}", u.controllers);
    }
    let (c, name) = cg("v2-procs");
    let p = Proc::sleeper();
    c.0.add_task(p.pid()).unwrap();
    assert_eq!(read(&dir(&c), "cgroup.procs"), p.pid().to_string());
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid())).unwrap();
    assert_eq!(own.trim(), format!("0::/{name}"));
    assert_eq!(c.0.pids().unwrap(), vec![p.pid()]);
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_each_resource_is_written_and_read_back() {
    let (c, _) = cg("v2-res");
    let d = dir(&c);
    c.0.apply(&res(r#"{
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
                "cpus": "1", "mems": "0"},
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
        "pids": {"limit": 32},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "unified": {"memory.high": "52428800"}
    }"#))
        .unwrap();
    assert_eq!(
        read(&d, "cpu.weight"),
        carve_cgroups::v2::shares_to_weight(512).to_string()
    );
    assert_eq!(read(&d, "cpu.max"), "50000 100000");
    assert_eq!(read(&d, "cpu.max.burst"), "1000");
    assert_eq!(read(&d, "cpuset.cpus"), "1");
    assert_eq!(read(&d, "cpuset.mems"), "0");
    assert_eq!(read(&d, "memory.max"), "67108864");
    assert_eq!(read(&d, "memory.low"), "33554432");
    assert_eq!(read(&d, "memory.swap.max"), "67108864");
    assert_eq!(read(&d, "memory.high"), "52428800");
    assert_eq!(read(&d, "pids.max"), "32");
    assert_eq!(read(&d, "hugetlb.2MB.max"), "4194304");

    c.0.apply(&res(
        r#"{"cpu": {"quota": -1}, "memory": {"limit": -1}, "pids": {"limit": 0}}"#,
    ))
    .unwrap();
    assert_eq!(read(&d, "cpu.max"), "max 100000");
    assert_eq!(read(&d, "memory.max"), "max");
    assert_eq!(read(&d, "pids.max"), "max");

    c.0.apply(&res(r#"{"cpu": {"idle": 1}}"#)).unwrap();
    assert_eq!(read(&d, "cpu.idle"), "1");

    // Block I/O on the guest's RAM disk (brd, 1:0), when it is there.
    if Path::new("/sys/block/ram0").exists() {
        c.0.apply(&res(r#"{"blockIO": {"weight": 200,
            "throttleReadBpsDevice": [{"major": 1, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 1, "minor": 0, "rate": 300}]}}"#))
            .unwrap();
        let w = if d.join("io.bfq.weight").exists() {
            read(&d, "io.bfq.weight")
        } else {
            read(&d, "io.weight")
        };
        assert!(
            w.starts_with(&format!(
                "default {}",
                carve_cgroups::v2::blkio_to_io_weight(200)
            )) || w.starts_with("default 200"),
            "{w}"
        );
        assert_eq!(
            read(&d, "io.max"),
            "1:0 rbps=1048576 wbps=max riops=max wiops=300"
        );
    } else {
        panic!("no /sys/block/ram0 in the guest: io is untested");
    }
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_refusals_and_unsupported_are_named() {
    let (c, name) = cg("v2-err");
    let e =
        c.0.apply(&res(r#"{"cpu": {"quota": 500, "period": 100000}}"#))
            .unwrap_err()
            .to_string();
    assert_eq!(
        e,
        format!("writing \"500 100000\" to /sys/fs/cgroup/{name}/cpu.max: Invalid argument")
    );
    let e =
        c.0.apply(&res(r#"{"cpu": {"realtimeRuntime": 1000}}"#))
            .unwrap_err()
            .to_string();
    assert!(e.contains("realtimeRuntime"), "{e}");
    let e =
        c.0.apply(&res(r#"{"memory": {"limit": 100000000, "swap": 1000}}"#))
            .unwrap_err()
            .to_string();
    assert!(e.contains("linux.resources.memory.swap"), "{e}");
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_nested_cgroup_gets_controllers_from_every_ancestor() {
    let l = Layout::detect(Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(l.mode, Mode::V2);
    let name = unique_name("v2-nest");
    let c = Cg::new(&format!("/{name}/a/b"));
    let d = dir(&c);
    for f in [
        "memory.max",
        "pids.max",
        "cpu.max",
        "cpuset.cpus",
        "io.max",
        "hugetlb.2MB.max",
    ] {
        assert!(d.join(f).exists(), "{f} missing in {}", d.display());
    }
    let sc = read(d.parent().unwrap(), "cgroup.subtree_control");
    assert!(sc.contains("memory") && sc.contains("pids"), "{sc}");
    let p = Proc::sleeper();
    c.0.add_task(p.pid()).unwrap();
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_freeze_really_stops_and_thaw_resumes() {
    let (c, _) = cg("v2-freeze");
    let mut p = Proc::gated("while :; do :; done");
    c.0.add_task(p.pid()).unwrap();
    p.open_gate();
    std::thread::sleep(Duration::from_millis(200));
    c.0.freeze().unwrap();
    assert_eq!(c.0.freezer_state().unwrap(), FreezerState::Frozen);
    assert!(read(&dir(&c), "cgroup.events").contains("frozen 1"));
    let t0 = settled_cpu_ticks(p.pid());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(p.pid()), t0, "a frozen task used CPU");
    c.0.thaw().unwrap();
    assert_eq!(c.0.freezer_state().unwrap(), FreezerState::Thawed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cpu_ticks(p.pid()) == t0 {
        assert!(Instant::now() < deadline, "a thawed task did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_memory_limit_oom_kills_a_hog() {
    let (c, _) = cg("v2-oom");
    c.0.apply(&res(r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#))
        .unwrap();
    assert_eq!(read(&dir(&c), "memory.swap.max"), "0");
    let mut p = Proc::gated("exec dd if=/dev/zero of=/dev/null bs=128M count=4");
    c.0.add_task(p.pid()).unwrap();
    p.open_gate();
    let (status, _, err) = p.finish();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?} {err}");
    let events = read(&dir(&c), "memory.events");
    assert!(events.contains("oom_kill 1"), "{events}");
    let st = c.0.stats().unwrap();
    assert!(st.memory.usage.failcnt > 0, "{:?}", st.memory);
    assert_eq!(st.memory.usage.limit, 33554432);
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_pids_limit_stops_forks() {
    let (c, _) = cg("v2-pids");
    c.0.apply(&res(r#"{"pids": {"limit": 3}}"#)).unwrap();
    let mut p = Proc::gated("for i in 1 2 3 4 5 6; do sleep 30 & done; echo started");
    c.0.add_task(p.pid()).unwrap();
    p.open_gate();
    let d = dir(&c);
    let deadline = Instant::now() + Duration::from_secs(20);
    while read(&d, "pids.events") == "max 0" {
        assert!(Instant::now() < deadline, "no fork was refused");
        std::thread::sleep(Duration::from_millis(20));
    }
    let current: u64 = read(&d, "pids.current").parse().unwrap();
    assert!(current <= 3, "{current}");
    assert_eq!(c.0.stats().unwrap().pids.limit, 3);
    c.0.kill_all(libc::SIGKILL).unwrap();
    let _ = p.finish();
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_stats_are_plausible() {
    let (c, _) = cg("v2-stats");
    c.0.apply(&res(
        r#"{"memory": {"limit": 134217728}, "pids": {"limit": 50},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]}"#,
    ))
    .unwrap();
    let mut p = Proc::gated(
        "dd if=/dev/zero of=/dev/null bs=4M count=100 2>/dev/null; echo done; exec sleep 1000",
    );
    c.0.add_task(p.pid()).unwrap();
    p.open_gate();
    let mut out = p.child.stdout.take().unwrap();
    let mut buf = [0u8; 5];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    let st = c.0.stats().unwrap();
    assert!(st.cpu.usage.total > 0, "{:?}", st.cpu);
    assert!(st.cpu.usage.user + st.cpu.usage.kernel > 0);
    assert!(st.memory.usage.usage > 0);
    assert!(st.memory.usage.max >= st.memory.usage.usage);
    assert_eq!(st.memory.usage.limit, 134217728);
    assert!(st.memory.raw.contains_key("anon"));
    assert_eq!(st.pids.current, 1);
    assert_eq!(st.pids.limit, 50);
    assert!(st.hugetlb.contains_key("2MB"), "{:?}", st.hugetlb);
    assert!(st.cpuset.cpus.contains(&0), "{:?}", st.cpuset);
    let e =
        c.0.apply(&res(
            r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("checkBeforeUpdate"), "{e}");
    assert_eq!(read(&dir(&c), "memory.max"), "134217728");
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_kill_all_with_and_without_cgroup_kill() {
    let (c, _) = cg("v2-kill");
    let mut buf = [0u8; 3];
    let mut p = Proc::gated("sleep 1000 & sleep 1000 & echo up; wait");
    c.0.add_task(p.pid()).unwrap();
    p.open_gate();
    let mut out = p.child.stdout.take().unwrap();
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(c.0.pids().unwrap().len(), 3);
    c.0.kill_all(libc::SIGTERM).unwrap();
    let (status, _, _) = p.finish();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
    let mut p = Proc::gated("sleep 1000 & echo up; wait");
    c.0.add_task(p.pid()).unwrap();
    p.open_gate();
    let mut out = p.child.stdout.take().unwrap();
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    c.0.kill_all(libc::SIGKILL).unwrap();
    let (status, _, _) = p.finish();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.0.pids().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", c.0.pids());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_device_program_allows_and_denies() {
    let (c, _) = cg("v2-dev");
    let rules = r#"{"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]}"#;
    c.0.apply(&res(rules)).unwrap();
    c.0.apply(&res(rules)).unwrap();
    assert_eq!(
        carve_cgroups::v2::devices::attached_count(&dir(&c)).unwrap(),
        1
    );
    let mut p = Proc::gated(
        "echo x > /dev/null && echo null-ok; \
         head -c1 /dev/zero >/dev/null && echo zero-read-ok; \
         (echo x > /dev/zero) 2>/dev/null || echo zero-write-denied; \
         (head -c1 /dev/urandom >/dev/null) 2>/dev/null || echo urandom-denied",
    );
    c.0.add_task(p.pid()).unwrap();
    p.open_gate();
    let (_, out, _) = p.finish();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "null-ok",
            "zero-read-ok",
            "zero-write-denied",
            "urandom-denied"
        ]
    );
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_remove_leaves_nothing() {
    let l = Layout::detect(Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(l.mode, Mode::V2);
    let name = unique_name("v2-rm");
    let mut m = Manager::new(Path::new("/sys/fs/cgroup"), &format!("/{name}/a/b")).unwrap();
    m.create().unwrap();
    std::fs::create_dir(m.path_on("unified").unwrap().join("inner")).unwrap();
    let p = Proc::sleeper();
    m.add_task(p.pid()).unwrap();
    let m: Manager = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    m.kill_all(libc::SIGKILL).unwrap();
    drop(p);
    m.remove().unwrap();
    assert!(!Path::new("/sys/fs/cgroup").join(&name).exists());
    m.remove().unwrap();
}
