//! `carve start NAME`: starts a partition stopped by `carve stop`.

use carve_engine::state::Desired;

/// Arguments of `carve start`.
#[derive(clap::Args)]
pub struct Args {
    /// The partition.
    pub name: String,
}

/// Runs `carve start`.
pub fn run(args: Args) -> anyhow::Result<()> {
    super::stop::act(&args.name, "start", Desired::Running)?;
    println!("{} started", args.name);
    Ok(())
}
