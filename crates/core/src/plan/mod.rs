//! The plan: one TOML file that carves the host into partitions.
//!
//! [`Plan::parse`] turns the text into typed sections, strictly (unknown keys and wrong types
//! are errors), and reports *every* section that fails, each as a [`Problem`] naming the
//! partition, the field and the line:column. The plan keeps a [`SourceMap`] so later checks (the
//! allocator) locate their problems in the file too. The format is documented in docs/plan.md;
//! `carve plan schema` prints its JSON Schema, derived from these types.
//!
//! ```
//! let plan = carve_core::plan::Plan::parse(r#"
//! [host]
//! housekeeping = [0]
//!
//! [[partition]]
//! name = "fastpath"
//! kind = "dedicated"
//! cpus = [1]
//! memory = "64MiB"
//! sched = "fifo:80"
//! command = ["carve-pktcrypt"]
//! "#).unwrap();
//! assert_eq!(plan.partitions[0].name, "fastpath");
//! ```

mod parse;
#[cfg(test)]
mod tests;
pub mod values;

pub(crate) use parse::suggest as parse_suggest;
pub use parse::{Location, Problem, SourceMap};
pub use values::{
    Cidr, CpuList, CpuRequest, Duration, HugePagesRequest, IrqRef, Limit, Paths, PciAddress,
    Restart, RestartPolicy, Rlimit, Sched, Size,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// A whole plan.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "carve plan")]
pub struct Plan {
    /// Host-wide settings.
    #[serde(default)]
    pub host: HostSection,
    /// Bridges partitions attach to, by name (the name is the bridge's interface name).
    #[serde(default)]
    pub network: BTreeMap<String, Network>,
    /// The partitions, one `[[partition]]` table each.
    #[serde(default, rename = "partition")]
    pub partitions: Vec<Partition>,
    /// How the plan is watched: the metrics and dashboard listener.
    #[serde(default, skip_serializing_if = "ObserveSection::is_default")]
    pub observe: ObserveSection,
    /// Where each key sits in the file (empty for plans not parsed from text).
    #[serde(skip)]
    #[schemars(skip)]
    pub source: SourceMap,
}

/// `[host]`: settings for the host as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// CPUs left to Linux itself (IRQs, kernel threads, everything not in a partition). Default:
    /// the first core the kernel did not isolate. Containers and VMs may name them explicitly;
    /// dedicated partitions and automatic placement never use them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub housekeeping: Option<CpuList>,
    /// Memory kept for the host outside every partition. Default: 1/16 of the host's memory, at
    /// least 256MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_memory: Option<Size>,
}

/// `[observe]`: how a running plan is watched (the supervisor's API socket is always there;
/// this adds a TCP listener for Prometheus and the web dashboard).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObserveSection {
    /// Serve `/metrics` and the dashboard (read-only) on this TCP address, e.g.
    /// "127.0.0.1:9464". A non-loopback address is refused unless `allow_remote` is true: the
    /// listener has no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub listen: Option<std::net::SocketAddr>,
    /// Allow `listen` on a non-loopback address (anyone who reaches it sees the metrics).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_remote: bool,
}

impl ObserveSection {
    fn is_default(&self) -> bool {
        *self == ObserveSection::default()
    }

    /// Why this section is refused, if it is: a listener that is not loopback without
    /// `allow_remote`.
    pub fn check(&self) -> Result<(), ObserveError> {
        match self.listen {
            Some(a) if !a.ip().is_loopback() && !self.allow_remote => {
                Err(ObserveError::NotLoopback(a))
            }
            _ => Ok(()),
        }
    }
}

/// Why an `[observe]` section is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    /// A listener beyond loopback without `allow_remote`.
    #[error(
        "{0} is not a loopback address; the metrics listener has no authentication: \
         use 127.0.0.1, or set `allow_remote = true` to serve it beyond this host"
    )]
    NotLoopback(std::net::SocketAddr),
}

/// `[network.NAME]`: a bridge for partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Create the bridge inside this named network namespace (/run/netns/NAME) instead of the
    /// host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The bridge's IPv4 subnet, e.g. "10.77.0.0/24".
    pub subnet: Cidr,
    /// The bridge's own address (default: the first address of the subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

/// What carries a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A process that owns its cores: exclusive cpuset, IRQs and kernel work moved away, RT
    /// scheduling, locked memory and huge pages.
    Dedicated,
    /// Namespaces + cgroups + pivot_root through carve's OCI runtime.
    Container,
    /// A QEMU/KVM guest with its vCPU threads pinned to the partition's cores.
    Vm,
}

