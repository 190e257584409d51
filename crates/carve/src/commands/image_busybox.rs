//! `carve image busybox DIR`: a container rootfs from Debian's busybox-static.

use std::path::PathBuf;

/// Arguments of `carve image busybox`.
#[derive(clap::Args)]
pub struct Args {
    /// The rootfs folder to create (must be new or empty).
    pub dir: PathBuf,
    /// The static busybox binary to copy in.
    #[arg(long, default_value = carve_engine::image::DEFAULT_BUSYBOX)]
    pub busybox: PathBuf,
}

/// Runs `carve image busybox`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let img = carve_engine::image::busybox_rootfs(&args.dir, &args.busybox)?;
    println!(
        "busybox rootfs in {} ({} applets, /sbin/init is busybox init)",
        img.dir.display(),
        img.applets
    );
    Ok(())
}
