//! The two runc CVE classes, and cgroup resources as the container sees them.

mod common;
use common::*;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

fn file_hash(p: &str) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn runtime_binary_cannot_be_overwritten_from_inside_cve_2019_5736() {
    if !require_root() {
        return;
    }
    let e = Env::new("cve5736", &["sleep", "1000"]);
    // A private copy of the runtime, so that once the CLI calls below have exited nobody executes
    // it: the kernel's own ETXTBSY guard is then out of the way and only the seal can refuse.
    let bin = e.dir.path().join("carve-oci-copy");
    std::fs::copy(BIN, &bin).unwrap();
    let before = file_hash(bin.to_str().unwrap());
    let oci = |args: &[&str]| {
        let st = Command::new(&bin)
            .arg("--root")
            .arg(&e.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    };
    oci(&["create", "--bundle", e.bundle.to_str().unwrap(), &e.id]);
    let _g = Guard { env: &e };
    // While created, the container's pid 1 is the runtime. A container process opens it
    // read-only (allowed), waits until the runtime is gone, then reopens its fd for writing —
    // the attack that overwrote runc's binary.
    let tmp = e.rootfs().join("tmp");
    let script = "exec 3</proc/1/exe; readlink /proc/1/exe > /tmp/opened; \
        while [ ! -e /tmp/go ]; do sleep 0.05; done; \
        (echo x >> /proc/self/fd/3) 2>/tmp/result; echo rc=$? >> /tmp/result";
    oci(&["exec", "--detach", &e.id, "sh", "-c", script]);
    for _ in 0..500 {
        if tmp.join("opened").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    oci(&["start", &e.id]);
    std::fs::write(tmp.join("go"), "").unwrap();
    let mut result = String::new();
    for _ in 0..500 {
        result = std::fs::read_to_string(tmp.join("result")).unwrap_or_default();
        if result.contains("rc=") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        !result.contains("rc=0"),
        "reopening the runtime binary for writing succeeded: {result}"
    );
    assert!(
        result.contains("Read-only file system") || result.contains("Operation not permitted"),
        "the write was refused for another reason than the seal: {result}"
    );
    assert_eq!(
        file_hash(bin.to_str().unwrap()),
        before,
        "the runtime binary changed"
    );
    oci(&["delete", "--force", &e.id]);
    e.assert_gone();
}

#[test]
fn no_host_fd_reaches_the_container_cve_2024_21626() {
    if !require_root() {
        return;
    }
    let e = Env::new(
        "cve21626",
        &[
            "sh",
            "-c",
            "ls /proc/self/fd | tr '\\n' ' '; readlink /proc/self/cwd",
        ],
    );
    // the caller leaks a directory fd (no CLOEXEC) at fd 7 and fd 8
    let leak = std::fs::File::open("/sys/fs/cgroup").unwrap();
    let leak2 = std::fs::File::open(e.dir.path()).unwrap();
    let run = |extra: &[&str]| {
        let out_path = e.dir.path().join("fds.out");
        let b = e.bundle.to_str().unwrap().to_string();
        let mut args = vec!["--root", e.root.to_str().unwrap(), "run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--bundle", &b, &e.id]);
        let l1 = std::os::fd::AsRawFd::as_raw_fd(&leak);
        let l2 = std::os::fd::AsRawFd::as_raw_fd(&leak2);
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stdin(Stdio::null());
        // SAFETY: dup2 in the child between fork and exec only touches the fd table.
        unsafe {
            cmd.pre_exec(move || {
                libc::dup2(l1, 3);
                libc::dup2(l2, 7);
                Ok(())
            });
        }
        let st = cmd.status().unwrap();
        assert!(st.success());
        std::fs::read_to_string(&out_path).unwrap()
    };
    let out = run(&[]);
    let mut fds: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fds.pop(), Some("/"), "cwd: {out}");
    // 0-2 are stdio, 3 is ls's own directory fd
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "host fds leaked into the container: {out}"
    );
    // --preserve-fds 1 passes exactly fd 3
    let out = run(&["--preserve-fds", "1"]);
    let fds: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3", "4", "/"], "{out}");
    // a cwd through a leaked fd is refused
    let mut e2 = Env::new("cve21626b", &["true"]);
    e2.config["process"]["cwd"] = json!("/proc/self/fd/7");
    e2.write_config();
    let b = e2.bundle.to_str().unwrap().to_string();
    let l2 = std::os::fd::AsRawFd::as_raw_fd(&leak2);
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--root",
        e2.root.to_str().unwrap(),
        "run",
        "--bundle",
        &b,
        &e2.id,
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    // SAFETY: dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::dup2(l2, 7);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cwd"), "{err}");
    e2.assert_gone();
    e.assert_gone();
}

#[test]
fn cgroup_limits_are_visible_inside_and_removed_after() {
    if !require_root() {
        return;
    }
    let v2 = pure_v2();
    let script = if v2 {
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; tr ' ' '\\n' </sys/fs/cgroup/cpu.max; \
        cat /sys/fs/cgroup/cpu.weight; grep -c . /sys/fs/cgroup/cgroup.procs"
    } else {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
        /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares; \
        grep -c . /sys/fs/cgroup/memory/cgroup.procs"
    };
    let mut e = Env::new("cgres", &["sh", "-c", script]);
    e.config["linux"]["resources"]["memory"] = json!({"limit": 100 << 20});
    e.config["linux"]["resources"]["pids"] = json!({"limit": 33});
    e.config["linux"]["resources"]["cpu"] =
        json!({"quota": 50000, "period": 100000, "shares": 512});
    e.write_config();
    let out = e.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], (100u64 << 20).to_string());
    assert_eq!(l[1], "33");
    assert_eq!(l[2], "50000");
    assert_eq!(l[3], "100000");
    // v2: cpu.weight from shares by crun's mapping (10^((l^2 + 125 l) / 612 - 7/34), l = log2 512).
    assert_eq!(l[4], if v2 { "59" } else { "512" }, "{out}");
    assert_ne!(
        l[5], "0",
        "the container's processes sit in its memory cgroup"
    );
    e.assert_gone();
    // a pids limit stops a fork loop inside
    // ash exits on a failed fork, so the loop runs in a subshell; the count uses builtins only: a
    // pipeline or a grep would need a fork that the limit may already refuse.
    let mut e = Env::new(
        "cgpids",
        &[
            "sh",
            "-c",
            "(for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done) 2>/tmp/forks; n=0; \
             while read -r l; do case $l in *fork*|*esource*) n=$((n+1));; esac; done </tmp/forks; \
             echo $n",
        ],
    );
    e.config["linux"]["resources"]["pids"] = json!({"limit": 4});
    e.write_config();
    let out = e.run_ok();
    assert_ne!(out.trim(), "0", "no fork failed under pids.max=4: {out}");
    e.assert_gone();
}
