//! No operation waits without bound (issue 12): every wait of the runtime on another runtime
//! process (the state directory's flock) or on the container's processes (init's answers during
//! `create`, the exec during `start`) ends within `CARVE_OCI_TIMEOUT` with an error naming
//! what it waited for; `delete --force` behind a stuck `create` (SIGSTOPped while it holds the
//! lock, at each stage) takes over after its bound, kills the container's processes through
//! their pidfds and cleans up, as runc does.
//!
//! The stuck runtime is made with the fault points (`CARVE_OCI_FAULT=POINT:stop` SIGSTOPs it
//! there); every wait here is itself bounded and fails the test naming what did not return.

mod common;

use common::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `carve-oci create` of `e` that SIGSTOPs itself at fault point `point`, once it is stopped.
fn stuck_create(e: &Env, point: &str) -> Child {
    let out = e
        .dir
        .path()
        .join(format!("stuck-{}", point.replace(':', "-")));
    let mut c = Command::new(BIN)
        .arg("--root")
        .arg(&e.root)
        .args(["create", "--bundle"])
        .arg(&e.bundle)
        .arg(&e.id)
        .env("CARVE_OCI_FAULT", format!("{point}:stop"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let pid = c.id();
    wait_for(&format!("create to stop at {point}"), || {
        if let Ok(Some(st)) = c.try_wait() {
            panic!("create exited ({st}) instead of stopping at {point}");
        }
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('T')))
            .unwrap_or(false)
    });
    c
}

/// Kills and reaps the stuck runtime (the test's cleanup).
fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Runs carve-oci with `CARVE_OCI_TIMEOUT=bound` and fails the test if it has not returned
/// after `limit`: (success, stderr, how long it took).
fn bounded(e: &Env, bound: &str, args: &[&str], limit: Duration) -> (bool, String, Duration) {
    let t = Instant::now();
    let err = e.dir.path().join("bounded.err");
    let mut c = Command::new(BIN)
        .arg("--root")
        .arg(&e.root)
        .args(args)
        .env("CARVE_OCI_TIMEOUT", bound)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return (
                st.success(),
                std::fs::read_to_string(&err).unwrap(),
                t.elapsed(),
            );
        }
        if t.elapsed() > limit {
            let _ = c.kill();
            let _ = c.wait();
            panic!("carve-oci {args:?} did not return within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `delete --force` behind a `create` stopped while holding the lock — before state.json,
/// with init waiting for the runtime, and with init ready — returns (after its 2 s bound) and
/// leaves nothing: no state, no cgroup, no live init.
#[test]
fn delete_force_behind_a_stopped_create_returns_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    for point in ["create:dir", "create:go", "create:ready"] {
        let e = Env::new("bwdel", &["sleep", "60"]);
        let c = stuck_create(&e, point);
        let init = std::fs::read(e.root.join(&e.id).join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["pid"].as_i64())
            .filter(|p| *p > 0);
        let (ok, err, took) = bounded(
            &e,
            "30",
            &["delete", "--force", &e.id],
            Duration::from_secs(15),
        );
        assert!(ok, "{point}: delete --force failed: {err}");
        assert!(
            took >= Duration::from_secs(2),
            "{point}: took {took:?}: the lock was free?"
        );
        assert!(err.contains("deleting without it"), "{point}: {err}");
        if let Some(pid) = init {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                stat.is_empty()
                    || stat
                        .rsplit_once(") ")
                        .is_some_and(|(_, r)| r.starts_with('Z')),
                "{point}: init {pid} still runs: {stat}"
            );
        }
        kill(c);
        e.assert_gone();
    }
}

/// The lock waits of every other command end with an error naming the lock.
#[test]
fn commands_behind_a_stopped_create_fail_naming_the_lock() {
    if !require_root() {
        return;
    }
    let e = Env::new("bwlock", &["sleep", "60"]);
    let c = stuck_create(&e, "create:ready");
    for args in [
        vec!["state", &e.id],
        vec!["start", &e.id],
        vec!["kill", &e.id, "KILL"],
        vec!["pause", &e.id],
        vec!["exec", &e.id, "true"],
        vec!["delete", &e.id],
    ] {
        let (ok, err, _) = bounded(&e, "1", &args, Duration::from_secs(10));
        assert!(!ok, "{args:?} succeeded behind a held lock");
        assert!(err.contains("waiting for the lock"), "{args:?}: {err}");
    }
    let (ok, err, _) = bounded(
        &e,
        "1",
        &["delete", "--force", &e.id],
        Duration::from_secs(10),
    );
    assert!(ok, "{err}");
    kill(c);
    e.assert_gone();
}

/// `create` waits for init's setup answers within the bound: a createContainer hook that
/// never ends (no timeout of its own) fails create naming the wait, and nothing is left.
#[test]
fn create_whose_init_hangs_fails_within_the_bound() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("bwinit", &["true"]);
    e.config["hooks"] =
        json!({"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "1000"]}]});
    e.write_config();
    let b = e.bundle.to_str().unwrap().to_string();
    let (ok, err, _) = bounded(
        &e,
        "1.5",
        &["create", "--bundle", &b, &e.id],
        Duration::from_secs(15),
    );
    assert!(!ok, "create succeeded");
    assert!(
        err.contains("waiting for the container's init to finish its setup")
            && err.contains("wait bound"),
        "{err}"
    );
    e.assert_gone();
}

/// `start` waits for init's exec within the bound: a stopped init fails start naming the wait;
/// `delete --force` still removes the container.
#[test]
fn start_whose_init_is_stopped_fails_within_the_bound() {
    if !require_root() {
        return;
    }
    let e = Env::new("bwstart", &["true"]);
    let g = e.create();
    let pid = e.init_pid() as i32;
    // SAFETY: kill has no memory effects; pid is this test's container init.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let (ok, err, _) = bounded(&e, "1", &["start", &e.id], Duration::from_secs(15));
    assert!(!ok, "start succeeded with a stopped init");
    assert!(
        err.contains("waiting for the container's init to exec") && err.contains("wait bound"),
        "{err}"
    );
    let (ok, err, _) = bounded(
        &e,
        "1",
        &["delete", "--force", &e.id],
        Duration::from_secs(15),
    );
    assert!(ok, "{err}");
    drop(g);
    e.assert_gone();
}
