//! containerd (Debian's, with its `ctr` and `containerd-shim-runc-v2`) drives the runtime through
//! `ctr run --runc-binary <carve-oci>`: `--rm` echo, detached run + `task exec`, `task pause/
//! resume`, `task metrics`, `task kill`, and a container that fails to start, whose error — the
//! runtime's last `level=error` line of its `--log-format json` log — must reach the ctr user.
//!
//! Each test starts its own containerd (root, state, socket and config in a temp dir; the CRI
//! plugin off), imports a busybox OCI image tarball built here from busybox-static, and uses its
//! own ctr namespace (so its own cgroup parent `/<namespace>`) and its own `--runc-root`. Drop
//! removes containers, the image, the daemon, leftover shims, cgroups and mounts.

mod clients_support;
use clients_support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

struct Containerd {
    _lock: carve_testkit::HostLock,
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    ctr: PathBuf,
    runtime: PathBuf,
    ns: String,
    image: String,
}

/// An OCI image-layout tarball of a busybox rootfs, named `name` for containerd.
fn busybox_image_tar(dir: &Path, name: &str) -> PathBuf {
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    carve_cri::image::image_tar(&rootfs, name, &["sh"], dir)
        .unwrap_or_else(|e| panic!("busybox image: {e}"))
}

impl Containerd {
    fn new() -> Containerd {
        let lock = host_lock();
        let bin = need("containerd", "containerd");
        let ctr = need("ctr", "containerd");
        need("containerd-shim-runc-v2", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("carve-containerd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let sock = d.join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.aufs\", \
             \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.tracing.processor.v1.otlp\", \
             \"io.containerd.internal.v1.tracing\"]\n\
             [grpc]\n  address = \"{1}\"\n[ttrpc]\n  address = \"{1}.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
            d.display(),
            sock.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let daemon = Command::new(&bin)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("containerd cannot start: {e}"));
        let mut c = Containerd {
            _lock: lock,
            ns: carve_testkit::unique_name("ctrd"),
            image: format!("docker.io/carve/busybox:{}", carve_testkit::short_name("i")),
            daemon: Some(daemon),
            ctr,
            runtime: runtime(),
            dir,
        };
        c.wait_ready(&sock);
        let tar = busybox_image_tar(c.dir.path(), &c.image);
        ok(
            c.ctr()
                .args(["image", "import", "--snapshotter", "native"])
                .arg(&tar),
            LIMIT,
        );
        c
    }

    /// Waits until ctr can talk to the daemon; fails with the daemon's log if it died or hangs.
    fn wait_ready(&mut self, sock: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "containerd cannot start here ({st}): {}",
                    std::fs::read_to_string(self.dir.path().join("containerd.log"))
                        .unwrap_or_default()
                );
            }
            if sock.exists()
                && run_limited(self.ctr().arg("version"), LIMIT)
                    .status
                    .success()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not answer on {} within 30 s: {}",
                    sock.display(),
                    std::fs::read_to_string(self.dir.path().join("containerd.log"))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("-a")
            .arg(self.dir.path().join("c.sock"))
            .args(["-n", &self.ns]);
        c
    }

    /// `ctr run` with this world's runtime, runtime root and snapshotter, then `args`.
    fn run(&self, args: &[&str]) -> Command {
        let mut c = self.ctr();
        c.args(["run", "--snapshotter", "native", "--runc-binary"])
            .arg(&self.runtime)
            .arg("--runc-root")
            .arg(self.dir.path().join("runc-root"))
            .args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.ctr().args(args), LIMIT)
    }

    /// The task's status from `ctr task ls` (RUNNING, PAUSED, STOPPED, ...).
    fn task_status(&self, id: &str) -> Option<String> {
        self.ok(&["task", "ls"]).lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.last().unwrap().to_string())
        })
    }

    fn task_pid(&self, id: &str) -> i32 {
        self.ok(&["task", "ls"])
            .lines()
            .skip(1)
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f[1].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no task {id}"))
    }

    fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self.task_status(id);
            if st.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} is {st:?}, not {want}, after 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let short = Duration::from_secs(20);
        let tasks = run_limited(self.ctr().args(["task", "ls", "-q"]), short);
        {
            for t in String::from_utf8_lossy(&tasks.stdout).lines() {
                let _ = run_limited(self.ctr().args(["task", "kill", "-s", "SIGKILL", t]), short);
                let _ = run_limited(self.ctr().args(["task", "rm", "-f", t]), short);
            }
        }
        let cs = run_limited(self.ctr().args(["container", "ls", "-q"]), short);
        {
            for c in String::from_utf8_lossy(&cs.stdout).lines() {
                let _ = run_limited(self.ctr().args(["container", "rm", c]), short);
            }
        }
        let _ = run_limited(self.ctr().args(["image", "rm", &self.image]), short);
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: kill has no memory effects; d is our own child.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let _ = d.wait();
        }
        // Shims outlive the daemon; ours carry the namespace in their command line.
        for pid in pids_matching(&self.ns) {
            // SAFETY: as above; these are this test's shims.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let left = remove_cgroup_tree(&self.ns);
        unmount_under(self.dir.path());
        if !left.is_empty() && !std::thread::panicking() {
            panic!("cgroups left behind: {left:?}");
        }
    }
}

