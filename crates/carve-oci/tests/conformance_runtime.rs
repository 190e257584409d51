//! runtime-spec conformance, runtime.md: the state, the lifecycle and the five operations
//! (state, create, start, kill, delete), each MUST checked through the real binary.

mod common;
use common::*;
use serde_json::json;

#[test]
fn state_has_the_required_fields_in_each_status() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("st", &["sleep", "1000"]);
    e.config["annotations"] = json!({"com.example.key": "value"});
    e.write_config();
    let _g = e.create();
    let st = e.state();
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(st["id"], e.id.as_str());
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().expect("pid is an int when created");
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    let bundle = st["bundle"].as_str().unwrap();
    assert!(bundle.starts_with('/'), "bundle must be absolute: {bundle}");
    assert_eq!(
        std::fs::canonicalize(bundle).unwrap(),
        std::fs::canonicalize(&e.bundle).unwrap()
    );
    assert_eq!(st["annotations"]["com.example.key"], "value");
    e.ok(&["start", &e.id]);
    let st = e.state();
    assert_eq!(st["status"], "running");
    assert_eq!(
        st["pid"].as_i64(),
        Some(pid),
        "the container process keeps its pid"
    );
    e.ok(&["kill", &e.id, "KILL"]);
    e.wait_status("stopped");
    // only the values the spec defines: creating, created, running, stopped (+ runc's paused)
    assert_eq!(e.state()["status"], "stopped");
}

#[test]
fn operations_without_an_id_or_bundle_are_errors() {
    if !require_root() {
        return;
    }
    let e = Env::new("noid", &["true"]);
    for args in [
        vec!["state"],
        vec!["start"],
        vec!["kill"],
        vec!["delete"],
        vec!["create"],
    ] {
        let o = e.oci(&args);
        assert!(!o.status.success(), "{args:?} without an id succeeded");
    }
    // create with a bundle that is not one
    e.fails_with(
        &["create", "--bundle", "/nonexistent-carve-bundle", &e.id],
        &["config.json"],
    );
    e.assert_gone();
    // without --bundle the current directory is the bundle (runc): here one without config.json
    let o = std::process::Command::new(BIN)
        .arg("--root")
        .arg(&e.root)
        .args(["create", &e.id])
        .current_dir(e.dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}", e.dir.path().join("config.json").display())),
        "{err}"
    );
    e.assert_gone();
    // and in the bundle directory it works
    let o = std::process::Command::new(BIN)
        .arg("--root")
        .arg(&e.root)
        .args(["create", &e.id])
        .current_dir(&e.bundle)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let _g = Guard { env: &e };
    assert!(o.success());
    assert_eq!(e.status(), "created");
}

#[test]
fn a_container_that_does_not_exist_is_an_error_for_every_operation() {
    if !require_root() {
        return;
    }
    let e = Env::new("nx", &["true"]);
    for op in ["state", "start", "kill", "delete", "pause", "resume", "ps"] {
        let err = e.fails(&[op, "carve-no-such-container"]);
        assert!(err.contains("does not exist"), "{op}: {err}");
    }
}

#[test]
fn create_with_a_taken_or_invalid_id_fails_and_makes_nothing() {
    if !require_root() {
        return;
    }
    let e = Env::new("dup", &["sleep", "1000"]);
    let _g = e.create();
    let pid = e.init_pid();
    let b = e.bundle.to_str().unwrap().to_string();
    e.fails_with(&["create", "--bundle", &b, &e.id], &["exists"]);
    assert_eq!(e.init_pid(), pid, "the first container is untouched");
    assert_eq!(e.status(), "created");
    for bad in ["../escape", "a/b", "", ".", "carve x"] {
        let o = e.oci(&["create", "--bundle", &b, bad]);
        assert!(!o.status.success(), "id {bad:?} accepted");
    }
    let list = e.ok(&["list", "-q"]);
    assert_eq!(list.lines().collect::<Vec<_>>(), [e.id.as_str()]);
}

