//! Shared plumbing of the seed benchmarks (`carve bench overhead|interference|packet|report`).

use std::path::{Path, PathBuf};

/// Default working folder of the seed benchmarks.
pub const DEFAULT_WORK: &str = "/var/tmp/carve-bench";

/// The options every seed benchmark takes (`overhead`, `interference`, `packet`).
#[derive(clap::Args)]
pub struct Common {
    /// Short runs: seconds, for a first look and the tests.
    #[arg(long)]
    pub quick: bool,
    /// The measured core (default: the last online CPU).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Skip the dedicated core (it retunes the host through `carve run --dedicated`).
    #[arg(long)]
    pub no_dedicated: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Finds the tools and builds the probe into `work`.
pub fn setup(work: &Path) -> anyhow::Result<(carve_bench::Tools, PathBuf)> {
    let tools = carve_bench::Tools::find()?;
    let probe = carve_bench::probe::build(work)?;
    Ok((tools, probe))
}

/// Prints a result as JSON or as its text table.
pub fn print<T: serde::Serialize>(
    json: bool,
    v: &T,
    render: fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{}", render(v));
    }
    Ok(())
}
