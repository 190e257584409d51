//! `carve bench interference`: seed 004's real-time experiment made rigorous.
//!
//! The probe (`carve-probe periodic`) does fixed-size units of work on one core and counts how
//! many fit in each period (1 ms, 10 ms, 200 ms). Three scenarios, one after the other:
//! - `quiet`: no load from this benchmark, SCHED_OTHER, the probe pinned to the core;
//! - `untuned`: the same probe under the load plan ([`crate::load`]) placed on every core;
//! - `dedicated`: `carve run --dedicated CORE --sched fifo:99` under the same load placed on
//!   the other cores.
//!
//! A fourth scenario, `floor`, is the dedicated core with no load: the platform floor (the
//! tick, the hypervisor) measured by the same probe; on a host shared with other work the
//! `quiet` run is not quiet, the floor run is.
//!
//! Each period's deviation is `|best − count| ÷ best`, where `best` is what the period holds at
//! the best rate any period of 10 ms or more reached ([`reference_rate`]: the count the core
//! does when nothing interrupts it). Throughput is the mean count against the quiet mean.
//! The floor is also reported apart: hypervisor steal from /proc/stat during each scenario, and
//! the noise meter on the dedicated, unloaded core (interruptions, and the tick's cost from its
//! tracefs attribution where tracing works).

use crate::load::{Load, Placement};
use crate::stats::{mean, percentile};
use crate::{pinned, run_with_deadline, BenchError, Tools};
use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Short runs (seconds in all), for tests and a first look.
    pub quick: bool,
    /// The probed core (default: the last online CPU).
    pub cpu: Option<usize>,
    /// Periods in µs.
    pub periods_us: Vec<u64>,
    /// Start the load plan (without it, untuned and dedicated run on the host as it is).
    pub load: bool,
    /// Include the dedicated scenario (retunes the host through `carve run`).
    pub dedicated: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            cpu: None,
            periods_us: vec![1_000, 10_000, 200_000],
            load: true,
            dedicated: true,
        }
    }
}

/// The counts of one scenario at one period.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// quiet, untuned or dedicated.
    pub scenario: String,
    /// The period, µs.
    pub period_us: u64,
    /// Work units done in each period.
    pub counts: Vec<u32>,
}

/// Seed 004's table row for one scenario and period.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// quiet, untuned or dedicated.
    pub scenario: String,
    /// The period, µs.
    pub period_us: u64,
    /// Periods measured.
    pub periods: usize,
    /// Mean units per period.
    pub mean_units: f64,
    /// Mean units ÷ the quiet run's mean units.
    pub throughput: f64,
    /// Mean deviation from the quiet best period, %.
    pub avg_dev_pct: f64,
    /// 99th percentile deviation, %.
    pub p99_dev_pct: f64,
    /// Largest deviation, %.
    pub max_dev_pct: f64,
    /// Hypervisor steal on the core while the scenario ran, % (/proc/stat).
    pub steal_pct: f64,
}

/// The platform floor, apart from the scenarios: the noise meter on the core made dedicated
/// with no load (`carve noise --dedicated`): what the tick and the hypervisor take from a core
/// nothing else runs on.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// Seconds measured.
    pub seconds: f64,
    /// Share of the core lost in gaps, %.
    pub stolen_pct: f64,
    /// Gaps per second.
    pub interruptions_per_sec: f64,
    /// Median gap, µs.
    pub median_gap_us: f64,
    /// Longest gap, µs.
    pub max_gap_us: f64,
    /// (from µs, to µs, gaps) of the noise meter's histogram.
    pub histogram: Vec<(f64, f64, u64)>,
    /// Mean cost of one timer-tick gap, µs, from the tracefs attribution (None without it).
    pub tick_cost_us: Option<f64>,
    /// Share of the core the tick gaps take, %.
    pub tick_pct: Option<f64>,
    /// Share of the core lost in gaps with no guest kernel event (the hypervisor), %.
    pub untraced_pct: Option<f64>,
    /// Hypervisor steal on the core over the same seconds, % (/proc/stat).
    pub steal_pct: f64,
}

