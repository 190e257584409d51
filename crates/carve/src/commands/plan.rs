//! `carve plan check|schema`.

use super::{Exit, EXIT_ERROR, EXIT_INVALID};
use carve_core::alloc::{allocate, Allocation};
use carve_core::plan::{Plan, Problem};
use carve_core::units::{format_bytes, format_bytes_exact};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// `carve plan` subcommands.
#[derive(clap::Subcommand)]
pub enum PlanCommand {
    /// Validate a plan against this host and print the resolved allocation.
    Check {
        /// The plan file (TOML).
        plan: PathBuf,
        /// Print the allocation as JSON.
        #[arg(long)]
        json: bool,
        /// Check against the host model in this JSON file instead of this machine (for tests).
        #[arg(long, hide = true, value_name = "FILE")]
        host_fixture: Option<PathBuf>,
    },
    /// Print the JSON Schema of the plan format.
    Schema,
}

/// Runs `carve plan ...`.
pub fn run(cmd: PlanCommand) -> anyhow::Result<()> {
    match cmd {
        PlanCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&Plan::json_schema())?);
            Ok(())
        }
        PlanCommand::Check {
            plan,
            json,
            host_fixture,
        } => check(&plan, json, host_fixture.as_deref()),
    }
}

fn check(path: &Path, json: bool, fixture: Option<&Path>) -> anyhow::Result<()> {
    // An unreadable plan or fixture is a bad argument (exit 2), not a plan that does not fit.
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("carve: cannot read plan {}: {e}", path.display());
            return Err(Exit(EXIT_INVALID).into());
        }
    };
    let host = match super::host::load_host(fixture) {
        Ok(h) => h,
        Err(e) if fixture.is_some() => {
            eprintln!("carve: {}", super::report(&e));
            return Err(Exit(EXIT_INVALID).into());
        }
        Err(e) => return Err(e),
    };
    let plan = match Plan::parse(&text) {
        Ok(p) => p,
        Err(problems) => return report(path, &problems),
    };
    match allocate(&plan, &host) {
        Ok(alloc) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&alloc)?);
            } else {
                print!("{}", table(path, &alloc));
            }
            Ok(())
        }
        Err(problems) => report(path, &problems),
    }
}

/// Prints every problem as `FILE:LINE:COL: ...` and ends with exit code 1.
fn report(path: &Path, problems: &[Problem]) -> anyhow::Result<()> {
    for p in problems {
        eprintln!("{}:{p}", path.display());
    }
    eprintln!(
        "{}: {} problem(s); nothing was changed",
        path.display(),
        problems.len()
    );
    Err(Exit(EXIT_ERROR).into())
}

/// The resolved allocation: core → partition table, memory, huge pages, networks, warnings.
pub fn table(path: &Path, a: &Allocation) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: OK, {} partition(s)\n",
        path.display(),
        a.partitions.len()
    );
    let _ = writeln!(o, "  {:<5} {:<5} {:<5} use", "cpu", "core", "node");
    for r in &a.cpus {
        let mut uses: Vec<String> = Vec::new();
        if r.housekeeping {
            uses.push("housekeeping".into());
        }
        for name in &r.partitions {
            let kind = a
                .partitions
                .iter()
                .find(|p| &p.name == name)
                .map_or("?", |p| p.kind.as_str());
            uses.push(format!("{name} ({kind})"));
        }
        if let Some(d) = &r.sibling_of {
            uses.push(format!("idle: SMT sibling of {d}"));
        }
        if uses.is_empty() {
            uses.push("free".into());
        }
        let dash = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            o,
            "  {:<5} {:<5} {:<5} {}",
            r.cpu,
            dash(r.core),
            dash(r.node),
            uses.join(", ")
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  {:<12} {:<10} {:<10} {:<10} {:<16} {:<10} network",
        "partition", "kind", "cpus", "memory", "huge pages", "sched"
    );
    for p in &a.partitions {
        let cpus = format!("{}{}", p.cpus, if p.auto_placed { " (auto)" } else { "" });
        let pages = p.hugepages.map_or("-".to_string(), |(size, n)| {
            format!("{n} x {}", format_bytes_exact(size))
        });
        let net = p.network.as_ref().map_or("-".to_string(), |n| {
            format!("{}/{} on {}", n.address, n.prefix, n.bridge)
        });
        let _ = writeln!(
            o,
            "  {:<12} {:<10} {:<10} {:<10} {:<16} {:<10} {net}",
            p.name,
            p.kind.as_str(),
            cpus,
            format_bytes(p.memory),
            pages,
            p.sched
        );
    }
    let _ = writeln!(
        o,
        "\n  memory: {} planned of {} ({} kept for the host)",
        format_bytes(a.memory.planned),
        format_bytes(a.memory.total),
        format_bytes(a.memory.reserve)
    );
    for h in &a.hugepages {
        let _ = writeln!(
            o,
            "  huge pages {}: {} needed, {} free, {} to reserve",
            format_bytes_exact(h.size),
            h.needed,
            h.free,
            h.to_reserve
        );
    }
    for n in &a.networks {
        let _ = writeln!(
            o,
            "  network {}: {}/{} via {}{}",
            n.name,
            n.subnet,
            n.prefix,
            n.gateway,
            n.namespace
                .as_ref()
                .map_or(String::new(), |ns| format!(" in netns {ns}"))
        );
    }
    if !a.warnings.is_empty() {
        let _ = writeln!(o, "\nwarnings:");
        for w in &a.warnings {
            let _ = writeln!(o, "  {}:{w}", path.display());
        }
    }
    o
}
