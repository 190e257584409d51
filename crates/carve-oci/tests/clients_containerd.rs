//! containerd (Debian's, with its `ctr` and `containerd-shim-runc-v2`) drives the runtime through
//! `ctr run --runc-binary <carve-oci>`: `--rm` echo, detached run + `task exec`, `task pause/
//! resume`, `task metrics`, `task kill`, and a container that fails to start, whose error — the
//! runtime's last `level=error` line of its `--log-format json` log — must reach the ctr user.
//!
//! Each test starts its own containerd (root, state, socket and config in a temp dir; the CRI
//! plugin off), imports a busybox OCI image tarball built here from busybox-static, and uses its
//! own ctr namespace (so its own cgroup parent `/<namespace>`) and its own `--runc-root`. Drop
//! removes containers, the image, the daemon, leftover shims, cgroups and mounts.

mod clients_support;
#[path = "clients_support/containerd.rs"]
mod containerd;
use clients_support::*;
use containerd::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

#[test]
fn containerd_run_rm_echo_hi() {
    if !require_root() {
        return;
    }
    let c = Containerd::new();
    let id = carve_testkit::unique_name("echo");
    let out = ok(&mut c.run(&["--rm", &c.image, &id, "echo", "hi"]), LIMIT);
    assert_eq!(out, "hi\n");
    assert_eq!(c.ok(&["container", "ls", "-q"]), "");
}

#[test]
fn containerd_detached_exec_pause_resume_metrics_kill() {
    if !require_root() {
        return;
    }
    let c = Containerd::new();
    let id = carve_testkit::unique_name("det");
    c.run_detached(&id, &["sleep", "1000"], "RUNNING");
    let pid = c.task_pid(&id);
    assert!(cgroup_of(pid, "memory").unwrap().contains(&c.ns));

    let out = c.ok(&["task", "exec", "--exec-id", "e1", &id, "echo", "from-exec"]);
    assert_eq!(out, "from-exec\n");
    let o = run_limited(
        c.ctr()
            .args(["task", "exec", "--exec-id", "e2", &id, "sh", "-c", "exit 5"]),
        LIMIT,
    );
    assert!(!o.status.success(), "exec's exit 5 was lost");

    c.ok(&["task", "pause", &id]);
    c.wait_status(&id, "PAUSED");
    assert_eq!(cgroup_file(pid, "freezer", "freezer.state"), "FROZEN");
    c.ok(&["task", "resume", &id]);
    c.wait_status(&id, "RUNNING");

    let m = c.ok(&["task", "metrics", &id]);
    assert!(m.contains("memory.usage_in_bytes"), "{m}");
    assert!(m.contains("pids.current"), "{m}");

    c.ok(&["task", "kill", "-s", "SIGKILL", &id]);
    c.wait_status(&id, "STOPPED");
    c.ok(&["task", "rm", &id]);
    c.ok(&["container", "rm", &id]);
    assert_eq!(c.ok(&["container", "ls", "-q"]), "");
}

/// The runtime's own message for a program that does not exist: its last `level=error` line when
/// run directly with `--log-format json`.
fn runtime_error_for_missing_program(dir: &Path) -> String {
    let rt = runtime();
    let bundle = dir.join("badbundle");
    std::fs::create_dir_all(&bundle).unwrap();
    busybox_rootfs(&bundle.join("rootfs"));
    ok(Command::new(&rt).arg("spec").current_dir(&bundle), LIMIT);
    let cfgp = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfgp).unwrap()).unwrap();
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["/no/such/prog"]);
    std::fs::write(&cfgp, cfg.to_string()).unwrap();
    let root = dir.join("badroot");
    let log = dir.join("bad.log");
    let id = carve_testkit::unique_name("bad");
    let mut c = Command::new(&rt);
    c.arg("--root")
        .arg(&root)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(&bundle)
        .arg(&id);
    let o = run_limited(&mut c, LIMIT);
    let _ = run_limited(
        Command::new(&rt)
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &id]),
        LIMIT,
    );
    assert!(!o.status.success(), "create of a missing program succeeded");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next()
        .unwrap_or_else(|| panic!("no level=error line in the runtime's json log: {text}"))
}

#[test]
fn containerd_shows_the_runtime_error_to_the_user() {
    if !require_root() {
        return;
    }
    let c = Containerd::new();
    let want = runtime_error_for_missing_program(c.dir.path());
    let id = carve_testkit::unique_name("fail");
    let err = fails(&mut c.run(&["--rm", &c.image, &id, "/no/such/prog"]), LIMIT);
    assert!(
        err.contains(&want),
        "ctr's error does not carry the runtime's message {want:?}: {err}"
    );
    // nothing of the failed container is left
    assert_eq!(c.ok(&["task", "ls", "-q"]), "");
}
