//! `carve bench report --out DIR`: runs the seed benchmarks, prints their three tables, and
//! writes one self-contained HTML page with SVG plots plus the JSON behind it.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments of `carve bench report`.
#[derive(clap::Args)]
pub struct Args {
    /// The folder for index.html and report.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Run every benchmark with --quick.
    #[arg(long)]
    pub quick: bool,
    /// Use this `carve bench runtime --json` output instead of running it.
    #[arg(long)]
    pub runtime: Option<PathBuf>,
    /// Skip the parts that retune the host (dedicated core) or take minutes (VM, runtimes).
    #[arg(long)]
    pub light: bool,
    /// Working folder of the benchmarks.
    #[arg(long, default_value = super::bench_seeds::DEFAULT_WORK)]
    pub work: PathBuf,
}

fn read<T: serde::de::DeserializeOwned>(p: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
}

/// Runs `carve bench report`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (tools, probe) = super::bench_seeds::setup(&a.work)?;
    let mut d = carve_bench::report::Data {
        meta: serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "unix_time": carve_bench::timestamp(),
            "cpu_model": std::fs::read_to_string("/proc/cpuinfo").ok()
                .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())),
            "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        }),
        ..Default::default()
    };
    let opts = carve_bench::overhead::Options {
        quick: a.quick,
        rounds: if a.quick { 1 } else { 3 },
        dedicated: !a.light,
        vm: !a.light,
        ..Default::default()
    };
    let t = carve_bench::overhead::run(&tools, &probe, &a.work, &opts)?;
    print!("{}", carve_bench::overhead::render(&t));
    d.overhead = Some(t);
    let opts = carve_bench::interference::Options {
        quick: a.quick,
        dedicated: !a.light,
        load: !a.light,
        ..Default::default()
    };
    let r = carve_bench::interference::run(&tools, &probe, &a.work, &opts)?;
    print!("{}", carve_bench::interference::render(&r));
    d.interference = Some(r);
    let packets = if a.quick { 200_000 } else { 2_000_000 };
    let p = carve_bench::packet::run(&tools, None, packets, !a.light)?;
    print!("{}", carve_bench::packet::render(&p));
    d.packet = Some(p);
    d.runtime = match &a.runtime {
        Some(p) => Some(read(p)?),
        None if a.light => None,
        None => {
            let out = Command::new(&tools.carve)
                .args([
                    "bench",
                    "runtime",
                    "--json",
                    "--runs",
                    if a.quick { "3" } else { "20" },
                ])
                .output()
                .context("carve bench runtime")?;
            serde_json::from_slice(&out.stdout).ok()
        }
    };
    carve_bench::report::write(&a.out, &d)?;
    println!("report: {}", a.out.join("index.html").display());
    Ok(())
}
