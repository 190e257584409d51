//! `carve bench interference`: seed 004's real-time experiment under load (logic in carve-bench).

use std::path::PathBuf;

/// Arguments of `carve bench interference`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: super::bench_seeds::Common,
    /// Periods in µs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,200000")]
    pub periods_us: Vec<u64>,
    /// Run without the load plan (untuned and dedicated then see only the host's own load).
    #[arg(long)]
    pub no_load: bool,
    /// Working folder: the built probe, the load plan and its rootfs.
    #[arg(long, default_value = super::bench_seeds::DEFAULT_WORK)]
    pub work: PathBuf,
}

/// Runs `carve bench interference`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let c = a.common;
    let (tools, probe) = super::bench_seeds::setup(&a.work)?;
    let opts = carve_bench::interference::Options {
        quick: c.quick,
        cpu: c.cpu,
        periods_us: a.periods_us,
        load: !a.no_load,
        dedicated: !c.no_dedicated,
    };
    let r = carve_bench::interference::run(&tools, &probe, &a.work, &opts)?;
    super::bench_seeds::print(c.json, &r, carve_bench::interference::render)
}
