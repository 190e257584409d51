//! The host model: what a partition planner needs to know about a machine.
//!
//! [`read_host`] reads it from /proc, /sys, /dev and /boot (roots given by [`Roots`], so tests
//! point it at a fake tree); [`Host`] is serde, so tests also load hosts unlike this one from JSON
//! fixtures (`crates/core/fixtures/hosts/*.json`). Nothing here writes anywhere.
//!
//! ```no_run
//! use carve_core::host::{read_host, Roots};
//! let host = read_host(&Roots::default()).unwrap();
//! println!("{} CPUs online, KVM usable: {}", host.online_cpus().len(), host.kvm_usable());
//! ```

mod advice;
mod gunzip;
mod read;
#[cfg(test)]
mod tests;

pub use advice::{Advice, Level};
pub use read::read_host;

use crate::CpuSet;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where [`read_host`] looks. Every path is a parameter so tests feed a fake tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// procfs, normally "/proc".
    pub proc: PathBuf,
    /// sysfs, normally "/sys".
    pub sys: PathBuf,
    /// devtmpfs, normally "/dev".
    pub dev: PathBuf,
    /// Kernel images and configs, normally "/boot".
    pub boot: PathBuf,
    /// The PATH searched for qemu-system-x86_64; `None` means this process's `$PATH`.
    pub path: Option<String>,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: "/proc".into(),
            sys: "/sys".into(),
            dev: "/dev".into(),
            boot: "/boot".into(),
            path: None,
        }
    }
}

impl Roots {
    /// All roots under one directory: `DIR/proc`, `DIR/sys`, `DIR/dev`, `DIR/boot`, and an empty
    /// PATH (tests must not depend on what the test machine has installed).
    pub fn under(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Roots {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            dev: dir.join("dev"),
            boot: dir.join("boot"),
            path: Some(String::new()),
        }
    }
}

/// Reading the host failed on something the model cannot do without.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// cannot read {path}: {source}
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// {path}: unexpected content {text:?}: {why}
    #[error("{path}: unexpected content {text:?}: {why}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The text that did not parse.
        text: String,
        /// What was expected.
        why: String,
    },
}

/// Yes, no, or the host does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Known {
    /// Known present / true.
    Yes,
    /// Known absent / false.
    No,
    /// Nothing on the host says.
    #[default]
    Unknown,
}

/// Everything carve knows about a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Every present CPU (online or not), sorted by id.
    pub cpus: Vec<Cpu>,
    /// Caches shared by more than one CPU or at level ≥ 2: one entry per distinct cache.
    #[serde(default)]
    pub caches: Vec<Cache>,
    /// Whether SMT is active (/sys/devices/system/cpu/smt/active), when the kernel says.
    #[serde(default)]
    pub smt_active: Option<bool>,
    /// NUMA nodes; a non-NUMA kernel is modelled as one node 0 holding everything.
    pub nodes: Vec<NumaNode>,
    /// System-wide memory from /proc/meminfo.
    pub memory: Memory,
    /// Huge page sizes with their pools.
    #[serde(default)]
    pub hugepages: Vec<HugePages>,
    /// Device interrupts (numbered IRQs of /proc/interrupts).
    #[serde(default)]
    pub irqs: Vec<Irq>,
    /// Kernel version, command line isolation, configuration and RT throttling.
    pub kernel: Kernel,
    /// cgroup hierarchies.
    pub cgroups: Cgroups,
    /// KVM and QEMU.
    pub virt: Virt,
}

/// One logical CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    /// The CPU number.
    pub id: usize,
    /// Whether it is online.
    pub online: bool,
    /// Core id within its package (topology/core_id); `None` when offline.
    #[serde(default)]
    pub core: Option<usize>,
    /// Package (socket) id; `None` when offline.
    #[serde(default)]
    pub package: Option<usize>,
    /// NUMA node.
    #[serde(default)]
    pub node: Option<usize>,
    /// SMT siblings including itself (topology/thread_siblings_list).
    #[serde(default)]
    pub siblings: CpuSet,
}

