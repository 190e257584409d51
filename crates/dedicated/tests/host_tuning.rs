//! Privileged tests of the dedicated tier against the real kernel (root). Each one retunes the
//! host, holds `HostLock`, and checks that teardown leaves it exactly as it was.

use carve_core::CpuSet;
use carve_dedicated::launch::{sched_getattr, status_field};
use carve_dedicated::sys::{get_affinity, online_cpus, set_affinity};
use carve_dedicated::{DedicatedSpec, Error, Partition};
use carve_testkit::{HostLock, KillOnDrop as Kill, Snapshot};
use std::path::Path;
use std::time::{Duration, Instant};

/// The snapshot differences this tier is responsible for: tuning files, and the cpusets, mounts
/// and journals it names. (Other crates' tests run in parallel and create and remove their own
/// cgroups, namespaces and journals meanwhile.)
fn our_diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    before.diff_touching(after, carve_testkit::DEDICATED_FOOTPRINT)
}

/// The host's difference from `before` once it has settled: seen once (a full suite run), an IRQ
/// affinity read back the old routing right after teardown and the restored one later, so a
/// difference is looked at again for up to 2 s before it counts (and the wait is reported).
fn settled_diff(before: &Snapshot) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let first = our_diff(before, &Snapshot::take());
    let mut d = first.clone();
    while !d.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        d = our_diff(before, &Snapshot::take());
    }
    if !first.is_empty() {
        eprintln!("host differed right after teardown: {first:?}; after settling: {d:?}");
    }
    d
}

/// Checks the host is back as it was `before` (after [`settled_diff`]'s settling).
fn assert_host_back(before: &Snapshot) {
    let d = settled_diff(before);
    assert!(d.is_empty(), "host changed:\n  {}", d.join("\n  "));
}

