//! `carve start NAME`: starts a partition stopped by `carve stop`.

use carve_engine::ops;
use carve_engine::state::{Desired, DEFAULT_ROOT};
use std::time::Duration;

/// Arguments of `carve start`.
#[derive(clap::Args)]
pub struct Args {
    /// The partition.
    pub name: String,
}

/// Runs `carve start`.
pub fn run(args: Args) -> anyhow::Result<()> {
    ops::set_partition(
        std::path::Path::new(DEFAULT_ROOT),
        &args.name,
        Desired::Running,
        Duration::from_secs(30),
    )?;
    println!("{} started", args.name);
    Ok(())
}
