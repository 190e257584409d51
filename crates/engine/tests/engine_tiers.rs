//! `up` / `down` with each tier's real partitions: a dedicated core, a VM (QEMU under TCG here)
//! and all three kinds together, as root. Tests that make a core exclusive hold the host lock
//! exclusively and have `host_tuning` in their names; the VM test holds it shared (its vCPU
//! pinning needs the cores as Linux normally has them).

use carve_core::CpuSet;
use carve_engine::engine::Engine;
use carve_engine::spec::{
    Attachment, ContainerSpec, DedicatedSpec, KindSpec, PartitionSpec, PlanSpec, RestartPolicy,
    RootfsSource, VmSpec,
};
use carve_engine::state::{PartState, PlanDir};
use carve_net::{Netlink, NetnsGuard};
use carve_testkit::{short_name, unique_name, Snapshot};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{plan_of, Up};

fn engine() -> Engine {
    common::engine_with(&[])
}

fn shared_host_lock() -> carve_testkit::HostLock {
    carve_testkit::HostLock::shared()
}

fn guest() -> carve_vm::assets::GuestAssets {
    carve_vm::assets::prepare_guest(&carve_testkit::guest_dir()).expect("guest assets")
}

fn rootfs(t: &Path) -> PathBuf {
    let p = t.join("rootfs");
    carve_engine::image::busybox_rootfs(&p, Path::new("/bin/busybox")).unwrap();
    p
}

fn part(name: &str, cpus: &str, memory: u64, kind: KindSpec) -> PartitionSpec {
    PartitionSpec {
        name: name.into(),
        cpus: CpuSet::parse_list(cpus).unwrap(),
        memory,
        restart: RestartPolicy::No.into(),
        kind,
    }
}

fn dedicated(command: &[&str], sched: &str) -> KindSpec {
    KindSpec::Dedicated(DedicatedSpec {
        command: command.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        sched: Some(sched.into()),
        hugepages: None,
        irqs: vec![],
    })
}

fn vm(append: &str, network: Option<Attachment>) -> KindSpec {
    let g = guest();
    KindSpec::Vm(VmSpec {
        vcpus: 1,
        kernel: Some(g.kernel),
        initrd: Some(g.initrd),
        append: Some(append.into()),
        disks: vec![],
        network,
    })
}

/// Brings up `plan` (one VM partition), waits up to 120 s for its guest to print `text` (failing
/// with `what`) and takes the plan down: the VM's QEMU must be gone.
fn vm_plan_prints(plan: &PlanSpec, what: &str, text: &str) {
    let mut up = Up::new(plan.clone());
    let st = up.running().state().partitions[0].clone();
    assert_eq!(st.state, PartState::Running);
    common::wait_for_log(what, &st.log, text, Duration::from_secs(120));
    let e = engine();
    up.running().tick(&e);
    up.down();
    assert!(!carve_journal::ProcessId::of(st.pid.unwrap()).is_some_and(|p| p.is_alive()));
}

fn allowed_cpus(pid: i32) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

fn assert_plan_gone(plan: &PlanSpec) {
    let e = engine();
    assert!(!PlanDir::new(&e.root, &plan.name).dir.exists());
    let j = carve_journal::journal_path(&e.journal_root, &Engine::journal_owner(&plan.name));
    assert!(!j.exists(), "{} left", j.display());
    for p in &plan.partitions {
        for owner in [format!("dedicated-{}", p.name), format!("vm-{}", p.name)] {
            let j = carve_journal::journal_path(&e.journal_root, &owner);
            assert!(!j.exists(), "{} left", j.display());
        }
        assert!(!Path::new("/run/carve/vm").join(&p.name).exists());
        assert!(!Path::new("/sys/fs/cgroup/cpuset")
            .join(format!("carve-vm-{}", p.name))
            .exists());
    }
}

#[test]
fn dedicated_partition_alone_up_down_restores_the_host_tuning() {
    let _lock = carve_testkit::HostLock::exclusive();
    let before = Snapshot::take().files;
    let name = unique_name("fast");
    let plan = plan_of(vec![part(
        &name,
        "1",
        16 << 20,
        // A spinner, as a fast path is (SCHED_OTHER here; FIFO is tested with all three).
        dedicated(
            &["/bin/sh", "-c", "echo on $CARVE_CPUS; while :; do :; done"],
            "other",
        ),
    )]);
    let mut up = Up::new(plan.clone());
    let st = up.running().state().partitions[0].clone();
    assert_eq!(st.state, PartState::Running);
    let pid = st.pid.unwrap();
    assert_eq!(allowed_cpus(pid), "1");
    // ps reports the share of core 1 the spinner did not get.
    let rows = carve_engine::ops::ps(&up.engine.root, Duration::from_millis(300));
    let row = rows.iter().find(|r| r.name == name).unwrap();
    let stolen = row
        .stolen_percent
        .expect("stolen % of a running dedicated partition");
    assert!((0.0..90.0).contains(&stolen), "stolen {stolen}%");
    // The host is retuned while it runs: the unbound workqueue mask leaves core 1.
    assert_ne!(Snapshot::take().files, before);
    common::wait_for_log(
        "its output in the log",
        &st.log,
        "on 1",
        Duration::from_secs(10),
    );
    up.down();
    assert!(!carve_journal::ProcessId::of(pid).is_some_and(|p| p.is_alive()));
    assert_eq!(Snapshot::take().files, before, "host tuning not restored");
    assert_plan_gone(&plan);
}

