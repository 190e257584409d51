//! The OS-noise meter: a calibrated TSC-gap probe.
//!
//! A thread pinned to a core reads the TSC in a tight loop. Consecutive reads are a few
//! nanoseconds apart; when the core is taken away (an interrupt, the tick, another thread, RT
//! throttling) the next read comes late, and the gap is how long the core was gone. Gaps above a
//! threshold (1 µs by default: far above one loop iteration, far below any real interruption)
//! count as interruptions; their sum over the run is the share of the core that was stolen. The
//! TSC is calibrated against CLOCK_MONOTONIC over the run itself.
//!
//! [`Tracer`] attributes interruptions to sources with per-CPU tracepoint counts (IRQ handlers by
//! name, softirqs, hrtimers/the tick, IPIs, switches to other threads) in a tracefs instance of
//! its own; [`svg`] draws the runs.

use carve_core::CpuSet;
use carve_journal::Journal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::spec::SchedPolicy;

/// Why a probe thread could not be placed: the caller's own error (a partition's, an affinity
/// call's), kept whole so its source chain survives.
pub type JoinError = Box<dyn std::error::Error + Send + Sync>;

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// The caller's `join` could not place the probe thread.
    #[error("probe on CPU {cpu}: {source}")]
    Join {
        /// The core.
        cpu: usize,
        /// Why.
        source: JoinError,
    },
    /// The probe thread could not be placed or scheduled as asked.
    #[error("probe on CPU {cpu}: {why}")]
    Probe {
        /// The core.
        cpu: usize,
        /// What failed.
        why: String,
    },
    /// The TSC is not usable as a clock here.
    #[error("the TSC is not usable: {0}")]
    Tsc(String),
    /// tracefs failed.
    #[error("tracefs {path}: {why}")]
    Trace {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] carve_journal::Error),
}

#[inline(always)]
fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64 (user-mode RDTSC is allowed: CR4.TSD is
        // clear on Linux unless a process opts in with PR_SET_TSC).
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // Elsewhere the monotonic clock in nanoseconds stands in (1 "cycle" = 1 ns).
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// TSC ticks per second, measured against CLOCK_MONOTONIC over `d`.
pub fn calibrate_tsc(d: Duration) -> f64 {
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(d);
    let (t1, c1) = (Instant::now(), rdtsc());
    (c1 - c0) as f64 / (t1 - t0).as_secs_f64()
}

/// Whether /proc/cpuinfo says the TSC ticks at a constant rate through frequency changes and
/// idle states (constant_tsc and nonstop_tsc); without them gaps are not times.
pub fn tsc_is_invariant(proc: &Path) -> bool {
    let info = std::fs::read_to_string(proc.join("cpuinfo")).unwrap_or_default();
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    flags.split_whitespace().any(|f| f == "constant_tsc")
        && flags.split_whitespace().any(|f| f == "nonstop_tsc")
}

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// How long each core is probed.
    pub duration: Duration,
    /// Gaps above this are interruptions.
    pub threshold: Duration,
    /// The probe thread's scheduling policy.
    pub sched: SchedPolicy,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            duration: Duration::from_secs(10),
            threshold: Duration::from_micros(1),
            sched: SchedPolicy::Other,
        }
    }
}

/// One core's raw probe: every gap above the threshold.
#[derive(Debug, Clone)]
pub struct RawProbe {
    /// The core.
    pub cpu: usize,
    /// The probe thread's id.
    pub tid: i32,
    /// TSC ticks per second over the run.
    pub tsc_hz: f64,
    /// TSC ticks the run lasted.
    pub cycles: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// Threshold in ticks.
    pub threshold_cycles: u64,
    /// The TSC value the run started at.
    pub start_tsc: u64,
    /// (ticks since the start, gap in ticks) for each interruption recorded.
    pub gaps: Vec<(u64, u64)>,
    /// Interruptions beyond the recording capacity (counted in the totals, not in percentiles).
    pub unrecorded: u64,
    /// Sum of unrecorded gaps in ticks.
    pub unrecorded_cycles: u64,
    /// Loop iterations (for the loop period).
    pub iterations: u64,
}

