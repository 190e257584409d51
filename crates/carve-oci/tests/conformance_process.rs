//! runtime-spec conformance, the `process` object and the runtime-spec 1.2/1.3 process features
//! (docs/oci-conformance.md names each test here beside the requirement it shows):
//! `execCPUAffinity`, `linux.memoryPolicy`, time-namespace offsets seen by `exec`, and the
//! "MUST NOT change when unset" rules (oomScoreAdj, umask).

mod common;
use common::*;
use serde_json::json;
use std::process::{Command, Stdio};

/// Writes a process.json for `exec -p` and returns its path.
fn process_file(e: &Env, name: &str, p: serde_json::Value) -> String {
    let path = e.dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec(&p).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

fn status_line(out: &str, key: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .split_whitespace()
        .last()
        .unwrap()
        .to_string()
}

/// A container confined to cpuset `cpus` (sleeping), started.
fn pinned_container(prefix: &str, cpus: &str) -> Env {
    let mut e = Env::new(prefix, &["sleep", "1000"]);
    e.config["linux"]["resources"]["cpu"] = json!({"cpus": cpus, "mems": "0"});
    e.write_config();
    e
}

#[test]
fn exec_cpu_affinity_initial_outside_the_cpuset_and_final_inside() {
    if !require_root() {
        return;
    }
    // The container owns cpu 1 (the "RT core"); the exec'd process is set up on cpu 0
    // (`initial`, outside the container's cpuset, as runc#3922 needs) and then runs where the
    // container's cpuset says: cpu 1 (final omitted), or `final`.
    let e = pinned_container("aff", "1");
    let _g = e.create_started();
    let args = json!(["sh", "-c", "grep Cpus_allowed_list /proc/self/status"]);
    let base =
        json!({"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]});
    let mut p = base.clone();
    p["execCPUAffinity"] = json!({"initial": "0"});
    let out = e.ok(&["exec", "-p", &process_file(&e, "p1.json", p), &e.id]);
    assert_eq!(status_line(&out, "Cpus_allowed_list"), "1", "{out}");
    let mut p = base.clone();
    p["execCPUAffinity"] = json!({"initial": "0", "final": "1"});
    let out = e.ok(&["exec", "-p", &process_file(&e, "p2.json", p), &e.id]);
    assert_eq!(status_line(&out, "Cpus_allowed_list"), "1", "{out}");
    // a final list outside the container's cpuset cannot be had: refused, not ignored
    let mut p = base;
    p["execCPUAffinity"] = json!({"final": "0"});
    let o = e.oci(&["exec", "-p", &process_file(&e, "p3.json", p), &e.id]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sched_setaffinity 0"), "{err}");
}

#[test]
fn exec_cpu_affinity_final_within_the_cpuset_and_reset_when_omitted() {
    if !require_root() {
        return;
    }
    let e = pinned_container("aff2", "0-1");
    let _g = e.create_started();
    let base = json!({"args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status"],
        "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]});
    let mut p = base.clone();
    p["execCPUAffinity"] = json!({"initial": "0", "final": "1"});
    let out = e.ok(&["exec", "-p", &process_file(&e, "p1.json", p), &e.id]);
    assert_eq!(status_line(&out, "Cpus_allowed_list"), "1", "{out}");
    // initial alone: since Linux 6.2 the cpuset move keeps it; the runtime resets to the
    // container's cpus, as runc does
    let mut p = base;
    p["execCPUAffinity"] = json!({"initial": "0"});
    let out = e.ok(&["exec", "-p", &process_file(&e, "p2.json", p), &e.id]);
    assert_eq!(status_line(&out, "Cpus_allowed_list"), "0-1", "{out}");
    // a runtime started pinned (a systemd unit with CPUAffinity=) does not pass its pin on
    let o = Command::new("taskset")
        .args(["-c", "0", BIN, "--root"])
        .arg(&e.root)
        .args([
            "exec",
            &e.id,
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(status_line(&out, "Cpus_allowed_list"), "0-1", "{out}");
}

/// The task policy of the shell's child as /proc/self/numa_maps shows it (first mapping).
const POLICY: &str = "head -1 /proc/self/numa_maps | cut -d' ' -f2";

#[test]
fn memory_policy_modes_apply_to_init_and_exec() {
    if !require_root() {
        return;
    }
    // This host has one NUMA node (0): every mode that takes nodes is tried on it.
    for (policy, want) in [
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (json!({"mode": "MPOL_PREFERRED", "nodes": "0"}), "prefer:0"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}),
            "bind=static:0",
        ),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}),
            "interleave=relative:0",
        ),
        (json!({"mode": "MPOL_LOCAL"}), "local"),
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
    ] {
        let mut e = Env::new("mpol", &["sleep", "1000"]);
        e.config["linux"]["memoryPolicy"] = policy.clone();
        e.write_config();
        let _g = e.create_started();
        let init = e.init_pid();
        let maps = read(format!("/proc/{init}/numa_maps"));
        let init_policy = maps.split_whitespace().nth(1).unwrap();
        assert_eq!(init_policy, want, "init with {policy}");
        let out = e.ok(&["exec", &e.id, "sh", "-c", POLICY]);
        assert_eq!(out.trim(), want, "exec with {policy}");
        e.ok(&["delete", "--force", &e.id]);
    }
}

#[test]
fn bad_memory_policies_are_refused_naming_the_field() {
    if !require_root() {
        return;
    }
    for (policy, field) in [
        (json!({"mode": "MPOL_BIND"}), "linux.memoryPolicy.nodes"),
        (
            json!({"mode": "MPOL_BIND", "nodes": "7"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0-x"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
            "linux.memoryPolicy.nodes",
        ),
        (
            json!({"mode": "MPOL_SOMETIMES", "nodes": "0"}),
            "linux.memoryPolicy.mode",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
            "linux.memoryPolicy.flags",
        ),
        (
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_LOUD"]}),
            "linux.memoryPolicy.flags",
        ),
    ] {
        let mut e = Env::new("mpolbad", &["true"]);
        e.config["linux"]["memoryPolicy"] = policy.clone();
        e.write_config();
        e.create_refused(&[field]);
    }
}

#[test]
fn exec_sees_the_time_namespace_offsets() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("timex", &["sleep", "1000"]);
    e.add_namespace("time");
    e.config["linux"]["timeOffsets"] = json!({
        "monotonic": {"secs": 86400, "nanosecs": 0},
        "boottime": {"secs": 172800, "nanosecs": 0}
    });
    e.write_config();
    let _g = e.create_started();
    let init = e.init_pid();
    let out = e.ok(&[
        "exec",
        &e.id,
        "sh",
        "-c",
        "readlink /proc/self/ns/time; cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime",
    ]);
    let l: Vec<&str> = out.lines().collect();
    let init_ns = std::fs::read_link(format!("/proc/{init}/ns/time")).unwrap();
    assert_eq!(l[0], init_ns.to_str().unwrap(), "{out}");
    assert_eq!(
        l[1].split_whitespace().collect::<Vec<_>>(),
        ["monotonic", "86400", "0"],
        "{out}"
    );
    let up: u64 = l[3].parse().unwrap();
    assert!(up >= 172800, "boottime offset missing from exec: {out}");
}

#[test]
fn unset_oom_score_adj_and_umask_are_inherited_not_changed() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("inh", &["sh", "-c", "cat /proc/self/oom_score_adj; umask"]);
    let p = &mut e.config["process"];
    p.as_object_mut().unwrap().remove("oomScoreAdj");
    p["user"] = json!({"uid": 0, "gid": 0});
    e.write_config();
    // The runtime's caller sets both; the container process must keep them.
    let b = e.bundle.to_str().unwrap().to_string();
    let o = Command::new("sh")
        .args([
            "-c",
            "echo 123 > /proc/self/oom_score_adj && umask 0027 && exec \"$@\"",
            "sh",
            BIN,
            "--root",
        ])
        .arg(&e.root)
        .args(["run", "--bundle", &b, &e.id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _g = Guard { env: &e };
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l, ["123", "0027"], "{out}");
}

#[test]
fn unknown_capabilities_are_a_warning_not_a_failure() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("capw", &["sh", "-c", "grep CapBnd /proc/self/status"]);
    e.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_FROM_THE_FUTURE"],
        "effective": ["CAP_KILL"], "permitted": ["CAP_KILL", "CAP_FROM_THE_FUTURE"]
    });
    e.write_config();
    let (code, out, err) = e.run();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.trim().ends_with(&format!("{:016x}", 1u64 << 5)),
        "{out}"
    );
    assert!(
        err.contains("warning") && err.contains("CAP_FROM_THE_FUTURE"),
        "{err}"
    );
}

