//! Hooks (issue 12 item 4): two hooks per phase run in the runtime-spec's order (prestart,
//! createRuntime, createContainer, startContainer, poststart, poststop), through
//! create/start/delete and through `run`; a failing poststart hook fails `start`, stops the
//! container and runs no further poststart hook; a startContainer hook without `env` sees the
//! container process's environment.

mod common;

use common::*;
use serde_json::{json, Value};

/// A hook appending `name` to `log` (a host path; the startContainer hooks run inside the
/// container, where the log's directory is bind-mounted at /hooklog).
fn hook(name: &str, log: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {log}")]})
}

/// An Env whose config has two hooks in every phase, logging to `dir/hooklog/log`.
fn hooked(prefix: &str, args: &[&str]) -> (Env, std::path::PathBuf) {
    let mut e = Env::new(prefix, args);
    let dir = e.dir.path().join("hooklog");
    std::fs::create_dir_all(&dir).unwrap();
    let host_log = dir.join("log");
    let h = host_log.to_str().unwrap().to_string();
    let mut hooks = json!({});
    for phase in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        hooks[phase] = json!([
            hook(&format!("{phase}1"), &h),
            hook(&format!("{phase}2"), &h)
        ]);
    }
    hooks["startContainer"] = json!([
        hook("startContainer1", "/hooklog/log"),
        hook("startContainer2", "/hooklog/log")
    ]);
    e.config["hooks"] = hooks;
    e.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/hooklog", "type": "bind", "source": dir, "options": ["rbind", "rw"]}));
    e.write_config();
    (e, host_log)
}

const ORDER: &[&str] = &[
    "prestart1",
    "prestart2",
    "createRuntime1",
    "createRuntime2",
    "createContainer1",
    "createContainer2",
    "startContainer1",
    "startContainer2",
    "poststart1",
    "poststart2",
    "poststop1",
    "poststop2",
];

fn log_of(p: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn two_hooks_per_phase_run_in_order_through_create_start_delete_and_run() {
    if !require_root() {
        return;
    }
    let (e, log) = hooked("hkord", &["true"]);
    let g = e.create();
    assert_eq!(log_of(&log), ORDER[..6], "after create");
    e.ok(&["start", &e.id]);
    assert_eq!(log_of(&log), ORDER[..10], "after start");
    e.wait_status("stopped");
    e.ok(&["delete", &e.id]);
    assert_eq!(log_of(&log), ORDER, "after delete");
    drop(g);
    e.assert_gone();

    // `run` in the foreground: the same twelve, in the same order.
    std::fs::remove_file(&log).unwrap();
    e.run_ok();
    assert_eq!(log_of(&log), ORDER, "run");
    e.assert_gone();
}

/// runtime-spec (poststart): if a hook fails, the runtime MUST generate an error, stop the
/// container and continue the lifecycle at step 12 (no further poststart hook); runc kills the
/// container with SIGKILL and `start` fails.
#[test]
fn a_failing_poststart_hook_fails_start_and_stops_the_container() {
    if !require_root() {
        return;
    }
    let (mut e, log) = hooked("hkfail", &["sleep", "60"]);
    let h = log.to_str().unwrap().to_string();
    e.config["hooks"]["poststart"] = json!([
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo poststart1 >> {h}; echo broken >&2; exit 3")]},
        hook("poststart2", &h)
    ]);
    e.write_config();
    let _g = e.create();
    e.fails_with(
        &["start", &e.id],
        &["poststart hook /bin/sh failed with status 3", "broken"],
    );
    e.wait_status("stopped");
    let l = log_of(&log);
    assert_eq!(l.last().map(String::as_str), Some("poststart1"), "{l:?}");
    assert!(!l.iter().any(|x| x == "poststart2"), "{l:?}");
    e.ok(&["delete", &e.id]);
    assert_eq!(log_of(&log)[l.len()..], ["poststop1", "poststop2"]);
    e.assert_gone();
}

/// A startContainer hook without `env` runs with the container process's environment (runc's
/// hooks inherit it); one with `env` gets exactly that.
#[test]
fn a_start_container_hook_without_env_sees_the_process_environment() {
    if !require_root() {
        return;
    }
    let (mut e, log) = hooked("hkenv", &["true"]);
    e.config["process"]["env"] = json!(["PATH=/bin:/usr/bin", "CARVE_HOOK_ENV=from-process"]);
    e.config["hooks"]["startContainer"] = json!([
        {"path": "/bin/sh", "args": ["sh", "-c", "echo \"no-env:$CARVE_HOOK_ENV:$PATH\" >> /hooklog/log"]},
        {"path": "/bin/sh", "args": ["sh", "-c", "echo \"own-env:$CARVE_HOOK_ENV:$OWN\" >> /hooklog/log"],
         "env": ["OWN=mine"]}
    ]);
    e.write_config();
    e.run_ok();
    let l = log_of(&log);
    assert!(
        l.contains(&"no-env:from-process:/bin:/usr/bin".to_string()),
        "{l:?}"
    );
    assert!(l.contains(&"own-env::mine".to_string()), "{l:?}");
    e.assert_gone();
}
