//! One-shot commands: one dedicated partition in the foreground of this process, with no plan,
//! no plan directory and no restart policy (`carve run --dedicated`, `carve noise`).
//!
//! They set up and tear down the partition with the same `carve_dedicated` calls as the
//! engine's dedicated tier ([`crate::dedicated`]); their host changes go under the partition's
//! own journal (`dedicated-NAME`), which `carve restore` ([`crate::restore`]) undoes if this
//! process dies. SIGINT/SIGTERM are blocked first and received by a thread
//! ([`carve_dedicated::supervise::TermSignals`]), so the host is always restored in ordinary
//! code.

pub mod noise;
pub mod run;

use carve_core::CpuSet;
use carve_dedicated::{ActivePartition, DedicatedSpec, Partition};

/// The host's online CPUs, read from /sys (None when unreadable).
fn online_cpus() -> Option<CpuSet> {
    carve_dedicated::sys::online_cpus("/sys".as_ref())
}

/// How a partition's setup failed.
#[derive(Debug)]
enum SetupFailed {
    /// Refused before anything changed (bad input or a host that cannot take it).
    Refused(carve_dedicated::Error),
    /// Failed part way (already rolled back by `carve_dedicated`).
    Other(carve_dedicated::Error),
}

/// Sets up one partition, telling a refusal (nothing changed) from a failure.
fn setup(spec: DedicatedSpec) -> Result<ActivePartition, SetupFailed> {
    Partition::new(spec).setup().map_err(|e| match e {
        e @ carve_dedicated::Error::Refused(_) => SetupFailed::Refused(e),
        e => SetupFailed::Other(e),
    })
}
