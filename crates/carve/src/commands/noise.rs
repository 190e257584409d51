//! `carve noise`: the OS-noise meter (a calibrated TSC-gap probe per core), untuned, dedicated,
//! or both in one run (`--compare`), as text, JSON or an SVG plot.

use anyhow::Context;
use carve_core::CpuSet;
use carve_dedicated::noise::{self, Attribution, ProbeOptions, Ratio, RunStats, Tracer};
use carve_dedicated::supervise::TermSignals;
use carve_dedicated::{DedicatedSpec, Partition, SchedPolicy};
use carve_journal::Journal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `carve noise`.
#[derive(clap::Args)]
pub struct Args {
    /// The cores to probe (a CPU list).
    #[arg(long, default_value = "1")]
    pub cpus: String,
    /// Seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Measure untuned, then dedicated (FIFO, RT throttling off, IRQs/workqueues/tasks moved),
    /// and print the ratio. The host is restored afterwards.
    #[arg(long, conflicts_with = "dedicated")]
    pub compare: bool,
    /// Measure only dedicated.
    #[arg(long)]
    pub dedicated: bool,
    /// SCHED_FIFO priority of the probe in the dedicated run.
    #[arg(long, default_value_t = 99)]
    pub fifo: u8,
    /// The probe's policy in the untuned run (e.g. fifo:99 shows the RT throttling trap; nothing
    /// else is changed).
    #[arg(long, default_value = "other")]
    pub untuned_sched: String,
    /// Gaps longer than this count as interruptions (µs).
    #[arg(long, default_value_t = 1.0)]
    pub threshold_us: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG plot here.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Skip tracepoint attribution.
    #[arg(long)]
    pub no_trace: bool,
    /// Measure under load: the plan of `carve bench interference` (a stress container, a UDP
    /// flood over a bridge in the plan's own netns, a looping VM when guest assets exist),
    /// brought up by carve on every core for the untuned run and off the probed cores for the
    /// dedicated one, and taken down after each.
    #[arg(long)]
    pub load: bool,
    /// Working folder of --load (the probe, the plan and its rootfs).
    #[arg(long, default_value = super::bench_seeds::DEFAULT_WORK)]
    pub load_work: PathBuf,
}

/// Brings the load plan up for one run when --load asks for it.
fn start_load(
    a: &Args,
    cpus: &CpuSet,
    placement: carve_bench::load::Placement,
) -> anyhow::Result<Option<carve_bench::load::Load>> {
    if !a.load {
        return Ok(None);
    }
    let (tools, probe) = super::bench_seeds::setup(&a.load_work)?;
    let cores: Vec<usize> = cpus.iter().collect();
    let l = carve_bench::load::Load::start(&tools, &probe, &a.load_work, &cores, placement)?;
    // Let the VM start booting and the flood reach its rate before measuring.
    std::thread::sleep(Duration::from_secs(2));
    Ok(Some(l))
}

#[derive(Serialize, Default)]
struct CoreReport {
    cpu: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    untuned: Option<RunStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedicated: Option<RunStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio: Option<Ratio>,
}

#[derive(Serialize)]
struct Report {
    cpus: String,
    seconds: f64,
    threshold_us: f64,
    tsc_invariant: bool,
    cores: Vec<CoreReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dedicated_setup: Option<carve_dedicated::SetupReport>,
}

fn measure(
    cpus: &CpuSet,
    opts: &ProbeOptions,
    tracer: Option<&Tracer>,
    join: &(dyn Fn(i32, usize) -> Result<(), noise::JoinError> + Sync),
) -> anyhow::Result<Vec<RunStats>> {
    let started = std::cell::Cell::new(None);
    let raw = noise::probe(cpus, opts, join, &|| {
        if let Some(t) = tracer {
            started.set(Some(t.start()));
        }
    })?;
    if let Some(Err(e)) = started.take() {
        return Err(e.into());
    }
    let mut out: Vec<RunStats> = raw.iter().map(|r| noise::stats(r, &opts.sched)).collect();
    if let Some(t) = tracer {
        let tids: Vec<i32> = raw.iter().map(|r| r.tid).collect();
        let captures = t.stop(&tids)?;
        for (s, r) in out.iter_mut().zip(&raw) {
            s.attribution = captures.get(&s.cpu).map(|c| c.attribution(r));
        }
    }
    Ok(out)
}