/// The targets for one period.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The period, µs.
    pub period_us: u64,
    /// The floor scenario's average deviation (dedicated core, no load), %.
    pub floor_avg_pct: f64,
    /// Dedicated under load, average deviation, %.
    pub dedicated_avg_pct: f64,
    /// Untuned under load, average deviation, %.
    pub untuned_avg_pct: f64,
    /// dedicated ≤ floor + 1 %.
    pub within_floor_plus_1: bool,
    /// untuned ÷ dedicated (average deviation); the target is ≥ 2.
    pub untuned_over_dedicated: f64,
    /// Both hold.
    pub met: bool,
}

/// The whole result (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Interference {
    /// The probed core.
    pub cpu: usize,
    /// Short runs.
    pub quick: bool,
    /// The load's partitions (empty without load).
    pub load: Vec<String>,
    /// The load plans' text, untuned then dedicated placement.
    pub load_plans: Vec<String>,
    /// Every scenario's counts.
    pub series: Vec<Series>,
    /// The table.
    pub summaries: Vec<Summary>,
    /// The platform floor by the noise meter (needs the dedicated scenario).
    pub floor: Option<Floor>,
    /// The targets.
    pub verdicts: Vec<Verdict>,
}

/// Seconds of probing per period length.
pub fn seconds_for(period_us: u64, quick: bool) -> f64 {
    let p = period_us as f64 / 1e6;
    if quick {
        (p * 5.0).max(0.3)
    } else {
        (p * 100.0).max(4.0)
    }
}

/// (steal, total) jiffies of one CPU from /proc/stat.
pub fn steal_jiffies(cpu: usize) -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let key = format!("cpu{cpu} ");
    text.lines()
        .find(|l| l.starts_with(&key))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            (v.get(7).copied().unwrap_or(0), v.iter().take(8).sum())
        })
        .unwrap_or((0, 0))
}

fn steal_pct(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        0.0
    } else {
        b.0.saturating_sub(a.0) as f64 * 100.0 / total as f64
    }
}

fn counts_of(out: &str) -> Result<Vec<u32>, BenchError> {
    let v = crate::probe::parse(out)?;
    v["counts"]
        .as_array()
        .ok_or_else(|| BenchError::Parse("periodic report without counts".into()))?
        .iter()
        .map(|c| {
            c.as_u64()
                .map(|c| c as u32)
                .ok_or_else(|| BenchError::Parse(format!("count {c}")))
        })
        .collect()
}

/// One scenario: the probe at every period, natively pinned or under `carve run --dedicated`.
fn scenario(
    tools: &Tools,
    probe: &Path,
    cpu: usize,
    name: &str,
    opts: &Options,
) -> Result<(Vec<Series>, f64), BenchError> {
    let before = steal_jiffies(cpu);
    let mut out = Vec::new();
    for &p in &opts.periods_us {
        let secs = seconds_for(p, opts.quick);
        let args = ["periodic".to_string(), p.to_string(), format!("{secs}")];
        let mut cmd = if name == "dedicated" || name == "floor" {
            let mut c = tools.dedicated_fifo(cpu);
            c.arg(probe);
            c
        } else {
            pinned(probe, cpu)
        };
        cmd.args(&args);
        let o = run_with_deadline(&mut cmd, Duration::from_secs_f64(secs * 3.0 + 120.0))?;
        out.push(Series {
            scenario: name.to_string(),
            period_us: p,
            counts: counts_of(&o.stdout)?,
        });
    }
    Ok((out, steal_pct(before, steal_jiffies(cpu))))
}

/// Work units per µs of an uninterrupted period: the best rate any period of 10 ms or more
/// reached in any scenario (shorter periods count only when there are no longer ones: one
/// unit more or less is a large share of a 1 ms period). A physical constant of the core, so
/// the deviations of all scenarios are measured against the same yardstick even when the
/// "quiet" host is not quiet.
pub fn reference_rate(series: &[Series]) -> f64 {
    let best = |min: u64| {
        series
            .iter()
            .filter(|s| s.period_us >= min)
            .flat_map(|s| {
                s.counts
                    .iter()
                    .map(move |&c| f64::from(c) / s.period_us as f64)
            })
            .fold(0.0, f64::max)
    };
    let r = best(10_000);
    if r > 0.0 {
        r
    } else {
        best(0)
    }
}

