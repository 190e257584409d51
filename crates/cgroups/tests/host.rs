//! The v1/hybrid drivers against this host's real kernel (run as root): every resource written
//! and read back from the kernel's files, real processes placed, frozen, OOM-killed and limited.

mod common;

use carve_cgroups::{Layout, Manager, Mode};
use carve_testkit::unique_name;
use common::{not_root, read, res, Cg, Proc};
use std::path::Path;
use std::time::{Duration, Instant};

/// `not_root()`, and else the host lock taken shared for the rest of this test process (one
/// test per process under nextest): these tests make cgroups on every hierarchy, cpuset
/// included, and a new cpuset spanning all cpus keeps the host-tuning test (which holds the
/// lock exclusively) from making a cpu exclusive.
fn not_root_or_locked() -> bool {
    static LOCK: std::sync::OnceLock<carve_testkit::HostLock> = std::sync::OnceLock::new();
    if not_root() {
        return true;
    }
    LOCK.get_or_init(carve_testkit::HostLock::shared);
    false
}

/// [`not_root_or_locked`], then a cgroup `/NAME` of its own (NAME from `tag`).
fn start(tag: &str) -> Option<(Cg, String)> {
    if not_root_or_locked() {
        return None;
    }
    let name = unique_name(tag);
    Some((Cg::new(&format!("/{name}")), name))
}

fn hybrid_host() -> bool {
    Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
}

#[test]
fn layout_matches_the_mounts() {
    if not_root_or_locked() {
        return;
    }
    let l = Layout::detect(Path::new("/sys/fs/cgroup")).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let v1_count = mounts
        .lines()
        .filter(|l| l.split(' ').nth(2) == Some("cgroup"))
        .count();
    assert_eq!(l.v1.len(), v1_count);
    for ctl in [
        "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "devices",
    ] {
        if mounts.contains(&format!("/sys/fs/cgroup/{ctl} ")) {
            assert!(l.v1_with(ctl).is_some(), "{ctl} in {l:?}");
        }
    }
    if hybrid_host() {
        assert_eq!(l.mode, Mode::Hybrid);
        let u = l.unified.as_ref().unwrap();
        assert_eq!(u.mount, Path::new("/sys/fs/cgroup/unified"));
        let want = read(&u.mount, "cgroup.controllers");
        assert_eq!(u.controllers.join(" "), want);
        assert!(l.v1_with("name=systemd").is_some());
    }
}

#[test]
fn task_sits_in_the_cgroup_on_every_hierarchy() {
    let Some((cg, name)) = start("cg-procs") else {
        return;
    };
    let p = Proc::sleeper();
    cg.0.add_task(p.pid()).unwrap();
    let dirs = cg.0.dirs();
    let l = Layout::detect(Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(dirs.len(), l.v1.len() + usize::from(l.unified.is_some()));
    for d in &dirs {
        let procs = read(d, "cgroup.procs");
        assert!(
            procs.lines().any(|l| l == p.pid().to_string()),
            "{} has {procs:?}",
            d.display()
        );
    }
    // And the kernel's own view of the process agrees, one line per hierarchy.
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", p.pid())).unwrap();
    for line in own.lines() {
        assert!(line.ends_with(&format!("/{name}")), "{line}");
    }
    assert_eq!(cg.0.pids().unwrap(), vec![p.pid()]);
}

#[test]
fn relative_path_goes_under_our_own_cgroup() {
    if not_root_or_locked() {
        return;
    }
    let name = unique_name("cg-rel");
    let cg = Cg::new(&name);
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mem_own = own
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}:memory:", l.split(':').next().unwrap())))
        .unwrap();
    let want = Path::new("/sys/fs/cgroup/memory")
        .join(mem_own.trim_start_matches('/'))
        .join(&name);
    assert_eq!(cg.0.path_on("memory").unwrap(), want);
    assert!(want.is_dir());
}