/// Writes the SVG plot when --svg asks for it.
fn write_svg(a: &Args, report: &Report) -> anyhow::Result<()> {
    let Some(svg) = &a.svg else {
        return Ok(());
    };
    let mut runs: Vec<(String, &RunStats)> = Vec::new();
    for c in &report.cores {
        if let Some(u) = &c.untuned {
            runs.push((format!("core {} untuned ({})", c.cpu, u.sched), u));
        }
        if let Some(d) = &c.dedicated {
            runs.push((format!("core {} dedicated ({})", c.cpu, d.sched), d));
        }
    }
    let labelled: Vec<(&str, &RunStats)> = runs.iter().map(|(l, s)| (l.as_str(), *s)).collect();
    let title = format!(
        "carve noise: TSC-gap probe, {} s per run, gaps > {} µs",
        a.seconds, a.threshold_us
    );
    std::fs::write(svg, noise::svg::render(&title, &labelled))
        .with_context(|| format!("write {}", svg.display()))?;
    Ok(())
}

/// The probe's policy in the untuned run (--untuned-sched).
fn untuned_sched(a: &Args) -> anyhow::Result<SchedPolicy> {
    match a.untuned_sched.parse() {
        Ok(p) => Ok(p),
        Err(e) => {
            eprintln!("carve noise: --untuned-sched: {e}");
            Err(super::Exit(super::EXIT_INVALID).into())
        }
    }
}

/// Runs `carve noise`: checks the arguments, opens the tracer, measures untuned and/or
/// dedicated, restores the host, prints.
pub fn run(a: Args) -> anyhow::Result<()> {
    // Before any thread: SIGINT/SIGTERM then wait for the current run to end and the host to be
    // restored instead of killing carve half way.
    let signals = TermSignals::block(Duration::from_secs(5));
    let cpus = CpuSet::parse_list(&a.cpus)?;
    let online = carve_dedicated::sys::online_cpus("/sys".as_ref())
        .context("cannot read the online CPUs")?;
    check_args(&a, &cpus, &online)?;
    let base = ProbeOptions {
        duration: Duration::from_secs_f64(a.seconds),
        threshold: Duration::from_secs_f64(a.threshold_us / 1e6),
        sched: untuned_sched(&a)?,
    };
    let paths = carve_dedicated::HostPaths::default();
    // The tracer's own changes (a tracefs mount if none, its instance) have their own journal.
    let mut tj = None;
    let mut tracer = None;
    if !a.no_trace {
        let mut j = Journal::create(
            paths.journal_root(),
            &format!("noise-{}", std::process::id()),
        )?;
        match Tracer::open(&mut j, &paths.run, &paths.proc, &cpus) {
            Ok(t) => tracer = Some(t),
            Err(e) => eprintln!("carve noise: no attribution: {e}"),
        }
        tj = Some(j);
    }
    let result = (|| -> anyhow::Result<Report> {
        let mut cores: BTreeMap<usize, CoreReport> = cpus
            .iter()
            .map(|cpu| {
                let c = CoreReport {
                    cpu,
                    ..Default::default()
                };
                (cpu, c)
            })
            .collect();
        let mut setup = None;
        if !a.dedicated {
            for s in untuned_run(&a, &cpus, &base, tracer.as_ref())? {
                let cpu = s.cpu;
                cores.get_mut(&cpu).expect("probed core").untuned = Some(s);
            }
        }
        if (a.dedicated || a.compare) && signals.received().is_none() {
            let (measured, report) = dedicated_run(&a, &cpus, &online, &base, tracer.as_ref())?;
            setup = Some(report);
            for s in measured {
                let cpu = s.cpu;
                cores.get_mut(&cpu).expect("probed core").dedicated = Some(s);
            }
        }
        for c in cores.values_mut() {
            if let (Some(u), Some(d)) = (&c.untuned, &c.dedicated) {
                c.ratio = Some(Ratio::of(u, d));
            }
        }
        Ok(Report {
            cpus: cpus.to_string(),
            seconds: a.seconds,
            threshold_us: a.threshold_us,
            tsc_invariant: noise::tsc_is_invariant(&paths.proc),
            cores: cores.into_values().collect(),
            dedicated_setup: setup,
        })
    })();
    drop(tracer);
    if let Some(j) = tj {
        j.undo().context("removing the tracefs instance")?;
    }
    let report = result?;
    write_svg(&a, &report)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    if let Some(sig) = signals.received() {
        return Err(super::Exit(128u8.wrapping_add(sig as u8)).into());
    }
    Ok(())
}

