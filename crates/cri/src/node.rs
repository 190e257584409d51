//! [`Node`]: a private containerd with its CRI plugin, the way a Kubernetes node runs it, for
//! tests and `carve bench cri` on a machine that is not a node.
//!
//! Everything lives in one directory the caller gives: containerd's root and state, the gRPC and
//! ttrpc sockets, the config, the CNI config and its IPAM data, the runtimes' state roots. The
//! daemon runs inside a network namespace of its own (named after the node), so the pod network's
//! bridge and host-side veths never appear in the host's namespace; pods get their addresses
//! from a private subnet on that bridge and reach nothing else. Two runtime handlers are
//! configured: `runc` and `carve` (the same runc v2 shim, `BinaryName` = carve-oci,
//! `pod_annotations = ["carve.dev/*"]`). The pause and busybox images are built here and
//! imported with `ctr -n k8s.io images import`. Drop stops every pod through the CRI, stops the
//! daemon and its shims, and removes the cgroup tree, mounts and network namespace.

use crate::client::Client;
use k8s_cri::v1 as cri;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The sandbox image name the node's CRI plugin uses.
pub const PAUSE_IMAGE: &str = "docker.io/carve/pause:1";
/// The busybox image name pods of the node run.
pub const BUSYBOX_IMAGE: &str = "docker.io/carve/busybox:1";

