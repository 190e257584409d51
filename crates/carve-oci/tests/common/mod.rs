//! Shared helpers for the carve-oci integration tests: a busybox bundle in a temp dir, a private
//! `--root`, the real binary, and a guard that force-deletes the container on drop.
#![allow(dead_code)]

pub mod fdpass;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

static OUT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub const BIN: &str = env!("CARGO_BIN_EXE_carve-oci");

/// A bundle (rootfs with busybox + applets, config.json) and a state root, both temporary.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub bundle: PathBuf,
    pub root: PathBuf,
    pub id: String,
    pub config: Value,
}

/// Container tests hold the host lock shared (for the life of the test process, one test per process
/// under nextest): a dedicated-core test elsewhere in the suite makes a cpu exclusive, and then no
/// new v1 cpuset — a container's cgroup — may span all cpus.
static HOST_LOCK: std::sync::OnceLock<carve_testkit::HostLock> = std::sync::OnceLock::new();

pub fn require_root() -> bool {
    carve_testkit::require_root()
}

fn busybox_rootfs(rootfs: &Path) {
    carve_testkit::busybox_rootfs(rootfs)
}

impl Env {
    /// A bundle with `carve-oci spec`'s defaults, no terminal, running `args`.
    pub fn new(prefix: &str, args: &[&str]) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("carve-oci-t")
            .tempdir()
            .unwrap();
        // TempDir's Drop does not run when nextest kills the test (it may wait on the host lock).
        carve_testkit::reaper().remove(dir.path());
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        busybox_rootfs(&bundle.join("rootfs"));
        let out = Command::new(BIN)
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["root"]["readonly"] = json!(false);
        let root = dir.path().join("state");
        let id = carve_testkit::unique_name(prefix);
        HOST_LOCK.get_or_init(carve_testkit::HostLock::shared);
        let e = Env {
            dir,
            bundle,
            root,
            id,
            config,
        };
        e.write_config();
        e
    }

    pub fn write_config(&self) {
        std::fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// Runs `carve-oci --root ROOT ARGS…`. Output goes through files, not pipes: a created
    /// container's init inherits the runtime's stdio and would hold a pipe open.
    pub fn oci(&self, args: &[&str]) -> Output {
        self.oci_env(args, &[])
    }

    /// As `oci`, with extra environment variables.
    pub fn oci_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let n = OUT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = self.dir.path().join(format!("out.{n}"));
        let err = self.dir.path().join(format!("err.{n}"));
        let status = Command::new(BIN)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        let o = Output {
            status,
            stdout: std::fs::read(&out).unwrap(),
            stderr: std::fs::read(&err).unwrap(),
        };
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&err);
        o
    }

    /// As `oci`, asserting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.oci(args);
        assert!(
            o.status.success(),
            "carve-oci {args:?} failed ({:?}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// As `oci`, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.oci(args);
        assert!(
            !o.status.success(),
            "carve-oci {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// As `fails`, asserting stderr contains every `needle`; returns stderr.
    pub fn fails_with(&self, args: &[&str], needles: &[&str]) -> String {
        let err = self.fails(args);
        for n in needles {
            assert!(err.contains(n), "carve-oci {args:?}: no {n:?} in {err}");
        }
        err
    }

    /// `create` and `start`: a running container, force-deleted when the guard drops.
    pub fn create_started(&self) -> Guard<'_> {
        let g = self.create();
        self.ok(&["start", &self.id]);
        g
    }

    /// `create` of the bundle as it is on disk fails, its stderr holds every `needle`, and
    /// nothing of the container is left; returns stderr.
    pub fn create_refused(&self, needles: &[&str]) -> String {
        let b = self.bundle.to_str().unwrap().to_string();
        let err = self.fails(&["create", "--bundle", &b, &self.id]);
        for n in needles {
            assert!(err.contains(n), "create refused without {n:?}: {err}");
        }
        self.assert_gone();
        err
    }

    pub fn create(&self) -> Guard<'_> {
        let b = self.bundle.to_str().unwrap().to_string();
        self.ok(&["create", "--bundle", &b, &self.id]);
        Guard { env: self }
    }

    /// `create` with extra flags.
    pub fn create_with(&self, extra: &[&str]) -> Guard<'_> {
        let b = self.bundle.to_str().unwrap().to_string();
        let mut args = vec!["create", "--bundle", &b];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.ok(&args);
        Guard { env: self }
    }

    /// `run` in the foreground: (exit code, stdout, stderr). The container is deleted after.
    pub fn run(&self) -> (i32, String, String) {
        let b = self.bundle.to_str().unwrap().to_string();
        let _g = Guard { env: self };
        let o = self.oci(&["run", "--bundle", &b, &self.id]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// `run`, asserting exit 0; returns stdout.
    pub fn run_ok(&self) -> String {
        let (code, out, err) = self.run();
        assert_eq!(code, 0, "run failed: stdout {out}\nstderr {err}");
        out
    }

    pub fn state(&self) -> Value {
        serde_json::from_str(&self.ok(&["state", &self.id])).unwrap()
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    /// Waits (bounded) until the container reaches `want`.
    pub fn wait_status(&self, want: &str) {
        for _ in 0..500 {
            if self.status() == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container never became {want}: {}", self.status());
    }

    /// The container's cgroup directories that must be gone after delete.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        if pure_v2() {
            return vec![PathBuf::from("/sys/fs/cgroup").join(&self.id)];
        }
        ["memory", "pids", "cpu", "freezer", "devices", "unified"]
            .iter()
            .map(|h| PathBuf::from("/sys/fs/cgroup").join(h).join(&self.id))
            .collect()
    }

    /// Asserts nothing of the container is left: state dir, cgroups, processes.
    pub fn assert_gone(&self) {
        assert!(!self.root.join(&self.id).exists(), "state dir left behind");
        for d in self.cgroup_dirs() {
            assert!(!d.exists(), "cgroup left behind: {}", d.display());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&self.id), "mount left behind");
        assert!(
            !mounts.contains(self.dir.path().to_str().unwrap()),
            "mount of the bundle left behind"
        );
    }
}