fn spin(
    duration_cycles: u64,
    threshold: u64,
    gaps: &mut [(u64, u64)],
) -> (u64, u64, usize, u64, u64, u64) {
    let start = rdtsc();
    let end = start + duration_cycles;
    let mut prev = start;
    let mut n = 0usize;
    let mut over = 0u64;
    let mut over_cycles = 0u64;
    let mut iters = 0u64;
    loop {
        let now = rdtsc();
        iters += 1;
        let d = now.wrapping_sub(prev);
        if d > threshold {
            if n < gaps.len() {
                gaps[n] = (prev - start, d);
                n += 1;
            } else {
                over += 1;
                over_cycles += d;
            }
        }
        prev = now;
        if now >= end {
            return (start, now - start, n, over, over_cycles, iters);
        }
    }
}

/// Probes every core of `cpus` at once for `opts.duration`. `join` runs first in each probe thread
/// with (thread id, core) and must place the thread on the core (set its affinity, join a
/// partition); the thread then takes `opts.sched`. When every thread is placed, `ready` runs (to
/// start tracing, say) and then all spin.
pub fn probe(
    cpus: &CpuSet,
    opts: &ProbeOptions,
    join: &(dyn Fn(i32, usize) -> Result<(), JoinError> + Sync),
    ready: &dyn Fn(),
) -> Result<Vec<RawProbe>, NoiseError> {
    let est_hz = calibrate_tsc(Duration::from_millis(50));
    if !(est_hz.is_finite() && est_hz > 1e6) {
        return Err(NoiseError::Tsc(format!("calibrated at {est_hz} Hz")));
    }
    let duration_cycles = (opts.duration.as_secs_f64() * est_hz) as u64;
    let threshold = (opts.threshold.as_secs_f64() * est_hz) as u64;
    let cap = ((opts.duration.as_secs_f64() * 50_000.0) as usize).clamp(100_000, 4_000_000);
    // Two rendezvous with this thread: all placed → `ready` → all spin.
    let placed_all = Arc::new(Barrier::new(cpus.len() + 1));
    let go = Arc::new(Barrier::new(cpus.len() + 1));
    std::thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter()
            .map(|cpu| {
                let (placed_all, go) = (placed_all.clone(), go.clone());
                let sched = opts.sched;
                s.spawn(move || -> Result<RawProbe, NoiseError> {
                    let tid = crate::sys::gettid();
                    // Touch every slot now: a page fault while spinning would be our own noise.
                    let mut gaps = vec![(1u64, 1u64); cap];
                    let placed = join(tid, cpu)
                        .map_err(|source| NoiseError::Join { cpu, source })
                        .and_then(|()| {
                            crate::launch::set_sched(0, &sched).map_err(|e| NoiseError::Probe {
                                cpu,
                                why: format!("set {sched}: {e}"),
                            })
                        });
                    placed_all.wait();
                    go.wait();
                    placed?;
                    let t0 = Instant::now();
                    let (start_tsc, cycles, n, over, over_cycles, iterations) =
                        spin(duration_cycles, threshold, &mut gaps);
                    let seconds = t0.elapsed().as_secs_f64();
                    // Back to normal before anything else runs on this thread.
                    let _ = crate::launch::set_sched(0, &SchedPolicy::Other);
                    gaps.truncate(n);
                    Ok(RawProbe {
                        cpu,
                        tid,
                        tsc_hz: cycles as f64 / seconds,
                        start_tsc,
                        cycles,
                        seconds,
                        threshold_cycles: threshold,
                        gaps,
                        unrecorded: over,
                        unrecorded_cycles: over_cycles,
                        iterations,
                    })
                })
            })
            .collect();
        placed_all.wait();
        ready();
        go.wait();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread"))
            .collect()
    })
}

/// Percentiles of the interruption gaps, in µs.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median gap.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
}

/// One histogram bucket: gaps in [lo_us, hi_us).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    /// Lower bound, µs.
    pub lo_us: f64,
    /// Upper bound, µs.
    pub hi_us: f64,
    /// Interruptions in the bucket.
    pub count: u64,
}

