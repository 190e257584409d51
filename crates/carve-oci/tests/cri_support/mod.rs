//! A CRI test world: a private containerd node (carve_cri::node::Node) in a temp dir, a CRI
//! client, and the kubelet-like steps the CRI tests repeat. Drop removes the node (pods through
//! the CRI, the daemon, its shims, cgroups, mounts, netns) and the directory.
#![allow(dead_code)]

use carve_cri::api as cri;
use carve_cri::client::Client;
use carve_cri::node::{Node, NodeOptions, BUSYBOX_IMAGE};
use carve_cri::pod::{ContainerSpec, PodSpec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One node, its client, and what the test made on it.
pub struct World {
    /// The CRI client.
    pub client: Client,
    /// The node (dropped before the directory).
    pub node: Node,
    /// The node's directory.
    pub dir: tempfile::TempDir,
    _lock: Option<carve_testkit::HostLock>,
    /// The network namespaces (bind mounts) of the pods this world ran.
    pod_netns: PodNetns,
}

impl World {
    /// A node holding the host lock shared (a dedicated-core test's exclusive cpuset would make
    /// every runtime fail to create a container cgroup).
    pub fn new() -> World {
        World::with_lock(Some(carve_testkit::HostLock::shared()))
    }

    /// A node under `lock` (a host_tuning test passes its exclusive lock).
    pub fn with_lock(lock: Option<carve_testkit::HostLock>) -> World {
        for (tool, pkg) in [
            ("containerd", "containerd"),
            ("ctr", "containerd"),
            ("runc", "runc"),
        ] {
            super::clients_support::need(tool, pkg);
        }
        assert!(
            Path::new("/usr/lib/cni/bridge").exists(),
            "the CNI bridge plugin is missing: scripts/setup.sh installs containernetworking-plugins"
        );
        let dir = tempfile::Builder::new()
            .prefix("carve-cri-")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("busybox-rootfs");
        carve_testkit::busybox_rootfs(&rootfs);
        let node = Node::start(NodeOptions {
            name: carve_testkit::unique_name("cri"),
            dir: dir.path().to_path_buf(),
            carve_oci: PathBuf::from(env!("CARGO_BIN_EXE_carve-oci")),
            runc: super::clients_support::need("runc", "runc"),
            busybox_rootfs: rootfs,
            subnet: "10.209.0.0/24".into(),
        })
        .unwrap_or_else(|e| panic!("the CRI node did not start: {e}"));
        let client = node.client().expect("CRI client");
        World {
            client,
            node,
            dir,
            _lock: lock,
            pod_netns: PodNetns::default(),
        }
    }

    /// A pod `name` of `handler` under the node's cgroup root, logging below the node's dir.
    pub fn pod_spec(&self, name: &str, handler: &str, annotations: &[(&str, &str)]) -> PodSpec {
        let log = self.dir.path().join("pods").join(name);
        std::fs::create_dir_all(&log).unwrap();
        PodSpec {
            name: name.into(),
            namespace: "default".into(),
            handler: handler.into(),
            cgroup_parent: format!("{}/{name}", self.node.cgroup_root()),
            log_directory: log.display().to_string(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            host_network: false,
        }
    }

    /// A busybox container `name` running `cmd`, logging to NAME.log.
    pub fn container_spec(&self, name: &str, cmd: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: BUSYBOX_IMAGE.into(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            annotations: HashMap::new(),
            ..Default::default()
        }
    }

    /// RunPodSandbox; returns the pod's id (and remembers its network namespace).
    pub fn run_pod(&mut self, pod: &PodSpec) -> String {
        let id = self
            .client
            .run_pod_sandbox(pod.request())
            .unwrap_or_else(|e| panic!("RunPodSandbox {} ({}): {e}", pod.name, pod.handler))
            .pod_sandbox_id;
        let st = self
            .client
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}"));
        let info: serde_json::Value =
            serde_json::from_str(st.info.get("info").map(String::as_str).unwrap_or("{}")).unwrap();
        let ns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(p) = ns
            .iter()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
        {
            self.pod_netns.0.push(p.into());
        }
        id
    }

    /// CreateContainer; returns its id or the error.
    pub fn create(
        &mut self,
        pod_id: &str,
        pod: &PodSpec,
        c: &ContainerSpec,
    ) -> Result<String, carve_cri::client::Error> {
        self.client
            .create_container(c.request(pod_id, pod))
            .map(|r| r.container_id)
    }

    /// CreateContainer + StartContainer, where the runtime's `create` runs (containerd creates the
    /// task at start). A container that fails to start is removed; its error is returned.
    pub fn try_create_start(
        &mut self,
        pod_id: &str,
        pod: &PodSpec,
        c: &ContainerSpec,
    ) -> Result<String, carve_cri::client::Error> {
        let id = self.create(pod_id, pod, c)?;
        if let Err(e) = self.client.start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        }) {
            let _ = self
                .client
                .remove_container(cri::RemoveContainerRequest { container_id: id });
            return Err(e);
        }
        Ok(id)
    }

    /// CreateContainer + StartContainer; returns the container's id.
    pub fn create_start(&mut self, pod_id: &str, pod: &PodSpec, c: &ContainerSpec) -> String {
        let id = self
            .create(pod_id, pod, c)
            .unwrap_or_else(|e| panic!("CreateContainer {} ({}): {e}", c.name, pod.handler));
        self.client
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .unwrap_or_else(|e| panic!("StartContainer {} ({}): {e}", c.name, pod.handler));
        id
    }

    /// ExecSync with a 30 s timeout.
    pub fn exec(&mut self, id: &str, cmd: &[&str]) -> cri::ExecSyncResponse {
        self.client
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 30,
            })
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} in {id}: {e}"))
    }

    /// ExecSync of `sh -c script` that must exit 0; returns stdout.
    pub fn sh(&mut self, id: &str, script: &str) -> String {
        let r = self.exec(id, &["sh", "-c", script]);
        assert_eq!(
            r.exit_code,
            0,
            "{script:?} in {id}: exit {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).into_owned()
    }

    /// The container's verbose status info (containerd's JSON: pid, runtimeSpec, ...).
    pub fn info(&mut self, id: &str) -> serde_json::Value {
        let st = self
            .client
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"));
        serde_json::from_str(st.info.get("info").map(String::as_str).unwrap_or("{}")).unwrap()
    }

    /// The container's init pid on the host.
    pub fn pid(&mut self, id: &str) -> i32 {
        let info = self.info(id);
        info["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("no pid in {id}'s status info: {info}")) as i32
    }

    /// Polls ContainerStatus until the container is in `want` (30 s).
    pub fn wait_state(&mut self, id: &str, want: cri::ContainerState) -> cri::ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = self
                .client
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: false,
                })
                .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
                .status
                .expect("status");
            if st.state == want as i32 {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} is in state {}, not {want:?}, after 30 s; containerd's log:\n{}",
                st.state,
                self.node.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// StopContainer (SIGTERM, SIGKILL after `timeout` s), then it must be EXITED; RemoveContainer.
    pub fn stop_remove_container(&mut self, id: &str, timeout: i64) {
        self.client
            .stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .unwrap_or_else(|e| panic!("StopContainer {id}: {e}"));
        self.wait_state(id, cri::ContainerState::ContainerExited);
        self.client
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e}"));
    }

    /// StopPodSandbox + RemovePodSandbox, then removes the pod's cgroup parent as the kubelet
    /// does (containerd never removes it): that fails if the runtime left a container cgroup.
    pub fn remove_pod(&mut self, pod_id: &str, pod: &PodSpec) {
        self.client
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            })
            .unwrap_or_else(|e| panic!("StopPodSandbox {pod_id}: {e}"));
        self.client
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            })
            .unwrap_or_else(|e| panic!("RemovePodSandbox {pod_id}: {e}"));
        let mut parents = carve_cri::host::cgroup_tree(&pod.cgroup_parent);
        parents.retain(|d| d.ends_with(pod.cgroup_parent.trim_start_matches('/')));
        for d in parents {
            if let Err(e) = std::fs::remove_dir(&d) {
                let left: Vec<_> = std::fs::read_dir(&d)
                    .map(|rd| {
                        rd.flatten()
                            .filter(|e| e.path().is_dir())
                            .map(|e| e.file_name())
                            .collect()
                    })
                    .unwrap_or_default();
                panic!(
                    "pod cgroup {} cannot be removed ({e}): left inside: {left:?}",
                    d.display()
                );
            }
        }
    }

    /// After every pod was removed: no container, sandbox, process, cgroup below the pods'
    /// parent, mount of the node's dir, or pod network namespace is left.
    pub fn assert_nothing_left(&mut self) {
        let pods = self
            .client
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .unwrap()
            .items;
        assert!(pods.is_empty(), "pods left: {pods:?}");
        let cs = self
            .client
            .list_containers(cri::ListContainersRequest::default())
            .unwrap()
            .containers;
        assert!(cs.is_empty(), "containers left: {cs:?}");
        let root = self.node.cgroup_root();
        let procs = carve_cri::host::procs_in_tree(&root);
        assert!(procs.is_empty(), "processes left in {root}: {procs:?}");
        let dirs: Vec<PathBuf> = carve_cri::host::cgroup_tree(&root)
            .into_iter()
            .filter(|d| !d.ends_with(root.trim_start_matches('/')))
            .collect();
        assert!(dirs.is_empty(), "pod cgroups left: {dirs:?}");
        let mounts = carve_cri::host::mounts_under(self.dir.path());
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        for h in ["runc", "carve"] {
            let st = self.node.runtime_root(h).join("k8s.io");
            let left: Vec<_> = std::fs::read_dir(&st)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{h} state left: {left:?}");
        }
        let left: Vec<&PathBuf> = self.pod_netns.0.iter().filter(|p| p.exists()).collect();
        assert!(left.is_empty(), "pod network namespaces left: {left:?}");
    }
}

