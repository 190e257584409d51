//! Shared plumbing of the seed benchmarks (`carve bench overhead|interference|packet|report`).

use std::path::{Path, PathBuf};

/// Default working folder of the seed benchmarks.
pub const DEFAULT_WORK: &str = "/var/tmp/carve-bench";

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