/// One core's result for one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// The core.
    pub cpu: usize,
    /// The probe's scheduling policy.
    pub sched: String,
    /// Measured time, s.
    pub seconds: f64,
    /// Calibrated TSC rate, Hz.
    pub tsc_hz: f64,
    /// Interruption threshold, µs.
    pub threshold_us: f64,
    /// Mean loop period, ns (the probe's resolution).
    pub loop_ns: f64,
    /// Number of interruptions.
    pub interruptions: u64,
    /// Interruptions per second.
    pub interruptions_per_sec: f64,
    /// Share of the core taken by interruptions, %.
    pub stolen_percent: f64,
    /// The longest gap, µs.
    pub max_gap_us: f64,
    /// Gap percentiles, µs.
    pub percentiles: Percentiles,
    /// Gap histogram, power-of-two µs buckets.
    pub histogram: Vec<Bucket>,
    /// Tracepoint counts on the core during the run, by source (when tracefs was available).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    /// (seconds since start, gap µs) of each recorded interruption (for the plot).
    #[serde(skip)]
    pub timeline: Vec<(f64, f64)>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Turns a raw probe into statistics.
pub fn stats(raw: &RawProbe, sched: &SchedPolicy) -> RunStats {
    let hz = raw.tsc_hz;
    let us = |c: u64| c as f64 / hz * 1e6;
    let mut gaps_us: Vec<f64> = raw.gaps.iter().map(|&(_, g)| us(g)).collect();
    let stolen: u64 = raw.gaps.iter().map(|&(_, g)| g).sum::<u64>() + raw.unrecorded_cycles;
    let interruptions = raw.gaps.len() as u64 + raw.unrecorded;
    let timeline = raw
        .gaps
        .iter()
        .map(|&(t, g)| (t as f64 / hz, us(g)))
        .collect();
    gaps_us.sort_by(f64::total_cmp);
    let threshold_us = us(raw.threshold_cycles);
    let mut histogram: Vec<Bucket> = Vec::new();
    let mut lo = 1.0f64;
    while lo * 2.0 <= threshold_us {
        lo *= 2.0;
    }
    let max = gaps_us.last().copied().unwrap_or(0.0);
    let mut i = 0;
    while lo <= max || histogram.is_empty() {
        let hi = lo * 2.0;
        let start = i;
        while i < gaps_us.len() && gaps_us[i] < hi {
            i += 1;
        }
        histogram.push(Bucket {
            lo_us: lo,
            hi_us: hi,
            count: (i - start) as u64,
        });
        lo = hi;
    }
    let seconds = raw.cycles as f64 / hz;
    RunStats {
        cpu: raw.cpu,
        sched: sched.to_string(),
        seconds,
        tsc_hz: hz,
        threshold_us,
        loop_ns: raw.seconds * 1e9 / raw.iterations.max(1) as f64,
        interruptions,
        interruptions_per_sec: interruptions as f64 / seconds,
        stolen_percent: stolen as f64 / raw.cycles.max(1) as f64 * 100.0,
        max_gap_us: max,
        percentiles: Percentiles {
            p50: percentile(&gaps_us, 50.0),
            p90: percentile(&gaps_us, 90.0),
            p99: percentile(&gaps_us, 99.0),
            p99_9: percentile(&gaps_us, 99.9),
        },
        histogram,
        attribution: None,
        timeline,
    }
}

/// dedicated / untuned for the headline figures (lower is better; 0 when untuned is 0).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// stolen_percent ratio.
    pub stolen_percent: f64,
    /// interruptions_per_sec ratio.
    pub interruptions_per_sec: f64,
    /// max_gap_us ratio.
    pub max_gap_us: f64,
}

impl Ratio {
    /// dedicated divided by untuned.
    pub fn of(untuned: &RunStats, dedicated: &RunStats) -> Ratio {
        let r = |d: f64, u: f64| if u > 0.0 { d / u } else { 0.0 };
        Ratio {
            stolen_percent: r(dedicated.stolen_percent, untuned.stolen_percent),
            interruptions_per_sec: r(
                dedicated.interruptions_per_sec,
                untuned.interruptions_per_sec,
            ),
            max_gap_us: r(dedicated.max_gap_us, untuned.max_gap_us),
        }
    }
}

