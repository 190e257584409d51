//! `carve console NAME`: attaches stdin/stdout to a system container's console (its init's
//! pty, held by the plan's supervisor). On a terminal Ctrl-] detaches; with piped stdin, carve
//! detaches once stdin has ended and the console has been quiet for a moment.

use std::time::Duration;

/// Arguments of `carve console`.
#[derive(clap::Args)]
pub struct Args {
    /// The system container partition (`init = true`).
    pub name: String,
}

/// Runs `carve console`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let (dir, _, part) = super::running_partition(&args.name)?;
    let sock = carve_engine::console::socket_path(&dir.partition_dir(&part.name));
    if part.kind != "container" || !sock.exists() {
        anyhow::bail!(
            "{} has no console (consoles are for running system containers, `init = true`)",
            part.name
        );
    }
    carve_engine::console::attach(&sock, Duration::from_millis(1000))
        .map_err(|e| anyhow::anyhow!("console of {}: {e}", part.name))
}
