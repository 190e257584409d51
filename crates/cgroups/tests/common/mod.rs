//! Helpers for the real-kernel tests: a cgroup that is removed on drop, and processes that wait
//! at a gate until they have been put into it.
#![allow(dead_code)]

use carve_cgroups::Manager;
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// A created cgroup; on drop every task in it is killed and the cgroup removed.
pub struct Cg(pub Manager);

impl Cg {
    /// Creates `path` on the hierarchies under /sys/fs/cgroup.
    pub fn new(path: &str) -> Cg {
        let mut m = Manager::new(Path::new("/sys/fs/cgroup"), path).expect("manager");
        m.create().expect("create");
        Cg(m)
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = self.0.thaw();
            let _ = self.0.kill_all(libc::SIGKILL);
            if let Err(e) = self.0.remove() {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A child process killed and reaped on drop.
pub struct Proc {
    pub child: Child,
    gate: Option<ChildStdin>,
}

impl Proc {
    /// Starts `sh -c script`, which first waits for a line on stdin (the gate).
    pub fn gated(script: &str) -> Proc {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("read _gate; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut p = Proc { child, gate: None };
        p.gate = p.child.stdin.take();
        p
    }

    /// Starts `sleep 1000` (no gate needed: it does nothing).
    pub fn sleeper() -> Proc {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        Proc { child, gate: None }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Lets a gated script run.
    pub fn open_gate(&mut self) {
        let mut g = self.gate.take().expect("gated process");
        g.write_all(b"go\n").expect("gate");
    }

    /// Blocks until the task has written `n` bytes to stdout (its "I am ready" line).
    pub fn wait_for_stdout(&mut self, n: usize) {
        let out = self.child.stdout.as_mut().expect("piped stdout");
        let mut buf = vec![0u8; n];
        std::io::Read::read_exact(out, &mut buf).expect("the task's ready line");
    }

    /// Waits for the end and returns (exit status, stdout, stderr).
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let child = std::mem::replace(
            &mut self.child,
            Command::new("true").spawn().expect("spawn true"),
        );
        let out = child.wait_with_output().expect("wait");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The content of a file, trimmed.
pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// Skips (returns true) when not root: these tests need the real kernel.
pub fn not_root() -> bool {
    !carve_testkit::require_root()
}

/// utime+stime of a process in clock ticks once it is off the CPU: a task counts as frozen
/// (cgroup.events, freezer.state) as soon as it enters the freezer, a moment before it is
/// scheduled out; on a loaded host (or a TCG guest whose vCPU the host preempts) that moment is
/// long enough to account a few more ticks. Waits up to 5 s for the task to leave state R.
pub fn settled_cpu_ticks(pid: i32) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let state = s[s.rfind(')').expect(")") + 2..].chars().next();
        if state != Some('R') {
            // Read twice 50 ms apart: the switch-out that accounts the last slice has happened.
            let t = cpu_ticks(pid);
            std::thread::sleep(std::time::Duration::from_millis(50));
            if cpu_ticks(pid) == t {
                return t;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid} still running 5 s after it was frozen"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// utime+stime of a process in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &s[s.rfind(')').expect(")") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// OCI resources from JSON.
pub fn res(json: &str) -> oci_spec::runtime::LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

/// The error `m` gives for the resources `json`, which must be refused.
pub fn refused(m: &Manager, json: &str) -> String {
    m.apply(&res(json)).unwrap_err().to_string()
}

/// Runs a task in `m` that copies `blocks` × 4 MiB through dd and then sleeps (kept alive in
/// the returned [`Proc`]), and returns the stats read once the copy is done.
pub fn stats_after_work(m: &Manager, blocks: u32) -> (Proc, carve_cgroups::stats::Stats) {
    let mut p = Proc::gated(&format!(
        "dd if=/dev/zero of=/dev/null bs=4M count={blocks} 2>/dev/null; echo done; exec sleep 1000"
    ));
    m.add_task(p.pid()).unwrap();
    p.open_gate();
    p.wait_for_stdout(5);
    (p, m.stats().unwrap())
}

/// Device rules: deny everything, then allow /dev/null fully and /dev/zero read-only.
pub const DEVICE_RULES: &str = r#"{"devices": [
    {"allow": false, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}]}"#;

/// Checks that a task in `m` meets [`DEVICE_RULES`] as the kernel enforces them: /dev/null
/// writable, /dev/zero readable but not writable, /dev/urandom denied.
pub fn assert_device_rules_enforced(m: &Manager) {
    let mut p = Proc::gated(
        "echo x > /dev/null && echo null-ok; \
         head -c1 /dev/zero >/dev/null && echo zero-read-ok; \
         (echo x > /dev/zero) 2>/dev/null || echo zero-write-denied; \
         (head -c1 /dev/urandom >/dev/null) 2>/dev/null || echo urandom-denied",
    );
    m.add_task(p.pid()).unwrap();
    p.open_gate();
    let (_, out, _) = p.finish();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "null-ok",
            "zero-read-ok",
            "zero-write-denied",
            "urandom-denied"
        ]
    );
}

/// Spins a task in `m`, freezes it and checks it uses no CPU while frozen (`frozen_check` adds
/// what the version shows of a frozen cgroup), then thaws it and waits for it to run again.
pub fn assert_freeze_stops_and_thaw_resumes(m: &Manager, frozen_check: impl FnOnce(&Proc)) {
    use carve_cgroups::FreezerState;
    use std::time::{Duration, Instant};
    let mut p = Proc::gated("while :; do :; done");
    m.add_task(p.pid()).unwrap();
    p.open_gate();
    std::thread::sleep(Duration::from_millis(200));
    m.freeze().unwrap();
    assert_eq!(m.freezer_state().unwrap(), FreezerState::Frozen);
    frozen_check(&p);
    let t0 = settled_cpu_ticks(p.pid());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(p.pid()), t0, "a frozen task used CPU");
    m.thaw().unwrap();
    assert_eq!(m.freezer_state().unwrap(), FreezerState::Thawed);
    // Generous: a TCG guest's vCPU may be preempted by the host for a while.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cpu_ticks(p.pid()) == t0 {
        assert!(Instant::now() < deadline, "a thawed task did not run");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Limits `m` to 32 MiB of memory and swap and runs a task that touches 128 MiB: the kernel's
/// OOM killer must SIGKILL it. The caller checks what the version records of the kill.
pub fn oom_kill_a_hog(m: &Manager) {
    use std::os::unix::process::ExitStatusExt;
    m.apply(&res(r#"{"memory": {"limit": 33554432, "swap": 33554432}}"#))
        .unwrap();
    // dd's 128 MiB buffer is touched as it reads into it.
    let mut p = Proc::gated("exec dd if=/dev/zero of=/dev/null bs=128M count=4");
    m.add_task(p.pid()).unwrap();
    p.open_gate();
    let (status, _, err) = p.finish();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?} {err}");
}

/// Limits `m` (whose pids files are in `pids_dir`) to 3 tasks and has a task fork six sleepers:
/// the kernel must refuse a fork (pids.events counts it), keep pids.current at 3 or below and
/// the stats must show the limit. Returns the task's stderr, which reports the refused fork.
pub fn pids_limit_stops_forks(m: &Manager, pids_dir: &Path) -> String {
    use std::time::{Duration, Instant};
    m.apply(&res(r#"{"pids": {"limit": 3}}"#)).unwrap();
    let mut p =
        Proc::gated("n=0; for i in 1 2 3 4 5 6; do sleep 30 & n=$((n+1)); done; echo started $n");
    m.add_task(p.pid()).unwrap();
    p.open_gate();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = read(pids_dir, "pids.events");
        if events != "max 0" {
            assert!(events.starts_with("max "), "{events}");
            break;
        }
        assert!(Instant::now() < deadline, "no fork was refused");
        std::thread::sleep(Duration::from_millis(20));
    }
    let current: u64 = read(pids_dir, "pids.current").parse().unwrap();
    assert!(current <= 3, "{current}");
    assert_eq!(m.stats().unwrap().pids.limit, 3);
    m.kill_all(libc::SIGKILL).unwrap();
    let (_, _, err) = p.finish();
    err
}

/// Checks that `kill_all` reaches every task of `m` with SIGTERM (a task and two children) and
/// with SIGKILL (through cgroup.kill where cgroup2 has the task), and that the cgroup empties.
pub fn assert_kill_all_reaches_every_task(m: &Manager) {
    use std::os::unix::process::ExitStatusExt;
    for (script, sig, tasks) in [
        ("sleep 1000 & sleep 1000 & echo up; wait", libc::SIGTERM, 3),
        ("sleep 1000 & echo up; wait", libc::SIGKILL, 2),
    ] {
        let mut p = Proc::gated(script);
        m.add_task(p.pid()).unwrap();
        p.open_gate();
        p.wait_for_stdout(3);
        assert_eq!(m.pids().unwrap().len(), tasks);
        m.kill_all(sig).unwrap();
        let (status, _, _) = p.finish();
        assert_eq!(status.signal(), Some(sig));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !m.pids().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "tasks left: {:?}",
                m.pids()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Checks that a memory limit below what `m` uses now is refused with `checkBeforeUpdate` and
/// changes nothing: `limit_file` in `dir` still reads `limit`.
pub fn assert_check_before_update_refuses(m: &Manager, dir: &Path, limit_file: &str, limit: &str) {
    let e = m
        .apply(&res(
            r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("checkBeforeUpdate"), "{e}");
    assert_eq!(read(dir, limit_file), limit);
}
