//! `carve cri ...`: a CRI v1 client for checking a node without crictl (Debian has none). Each
//! subcommand is one CRI call; the response is printed as JSON.

use carve_cri::api as cri;
use carve_cri::pod::{ContainerSpec, PodSpec};
use std::path::PathBuf;

/// Arguments of `carve cri`.
#[derive(clap::Args)]
pub struct Args {
    /// The CRI socket.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub socket: PathBuf,
    /// Deadline of the call, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// The call.
    #[command(subcommand)]
    pub call: Call,
}

/// A pod as the kubelet describes it (RunPodSandbox, and again with CreateContainer).
#[derive(clap::Args)]
pub struct Pod {
    /// The pod's name (also its uid and hostname). Its own id: `create` flattens the pod beside
    /// the container's `--name`, and clap refuses two arguments of one id.
    #[arg(id = "pod_name", long = "pod-name", value_name = "POD_NAME")]
    pub name: String,
    /// Kubernetes namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// RuntimeClass handler (`carve`, `runc`).
    #[arg(long, default_value = "carve")]
    pub handler: String,
    /// The pod's cgroup parent.
    #[arg(long, default_value = "")]
    pub cgroup_parent: String,
    /// The pod's log directory.
    #[arg(long, default_value = "")]
    pub log_dir: String,
    /// A pod annotation KEY=VALUE (e.g. carve.dev/dedicated=true).
    #[arg(long = "annotation")]
    pub annotations: Vec<String>,
    /// Use the node's network namespace.
    #[arg(long)]
    pub host_network: bool,
}

/// A container's resources (CreateContainer, UpdateContainerResources); 0 or empty: unset.
#[derive(clap::Args)]
pub struct Resources {
    /// Memory limit in bytes.
    #[arg(long, default_value_t = 0)]
    pub memory: i64,
    /// CFS quota in µs (with --cpu-period).
    #[arg(long, default_value_t = 0)]
    pub cpu_quota: i64,
    /// CFS period in µs.
    #[arg(long, default_value_t = 0)]
    pub cpu_period: i64,
    /// The cpuset (whole CPUs of a Guaranteed pod).
    #[arg(long, default_value = "")]
    pub cpuset: String,
}

/// The CRI calls.
#[derive(clap::Subcommand)]
pub enum Call {
    /// Version.
    Version,
    /// RunPodSandbox.
    RunPod(Pod),
    /// CreateContainer in pod ID (give the same pod flags as to run-pod).
    Create {
        /// The pod sandbox id.
        #[arg(long)]
        pod: String,
        #[command(flatten)]
        spec: Pod,
        /// The container's name.
        #[arg(long)]
        name: String,
        /// The image.
        #[arg(long)]
        image: String,
        /// Log file, relative to the pod's log directory.
        #[arg(long, default_value = "")]
        log_path: String,
        #[command(flatten)]
        res: Resources,
        /// Command and arguments.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// StartContainer.
    Start { id: String },
    /// ContainerStatus (with --verbose: containerd's info, pid and runtime spec).
    Status {
        id: String,
        #[arg(long)]
        verbose: bool,
    },
    /// ListContainers (of one pod with --pod).
    List {
        #[arg(long, default_value = "")]
        pod: String,
    },
    /// ExecSync.
    Exec {
        id: String,
        /// Timeout in seconds (0: none).
        #[arg(long, default_value_t = 0)]
        exec_timeout: i64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// ContainerStats.
    Stats { id: String },
    /// UpdateContainerResources.
    Update {
        id: String,
        #[command(flatten)]
        res: Resources,
    },
    /// ReopenContainerLog.
    ReopenLog { id: String },
    /// StopContainer (SIGKILL after --grace seconds).
    Stop {
        id: String,
        #[arg(long, default_value_t = 10)]
        grace: i64,
    },
    /// RemoveContainer.
    Rm { id: String },
    /// StopPodSandbox.
    StopPod { id: String },
    /// RemovePodSandbox.
    RmPod { id: String },
}

fn pod_spec(p: &Pod) -> anyhow::Result<PodSpec> {
    let mut annotations = std::collections::HashMap::new();
    for a in &p.annotations {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--annotation {a:?}: expected KEY=VALUE"))?;
        annotations.insert(k.to_string(), v.to_string());
    }
    Ok(PodSpec {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        handler: p.handler.clone(),
        cgroup_parent: p.cgroup_parent.clone(),
        log_directory: p.log_dir.clone(),
        annotations,
        host_network: p.host_network,
    })
}

fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs `carve cri`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let mut c =
        carve_cri::client::Client::connect(&a.socket, std::time::Duration::from_secs(a.timeout))?;
    match a.call {
        Call::Version => print(&c.version(cri::VersionRequest::default())?),
        Call::RunPod(p) => print(&c.run_pod_sandbox(pod_spec(&p)?.request())?),
        Call::Create {
            pod,
            spec,
            name,
            image,
            log_path,
            res,
            command,
        } => {
            let ctr = ContainerSpec {
                name,
                image,
                command,
                log_path,
                memory_limit: res.memory,
                cpu_quota: res.cpu_quota,
                cpu_period: res.cpu_period,
                cpuset_cpus: res.cpuset,
                ..Default::default()
            };
            print(&c.create_container(ctr.request(&pod, &pod_spec(&spec)?))?)
        }
        Call::Start { id } => {
            print(&c.start_container(cri::StartContainerRequest { container_id: id })?)
        }
        Call::Status { id, verbose } => {
            print(&c.container_status(cri::ContainerStatusRequest {
                container_id: id,
                verbose,
            })?)
        }
        Call::List { pod } => print(&c.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod,
                ..Default::default()
            }),
        })?),
        Call::Exec {
            id,
            exec_timeout,
            command,
        } => {
            let r = c.exec_sync(cri::ExecSyncRequest {
                container_id: id,
                cmd: command,
                timeout: exec_timeout,
            })?;
            print(&serde_json::json!({
                "exit_code": r.exit_code,
                "stdout": String::from_utf8_lossy(&r.stdout),
                "stderr": String::from_utf8_lossy(&r.stderr),
            }))
        }
        Call::Stats { id } => {
            print(&c.container_stats(cri::ContainerStatsRequest { container_id: id })?)
        }
        Call::Update { id, res } => print(&c.update_container_resources(
            cri::UpdateContainerResourcesRequest {
                container_id: id,
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: res.memory,
                    cpu_quota: res.cpu_quota,
                    cpu_period: res.cpu_period,
                    cpuset_cpus: res.cpuset,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )?),
        Call::ReopenLog { id } => {
            print(&c.reopen_container_log(cri::ReopenContainerLogRequest { container_id: id })?)
        }
        Call::Stop { id, grace } => print(&c.stop_container(cri::StopContainerRequest {
            container_id: id,
            timeout: grace,
        })?),
        Call::Rm { id } => {
            print(&c.remove_container(cri::RemoveContainerRequest { container_id: id })?)
        }
        Call::StopPod { id } => {
            print(&c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })?)
        }
        Call::RmPod { id } => {
            print(&c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })?)
        }
    }
}