#[test]
fn each_resource_is_written_and_read_back() {
    let Some((cg, _)) = start("cg-res") else {
        return;
    };
    let m = &cg.0;
    let r = res(r#"{
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
                "cpus": "0", "mems": "0"},
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                   "swappiness": 10, "disableOOMKiller": true},
        "pids": {"limit": 32},
        "blockIO": {"weight": 200,
                    "throttleReadBpsDevice": [{"major": 254, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 254, "minor": 0, "rate": 300}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "devices": [{"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}],
        "network": {"classID": 1048577}
    }"#);
    m.apply(&r).unwrap();
    let cpu = m.path_on("cpu").unwrap();
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&cpu, "cpu.cfs_burst_us"), "1000");
    let cpuset = m.path_on("cpuset").unwrap();
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");
    let mem = m.path_on("memory").unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read(&mem, "memory.soft_limit_in_bytes"), "33554432");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "134217728");
    assert_eq!(read(&mem, "memory.swappiness"), "10");
    assert!(read(&mem, "memory.oom_control").starts_with("oom_kill_disable 1"));
    assert_eq!(read(&m.path_on("pids").unwrap(), "pids.max"), "32");
    let blk = m.path_on("blkio").unwrap();
    let w = if blk.join("blkio.weight").exists() {
        read(&blk, "blkio.weight")
    } else {
        read(&blk, "blkio.bfq.weight")
    };
    assert!(w.ends_with("200"), "{w}");
    assert_eq!(
        read(&blk, "blkio.throttle.read_bps_device"),
        "254:0 1048576"
    );
    assert_eq!(read(&blk, "blkio.throttle.write_iops_device"), "254:0 300");
    let huge = m.path_on("hugetlb").unwrap();
    if hybrid_host() {
        assert!(
            huge.starts_with("/sys/fs/cgroup/unified"),
            "{}",
            huge.display()
        );
        assert_eq!(read(&huge, "hugetlb.2MB.max"), "4194304");
    } else {
        assert_eq!(read(&huge, "hugetlb.2MB.limit_in_bytes"), "4194304");
    }
    if hybrid_host() {
        // `unified` keys go to the cgroup2 side of a hybrid host.
        m.apply(&res(r#"{"unified": {"hugetlb.2MB.max": "2097152"}}"#))
            .unwrap();
        assert_eq!(read(&huge, "hugetlb.2MB.max"), "2097152");
    }
    let devs = read(&m.path_on("devices").unwrap(), "devices.list");
    let mut lines: Vec<&str> = devs.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["c 1:3 rwm", "c 1:5 r"]);
    // And the kernel enforces them (the rules of common::DEVICE_RULES) on a task inside.
    common::assert_device_rules_enforced(m);

    // An update: raising memory above the current memory+swap needs the other write order.
    m.apply(&res(
        r#"{"memory": {"limit": 268435456, "swap": 536870912}}"#,
    ))
    .unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "268435456");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "536870912");
    m.apply(&res(r#"{"memory": {"limit": 16777216, "swap": 16777216}}"#))
        .unwrap();
    assert_eq!(read(&mem, "memory.limit_in_bytes"), "16777216");
    assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "16777216");
    m.apply(&res(r#"{"pids": {"limit": -1}}"#)).unwrap();
    assert_eq!(read(&m.path_on("pids").unwrap(), "pids.max"), "max");
}

#[test]
fn kernel_refusals_name_file_and_value() {
    let Some((cg, name)) = start("cg-err") else {
        return;
    };
    let e = common::refused(&cg.0, r#"{"cpu": {"quota": 500, "period": 100000}}"#);
    assert_eq!(
        e,
        format!("writing \"500\" to /sys/fs/cgroup/cpu/{name}/cpu.cfs_quota_us: Invalid argument")
    );
    let e = common::refused(&cg.0, r#"{"cpu": {"cpus": "4096"}}"#);
    assert!(e.contains("cpuset.cpus") && e.contains("4096"), "{e}");
}

#[test]
fn host_tuning_realtime_budget_reaches_nested_cgroup() {
    if not_root() {
        return;
    }
    let _lock = carve_testkit::HostLock::exclusive();
    let name = unique_name("cg-rt");
    let cg = Cg::new(&format!("/{name}/inner"));
    cg.0.apply(&res(
        r#"{"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 1000000}}"#,
    ))
    .unwrap();
    let cpu = cg.0.path_on("cpu").unwrap();
    assert_eq!(read(&cpu, "cpu.rt_runtime_us"), "10000");
    assert_eq!(read(&cpu, "cpu.rt_period_us"), "1000000");
    assert_eq!(read(cpu.parent().unwrap(), "cpu.rt_runtime_us"), "10000");
}

#[test]
fn freeze_really_stops_and_thaw_resumes() {
    let Some((cg, _)) = start("cg-freeze") else {
        return;
    };
    common::assert_freeze_stops_and_thaw_resumes(&cg.0, |p| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
        let state = status.lines().find(|l| l.starts_with("State:")).unwrap();
        assert!(!state.contains("R (running)"), "{state}");
    });
}

#[test]
fn memory_limit_oom_kills_a_hog() {
    let Some((cg, _)) = start("cg-oom") else {
        return;
    };
    common::oom_kill_a_hog(&cg.0);
    let mem = cg.0.path_on("memory").unwrap();
    let oom = read(&mem, "memory.oom_control");
    assert!(oom.contains("oom_kill 1"), "{oom}");
    let st = cg.0.stats().unwrap();
    // The peak reached the limit (failcnt is no longer counted for v1 memory on this kernel).
    assert_eq!(st.memory.usage.max, 33554432, "{:?}", st.memory);
    assert_eq!(st.memory.usage.limit, 33554432);
}

#[test]
fn pids_limit_stops_forks() {
    let Some((cg, _)) = start("cg-pids") else {
        return;
    };
    let err = common::pids_limit_stops_forks(&cg.0, &cg.0.path_on("pids").unwrap());
    assert!(
        err.contains("Resource temporarily unavailable") || err.contains("fork"),
        "{err}"
    );
}

#[test]
fn stats_are_plausible_and_serialize_like_runc() {
    let Some((cg, _)) = start("cg-stats") else {
        return;
    };
    cg.0.apply(&res(
        r#"{"memory": {"limit": 134217728}, "pids": {"limit": 50}}"#,
    ))
    .unwrap();
    let (_task, st) = common::stats_after_work(&cg.0, 400);
    assert!(st.cpu.usage.total > 1_000_000, "{:?}", st.cpu);
    assert!(!st.cpu.usage.percpu.is_empty());
    assert!(st.memory.usage.usage > 0 && st.memory.usage.max >= st.memory.usage.usage);
    assert_eq!(st.memory.usage.limit, 134217728);
    assert!(st.memory.raw.contains_key("rss"));
    assert_eq!(st.pids.current, 1);
    assert_eq!(st.pids.limit, 50);
    if hybrid_host() {
        assert!(st.hugetlb.contains_key("2MB"), "{:?}", st.hugetlb);
    }
    let j = serde_json::to_value(&st).unwrap();
    for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(j.get(k).is_some(), "{k} in {j}");
    }
    assert!(j["memory"]["usage"]["limit"].as_u64().is_some());
    assert!(j["cpu"]["usage"]["total"].as_u64().is_some());
    assert!(j["memory"]["kernelTCP"].is_object());
    let root_cpus = read(Path::new("/sys/fs/cgroup/cpuset"), "cpuset.cpus");
    assert_eq!(
        Some(st.cpuset.cpus.clone()),
        carve_cgroups::stats::parse_list(&root_cpus)
    );
    assert_eq!(st.cpu.usage.percpu_user.len(), st.cpu.usage.percpu.len());
    // The keys runc's `events --stats` prints are all there.
    for k in ["cpuset", "intel_rdt", "network_interfaces"] {
        assert!(j.get(k).is_some(), "{k} in {j}");
    }

    // checkBeforeUpdate refuses a limit below what the cgroup uses now, and changes nothing.
    let mem = cg.0.path_on("memory").unwrap();
    common::assert_check_before_update_refuses(&cg.0, &mem, "memory.limit_in_bytes", "134217728");
}

#[test]
fn kill_all_reaches_every_task() {
    let Some((cg, _)) = start("cg-kill") else {
        return;
    };
    common::assert_kill_all_reaches_every_task(&cg.0);
}

#[test]
fn remove_leaves_nothing_on_any_hierarchy() {
    if not_root_or_locked() {
        return;
    }
    let name = unique_name("cg-rm");
    let mut m = Manager::new(Path::new("/sys/fs/cgroup"), &format!("/{name}/a/b")).unwrap();
    m.create().unwrap();
    // A container may make cgroups of its own inside its cgroup.
    let inner = m.path_on("memory").unwrap().join("nested-by-container");
    std::fs::create_dir(&inner).unwrap();
    let p = Proc::sleeper();
    m.add_task(p.pid()).unwrap();
    // Saved and reloaded, as carve-oci keeps it in the container state.
    let saved = serde_json::to_string(&m).unwrap();
    let m: Manager = serde_json::from_str(&saved).unwrap();
    m.kill_all(libc::SIGKILL).unwrap();
    drop(p);
    m.remove().unwrap();
    for d in std::fs::read_dir("/sys/fs/cgroup").unwrap() {
        let top = d.unwrap().path().join(&name);
        assert!(!top.exists(), "{} is left", top.display());
    }
    assert!(!m.exists());
    m.remove().unwrap();
}

#[test]
fn cpuset_of_nested_cgroup_starts_from_parent() {
    if not_root_or_locked() {
        return;
    }
    let name = unique_name("cg-cpuset");
    let cg = Cg::new(&format!("/{name}/x/y"));
    let leaf = cg.0.path_on("cpuset").unwrap();
    let root_cpus = read(Path::new("/sys/fs/cgroup/cpuset"), "cpuset.cpus");
    assert_eq!(read(&leaf, "cpuset.cpus"), root_cpus);
    assert_eq!(
        read(leaf.parent().unwrap(), "cpuset.mems"),
        read(Path::new("/sys/fs/cgroup/cpuset"), "cpuset.mems")
    );
    let p = Proc::sleeper();
    cg.0.add_task(p.pid()).unwrap();

    // An empty parent made by someone else (and never filled) is filled too.
    let top = Path::new("/sys/fs/cgroup/cpuset").join(&name).join("x");
    let other = unique_name("cg-cpuset-empty");
    std::fs::create_dir(Path::new("/sys/fs/cgroup/cpuset").join(&other)).unwrap();
    let cg2 = Cg::new(&format!("/{other}/leaf"));
    let leaf2 = cg2.0.path_on("cpuset").unwrap();
    assert_eq!(read(&leaf2, "cpuset.cpus"), root_cpus);
    assert_eq!(read(leaf2.parent().unwrap(), "cpuset.cpus"), root_cpus);
    let p2 = Proc::sleeper();
    cg2.0.add_task(p2.pid()).unwrap();
    drop(p2);
    drop(cg2);
    // The parent was not ours: remove() leaves it, the test takes it away.
    let made_by_other = Path::new("/sys/fs/cgroup/cpuset").join(&other);
    assert!(made_by_other.is_dir());
    std::fs::remove_dir(&made_by_other).unwrap();
    assert!(top.is_dir());
}

#[test]
fn simple_cpuset_and_memory_constructor() {
    if not_root_or_locked() {
        return;
    }
    let name = unique_name("cg-simple");
    let m = Manager::with_cpuset_and_memory(
        Path::new("/sys/fs/cgroup"),
        &format!("/{name}"),
        "1",
        None,
        Some(100 << 20),
    )
    .unwrap();
    let cg = Cg(m);
    assert_eq!(read(&cg.0.path_on("cpuset").unwrap(), "cpuset.cpus"), "1");
    assert_eq!(
        read(&cg.0.path_on("memory").unwrap(), "memory.limit_in_bytes"),
        (100u64 << 20).to_string()
    );
}

#[test]
fn v2_device_program_on_the_unified_hierarchy() {
    if not_root_or_locked() || !hybrid_host() {
        return;
    }
    // The cgroup2 side alone, as a pure-v2 manager: BPF device programs act on a task's cgroup2
    // cgroup whatever else is mounted.
    let l = Layout::detect(Path::new("/sys/fs/cgroup")).unwrap();
    let v2 = Layout {
        mode: Mode::V2,
        root: "/sys/fs/cgroup/unified".into(),
        v1: Vec::new(),
        unified: l.unified.clone(),
    };
    let name = unique_name("cg-bpf");
    let mut m = Manager::with_layout(&v2, &format!("/{name}")).unwrap();
    m.create().unwrap();
    let cg = Cg(m);
    cg.0.apply(&res(common::DEVICE_RULES)).unwrap();
    let dir = cg.0.path_on("unified").unwrap();
    assert_eq!(carve_cgroups::v2::devices::attached_count(&dir).unwrap(), 1);
    // Replacing the rules leaves one program, not two.
    cg.0.apply(&res(common::DEVICE_RULES)).unwrap();
    assert_eq!(carve_cgroups::v2::devices::attached_count(&dir).unwrap(), 1);
    common::assert_device_rules_enforced(&cg.0);
}

/// A dedicated-core partition holds a CPU in an exclusive cpuset: a new cgroup must start from the
/// parent's CPUs less that one, or the kernel refuses it (and every container create would fail).
#[test]
fn remove_right_after_sigkill_waits_for_the_exiting_tasks() {
    if not_root_or_locked() {
        return;
    }
    // Killed tasks leave their cgroups a little after the signal: rmdir is EBUSY until then.
    // remove() must wait for exactly that, on every hierarchy, and not take long.
    let mut still_populated = 0;
    let mut times = Vec::new();
    for round in 0..10 {
        let name = unique_name("cg-rmkill");
        let mut m = Manager::new(Path::new("/sys/fs/cgroup"), &format!("/{name}")).unwrap();
        m.create().unwrap();
        let mut procs: Vec<Proc> = (0..8).map(|_| Proc::sleeper()).collect();
        for p in &procs {
            m.add_task(p.pid()).unwrap();
        }
        m.kill_all(libc::SIGKILL).unwrap();
        if !m.pids().unwrap_or_default().is_empty() {
            still_populated += 1;
        }
        let t = Instant::now();
        m.remove()
            .unwrap_or_else(|e| panic!("round {round}: remove right after SIGKILL: {e}"));
        let took = t.elapsed();
        assert!(took < Duration::from_millis(500), "remove took {took:?}");
        times.push(took.as_micros());
        assert!(!m.exists(), "round {round}: cgroup left");
        // The killed sleepers are our children: reaped only now (zombies hold no cgroup).
        for p in &mut procs {
            let _ = p.child.wait();
        }
    }
    times.sort();
    eprintln!(
        "{still_populated}/10 rounds still had tasks listed when remove() began; \
         remove() took {times:?} µs"
    );
}

#[test]
fn remove_of_a_cgroup_with_a_live_task_fails_naming_it() {
    let Some((cg, name)) = start("cg-rmbusy") else {
        return;
    };
    let p = Proc::sleeper();
    cg.0.add_task(p.pid()).unwrap();
    let t = Instant::now();
    let e = cg.0.remove().unwrap_err().to_string();
    let took = t.elapsed();
    assert!(
        e.contains(&name) && e.contains("still in use") && e.contains(&p.pid().to_string()),
        "{e}"
    );
    // Bounded: about the one second of patience, not the 10 s of a hung wait.
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(cg.0.exists());
    drop(p);
    cg.0.remove().unwrap();
    assert!(!cg.0.exists());
}

#[test]
fn rmdir_waits_for_killed_tasks_on_v1_and_on_cgroup2() {
    if not_root_or_locked() {
        return;
    }
    // One directory per kind: a v1 one (waited for through pidfds) and, on a hybrid host, the
    // cgroup2 one (waited for through cgroup.events).
    let mut kinds = vec![Path::new("/sys/fs/cgroup/memory")];
    if hybrid_host() {
        kinds.push(Path::new("/sys/fs/cgroup/unified"));
    }
    for mount in kinds {
        let mut busy_rounds = 0;
        for _ in 0..5 {
            let dir = mount.join(unique_name("cg-rmdir"));
            std::fs::create_dir(&dir).unwrap();
            let mut procs: Vec<Proc> = (0..8).map(|_| Proc::sleeper()).collect();
            for p in &procs {
                std::fs::write(dir.join("cgroup.procs"), p.pid().to_string()).unwrap();
            }
            for p in &procs {
                // SAFETY: kill(2) of our own child.
                unsafe { libc::kill(p.pid(), libc::SIGKILL) };
            }
            // What rmdir would meet right now.
            if !read(&dir, "cgroup.procs").is_empty() {
                busy_rounds += 1;
            }
            let t = Instant::now();
            let r = carve_cgroups::fs::rmdir(&dir, Instant::now() + Duration::from_secs(2));
            let took = t.elapsed();
            for p in &mut procs {
                let _ = p.child.wait();
            }
            if r.is_err() {
                let _ = std::fs::remove_dir(&dir);
            }
            r.unwrap_or_else(|e| panic!("{}: {e}", mount.display()));
            assert!(!dir.exists());
            assert!(
                took < Duration::from_millis(500),
                "{}: {took:?}",
                mount.display()
            );
        }
        eprintln!(
            "{}: {busy_rounds}/5 rounds still listed tasks",
            mount.display()
        );
    }
}