/// Tracepoint counts on one core during a run, and which event opened each gap.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Attribution {
    /// Events by source: "irq:NAME", "softirq:NAME", "hrtimer:FUNCTION", "local_timer",
    /// "ipi:KIND", "thread:COMM", "work:FUNCTION".
    pub events: BTreeMap<String, u64>,
    /// Events the trace buffer lost (overrun), so counts are lower bounds when nonzero.
    pub lost: u64,
    /// Gaps by the first event inside them (when the trace clock is the TSC itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gaps: Option<GapAttribution>,
}

/// Interruptions grouped by what opened them.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GapAttribution {
    /// By the first traced event inside the gap.
    pub by_first_event: BTreeMap<String, GapSource>,
    /// Gaps with no traced event inside: the guest kernel did not run anything there, so the
    /// vCPU itself was descheduled by the hypervisor (or an SMI/NMI took it).
    pub untraced: GapSource,
    /// The longest gaps and every event inside each.
    pub longest: Vec<LongGap>,
}

/// Gaps of one source.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GapSource {
    /// How many.
    pub gaps: u64,
    /// Their total, µs.
    pub stolen_us: f64,
    /// The longest, µs.
    pub max_us: f64,
}

/// One long gap.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LongGap {
    /// When, seconds after the start.
    pub at_s: f64,
    /// How long, µs.
    pub gap_us: f64,
    /// The events inside it, in order (deduplicated).
    pub events: Vec<String>,
}

/// One traced event: TSC timestamp (when the trace clock is x86-tsc) and source key.
pub type TraceEvent = (Option<u64>, String);

/// Groups `raw`'s gaps by the events (sorted by timestamp) that fall inside them.
pub fn attribute_gaps(raw: &RawProbe, events: &[(u64, String)]) -> GapAttribution {
    let us = |c: u64| c as f64 / raw.tsc_hz * 1e6;
    let mut out = GapAttribution::default();
    let add = |g: &mut GapSource, d: u64| {
        g.gaps += 1;
        g.stolen_us += us(d);
        g.max_us = g.max_us.max(us(d));
    };
    let mut inside_of: Vec<(u64, u64, Vec<String>)> = Vec::new();
    for &(off, d) in &raw.gaps {
        let (a, b) = (raw.start_tsc + off, raw.start_tsc + off + d);
        let i = events.partition_point(|(t, _)| *t < a);
        let inside: Vec<&String> = events[i..]
            .iter()
            .take_while(|(t, _)| *t <= b)
            .map(|(_, k)| k)
            .collect();
        match inside.first() {
            Some(k) => add(out.by_first_event.entry((*k).clone()).or_default(), d),
            None => add(&mut out.untraced, d),
        }
        inside_of.push((off, d, inside.into_iter().cloned().collect()));
    }
    inside_of.sort_by_key(|x| std::cmp::Reverse(x.1));
    out.longest = inside_of
        .into_iter()
        .take(5)
        .map(|(off, d, mut ev)| {
            ev.dedup();
            ev.truncate(12);
            LongGap {
                at_s: off as f64 / raw.tsc_hz,
                gap_us: us(d),
                events: ev,
            }
        })
        .collect();
    out
}

/// The tracepoints enabled for attribution (those missing on a kernel are skipped).
pub const TRACE_EVENTS: &[&str] = &[
    "irq/irq_handler_entry",
    "irq/softirq_entry",
    "timer/hrtimer_expire_entry",
    "irq_vectors/local_timer_entry",
    "irq_vectors/call_function_entry",
    "irq_vectors/call_function_single_entry",
    "irq_vectors/reschedule_entry",
    "irq_vectors/irq_work_entry",
    "sched/sched_switch",
    "workqueue/workqueue_execute_start",
];

