//! The seam between the engine and the tiers: each tier starts, stops and runs commands in its
//! partitions; the engine orders them, records state and rolls back.

use crate::cgroup::Hierarchy;
use crate::restart::Exit;
use crate::spec::{PartitionSpec, PlanSpec};
use crate::state::{PartitionState, PlanDir};
use carve_journal::Journal;
use std::path::PathBuf;
use std::process::ExitStatus;
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

/// A tier's failure, naming what failed (the engine adds the partition); the cause it wraps
/// stays reachable through [`std::error::Error::source`].
pub type TierResult<T> = Result<T, TierError>;

/// Why a tier (or the engine's own step around it) failed.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The partition given to a tier is of another kind.
    #[error("not a {0} partition")]
    WrongKind(&'static str),
    /// A container operation on a partition that is not a container.
    #[error("{0} is not a container partition")]
    NotContainer(String),
    /// The plan has no such partition.
    #[error("no such partition")]
    NoPartition,
    /// The engine has no tier for the partition's kind.
    #[error("no {0} tier")]
    NoTier(&'static str),
    /// A dedicated partition this process does not hold.
    #[error("dedicated partition {0} is not running here")]
    NotRunningHere(String),
    /// A VM attached to a network the plan does not have.
    #[error("no network {0}")]
    NoNetwork(String),
    /// Another process holds the plan's lock.
    #[error("plan lock is held")]
    LockHeld,
    /// A fault point of `CARVE_FAULT` (tests of rollback).
    #[error("fault injected at {0} ({env})", env = crate::engine::FAULT_ENV)]
    Fault(String),
    /// A file or folder could not be read, made or opened.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A cgroup knob refused a value.
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        /// The value.
        value: String,
        /// The knob.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The plan's state folder could not be mounted.
    #[error("mount tmpfs on {}: {source}", path.display())]
    Mount {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The OCI runtime could not be run.
    #[error("{}: {source}", binary.display())]
    Spawn {
        /// The runtime binary.
        binary: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The OCI runtime ran and failed.
    #[error("{} {args}: {status}: {stderr}", binary.display())]
    Runtime {
        /// The runtime binary.
        binary: PathBuf,
        /// Its arguments after `--root R`.
        args: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// The runtime's `create` failed; `last` is the last line of the container's log.
    #[error("{} create {id}: {status}: {last}", binary.display())]
    Create {
        /// The runtime binary.
        binary: PathBuf,
        /// The container.
        id: String,
        /// How `create` ended.
        status: ExitStatus,
        /// The last line it logged.
        last: String,
    },
    /// The runtime's `create` succeeded but wrote no pid file.
    #[error("{} create {id}: no pid file", binary.display())]
    NoPidFile {
        /// The runtime binary.
        binary: PathBuf,
        /// The container.
        id: String,
    },
    /// The container's console (its pty master) could not be received or served.
    #[error("the console of {id}: {source}")]
    Console {
        /// The container.
        id: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The container survived SIGKILL.
    #[error("container {0} did not die after SIGKILL")]
    Unkillable(String),
    /// The partition's `sched` is not a policy.
    #[error("sched {text:?}: {source}")]
    Sched {
        /// What the plan says.
        text: String,
        /// Why it is not a policy.
        source: carve_dedicated::ParseError,
    },
    /// A VM disk entry is not valid.
    #[error("disk {}: {source}", path.display())]
    Disk {
        /// The entry.
        path: PathBuf,
        /// Why.
        source: carve_vm::spec::SpecError,
    },
    /// QEMU did not start.
    #[error("{source} (QEMU's own threads on {housekeeping})")]
    VmLaunch {
        /// Why.
        source: Box<carve_vm::VmError>,
        /// The cores QEMU's own threads were to run on.
        housekeeping: String,
    },
    /// A CPU list (the host's online CPUs) did not parse.
    #[error(transparent)]
    CpuList(#[from] carve_core::cpuset::CpuSetError),
    /// The journal failed (record, create, undo).
    #[error(transparent)]
    Journal(#[from] carve_journal::Error),
    /// The plan's state folder failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The container's bundle could not be written.
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// A bridge, namespace or veth could not be made.
    #[error(transparent)]
    Network(#[from] crate::network::NetError),
    /// The dedicated-core tier failed.
    #[error(transparent)]
    Dedicated(#[from] carve_dedicated::Error),
    /// The VM's spec is not valid.
    #[error(transparent)]
    VmSpec(#[from] carve_vm::spec::SpecError),
    /// The VM tier failed.
    #[error(transparent)]
    Vm(Box<carve_vm::VmError>),
}

impl From<carve_vm::VmError> for TierError {
    fn from(e: carve_vm::VmError) -> Self {
        TierError::Vm(Box::new(e))
    }
}

impl TierError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TierError {
        let path = path.into();
        move |source| TierError::Io { path, source }
    }
}

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
