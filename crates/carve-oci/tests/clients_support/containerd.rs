//! A containerd of a test's own (root, state, socket and config in a temp dir; the CRI plugin
//! off) with a busybox OCI image imported, its own ctr namespace (so its own cgroup parent
//! `/<namespace>`) and its own `--runc-root`. Drop removes containers, the image, the daemon,
//! leftover shims, cgroups and mounts. Used by clients_containerd.rs and shim_kill.rs.
#![allow(dead_code)]

use crate::clients_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The deadline of every ctr command.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A running containerd of the test's own.
pub struct Containerd {
    _lock: carve_testkit::HostLock,
    /// Its root, state, socket, log and the runtime's `--runc-root`.
    pub dir: tempfile::TempDir,
    daemon: Option<Child>,
    ctr: PathBuf,
    runtime: PathBuf,
    /// The ctr namespace (also the cgroup parent).
    pub ns: String,
    /// The imported busybox image.
    pub image: String,
}

/// An OCI image-layout tarball of a busybox rootfs, named `name` for containerd.
fn busybox_image_tar(dir: &Path, name: &str) -> PathBuf {
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    carve_cri::image::image_tar(&rootfs, name, &["sh"], dir)
        .unwrap_or_else(|e| panic!("busybox image: {e}"))
}

impl Containerd {
    /// Starts the daemon and imports the image (holding the host lock shared).
    pub fn new() -> Containerd {
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

    /// ctr against this daemon and namespace.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("-a")
            .arg(self.dir.path().join("c.sock"))
            .args(["-n", &self.ns]);
        c
    }

    /// `ctr run` with this world's runtime, runtime root and snapshotter, then `args`.
    pub fn run(&self, args: &[&str]) -> Command {
        let mut c = self.ctr();
        c.args(["run", "--snapshotter", "native", "--runc-binary"])
            .arg(&self.runtime)
            .arg("--runc-root")
            .arg(self.dir.path().join("runc-root"))
            .args(args);
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.ctr().args(args), LIMIT)
    }

    /// `ctr run -d IMAGE ID ARGS…`, then waits until the task is `status` (RUNNING, STOPPED).
    pub fn run_detached(&self, id: &str, args: &[&str], status: &str) {
        let mut all = vec!["-d", self.image.as_str(), id];
        all.extend_from_slice(args);
        ok(&mut self.run(&all), LIMIT);
        self.wait_status(id, status);
    }

    /// The task's status from `ctr task ls` (RUNNING, PAUSED, STOPPED, ...).
    pub fn task_status(&self, id: &str) -> Option<String> {
        self.ok(&["task", "ls"]).lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.last().unwrap().to_string())
        })
    }

    pub fn task_pid(&self, id: &str) -> i32 {
        self.ok(&["task", "ls"])
            .lines()
            .skip(1)
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f[1].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no task {id}"))
    }

    pub fn wait_status(&self, id: &str, want: &str) {
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
