//! Lifecycle and statuses through the real binary: create/start/state/kill/delete/run/exec/ps/
//! pause/resume/list/events/update/features, and bad input that leaves nothing behind.

mod common;
use common::*;
use serde_json::{json, Value};

#[test]
fn create_start_kill_delete_moves_through_every_status() {
    if !require_root() {
        return;
    }
    let e = Env::new("life", &["sleep", "1000"]);
    let pidfile = e.dir.path().join("pid");
    let b = e.bundle.to_str().unwrap();
    e.ok(&[
        "create",
        "--bundle",
        b,
        "--pid-file",
        pidfile.to_str().unwrap(),
        &e.id,
    ]);
    let _g = Guard { env: &e };
    let st = e.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], json!(e.id));
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(st["bundle"], json!(e.bundle));
    assert_eq!(st["rootfs"], json!(e.rootfs()));
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(st["owner"], "root");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid.to_string());
    // create returned while init waits in its namespaces: its pid namespace is not ours.
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(ns.to_string_lossy(), host_ns("pid"));
    // a second create with the same id is refused
    e.fails_with(&["create", "--bundle", b, &e.id], &["already exists"]);

    e.ok(&["start", &e.id]);
    assert_eq!(e.status(), "running");
    let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmd.starts_with("sleep"), "{cmd}");
    e.fails_with(&["start", &e.id], &["running"]);

    let list: Value = serde_json::from_str(&e.ok(&["list", "--format", "json"])).unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == json!(e.id) && c["status"] == "running"));
    assert!(e.ok(&["list", "-q"]).lines().any(|l| l == e.id));

    e.fails_with(&["delete", &e.id], &["not stopped"]);

    e.ok(&["kill", &e.id, "KILL"]);
    e.wait_status("stopped");
    assert_eq!(e.state()["pid"], 0);
    e.fails_with(&["kill", &e.id, "TERM"], &["not running"]);

    e.ok(&["delete", &e.id]);
    e.fails_with(&["state", &e.id], &["does not exist"]);
    e.fails_with(&["delete", &e.id], &["does not exist"]);
    e.assert_gone();
}

#[test]
fn signals_by_name_number_and_sig_prefix_and_kill_all() {
    if !require_root() {
        return;
    }
    // sh as pid 1 with traps: signals from the host reach it once the traps are set (before
    // that, SIG_DFL on a pid-namespace init ignores them), so wait for its marker each time.
    let e = Env::new(
        "sig",
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; trap 'exit 8' USR1; touch /tmp/ready; sleep 1000 & wait",
        ],
    );
    let ready = e.rootfs().join("tmp/ready");
    let started = || {
        let _ = std::fs::remove_file(&ready);
        e.ok(&["start", &e.id]);
        for _ in 0..500 {
            if ready.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the container's traps were never set");
    };
    let _g = e.create();
    started();
    e.ok(&["kill", &e.id, "SIGUSR1"]);
    e.wait_status("stopped");
    e.ok(&["delete", &e.id]);
    for sig in ["TERM", "15", "SIGTERM"] {
        let _g = e.create();
        started();
        e.ok(&["kill", &e.id, sig]);
        e.wait_status("stopped");
        e.ok(&["delete", &e.id]);
    }
    let _g = e.create();
    started();
    e.ok(&["kill", "--all", &e.id, "KILL"]);
    e.wait_status("stopped");
    e.ok(&["delete", &e.id]);
    let err = e.fails(&["kill", &e.id, "NOPE"]);
    assert!(
        err.contains("unknown signal") || err.contains("does not exist"),
        "{err}"
    );
    e.assert_gone();
}

#[test]
fn delete_force_of_running_and_created_containers_leaves_nothing() {
    if !require_root() {
        return;
    }
    let e = Env::new("force", &["sleep", "1000"]);
    let _g = e.create();
    let pid = e.state()["pid"].as_i64().unwrap();
    // a created container may be deleted without --force (runc does the same)
    e.ok(&["delete", &e.id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.contains(") Z")
        }
    );
    e.assert_gone();
    let _g = e.create_started();
    let t = std::time::Instant::now();
    e.ok(&["delete", "--force", &e.id]);
    eprintln!("delete --force of a running container: {:?}", t.elapsed());
    e.assert_gone();
}

