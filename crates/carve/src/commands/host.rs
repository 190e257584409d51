//! `carve host`: the host model as a table or JSON.

/// Arguments of `carve host`.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `carve host`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("carve host: being built")
}
