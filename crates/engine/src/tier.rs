//! The seam between the engine and the tiers: each tier starts, stops and runs commands in its
//! partitions; the engine orders them, records state and rolls back.

use crate::cgroup::Hierarchy;
use crate::restart::Exit;
use crate::spec::{PartitionSpec, PlanSpec};
use crate::state::{PartitionState, PlanDir};
use carve_journal::Journal;
use std::path::PathBuf;
use std::time::Duration;

/// What a tier needs to start one partition.
pub struct TierCtx<'a> {
    /// The plan.
    pub plan: &'a PlanSpec,
    /// The plan's state folder.
    pub dir: &'a PlanDir,
    /// The partition.
    pub part: &'a PartitionSpec,
    /// The network namespace carve made for it, holding its eth0 (containers).
    pub netns: Option<String>,
    /// The host's cgroup hierarchies.
    pub hierarchies: &'a [Hierarchy],
}

/// A partition a tier has started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// Its main process.
    pub pid: i32,
    /// Its cgroup path below each hierarchy's root.
    pub cgroup: Option<String>,
    /// The tier's id for it.
    pub id: String,
    /// Where its output goes.
    pub log: PathBuf,
}

/// A tier's failure, as text naming what failed (the engine adds the partition).
pub type TierResult<T> = Result<T, String>;

/// One tier (dedicated cores, containers, VMs) as the engine drives it.
pub trait Tier {
    /// "dedicated", "container" or "vm".
    fn kind(&self) -> &'static str;

    /// Starts the partition. Every host change is recorded in `journal` before it is made, so
    /// that undoing the journal removes whatever this left behind, also after a crash.
    fn start(&self, ctx: &TierCtx<'_>, journal: &mut Journal) -> TierResult<Launched>;

    /// If the partition's main process has ended: how. The default watches the recorded pid
    /// (reaping it when it is this process's child).
    fn poll(&self, part: &PartitionState) -> Option<Exit> {
        let pid = part.pid?;
        let id = carve_journal::ProcessId::of(pid)
            .unwrap_or(carve_journal::ProcessId { pid, start_time: 0 });
        crate::process::poll_exit(id)
    }

    /// Stops the partition: its graceful signal first, forced after `grace`; then removes what
    /// `start` made (the tier's own journal, runtime state). Also works from another process
    /// than the one that started it, after that one crashed.
    fn stop(&self, plan: &PlanRef<'_>, part: &PartitionState, grace: Duration) -> TierResult<()>;
}

/// What `stop` and `exec` know of a running plan: its state folder and the state its holder
/// wrote (they also run from other processes: `carve stop`, `carve down` after a crash).
pub struct PlanRef<'a> {
    /// The plan's state folder.
    pub dir: &'a PlanDir,
    /// The plan as resolved at `up`.
    pub plan: &'a PlanSpec,
}
