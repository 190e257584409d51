//! The engine's resolved view of a plan: every partition with its final cores and memory, every
//! network with its bridge, ready to act on. Built from the plan model and the allocator's answer
//! (see [`crate::resolve`]), or directly by tests.

use carve_core::CpuSet;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// One plan, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSpec {
    /// The plan's name: its state lives under /run/carve/NAME.
    pub name: String,
    /// Bridges to make first.
    pub networks: Vec<NetworkSpec>,
    /// Partitions in plan order.
    pub partitions: Vec<PartitionSpec>,
}

/// A bridge for partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The bridge's interface name (≤ 15 bytes).
    pub name: String,
    /// The named network namespace the bridge lives in; created by carve if missing. `None`: the
    /// host's namespace.
    pub namespace: Option<String>,
    /// The network address of the subnet.
    pub subnet: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// An address given to the bridge itself (the partitions' default gateway), if any.
    pub gateway: Option<Ipv4Addr>,
}

/// How a partition is attached to a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The bridge ([`NetworkSpec::name`]).
    pub bridge: String,
    /// The partition's address.
    pub address: Ipv4Addr,
    /// Its prefix length (the subnet's).
    pub prefix: u8,
    /// Default route through this address, if any.
    pub gateway: Option<Ipv4Addr>,
}

/// What the supervisor does when a partition's process exits: the plan's own type (one
/// grammar, `no` / `on-failure` / `always`), restarted with exponential backoff.
pub use carve_core::plan::RestartPolicy;

/// A restart policy with its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    /// When to restart.
    pub policy: RestartPolicy,
    /// Give up after this many restarts in a row (`None`: never give up).
    pub max_retries: Option<u32>,
    /// Delay before the first restart; doubled after each failure in a row, up to 64×.
    pub backoff_ms: u64,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::No,
            max_retries: None,
            backoff_ms: 1000,
        }
    }
}

impl From<RestartPolicy> for Restart {
    fn from(policy: RestartPolicy) -> Self {
        Restart {
            policy,
            ..Restart::default()
        }
    }
}

/// One partition with its allocation applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionSpec {
    /// Unique name within the plan.
    pub name: String,
    /// Its cores.
    pub cpus: CpuSet,
    /// Its memory budget in bytes.
    pub memory: u64,
    /// What the supervisor does on exit.
    pub restart: Restart,
    /// Kind-specific settings.
    pub kind: KindSpec,
}

/// The tier a partition runs on and what it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KindSpec {
    /// A process owning dedicated cores.
    Dedicated(DedicatedSpec),
    /// A container run by the OCI runtime.
    Container(ContainerSpec),
    /// A QEMU virtual machine.
    Vm(VmSpec),
}

impl KindSpec {
    /// "dedicated", "container" or "vm".
    pub fn name(&self) -> &'static str {
        match self {
            KindSpec::Dedicated(_) => "dedicated",
            KindSpec::Container(_) => "container",
            KindSpec::Vm(_) => "vm",
        }
    }
}

/// A dedicated-core partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedicatedSpec {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Scheduling policy as written in the plan ("fifo:80", "other"...).
    pub sched: Option<String>,
    /// Huge pages: (page size in bytes, count).
    pub hugepages: Option<(u64, u64)>,
    /// IRQs routed to the partition's cores.
    pub irqs: Vec<u32>,
}

/// Where a container's filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsSource {
    /// A root filesystem folder: carve writes the bundle around it.
    Folder(PathBuf),
    /// An existing OCI bundle (a folder with config.json): used as it is, with carve's cgroup,
    /// resources and network namespace applied over its config.
    Bundle(PathBuf),
}

/// A container partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The filesystem.
    pub rootfs: RootfsSource,
    /// The command; empty with `init` means /sbin/init.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// A system container: runs an init and is stopped with the signal it expects.
    pub init: bool,
    /// Network attachment.
    pub network: Option<Attachment>,
}

/// A VM partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Kernel image.
    pub kernel: Option<PathBuf>,
    /// Initramfs.
    pub initrd: Option<PathBuf>,
    /// Kernel command line additions.
    pub append: Option<String>,
    /// Disk images to boot from or attach.
    pub disks: Vec<PathBuf>,
    /// Network attachment (through a tap on the bridge).
    pub network: Option<Attachment>,
}

impl PlanSpec {
    /// The partition called `name`.
    pub fn partition(&self, name: &str) -> Option<&PartitionSpec> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// The network called `name`.
    pub fn network(&self, name: &str) -> Option<&NetworkSpec> {
        self.networks.iter().find(|n| n.name == name)
    }
}