#[test]
fn containerd_run_rm_echo_hi() {
    if !require_root() {
        return;
    }
    let c = Containerd::new();
    let id = carve_testkit::unique_name("echo");
    let out = ok(&mut c.run(&["--rm", &c.image, &id, "echo", "hi"]), LIMIT);
    assert_eq!(out, "hi\n");
    assert_eq!(c.ok(&["container", "ls", "-q"]), "");
}

#[test]
fn containerd_detached_exec_pause_resume_metrics_kill() {
    if !require_root() {
        return;
    }
    let c = Containerd::new();
    let id = carve_testkit::unique_name("det");
    ok(&mut c.run(&["-d", &c.image, &id, "sleep", "1000"]), LIMIT);
    c.wait_status(&id, "RUNNING");
    let pid = c.task_pid(&id);
    assert!(cgroup_of(pid, "memory").unwrap().contains(&c.ns));

    let out = c.ok(&["task", "exec", "--exec-id", "e1", &id, "echo", "from-exec"]);
    assert_eq!(out, "from-exec\n");
    let o = run_limited(
        c.ctr()
            .args(["task", "exec", "--exec-id", "e2", &id, "sh", "-c", "exit 5"]),
        LIMIT,
    );
    assert!(!o.status.success(), "exec's exit 5 was lost");

    c.ok(&["task", "pause", &id]);
    c.wait_status(&id, "PAUSED");
    assert_eq!(cgroup_file(pid, "freezer", "freezer.state"), "FROZEN");
    c.ok(&["task", "resume", &id]);
    c.wait_status(&id, "RUNNING");

    let m = c.ok(&["task", "metrics", &id]);
    assert!(m.contains("memory.usage_in_bytes"), "{m}");
    assert!(m.contains("pids.current"), "{m}");

    c.ok(&["task", "kill", "-s", "SIGKILL", &id]);
    c.wait_status(&id, "STOPPED");
    c.ok(&["task", "rm", &id]);
    c.ok(&["container", "rm", &id]);
    assert_eq!(c.ok(&["container", "ls", "-q"]), "");
}

/// The runtime's own message for a program that does not exist: its last `level=error` line when
/// run directly with `--log-format json`.
fn runtime_error_for_missing_program(dir: &Path) -> String {
    let rt = runtime();
    let bundle = dir.join("badbundle");
    std::fs::create_dir_all(&bundle).unwrap();
    busybox_rootfs(&bundle.join("rootfs"));
    ok(Command::new(&rt).arg("spec").current_dir(&bundle), LIMIT);
    let cfgp = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfgp).unwrap()).unwrap();
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["/no/such/prog"]);
    std::fs::write(&cfgp, cfg.to_string()).unwrap();
    let root = dir.join("badroot");
    let log = dir.join("bad.log");
    let id = carve_testkit::unique_name("bad");
    let mut c = Command::new(&rt);
    c.arg("--root")
        .arg(&root)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(&bundle)
        .arg(&id);
    let o = run_limited(&mut c, LIMIT);
    let _ = run_limited(
        Command::new(&rt)
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &id]),
        LIMIT,
    );
    assert!(!o.status.success(), "create of a missing program succeeded");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next()
        .unwrap_or_else(|| panic!("no level=error line in the runtime's json log: {text}"))
}

#[test]
fn containerd_shows_the_runtime_error_to_the_user() {
    if !require_root() {
        return;
    }
    let c = Containerd::new();
    let want = runtime_error_for_missing_program(c.dir.path());
    let id = carve_testkit::unique_name("fail");
    let err = fails(&mut c.run(&["--rm", &c.image, &id, "/no/such/prog"]), LIMIT);
    assert!(
        err.contains(&want),
        "ctr's error does not carry the runtime's message {want:?}: {err}"
    );
    // nothing of the failed container is left
    assert_eq!(c.ok(&["task", "ls", "-q"]), "");
}
