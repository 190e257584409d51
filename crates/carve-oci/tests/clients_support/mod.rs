//! Shared helpers of the client (podman, containerd) and reliability tests: which runtime binary
//! the tests drive, a busybox rootfs, commands with a deadline, and guards that remove cgroup
//! trees and mounts a test leaves, also when it fails.
//!
//! The runtime is carve-oci (this package's binary) unless `CARVE_TEST_RUNTIME` names another:
//! `runc` (found on PATH) or an absolute path. That is how the drivers were validated against runc
//! before pointing them at carve-oci.
#![allow(dead_code)]

use std::io::{Read, Seek};
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
    carve_testkit::require_root()
}

/// Holds the host lock shared, so as not to overlap tests that retune the host. While a dedicated-core test holds a CPU in an
/// exclusive cpuset, no sibling cpuset may include that CPU, so every runtime (runc included)
/// fails to create a container cgroup ("writing 0-1 to cpuset.cpus: Invalid argument").
pub fn host_lock() -> carve_testkit::HostLock {
    carve_testkit::HostLock::shared()
}

/// Fills `rootfs` with busybox-static and its applets, /etc/passwd and /etc/group.
pub fn busybox_rootfs(rootfs: &Path) {
    carve_testkit::busybox_rootfs(rootfs)
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
/// finished after `limit` (a hung client must not hang the suite). Output goes to unlinked temp
/// files, not pipes: a runtime's `create` hands its stdout/stderr to the container, so a pipe
/// would only reach EOF when the container exits.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Output {
    run_limited_stdin(cmd, limit, false)
}