/// Force-deletes the container when dropped.
pub struct Guard<'a> {
    pub env: &'a Env,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.env.oci(&["delete", "--force", &self.env.id]);
    }
}

/// For a `host_tuning` test: holds the host lock exclusively for the rest of this process (one
/// test per process under nextest, as scripts/test.sh runs them; its `Env`s then take no shared
/// lock). Panics if this process already holds it shared — several tests in one process, as
/// plain `cargo test` runs them — rather than wait forever for itself.
pub fn hold_host_exclusively() {
    let mut took = false;
    HOST_LOCK.get_or_init(|| {
        took = true;
        carve_testkit::HostLock::exclusive()
    });
    assert!(
        took,
        "a host_tuning test needs a process of its own: run it under cargo nextest, or alone"
    );
}

/// Root, and a v1/hybrid host; on a pure-v2 host records a `host` skip saying `what` needs the
/// v1/hybrid layout.
pub fn require_hybrid(what: &str) -> bool {
    if !require_root() {
        return false;
    }
    if pure_v2() {
        carve_testkit::skip(
            carve_testkit::SkipKind::Host,
            format!("pure cgroup2 host ({what} the v1/hybrid layout)"),
        );
        return false;
    }
    true
}

/// Whether this host has cgroup2 alone at /sys/fs/cgroup (the QEMU guest of
/// scripts/oci-v2-guest-test.sh runs these tests there too).
pub fn pure_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A cgroup file as a container sees it: `/sys/fs/cgroup/V1` (e.g. "memory/memory.limit_in_bytes")
/// on a v1 or hybrid host, `/sys/fs/cgroup/V2` (e.g. "memory.max") on a pure v2 host.
pub fn cg_file(v1: &str, v2: &str) -> String {
    format!("/sys/fs/cgroup/{}", if pure_v2() { v2 } else { v1 })
}

/// Host namespace inode of a type.
pub fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The cgroup hierarchies mounted under /sys/fs/cgroup: (mount point, controllers) — e.g.
/// ("/sys/fs/cgroup/cpu", "cpu"), ("/sys/fs/cgroup/systemd", "name=systemd"),
/// ("/sys/fs/cgroup/unified", "") for cgroup2.
pub fn cgroup_hierarchies() -> Vec<(PathBuf, String)> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut v = Vec::new();
    for l in mi.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (mp, fstype) = (f[4], f[sep + 1]);
        if !mp.starts_with("/sys/fs/cgroup") {
            continue;
        }
        match fstype {
            "cgroup2" => v.push((PathBuf::from(mp), String::new())),
            "cgroup" => {
                let ctl: Vec<&str> = f[sep + 3]
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro" | "xattr" | "relatime" | "noprefix"))
                    .filter(|o| !o.starts_with("release_agent") && !o.starts_with("clone_"))
                    .collect();
                v.push((PathBuf::from(mp), ctl.join(",")));
            }
            _ => {}
        }
    }
    v
}

impl Env {
    /// The container's directory on every mounted cgroup hierarchy (v1 ones, name=systemd,
    /// cgroup2): what must hold its processes while it lives and be gone after delete.
    pub fn cgroup_dirs_everywhere(&self) -> Vec<PathBuf> {
        cgroup_hierarchies()
            .into_iter()
            .map(|(mp, _)| mp.join(&self.id))
            .collect()
    }

    /// Adds a new namespace of `kind` ("user", "time"…) to the config (not yet written).
    pub fn add_namespace(&mut self, kind: &str) {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": kind }));
    }

    /// Adds a user namespace whose ids 0-65535 are `host_id`… outside, for both uids and gids
    /// (not yet written).
    pub fn map_user_ns(&mut self, host_id: u32) {
        self.add_namespace("user");
        let map = json!([{"containerID": 0, "hostID": host_id, "size": 65536}]);
        self.config["linux"]["uidMappings"] = map.clone();
        self.config["linux"]["gidMappings"] = map;
    }

    /// `exec --detach --pid-file F [FLAGS…] ID sleep 1000`; returns the exec'd pid (F is
    /// `NAME.pid` in the test dir).
    pub fn exec_detached(&self, flags: &[&str], name: &str) -> String {
        let pf = self.dir.path().join(format!("{name}.pid"));
        let mut args = vec!["exec", "--detach", "--pid-file", pf.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&self.id, "sleep", "1000"]);
        self.ok(&args);
        read(&pf)
    }

    /// The container's init pid (from `state`).
    pub fn init_pid(&self) -> i64 {
        self.state()["pid"].as_i64().unwrap()
    }
}

/// A file's contents, trimmed; panics naming the file.
pub fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Polls `f` every 20 ms until it holds; fails the test naming `what` after 15 s.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A named network namespace for the test, deleted on drop.
pub struct NetNs(pub String);

impl NetNs {
    /// `ip netns add` of a unique name.
    pub fn new() -> NetNs {
        let n = carve_testkit::unique_name("carve-ns");
        let st = std::process::Command::new("ip")
            .args(["netns", "add", &n])
            .status()
            .unwrap();
        assert!(st.success());
        NetNs(n)
    }
    /// Its bind mount, /run/netns/NAME.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}
