//! `carve bench runtime --churn N`: N create/start/delete cycles of carve-oci, sampled ten
//! times for what must stay flat.

use super::calls::{cgroups_below, write_config, Rt, Work};
use super::{summary, Event};
use crate::stats::median;
use crate::BenchError;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One churn sample: what must stay flat.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    /// Cycles done.
    pub cycle: usize,
    /// Entries in carve-oci's state root.
    pub state_dirs: usize,
    /// Cgroups below the benchmark's parent.
    pub cgroups: usize,
    /// Mounts below the work directory.
    pub mounts: usize,
    /// Processes in those cgroups.
    pub processes: usize,
    /// Open fds of the last sampled container process.
    pub container_fds: usize,
    /// Open fds of this process.
    pub own_fds: usize,
    /// MemAvailable, KiB.
    pub mem_available_kib: u64,
    /// SUnreclaim, KiB.
    pub slab_unreclaimable_kib: u64,
}

/// The outcome of a churn run.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Cycles run.
    pub cycles: usize,
    /// Wall time of the whole run.
    pub total: Duration,
    /// Each cycle, seconds.
    pub durations: Vec<f64>,
    /// The samples, about every tenth cycle and the last.
    pub samples: Vec<Sample>,
    /// Samples with leftover state, cgroups, mounts or processes.
    pub leaks: Vec<String>,
    /// Container and own fd counts stayed as in the first sample.
    pub fds_flat: bool,
    /// The sample memory is compared from (the first tenth warms caches).
    pub base: Sample,
    /// The last sample.
    pub last: Sample,
    /// MemAvailable from `base` to `last`, KiB.
    pub mem_delta: i64,
    /// SUnreclaim from `base` to `last`, KiB.
    pub slab_delta: i64,
    /// SUnreclaim grew less than 1 KiB per cycle.
    pub slab_flat: bool,
}

impl Churn {
    /// Whether nothing leaked (memory is reported, not judged: other work on a shared host
    /// moves it too).
    pub fn clean(&self) -> bool {
        self.leaks.is_empty() && self.fds_flat
    }

    /// The JSON document of `carve bench runtime --churn N --json`.
    pub fn to_json(&self) -> Value {
        json!({
            "cycles": self.cycles, "seconds": self.total.as_secs_f64(),
            "cycle_ms": summary(&self.durations),
            "samples": self.samples, "leaks": self.leaks, "fds_flat": self.fds_flat,
            "baseline_cycle": self.base.cycle,
            "mem_available_delta_kib": self.mem_delta,
            "slab_unreclaimable_delta_kib": self.slab_delta,
            "slab_flat": self.slab_flat,
        })
    }

    /// The median cycle, ms.
    pub fn median_ms(&self) -> f64 {
        median(&self.durations) * 1e3
    }
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn count_dir(p: &Path) -> usize {
    std::fs::read_dir(p).map(|r| r.count()).unwrap_or(0)
}

/// Runs `n` create/start/delete --force cycles of `carve_oci` and samples what must stay flat.
pub fn churn(carve_oci: PathBuf, n: usize, on: &mut dyn FnMut(Event)) -> Result<Churn, BenchError> {
    if n == 0 {
        return Err(BenchError::Invalid {
            field: "--churn",
            why: "needs at least 1 cycle".into(),
        });
    }
    let mut work = Work::new(&mut |m| on(Event::Note(m)))?;
    let mut rt = Rt::new("carve-oci", carve_oci, &work.dir);
    work.bins.push((rt.bin.clone(), rt.root.clone()));
    let every = (n / 10).max(1);
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut durations = Vec::new();
    for i in 0..n {
        let sampled = i % every == 0 || i + 1 == n;
        let t0 = Instant::now();
        let container_fds = cycle(&mut rt, &work, &format!("carve-churn-{i}"), sampled)?;
        durations.push(t0.elapsed().as_secs_f64());
        if sampled {
            samples.push(sample(&rt, &work, i + 1, container_fds));
        }
    }
    Ok(judge(n, start.elapsed(), durations, samples))
}

/// One create/start/delete --force of container `id`; the container's fd count when `sampled`.
fn cycle(rt: &mut Rt, work: &Work, id: &str, sampled: bool) -> Result<usize, BenchError> {
    let dir = &work.dir;
    let b = work.bundle.to_string_lossy().into_owned();
    write_config(
        &work.bundle,
        &["sleep", "1000"],
        &format!("/{}/{id}", work.cgroup_parent),
    )?;
    rt.run(dir, &["create", "--bundle", &b, id])?;
    rt.run(dir, &["start", id])?;
    let mut container_fds = 0;
    if sampled {
        let pid = rt.state(dir, id)?["pid"].as_i64().unwrap_or(0);
        container_fds = count_dir(Path::new(&format!("/proc/{pid}/fd")));
    }
    rt.run(dir, &["delete", "--force", id])?;
    Ok(container_fds)
}

fn sample(rt: &Rt, work: &Work, cycle: usize, container_fds: usize) -> Sample {
    let dir_s = work.dir.to_string_lossy().into_owned();
    let cgs = cgroups_below(&work.cgroup_parent);
    let procs: usize = cgs
        .iter()
        .map(|d| {
            std::fs::read_to_string(d.join("cgroup.procs"))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        })
        .sum();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir_s))
        .count();
    Sample {
        cycle,
        state_dirs: count_dir(&rt.root),
        cgroups: cgs.len(),
        mounts,
        processes: procs,
        container_fds,
        own_fds: count_dir(Path::new("/proc/self/fd")),
        mem_available_kib: meminfo("MemAvailable"),
        slab_unreclaimable_kib: meminfo("SUnreclaim"),
    }
}

fn judge(n: usize, total: Duration, durations: Vec<f64>, samples: Vec<Sample>) -> Churn {
    // n >= 1 and the last cycle is always sampled.
    let first = samples[0].clone();
    let last = samples[samples.len() - 1].clone();
    let leaks: Vec<String> = samples
        .iter()
        .filter(|s| s.state_dirs + s.cgroups + s.mounts + s.processes > 0)
        .map(|s| format!("{s:?}"))
        .collect();
    let fds_flat = samples
        .iter()
        .all(|s| s.container_fds == first.container_fds && s.own_fds == first.own_fds);
    // The first tenth of the cycles warms caches (slab pages, page cache of the binaries):
    // memory is compared from the second sample on.
    let base = samples.get(1).unwrap_or(&first).clone();
    let mem_delta = last.mem_available_kib as i64 - base.mem_available_kib as i64;
    let slab_delta = last.slab_unreclaimable_kib as i64 - base.slab_unreclaimable_kib as i64;
    // MemAvailable on a shared host moves with everyone's builds; what churn itself could leak is
    // kernel memory per container (namespaces, cgroups, mounts): 1 KiB per cycle is the bar.
    let slab_flat = slab_delta < (last.cycle - base.cycle) as i64;
    Churn {
        cycles: n,
        total,
        durations,
        samples,
        leaks,
        fds_flat,
        base,
        last,
        mem_delta,
        slab_delta,
        slab_flat,
    }
}