/// `run_limited`, with stdin an open pipe that gets no data and stays open until the command
/// ends when `keep_stdin` (an interactive client must not see EOF on its terminal's input and
/// hang up the container before it has spoken), else /dev/null.
pub fn run_limited_stdin(cmd: &mut Command, limit: Duration, keep_stdin: bool) -> Output {
    let what = format!("{cmd:?}");
    let mut out_f = tempfile::tempfile().unwrap();
    let mut err_f = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdin(if keep_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(out_f.try_clone().unwrap())
        .stderr(err_f.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    // Dropped (closed) only when this function returns.
    let _stdin = child.stdin.take();
    let read = |f: &mut std::fs::File| {
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        let _ = f.read_to_end(&mut v);
        v
    };
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&read(&mut err_f))
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: read(&mut out_f),
        stderr: read(&mut err_f),
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
    carve_cri::host::hierarchies()
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
    carve_cri::host::remove_cgroup_tree(name)
        .iter()
        .map(|d| d.display().to_string())
        .collect()
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    carve_cri::host::mounts_under(dir)
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    carve_cri::host::unmount_under(dir)
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    carve_cri::host::pids_matching(needle)
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

/// A busybox bundle, a private state root and a private cgroup parent for driving the runtime
/// binary directly; drop force-deletes what is listed and removes the cgroup parent.
pub struct Bundle {
    /// Holds the bundle and the state root.
    pub dir: tempfile::TempDir,
    /// The bundle directory (config.json + rootfs).
    pub bundle: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// The runtime binary.
    pub rt: PathBuf,
    /// Every container's cgroupsPath is `/<cgroup_parent>/<id>`.
    pub cgroup_parent: String,
    config: serde_json::Value,
}

impl Bundle {
    /// A bundle running `args` (no terminal, writable rootfs).
    pub fn new(prefix: &str, args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("carve-rel-")
            .tempdir()
            .unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        busybox_rootfs(&bundle.join("rootfs"));
        let rt = runtime();
        ok(
            Command::new(&rt).arg("spec").current_dir(&bundle),
            Duration::from_secs(30),
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let b = Bundle {
            root: dir.path().join("state"),
            cgroup_parent: carve_testkit::unique_name(prefix),
            bundle,
            rt,
            dir,
            config,
        };
        b.write_config(args, "unused");
        b
    }

    /// Writes config.json for container `id` (its cgroupsPath carries the id).
    pub fn write_config(&self, args: &[&str], id: &str) {
        let mut c = self.config.clone();
        c["process"]["terminal"] = serde_json::json!(false);
        c["process"]["args"] = serde_json::json!(args);
        c["root"]["readonly"] = serde_json::json!(false);
        c["linux"]["cgroupsPath"] = serde_json::json!(self.cgroups_path(id));
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
        .unwrap();
    }

    /// A separate bundle directory per container (for parallel creates with distinct configs):
    /// the same rootfs, config.json for `id`.
    pub fn bundle_for(&self, id: &str, args: &[&str]) -> PathBuf {
        let b = self.dir.path().join(format!("b-{id}"));
        std::fs::create_dir_all(&b).unwrap();
        let mut c = self.config.clone();
        c["process"]["terminal"] = serde_json::json!(false);
        c["process"]["args"] = serde_json::json!(args);
        c["root"]["readonly"] = serde_json::json!(false);
        c["root"]["path"] = serde_json::json!(self.bundle.join("rootfs"));
        c["linux"]["cgroupsPath"] = serde_json::json!(self.cgroups_path(id));
        std::fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
        .unwrap();
        b
    }

    /// `/<cgroup_parent>/<id>`.
    pub fn cgroups_path(&self, id: &str) -> String {
        format!("/{}/{id}", self.cgroup_parent)
    }

    /// The runtime with `--root` set.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.rt);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Runs the runtime with `args`; must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.cmd().args(args), Duration::from_secs(60))
    }

    /// Container ids the runtime lists (`list -q`).
    pub fn list(&self) -> Vec<String> {
        let out = run_limited(self.cmd().args(["list", "-q"]), Duration::from_secs(60));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Entries in the state root.
    pub fn state_entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Cgroup directories below the parent on every hierarchy (the parent itself excluded).
    pub fn cgroups_left(&self) -> Vec<String> {
        let tops = cgroup_dirs(&self.cgroup_parent);
        carve_cri::host::cgroup_tree(&self.cgroup_parent)
            .into_iter()
            .filter(|d| !tops.contains(d))
            .map(|d| d.display().to_string())
            .collect()
    }

    /// Pids of processes in any cgroup below the parent.
    pub fn procs_left(&self) -> Vec<i32> {
        carve_cri::host::procs_in_tree(&self.cgroup_parent)
    }

    /// Recovery as a client does it after the runtime died mid-command: `delete --force ID` (it
    /// may already be gone), then anything still listed.
    pub fn recover(&self, id: &str) {
        let _ = run_limited(
            self.cmd().args(["delete", "--force", id]),
            Duration::from_secs(30),
        );
        for left in self.list() {
            self.ok(&["delete", "--force", &left]);
        }
    }

    /// Reaps orphans' zombies, then asserts nothing of any container is left: state entries,
    /// cgroups, processes in them, live orphans, mounts; each failure names `ctx`.
    pub fn assert_clean(&self, ctx: &str) {
        reap_zombies();
        assert_eq!(
            self.state_entries(),
            Vec::<String>::new(),
            "state left: {ctx}"
        );
        assert_eq!(
            self.cgroups_left(),
            Vec::<String>::new(),
            "cgroups left: {ctx}"
        );
        assert_eq!(
            self.procs_left(),
            Vec::<i32>::new(),
            "processes left: {ctx}"
        );
        assert_eq!(live_children(), Vec::<i32>::new(), "orphans left: {ctx}");
        assert_eq!(
            self.mounts_left(),
            Vec::<String>::new(),
            "mounts left: {ctx}"
        );
    }

    /// Mounts in this mount namespace that mention the bundle's directory.
    pub fn mounts_left(&self) -> Vec<String> {
        let d = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&d))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in self.list() {
            let _ = run_limited(
                self.cmd().args(["delete", "--force", &id]),
                Duration::from_secs(30),
            );
        }
        let left = remove_cgroup_tree(&self.cgroup_parent);
        unmount_under(self.dir.path());
        if !left.is_empty() && !std::thread::panicking() {
            panic!("cgroups left behind: {left:?}");
        }
    }
}

/// Makes this process the reaper of orphans below it, so a runtime's container process that
/// outlives a killed runtime becomes our child and cannot hide.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments has no memory effects.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Reaps every exited child (zombies of orphans reparented to us); returns how many.
pub fn reap_zombies() -> usize {
    let mut n = 0;
    loop {
        let mut st = 0;
        // SAFETY: st is a valid out-pointer; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r <= 0 {
            return n;
        }
        n += 1;
    }
}

/// Live children of this process (all threads), zombies excluded.
pub fn live_children() -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for t in rd.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                v.extend(c.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    v.retain(|p| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    });
    v
}

/// Open fds of `pid` (None when it is gone).
pub fn fd_count(pid: i32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|rd| rd.count())
}