/// Summaries of every series: deviation from [`reference_rate`], throughput against the quiet
/// run of the same period.
pub fn summarize(series: &[Series], steal: &[(String, f64)]) -> Vec<Summary> {
    let rate = reference_rate(series);
    series
        .iter()
        .map(|s| {
            let quiet = series
                .iter()
                .find(|q| q.scenario == "quiet" && q.period_us == s.period_us);
            let qc: Vec<f64> =
                quiet.map_or(vec![], |q| q.counts.iter().map(|&c| f64::from(c)).collect());
            let best = rate * s.period_us as f64;
            let c: Vec<f64> = s.counts.iter().map(|&c| f64::from(c)).collect();
            let dev: Vec<f64> = c
                .iter()
                .map(|&x| {
                    if best > 0.0 {
                        (best - x).abs() / best * 100.0
                    } else {
                        0.0
                    }
                })
                .collect();
            let qm = mean(&qc);
            Summary {
                scenario: s.scenario.clone(),
                period_us: s.period_us,
                periods: c.len(),
                mean_units: mean(&c),
                throughput: if qm > 0.0 { mean(&c) / qm } else { 0.0 },
                avg_dev_pct: mean(&dev),
                p99_dev_pct: percentile(&dev, 99.0),
                max_dev_pct: dev.iter().copied().fold(0.0, f64::max),
                steal_pct: steal
                    .iter()
                    .find(|(n, _)| n == &s.scenario)
                    .map_or(0.0, |x| x.1),
            }
        })
        .collect()
}

/// The targets per period: dedicated within floor + 1 % and ≥ 2× lower than untuned.
pub fn verdicts(sums: &[Summary], periods: &[u64]) -> Vec<Verdict> {
    periods
        .iter()
        .filter_map(|&p| {
            let get = |n: &str| sums.iter().find(|s| s.scenario == n && s.period_us == p);
            let (q, u, d) = (get("floor")?, get("untuned")?, get("dedicated")?);
            let within = d.avg_dev_pct <= q.avg_dev_pct + 1.0;
            let x = if d.avg_dev_pct > 0.0 {
                u.avg_dev_pct / d.avg_dev_pct
            } else {
                f64::INFINITY
            };
            Some(Verdict {
                period_us: p,
                floor_avg_pct: q.avg_dev_pct,
                dedicated_avg_pct: d.avg_dev_pct,
                untuned_avg_pct: u.avg_dev_pct,
                within_floor_plus_1: within,
                untuned_over_dedicated: x,
                met: within && x >= 2.0,
            })
        })
        .collect()
}