/// Pod network namespaces; dropped after the node (fields drop in order), removing those a dead
/// containerd left behind.
#[derive(Default)]
pub struct PodNetns(Vec<PathBuf>);

impl Drop for PodNetns {
    fn drop(&mut self) {
        for p in self.0.iter().filter(|p| p.exists()) {
            // containerd names /var/run/netns/…; mountinfo has the canonical /run/netns/….
            let p = &std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            carve_cri::host::unmount_under(p);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `/sys/fs/cgroup/CONTROLLER/<pid's cgroup>/FILE`.
pub fn cgroup_value(pid: i32, controller: &str, file: &str) -> String {
    super::clients_support::cgroup_file(pid, controller, file)
}

/// Waits (30 s) until `log` has a line containing `needle`; returns the file's text.
pub fn wait_for_line(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| l.contains(needle)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} has no line with {needle:?} after 30 s: {text:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every line is `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>` (the kubelet's CRI log
/// format).
pub fn check_cri_log_format(text: &str) {
    for l in text.lines() {
        let f: Vec<&str> = l.splitn(4, ' ').collect();
        assert_eq!(f.len(), 4, "not a CRI log line: {l:?}");
        let ts = f[0].as_bytes();
        let ok_ts = ts.len() >= 20
            && ts[4] == b'-'
            && ts[7] == b'-'
            && ts[10] == b'T'
            && ts[13] == b':'
            && ts[16] == b':'
            && ts[19] == b'.'
            && (f[0].ends_with('Z') || f[0][19..].contains(['+', '-']));
        assert!(ok_ts, "not an RFC3339Nano timestamp: {l:?}");
        assert!(["stdout", "stderr"].contains(&f[1]), "stream: {l:?}");
        assert!(["F", "P"].contains(&f[2]), "tag: {l:?}");
    }
}