#[test]
fn create_applies_the_config_but_does_not_run_the_program() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("norun", &["sh", "-c", "touch /ran"]);
    e.config["hostname"] = json!("carve-created");
    e.config["linux"]["resources"] = json!({"pids": {"limit": 50}});
    e.write_config();
    let _g = e.create();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !e.rootfs().join("ran").exists(),
        "process.args ran at create"
    );
    // everything but process is applied already: hostname, cgroup limits, namespaces
    let out = e.ok(&[
        "exec",
        &e.id,
        "sh",
        "-c",
        "hostname; cat /sys/fs/cgroup/pids/pids.max",
    ]);
    let want_pids = if pure_v2() { "max" } else { "50" };
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "carve-created");
    if !pure_v2() {
        assert_eq!(l[1], want_pids);
    }
    e.ok(&["start", &e.id]);
    e.wait_status("stopped");
    assert!(e.rootfs().join("ran").exists());
}

#[test]
fn changes_to_config_json_after_create_do_not_affect_the_container() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("cfgchg", &["sh", "-c", "echo $WHO > /who"]);
    e.config["process"]["env"] = json!(["PATH=/bin", "WHO=original"]);
    e.write_config();
    let b = e.bundle.to_str().unwrap().to_string();
    e.ok(&["create", "--bundle", &b, &e.id]);
    e.config["process"]["env"] = json!(["PATH=/bin", "WHO=changed"]);
    e.config["process"]["args"] = json!(["sh", "-c", "echo changed-args > /who"]);
    e.write_config();
    let _g = Guard { env: &e };
    e.ok(&["start", &e.id]);
    e.wait_status("stopped");
    assert_eq!(read(e.rootfs().join("who")), "original");
}

#[test]
fn start_of_a_container_that_is_not_created_fails_without_effect() {
    if !require_root() {
        return;
    }
    let e = Env::new("start2", &["sh", "-c", "echo x >> /starts; sleep 1000"]);
    let _g = e.create_started();
    wait_for("the program's first output", || {
        e.rootfs().join("starts").exists()
    });
    let pid = e.init_pid();
    e.fails_with(&["start", &e.id], &["running"]);
    assert_eq!(e.status(), "running");
    assert_eq!(e.init_pid(), pid);
    e.ok(&["kill", &e.id, "KILL"]);
    e.wait_status("stopped");
    e.fails_with(&["start", &e.id], &["stopped"]);
    assert_eq!(read(e.rootfs().join("starts")), "x", "the program ran once");
}

#[test]
fn a_config_without_process_is_refused() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("noproc", &["true"]);
    e.config.as_object_mut().unwrap().remove("process");
    e.write_config();
    e.create_refused(&["process"]);
}

