//! runc 1.1's `exec --cgroup` (the process runs in an existing sub-cgroup of the container's:
//! `PATH` on every hierarchy, `CTRL[,CTRL]:PATH` on those controllers' hierarchies; escapes and
//! missing sub-cgroups refused; delete removes the sub-cgroups) and the `oom` events of streaming
//! `events`, through real carve-oci containers.
//!
//! The `exec --cgroup` tests need the v1/hybrid layout (they return on a pure-v2 host); the OOM
//! event test runs on both.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Makes `sub` below the container's cgroup on every mounted hierarchy, as a user of
/// `exec --cgroup` would (runc does not create it). A v1 cpuset starts empty: it gets the
/// container's cpus and mems.
fn make_sub(e: &Env, sub: &str) -> Vec<PathBuf> {
    let mut made = Vec::new();
    for d in e.cgroup_dirs_everywhere() {
        let s = d.join(sub);
        std::fs::create_dir(&s).unwrap_or_else(|er| panic!("mkdir {}: {er}", s.display()));
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if s.join(f).exists() && read(s.join(f)).is_empty() {
                std::fs::write(s.join(f), read(d.join(f))).unwrap();
            }
        }
        made.push(s);
    }
    made
}

/// `/proc/PID/cgroup` as (controllers, path) pairs.
fn proc_cgroups(pid: &str) -> Vec<(String, String)> {
    read(format!("/proc/{pid}/cgroup"))
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, ':');
            let _ = f.next();
            (f.next().unwrap().to_string(), f.next().unwrap().to_string())
        })
        .collect()
}

fn delete_and_check(e: &Env) {
    e.ok(&["delete", "--force", &e.id]);
    e.assert_gone();
    for d in e.cgroup_dirs_everywhere() {
        assert!(!d.exists(), "cgroup left behind: {}", d.display());
    }
}

#[test]
fn exec_cgroup_runs_the_process_in_the_sub_cgroup_and_delete_removes_it() {
    if !require_hybrid("this test uses") {
        return;
    }
    let e = Env::new("execcg-sub", &["sleep", "1000"]);
    let _g = e.create_started();
    let subs = make_sub(&e, "sub");
    assert!(subs.len() >= 6, "{subs:?}");
    let top = format!("/{}", e.id);
    let inner = format!("/{}/sub", e.id);

    // The plain form: every hierarchy.
    let pid = e.exec_detached(&["--cgroup", "sub"], "all");
    let cgs = proc_cgroups(&pid);
    assert_eq!(cgs.len(), subs.len(), "{cgs:?}");
    for (ctl, p) in &cgs {
        assert_eq!(p, &inner, "{ctl}: {cgs:?}");
    }
    for s in &subs {
        let procs = read(s.join("cgroup.procs"));
        assert!(procs.lines().any(|l| l == pid), "{}: {procs}", s.display());
    }
    // Inside (cgroup namespace rooted at the container's cgroup) it shows /sub everywhere; a
    // plain exec still shows the root.
    let inside = e.ok(&[
        "exec",
        "--cgroup",
        "/sub",
        &e.id,
        "cat",
        "/proc/self/cgroup",
    ]);
    assert_eq!(inside.lines().count(), subs.len(), "{inside}");
    assert!(inside.lines().all(|l| l.ends_with(":/sub")), "{inside}");
    let plain = e.ok(&["exec", &e.id, "cat", "/proc/self/cgroup"]);
    assert!(plain.lines().all(|l| l.ends_with(":/")), "{plain}");

    // CTRL:PATH: only the pids hierarchy moves.
    let pid = e.exec_detached(&["--cgroup", "pids:sub"], "pids");
    for (ctl, p) in proc_cgroups(&pid) {
        let want = if ctl.split(',').any(|c| c == "pids") {
            &inner
        } else {
            &top
        };
        assert_eq!(&p, want, "{ctl}");
    }
    let pids_sub = PathBuf::from("/sys/fs/cgroup/pids").join(&e.id).join("sub");
    assert!(read(pids_sub.join("cgroup.procs"))
        .lines()
        .any(|l| l == pid));
    let mem_sub = PathBuf::from("/sys/fs/cgroup/memory")
        .join(&e.id)
        .join("sub");
    assert!(!read(mem_sub.join("cgroup.procs")).lines().any(|l| l == pid));

    // Several controllers, and a second value for another one.
    let pid = e.exec_detached(
        &["--cgroup", "pids,memory:sub", "--cgroup", "cpu:sub"],
        "some",
    );
    for (ctl, p) in proc_cgroups(&pid) {
        let moved = ctl
            .split(',')
            .any(|c| matches!(c, "pids" | "memory" | "cpu"));
        assert_eq!(&p, if moved { &inner } else { &top }, "{ctl}");
    }

    delete_and_check(&e);
    for s in &subs {
        assert!(!s.exists(), "sub-cgroup left behind: {}", s.display());
    }
}