/// One cache and the CPUs that share it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// 1, 2, 3...
    pub level: u8,
    /// "Unified", "Data" or "Instruction".
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in KiB, when known.
    #[serde(default)]
    pub size_kib: Option<u64>,
    /// The CPUs sharing it.
    pub cpus: CpuSet,
}

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumaNode {
    /// Node number.
    pub id: usize,
    /// Its CPUs.
    pub cpus: CpuSet,
    /// MemTotal of the node in bytes.
    pub memory_total: u64,
    /// MemFree of the node in bytes.
    pub memory_free: u64,
}

/// System-wide memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// MemTotal in bytes.
    pub total: u64,
    /// MemAvailable in bytes (MemFree on kernels without it).
    pub available: u64,
}

/// One huge page size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HugePages {
    /// Page size in KiB (2048, 1048576).
    pub size_kib: u64,
    /// Pages in the pool (nr_hugepages).
    pub total: u64,
    /// Free pages.
    pub free: u64,
    /// Pages reserved for mappings but not yet faulted.
    #[serde(default)]
    pub reserved: u64,
    /// Surplus (overcommitted) pages.
    #[serde(default)]
    pub surplus: u64,
    /// Per NUMA node.
    #[serde(default)]
    pub per_node: Vec<NodeHugePages>,
}

/// A huge page pool on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeHugePages {
    /// Node number.
    pub node: usize,
    /// Pages in the node's pool.
    pub total: u64,
    /// Free pages on the node.
    pub free: u64,
}

/// One device interrupt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Irq {
    /// IRQ number.
    pub number: u32,
    /// The interrupt chip ("IO-APIC", "PCI-MSIX-0000:00:02.0").
    #[serde(default)]
    pub chip: String,
    /// The handlers' names ("virtio1-req.0").
    #[serde(default)]
    pub actions: String,
    /// Requested affinity (smp_affinity_list).
    pub affinity: CpuSet,
    /// Where it is actually delivered (effective_affinity_list), when the kernel says.
    #[serde(default)]
    pub effective: Option<CpuSet>,
    /// Interrupts counted so far, over all CPUs.
    #[serde(default)]
    pub count: u64,
    /// Whether user space may change the affinity.
    pub changeable: bool,
    /// Why not, when it is not ("managed", "per-CPU or not balanceable").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_because: Option<String>,
}

/// Kernel facts that decide what a dedicated core can get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// The whole /proc/cmdline.
    #[serde(default)]
    pub cmdline: String,
    /// `isolcpus=` from the command line.
    #[serde(default)]
    pub isolcpus: Option<Isolcpus>,
    /// `nohz_full=` from the command line.
    #[serde(default)]
    pub nohz_full: Option<CpuList>,
    /// `rcu_nocbs` from the command line (no value means all CPUs).
    #[serde(default)]
    pub rcu_nocbs: Option<CpuList>,
    /// `irqaffinity=` from the command line.
    #[serde(default)]
    pub irqaffinity: Option<CpuList>,
    /// Whether the kernel is built with CONFIG_NO_HZ_FULL.
    pub no_hz_full: Known,
    /// CONFIG_HZ, when known.
    #[serde(default)]
    pub hz: Option<u32>,
    /// Where the kernel config was read ("/proc/config.gz", "/boot/config-6.1.0"), if anywhere.
    #[serde(default)]
    pub config_source: Option<String>,
    /// kernel.sched_rt_runtime_us (-1: RT throttling off).
    #[serde(default)]
    pub sched_rt_runtime_us: Option<i64>,
    /// kernel.sched_rt_period_us.
    #[serde(default)]
    pub sched_rt_period_us: Option<i64>,
}