#[test]
fn kill_signals_the_container_process_and_fails_on_a_stopped_one() {
    if !require_root() {
        return;
    }
    let e = Env::new(
        "kill",
        &[
            "sh",
            "-c",
            "trap 'echo usr1 > /got; exit 7' USR1; while :; do sleep 0.05; done",
        ],
    );
    let _g = e.create();
    // a created container can be signalled too (runtime.md: created or running)
    e.ok(&["kill", &e.id, "0"]);
    e.ok(&["start", &e.id]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    e.ok(&["kill", &e.id, "USR1"]);
    e.wait_status("stopped");
    assert_eq!(read(e.rootfs().join("got")), "usr1");
    e.fails_with(&["kill", &e.id, "TERM"], &["not running"]);
    assert_eq!(e.status(), "stopped");
    // no signal given: SIGTERM, as runc (an image's stopSignal annotation is not used)
    let mut e = Env::new(
        "killdef",
        &[
            "sh",
            "-c",
            "trap 'echo term > /got; exit 0' TERM; while :; do sleep 0.05; done",
        ],
    );
    e.config["annotations"] = json!({"org.opencontainers.image.stopSignal": "SIGUSR1"});
    e.write_config();
    let _g = e.create_started();
    std::thread::sleep(std::time::Duration::from_millis(200));
    e.ok(&["kill", &e.id]);
    e.wait_status("stopped");
    assert_eq!(read(e.rootfs().join("got")), "term");
}

#[test]
fn delete_of_a_running_container_fails_without_effect_and_of_a_created_one_works_as_runc() {
    if !require_root() {
        return;
    }
    let e = Env::new("delrun", &["sleep", "1000"]);
    let _g = e.create_started();
    let pid = e.init_pid();
    e.fails_with(&["delete", &e.id], &["not stopped"]);
    assert_eq!(e.status(), "running");
    assert_eq!(e.init_pid(), pid);
    for d in e.cgroup_dirs() {
        assert!(d.exists(), "delete removed {}", d.display());
    }
    // runc (and so containerd's shim after a failed start) deletes a created container
    // without --force; the spec's text would refuse it (docs/oci-conformance.md)
    let e2 = Env::new("delcr", &["sleep", "1000"]);
    let _g2 = e2.create();
    e2.ok(&["delete", &e2.id]);
    e2.assert_gone();
}

#[test]
fn delete_removes_what_create_made_and_nothing_else() {
    if !require_root() {
        return;
    }
    // Resources that exist before the container and are only used by it: a parent cgroup
    // (cgroupsPath below it), a bind-mount source with its files, a network namespace joined
    // by path. After delete they are all still there; what create made is gone.
    let mut e = Env::new("delown", &["true"]);
    let parent = carve_testkit::unique_name("carve-parent");
    let parent_dirs: Vec<std::path::PathBuf> = e
        .cgroup_dirs()
        .iter()
        .map(|d| d.parent().unwrap().join(&parent))
        .collect();
    struct Rm(Vec<std::path::PathBuf>);
    impl Drop for Rm {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    let _rm = Rm(parent_dirs.clone());
    for d in &parent_dirs {
        std::fs::create_dir(d).unwrap();
    }
    let src = e.dir.path().join("keep");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "kept\n").unwrap();
    let ns = NetNs::new();
    e.config["linux"]["cgroupsPath"] = json!(format!("/{parent}/{}", e.id));
    e.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/keep", "type": "none", "source": src, "options": ["bind"]}));
    for n in e.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = json!(ns.path());
        }
    }
    e.write_config();
    let _g = e.create();
    let child_dirs: Vec<_> = parent_dirs.iter().map(|d| d.join(&e.id)).collect();
    assert!(child_dirs.iter().all(|d| d.exists()));
    e.ok(&["start", &e.id]);
    e.wait_status("stopped");
    e.ok(&["delete", &e.id]);
    for d in &child_dirs {
        assert!(!d.exists(), "left {}", d.display());
    }
    for d in &parent_dirs {
        assert!(d.exists(), "deleted the parent cgroup {}", d.display());
    }
    assert_eq!(read(src.join("f")), "kept");
    assert!(std::path::Path::new(&ns.path()).exists());
    assert!(!e.root.join(&e.id).exists());
}

#[test]
fn a_failed_create_leaves_the_host_as_it_was() {
    if !require_root() {
        return;
    }
    // Fails late, in the container's init (a filesystem type the kernel does not know), after
    // the state dir, cgroups and namespaces were made: all must be gone again.
    let mut e = Env::new("failc", &["true"]);
    e.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "carvefs", "source": "none"}));
    e.write_config();
    e.create_refused(&["carvefs"]);
    let o = e.oci(&["state", &e.id]);
    assert!(!o.status.success());
}

#[test]
fn a_deleted_id_can_be_used_again() {
    if !require_root() {
        return;
    }
    let e = Env::new("reuse", &["true"]);
    for _ in 0..2 {
        let (code, _, err) = e.run();
        assert_eq!(code, 0, "{err}");
        e.assert_gone();
    }
}
