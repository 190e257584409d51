//! Shared helpers of the client (podman, containerd) and reliability tests: which runtime binary
//! the tests drive, a busybox rootfs, commands with a deadline, and guards that remove cgroup
//! trees and mounts a test leaves, also when it fails.
//!
//! The runtime is carve-oci (this package's binary) unless `CARVE_TEST_RUNTIME` names another:
//! `runc` (found on PATH) or an absolute path. That is how the drivers were validated against runc
//! before pointing them at carve-oci.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The runtime binary these tests drive: `CARVE_TEST_RUNTIME` (a name on PATH or a path), else
/// carve-oci built with this package.
pub fn runtime() -> PathBuf {
    match std::env::var_os("CARVE_TEST_RUNTIME") {
        Some(r) if !r.is_empty() => {
            let p = PathBuf::from(&r);
            if p.is_absolute() {
                return p;
            }
            which(&r.to_string_lossy())
                .unwrap_or_else(|| panic!("CARVE_TEST_RUNTIME={p:?} is not on PATH"))
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_carve-oci")),
    }
}

/// Whether the runtime under test is carve-oci (some checks only hold for it, e.g. its messages).
pub fn runtime_is_carve() -> bool {
    runtime()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("carve-oci"))
}

/// The first `name` on PATH (plus the sbin directories, which root's PATH may lack in CI).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// A client binary the test needs; a missing one fails the test saying how to install it.
pub fn need(name: &str, package: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("{name} is not installed: scripts/setup.sh installs it (Debian package {package})")
    })
}

/// Whether this process is root; the privileged suites say so and return when it is not, like the
/// rest of this crate's tests.
pub fn require_root() -> bool {
    if !carve_testkit::is_root() {
        eprintln!("skipping: these tests need root");
        return false;
    }
    true
}

/// Serializes with tests that retune the host. While a dedicated-core test holds a CPU in an
/// exclusive cpuset, no sibling cpuset may include that CPU, so every runtime (runc included)
/// fails to create a container cgroup ("writing 0-1 to cpuset.cpus: Invalid argument").
pub fn host_lock() -> carve_testkit::HostLock {
    carve_testkit::HostLock::exclusive()
}

/// Fills `rootfs` with busybox-static and its applets, /etc/passwd and /etc/group.
pub fn busybox_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "sys", "dev", "tmp", "etc", "root", "run"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("/bin/busybox: busybox-static is installed by scripts/setup.sh");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for a in String::from_utf8_lossy(&list.stdout).lines() {
        if a != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(a));
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// Packs `rootfs` into an uncompressed tar at `tar` (an image layer), with `tar(1)`.
pub fn tar_dir(rootfs: &Path, tar: &Path) {
    let out = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-cf"])
        .arg(tar)
        .arg(".")
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` with no stdin, collecting its output; kills it and fails the test if it has not
/// finished after `limit` (a hung client must not hang the suite).
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    // Readers on threads so a chatty child never blocks on a full pipe while we wait.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = t_err.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// `run_limited` that must succeed; returns stdout.
pub fn ok(cmd: &mut Command, limit: Duration) -> String {
    let what = format!("{cmd:?}");
    let out = run_limited(cmd, limit);
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout: {} stderr: {}",
        describe(&out),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `run_limited` that must fail; returns stderr.
pub fn fails(cmd: &mut Command, limit: Duration) -> String {
    let what = format!("{cmd:?}");
    let out = run_limited(cmd, limit);
    assert!(
        !out.status.success(),
        "{what} succeeded but should fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// "exit N" or "signal N".
pub fn describe(out: &Output) -> String {
    match (out.status.code(), out.status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    }
}

/// Every cgroup hierarchy mounted on this host (v1 controllers and the unified one).
pub fn hierarchies() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in m.lines() {
            let fstype = line.split(" - ").nth(1).unwrap_or("");
            if fstype.starts_with("cgroup ") || fstype.starts_with("cgroup2 ") {
                if let Some(t) = line.split_whitespace().nth(4) {
                    v.push(PathBuf::from(t));
                }
            }
        }
    }
    v
}

/// Directories named `name` directly under a hierarchy root, with everything below them.
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(name.trim_start_matches('/')))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes the cgroup tree `/NAME` on every hierarchy, deepest first, killing what is left in it
/// first. Returns what could not be removed.
pub fn remove_cgroup_tree(name: &str) -> Vec<String> {
    let mut left = Vec::new();
    for top in cgroup_dirs(name) {
        let mut dirs = Vec::new();
        collect_dirs(&top, &mut dirs);
        // Deepest first: children before their parents.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            for _ in 0..50 {
                if let Ok(p) = std::fs::read_to_string(d.join("cgroup.procs")) {
                    for pid in p.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: kill has no memory effects; the pid is in a test-owned cgroup.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if d.exists() {
                left.push(d.display().to_string());
            }
        }
    }
    left
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|t| *t == prefix || t.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect()
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let mut m = mounts_under(dir);
    m.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in m {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path for the call's duration.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                let c: Vec<u8> = c
                    .into_iter()
                    .map(|b| if b == 0 { b' ' } else { b })
                    .collect();
                if String::from_utf8_lossy(&c).contains(needle) {
                    v.push(pid);
                }
            }
        }
    }
    v
}

/// The hierarchy-relative path of `pid`'s cgroup on the v1 `controller` hierarchy.
pub fn cgroup_of(pid: i32, controller: &str) -> Option<String> {
    let c = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    c.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// Reads `/sys/fs/cgroup/CONTROLLER/<pid's cgroup>/FILE`.
pub fn cgroup_file(pid: i32, controller: &str, file: &str) -> String {
    let rel = cgroup_of(pid, controller)
        .unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup"));
    let p = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(rel.trim_start_matches('/'))
        .join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}