/// Why a node could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A command (ip, ctr, containerd) failed.
    #[error("{what}: {message}")]
    Command {
        /// What was run.
        what: String,
        /// Its stderr or the spawn error.
        message: String,
    },
    /// containerd did not answer the CRI in time.
    #[error(
        "containerd's CRI did not answer on {socket} within {secs} s: {last}; its log:\n{log}"
    )]
    NotReady {
        /// The socket.
        socket: PathBuf,
        /// The deadline.
        secs: u64,
        /// The last error.
        last: String,
        /// The tail of containerd's log.
        log: String,
    },
    /// Building an image failed.
    #[error(transparent)]
    Image(#[from] crate::image::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn run(cmd: &mut Command) -> Result<String, Error> {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command {
            what: what.clone(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            what,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a node is made of.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// A unique name containing "carve": the network namespace's name and the cgroup parent
    /// (`/NAME`) under which pods live.
    pub name: String,
    /// The node's directory (must exist; owned by the caller, e.g. a temp dir).
    pub dir: PathBuf,
    /// The carve-oci binary of the `carve` handler.
    pub carve_oci: PathBuf,
    /// The runc binary of the `runc` handler.
    pub runc: PathBuf,
    /// A busybox rootfs directory for [`BUSYBOX_IMAGE`].
    pub busybox_rootfs: PathBuf,
    /// The pods' /24 subnet on the node's private bridge, e.g. "10.209.7.0/24".
    pub subnet: String,
}

/// A running private containerd with the CRI plugin; see the module docs.
pub struct Node {
    opts: NodeOptions,
    daemon: Option<Child>,
    netns_made: bool,
}

impl Node {
    /// Sets the node up and waits until its CRI answers; on failure what was made is removed.
    pub fn start(opts: NodeOptions) -> Result<Node, Error> {
        let mut node = Node {
            opts,
            daemon: None,
            netns_made: false,
        };
        node.start_inner()?;
        Ok(node)
    }

    fn start_inner(&mut self) -> Result<(), Error> {
        let d = self.opts.dir.clone();
        run(Command::new("ip").args(["netns", "add", &self.opts.name]))?;
        self.netns_made = true;
        // The CRI plugin's stream server binds 127.0.0.1 in the daemon's namespace.
        run(Command::new("ip").args(["-n", &self.opts.name, "link", "set", "lo", "up"]))?;
        let cni = d.join("cni");
        std::fs::create_dir_all(&cni).map_err(io(&cni))?;
        let conf = cni.join("10-carve.conflist");
        std::fs::write(&conf, self.cni_config()).map_err(io(&conf))?;
        let cfg = d.join("containerd.toml");
        std::fs::write(&cfg, self.containerd_config()).map_err(io(&cfg))?;
        let log = d.join("containerd.log");
        let logf = std::fs::File::create(&log).map_err(io(&log))?;
        let ns_path = PathBuf::from("/run/netns").join(&self.opts.name);
        let ns = std::fs::File::open(&ns_path).map_err(io(&ns_path))?;
        let ns_fd = ns.as_raw_fd();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().map_err(io(&log))?)
            .stderr(logf);
        // SAFETY: between fork and exec only setns (async-signal-safe) runs, on an fd this
        // process keeps open until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| Error::Command {
            what: "containerd".into(),
            message: e.to_string(),
        })?;
        drop(ns);
        self.daemon = Some(child);
        self.wait_ready(Duration::from_secs(30))?;
        let work = d.join("images");
        std::fs::create_dir_all(&work).map_err(io(&work))?;
        let pause = crate::image::pause_image_tar(PAUSE_IMAGE, &work)?;
        let busybox =
            crate::image::image_tar(&self.opts.busybox_rootfs, BUSYBOX_IMAGE, &["sh"], &work)?;
        for tar in [pause, busybox] {
            run(self
                .ctr()
                .args(["images", "import", "--snapshotter", "native"])
                .arg(&tar))?;
        }
        std::fs::remove_dir_all(&work).map_err(io(&work))?;
        Ok(())
    }

    /// The CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.opts.dir.join("containerd.sock")
    }

    /// The cgroup parent every pod of this node should be placed under (`/NAME`).
    pub fn cgroup_root(&self) -> String {
        format!("/{}", self.opts.name)
    }

    /// The runtime state root (`Root` option) of handler `handler` (`carve` or `runc`); the shim
    /// appends the containerd namespace (`k8s.io`).
    pub fn runtime_root(&self, handler: &str) -> PathBuf {
        self.opts.dir.join(format!("{handler}-root"))
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// A new CRI client for this node.
    pub fn client(&self) -> Result<Client, crate::client::Error> {
        Client::connect(&self.socket(), Duration::from_secs(60))
    }

    /// `ctr` talking to this node's daemon in the CRI's `k8s.io` namespace.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(self.socket()).args(["-n", "k8s.io"]);
        c
    }

    fn containerd_config(&self) -> String {
        let d = self.opts.dir.display();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let rt = |name: &str, bin: &Path, annotations: &str| {
            format!(
                "[{cri}.containerd.runtimes.{name}]\n  runtime_type = \"io.containerd.runc.v2\"\n  \
                 pod_annotations = [{annotations}]\n\
                 [{cri}.containerd.runtimes.{name}.options]\n  BinaryName = \"{}\"\n  Root = \"{}\"\n",
                bin.display(),
                self.runtime_root(name).display()
            )
        };
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.aufs\", \
             \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.tracing.processor.v1.otlp\", \
             \"io.containerd.internal.v1.tracing\"]\n\
             [grpc]\n  address = \"{d}/containerd.sock\"\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [{cri}]\n  sandbox_image = \"{PAUSE_IMAGE}\"\n  stream_server_address = \"127.0.0.1\"\n  \
             stream_server_port = \"0\"\n  restrict_oom_score_adj = true\n  enable_selinux = false\n\
             [{cri}.containerd]\n  snapshotter = \"native\"\n  default_runtime_name = \"runc\"\n\
             {}{}\
             [{cri}.cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{d}/cni\"\n  max_conf_num = 1\n",
            rt("runc", &self.opts.runc, ""),
            rt("carve", &self.opts.carve_oci, "\"carve.dev/*\""),
        )
    }

    fn cni_config(&self) -> String {
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": self.opts.name,
            "plugins": [{
                "type": "bridge", "bridge": "carve0", "isGateway": false, "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.opts.subnet}]],
                    "dataDir": self.opts.dir.join("cni-ipam"),
                },
            }],
        })
        .to_string()
    }

    /// The last 30 lines of containerd's log (for error messages).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.opts.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + limit;
        let mut last = String::from("no attempt yet");
        loop {
            if let Some(st) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                last = format!("containerd exited ({st})");
            } else if self.socket().exists() {
                let version = Client::connect(&self.socket(), Duration::from_secs(5))
                    .and_then(|mut c| c.version(cri::VersionRequest::default()));
                match version {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() > deadline || last.starts_with("containerd exited") {
                return Err(Error::NotReady {
                    socket: self.socket(),
                    secs: limit.as_secs(),
                    last,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops and removes every pod through the CRI (what the kubelet does when a node drains).
    fn remove_pods(&self) {
        let Ok(mut c) = Client::connect(&self.socket(), Duration::from_secs(20)) else {
            return;
        };
        let pods = c
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .map(|r| r.items)
            .unwrap_or_default();
        for p in pods {
            let _ = c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            });
            let _ = c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            });
        }
    }

    /// SIGKILLs containerd (a node crash, for tests); its shims and containers stay.
    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    fn stop_daemon(&mut self) {
        let Some(mut d) = self.daemon.take() else {
            return;
        };
        // SAFETY: kill has no memory effects; d is our own child.
        unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = d.kill();
                let _ = d.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            self.remove_pods();
        }
        self.stop_daemon();
        // Shims outlive the daemon; ours name its socket (under the node's dir) on their
        // command line.
        let sock = self.socket().display().to_string();
        for pid in crate::host::pids_matching(&sock) {
            // SAFETY: kill has no memory effects; these are this node's shims.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        crate::host::remove_cgroup_tree(&self.opts.name);
        crate::host::unmount_under(&self.opts.dir);
        if self.netns_made {
            let _ = run(Command::new("ip").args(["netns", "del", &self.opts.name]));
        }
    }
}