#[test]
fn exec_cgroup_escapes_missing_and_unknown_sub_cgroups_are_refused() {
    if !require_hybrid("this test uses") {
        return;
    }
    let e = Env::new("execcg-bad", &["sleep", "1000"]);
    let _g = e.create_started();
    make_sub(&e, "sub");
    // A sibling outside the container's cgroup that an escape would reach.
    let sibling = PathBuf::from("/sys/fs/cgroup/pids").join(format!("{}-x", e.id));
    std::fs::create_dir(&sibling).unwrap();
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rm(sibling.clone());
    let esc = format!("../{}-x", e.id);
    let esc2 = format!("sub/../../{}-x", e.id);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--cgroup", &esc], "leaves the container's cgroup"),
        (vec!["--cgroup", &esc2], "leaves the container's cgroup"),
        (vec!["--cgroup", "pids:.."], "leaves the container's cgroup"),
        (vec!["--cgroup", "nosuch"], "does not exist"),
        (vec!["--cgroup", "pids:nosuch"], "does not exist"),
        (vec!["--cgroup", "bogus:sub"], "unknown controller"),
        (
            vec!["--cgroup", "sub", "--cgroup", "pids:sub"],
            "missing <controller>: prefix",
        ),
        (vec!["--cgroup", ":sub"], "empty <controller> prefix"),
        (
            vec!["--cgroup", "pids:sub", "--cgroup", "pids:x"],
            "specified multiple times",
        ),
    ];
    let before = read(
        PathBuf::from("/sys/fs/cgroup/pids")
            .join(&e.id)
            .join("pids.current"),
    );
    for (flags, want) in cases {
        let mut args = vec!["exec"];
        args.extend_from_slice(&flags);
        args.extend_from_slice(&[&e.id, "sleep", "1000"]);
        let o = e.oci(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(255), "{flags:?}: {err}");
        assert!(
            err.contains(&format!("--cgroup {}", flags[1])) && err.contains(want),
            "{flags:?}: want {want:?} in {err}"
        );
    }
    // Nothing was started: no process in the sibling, the subs or beyond init.
    assert_eq!(read(sibling.join("cgroup.procs")), "");
    assert_eq!(
        read(
            PathBuf::from("/sys/fs/cgroup/pids")
                .join(&e.id)
                .join("pids.current")
        ),
        before
    );
    assert_eq!(before, "1");
    delete_and_check(&e);
}

/// Kills and reaps the background `events` when dropped.
struct Bg(std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines_of(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with('}'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|er| panic!("{l}: {er}")))
        .collect()
}

#[test]
fn events_streams_an_oom_event_when_the_memory_cgroup_kills_a_task() {
    if !require_root() {
        return;
    }
    let limit = 32u64 << 20;
    let mut e = Env::new("execcg-oom", &["sleep", "1000"]);
    e.config["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    e.write_config();
    let _g = e.create_started();
    let out = e.dir.path().join("events.out");
    let child = std::process::Command::new(BIN)
        .arg("--root")
        .arg(&e.root)
        .args(["events", "--interval", "200ms", &e.id])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(e.dir.path().join("events.err")).unwrap())
        .spawn()
        .unwrap();
    let mut bg = Bg(child);
    // Stats stream, and no OOM yet.
    wait_for("two stats lines", || {
        lines_of(&out)
            .iter()
            .filter(|v| v["type"] == "stats")
            .count()
            >= 2
    });
    assert!(
        !lines_of(&out).iter().any(|v| v["type"] == "oom"),
        "oom event before any OOM"
    );
    // A hog exec'd into the container: dd's 64 MiB buffer does not fit in 32 MiB.
    let o = e.oci(&[
        "exec",
        &e.id,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(o.status.code(), Some(137), "dd was not SIGKILLed: {o:?}");
    let counter = if pure_v2() {
        read(
            PathBuf::from("/sys/fs/cgroup")
                .join(&e.id)
                .join("memory.events"),
        )
    } else {
        read(
            PathBuf::from("/sys/fs/cgroup/memory")
                .join(&e.id)
                .join("memory.oom_control"),
        )
    };
    assert!(counter.lines().any(|l| l == "oom_kill 1"), "{counter}");
    wait_for("an oom event", || {
        lines_of(&out).iter().any(|v| v["type"] == "oom")
    });
    // Stats keep coming after it; exactly one oom event for the one kill, runc's shape.
    let n = lines_of(&out).len();
    wait_for("stats after the oom event", || lines_of(&out).len() > n);
    assert_eq!(
        bg.0.try_wait().unwrap(),
        None,
        "events ended while the container runs"
    );
    let ooms: Vec<Value> = lines_of(&out)
        .into_iter()
        .filter(|v| v["type"] == "oom")
        .collect();
    assert_eq!(ooms, vec![json!({"type": "oom", "id": e.id})]);
    assert_eq!(e.status(), "running");
    drop(bg);
    delete_and_check(&e);
}