/// Rejects bad values before anything runs (exit code "invalid").
fn check_args(a: &Args, cpus: &CpuSet, online: &CpuSet) -> anyhow::Result<()> {
    let why = if cpus.is_empty() || !cpus.is_subset(online) {
        format!("--cpus {cpus} must be online CPUs (online: {online})")
    } else if !(a.seconds > 0.0 && a.seconds <= 3600.0 && (1..=99).contains(&a.fifo)) {
        "--seconds must be in (0, 3600] and --fifo in 1..=99".into()
    } else if a.load && !(a.dedicated || a.compare) {
        "--load needs --compare or --dedicated".into()
    } else if (a.dedicated || a.compare) && online.difference(cpus).is_empty() {
        format!("dedicating CPUs {cpus} would leave no housekeeping core (online: {online})")
    } else {
        return Ok(());
    };
    eprintln!("carve noise: {why}");
    Err(super::Exit(super::EXIT_INVALID).into())
}

/// The untuned run: the probe pinned to each core, nothing else changed (the load, if asked,
/// on every core).
fn untuned_run(
    a: &Args,
    cpus: &CpuSet,
    opts: &ProbeOptions,
    tracer: Option<&Tracer>,
) -> anyhow::Result<Vec<RunStats>> {
    let pin = |tid: i32, cpu: usize| -> Result<(), noise::JoinError> {
        Ok(carve_dedicated::sys::set_affinity(
            tid,
            &[cpu].into_iter().collect(),
        )?)
    };
    let load = start_load(a, cpus, carve_bench::load::Placement::Untuned)?;
    let measured = measure(cpus, opts, tracer, &pin);
    if let Some(l) = load {
        l.stop()?;
    }
    measured
}

/// The dedicated run: a partition on `cpus` (FIFO, RT throttling off, IRQs/workqueues/tasks
/// moved; the load, if asked, on the housekeeping cores), the probe joined to it, then the
/// host restored. Returns the stats and what setup did.
fn dedicated_run(
    a: &Args,
    cpus: &CpuSet,
    online: &CpuSet,
    base: &ProbeOptions,
    tracer: Option<&Tracer>,
) -> anyhow::Result<(Vec<RunStats>, carve_dedicated::SetupReport)> {
    let mut spec = DedicatedSpec::new(
        &format!("noise-{}", std::process::id()),
        cpus.clone(),
        online,
    );
    spec.sched = SchedPolicy::Fifo(a.fifo);
    spec.mlock = false;
    spec.thp_disable = false;
    let load = start_load(a, cpus, carve_bench::load::Placement::Housekeeping)?;
    let active = match Partition::new(spec).setup() {
        Ok(p) => p,
        Err(e @ carve_dedicated::Error::Refused(_)) => {
            eprintln!("carve noise: {e}");
            return Err(super::Exit(super::EXIT_INVALID).into());
        }
        Err(e) => return Err(e.into()),
    };
    let opts = ProbeOptions {
        sched: SchedPolicy::Fifo(a.fifo),
        ..base.clone()
    };
    let join = |tid: i32, cpu: usize| -> Result<(), noise::JoinError> {
        Ok(active.join_thread(tid, cpu)?)
    };
    let measured = measure(cpus, &opts, tracer, &join);
    let setup = active.report().clone();
    let torn = active.teardown();
    if let Some(l) = load {
        l.stop()?;
    }
    let measured = measured?;
    for w in torn
        .context("restoring the host after the dedicated run")?
        .warnings
    {
        eprintln!("carve noise: warning: {w}");
    }
    Ok((measured, setup))
}

