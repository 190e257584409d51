//! `carve noise`: the OS-noise meter (a calibrated TSC-gap probe per core), untuned, dedicated,
//! or both in one run (`--compare`), as text, JSON or an SVG plot.

use anyhow::Context;
use carve_engine::oneshot::noise::{
    self as meter, Attribution, GapSource, MeterError, Notice, Phase, Report, RunStats,
};
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

/// `--load`: the plan of `carve bench interference`, brought up around each run.
struct BenchLoad<'a> {
    work: &'a std::path::Path,
    running: Option<carve_bench::load::Load>,
}

impl meter::Load for BenchLoad<'_> {
    fn start(&mut self, phase: Phase, cores: &[usize]) -> Result<(), meter::LoadError> {
        let placement = match phase {
            Phase::Untuned => carve_bench::load::Placement::Untuned,
            Phase::Dedicated => carve_bench::load::Placement::Housekeeping,
        };
        let (tools, probe) = super::bench_seeds::setup(self.work)?;
        let l = carve_bench::load::Load::start(&tools, &probe, self.work, cores, placement)?;
        self.running = Some(l);
        // Let the VM start booting and the flood reach its rate before measuring.
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    }

    fn stop(&mut self) -> Result<(), meter::LoadError> {
        if let Some(l) = self.running.take() {
            l.stop()?;
        }
        Ok(())
    }
}

/// Writes the SVG plot when --svg asks for it.
fn write_svg(a: &Args, report: &Report) -> anyhow::Result<()> {
    let Some(svg) = &a.svg else {
        return Ok(());
    };
    std::fs::write(svg, report.svg()).with_context(|| format!("write {}", svg.display()))?;
    Ok(())
}

/// Prints what the meter says while it measures.
fn notice(n: Notice<'_>) {
    match n {
        Notice::NoAttribution(e) => eprintln!("carve noise: no attribution: {e}"),
        Notice::Warning(w) => eprintln!("carve noise: warning: {w}"),
    }
}

/// Runs `carve noise`: the meter checks the arguments, opens the tracer, measures untuned
/// and/or dedicated and restores the host; this prints.
pub fn run(a: Args) -> anyhow::Result<()> {
    let req = meter::NoiseRequest {
        cpus: a.cpus.clone(),
        seconds: a.seconds,
        compare: a.compare,
        dedicated: a.dedicated,
        fifo: a.fifo,
        untuned_sched: a.untuned_sched.clone(),
        threshold_us: a.threshold_us,
        no_trace: a.no_trace,
        load: a.load,
    };
    let mut load = BenchLoad {
        work: &a.load_work,
        running: None,
    };
    let load = a.load.then_some(&mut load as &mut dyn meter::Load);
    let measured = match meter::measure(&req, load, &mut notice) {
        Ok(m) => m,
        Err(MeterError::Invalid(e)) => {
            eprintln!("carve noise: {e}");
            return Err(super::Exit(super::EXIT_INVALID).into());
        }
        Err(MeterError::Refused(e)) => {
            eprintln!("carve noise: {e}");
            return Err(super::Exit(super::EXIT_INVALID).into());
        }
        Err(e) => return Err(e.into()),
    };
    write_svg(&a, &measured.report)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&measured.report)?);
    } else {
        print_text(&measured.report);
    }
    if let Some(sig) = measured.interrupted() {
        return Err(super::Exit(128u8.wrapping_add(sig as u8)).into());
    }
    Ok(())
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
        let mut v: Vec<(&String, &GapSource)> = g.by_first_event.iter().collect();
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
