//! `carve image guest DIR`: the VM tier's guest assets (cloud kernel, busybox initramfs, qcow2
//! disk) from Debian packages.

use std::path::PathBuf;

/// Arguments of `carve image guest`.
#[derive(clap::Args)]
pub struct Args {
    /// The folder to prepare (created if needed; reused when it already holds current assets).
    pub dir: PathBuf,
}

/// Runs `carve image guest`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let g = carve_engine::single_vm::prepare_guest(&args.dir)?;
    println!(
        "guest assets in {}: kernel {} ({} {}), initrd {} ({} modules), disk {}",
        args.dir.display(),
        g.kernel.display(),
        g.package,
        g.version,
        g.initrd.display(),
        g.modules.len(),
        g.disk.display()
    );
    Ok(())
}
