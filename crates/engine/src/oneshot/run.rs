//! `carve run --dedicated`: one command on dedicated cores; the host is restored when it exits
//! or carve gets SIGINT/SIGTERM (forwarded to the command).

use super::SetupFailed;
use carve_core::CpuSet;
use carve_dedicated::supervise::TermSignals;
use carve_dedicated::DedicatedSpec;
pub use carve_dedicated::{SetupReport, TeardownReport};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

/// What `carve run --dedicated` asks for, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The dedicated cores (a CPU list).
    pub dedicated: String,
    /// The cores left to Linux (default: every other online core).
    pub housekeeping: Option<String>,
    /// Scheduling policy (`other`, `fifo:PRIO`, ...).
    pub sched: String,
    /// Huge pages, SIZE:COUNT[@NODE] each.
    pub hugepages: Vec<String>,
    /// IRQs routed to the dedicated cores.
    pub irqs: Vec<u32>,
    /// Resource limits, NAME=SOFT[:HARD] each.
    pub rlimits: Vec<String>,
    /// Environment, KEY=VALUE each.
    pub env: Vec<String>,
    /// Hold /dev/cpu_dma_latency at 0.
    pub dma_latency: bool,
    /// Lock the command's memory.
    pub mlock: bool,
    /// The partition's name (default: run-PID).
    pub name: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// Why a request is not a valid partition (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// /sys did not say which CPUs are online.
    #[error("cannot read the online CPUs")]
    Online,
    /// A CPU list.
    #[error(transparent)]
    Cpus(#[from] carve_core::cpuset::CpuSetError),
    /// --sched, --hugepages or --rlimit.
    #[error(transparent)]
    Value(#[from] carve_dedicated::ParseError),
    /// An --env that is not KEY=VALUE.
    #[error("--env {0:?}: expected KEY=VALUE")]
    Env(String),
}

/// Why `carve run` did not launch its command.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The request is invalid; nothing changed.
    #[error(transparent)]
    Invalid(#[from] RequestError),
    /// The partition was refused before anything changed.
    #[error(transparent)]
    Refused(carve_dedicated::Error),
    /// Setup failed (and was rolled back).
    #[error(transparent)]
    Setup(carve_dedicated::Error),
}

/// What happened during the run, in order, for the caller to show.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// The partition is set up; its journal is `journal` (undone by `carve restore` if this
    /// process is killed).
    Ready {
        /// What setup did.
        report: &'a SetupReport,
        /// The partition's journal.
        journal: Option<&'a Path>,
    },
    /// The command could not be launched (the host is restored next).
    LaunchFailed(&'a carve_dedicated::Error),
    /// The host is restored.
    Restored(&'a TeardownReport),
    /// Restoring the host failed (`carve restore` retries).
    RestoreFailed(&'a carve_dedicated::Error),
}

/// How the command ended.
#[derive(Debug)]
pub enum Ended {
    /// It was never launched.
    NotLaunched,
    /// Waiting for it failed.
    WaitFailed(std::io::Error),
    /// It exited (or was killed) with this status.
    Exited(ExitStatus),
}

/// The end of a run: the command's status and whether the host was restored.
#[derive(Debug)]
pub struct RunOutcome {
    /// How the command ended.
    pub ended: Ended,
    /// Whether the host was restored.
    pub restored: bool,
}

fn spec_of(r: &RunRequest) -> Result<DedicatedSpec, RequestError> {
    let online = super::online_cpus().ok_or(RequestError::Online)?;
    let cpus = CpuSet::parse_list(&r.dedicated)?;
    let name = r
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    let mut spec = DedicatedSpec::new(&name, cpus, &online);
    if let Some(hk) = &r.housekeeping {
        spec.housekeeping = CpuSet::parse_list(hk)?;
    }
    spec.sched = r.sched.parse()?;
    for h in &r.hugepages {
        spec.hugepages.push(h.parse()?);
    }
    spec.irqs = r.irqs.clone();
    for l in &r.rlimits {
        spec.rlimits.push(l.parse()?);
    }
    for e in &r.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| RequestError::Env(e.clone()))?;
        spec.env.push((k.into(), v.into()));
    }
    spec.dma_latency = r.dma_latency;
    spec.mlock = r.mlock;
    spec.command = r.command.clone();
    Ok(spec)
}

/// Runs `carve run --dedicated`: blocks the termination signals (call this before any other
/// thread starts), sets the partition up, launches the command with signals forwarded to it,
/// waits, and restores the host — reporting each step to `on`.
pub fn run_dedicated(
    req: &RunRequest,
    on: &mut dyn FnMut(RunEvent<'_>),
) -> Result<RunOutcome, RunError> {
    // First, before any thread exists: the signals are then only ever received by the signal
    // thread, and the host is restored in ordinary code.
    let signals = TermSignals::block(Duration::from_secs(5));
    let spec = spec_of(req)?;
    let mut active = super::setup(spec).map_err(|e| match e {
        SetupFailed::Refused(e) => RunError::Refused(e),
        SetupFailed::Other(e) => RunError::Setup(e),
    })?;
    let journal = active.journal_path();
    on(RunEvent::Ready {
        report: active.report(),
        journal: journal.as_deref(),
    });
    let ended = match active.launch() {
        Ok(mut child) => {
            signals.forward_to(child.id() as i32);
            let st = child.wait();
            signals.forward_to(0);
            match st {
                Ok(st) => Ended::Exited(st),
                Err(e) => Ended::WaitFailed(e),
            }
        }
        Err(e) => {
            on(RunEvent::LaunchFailed(&e));
            Ended::NotLaunched
        }
    };
    let restored = match active.teardown() {
        Ok(t) => {
            on(RunEvent::Restored(&t));
            true
        }
        Err(e) => {
            on(RunEvent::RestoreFailed(&e));
            false
        }
    };
    Ok(RunOutcome { ended, restored })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RunRequest {
        RunRequest {
            dedicated: "1".into(),
            sched: "fifo:80".into(),
            mlock: true,
            name: Some("t".into()),
            command: vec!["true".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_request_becomes_the_partitions_spec() {
        let mut r = req();
        r.hugepages = vec!["2MiB:4".into()];
        r.rlimits = vec!["nofile=1024:4096".into()];
        r.env = vec!["A=b=c".into()];
        r.irqs = vec![41];
        let s = spec_of(&r).unwrap();
        assert_eq!(s.cpus.to_string(), "1");
        assert_eq!(s.sched, carve_dedicated::SchedPolicy::Fifo(80));
        assert_eq!(s.hugepages.len(), 1);
        assert_eq!(s.rlimits.len(), 1);
        assert_eq!(s.env, vec![("A".to_string(), "b=c".to_string())]);
        assert_eq!(s.irqs, vec![41]);
        assert!(s.mlock);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let mut r = req();
        r.env = vec!["NOEQUALS".into()];
        let e = spec_of(&r).unwrap_err();
        assert_eq!(e.to_string(), "--env \"NOEQUALS\": expected KEY=VALUE");
        let mut r = req();
        r.sched = "fifo:0".into();
        assert!(matches!(spec_of(&r), Err(RequestError::Value(_))));
        let mut r = req();
        r.dedicated = "x".into();
        assert!(matches!(spec_of(&r), Err(RequestError::Cpus(_))));
    }
}