/// A CPU list kernel parameter as written and as resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuList {
    /// The value as written on the command line ("" when the parameter has no value).
    pub raw: String,
    /// The CPUs it names ("all" resolved to every present CPU); empty if it did not parse.
    pub cpus: CpuSet,
}

/// `isolcpus=[flags,]list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isolcpus {
    /// The value as written.
    pub raw: String,
    /// Flags before the list ("nohz", "domain", "managed_irq"); the default is "domain".
    pub flags: Vec<String>,
    /// The isolated CPUs.
    pub cpus: CpuSet,
}

/// cgroup v1 only, v2 only, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupLayout {
    /// Only v1 hierarchies.
    V1,
    /// Only the unified hierarchy.
    V2,
    /// v1 hierarchies plus a cgroup2 mount.
    Hybrid,
    /// No cgroup mounted.
    None,
}

impl std::fmt::Display for CgroupLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupLayout::V1 => "v1",
            CgroupLayout::V2 => "v2",
            CgroupLayout::Hybrid => "hybrid",
            CgroupLayout::None => "none",
        })
    }
}

/// The cgroup hierarchies of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cgroups {
    /// v1, v2 or hybrid.
    pub layout: CgroupLayout,
    /// Mounted hierarchies (each once, at its first mount point).
    pub hierarchies: Vec<Hierarchy>,
    /// Controllers the kernel has enabled but no hierarchy carries (e.g. net_cls here).
    #[serde(default)]
    pub unmounted: Vec<String>,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hierarchy {
    /// 1 or 2.
    pub version: u8,
    /// Where it is mounted.
    pub mount: PathBuf,
    /// Its controllers (v1: mount options; v2: cgroup.controllers). Named v1 hierarchies
    /// appear as "name=systemd".
    pub controllers: Vec<String>,
}

/// Virtualization support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Virt {
    /// /dev/kvm exists.
    pub kvm_device: bool,
    /// The KVM vendor modules loaded or built in (kvm_intel, kvm_amd, kvm_pvm...).
    #[serde(default)]
    pub kvm_modules: Vec<String>,
    /// The module that backs /dev/kvm, see [`Host::kvm_usable`].
    #[serde(default)]
    pub kvm_module: Option<String>,
    /// Path of qemu-system-x86_64, if installed.
    #[serde(default)]
    pub qemu: Option<PathBuf>,
}

/// A host model with its derived readiness facts (the JSON of `carve host --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report<'a> {
    /// The model itself.
    #[serde(flatten)]
    pub host: &'a Host,
    /// Derived facts, ignored when loading.
    pub readiness: Readiness,
}

/// What the host model implies for the tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// See [`Host::kvm_usable`].
    pub kvm_usable: bool,
    /// "kvm" or "tcg": how VMs will be accelerated.
    pub vm_accel: String,
    /// See [`Host::advice`].
    pub advice: Vec<Advice>,
}

/// KVM modules that run unmodified guests (hardware virtualization: VMX or SVM).
pub const HARDWARE_KVM_MODULES: [&str; 2] = ["kvm_intel", "kvm_amd"];