impl Kind {
    /// "dedicated", "container" or "vm".
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dedicated => "dedicated",
            Kind::Container => "container",
            Kind::Vm => "vm",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[partition]]`: one slice of the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Unique name: 1-12 characters a-z, 0-9 and '-', starting with a letter (it names cgroups
    /// and network interfaces).
    pub name: String,
    /// dedicated, container or vm.
    pub kind: Kind,
    /// The CPUs: a list (`[1, 3]` or `"1-3"`), or a count to place automatically (whole cores
    /// first, one NUMA node, never housekeeping CPUs). Required, except for a vm (default: its
    /// vcpus as a count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<CpuRequest>,
    /// Memory budget (required): the cgroup limit of a container, guest RAM of a vm, locked memory
    /// of a dedicated process. All budgets plus the host reserve must fit in the host's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Huge pages, taken from the memory budget: "2MiB" (enough pages for `memory`), "2MiB:32",
    /// or { size = "2MiB", count = 32 }.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugepages: Option<HugePagesRequest>,
    /// Scheduling policy: "other" (default), "batch", "idle", "fifo:PRIO", "rr:PRIO",
    /// "deadline:RUNTIME/PERIOD".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sched: Option<Sched>,
    /// Dedicated only: device IRQs (numbers or handler names) to route to this partition's CPUs;
    /// every other movable IRQ is moved to housekeeping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub irqs: Vec<IrqRef>,
    /// Dedicated and container: the program and its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Dedicated and container: environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Dedicated and container: resource limits by name (nofile, memlock, ...).
    #[serde(default, skip_serializing_if = "Rlimits::is_empty")]
    pub rlimits: Rlimits,
    /// Container: a root filesystem directory (carve writes the OCI bundle around it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    /// Container: an existing OCI bundle directory (config.json + rootfs), instead of `rootfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
    /// Container: a system container whose command (default /sbin/init) runs as PID 1 with
    /// its own init system.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// VM: the guest kernel image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// VM: the initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// VM: disk images (raw or qcow2), one path or a list.
    #[serde(default, skip_serializing_if = "is_empty_paths")]
    pub disks: Paths,
    /// VM: extra kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<String>,
    /// VM: number of vCPUs (default: the number of its CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// VM: PCI devices passed through with VFIO ("0000:01:00.0").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<PciAddress>,
    /// Container and vm: attachment to a `[network.NAME]` bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Attachment>,
    /// Restart policy: "no" (default), "on-failure", "always", or { policy, max_retries,
    /// backoff }.
    #[serde(default, skip_serializing_if = "is_default_restart")]
    pub restart: Restart,
    /// Dedicated only: let other partitions or housekeeping use SMT siblings of this partition's
    /// CPUs (they share the core's execution units and caches).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_smt_sharing: bool,
    /// VM only: allow more vCPUs than CPUs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oversubscribe: bool,
}

fn is_empty_paths(p: &Paths) -> bool {
    p.0.is_empty()
}

fn is_default_restart(r: &Restart) -> bool {
    *r == Restart::default()
}

/// `network = { bridge, address }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// The `[network.NAME]` to attach to.
    pub bridge: String,
    /// The partition's address with the subnet's prefix, e.g. "10.77.0.2/24" (default: the
    /// next free address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Cidr>,
}

/// `rlimits = { nofile = 1024, memlock = "unlimited" }`: resource limits by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Rlimits {
    /// RLIMIT_AS, bytes.
    #[serde(rename = "as", default, skip_serializing_if = "Option::is_none")]
    pub as_: Option<Rlimit>,
    /// RLIMIT_CORE, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core: Option<Rlimit>,
    /// RLIMIT_CPU, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Rlimit>,
    /// RLIMIT_DATA, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Rlimit>,
    /// RLIMIT_FSIZE, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsize: Option<Rlimit>,
    /// RLIMIT_LOCKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<Rlimit>,
    /// RLIMIT_MEMLOCK, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memlock: Option<Rlimit>,
    /// RLIMIT_MSGQUEUE, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msgqueue: Option<Rlimit>,
    /// RLIMIT_NICE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nice: Option<Rlimit>,
    /// RLIMIT_NOFILE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<Rlimit>,
    /// RLIMIT_NPROC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nproc: Option<Rlimit>,
    /// RLIMIT_RSS, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss: Option<Rlimit>,
    /// RLIMIT_RTPRIO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtprio: Option<Rlimit>,
    /// RLIMIT_RTTIME, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rttime: Option<Rlimit>,
    /// RLIMIT_SIGPENDING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigpending: Option<Rlimit>,
    /// RLIMIT_STACK, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Rlimit>,
}

impl Rlimits {
    /// The limits that are set, by their plan names ("nofile"), in name order.
    pub fn set(&self) -> Vec<(&'static str, Rlimit)> {
        [
            ("as", self.as_),
            ("core", self.core),
            ("cpu", self.cpu),
            ("data", self.data),
            ("fsize", self.fsize),
            ("locks", self.locks),
            ("memlock", self.memlock),
            ("msgqueue", self.msgqueue),
            ("nice", self.nice),
            ("nofile", self.nofile),
            ("nproc", self.nproc),
            ("rss", self.rss),
            ("rtprio", self.rtprio),
            ("rttime", self.rttime),
            ("sigpending", self.sigpending),
            ("stack", self.stack),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v)))
        .collect()
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        self.set().is_empty()
    }
}

impl Plan {
    /// The JSON Schema of the plan format.
    pub fn json_schema() -> schemars::Schema {
        schemars::schema_for!(Plan)
    }

    /// The partition with this name.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// A problem about field `field` ("cpus", "cpus[1]", "network.address") of partition `index`,
    /// located in the source when the plan came from text.
    pub fn problem_at(&self, index: usize, field: &str, message: impl Into<String>) -> Problem {
        let name = self
            .partitions
            .get(index)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("#{}", index + 1));
        Problem {
            partition: Some(name),
            field: field.to_string(),
            location: self
                .source
                .locate(&format!("partition[{index}].{field}"))
                .or_else(|| self.source.locate(&format!("partition[{index}]"))),
            message: message.into(),
        }
    }

    /// A problem about a field outside partitions ("host.housekeeping[0]",
    /// "network.carve0.subnet").
    pub fn problem_at_path(&self, path: &str, message: impl Into<String>) -> Problem {
        Problem {
            partition: None,
            field: path.to_string(),
            location: self.source.locate(path),
            message: message.into(),
        }
    }
}
