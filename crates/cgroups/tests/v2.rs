//! The pure cgroup v2 driver against a real kernel with only cgroup2 mounted.
//!
//! This host is hybrid, so these tests are `#[ignore]`d here: `tests/v2_guest.rs` builds this file
//! as a static binary, boots a QEMU TCG guest (`cgroup_no_v1=all`, cgroup2 alone at
//! /sys/fs/cgroup) and runs them there with `--ignored` (scripts/v2-guest-test.sh).

mod common;

use carve_cgroups::{Layout, Manager, Mode};
use carve_testkit::unique_name;
use common::{read, res, Cg, Proc};
use std::path::Path;

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
    let e = common::refused(&c.0, r#"{"cpu": {"quota": 500, "period": 100000}}"#);
    assert_eq!(
        e,
        format!("writing \"500 100000\" to /sys/fs/cgroup/{name}/cpu.max: Invalid argument")
    );
    let e = common::refused(&c.0, r#"{"cpu": {"realtimeRuntime": 1000}}"#);
    assert!(e.contains("realtimeRuntime"), "{e}");
    let e = common::refused(&c.0, r#"{"memory": {"limit": 100000000, "swap": 1000}}"#);
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
    common::assert_freeze_stops_and_thaw_resumes(&c.0, |_| {
        assert!(read(&dir(&c), "cgroup.events").contains("frozen 1"));
    });
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_memory_limit_oom_kills_a_hog() {
    let (c, _) = cg("v2-oom");
    common::oom_kill_a_hog(&c.0);
    // memory+swap of 32 MiB is no swap at all on cgroup2.
    assert_eq!(read(&dir(&c), "memory.swap.max"), "0");
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
    common::pids_limit_stops_forks(&c.0, &dir(&c));
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
    let (_task, st) = common::stats_after_work(&c.0, 100);
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
    common::assert_check_before_update_refuses(&c.0, &dir(&c), "memory.max", "134217728");
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_kill_all_with_and_without_cgroup_kill() {
    let (c, _) = cg("v2-kill");
    common::assert_kill_all_reaches_every_task(&c.0);
}

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_device_program_allows_and_denies() {
    let (c, _) = cg("v2-dev");
    c.0.apply(&res(common::DEVICE_RULES)).unwrap();
    // Applying the same rules again replaces the program: one stays attached, not two.
    c.0.apply(&res(common::DEVICE_RULES)).unwrap();
    assert_eq!(
        carve_cgroups::v2::devices::attached_count(&dir(&c)).unwrap(),
        1
    );
    common::assert_device_rules_enforced(&c.0);
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

#[test]
#[ignore = "pure cgroup v2: runs in the QEMU guest (tests/v2_guest.rs)"]
fn v2_exec_sibling_copies_limits_and_device_program_and_goes_with_the_cgroup() {
    let (c, name) = cg("v2-sib");
    let d = dir(&c);
    let mut limits = serde_json::from_str::<serde_json::Value>(common::DEVICE_RULES).unwrap();
    limits["memory"] = serde_json::json!({"limit": 67108864});
    limits["pids"] = serde_json::json!({"limit": 16});
    limits["cpu"] = serde_json::json!({"quota": 50000, "period": 100000, "cpus": "1", "mems": "0"});
    c.0.apply(&res(&limits.to_string())).unwrap();
    let sib =
        c.0.make_exec_sibling("0")
            .unwrap()
            .expect("a sibling on v2");
    assert_eq!(
        sib,
        Path::new("/sys/fs/cgroup").join(format!("{name}.carve-exec"))
    );
    assert_eq!(read(&sib, "cpuset.cpus"), "0");
    assert_eq!(read(&d, "cpuset.cpus"), "1");
    for f in [
        "memory.max",
        "pids.max",
        "cpu.max",
        "cpuset.mems",
        "memory.swap.max",
    ] {
        assert_eq!(read(&sib, f), read(&d, f), "{f}");
    }
    assert_eq!(read(&sib, "memory.max"), "67108864");
    // A refresh carries an update over and attaches the device program once, not twice.
    c.0.apply(&res(r#"{"pids": {"limit": 8}}"#)).unwrap();
    c.0.make_exec_sibling("0").unwrap();
    assert_eq!(read(&sib, "pids.max"), "8");
    assert_eq!(carve_cgroups::v2::devices::attached_count(&sib).unwrap(), 1);
    // The container's device rules hold for a task in the sibling.
    let in_sib = Manager::new(Path::new("/sys/fs/cgroup"), &format!("/{name}.carve-exec")).unwrap();
    common::assert_device_rules_enforced(&in_sib);
    // Frozen, listed and killed with the container's cgroup.
    let p = Proc::sleeper();
    in_sib.add_task(p.pid()).unwrap();
    assert!(c.0.pids().unwrap().contains(&p.pid()));
    c.0.freeze().unwrap();
    assert!(read(&sib, "cgroup.events").contains("frozen 1"));
    c.0.thaw().unwrap();
    assert!(read(&sib, "cgroup.events").contains("frozen 0"));
    c.0.kill_all(libc::SIGKILL).unwrap();
    let (status, _, _) = p.finish();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // Removed with it, a task still in it killed first.
    let p = Proc::sleeper();
    in_sib.add_task(p.pid()).unwrap();
    c.0.remove().unwrap();
    assert!(!sib.exists() && !d.exists());
    let (status, _, _) = p.finish();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
}
