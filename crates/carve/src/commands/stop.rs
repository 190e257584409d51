//! `carve stop NAME`: stops a partition (graceful, then forced) and keeps it stopped.

use carve_engine::ops;
use carve_engine::state::{Desired, DEFAULT_ROOT};
use std::time::Duration;

/// Arguments of `carve stop`.
#[derive(clap::Args)]
pub struct Args {
    /// The partition.
    pub name: String,
}

/// Runs `carve stop`.
pub fn run(args: Args) -> anyhow::Result<()> {
    ops::set_partition(
        std::path::Path::new(DEFAULT_ROOT),
        &args.name,
        Desired::Stopped,
        Duration::from_secs(30),
    )?;
    println!("{} stopped", args.name);
    Ok(())
}
