//! `up` / `down` of real plans as root: containers through carve-oci (runc when carve-oci is
//! not built: the same command line), networks through netlink inside a namespace the test
//! makes, rollback at every step, and plans side by side.

use carve_core::CpuSet;
use carve_engine::engine::{request, Engine};
use carve_engine::spec::{
    Attachment, ContainerSpec, KindSpec, PartitionSpec, PlanSpec, RestartPolicy, RootfsSource,
};
use carve_engine::state::{check_collisions, Desired, PartState, PlanDir, StateError};
use carve_engine::UpError;
use carve_net::{Netlink, NetnsGuard};
use carve_testkit::{short_name, unique_name};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A busybox rootfs shared by the tests of this process.
fn rootfs() -> PathBuf {
    static ONCE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, p) = ONCE.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("rootfs");
        carve_engine::image::busybox_rootfs(&p, Path::new("/bin/busybox")).unwrap();
        (t, p)
    });
    p.clone()
}

mod common;

use common::{plan_of, Up};

fn engine(faults: &[&str]) -> Engine {
    common::engine_with(faults)
}

fn container(name: &str, cpus: &str, command: &[&str], net: Option<Attachment>) -> PartitionSpec {
    PartitionSpec {
        name: name.into(),
        cpus: CpuSet::parse_list(cpus).unwrap(),
        memory: 64 << 20,
        restart: RestartPolicy::No.into(),
        kind: KindSpec::Container(ContainerSpec {
            rootfs: RootfsSource::Folder(rootfs()),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: vec![("CARVE_TEST".into(), "1".into())],
            init: false,
            network: net,
        }),
    }
}

/// A plan with one bridge inside `ns` (the test's namespace) and one attached container.
fn net_plan(ns: &str) -> PlanSpec {
    let bridge = short_name("br");
    let part = unique_name("web");
    PlanSpec {
        name: unique_name("plan"),
        networks: vec![common::bridge(&bridge, ns, "10.77.0")],
        partitions: vec![container(
            &part,
            "0",
            &[
                "/bin/sh",
                "-c",
                "trap 'exit 0' TERM; echo hello from $CARVE_PARTITION; sleep 1000 & wait",
            ],
            Some(common::attach(&bridge, "10.77.0.2")),
        )],
    }
}

fn cgroup_dirs(plan: &str) -> Vec<PathBuf> {
    carve_engine::cgroup::hierarchies()
        .iter()
        .map(|h| carve_engine::cgroup::dir_in(h, &format!("/carve-{plan}")))
        .filter(|p| p.exists())
        .collect()
}

/// Nothing of `plan` is left: state folder, journal, cgroups, container netns, links.
fn assert_gone(e: &Engine, plan: &PlanSpec, bridge_ns: Option<&str>) {
    let dir = PlanDir::new(&e.root, &plan.name);
    assert!(!dir.dir.exists(), "{} left", dir.dir.display());
    let j = carve_journal::journal_path(&e.journal_root, &Engine::journal_owner(&plan.name));
    assert!(!j.exists(), "{} left", j.display());
    assert_eq!(cgroup_dirs(&plan.name), Vec::<PathBuf>::new());
    for p in &plan.partitions {
        let ns = carve_engine::network::container_netns(&plan.name, &p.name);
        assert!(!carve_net::netns_exists(&ns), "netns {ns} left");
    }
    if let Some(ns) = bridge_ns {
        let mut nl = Netlink::open_in(ns).unwrap();
        let links: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(links, vec!["lo".to_string()], "links left in {ns}");
    }
}

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    carve_testkit::wait_for(what, Duration::from_secs(20), f);
}

