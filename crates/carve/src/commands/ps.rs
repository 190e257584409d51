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

/// The rows of every plan: from its supervisor's API when it answers (its figures are over the
/// supervisor's last one-second interval), else sampled from the state files and cgroups.
pub fn rows() -> Vec<ops::PsRow> {
    let root = std::path::Path::new(carve_engine::state::DEFAULT_ROOT);
    let mut rows = Vec::new();
    let mut served = Vec::new();
    for plan in ops::running_plans(root) {
        let c = carve_observe::client::Client::for_plan(root, &plan);
        match c.partitions() {
            Ok(parts) => {
                rows.extend(parts.into_iter().map(|p| ops::PsRow {
                    plan: plan.clone(),
                    name: p.name,
                    kind: p.kind,
                    cpus: p.cpus,
                    state: p.state,
                    pid: p.pid,
                    cpu_percent: p.cpu_ratio.map(|r| r * 100.0),
                    memory_used: p.memory_bytes,
                    memory_limit: Some(p.memory_limit_bytes),
                    stolen_percent: p.offcpu_ratio.map(|r| r * 100.0),
                    restarts: p.restarts,
                    last_exit: p.last_exit,
                }));
                served.push(plan);
            }
            Err(e) => tracing::debug!(plan, error = %e, "no API: state files"),
        }
    }
    let all = carve_engine::state::list_plans(root);
    if all.iter().any(|(n, _, _)| !served.contains(n)) {
        rows.extend(
            ops::ps(root, Duration::from_millis(250))
                .into_iter()
                .filter(|r| !served.contains(&r.plan)),
        );
    }
    rows.sort_by(|a, b| a.plan.cmp(&b.plan));
    rows
}

/// Runs `carve ps`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rows = rows();
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