fn field<'a>(details: &'a str, key: &str) -> Option<&'a str> {
    let start = details.find(key)? + key.len();
    let rest = &details[start..];
    let end = rest.find([' ', ']']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Parses one CPU's trace text into events by source. Switches to `probe_tids` are the probe
/// coming back and are left out.
pub fn parse_events(trace: &str, probe_tids: &[i32]) -> Vec<TraceEvent> {
    let mut out = Vec::new();
    for line in trace.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(close) = line.find("] ") else {
            continue;
        };
        let rest = &line[close + 2..];
        // "FLAGS TIMESTAMP: EVENT: DETAILS"
        let Some((head, ev)) = rest.split_once(": ") else {
            continue;
        };
        let ts = head
            .split_whitespace()
            .last()
            .and_then(|t| t.parse::<u64>().ok());
        let Some((event, details)) = ev.split_once(": ") else {
            continue;
        };
        let key = match event {
            "irq_handler_entry" => format!("irq:{}", field(details, "name=").unwrap_or("?")),
            "softirq_entry" => format!("softirq:{}", field(details, "action=").unwrap_or("?")),
            "hrtimer_expire_entry" => {
                format!("hrtimer:{}", field(details, "function=").unwrap_or("?"))
            }
            "local_timer_entry" => "local_timer".into(),
            "call_function_entry"
            | "call_function_single_entry"
            | "reschedule_entry"
            | "irq_work_entry" => format!("ipi:{}", event.trim_end_matches("_entry")),
            "workqueue_execute_start" => {
                format!("work:{}", field(details, "function ").unwrap_or("?"))
            }
            "sched_switch" => {
                let Some((_, next)) = details.split_once("==> ") else {
                    continue;
                };
                let pid: i32 = field(next, "next_pid=")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(-1);
                if probe_tids.contains(&pid) {
                    continue;
                }
                let comm = field(next, "next_comm=").unwrap_or("?");
                format!("thread:{comm}")
            }
            _ => continue,
        };
        out.push((ts, key));
    }
    out
}

