//! `carve bench interference`: seed 004's real-time experiment under load (logic in carve-bench).

use std::path::PathBuf;

/// Arguments of `carve bench interference`.
#[derive(clap::Args)]
pub struct Args {
    /// Short runs: seconds, for a first look and the tests.
    #[arg(long)]
    pub quick: bool,
    /// The probed core (default: the last online CPU).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Periods in µs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,200000")]
    pub periods_us: Vec<u64>,
    /// Run without the load plan (untuned and dedicated then see only the host's own load).
    #[arg(long)]
    pub no_load: bool,
    /// Skip the dedicated scenario.
    #[arg(long)]
    pub no_dedicated: bool,
    /// Working folder: the built probe, the load plan and its rootfs.
    #[arg(long, default_value = super::bench_seeds::DEFAULT_WORK)]
    pub work: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `carve bench interference`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let (tools, probe) = super::bench_seeds::setup(&a.work)?;
    let opts = carve_bench::interference::Options {
        quick: a.quick,
        cpu: a.cpu,
        periods_us: a.periods_us,
        load: !a.no_load,
        dedicated: !a.no_dedicated,
    };
    let r = carve_bench::interference::run(&tools, &probe, &a.work, &opts)?;
    super::bench_seeds::print(a.json, &r, carve_bench::interference::render)
}