#[test]
fn console_size_is_ignored_without_a_terminal() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("csz", &["sh", "-c", "test -t 0 || echo no-tty"]);
    e.config["process"]["consoleSize"] = json!({"height": 10, "width": 20});
    e.write_config();
    assert_eq!(e.run_ok().trim(), "no-tty");
}

#[test]
fn rlimits_unknown_or_duplicated_types_are_errors_and_values_match_getrlimit() {
    if !require_root() {
        return;
    }
    let mut e = Env::new(
        "rlim",
        &["sh", "-c", "ulimit -S -s; ulimit -H -s; ulimit -S -c"],
    );
    e.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    e.write_config();
    // busybox prints KiB
    assert_eq!(
        e.run_ok().lines().collect::<Vec<_>>(),
        ["4096", "8192", "0"]
    );
    for (rl, field) in [
        (
            json!([{"type": "RLIMIT_WARP_SPEED", "soft": 1, "hard": 1}]),
            "process.rlimits[0].type",
        ),
        (
            json!([{"type": "RLIMIT_CORE", "soft": 0, "hard": 0}, {"type": "RLIMIT_CORE", "soft": 1, "hard": 1}]),
            "process.rlimits[1]",
        ),
    ] {
        e.config["process"]["rlimits"] = rl;
        e.write_config();
        e.create_refused(&[field]);
    }
}