/// Counts one CPU's trace text by source (see [`parse_events`]).
pub fn attribute(trace: &str, probe_tids: &[i32]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (_, key) in parse_events(trace, probe_tids) {
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// What a tracer captured on one core.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The events, in trace order.
    pub events: Vec<TraceEvent>,
    /// Events lost to buffer overrun.
    pub lost: u64,
}

impl Capture {
    /// Counts the events and, when they carry TSC timestamps, attributes `raw`'s gaps.
    pub fn attribution(&self, raw: &RawProbe) -> Attribution {
        let mut events = BTreeMap::new();
        for (_, k) in &self.events {
            *events.entry(k.clone()).or_insert(0) += 1;
        }
        let mut timed: Vec<(u64, String)> = self
            .events
            .iter()
            .filter_map(|(t, k)| t.map(|t| (t, k.clone())))
            .collect();
        let gaps = (!timed.is_empty() && timed.len() == self.events.len()).then(|| {
            timed.sort_by_key(|(t, _)| *t);
            attribute_gaps(raw, &timed)
        });
        Attribution {
            events,
            lost: self.lost,
            gaps,
        }
    }
}

/// A tracefs instance of carve's own, counting tracepoints on the probed cores.
pub struct Tracer {
    dir: PathBuf,
    cpus: CpuSet,
}

impl Tracer {
    /// Finds tracefs (mounting it under RUN/tracefs-PID, journaled, when it is not mounted) and
    /// makes an instance `carve-noise-PID` (journaled) tracing only `cpus`.
    pub fn open(
        j: &mut Journal,
        run: &Path,
        proc: &Path,
        cpus: &CpuSet,
    ) -> Result<Self, NoiseError> {
        let terr = |path: &Path, why: String| NoiseError::Trace {
            path: path.to_path_buf(),
            why,
        };
        let mounted = carve_core::mountinfo::read(proc)
            .into_iter()
            .find(|m| m.fstype == "tracefs")
            .map(|m| m.mount_point);
        let root = match mounted {
            Some(p) => p,
            None => {
                std::fs::create_dir_all(run).map_err(|e| terr(run, e.to_string()))?;
                let p = run.join(format!("tracefs-{}", std::process::id()));
                j.create_dir(&p)?;
                j.record(carve_journal::Change::Mount { target: p.clone() })?;
                crate::tune::mount_fs("tracefs", &p, "tracefs", "")
                    .map_err(|e| terr(&p, e.to_string()))?;
                p
            }
        };
        let dir = root.join(format!("instances/carve-noise-{}", std::process::id()));
        j.create_dir(&dir)?;
        let w = |f: &str, v: &str| -> Result<(), NoiseError> {
            let p = dir.join(f);
            std::fs::write(&p, v).map_err(|e| terr(&p, e.to_string()))
        };
        w("tracing_on", "0")?;
        w(
            "tracing_cpumask",
            &cpus.to_mask(crate::sys::possible_cpu_count(Path::new("/sys"))),
        )?;
        w("buffer_size_kb", "8192")?;
        // Timestamps in TSC ticks, the probe's own clock, so each gap finds its events. Kernels
        // without this clock keep theirs: counts only.
        let _ = w("trace_clock", "x86-tsc");
        for ev in TRACE_EVENTS {
            let p = dir.join("events").join(ev).join("enable");
            if p.exists() {
                std::fs::write(&p, "1").map_err(|e| terr(&p, e.to_string()))?;
            }
        }
        Ok(Tracer {
            dir,
            cpus: cpus.clone(),
        })
    }

    /// Clears the buffer and starts tracing.
    pub fn start(&self) -> Result<(), NoiseError> {
        let w = |f: &str, v: &str| {
            let p = self.dir.join(f);
            std::fs::write(&p, v).map_err(|e| NoiseError::Trace {
                path: p,
                why: e.to_string(),
            })
        };
        w("trace", "")?;
        w("tracing_on", "1")
    }

    /// Stops tracing and returns each probed core's events.
    pub fn stop(&self, probe_tids: &[i32]) -> Result<BTreeMap<usize, Capture>, NoiseError> {
        let p = self.dir.join("tracing_on");
        std::fs::write(&p, "0").map_err(|e| NoiseError::Trace {
            path: p,
            why: e.to_string(),
        })?;
        let mut out = BTreeMap::new();
        for cpu in self.cpus.iter() {
            let base = self.dir.join(format!("per_cpu/cpu{cpu}"));
            let text =
                std::fs::read_to_string(base.join("trace")).map_err(|e| NoiseError::Trace {
                    path: base.join("trace"),
                    why: e.to_string(),
                })?;
            let stats = std::fs::read_to_string(base.join("stats")).unwrap_or_default();
            let lost = stats
                .lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    matches!(k.trim(), "overrun" | "dropped events")
                        .then(|| v.trim().parse::<u64>().ok())?
                })
                .sum();
            out.insert(
                cpu,
                Capture {
                    events: parse_events(&text, probe_tids),
                    lost,
                },
            );
        }
        Ok(out)
    }
}