/// The noise meter on `cpu` made dedicated, with no load: `carve noise --dedicated --json`.
pub fn floor(tools: &Tools, cpu: usize, seconds: f64) -> Result<Floor, BenchError> {
    let mut cmd = Command::new(&tools.carve);
    cmd.args([
        "noise",
        "--dedicated",
        "--json",
        "--cpus",
        &cpu.to_string(),
        "--seconds",
    ])
    .arg(format!("{seconds}"));
    let before = steal_jiffies(cpu);
    let out = run_with_deadline(&mut cmd, Duration::from_secs_f64(seconds + 120.0))?;
    let steal = steal_pct(before, steal_jiffies(cpu));
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| BenchError::Parse(format!("carve noise --json: {e}")))?;
    let d = &v["cores"][0]["dedicated"];
    let f = |x: &serde_json::Value| x.as_f64().unwrap_or(0.0);
    let secs = f(&d["seconds"]).max(1e-9);
    let histogram = d["histogram"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|b| {
                    (
                        f(&b["lo_us"]),
                        f(&b["hi_us"]),
                        b["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let gaps = &d["attribution"]["gaps"];
    let tick = gaps["by_first_event"].as_object().map(|m| {
        m.iter()
            .filter(|(k, _)| k.contains("timer"))
            .fold((0u64, 0.0f64), |(n, us), (_, g)| {
                (n + g["gaps"].as_u64().unwrap_or(0), us + f(&g["stolen_us"]))
            })
    });
    Ok(Floor {
        seconds: secs,
        stolen_pct: f(&d["stolen_percent"]),
        interruptions_per_sec: f(&d["interruptions_per_sec"]),
        median_gap_us: f(&d["percentiles"]["p50"]),
        max_gap_us: f(&d["max_gap_us"]),
        histogram,
        tick_cost_us: tick.filter(|t| t.0 > 0).map(|t| t.1 / t.0 as f64),
        tick_pct: tick.map(|t| t.1 / secs / 1e4),
        untraced_pct: gaps["untraced"]["stolen_us"]
            .as_f64()
            .map(|u| u / secs / 1e4),
        steal_pct: steal,
    })
}

/// Runs the three scenarios and the floor.
pub fn run(
    tools: &Tools,
    probe: &Path,
    work: &Path,
    opts: &Options,
) -> Result<Interference, BenchError> {
    let cpu = match opts.cpu {
        Some(c) => c,
        None => crate::default_cpu()?,
    };
    if opts.periods_us.is_empty()
        || opts
            .periods_us
            .iter()
            .any(|&p| !(100..=10_000_000).contains(&p))
    {
        return Err(BenchError::Invalid {
            field: "periods",
            why: "each period must be between 100 µs and 10 s".into(),
        });
    }
    let settle = Duration::from_secs(if opts.quick { 1 } else { 3 });
    let mut series = Vec::new();
    let mut steal = Vec::new();
    let mut plans = Vec::new();
    let (s, st) = scenario(tools, probe, cpu, "quiet", opts)?;
    series.extend(s);
    steal.push(("quiet".to_string(), st));
    let mut floor_noise = None;
    if opts.dedicated {
        // The platform floor: the same probe on the dedicated core with no load at all.
        let (s, st) = scenario(tools, probe, cpu, "floor", opts)?;
        series.extend(s);
        steal.push(("floor".to_string(), st));
        floor_noise = Some(floor(tools, cpu, if opts.quick { 0.5 } else { 5.0 })?);
    }
    let load = |placement| -> Result<Option<Load>, BenchError> {
        if !opts.load {
            return Ok(None);
        }
        let l = Load::start(tools, probe, work, &[cpu], placement)?;
        std::thread::sleep(settle);
        Ok(Some(l))
    };
    let mut partitions = Vec::new();
    {
        let l = load(Placement::Untuned)?;
        if let Some(l) = &l {
            partitions = l.partitions.clone();
            plans.push(std::fs::read_to_string(&l.plan).unwrap_or_default());
        }
        let (s, st) = scenario(tools, probe, cpu, "untuned", opts)?;
        series.extend(s);
        steal.push(("untuned".to_string(), st));
        if let Some(l) = l {
            l.stop()?;
        }
    }
    if opts.dedicated {
        let l = load(Placement::Housekeeping)?;
        if let Some(l) = &l {
            plans.push(std::fs::read_to_string(&l.plan).unwrap_or_default());
        }
        let (s, st) = scenario(tools, probe, cpu, "dedicated", opts)?;
        series.extend(s);
        steal.push(("dedicated".to_string(), st));
        if let Some(l) = l {
            l.stop()?;
        }
    }
    let summaries = summarize(&series, &steal);
    let verdicts = verdicts(&summaries, &opts.periods_us);
    Ok(Interference {
        cpu,
        quick: opts.quick,
        load: partitions,
        load_plans: plans,
        series,
        summaries,
        floor: floor_noise,
        verdicts,
    })
}

/// The table as text.
pub fn render(r: &Interference) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "carve bench interference: CPU {}, fixed work units per period; deviation from the best uninterrupted rate; load: {}",
        r.cpu,
        if r.load.is_empty() { "none".to_string() } else { r.load.join(", ") }
    );
    let _ = writeln!(
        s,
        "{:<10} {:>9} {:>8} {:>11} {:>9} {:>9} {:>9} {:>8}",
        "scenario", "period", "periods", "throughput", "avg dev", "p99 dev", "max dev", "steal"
    );
    for x in &r.summaries {
        let _ = writeln!(
            s,
            "{:<10} {:>9} {:>8} {:>10.1}% {:>8.1}% {:>8.1}% {:>8.1}% {:>7.2}%",
            x.scenario,
            fmt_period(x.period_us),
            x.periods,
            x.throughput * 100.0,
            x.avg_dev_pct,
            x.p99_dev_pct,
            x.max_dev_pct,
            x.steal_pct
        );
    }
    let _ = writeln!(
        s,
        "seed 004 (Intel Xeon, 200 ms, Linux beside the RT task): average 5 %, maximum 18 %"
    );
    if let Some(f) = &r.floor {
        let _ = writeln!(
            s,
            "platform floor (noise meter, dedicated core, no load, {:.1} s): {:.2} % stolen, {:.0} interruptions/s, median gap {:.1} µs, max {:.0} µs, /proc/stat steal {:.2} %{}{}",
            f.seconds,
            f.stolen_pct,
            f.interruptions_per_sec,
            f.median_gap_us,
            f.max_gap_us,
            f.steal_pct,
            match (f.tick_cost_us, f.tick_pct) {
                (Some(c), Some(p)) => format!("; timer tick {c:.1} µs each, {p:.2} % of the core"),
                _ => String::new(),
            },
            f.untraced_pct
                .map_or(String::new(), |u| format!("; gaps with no guest event (hypervisor) {u:.2} %")),
        );
    }
    for v in &r.verdicts {
        let _ = writeln!(
            s,
            "target {}: dedicated under load {:.1} % ≤ floor {:.1} % + 1: {}; untuned ÷ dedicated {:.1}× ≥ 2: {} -> {}",
            fmt_period(v.period_us),
            v.dedicated_avg_pct,
            v.floor_avg_pct,
            if v.within_floor_plus_1 { "yes" } else { "no" },
            v.untuned_over_dedicated,
            if v.untuned_over_dedicated >= 2.0 { "yes" } else { "no" },
            if v.met { "met" } else { "NOT met" }
        );
    }
    s
}

/// 1000 → "1 ms", 200000 → "200 ms".
pub fn fmt_period(us: u64) -> String {
    if us % 1000 == 0 {
        format!("{} ms", us / 1000)
    } else {
        format!("{us} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ser(n: &str, c: &[u32]) -> Series {
        Series {
            scenario: n.into(),
            period_us: 1000,
            counts: c.to_vec(),
        }
    }

    #[test]
    fn deviation_is_against_the_best_uninterrupted_rate() {
        let s = vec![
            ser("quiet", &[100, 90, 100, 100]),
            ser("floor", &[100, 99, 100, 100]),
            ser("untuned", &[50, 50, 100, 0]),
            ser("dedicated", &[100, 99, 100, 98]),
        ];
        assert_eq!(reference_rate(&s), 0.1);
        let sums = summarize(&s, &[("untuned".into(), 2.0)]);
        assert!((sums[0].avg_dev_pct - 2.5).abs() < 1e-9);
        assert_eq!(sums[2].max_dev_pct, 100.0);
        assert!((sums[2].throughput - 200.0 / 390.0).abs() < 1e-9);
        assert_eq!(sums[2].steal_pct, 2.0);
        let v = verdicts(&sums, &[1000]);
        assert!(v[0].within_floor_plus_1 && v[0].met, "{v:?}");
        assert!((v[0].untuned_over_dedicated - 50.0 / 0.75).abs() < 1e-9);
        // A dedicated run 2 % worse than the floor misses the target.
        let worse = vec![
            ser("floor", &[100, 100]),
            ser("untuned", &[50, 50]),
            ser("dedicated", &[97, 97]),
        ];
        assert!(!verdicts(&summarize(&worse, &[]), &[1000])[0].met);
        assert_eq!(fmt_period(200_000), "200 ms");
        assert!(steal_jiffies(0).1 > 0);
    }
}
