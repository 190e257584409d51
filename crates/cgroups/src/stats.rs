//! Resource usage of a cgroup, shaped like the `data` of runc's `events --stats` JSON.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Everything `runc events --stats` reports under `data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: Cpu,
    /// Memory usage, limits and the raw memory.stat counters.
    pub memory: Memory,
    /// Task count and limit.
    pub pids: Pids,
    /// Block I/O per device.
    pub blkio: Blkio,
    /// Huge page usage per page size ("2MB", "1GB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
    /// The cpuset in force.
    pub cpuset: CpuSet,
    /// Intel RDT figures: none collected (runc's key, kept for its JSON shape).
    pub intel_rdt: BTreeMap<String, u64>,
    /// Network interface counters: none collected (runc's key, kept for its JSON shape).
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

/// The cpuset of the cgroup (v2 fills in only cpus and mems).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSet {
    /// CPUs the tasks may run on.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub cpus: Vec<u16>,
    /// cpuset.cpu_exclusive.
    pub cpu_exclusive: u64,
    /// Memory nodes the tasks may allocate on.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mems: Vec<u16>,
    /// cpuset.mem_hardwall.
    pub mem_hardwall: u64,
    /// cpuset.mem_exclusive.
    pub mem_exclusive: u64,
    /// cpuset.memory_migrate.
    pub memory_migrate: u64,
    /// cpuset.memory_spread_page.
    pub memory_spread_page: u64,
    /// cpuset.memory_spread_slab.
    pub memory_spread_slab: u64,
    /// cpuset.memory_pressure.
    pub memory_pressure: u64,
    /// cpuset.sched_load_balance.
    pub sched_load_balance: u64,
    /// cpuset.sched_relax_domain_level.
    pub sched_relax_domain_level: i64,
}

/// Parses a kernel list ("0-3,8,10-11", core's list grammar) into its members; `None` if
/// malformed or a member does not fit the stats' u16.
pub fn parse_list(s: &str) -> Option<Vec<u16>> {
    let set = carve_core::CpuSet::parse_list(s).ok()?;
    set.iter().map(|c| u16::try_from(c).ok()).collect()
}

/// CPU usage (nanoseconds) and CFS throttling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Usage counters.
    pub usage: CpuUsage,
    /// Throttling counters.
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub total: u64,
    /// Per-CPU time (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub percpu: Vec<u64>,
    /// Per-CPU time in kernel mode (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub percpu_kernel: Vec<u64>,
    /// Per-CPU time in user mode (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub percpu_user: Vec<u64>,
    /// Time in kernel mode.
    pub kernel: u64,
    /// Time in user mode.
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub periods: u64,
    /// Periods in which the group was throttled.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero", default)]
    pub throttled_periods: u64,
    /// Total time throttled, nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero", default)]
    pub throttled_time: u64,
}

/// Memory figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Page cache bytes.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub cache: u64,
    /// Memory usage, limit, peak, and how often the limit was hit.
    pub usage: MemoryEntry,
    /// Memory+swap (v1) or swap (v2).
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffer memory (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// The raw memory.stat counters.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub raw: BTreeMap<String, u64>,
}

/// One memory counter family. `u64::MAX` limits mean "no limit".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// The limit in bytes.
    pub limit: u64,
    /// Current usage in bytes.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub usage: u64,
    /// Peak usage in bytes.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub max: u64,
    /// How many times the limit was hit.
    pub failcnt: u64,
}

/// Task counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    /// Tasks now in the cgroup.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub current: u64,
    /// The limit (0: none).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub limit: u64,
}

/// Block I/O counters, per device and operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Blkio {
    /// Bytes transferred.
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty",
        default
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations done.
    #[serde(
        rename = "ioServicedRecursive",
        skip_serializing_if = "Vec::is_empty",
        default
    )]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// One device/operation counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// "Read", "Write", "Sync", "Async", "Discard" or "Total".
    pub op: String,
    /// The count.
    pub value: u64,
}

/// Huge page figures for one page size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub usage: u64,
    /// Peak bytes (v1) .
    #[serde(skip_serializing_if = "is_zero", default)]
    pub max: u64,
    /// Allocations refused by the limit.
    pub failcnt: u64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists() {
        assert_eq!(super::parse_list("0-2,5\n").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(super::parse_list("").unwrap(), Vec::<u16>::new());
        assert!(super::parse_list("3-1").is_none());
        assert!(super::parse_list("x").is_none());
    }
}
