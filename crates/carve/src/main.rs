//! `carve`: carves one multicore Linux host into dedicated cores, containers and VMs from one plan.
//!
//! This binary only parses arguments and prints; every subcommand is a small module in
//! `commands/` over the library crates.

mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "carve",
    version,
    about = "Carve one Linux host into dedicated cores, containers and VMs"
)]
struct Cli {
    /// Print debug logs.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what this host offers a partition planner, with readiness advice.
    Host(commands::host::Args),
    /// Measure what a tier costs (fast path, ...).
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Check a plan or print its schema.
    #[command(subcommand)]
    Plan(commands::plan::PlanCommand),
    /// Run one command on dedicated cores; the host is restored when it exits.
    Run(commands::run::Args),
    /// Measure OS noise on cores (TSC-gap probe), untuned, dedicated or both.
    Noise(commands::noise::Args),
    /// Undo the host changes of carve runs that died without restoring.
    Restore(commands::restore::Args),
    /// Build root filesystems and guest assets.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run and manage QEMU VM partitions (pinned vCPUs, QMP, snapshots, live migration).
    #[command(subcommand)]
    Vm(commands::vm::VmCommand),
}

/// `carve image ...`.
#[derive(Subcommand)]
enum ImageCommand {
    /// A container rootfs from busybox-static (applets, passwd, an inittab for `init = true`).
    Busybox(commands::image_busybox::Args),
    /// A Debian rootfs made by debootstrap --variant=minbase (about 20 s, 200 MB).
    Debian(commands::image_debian::Args),
    /// VM guest assets: Debian's cloud kernel, a busybox initramfs with its virtio modules, a qcow2 disk.
    Guest(commands::image_guest::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Host(a) => commands::host::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Plan(a) => commands::plan::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Noise(a) => commands::noise::run(a),
        Command::Restore(a) => commands::restore::run(a),
        Command::Image(ImageCommand::Busybox(a)) => commands::image_busybox::run(a),
        Command::Image(ImageCommand::Debian(a)) => commands::image_debian::run(a),
        Command::Image(ImageCommand::Guest(a)) => commands::image_guest::run(a),
        Command::Vm(a) => commands::vm::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<commands::Exit>() {
            // The command already printed what went wrong.
            Some(commands::Exit(code)) => ExitCode::from(*code),
            None => {
                eprintln!("carve: {e:#}");
                ExitCode::from(commands::EXIT_ERROR)
            }
        },
    }
}