fn print_attr(label: &str, a: &Attribution, seconds: f64) {
    let mut v: Vec<(&String, &u64)> = a.events.iter().collect();
    v.sort_by(|x, y| y.1.cmp(x.1));
    let top: Vec<String> = v
        .iter()
        .take(8)
        .map(|(k, n)| format!("{k} {:.1}/s", **n as f64 / seconds))
        .collect();
    if let Some(g) = &a.gaps {
        let mut v: Vec<(&String, &noise::GapSource)> = g.by_first_event.iter().collect();
        v.sort_by(|x, y| y.1.stolen_us.total_cmp(&x.1.stolen_us));
        let mut parts: Vec<String> = v
            .iter()
            .take(6)
            .map(|(k, s)| {
                format!(
                    "{k} {:.3} % ({} gaps, max {:.1} µs)",
                    s.stolen_us / seconds / 1e4,
                    s.gaps,
                    s.max_us
                )
            })
            .collect();
        if g.untraced.gaps > 0 {
            parts.push(format!(
                "no guest event (hypervisor) {:.3} % ({} gaps, max {:.1} µs)",
                g.untraced.stolen_us / seconds / 1e4,
                g.untraced.gaps,
                g.untraced.max_us
            ));
        }
        println!("  {label:<10} stolen by: {}", parts.join(", "));
        for l in g.longest.iter().take(3) {
            println!(
                "  {label:<10} gap {:.1} µs at {:.3} s: {}",
                l.gap_us,
                l.at_s,
                if l.events.is_empty() {
                    "no guest event".to_string()
                } else {
                    l.events.join(" ")
                }
            );
        }
    }
    println!(
        "  {label:<10} sources: {}{}",
        if top.is_empty() {
            "none traced".to_string()
        } else {
            top.join(", ")
        },
        if a.lost > 0 {
            format!(" ({} events lost)", a.lost)
        } else {
            String::new()
        }
    );
}

fn print_text(r: &Report) {
    println!(
        "carve noise: {} s per run, gaps > {} µs count as interruptions{}",
        r.seconds,
        r.threshold_us,
        if r.tsc_invariant {
            ""
        } else {
            " (warning: no invariant TSC flags)"
        }
    );
    for c in &r.cores {
        println!(
            "core {}:\n  {:<10} {:>9} {:>12} {:>11} {:>8} {:>8} {:>8} {:>9}",
            c.cpu, "run", "stolen %", "interrupt/s", "max gap µs", "p50", "p90", "p99", "p99.9"
        );
        let row = |label: &str, s: &RunStats| {
            println!(
                "  {label:<10} {:>9.3} {:>12.1} {:>11.1} {:>8.2} {:>8.2} {:>8.2} {:>9.2}   ({}, TSC {:.3} GHz)",
                s.stolen_percent,
                s.interruptions_per_sec,
                s.max_gap_us,
                s.percentiles.p50,
                s.percentiles.p90,
                s.percentiles.p99,
                s.percentiles.p99_9,
                s.sched,
                s.tsc_hz / 1e9
            );
        };
        for (l, s) in [("untuned", &c.untuned), ("dedicated", &c.dedicated)] {
            if let Some(s) = s {
                row(l, s);
            }
        }
        if let Some(x) = &c.ratio {
            println!(
                "  {:<10} {:>9.3} {:>12.3} {:>11.3}   (dedicated / untuned)",
                "ratio", x.stolen_percent, x.interruptions_per_sec, x.max_gap_us
            );
        }
        for (l, s) in [("untuned", &c.untuned), ("dedicated", &c.dedicated)] {
            if let Some(s) = s {
                let h: Vec<String> = s
                    .histogram
                    .iter()
                    .filter(|b| b.count > 0)
                    .map(|b| format!("[{}-{}) {}", b.lo_us, b.hi_us, b.count))
                    .collect();
                println!("  {l:<10} histogram µs: {}", h.join(", "));
                if let Some(a) = &s.attribution {
                    print_attr(l, a, s.seconds);
                }
            }
        }
    }
}
