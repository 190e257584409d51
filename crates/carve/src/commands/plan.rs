//! `carve plan check|schema`.

use std::path::PathBuf;

/// `carve plan` subcommands.
#[derive(clap::Subcommand)]
pub enum PlanCommand {
    /// Validate a plan against this host and print the resolved allocation.
    Check {
        /// The plan file (TOML).
        plan: PathBuf,
    },
    /// Print the JSON Schema of the plan format.
    Schema,
}

/// Runs `carve plan ...`.
pub fn run(_cmd: PlanCommand) -> anyhow::Result<()> {
    anyhow::bail!("carve plan: being built")
}