impl Host {
    /// Loads a host model from JSON: a fixture, or the output of `carve host --json` (whose
    /// derived "readiness" section is ignored).
    pub fn from_json(text: &str) -> Result<Host, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        if let Some(map) = value.as_object_mut() {
            map.remove("readiness");
        }
        serde_json::from_value(value)
    }

    /// The model with its derived readiness facts, as `carve host --json` prints it.
    pub fn report(&self) -> Report<'_> {
        Report {
            host: self,
            readiness: Readiness {
                kvm_usable: self.kvm_usable(),
                vm_accel: if self.kvm_usable() { "kvm" } else { "tcg" }.into(),
                advice: self.advice(),
            },
        }
    }

    /// The online CPUs.
    pub fn online_cpus(&self) -> CpuSet {
        self.cpus
            .iter()
            .filter(|c| c.online)
            .map(|c| c.id)
            .collect()
    }

    /// Every present CPU, online or not.
    pub fn present_cpus(&self) -> CpuSet {
        self.cpus.iter().map(|c| c.id).collect()
    }

    /// The CPU with this id.
    pub fn cpu(&self, id: usize) -> Option<&Cpu> {
        self.cpus.iter().find(|c| c.id == id)
    }

    /// SMT siblings of `cpu` including itself; just `cpu` when the topology is unknown.
    pub fn siblings(&self, cpu: usize) -> CpuSet {
        match self.cpu(cpu) {
            Some(c) if !c.siblings.is_empty() => c.siblings.clone(),
            _ => std::iter::once(cpu).collect(),
        }
    }

    /// The NUMA node of `cpu`.
    pub fn numa_of(&self, cpu: usize) -> Option<usize> {
        self.cpu(cpu).and_then(|c| c.node).or_else(|| {
            self.nodes
                .iter()
                .find(|n| n.cpus.contains(cpu))
                .map(|n| n.id)
        })
    }

    /// Physical cores as sets of online sibling CPUs, ordered by their lowest CPU.
    pub fn cores(&self) -> Vec<CpuSet> {
        let online = self.online_cpus();
        let mut seen = CpuSet::new();
        let mut cores = Vec::new();
        for cpu in online.iter() {
            if seen.contains(cpu) {
                continue;
            }
            let core = self.siblings(cpu).intersection(&online);
            seen = seen.union(&core);
            cores.push(core);
        }
        cores
    }

    /// The CPUs sharing `cpu`'s cache at `level` (unified or data), if known.
    pub fn cache_group(&self, cpu: usize, level: u8) -> Option<&Cache> {
        self.caches
            .iter()
            .find(|c| c.level == level && c.kind != "Instruction" && c.cpus.contains(cpu))
    }

    /// Whether /dev/kvm can run unmodified guests: true only when /dev/kvm exists and it is
    /// backed by kvm_intel or kvm_amd. Anything else (such as a nested "PVM" kvm_pvm, which
    /// emulates guest ring 0 and fails on a stock kernel) means QEMU must fall back to TCG.
    pub fn kvm_usable(&self) -> bool {
        self.virt.kvm_device
            && self
                .virt
                .kvm_module
                .as_deref()
                .is_some_and(|m| HARDWARE_KVM_MODULES.contains(&m))
    }

    /// The cgroup layout: v1, v2 or hybrid.
    pub fn cgroup_layout(&self) -> CgroupLayout {
        self.cgroups.layout
    }

    /// The hierarchy carrying `controller` ("cpuset", "hugetlb", "name=systemd"), if any.
    pub fn cgroup_hierarchy(&self, controller: &str) -> Option<&Hierarchy> {
        self.cgroups
            .hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }

    /// Total memory in bytes.
    pub fn memory_total(&self) -> u64 {
        self.memory.total
    }

    /// The huge page pool of this page size (KiB).
    pub fn hugepages(&self, size_kib: u64) -> Option<&HugePages> {
        self.hugepages.iter().find(|h| h.size_kib == size_kib)
    }

    /// CPUs the kernel was told to keep quiet (isolcpus ∪ nohz_full).
    pub fn isolated_cpus(&self) -> CpuSet {
        let mut set = CpuSet::new();
        if let Some(i) = &self.kernel.isolcpus {
            set = set.union(&i.cpus);
        }
        if let Some(n) = &self.kernel.nohz_full {
            set = set.union(&n.cpus);
        }
        set
    }

    /// IRQs whose affinity cannot be moved off `cpus` and may fire there.
    pub fn fixed_irqs_on(&self, cpus: &CpuSet) -> Vec<&Irq> {
        self.irqs
            .iter()
            .filter(|i| {
                !i.changeable
                    && !i
                        .effective
                        .as_ref()
                        .unwrap_or(&i.affinity)
                        .intersection(cpus)
                        .is_empty()
            })
            .collect()
    }
}
