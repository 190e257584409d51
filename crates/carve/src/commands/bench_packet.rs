//! `carve bench packet`: seed 000's packet arithmetic with this machine's numbers (logic in
//! carve-bench).

use std::path::PathBuf;

/// Arguments of `carve bench packet`.
#[derive(clap::Args)]
pub struct Args {
    /// Fewer packets: seconds, for a first look and the tests.
    #[arg(long)]
    pub quick: bool,
    /// The sealing core (default: the last online CPU).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Packets per loop (default 2 000 000, 200 000 with --quick).
    #[arg(long)]
    pub packets: Option<u64>,
    /// Skip the dedicated core.
    #[arg(long)]
    pub no_dedicated: bool,
    /// Internal: the measuring side under `carve run --dedicated`, creating the ring at PATH.
    #[arg(long, hide = true, value_name = "PATH")]
    pub worker: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `carve bench packet`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let packets = a
        .packets
        .unwrap_or(if a.quick { 200_000 } else { 2_000_000 });
    if let Some(ring) = a.worker {
        // Already on the dedicated core (carve run placed this process): FIFO from the partition.
        let cpu = a.cpu.unwrap_or(0);
        let w = carve_bench::packet::worker(
            &ring,
            packets,
            carve_bench::packet::SchedPolicy::Fifo(99),
            cpu,
        )?;
        println!("{}", serde_json::to_string(&w)?);
        return Ok(());
    }
    let tools = carve_bench::Tools::find()?;
    let p = carve_bench::packet::run(&tools, a.cpu, packets, !a.no_dedicated)?;
    super::bench_seeds::print(a.json, &p, carve_bench::packet::render)
}
