//! `carve bench packet`: seed 000's packet arithmetic with this machine's numbers (logic in
//! carve-bench).

use std::path::PathBuf;

/// Arguments of `carve bench packet`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: super::bench_seeds::Common,
    /// Packets per loop (default 2 000 000, 200 000 with --quick).
    #[arg(long)]
    pub packets: Option<u64>,
    /// Internal: the measuring side under `carve run --dedicated`, creating the ring at PATH.
    #[arg(long, hide = true, value_name = "PATH")]
    pub worker: Option<PathBuf>,
}

/// Runs `carve bench packet`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let c = a.common;
    let packets = a
        .packets
        .unwrap_or(if c.quick { 200_000 } else { 2_000_000 });
    if let Some(ring) = a.worker {
        // Already on the dedicated core (carve run placed this process): FIFO from the partition.
        let cpu = c.cpu.unwrap_or(0);
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
    let p = carve_bench::packet::run(&tools, c.cpu, packets, !c.no_dedicated)?;
    super::bench_seeds::print(c.json, &p, carve_bench::packet::render)
}