#[test]
fn container_with_network_up_ps_exec_down_leaves_nothing() {
    assert!(carve_testkit::is_root(), "the engine suite runs as root");
    let ns = NetnsGuard::create(&unique_name("ns")).unwrap();
    let plan = net_plan(ns.name());
    let part = plan.partitions[0].name.clone();
    let mut events = Vec::new();
    let mut up = Up::with(engine(&[]), plan.clone(), &mut |e| events.push(e));
    let r = up.running.as_ref().unwrap();
    let st = &r.state().partitions[0];
    assert_eq!(st.state, PartState::Running);
    let pid = st.pid.unwrap();
    // The container's init sits in the partition's cpuset and memory cgroups with their limits.
    let cg = st.cgroup.clone().unwrap();
    let hs = carve_engine::cgroup::hierarchies();
    let cpuset = carve_engine::cgroup::controller_dir(&hs, "cpuset", &cg).unwrap();
    assert_eq!(
        std::fs::read_to_string(cpuset.join("cpuset.cpus"))
            .unwrap()
            .trim(),
        "0"
    );
    let procs = std::fs::read_to_string(cpuset.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    let usage = carve_engine::cgroup::usage(&hs, &cg);
    assert_eq!(usage.memory_limit, Some(64 << 20));
    assert!(usage.cpu_ns.is_some() && usage.memory.is_some());
    // Its output reaches the log.
    common::wait_for_log(
        "the log line",
        &st.log,
        &format!("hello from {part}"),
        Duration::from_secs(20),
    );
    // eth0 in its own namespace has the plan's address; its veth peer is on the bridge.
    let cns = carve_engine::network::container_netns(&plan.name, &part);
    let mut inner = Netlink::open_in(&cns).unwrap();
    let addrs = inner.addresses("eth0").unwrap();
    assert!(
        addrs.contains(&("10.77.0.2".parse().unwrap(), 24)),
        "{addrs:?}"
    );
    // The container reaches the bridge's address over its veth.
    let root = r.dir().oci_root();
    let out = std::process::Command::new(carve_testkit::oci_runtime())
        .arg("--root")
        .arg(&root)
        .args(["exec", &st.id, "ping", "-c", "1", "-W", "5", "10.77.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ping from the container: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Progress named each step in order.
    let steps = common::done_steps(&events);
    assert_eq!(
        steps,
        vec![
            "journal".to_string(),
            format!("network {}", plan.networks[0].name),
            format!("container {part}"),
        ]
    );
    let engine_ref = engine(&[]);
    let running = up.running.take().unwrap();
    running.down(&engine_ref, &mut |_| {}).unwrap();
    assert!(!carve_journal::ProcessId::of(pid).is_some_and(|p| p.is_alive()));
    assert_gone(&engine_ref, &plan, Some(ns.name()));
}

#[test]
fn a_failure_at_each_step_rolls_everything_back() {
    let ns = NetnsGuard::create(&unique_name("ns")).unwrap();
    let probe = net_plan(ns.name());
    for point in [
        "journal".to_string(),
        "state".to_string(),
        format!("network:{}", probe.networks[0].name),
        format!("network:{}:after", probe.networks[0].name),
        "container:PART".to_string(),
        "container:PART:after".to_string(),
    ] {
        let plan = net_plan(ns.name());
        let point = point
            .replace("PART", &plan.partitions[0].name)
            .replace(&probe.networks[0].name, &plan.networks[0].name);
        let e = engine(&[&point]);
        let mut events = Vec::new();
        let err = match e.up(plan.clone(), &mut |ev| events.push(ev)) {
            Ok(r) => {
                let _ = r.teardown(&e, Duration::from_secs(1));
                panic!("up succeeded despite fault {point}");
            }
            Err(err) => err,
        };
        let UpError::Step {
            step,
            reason,
            rollback,
        } = &err
        else {
            panic!("{point}: unexpected error {err}");
        };
        assert!(reason.to_string().contains(&point), "{point}: {err}");
        assert!(rollback.is_empty(), "{point}: {err}");
        let want_step = point.trim_end_matches(":after").replacen(':', " ", 1);
        assert!(
            want_step.starts_with(step.as_str()) || *step == want_step,
            "{point}: step {step}"
        );
        assert!(
            events
                .iter()
                .any(|ev| matches!(ev, carve_engine::Event::Failed { .. })),
            "{point}: no failure event"
        );
        assert_gone(&e, &plan, Some(ns.name()));
    }
}

#[test]
fn restart_policy_and_stop_start_requests_are_applied_by_tick() {
    let mut plan = plan_of(vec![container(
        &unique_name("flaky"),
        "0",
        &["/bin/sh", "-c", "sleep 0.3; exit 3"],
        None,
    )]);
    plan.partitions[0].restart = carve_engine::spec::Restart {
        policy: RestartPolicy::OnFailure,
        max_retries: None,
        backoff_ms: 100,
    };
    let name = plan.partitions[0].name.clone();
    let mut up = Up::new(plan.clone());
    let e = engine(&[]);
    // It fails, is restarted (with backoff) and counted.
    wait_for("two restarts", || {
        let r = up.running.as_mut().unwrap();
        r.tick(&e);
        r.state().partitions[0].restarts >= 2
    });
    let r = up.running.as_mut().unwrap();
    assert_eq!(r.state().partitions[0].last_exit, None);
    // `carve stop` writes a request; the holder stops it and keeps it stopped.
    request(r.dir(), &name, Desired::Stopped).unwrap();
    wait_for("stopped", || {
        r.tick(&e);
        r.state().partitions[0].state == PartState::Stopped
    });
    std::thread::sleep(Duration::from_millis(500));
    r.tick(&e);
    assert_eq!(r.state().partitions[0].state, PartState::Stopped);
    assert_eq!(r.state().partitions[0].pid, None);
    // `carve start` brings it back.
    request(r.dir(), &name, Desired::Running).unwrap();
    wait_for("running again", || {
        r.tick(&e);
        r.state().partitions[0].state == PartState::Running
    });
    let plan_copy = plan.clone();
    let running = up.running.take().unwrap();
    running.down(&e, &mut |_| {}).unwrap();
    assert_gone(&e, &plan_copy, None);
}

#[test]
fn plans_side_by_side_and_a_colliding_plan_refused() {
    let ns = NetnsGuard::create(&unique_name("ns")).unwrap();
    let a = net_plan(ns.name());
    let mut b = net_plan(ns.name());
    b.partitions[0].kind = container("x", "0", &["sleep", "1000"], None).kind;
    b.networks[0].gateway = None;
    let ua = Up::new(a.clone());
    // Both on core 0 (containers share cores), different names and bridges: side by side.
    let ub = Up::new(b.clone());
    // A third asking for a's bridge and a partition name of b is refused, naming both, and
    // changes nothing.
    let mut c = net_plan(ns.name());
    c.networks[0].name = a.networks[0].name.clone();
    c.partitions[0].name = b.partitions[0].name.clone();
    let e = engine(&[]);
    let err = e.up(c.clone(), &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, UpError::Refused(StateError::Collision { .. })),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("bridge {}", a.networks[0].name))
            || msg.contains(&format!("partition name {}", b.partitions[0].name)),
        "{msg}"
    );
    assert!(!PlanDir::new(&e.root, &c.name).dir.exists());
    // The same plan twice is refused too.
    assert!(matches!(
        check_collisions(&e.root, &a),
        Err(StateError::AlreadyUp(..))
    ));
    drop(ub);
    drop(ua);
    assert_gone(&e, &a, Some(ns.name()));
    assert_gone(&e, &b, Some(ns.name()));
}

#[test]
fn system_container_runs_busybox_init_and_stops_it_with_sigpwr() {
    let mut p = container(&unique_name("sys"), "0", &[], None);
    if let KindSpec::Container(c) = &mut p.kind {
        c.init = true;
    }
    let plan = plan_of(vec![p]);
    let mut up = Up::new(plan.clone());
    let st = up.running.as_ref().unwrap().state().partitions[0].clone();
    // PID 1 of the container becomes busybox init (`runc start` returns before the exec).
    let pid = st.pid.unwrap();
    wait_for("busybox init as the container's pid 1", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            == "init"
    });
    common::wait_for_log(
        "init's rcS",
        &st.log,
        "carve-init: up",
        Duration::from_secs(20),
    );
    // An open fd keeps the log readable after down unmounts the plan's state folder.
    let mut log = std::fs::File::open(&st.log).unwrap();
    let r = up.running.take().unwrap();
    let e = engine(&[]);
    // down stops it with SIGPWR: busybox init runs its shutdown actions before it ends.
    r.down(&e, &mut |_| {}).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut log, &mut text).unwrap();
    let shutdown_seen = text.contains("carve-init: shutting down");
    assert!(shutdown_seen, "init never ran its shutdown actions: {text}");
    assert_gone(&e, &plan, None);
}