pub mod svg;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_a_known_probe() {
        // 1 GHz "TSC": ticks are ns. Gaps of 2, 3, 100 and 5000 µs in one second.
        let raw = RawProbe {
            cpu: 1,
            tid: 1,
            tsc_hz: 1e9,
            cycles: 1_000_000_000,
            seconds: 1.0,
            threshold_cycles: 1000,
            start_tsc: 0,
            gaps: vec![(10, 2000), (20, 3000), (30, 100_000), (40, 5_000_000)],
            unrecorded: 0,
            unrecorded_cycles: 0,
            iterations: 50_000_000,
        };
        let s = stats(&raw, &SchedPolicy::Fifo(99));
        assert_eq!(s.interruptions, 4);
        assert!(
            (s.stolen_percent - 0.5105).abs() < 1e-9,
            "{}",
            s.stolen_percent
        );
        assert!((s.max_gap_us - 5000.0).abs() < 1e-9);
        assert_eq!(s.percentiles.p50, 3.0);
        assert_eq!(s.percentiles.p99, 5000.0);
        assert_eq!(s.histogram.first().unwrap().lo_us, 1.0);
        assert_eq!(s.histogram.iter().map(|b| b.count).sum::<u64>(), 4);
        assert_eq!(s.histogram[1].count, 2); // [2,4) holds the 2 and 3 µs gaps
        assert_eq!(s.sched, "fifo:99");
        assert!((s.loop_ns - 20.0).abs() < 1e-9);
    }

    #[test]
    fn trace_lines_are_attributed() {
        let t = "# tracer: nop\n\
          <idle>-0 [001] d.h1. 100: irq_handler_entry: irq=36 name=virtio1-req.0\n\
          probe-7 [001] d.h1. 101: local_timer_entry: vector=236\n\
          probe-7 [001] d.h1. 102: hrtimer_expire_entry: hrtimer=0000 function=tick_nohz_handler now=1\n\
          probe-7 [001] ..s1. 103: softirq_entry: vec=1 [action=TIMER]\n\
          probe-7 [001] d..2. 104: sched_switch: prev_comm=probe prev_pid=7 prev_prio=120 prev_state=R ==> next_comm=kworker/1:1 next_pid=55 next_prio=120\n\
          kworker/1:1-55 [001] d..2. 105: sched_switch: prev_comm=kworker/1:1 prev_pid=55 prev_prio=120 prev_state=I ==> next_comm=probe next_pid=7 next_prio=120\n";
        let a = attribute(t, &[7]);
        assert_eq!(a.get("irq:virtio1-req.0"), Some(&1));
        assert_eq!(a.get("local_timer"), Some(&1));
        assert_eq!(a.get("hrtimer:tick_nohz_handler"), Some(&1));
        assert_eq!(a.get("softirq:TIMER"), Some(&1));
        assert_eq!(a.get("thread:kworker/1:1"), Some(&1));
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn gaps_are_attributed_to_the_first_event_inside() {
        let raw = RawProbe {
            cpu: 1,
            tid: 7,
            tsc_hz: 1e9,
            start_tsc: 1000,
            cycles: 1_000_000,
            seconds: 0.001,
            threshold_cycles: 1000,
            gaps: vec![(100, 5000), (10_000, 20_000), (50_000, 3000)],
            unrecorded: 0,
            unrecorded_cycles: 0,
            iterations: 1,
        };
        let ev = |t: u64, k: &str| (t, k.to_string());
        let events = vec![
            ev(1200, "irq:x"),
            ev(11_500, "local_timer"),
            ev(11_600, "softirq:RCU"),
            ev(40_000, "irq:between"),
        ];
        let g = attribute_gaps(&raw, &events);
        assert_eq!(g.by_first_event["irq:x"].gaps, 1);
        assert_eq!(g.by_first_event["local_timer"].max_us, 20.0);
        assert_eq!(g.untraced.gaps, 1);
        assert_eq!(g.longest[0].events, vec!["local_timer", "softirq:RCU"]);
        let cap = Capture {
            events: events.into_iter().map(|(t, k)| (Some(t), k)).collect(),
            lost: 0,
        };
        let a = cap.attribution(&raw);
        assert_eq!(a.events["irq:between"], 1);
        assert!(a.gaps.is_some());
    }

    #[test]
    fn a_short_probe_on_this_core_measures_something() {
        let cpu = crate::sys::get_affinity(0).unwrap().iter().next().unwrap();
        let opts = ProbeOptions {
            duration: Duration::from_millis(200),
            ..Default::default()
        };
        let cpus: CpuSet = [cpu].into_iter().collect();
        let raw = probe(
            &cpus,
            &opts,
            &|tid, cpu| Ok(crate::sys::set_affinity(tid, &[cpu].into_iter().collect())?),
            &|| {},
        )
        .unwrap();
        let s = stats(&raw[0], &opts.sched);
        assert!(
            s.seconds > 0.1 && s.tsc_hz > 1e6 && s.loop_ns > 0.0,
            "{s:?}"
        );
        assert!(s.stolen_percent >= 0.0 && s.stolen_percent <= 100.0);
    }
}