#[test]
fn run_returns_the_exit_code_and_cleans_up() {
    if !require_root() {
        return;
    }
    let e = Env::new("run", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let (code, out, err) = e.run();
    assert_eq!(code, 3);
    assert_eq!(out, "out\n");
    assert!(err.contains("err"), "{err}");
    e.assert_gone();
    let mut e = Env::new("run", &["/bin/true"]);
    e.config["process"]["args"] = json!(["/bin/true"]);
    e.write_config();
    let b = e.bundle.to_str().unwrap();
    e.ok(&["run", "--detach", "--bundle", b, &e.id]);
    let _g = Guard { env: &e };
    e.wait_status("stopped");
    e.ok(&["delete", &e.id]);
    e.assert_gone();
}

#[test]
fn exec_ps_pause_resume_update_events() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("exec", &["sleep", "1000"]);
    e.config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    e.config["linux"]["resources"]["pids"] = json!({"limit": 50});
    e.write_config();
    let _g = e.create();
    // exec works in a created container too
    assert_eq!(e.ok(&["exec", &e.id, "echo", "created"]), "created\n");
    e.ok(&["start", &e.id]);
    assert_eq!(
        e.ok(&["exec", &e.id, "sh", "-c", "echo $$ $FOO; pwd"])
            .lines()
            .count(),
        2
    );
    let out = e.ok(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        &e.id,
        "sh",
        "-c",
        "echo $FOO; pwd",
    ]);
    assert_eq!(out, "bar\n/tmp\n");
    let o = e.oci(&["exec", &e.id, "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    // a process.json
    let p = e.dir.path().join("process.json");
    std::fs::write(&p, serde_json::to_vec(&json!({
        "args": ["sh", "-c", "id -u; cat /proc/self/oom_score_adj"], "cwd": "/", "user": {"uid": 65534, "gid": 65534},
        "env": ["PATH=/bin"], "oomScoreAdj": 100
    })).unwrap()).unwrap();
    assert_eq!(
        e.ok(&["exec", "--process", p.to_str().unwrap(), &e.id]),
        "65534\n100\n"
    );
    // detached exec with a pid file, visible in ps
    let epid: i32 = e.exec_detached(&[], "exec").parse().unwrap();
    let pids: Vec<i32> = serde_json::from_str(&e.ok(&["ps", "--format", "json", &e.id])).unwrap();
    assert!(pids.contains(&epid), "{pids:?} lacks {epid}");
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(e.ok(&["ps", &e.id]).contains("sleep"));
    // the exec'd process sits in the container's namespaces and cgroups
    let init = e.state()["pid"].as_i64().unwrap();
    for ns in ["pid", "mnt", "net", "ipc", "uts"] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{epid}/ns/{ns}")).unwrap(),
            std::fs::read_link(format!("/proc/{init}/ns/{ns}")).unwrap(),
            "{ns}"
        );
    }
    // pause / resume
    e.ok(&["pause", &e.id]);
    assert_eq!(e.status(), "paused");
    e.fails_with(&["exec", &e.id, "true"], &["paused"]);
    e.ok(&["resume", &e.id]);
    assert_eq!(e.status(), "running");
    // memory limit visible inside, then updated
    let mem = cg_file("memory/memory.limit_in_bytes", "memory.max");
    let lim = e.ok(&["exec", &e.id, "cat", &mem]);
    assert_eq!(lim.trim(), (64u64 << 20).to_string());
    let r = e.dir.path().join("res.json");
    std::fs::write(&r, r#"{"memory":{"limit":134217728},"pids":{"limit":70}}"#).unwrap();
    e.ok(&["update", "--resources", r.to_str().unwrap(), &e.id]);
    let lim = e.ok(&["exec", &e.id, "cat", &mem]);
    assert_eq!(lim.trim(), "134217728");
    let pids = cg_file("pids/pids.max", "pids.max");
    assert_eq!(e.ok(&["exec", &e.id, "cat", &pids]).trim(), "70");
    let ev: Value = serde_json::from_str(e.ok(&["events", "--stats", &e.id]).trim()).unwrap();
    assert_eq!(ev["type"], "stats");
    assert!(ev["data"]["memory"].is_object(), "{ev}");
    e.ok(&["delete", "--force", &e.id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{epid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{epid}/cmdline"))
                .unwrap_or_default()
                .is_empty()
    );
    e.assert_gone();
}

#[test]
fn features_spec_version_and_json_log() {
    if !require_root() {
        return;
    }
    let e = Env::new("feat", &["true"]);
    let f: Value = serde_json::from_str(&e.ok(&["features"])).unwrap();
    assert_eq!(f["ociVersionMax"], "1.3.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("time")));
    assert!(e.ok(&["--version"]).contains("spec: 1.2.0"));
    e.fails_with(
        &["spec", "--bundle", e.bundle.to_str().unwrap()],
        &["exists"],
    );
    // json log: the last line is a level=error object with msg and time
    let log = e.dir.path().join("log.json");
    let o = e.oci(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope-carve",
    ]);
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("does not exist"));
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
    // runc's single-dash long flags and --systemd-cgroup are accepted
    let o = e.oci(&["-log-format", "json", "--systemd-cgroup", "list", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn bad(e: &mut Env, edit: impl FnOnce(&mut Value), want: &[&str]) {
    edit(&mut e.config);
    e.write_config();
    e.create_refused(want);
}

#[test]
fn bad_config_names_the_json_path_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let fresh = || Env::new("bad", &["true"]);
    bad(
        &mut fresh(),
        |c| c["process"]["args"] = json!("sh"),
        &["process.args", "expected a sequence"],
    );
    bad(
        &mut fresh(),
        |c| c["linux"]["namespaces"][1]["type"] = json!("bogus"),
        &["linux.namespaces[1].type", "unknown variant"],
    );
    bad(
        &mut fresh(),
        |c| c["process"]["rlimits"][0]["type"] = json!("RLIMIT_BOGUS"),
        &["process.rlimits[0].type"],
    );
    bad(
        &mut fresh(),
        |c| c["linux"]["intelRdt"] = json!({"closID": "x"}),
        &["linux.intelRdt", "not supported"],
    );
    bad(
        &mut fresh(),
        |c| c["process"]["args"] = json!([]),
        &["process.args", "non-empty"],
    );
    bad(
        &mut fresh(),
        |c| c["root"]["path"] = json!("nope"),
        &["root.path", "not a directory"],
    );
    bad(
        &mut fresh(),
        |c| c["mounts"][0]["destination"] = json!(5),
        &["mounts[0].destination"],
    );
    bad(
        &mut fresh(),
        |c| c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_NOPE"}),
        &["linux.seccomp.defaultAction"],
    );
    bad(
        &mut fresh(),
        |c| c["ociVersion"] = json!("2.0.0"),
        &["ociVersion", "1.x"],
    );
    bad(
        &mut fresh(),
        |c| c["linux"]["sysctl"] = json!({"kernel.panic": "1"}),
        &["linux.sysctl.kernel.panic"],
    );
    // malformed JSON
    let e = fresh();
    std::fs::write(
        e.bundle.join("config.json"),
        "{\"ociVersion\": \"1.2.0\", \"process\": {",
    )
    .unwrap();
    e.create_refused(&["config.json", "EOF"]);
    // a failing setup step (missing program) also leaves nothing: no process, no cgroup, no state
    let mut e = fresh();
    e.config["process"]["args"] = json!(["/no/such/program"]);
    e.write_config();
    e.fails_with(
        &["create", "--bundle", e.bundle.to_str().unwrap(), &e.id],
        &["/no/such/program"],
    );
    e.assert_gone();
    // as runc: delete --force of what does not exist succeeds; state still says it does not exist
    e.ok(&["delete", "--force", &e.id]);
    e.fails_with(&["state", &e.id], &["does not exist"]);
}

#[test]
fn a_runtime_killed_at_any_point_is_cleaned_up_by_delete_force() {
    use std::os::unix::process::ExitStatusExt;
    if !require_root() {
        return;
    }
    let e = Env::new("crash", &["sleep", "1000"]);
    let b = e.bundle.to_str().unwrap().to_string();
    for &point in carve_container::fault::POINTS {
        let _g = Guard { env: &e };
        let fault = [("CARVE_OCI_FAULT", point)];
        let (cmd, args): (&str, Vec<&str>) = match point.split(':').next().unwrap() {
            "create" => ("create", vec!["create", "--bundle", &b, &e.id]),
            "start" => {
                e.ok(&["create", "--bundle", &b, &e.id]);
                ("start", vec!["start", &e.id])
            }
            _ => {
                e.ok(&["create", "--bundle", &b, &e.id]);
                e.ok(&["start", &e.id]);
                ("delete", vec!["delete", "--force", &e.id])
            }
        };
        let o = e.oci_env(&args, &fault);
        assert_eq!(
            o.status.signal(),
            Some(libc::SIGKILL),
            "{cmd} at {point} was not killed"
        );
        // whatever is left is found and removed
        let pid = e.oci(&["state", &e.id]);
        let pid = serde_json::from_slice::<Value>(&pid.stdout)
            .ok()
            .and_then(|v| v["pid"].as_i64());
        let o = e.oci(&["delete", "--force", &e.id]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || err.contains("does not exist"),
            "{point}: {err}"
        );
        e.assert_gone();
        if let Some(p) = pid.filter(|p| *p > 0) {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            assert!(
                stat.is_empty() || stat.contains(") Z"),
                "{point}: init {p} still alive"
            );
        }
    }
}
