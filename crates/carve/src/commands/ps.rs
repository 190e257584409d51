//! `carve ps [--json]`: one row per partition of every plan.

use carve_engine::ops;
use std::time::Duration;

/// Arguments of `carve ps`.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn mib(b: Option<u64>) -> String {
    b.map(|b| format!("{}M", b >> 20))
        .unwrap_or_else(|| "-".into())
}

/// Runs `carve ps`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rows = ops::ps(
        std::path::Path::new(carve_engine::state::DEFAULT_ROOT),
        Duration::from_millis(250),
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<14} {:<14} {:<10} {:<6} {:<11} {:>8} {:>6} {:>15} {:>7} {:>8}",
        "PLAN", "NAME", "KIND", "CPUS", "STATE", "PID", "CPU%", "MEM", "STOLEN%", "RESTARTS"
    );
    for r in rows {
        println!(
            "{:<14} {:<14} {:<10} {:<6} {:<11} {:>8} {:>6} {:>15} {:>7} {:>8}",
            r.plan,
            r.name,
            r.kind,
            r.cpus,
            r.state,
            r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            r.cpu_percent
                .map(|c| format!("{c:.1}"))
                .unwrap_or_else(|| "-".into()),
            format!("{}/{}", mib(r.memory_used), mib(r.memory_limit)),
            r.stolen_percent
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.restarts,
        );
    }
    Ok(())
}
