//! What the observer knows about a running plan, as served by the API (`/v1/overview`), shown by
//! `carve top` and the dashboard, and rendered as Prometheus metrics.

use serde::{Deserialize, Serialize};

/// One frame: the whole plan at one sampling instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The plan's name.
    pub plan: String,
    /// The supervisor's pid.
    pub holder: i32,
    /// When this frame was sampled, seconds since the Unix epoch.
    pub time: f64,
    /// The sampling interval, seconds.
    pub interval_seconds: f64,
    /// Every online CPU of the host.
    pub cores: Vec<CoreView>,
    /// Every partition of the plan.
    pub partitions: Vec<PartView>,
    /// Every VM partition that is running.
    pub vms: Vec<VmView>,
    /// The plan's bridges and the links on them.
    pub links: Vec<LinkView>,
    /// The latest events, oldest first.
    pub events: Vec<ApiEvent>,
}

/// One CPU of the host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreView {
    /// The CPU number.
    pub cpu: usize,
    /// The partitions placed on it (empty: housekeeping only).
    pub owners: Vec<String>,
    /// Whether a dedicated partition owns it.
    pub dedicated: bool,
    /// Share of the interval it was not idle (/proc/stat), 0..1.
    pub busy_ratio: f64,
    /// Share of the interval the hypervisor took (/proc/stat steal), 0..1.
    pub steal_ratio: f64,
    /// Interrupts that fired on it per second (every /proc/interrupts line).
    pub irqs_per_second: f64,
    /// Interrupts that fired on it over the interval, by /proc/interrupts label, largest first.
    pub irqs: Vec<IrqCount>,
    /// Interrupt counts since boot, by label (for the counters of `/metrics`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub irqs_total: Vec<IrqCount>,
    /// The noise probe's last window (dedicated cores).
    pub probe: Option<ProbeView>,
    /// Stolen ratio of the probe windows, one per interval, oldest first (up to one hour).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stolen_history: Vec<f64>,
}

/// An interrupt count on one CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IrqCount {
    /// "24 virtio0-input.0", "LOC Local timer interrupts".
    pub irq: String,
    /// How many.
    pub count: u64,
}

/// What the low-duty probe saw on a dedicated core over its last windows
/// ([`crate::sample::PROBE_SPAN`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeView {
    /// Share of the last windows the probe did not get, 0..1.
    pub stolen_ratio: f64,
    /// Interruptions (gaps above 1 µs) per second of the last windows.
    pub interruptions_per_second: f64,
    /// The longest gap of the last windows, seconds.
    pub longest_gap_seconds: f64,
    /// The longest gap of every window so far, seconds.
    pub max_gap_seconds: f64,
    /// Interruptions seen in every window so far.
    pub interruptions_total: u64,
    /// Time probed so far, seconds.
    pub window_seconds_total: f64,
    /// CPU time the probe's threads used so far (its cost), seconds.
    pub cpu_seconds_total: f64,
}

/// One partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartView {
    /// Its name.
    pub name: String,
    /// "dedicated", "container" or "vm".
    pub kind: String,
    /// Its cores, in the kernel's list format.
    pub cpus: String,
    /// Where it stands ("running", "stopped", ...).
    pub state: String,
    /// What the user asked for ("running", "stopped").
    pub desired: String,
    /// Its main process.
    pub pid: Option<i32>,
    /// Restarts by the supervisor.
    pub restarts: u32,
    /// How it last ended.
    pub last_exit: Option<String>,
    /// CPU time used, seconds (its cgroup; a dedicated process's threads).
    pub cpu_seconds_total: Option<f64>,
    /// CPU use over the interval, in cores (1.0 = one core busy).
    pub cpu_ratio: Option<f64>,
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// Memory limit, bytes.
    pub memory_limit_bytes: u64,
    /// OOM kills in its memory cgroup.
    pub oom_kills_total: Option<u64>,
    /// Dedicated: the share of its cores its process was not on them over the interval (for a
    /// spinning fast path, what the OS took; a sleeping process shows its sleep here too).
    pub offcpu_ratio: Option<f64>,
    /// `cpu_ratio` of the last samples (up to two minutes), oldest first; 0 while not running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_history: Vec<f64>,
    /// `memory_bytes` of the last samples (up to two minutes), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_history: Vec<u64>,
}

/// One running VM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmView {
    /// The partition.
    pub partition: String,
    /// QMP `query-status` ("running", "paused", ...), or why it could not be asked.
    pub status: String,
    /// Its vCPU threads.
    pub vcpus: Vec<VcpuView>,
}

/// One vCPU thread of a VM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VcpuView {
    /// vCPU index.
    pub index: usize,
    /// Its host thread.
    pub tid: i32,
    /// Time on a host CPU, seconds (schedstat).
    pub run_seconds_total: f64,
    /// Time runnable but waiting for a host CPU — the guest's steal — seconds (schedstat).
    pub wait_seconds_total: f64,
}

/// One network interface of the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkView {
    /// The network namespace it is in ("" for the host's).
    pub netns: String,
    /// Its counters.
    #[serde(flatten)]
    pub counters: crate::procfs::LinkCounters,
}

/// Something that happened to the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiEvent {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// "started", "exited", "restarted", "stopped", "oom_killed", "irq_on_dedicated",
    /// "noise_spike".
    pub kind: String,
    /// The partition it concerns, if any.
    pub partition: Option<String>,
    /// Details.
    pub detail: String,
}
