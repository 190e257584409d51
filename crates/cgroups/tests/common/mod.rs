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
