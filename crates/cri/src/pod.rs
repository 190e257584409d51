//! The requests the kubelet builds for a pod, from a few fields: [`PodSpec`] → `RunPodSandbox`,
//! [`ContainerSpec`] → `CreateContainer`.

use k8s_cri::v1 as cri;
use std::collections::HashMap;

/// A pod sandbox to run.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// The pod's name (also its uid and hostname).
    pub name: String,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The runtime handler (RuntimeClass handler): `carve`, `runc`.
    pub handler: String,
    /// The pod's cgroup parent (the kubelet's `/kubepods/.../podUID`).
    pub cgroup_parent: String,
    /// Where the containers' logs go (the kubelet's /var/log/pods/NS_NAME_UID).
    pub log_directory: String,
    /// Pod annotations (`carve.dev/dedicated`, ...).
    pub annotations: HashMap<String, String>,
    /// The host's network namespace instead of a pod network.
    pub host_network: bool,
}

impl PodSpec {
    /// The pod's sandbox config.
    pub fn config(&self) -> cri::PodSandboxConfig {
        let mode = if self.host_network {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        };
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.name.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: self.name.clone(),
            log_directory: self.log_directory.clone(),
            annotations: self.annotations.clone(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: mode as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The `RunPodSandbox` request.
    pub fn request(&self) -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(self.config()),
            runtime_handler: self.handler.clone(),
        }
    }
}

/// A container to create in a pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The container's name.
    pub name: String,
    /// The image.
    pub image: String,
    /// The command (the image's entrypoint is replaced).
    pub command: Vec<String>,
    /// The log file, relative to the pod's log directory.
    pub log_path: String,
    /// Memory limit in bytes (0: none).
    pub memory_limit: i64,
    /// CFS quota and period in µs (0: none).
    pub cpu_quota: i64,
    /// CFS period in µs.
    pub cpu_period: i64,
    /// The cpuset (the kubelet's static CPU manager gives Guaranteed pods exclusive CPUs here).
    pub cpuset_cpus: String,
    /// Container annotations.
    pub annotations: HashMap<String, String>,
    /// Host paths bind-mounted read-only: (host path, container path).
    pub ro_mounts: Vec<(String, String)>,
    /// Capabilities added to the runtime's default set ("SYS_NICE").
    pub add_capabilities: Vec<String>,
}

impl ContainerSpec {
    /// The container's resources.
    pub fn resources(&self) -> cri::LinuxContainerResources {
        cri::LinuxContainerResources {
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpu_shares: 2,
            memory_limit_in_bytes: self.memory_limit,
            cpuset_cpus: self.cpuset_cpus.clone(),
            ..Default::default()
        }
    }

    /// The `CreateContainer` request for pod `pod_id` created from `pod`.
    pub fn request(&self, pod_id: &str, pod: &PodSpec) -> cri::CreateContainerRequest {
        cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: self.name.clone(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: self.image.clone(),
                    ..Default::default()
                }),
                command: self.command.clone(),
                log_path: self.log_path.clone(),
                annotations: self.annotations.clone(),
                mounts: self
                    .ro_mounts
                    .iter()
                    .map(|(h, c)| cri::Mount {
                        host_path: h.clone(),
                        container_path: c.clone(),
                        readonly: true,
                        ..Default::default()
                    })
                    .collect(),
                linux: Some(cri::LinuxContainerConfig {
                    resources: Some(self.resources()),
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        capabilities: (!self.add_capabilities.is_empty()).then(|| {
                            cri::Capability {
                                add_capabilities: self.add_capabilities.clone(),
                                ..Default::default()
                            }
                        }),
                        namespace_options: pod
                            .config()
                            .linux
                            .and_then(|l| l.security_context)
                            .and_then(|s| s.namespace_options),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            sandbox_config: Some(pod.config()),
        }
    }
}