/// Checks that a setup was refused with a message containing `why`.
fn assert_refused<T>(r: Result<T, Error>, why: &str) {
    match r {
        Err(Error::Refused(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("expected a refusal ({why}), got {:?}", other.map(|_| ())),
    }
}

fn setup_cpus() -> Option<(CpuSet, CpuSet)> {
    if !carve_testkit::require_root() {
        return None;
    }
    let online = online_cpus(Path::new("/sys")).unwrap();
    let last = online.iter().last().unwrap();
    if online.len() < 2 {
        carve_testkit::skip(carve_testkit::SkipKind::Host, "needs two CPUs");
        return None;
    }
    Some(([last].into_iter().collect(), online))
}

/// A test's start: the CPUs to dedicate and the online ones (`None`: skip), the host lock held
/// exclusively, and the host as it was before.
fn start() -> Option<(CpuSet, CpuSet, HostLock, Snapshot)> {
    let (cpus, online) = setup_cpus()?;
    let lock = HostLock::exclusive();
    Some((cpus, online, lock, Snapshot::take()))
}

fn spec(prefix: &str, cpus: &CpuSet, online: &CpuSet) -> DedicatedSpec {
    let name = carve_testkit::short_name(prefix);
    DedicatedSpec::new(&name, cpus.clone(), online)
}

/// A `sleep 30` allowed on `cpus`, killed on drop, and its pid.
fn sleeper_on(cpus: &CpuSet) -> (Kill, i32) {
    let child = Kill(
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id() as i32;
    set_affinity(pid, cpus).unwrap();
    (child, pid)
}

#[test]
fn host_tuning_setup_moves_irqs_tasks_workqueues_and_teardown_restores_exactly() {
    let Some((cpus, online, _lock, before)) = start() else {
        return;
    };
    // A task that exists before setup, allowed everywhere.
    let (bystander, bpid) = sleeper_on(&online);
    let mut s = spec("set", &cpus, &online);
    s.sched = "fifo:10".parse().unwrap();
    s.hugepages = vec!["2MiB:2".parse().unwrap()];
    s.dma_latency = true;
    let hk = s.housekeeping.clone();
    let ncpus = carve_dedicated::sys::possible_cpu_count(Path::new("/sys"));
    let p = Partition::new(s)
        .watch_interval(Duration::from_millis(50))
        .setup()
        .unwrap();
    let r = p.report().clone();
    let read = |f: &str| std::fs::read_to_string(f).unwrap().trim().to_string();
    // The cpuset partition.
    let dir = p.cpuset().expect("a cpuset hierarchy").dir.clone();
    if dir.starts_with("/sys/fs/cgroup/cpuset") {
        assert_eq!(
            read(&format!("{}/cpuset.cpus", dir.display())),
            cpus.to_string()
        );
        assert_eq!(
            read(&format!("{}/cpuset.cpu_exclusive", dir.display())),
            "1"
        );
        assert_eq!(
            read(&format!("{}/cpuset.sched_load_balance", dir.display())),
            "0"
        );
        assert_eq!(read("/sys/fs/cgroup/cpuset/cpuset.sched_load_balance"), "0");
    }
    // Sysctls, workqueues, IRQs.
    assert_eq!(read("/proc/sys/kernel/sched_rt_runtime_us"), "-1");
    assert_eq!(read("/proc/sys/kernel/timer_migration"), "0");
    assert_eq!(read("/proc/sys/vm/stat_interval"), "10");
    assert_eq!(
        CpuSet::parse_mask(&read("/sys/devices/virtual/workqueue/cpumask")).unwrap(),
        hk
    );
    assert_eq!(read("/proc/irq/default_smp_affinity"), hk.to_mask(ncpus));
    assert!(!r.irqs.moved.is_empty() || !r.irqs.fixed.is_empty());
    for (n, _, _) in &r.irqs.moved {
        let aff = read(&format!("/proc/irq/{n}/smp_affinity_list"));
        assert_eq!(CpuSet::parse_list(&aff).unwrap(), hk, "IRQ {n}");
    }
    // Tasks: the bystander is off the cores; per-CPU kthreads are listed.
    assert_eq!(get_affinity(bpid).unwrap(), hk);
    assert!(r.tasks_moved > 0);
    assert!(
        r.immovable.iter().any(|t| t.comm.starts_with("migration/")
            || t.comm.starts_with("ksoftirqd/")
            || t.comm.starts_with("cpuhp/")),
        "{:?}",
        r.immovable
    );
    // Huge pages are mounted for the process.
    let mount = &r.hugepages[0].mount;
    let mi = read("/proc/self/mountinfo");
    assert!(
        mi.contains(&mount.display().to_string()),
        "{mount:?} not mounted"
    );
    // A task that lands on the dedicated core later is moved by the watcher.
    let (lander, lpid) = sleeper_on(&online);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !get_affinity(lpid).unwrap().intersection(&cpus).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the watcher did not move pid {lpid}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = p.teardown().unwrap();
    assert!(t.tasks_moved_later >= 1);
    // Everything back, the bystander's and the lander's old affinity too.
    assert_eq!(get_affinity(bpid).unwrap(), online);
    assert_eq!(get_affinity(lpid).unwrap(), online);
    drop((bystander, lander));
    assert_host_back(&before);
}

#[test]
fn host_tuning_launch_is_pinned_locked_and_scheduled() {
    let Some((cpus, online, _lock, before)) = start() else {
        return;
    };
    let mut s = spec("lch", &cpus, &online);
    s.sched = "rr:7".parse().unwrap();
    s.rlimits = vec!["nofile=256:512".parse().unwrap()];
    s.env = vec![("HELLO".into(), "1".into())];
    s.command = vec!["sleep".into(), "30".into()];
    let mut p = Partition::new(s).setup().unwrap();
    let child = Kill(p.launch().unwrap());
    let pid = child.0.id() as i32;
    let proc = Path::new("/proc");
    assert_eq!(
        status_field(proc, pid, "Cpus_allowed_list").unwrap(),
        cpus.to_string()
    );
    let lck = status_field(proc, pid, "VmLck").unwrap();
    assert!(
        lck.trim_end_matches(" kB").parse::<u64>().unwrap() > 0,
        "VmLck {lck}"
    );
    assert_eq!(status_field(proc, pid, "THP_enabled").unwrap(), "0");
    let (policy, prio, ..) = sched_getattr(pid).unwrap();
    assert_eq!((policy, prio), (libc::SCHED_RR as u32, 7));
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cpuset")).unwrap();
    assert_eq!(cg.trim(), p.cpuset().unwrap().cgroup_path());
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env = String::from_utf8_lossy(&env);
    assert!(env.contains(&format!("CARVE_CPUS={cpus}")), "{env}");
    assert!(env.contains("HELLO=1"));
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let l = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(l.contains("256") && l.contains("512"), "{l}");
    // Teardown stops the process first (it is in the journal), then undoes the partition.
    p.teardown().unwrap();
    drop(child);
    assert_host_back(&before);
}

#[test]
fn host_tuning_refuses_a_core_of_a_live_run_and_a_request_without_housekeeping() {
    let Some((cpus, online, _lock, before)) = start() else {
        return;
    };
    let all = DedicatedSpec::new(&carve_testkit::short_name("all"), online.clone(), &online);
    assert_refused(Partition::new(all).setup(), "no housekeeping core");
    let first = Partition::new(spec("one", &cpus, &online)).setup().unwrap();
    assert_refused(
        Partition::new(spec("two", &cpus, &online)).setup(),
        "already dedicated",
    );
    first.teardown().unwrap();
    assert_host_back(&before);
}

/// An IRQ whose affinity the kernel lets us change (rewriting its current value finds out).
fn movable_irq() -> Option<u32> {
    carve_dedicated::tune::list_irqs(Path::new("/proc"))
        .into_iter()
        .find(|n| {
            let f = format!("/proc/irq/{n}/smp_affinity_list");
            std::fs::read_to_string(&f).is_ok_and(|cur| std::fs::write(&f, cur.trim()).is_ok())
        })
}

#[test]
fn host_tuning_deadline_launch_and_an_irq_routed_to_the_partition() {
    let Some((cpus, online, _lock, before)) = start() else {
        return;
    };
    let Some(irq) = movable_irq() else {
        carve_testkit::skip(carve_testkit::SkipKind::Host, "no movable IRQ");
        return;
    };
    let mut s = spec("dl", &cpus, &online);
    s.sched = "deadline:100us/1ms".parse().unwrap();
    s.irqs = vec![irq];
    // A deadline task that forks: its child starts as SCHED_OTHER (reset on fork).
    s.command = vec!["sh".into(), "-c".into(), "sleep 30".into()];
    let mut p = Partition::new(s).setup().unwrap();
    assert!(p.report().irqs.to_partition.contains(&irq));
    let aff = std::fs::read_to_string(format!("/proc/irq/{irq}/smp_affinity_list")).unwrap();
    assert_eq!(CpuSet::parse_list(&aff).unwrap(), cpus);
    let child = Kill(p.launch().unwrap());
    let (policy, _, runtime, deadline, period) = sched_getattr(child.0.id() as i32).unwrap();
    assert_eq!(
        (policy, runtime, deadline, period),
        (6, 100_000, 1_000_000, 1_000_000)
    );
    p.teardown().unwrap();
    drop(child);
    assert_host_back(&before);
}

/// A cpuset directory removed on drop: a stand-in for the cpusets other software leaves at the
/// root (podman's `libpod_parent`, docker, machine.slice), which span every CPU.
struct Sibling(std::path::PathBuf);
impl Drop for Sibling {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Real hosts are not bare: with a sibling cpuset holding every CPU (as podman's `libpod_parent`
/// does), the partition narrows it (journaled, restored at teardown), and a cgroup that
/// carve-cgroups creates meanwhile starts without the dedicated CPU.
#[test]
fn host_tuning_new_cgroup_starts_without_a_dedicated_cpu_beside_a_podman_like_cpuset() {
    let Some((cpus, online, _lock, before)) = start() else {
        return;
    };
    let root = Path::new("/sys/fs/cgroup/cpuset");
    if !root.join("cpuset.cpu_exclusive").exists() {
        carve_testkit::skip(
            carve_testkit::SkipKind::Host,
            "no cgroup v1 cpuset hierarchy (v2 partitions are isolated by the kernel)",
        );
        return;
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_string();
    let sib = Sibling(root.join(carve_testkit::unique_name("podlike")));
    std::fs::create_dir(&sib.0).unwrap();
    std::fs::write(sib.0.join("cpuset.mems"), read(&root.join("cpuset.mems"))).unwrap();
    std::fs::write(sib.0.join("cpuset.cpus"), online.to_string()).unwrap();

    let p = Partition::new(spec("pod", &cpus, &online)).setup().unwrap();
    let narrowed = CpuSet::parse_list(&read(&sib.0.join("cpuset.cpus"))).unwrap();
    assert!(
        narrowed.intersection(&cpus).is_empty(),
        "the sibling still holds {cpus}: {narrowed}"
    );
    let mut m = carve_cgroups::Manager::new(
        Path::new("/sys/fs/cgroup"),
        &format!("/{}", carve_testkit::unique_name("excl")),
    )
    .unwrap();
    m.create().unwrap();
    let got = read(&m.path_on("cpuset").unwrap().join("cpuset.cpus"));
    m.remove().unwrap();
    let got = CpuSet::parse_list(&got).unwrap();
    p.teardown().unwrap();
    assert!(
        got.intersection(&cpus).is_empty() && !got.is_empty(),
        "new cgroup's cpus {got} (dedicated {cpus})"
    );
    assert_eq!(
        CpuSet::parse_list(&read(&sib.0.join("cpuset.cpus"))).unwrap(),
        online,
        "teardown gives the sibling its CPUs back"
    );
    drop(sib);
    assert_host_back(&before);
}
