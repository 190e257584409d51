//! containerd's shim stop path (issue 12 item 7), through the real `containerd-shim-runc-v2`
//! with carve-oci as its runtime (`ctr run --runc-binary`). CRI's StopContainer sends
//! `kill --all ID 9` through the shim; once the container has exited the shim still does, and
//! reads an error containing runc's "container not running" (checkKillError) as "already
//! finished" — runc itself exits 0 for `kill --all` of a stopped container. Both a container
//! that already exited and a running one are stopped by the shim and end with nothing left:
//! no task, no container, no runtime state, no cgroup, no process.
//!
//! `CARVE_TEST_RUNTIME=runc` runs the same against runc.

mod clients_support;
#[path = "clients_support/containerd.rs"]
mod containerd;
use clients_support::*;
use containerd::*;
use std::process::Command;

/// Nothing of `id` is left: no task, no container, no state in the runtime's root, no cgroup
/// below the namespace's parent, no process of the container.
fn assert_clean(c: &Containerd, id: &str) {
    assert_eq!(c.ok(&["task", "ls", "-q"]), "", "task left");
    assert_eq!(c.ok(&["container", "ls", "-q"]), "", "container left");
    let root = c.dir.path().join("runc-root");
    let left: Vec<String> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.flatten()
                .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten())
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "runtime state left: {left:?}");
    let dirs: Vec<_> = cgroup_dirs(&c.ns)
        .into_iter()
        .map(|d| d.join(id))
        .filter(|d| d.exists())
        .collect();
    assert!(dirs.is_empty(), "cgroups left: {dirs:?}");
    let log = std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default();
    assert!(
        !log.contains("unknown error after kill"),
        "the shim did not understand the runtime's kill error: {log}"
    );
}

#[test]
fn the_shim_stops_a_container_that_already_exited() {
    if !require_root() {
        return;
    }
    let c = Containerd::new();
    let id = carve_testkit::unique_name("exited");
    c.run_detached(&id, &["true"], "STOPPED");
    // CRI StopContainer: SIGKILL to all, after the exit. It must not fail.
    let o = run_limited(
        c.ctr()
            .args(["task", "kill", "--all", "-s", "SIGKILL", &id]),
        LIMIT,
    );
    assert!(
        o.status.success(),
        "kill --all after exit: {}",
        describe(&o)
    );
    // And the runtime's own answer, as the shim sees it: exit 0, as runc.
    let rt = runtime();
    let direct = run_limited(
        Command::new(&rt)
            .arg("--root")
            .arg(c.dir.path().join("runc-root").join(&c.ns))
            .args(["kill", "--all", &id, "9"]),
        LIMIT,
    );
    assert!(direct.status.success(), "{}", describe(&direct));
    // Without --all the error carries runc's words, which checkKillError matches.
    let single = run_limited(
        Command::new(&rt)
            .arg("--root")
            .arg(c.dir.path().join("runc-root").join(&c.ns))
            .args(["kill", &id, "9"]),
        LIMIT,
    );
    assert!(!single.status.success());
    assert!(
        String::from_utf8_lossy(&single.stderr).contains("container not running"),
        "{}",
        describe(&single)
    );
    c.ok(&["task", "rm", &id]);
    c.ok(&["container", "rm", &id]);
    assert_clean(&c, &id);
}

#[test]
fn the_shim_kills_a_running_container() {
    if !require_root() {
        return;
    }
    let c = Containerd::new();
    let id = carve_testkit::unique_name("running");
    c.run_detached(&id, &["sleep", "1000"], "RUNNING");
    let pid = c.task_pid(&id);
    c.ok(&["task", "kill", "--all", "-s", "SIGKILL", &id]);
    c.wait_status(&id, "STOPPED");
    // A second stop of the stopped task (CRI retries StopContainer) succeeds too.
    c.ok(&["task", "kill", "--all", "-s", "SIGKILL", &id]);
    c.ok(&["task", "rm", &id]);
    c.ok(&["container", "rm", &id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container's process {pid} is left"
    );
    assert_clean(&c, &id);
}
