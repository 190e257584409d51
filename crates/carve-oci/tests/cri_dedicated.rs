//! Dedicated-core pods through the CRI (containerd 1.6's CRI plugin, handler `carve`): a
//! container with an exclusive cpuset whose pod carries `carve.dev/dedicated: "true"` gets the
//! host retuned while it runs (IRQ affinities and default_smp_affinity off its CPU, one named IRQ
//! routed onto it, workqueue masks, RT throttling and SCHED_FIFO for `carve.dev/sched`), and the
//! host comes back byte for byte after RemovePodSandbox, after SIGKILL of the shim plus
//! `carve restore`, and after 20 pods raced for the core. Refusals are clear CRI errors.
//!
//! This host has 2 CPUs: CPU 0 stays housekeeping, so only CPU 1 can be dedicated and only one
//! pod at a time holds it. These tests retune the host: they hold HostLock::exclusive.

mod clients_support;
mod cri_support;
use carve_cri::api as cri;
use carve_testkit::{HostLock, Snapshot};
use clients_support::require_root;
use cri_support::*;
use std::time::{Duration, Instant};

const DED: &str = "carve.dev/dedicated";

fn world() -> Option<World> {
    if !require_root() {
        return None;
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if !online.trim().starts_with("0-") {
        carve_testkit::skip(
            carve_testkit::SkipKind::Host,
            format!("needs CPUs 0 and 1 online (have {online:?})"),
        );
        return None;
    }
    Some(World::with_lock(Some(HostLock::exclusive())))
}

/// The host's tuning files that differ from `before` (settling up to 2 s: an IRQ affinity can
/// read back its old routing right after a change).
fn settled_diff(before: &Snapshot) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let d: Vec<String> = before
            .diff(&Snapshot::take())
            .into_iter()
            .filter(|l| l.starts_with('/'))
            .collect();
        if d.is_empty() || Instant::now() > deadline {
            return d;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An IRQ whose affinity this host lets us change.
fn movable_irq() -> Option<u32> {
    carve_dedicated::tune::list_irqs(std::path::Path::new("/proc"))
        .into_iter()
        .find(|n| {
            let f = format!("/proc/irq/{n}/smp_affinity_list");
            std::fs::read_to_string(&f).is_ok_and(|cur| std::fs::write(&f, cur.trim()).is_ok())
        })
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// (policy, rt priority) of `pid` from /proc/PID/stat (fields 41 and 40).
fn sched_of(pid: i32) -> (u32, u32) {
    let s = read(&format!("/proc/{pid}/stat"));
    let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
    // After the comm: field 3 is f[0], so field N is f[N - 3].
    (f[41 - 3].parse().unwrap(), f[40 - 3].parse().unwrap())
}

fn dedicated_container(w: &World, name: &str, cpus: &str) -> carve_cri::pod::ContainerSpec {
    let mut c = w.container_spec(name, &["sleep", "1000"]);
    c.cpuset_cpus = cpus.into();
    c.memory_limit = 64 << 20;
    c
}

/// The host while CPU 1 is dedicated to a pod: every movable IRQ off it but `irq`, which is on
/// it; default_smp_affinity and the unbound workqueue mask = CPU 0; RT throttling off.
fn check_tuned(irq: u32) {
    assert_eq!(
        read(&format!("/proc/irq/{irq}/smp_affinity_list")),
        "1",
        "IRQ {irq} not routed to CPU 1"
    );
    assert_eq!(
        u64::from_str_radix(&read("/proc/irq/default_smp_affinity").replace(',', ""), 16).unwrap(),
        1
    );
    assert_eq!(
        u64::from_str_radix(
            &read("/sys/devices/virtual/workqueue/cpumask").replace(',', ""),
            16
        )
        .unwrap(),
        1
    );
    assert_eq!(read("/proc/sys/kernel/sched_rt_runtime_us"), "-1");
    for n in carve_dedicated::tune::list_irqs(std::path::Path::new("/proc")) {
        if n == irq {
            continue;
        }
        let f = format!("/proc/irq/{n}/smp_affinity_list");
        let cur = read(&f);
        // Only IRQs we could move count (managed ones refuse writes).
        if cur.contains('1') && cur != "0-1" && std::fs::write(&f, &cur).is_ok() {
            panic!("IRQ {n} is on CPU 1 ({cur}) while the pod holds it");
        }
    }
}

/// (Cpus_allowed_list, the memory line of /proc/self/cgroup) of a process run by ExecSync in
/// container `id`.
fn exec_placement(w: &mut World, id: &str) -> (String, String) {
    let status = w.sh(id, "cat /proc/self/status; cat /proc/self/cgroup");
    let cpus = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_else(|| panic!("no Cpus_allowed_list in {status}"))
        .trim()
        .to_string();
    let memcg = status
        .lines()
        .find(|l| l.contains(":memory:"))
        .unwrap_or_default()
        .to_string();
    (cpus, memcg)
}

#[test]
fn cri_dedicated_pod_host_tuning_applied_then_restored_and_refusals() {
    let Some(mut w) = world() else { return };
    let irq = movable_irq().expect("no movable IRQ on this host");
    let before = Snapshot::take();
    let irq_s = irq.to_string();
    let ann = [
        (DED, "true"),
        ("carve.dev/sched", "fifo:80"),
        ("carve.dev/irq", irq_s.as_str()),
    ];
    let pod = w.pod_spec("ded", "carve", &ann);
    let pod_id = w.run_pod(&pod);
    let c = w.create_start(&pod_id, &pod, &dedicated_container(&w, "fast", "1"));
    check_tuned(irq);
    let pid = w.pid(&c);
    assert_eq!(
        sched_of(pid),
        (libc::SCHED_FIFO as u32, 80),
        "carve.dev/sched not applied"
    );
    assert_eq!(cgroup_value(pid, "cpuset", "cpuset.cpus"), "1");
    // ExecSync lands on the housekeeping CPU (outside the pod's cpuset), still in the
    // container's memory cgroup.
    let (cpus, memcg) = exec_placement(&mut w, &c);
    assert_eq!(
        cpus, "0",
        "exec into a dedicated pod is not on the housekeeping CPU"
    );
    let init_memcg = read(&format!("/proc/{pid}/cgroup"))
        .lines()
        .find(|l| l.contains(":memory:"))
        .map(str::to_string)
        .unwrap();
    assert_eq!(
        memcg, init_memcg,
        "the exec'd process left the container's memory cgroup"
    );

    // Refusals, each a clear CRI error with nothing created.
    let busy = w.pod_spec("ded2", "carve", &[(DED, "true")]);
    let busy_id = w.run_pod(&busy);
    // (the container, what the error names)
    let containers = [
        (dedicated_container(&w, "second", "1"), "already dedicated"),
        (dedicated_container(&w, "all", "0-1"), "not exclusive"),
        (
            w.container_spec("nocpuset", &["sleep", "1"]),
            "not exclusive",
        ),
    ];
    for (spec, names) in &containers {
        let e = w.try_create_start(&busy_id, &busy, spec).unwrap_err();
        assert!(e.to_string().contains(names), "{names}: {e}");
    }
    // A bad annotation value is refused at RunPodSandbox already (the sandbox's create):
    // (pod, its annotations, what the error names).
    type Annotations<'a> = &'a [(&'a str, &'a str)];
    let pods: [(&str, Annotations, &str); 3] = [
        ("bad", &[(DED, "yes")], "unknown value \"yes\""),
        (
            "bad2",
            &[(DED, "true"), ("carve.dev/sched", "fast")],
            "carve.dev/sched",
        ),
        (
            "bad3",
            &[(DED, "true"), ("carve.dev/exec-cpus", "anywhere")],
            "carve.dev/exec-cpus",
        ),
    ];
    for (name, annotations, names) in pods {
        let bad = w.pod_spec(name, "carve", annotations);
        let e = w.client.run_pod_sandbox(bad.request()).unwrap_err();
        assert!(e.to_string().contains(names), "{name}: {e}");
    }
    w.remove_pod(&busy_id, &busy);
    check_tuned(irq); // refused pods changed nothing

    w.stop_remove_container(&c, 2);
    w.remove_pod(&pod_id, &pod);
    let d = settled_diff(&before);
    assert!(
        d.is_empty(),
        "host not restored after RemovePodSandbox:\n{}",
        d.join("\n")
    );
    w.assert_nothing_left();
}

/// `carve restore` (the carve binary beside carve-oci when built; else the same library call it
/// makes) after the shim and the container were SIGKILLed: the host comes back.
fn carve_restore() {
    let carve = std::path::Path::new(env!("CARGO_BIN_EXE_carve-oci")).with_file_name("carve");
    if carve.is_file() {
        let out = clients_support::ok(
            std::process::Command::new(&carve).arg("restore"),
            Duration::from_secs(60),
        );
        eprintln!("carve restore: {out}");
    } else {
        eprintln!(
            "{} is not built: restoring through carve_journal::restore_orphans",
            carve.display()
        );
        for r in carve_journal::restore_orphans(carve_journal::DEFAULT_ROOT, None) {
            r.result
                .unwrap_or_else(|e| panic!("restore {}: {e}", r.owner));
        }
    }
}

#[test]
fn cri_dedicated_pod_host_tuning_restored_after_shim_sigkill_and_carve_restore() {
    let Some(mut w) = world() else { return };
    let before = Snapshot::take();
    // This pod keeps exec on its dedicated CPU.
    let pod = w.pod_spec(
        "crash",
        "carve",
        &[(DED, "true"), ("carve.dev/exec-cpus", "dedicated")],
    );
    let pod_id = w.run_pod(&pod);
    let c = w.create_start(&pod_id, &pod, &dedicated_container(&w, "fast", "1"));
    let pid = w.pid(&c);
    assert_eq!(
        exec_placement(&mut w, &c).0,
        "1",
        "exec-cpus: dedicated ignored"
    );
    assert_eq!(
        u64::from_str_radix(
            &read("/sys/devices/virtual/workqueue/cpumask").replace(',', ""),
            16
        )
        .unwrap(),
        1
    );
    // The node dies: containerd (else it would clean up after the shim itself), the shims, the
    // container.
    w.node.kill_daemon();
    for shim in carve_cri::host::pids_matching(&w.node.socket().display().to_string()) {
        // SAFETY: kill has no memory effects; these are this node's shims.
        unsafe { libc::kill(shim, libc::SIGKILL) };
    }
    // SAFETY: as above; the container's init.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mask = read("/sys/devices/virtual/workqueue/cpumask").replace(',', "");
    assert_eq!(
        u64::from_str_radix(&mask, 16).unwrap(),
        1,
        "the crash alone restored the host?"
    );
    carve_restore();
    let d = settled_diff(&before);
    assert!(
        d.is_empty(),
        "host not restored by carve restore:\n{}",
        d.join("\n")
    );
    let _ = (pod_id, cri::VersionRequest::default());
    // Drop removes the dead node's cgroups, mounts and network namespaces.
}

/// 20 pods race for CPU 1 (the only one this host can dedicate): each one's CreateContainer is
/// either refused cleanly ("already dedicated": it retries) or holds the core, checks the host is
/// tuned, and gives it back. Every pod gets the core once; the host is identical afterwards.
#[test]
fn cri_dedicated_twenty_concurrent_pods_host_tuning() {
    let Some(w) = world() else { return };
    let before = Snapshot::take();
    let w = std::sync::Mutex::new(w);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let socket = w.lock().unwrap().node.socket();
    std::thread::scope(|s| {
        for i in 0..20 {
            let (w, refused, socket) = (&w, &refused, &socket);
            s.spawn(move || {
                let mut client =
                    carve_cri::client::Client::connect(socket, Duration::from_secs(60)).unwrap();
                let (pod, spec) = {
                    let w = w.lock().unwrap();
                    (
                        w.pod_spec(&format!("race{i}"), "carve", &[(DED, "true")]),
                        dedicated_container(&w, "c", "1"),
                    )
                };
                let pod_id = client
                    .run_pod_sandbox(pod.request())
                    .expect("RunPodSandbox")
                    .pod_sandbox_id;
                let deadline = Instant::now() + Duration::from_secs(90);
                let id = loop {
                    let id = client
                        .create_container(spec.request(&pod_id, &pod))
                        .expect("CreateContainer")
                        .container_id;
                    // The runtime's create runs at StartContainer.
                    match client.start_container(cri::StartContainerRequest {
                        container_id: id.clone(),
                    }) {
                        Ok(_) => break id,
                        Err(e) if e.to_string().contains("already dedicated") => {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            client
                                .remove_container(cri::RemoveContainerRequest { container_id: id })
                                .expect("remove refused");
                            assert!(Instant::now() < deadline, "pod {i} never got CPU 1");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => panic!("pod {i}: StartContainer: {e}"),
                    }
                };
                let mask = read("/sys/devices/virtual/workqueue/cpumask").replace(',', "");
                assert_eq!(
                    u64::from_str_radix(&mask, 16).unwrap(),
                    1,
                    "pod {i} runs but the workqueues are on CPU 1"
                );
                client
                    .stop_container(cri::StopContainerRequest {
                        container_id: id.clone(),
                        timeout: 0,
                    })
                    .expect("stop");
                client
                    .remove_container(cri::RemoveContainerRequest { container_id: id })
                    .expect("remove");
                client
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: pod_id.clone(),
                    })
                    .expect("stop pod");
                client
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: pod_id,
                    })
                    .expect("remove pod");
            });
        }
    });
    eprintln!(
        "20 pods held CPU 1 in turn; {} creates were refused while another held it",
        refused.into_inner()
    );
    let d = settled_diff(&before);
    assert!(
        d.is_empty(),
        "host not identical after 20 pods:\n{}",
        d.join("\n")
    );
}
