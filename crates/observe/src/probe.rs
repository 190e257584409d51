//! The low-duty noise probe of dedicated cores.
//!
//! Once per sampling interval a thread joins the dedicated partition (its cpuset, pinned to the
//! core, exempt from the tier's task mover), takes SCHED_FIFO 99 and runs the noise meter's
//! TSC-gap loop ([`carve_dedicated::noise::probe`]) for a short window (4 ms: one tick period), then
//! leaves. Every gap above 1 µs in that window is an interruption; their sum over the window is
//! the stolen share.
//!
//! How it stays out of the partition's way: it never shares the core with the partition's
//! work except for the window, which is a fixed, bounded slice (window / interval: 0.4 % at
//! 4 ms per second); its allocation, TSC calibration and thread creation happen on the
//! housekeeping core before it joins; it never waits, locks or faults pages while on the
//! core. The price is that the partition loses the window (and two context switches) each
//! interval — measured as the probe's own time on the core, reported as
//! `carve_dedicated_probe_seconds_total`, and in docs/operate.md against a spinner's rate.
//! It sees only its windows: a rare long gap between windows is missed (the partition's off-CPU
//! share, sampled from its schedstat on the housekeeping core, covers the whole interval).

use carve_dedicated::noise::{self, ProbeOptions};
use carve_dedicated::SchedPolicy;
use std::time::Duration;

/// The window each core is probed for per interval: one tick period at HZ=250, so a window is
/// not biased by whether it happens to hold a tick.
pub const WINDOW: Duration = Duration::from_millis(4);

/// Gaps above this are interruptions.
pub const THRESHOLD: Duration = Duration::from_micros(1);

/// One window on one core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The core.
    pub cpu: usize,
    /// How long the window lasted, seconds.
    pub seconds: f64,
    /// Share of the window the probe did not get.
    pub stolen_ratio: f64,
    /// Gaps above the threshold.
    pub interruptions: u64,
    /// The longest gap, seconds.
    pub longest_gap_seconds: f64,
}

/// Probes each core of `cpus` for `window` at once; `join` places each probe thread (tid, cpu):
/// joins the partition owning the core and pins the thread.
pub fn probe(
    cpus: &carve_core::CpuSet,
    window: Duration,
    join: &(dyn Fn(i32, usize) -> Result<(), noise::JoinError> + Sync),
) -> Result<Vec<Window>, noise::NoiseError> {
    let opts = ProbeOptions {
        duration: window,
        threshold: THRESHOLD,
        sched: SchedPolicy::Fifo(99),
    };
    let raw = noise::probe(cpus, &opts, join, &|| {})?;
    Ok(raw
        .iter()
        .map(|r| {
            let hz = r.tsc_hz.max(1.0);
            let stolen: u64 = r.gaps.iter().map(|g| g.1).sum::<u64>() + r.unrecorded_cycles;
            let longest = r.gaps.iter().map(|g| g.1).max().unwrap_or(0);
            Window {
                cpu: r.cpu,
                seconds: r.seconds,
                stolen_ratio: (stolen as f64 / r.cycles.max(1) as f64).clamp(0.0, 1.0),
                interruptions: r.gaps.len() as u64 + r.unrecorded,
                longest_gap_seconds: longest as f64 / hz,
            }
        })
        .collect())
}
