//! runtime-spec conformance, hooks (config.md "POSIX-platform Hooks"): the namespace each hook
//! runs in, where its path resolves, the pid its state carries, its args and env, and that a
//! createContainer hook runs before pivot_root. The order of hooks and the failure rules are in
//! hooks_order.rs and process.rs.

mod common;
use common::*;
use serde_json::{json, Value};

#[test]
fn each_hook_runs_in_its_namespace_with_the_pid_seen_from_there() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("hookns", &["sleep", "1000"]);
    let out = e.dir.path().join("hookout");
    std::fs::create_dir_all(&out).unwrap();
    let o = out.display().to_string();
    let bundle = e.bundle.display().to_string();
    // Host-side hooks write into the host dir, container-side ones into its bind at /hookout.
    let body = |dir: &str, name: &str| {
        format!(
            "cat > {dir}/{name}.state; readlink /proc/self/ns/mnt > {dir}/{name}.mnt; \
             readlink /proc/self/ns/pid > {dir}/{name}.pid; echo \"$HOOKVAR $0 $1\" > {dir}/{name}.env; \
             test -d {bundle} && echo bundle-visible >> {dir}/{name}.env; true"
        )
    };
    let host = |name: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c", body(&o, name), "arg0", "arg1"],
            "env": [format!("HOOKVAR={name}-env")]})
    };
    // startContainer's path resolves in the container: this script exists only in the rootfs.
    std::fs::write(
        e.rootfs().join("start-hook"),
        format!("#!/bin/sh\n{}\n", body("/hookout", "startContainer")),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        e.rootfs().join("start-hook"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert!(!std::path::Path::new("/start-hook").exists());
    e.config["hooks"] = json!({
        "prestart": [host("prestart")],
        "createRuntime": [host("createRuntime")],
        "createContainer": [host("createContainer")],
        "startContainer": [{"path": "/start-hook", "args": ["start-hook", "s1"],
            "env": ["HOOKVAR=startContainer-env"]}],
        "poststart": [host("poststart")],
        "poststop": [host("poststop")]
    });
    e.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/hookout", "type": "none", "source": out, "options": ["rbind"]}),
    );
    e.write_config();
    let g = e.create();
    let init = e.init_pid();
    let init_mnt = std::fs::read_link(format!("/proc/{init}/ns/mnt")).unwrap();
    let init_pidns = std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap();
    e.ok(&["start", &e.id]);
    e.ok(&["delete", "--force", &e.id]);
    drop(g);
    let get = |name: &str, what: &str| read(out.join(format!("{name}.{what}")));
    let state = |name: &str| -> Value { serde_json::from_str(&get(name, "state")).unwrap() };
    let (host_mnt, host_pid) = (host_ns("mnt"), host_ns("pid"));
    for name in ["prestart", "createRuntime", "poststart", "poststop"] {
        assert_eq!(
            get(name, "mnt"),
            host_mnt,
            "{name} runs in the runtime mount ns"
        );
        assert_eq!(
            get(name, "pid"),
            host_pid,
            "{name} runs in the runtime pid ns"
        );
        assert_eq!(
            get(name, "env").lines().collect::<Vec<_>>(),
            [format!("{name}-env arg0 arg1").as_str(), "bundle-visible"],
            "{name}: env and args as given"
        );
    }
    for name in ["prestart", "createRuntime", "poststart"] {
        assert_eq!(
            state(name)["pid"],
            json!(init),
            "{name}: pid seen by the runtime"
        );
    }
    // createContainer: the container's mount namespace, before pivot_root (the runtime's
    // paths, like the bundle, still resolve), pid as the container sees it
    let name = "createContainer";
    assert_eq!(get(name, "mnt"), init_mnt.to_str().unwrap());
    assert_ne!(get(name, "mnt"), host_mnt);
    assert_eq!(get(name, "pid"), init_pidns.to_str().unwrap());
    assert_eq!(state(name)["pid"], json!(1));
    assert_eq!(
        get(name, "env").lines().collect::<Vec<_>>(),
        ["createContainer-env arg0 arg1", "bundle-visible"]
    );
    // startContainer: in the container after pivot_root (the bundle path is gone), its path
    // resolved there
    let name = "startContainer";
    assert_eq!(get(name, "mnt"), init_mnt.to_str().unwrap());
    assert_eq!(state(name)["pid"], json!(1));
    assert_eq!(get(name, "env"), "startContainer-env /start-hook s1");
}

#[test]
fn failing_create_container_start_container_and_poststop_hooks() {
    if !require_root() {
        return;
    }
    let fail = json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-broke >&2; exit 4"]}]);
    // createContainer fails: create fails naming it, nothing is left
    let mut e = Env::new("hookcc", &["true"]);
    e.config["hooks"] = json!({"createContainer": fail});
    e.write_config();
    e.create_refused(&["createContainer", "hook-broke"]);
    // startContainer fails: start fails naming it, the container is stopped, the program
    // never ran, delete cleans up
    let mut e = Env::new("hooksc", &["touch", "/ran"]);
    e.config["hooks"] = json!({"startContainer": fail});
    e.write_config();
    let g = e.create();
    e.fails_with(&["start", &e.id], &["startContainer", "hook-broke"]);
    e.wait_status("stopped");
    assert!(!e.rootfs().join("ran").exists());
    e.ok(&["delete", &e.id]);
    drop(g);
    e.assert_gone();
    // a failing poststop hook is a warning: delete succeeds and the next poststop hook runs
    let mut e = Env::new("hookps", &["true"]);
    let mark = e.dir.path().join("second-ran");
    e.config["hooks"] = json!({"poststop": [fail[0].clone(),
        {"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", mark.display())]}]});
    e.write_config();
    let g = e.create_started();
    e.wait_status("stopped");
    let o = e.oci(&["delete", &e.id]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warn") && err.contains("poststop"), "{err}");
    assert!(mark.exists(), "the second poststop hook did not run");
    drop(g);
    e.assert_gone();
}
