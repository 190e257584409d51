//! `carve stop NAME`: stops a partition (graceful, then forced) and keeps it stopped.

use carve_engine::ops;
use carve_engine::state::{Desired, DEFAULT_ROOT};
use std::path::Path;
use std::time::Duration;

/// Arguments of `carve stop`.
#[derive(clap::Args)]
pub struct Args {
    /// The partition.
    pub name: String,
}

/// Asks the plan's supervisor API (`action`: stop, start) or, when none answers, the holder
/// through the state files.
pub fn act(name: &str, action: &str, want: Desired) -> anyhow::Result<()> {
    let root = Path::new(DEFAULT_ROOT);
    if let Some(c) = carve_observe::client::Client::for_partition(root, name) {
        tracing::debug!(socket = %c.socket.display(), "through the API");
        c.act(name, action)?;
        return Ok(());
    }
    tracing::debug!("no supervisor API: through the state files");
    ops::set_partition(root, name, want, Duration::from_secs(30))?;
    Ok(())
}

/// Runs `carve stop`.
pub fn run(args: Args) -> anyhow::Result<()> {
    act(&args.name, "stop", Desired::Stopped)?;
    println!("{} stopped", args.name);
    Ok(())
}
