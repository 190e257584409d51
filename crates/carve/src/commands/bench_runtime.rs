//! `carve bench runtime`: carve-oci side by side with runc and youki (when installed) on one
//! busybox bundle, interleaved run by run; `--churn N` checks N cycles for leaks. The
//! measurement is [`carve_bench::runtime`]; this file parses and prints.

use anyhow::{bail, Result};
use carve_bench::runtime::{self, Check, Churn, Comparison, Event, METRICS};
use carve_bench::stats::median;
use std::path::PathBuf;

/// Arguments of `carve bench runtime`.
#[derive(clap::Args)]
pub struct Args {
    /// Measurements of each kind per runtime.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// The carve-oci binary (default: next to this carve binary, else on PATH).
    #[arg(long = "carve-oci")]
    pub carve_oci: Option<PathBuf>,
    /// The runc binary (default: on PATH).
    #[arg(long)]
    pub runc: Option<PathBuf>,
    /// The youki binary (default: on PATH or in ~/.cargo/bin; skipped when absent — see
    /// scripts/bench-setup.sh).
    #[arg(long)]
    pub youki: Option<PathBuf>,
    /// Instead of the comparison: N create/start/delete cycles of carve-oci, checking for leaks.
    #[arg(long)]
    pub churn: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `carve bench runtime`.
pub fn run(args: Args) -> Result<()> {
    let carve = runtime::find_carve_oci(args.carve_oci.clone(), &std::env::current_exe()?)?;
    let json = args.json;
    let mut on = |e: Event| match e {
        Event::Note(m) => eprintln!("carve bench runtime: {m}"),
        Event::Retry(m) => eprintln!("carve bench runtime: {m} (retrying the round)"),
        Event::Rounds(n) if !json => eprintln!("  {n}/{} runs", args.runs),
        Event::Rounds(_) => {}
    };
    if let Some(n) = args.churn {
        let c = runtime::churn(carve, n, &mut on)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&c.to_json())?);
        } else {
            print_churn(&c);
        }
        // Memory is reported, not judged here: other work on a shared host moves it too.
        if !c.clean() {
            bail!("churn leaked: {:?} (fds flat: {})", c.leaks, c.fds_flat);
        }
        return Ok(());
    }
    let rts = runtime::runtimes(carve, args.runc.clone(), args.youki.clone(), &mut on);
    if !json {
        println!(
            "carve bench runtime: {} runs each, interleaved; busybox bundle, default spec; {}",
            args.runs,
            rts.iter()
                .map(|(name, bin)| format!("{name} = {}", bin.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let c = runtime::compare(&rts, args.runs, &mut on)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c.to_json())?);
    } else {
        print_table(&c);
        print_targets(&c);
    }
    Ok(())
}

/// Milliseconds per metric and runtime, ratios to the peers, peak RSS and failed rounds.
fn print_table(c: &Comparison) {
    let pct = runtime::pct;
    let peers: Vec<&str> = ["runc", "youki"].into_iter().filter(|p| c.has(p)).collect();
    println!("\nmilliseconds: median [p10 .. p90]");
    print!("{:<10}", "");
    for r in &c.runtimes {
        print!("{:>26}", r.name);
    }
    for peer in &peers {
        print!("{:>12}", format!("/ {peer}"));
    }
    println!();
    for (i, metric) in METRICS.iter().enumerate() {
        print!("{metric:<10}");
        for r in &c.runtimes {
            let v = &r.times[i];
            print!(
                "{:>26}",
                format!(
                    "{:.2} [{:.2} .. {:.2}]",
                    median(v) * 1e3,
                    pct(v, 10.0) * 1e3,
                    pct(v, 90.0) * 1e3
                )
            );
        }
        for peer in ["runc", "youki"] {
            if let Some(x) = c.ratio(metric, peer) {
                print!("{:>12}", format!("{x:.3}x"));
            }
        }
        println!();
    }
    print!("{:<10}", "rss KiB");
    for r in &c.runtimes {
        let rss: Vec<f64> = r.rss.iter().map(|&k| k as f64).collect();
        print!(
            "{:>26}",
            format!(
                "{:.0} [max {}]",
                median(&rss),
                r.rss.iter().max().copied().unwrap_or(0)
            )
        );
    }
    println!("\n(cycle = create + start + delete --force of a running sleep; run_true = run /bin/true + delete;\n create/start/state/kill/delete = each phase alone; rss = peak RSS of each CLI call, median [max])");
    for r in c.runtimes.iter().filter(|r| !r.failures.is_empty()) {
        println!(
            "{}: {} failed round(s), retried: {:?}",
            r.name,
            r.failures.len(),
            r.failures
        );
    }
}

/// The targets of issue 4, met or by how much not.
fn print_targets(c: &Comparison) {
    println!("\ntargets:");
    for check in c.checks() {
        let met = check.met();
        match check {
            Check::PeakRss { value } => println!(
                "  carve-oci peak RSS of any call {value} KiB <= {} KiB: {}",
                runtime::TARGET_RSS_KIB,
                if met { "met" } else { "NOT met" }
            ),
            Check::Ratio {
                metric,
                vs,
                ratio,
                target,
            } => println!(
                "  {metric} vs {vs}: {ratio:.3}x (target <= {target}x): {}",
                if met {
                    "met".to_string()
                } else {
                    format!("NOT met, {:.2}x over", ratio / target)
                }
            ),
        }
    }
}

fn print_churn(c: &Churn) {
    println!(
        "carve bench runtime --churn {n}: {n} create/start/delete --force cycles in {:.1} s \
         (median {:.2} ms)",
        c.total.as_secs_f64(),
        c.median_ms(),
        n = c.cycles,
    );
    println!(
        "{:>7} {:>6} {:>7} {:>6} {:>6} {:>8} {:>7} {:>14} {:>12}",
        "cycle",
        "state",
        "cgroups",
        "mounts",
        "procs",
        "ctr-fds",
        "own-fds",
        "MemAvail KiB",
        "SUnreclaim"
    );
    for s in &c.samples {
        println!(
            "{:>7} {:>6} {:>7} {:>6} {:>6} {:>8} {:>7} {:>14} {:>12}",
            s.cycle,
            s.state_dirs,
            s.cgroups,
            s.mounts,
            s.processes,
            s.container_fds,
            s.own_fds,
            s.mem_available_kib,
            s.slab_unreclaimable_kib
        );
    }
    println!(
        "leftover state/cgroups/mounts/processes: {}; fds flat: {}; from cycle {} to {}: \
         MemAvailable {:+} KiB, SUnreclaim {:+} KiB ({})",
        if c.leaks.is_empty() { "none" } else { "FOUND" },
        if c.fds_flat { "yes" } else { "NO" },
        c.base.cycle,
        c.last.cycle,
        c.mem_delta,
        c.slab_delta,
        if c.slab_flat {
            "flat"
        } else {
            "GREW more than 1 KiB/cycle"
        }
    );
}