#[test]
fn an_existing_oci_bundle_runs_with_the_plan_cgroup_and_limits() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("bundle");
    carve_engine::image::busybox_rootfs(&src.join("rootfs"), Path::new("/bin/busybox")).unwrap();
    // A bundle as `runc spec` would write it: relative root, its own process.
    let mut spec = oci_spec::runtime::Spec::default();
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "trap 'exit 0' TERM; echo from-the-bundle; sleep 1000 & wait".into(),
    ]));
    spec.set_process(Some(process));
    spec.set_root(Some(
        oci_spec::runtime::RootBuilder::default()
            .path("rootfs")
            .readonly(true)
            .build()
            .unwrap(),
    ));
    spec.save(src.join("config.json")).unwrap();
    let mut p = container(&unique_name("bndl"), "0", &[], None);
    if let KindSpec::Container(c) = &mut p.kind {
        c.rootfs = RootfsSource::Bundle(src.clone());
    }
    let plan = plan_of(vec![p]);
    let mut up = Up::new(plan.clone());
    let st = up.running.as_ref().unwrap().state().partitions[0].clone();
    common::wait_for_log(
        "the bundle's own command",
        &st.log,
        "from-the-bundle",
        Duration::from_secs(20),
    );
    let hs = carve_engine::cgroup::hierarchies();
    let u = carve_engine::cgroup::usage(&hs, st.cgroup.as_ref().unwrap());
    assert_eq!(u.memory_limit, Some(64 << 20));
    let e = engine(&[]);
    up.running.take().unwrap().down(&e, &mut |_| {}).unwrap();
    assert_gone(&e, &plan, None);
}

