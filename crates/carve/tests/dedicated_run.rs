//! `carve run --dedicated` and `carve restore` end to end, as root, on the real host. Each test
//! retunes the host, so each holds `HostLock` and checks the host is back exactly afterwards.

use carve_testkit::{HostLock, KillOnDrop, Snapshot};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn carve() -> Command {
    Command::new(env!("CARGO_BIN_EXE_carve"))
}

/// The snapshot differences carve run is responsible for (other crates' tests create and remove
/// their own cgroups, namespaces and journals in parallel).
fn our_diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    before.diff_touching(after, carve_testkit::DEDICATED_FOOTPRINT)
}

fn assert_restored(before: &Snapshot) {
    let d = our_diff(before, &Snapshot::take());
    assert!(d.is_empty(), "host changed:\n  {}", d.join("\n  "));
}

/// The last online CPU, when there are two or more and we are root.
fn core() -> Option<String> {
    if !carve_testkit::require_root() {
        return None;
    }
    let online = carve_core::CpuSet::parse_list(
        &std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?,
    )
    .ok()?;
    (online.len() >= 2).then(|| online.iter().last().unwrap().to_string())
}

/// Waits until the journal of partition `name` records `n` processes (the launched command, then
/// descendants the watcher found); returns their pids.
fn wait_for_processes(name: &str, n: usize) -> Vec<i32> {
    let path = format!("/run/carve/journal/dedicated-{name}.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let pids: Vec<i32> = text
                .lines()
                .filter(|l| l.contains("\"kind\":\"process\""))
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["id"]["pid"].as_i64().unwrap() as i32
                })
                .collect();
            if pids.len() >= n {
                return pids;
            }
        }
        assert!(Instant::now() < deadline, "carve run did not launch");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the journal of partition `name` records the launched process.
fn wait_for_launch(name: &str) -> i32 {
    wait_for_processes(name, 1)[0]
}

/// A host-tuning test's start: the core to dedicate (`None`: skip), the host lock held
/// exclusively, and the host as it was before.
fn start() -> Option<(String, HostLock, Snapshot)> {
    let cpu = core()?;
    let lock = HostLock::exclusive();
    Some((cpu, lock, Snapshot::take()))
}

/// Starts `carve run --dedicated CPU --name NAME ARGS` in the background, stdout discarded.
fn spawn_run(cpu: &str, name: &str, args: &[&str], stderr: Stdio) -> KillOnDrop {
    KillOnDrop(
        carve()
            .args(["run", "--dedicated", cpu, "--name", name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

/// `carve run --dedicated CPUS -- true`, which must be refused (exit 2); returns its stderr.
fn refused_run(cpus: &str) -> String {
    let out = carve()
        .args(["run", "--dedicated", cpus, "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn alive(pid: i32) -> bool {
    carve_journal::ProcessId::of(pid).is_some_and(|p| p.is_alive())
}

#[test]
fn host_tuning_dedicated_run_restores_the_host_and_passes_the_exit_code() {
    let Some((cpu, _lock, before)) = start() else {
        return;
    };
    let out = carve()
        .args(["run", "--dedicated", &cpu, "--sched", "fifo:20", "--hugepages", "2MiB:2"])
        .args(["--", "sh", "-c"])
        .arg("grep Cpus_allowed_list /proc/$$/status; echo \"cpus=$CARVE_CPUS hp=$CARVE_HUGEPAGES\"; exit 7")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("Cpus_allowed_list:\t{cpu}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("cpus={cpu} hp=2MiB:2:/run/carve/hugepages/")),
        "{stdout}"
    );
    assert!(stderr.contains("host restored"), "{stderr}");
    assert!(stderr.contains("needs a reboot"), "{stderr}");
    assert_restored(&before);
}

#[test]
fn host_tuning_dedicated_sigkill_mid_run_then_restore_brings_the_host_back() {
    let Some((cpu, _lock, before)) = start() else {
        return;
    };
    let name = carve_testkit::short_name("kill");
    let mut run = spawn_run(
        &cpu,
        &name,
        &[
            "--sched",
            "fifo:10",
            "--hugepages",
            "2MiB:1",
            "--",
            "sh",
            "-c",
            "sleep 60 & wait",
        ],
        Stdio::null(),
    );

    // The command and the descendant the watcher records.
    let pids = wait_for_processes(&name, 2);
    let child = pids[0];
    assert!(
        !our_diff(&before, &Snapshot::take()).is_empty(),
        "the run changed nothing?"
    );
    run.0.kill().unwrap(); // SIGKILL: carve restores nothing itself
    run.0.wait().unwrap();
    assert!(alive(child), "the command outlives a killed carve");
    // A new run on the same core is refused until the crashed one is restored.
    assert!(refused_run(&cpu).contains("carve restore"));
    let out = carve().args(["restore", "--verbose"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // It says what it undoes: the command first, the cpuset last-made-first-removed.
    assert!(
        stdout.contains(&format!("stop process {child}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("carve-ded-{name}")), "{stdout}");
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("restored dedicated-{name}")),
        "{stdout}"
    );
    for p in &pids {
        assert!(
            !alive(*p),
            "restore stops the orphaned command and its descendants ({p})"
        );
    }
    assert_restored(&before);
}

#[test]
fn host_tuning_dedicated_sigterm_stops_the_command_and_restores() {
    let Some((cpu, _lock, before)) = start() else {
        return;
    };
    let name = carve_testkit::short_name("term");
    let mut run = spawn_run(&cpu, &name, &["--", "sleep", "60"], Stdio::piped());
    let child = wait_for_launch(&name);
    // SAFETY: kill has no memory effects; the pid is our child.
    unsafe { libc::kill(run.0.id() as i32, libc::SIGTERM) };
    let st = run.0.wait().unwrap();
    let mut err = String::new();
    run.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(st.code(), Some(128 + libc::SIGTERM), "{err}");
    assert!(err.contains("host restored"), "{err}");
    assert!(!alive(child));
    assert_restored(&before);
}

#[test]
fn host_tuning_dedicated_refusals_change_nothing() {
    let Some((cpu, _lock, before)) = start() else {
        return;
    };
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    assert!(refused_run(online.trim()).contains("no housekeeping core"));
    // A core of a live run.
    let name = carve_testkit::short_name("live");
    let mut live = spawn_run(&cpu, &name, &["--", "sleep", "60"], Stdio::null());
    wait_for_launch(&name);
    let err = refused_run(&cpu);
    assert!(
        err.contains("already dedicated") && err.contains(&name),
        "{err}"
    );
    // SAFETY: kill has no memory effects; the pid is our child.
    unsafe { libc::kill(live.0.id() as i32, libc::SIGINT) };
    live.0.wait().unwrap();
    assert!(Path::new("/run/carve").exists());
    assert_restored(&before);
}