#[test]
fn scheduler_io_priority_hostname_and_domainname_are_applied() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("sched", &["sleep", "1000"]);
    e.config["hostname"] = json!("carve-host");
    e.config["domainname"] = json!("carve.example");
    e.config["process"]["scheduler"] =
        json!({"policy": "SCHED_BATCH", "nice": 7, "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
    e.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    e.write_config();
    let _g = e.create();
    let pid = e.init_pid();
    let chrt = Command::new("chrt")
        .args(["-p", &pid.to_string()])
        .output()
        .unwrap();
    let chrt = String::from_utf8_lossy(&chrt.stdout);
    assert!(chrt.contains("SCHED_BATCH|SCHED_RESET_ON_FORK"), "{chrt}");
    let stat = read(format!("/proc/{pid}/stat"));
    let nice = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(16)
        .unwrap()
        .to_string();
    assert_eq!(nice, "7", "{stat}");
    let io = Command::new("ionice")
        .args(["-p", &pid.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&io.stdout).trim(),
        "best-effort: prio 6"
    );
    e.ok(&["start", &e.id]);
    let out = e.ok(&[
        "exec",
        &e.id,
        "sh",
        "-c",
        "hostname; cat /proc/sys/kernel/domainname",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["carve-host", "carve.example"]
    );
}

#[test]
fn idle_and_deadline_policies_and_lsm_labels_without_an_lsm() {
    if !require_root() {
        return;
    }
    for (sched, want) in [
        (json!({"policy": "SCHED_IDLE"}), "SCHED_IDLE"),
        (
            json!({"policy": "SCHED_DEADLINE", "runtime": 10000000, "deadline": 30000000,
                "period": 30000000}),
            "SCHED_DEADLINE",
        ),
    ] {
        let mut e = Env::new("sched2", &["sleep", "1000"]);
        e.config["process"]["scheduler"] = sched;
        e.write_config();
        let _g = e.create();
        let pid = e.init_pid().to_string();
        let chrt = Command::new("chrt").args(["-p", &pid]).output().unwrap();
        let chrt = String::from_utf8_lossy(&chrt.stdout);
        assert!(chrt.contains(want), "{chrt}");
        if want == "SCHED_DEADLINE" {
            assert!(chrt.contains("10000000/30000000/30000000"), "{chrt}");
        }
    }
    // AppArmor and SELinux labels cannot be applied on this host: a warning each, and the
    // container runs (runc on a host without them does the same)
    let mut e = Env::new("lsm", &["true"]);
    e.config["process"]["apparmorProfile"] = json!("carve-profile");
    e.config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
    e.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    e.write_config();
    let (code, out, err) = e.run();
    assert_eq!(code, 0, "{out}{err}");
    for w in ["apparmor", "selinux", "mountLabel"] {
        assert!(err.contains(w), "no warning for {w}: {err}");
    }
}