#[test]
fn a_partition_name_that_is_not_a_plain_name_is_refused_before_anything_changes() {
    let mut plan = plan_of(vec![container("../escape", "0", &["true"], None)]);
    let e = engine(&[]);
    let err = e.up(plan.clone(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, UpError::Refused(StateError::BadName(ref n)) if n == "../escape"),
        "{err}"
    );
    assert_gone(&e, &plan, None);
    // A plan may not take the name of a folder others keep under /run/carve.
    plan.partitions[0].name = "ok".into();
    plan.name = "journal".into();
    assert!(matches!(
        e.up(plan.clone(), &mut |_| {}).unwrap_err(),
        UpError::Refused(StateError::BadName(_))
    ));
}

#[test]
fn start_brings_back_a_partition_that_exited_for_good() {
    // As the holder is: container inits become our children, so their exit status is known.
    carve_engine::process::become_subreaper().unwrap();
    let plan = plan_of(vec![container(
        &unique_name("once"),
        "0",
        &["/bin/sh", "-c", "echo ran"],
        None,
    )]);
    let name = plan.partitions[0].name.clone();
    let mut up = Up::new(plan.clone());
    let e = engine(&[]);
    let r = up.running.as_mut().unwrap();
    // Policy "no": it exits and stays exited.
    wait_for("the exit", || {
        r.tick(&e);
        r.state().partitions[0].state == PartState::Exited
    });
    assert_eq!(r.state().partitions[0].last_exit.as_deref(), Some("exit 0"));
    let first = r.state().partitions[0].pid;
    // `carve start` runs it again.
    request(r.dir(), &name, Desired::Running).unwrap();
    wait_for("a new run", || {
        r.tick(&e);
        r.state().partitions[0].restarts == 1 && r.state().partitions[0].pid != first
    });
    let running = up.running.take().unwrap();
    running.down(&e, &mut |_| {}).unwrap();
    assert_gone(&e, &plan, None);
}