#[test]
fn vm_partition_alone_boots_on_the_bridge_and_down_leaves_nothing() {
    let _lock = shared_host_lock();
    let ns = NetnsGuard::create(&unique_name("ns")).unwrap();
    let bridge = short_name("br");
    let name = unique_name("vm");
    let plan = PlanSpec {
        name: unique_name("plan"),
        networks: vec![common::bridge(&bridge, ns.name(), "10.79.0")],
        partitions: vec![part(
            &name,
            "0",
            256 << 20,
            vm(
                "quiet carve.cmd=\"ping -c 1 -W 10 10.79.0.1 && echo ping-ok\"",
                Some(common::attach(&bridge, "10.79.0.3")),
            ),
        )],
    };
    // The guest boots and reaches the bridge's address through its tap.
    vm_plan_prints(&plan, "the guest to ping the bridge", "ping-ok");
    let mut nl = Netlink::open_in(ns.name()).unwrap();
    let links: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(links, vec!["lo".to_string()]);
    assert_plan_gone(&plan);
}

#[test]
fn all_three_kinds_together_vm_fetches_the_container_page_host_tuning() {
    let _lock = carve_testkit::HostLock::exclusive();
    let before = Snapshot::take().files;
    let t = tempfile::tempdir().unwrap();
    let rootfs = rootfs(t.path());
    let ns = NetnsGuard::create(&unique_name("ns")).unwrap();
    let bridge = short_name("br");
    let att = |addr: &str| common::attach(&bridge, addr);
    let (fast, web, guest) = (unique_name("fast"), unique_name("web"), unique_name("vm"));
    let plan = PlanSpec {
        name: unique_name("plan"),
        networks: vec![common::bridge(&bridge, ns.name(), "10.80.0")],
        partitions: vec![
            part(&fast, "1", 16 << 20, dedicated(&["sleep", "1000"], "fifo:10")),
            part(
                &web,
                "0",
                64 << 20,
                KindSpec::Container(ContainerSpec {
                    rootfs: RootfsSource::Folder(rootfs),
                    command: ["/bin/sh", "-c", "mkdir -p /tmp/www; echo carve-page-$CARVE_PARTITION > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    env: vec![],
                    init: false,
                    network: Some(att("10.80.0.2")),
                }),
            ),
            part(
                &guest,
                "0",
                256 << 20,
                vm(
                    "quiet carve.cmd=\"sleep 1; wget -q -O - http://10.80.0.2:8080/\"",
                    Some(att("10.80.0.3")),
                ),
            ),
        ],
    };
    let mut events = Vec::new();
    let mut up = Up::with(engine(), plan.clone(), &mut |e| events.push(e));
    // Steps ran in the engine's order: network, dedicated, container, vm.
    let done = common::done_steps(&events);
    assert_eq!(
        done,
        vec![
            "journal".to_string(),
            format!("network {bridge}"),
            format!("dedicated {fast}"),
            format!("container {web}"),
            format!("vm {guest}"),
        ]
    );
    let parts = up.running().state().partitions.clone();
    assert!(
        parts.iter().all(|p| p.state == PartState::Running),
        "{parts:?}"
    );
    assert_eq!(allowed_cpus(parts[0].pid.unwrap()), "1");
    // SAFETY: sched_getscheduler takes a pid and touches no memory.
    let policy = unsafe { libc::sched_getscheduler(parts[0].pid.unwrap()) };
    assert_eq!(policy, libc::SCHED_FIFO);
    // The VM fetches the container's page over the bridge and prints it on its console.
    let vm_log = parts[2].log.clone();
    common::wait_for_log(
        "the VM to print the page",
        &vm_log,
        &format!("carve-page-{web}"),
        Duration::from_secs(120),
    );
    // ps sees all three with their cores.
    let rows = carve_engine::ops::ps(&up.engine.root, Duration::from_millis(100));
    let mine: Vec<_> = rows.iter().filter(|r| r.plan == plan.name).collect();
    assert_eq!(mine.len(), 3);
    assert_eq!(
        mine.iter()
            .map(|r| (r.kind.as_str(), r.cpus.as_str()))
            .collect::<Vec<_>>(),
        vec![("dedicated", "1"), ("container", "0"), ("vm", "0")]
    );
    up.down();
    assert_eq!(Snapshot::take().files, before, "host tuning not restored");
    assert_plan_gone(&plan);
    let mut nl = Netlink::open_in(ns.name()).unwrap();
    let links: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(links, vec!["lo".to_string()]);
}

#[test]
fn a_failure_at_the_dedicated_container_or_vm_step_rolls_back_the_host_tuning() {
    let _lock = carve_testkit::HostLock::exclusive();
    let before = Snapshot::take().files;
    let t = tempfile::tempdir().unwrap();
    let rootfs = rootfs(t.path());
    // "container:WEB" fails while the VM's QEMU is starting on its thread.
    for point in [
        "dedicated:FAST:after",
        "vm:GUEST",
        "container:WEB",
        "vm:GUEST:after",
    ] {
        let (fast, web, guest) = (unique_name("fast"), unique_name("web"), unique_name("vm"));
        let plan = plan_of(vec![
            part(&fast, "1", 16 << 20, dedicated(&["sleep", "1000"], "other")),
            part(
                &web,
                "0",
                32 << 20,
                KindSpec::Container(ContainerSpec {
                    rootfs: RootfsSource::Folder(rootfs.clone()),
                    command: vec!["sleep".into(), "1000".into()],
                    env: vec![],
                    init: false,
                    network: None,
                }),
            ),
            part(&guest, "0", 256 << 20, vm("quiet", None)),
        ]);
        let point = point
            .replace("FAST", &fast)
            .replace("GUEST", &guest)
            .replace("WEB", &web);
        let mut e = engine();
        e.faults = vec![point.clone()];
        match e.up(plan.clone(), &mut |_| {}) {
            Ok(r) => {
                let _ = r.teardown(&e, Duration::from_secs(1));
                panic!("up succeeded despite fault {point}");
            }
            Err(err) => {
                let msg = err.to_string();
                assert!(
                    msg.contains(&point) && msg.ends_with("rolled back"),
                    "{msg}"
                );
            }
        }
        assert_eq!(
            Snapshot::take().files,
            before,
            "{point}: host tuning not restored"
        );
        assert_plan_gone(&plan);
    }
}

#[test]
fn a_vm_that_powers_off_is_restarted_by_its_policy() {
    let _lock = shared_host_lock();
    let name = unique_name("vm");
    let mut p = part(
        &name,
        "0",
        256 << 20,
        vm("quiet carve.cmd=\"poweroff -f\"", None),
    );
    p.restart = carve_engine::spec::Restart {
        policy: RestartPolicy::Always,
        max_retries: None,
        backoff_ms: 100,
    };
    let plan = plan_of(vec![p]);
    let mut up = Up::new(plan.clone());
    let first = up.running().state().partitions[0].pid.unwrap();
    // The guest powers itself off; the supervisor sees QEMU end and starts a new one. (The
    // engine that started the VM holds its QEMU: supervise with that one.)
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = up.running.as_mut().unwrap();
        r.tick(&up.engine);
        let p = &r.state().partitions[0];
        if p.restarts >= 1 && p.pid.is_some_and(|pid| pid != first) {
            break;
        }
        assert!(Instant::now() < deadline, "no restart: {p:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    up.down();
    assert_plan_gone(&plan);
}

#[test]
fn a_vm_with_a_read_only_qcow2_disk_from_a_plan_file_sees_vda() {
    let _lock = shared_host_lock();
    let t = tempfile::tempdir().unwrap();
    // A scratch qcow2 beside the plan file, named relative to it.
    let img = t.path().join("scratch.qcow2");
    let out = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&img)
        .arg("16M")
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img: {out:?}");
    let g = guest();
    let name = short_name("vd");
    let plan_file = t.path().join(format!("{}.toml", unique_name("plan")));
    std::fs::write(
        &plan_file,
        format!(
            r#"[[partition]]
name = "{name}"
kind = "vm"
vcpus = 1
cpus = [0]
memory = "256MiB"
kernel = "{}"
initrd = "{}"
disks = "scratch.qcow2,readonly"
append = 'quiet carve.cmd="test -b /dev/vda && echo disk-marker-$(cat /sys/block/vda/ro)"'
"#,
            g.kernel.display(),
            g.initrd.display()
        ),
    )
    .unwrap();
    let plan = carve_engine::resolve::load(&plan_file).unwrap();
    let KindSpec::Vm(v) = &plan.partitions[0].kind else {
        panic!("a vm partition")
    };
    assert_eq!(
        v.disks,
        vec![t
            .path()
            .canonicalize()
            .unwrap()
            .join("scratch.qcow2,readonly")]
    );
    // The guest sees the drive as vda, read-only.
    vm_plan_prints(&plan, "the guest to see vda", "disk-marker-1");
    assert_plan_gone(&plan);
}
