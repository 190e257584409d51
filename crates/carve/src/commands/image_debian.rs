//! `carve image debian DIR`: a full Debian userland (debootstrap --variant=minbase) for system
//! containers.

use std::path::PathBuf;

/// Arguments of `carve image debian`.
#[derive(clap::Args)]
pub struct Args {
    /// The rootfs folder to create (must be new or empty).
    pub dir: PathBuf,
    /// The Debian suite.
    #[arg(long, default_value = "bookworm")]
    pub suite: String,
    /// The mirror (default: the one apt is configured with).
    #[arg(long)]
    pub mirror: Option<String>,
}

/// Runs `carve image debian`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mirror = args.mirror.unwrap_or_else(carve_engine::image::apt_mirror);
    eprintln!(
        "debootstrap --variant=minbase {} {} {} (about 20 s, 200 MB)",
        args.suite,
        args.dir.display(),
        mirror
    );
    carve_engine::image::debian_rootfs(&args.dir, &args.suite, &mirror)?;
    println!("debian {} rootfs in {}", args.suite, args.dir.display());
    Ok(())
}
