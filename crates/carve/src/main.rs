//! `carve`: carves one multicore Linux host into dedicated cores, containers and VMs from one plan.
//!
//! This binary only parses arguments and prints; every subcommand is a small module in
//! `commands/` over the library crates.

mod commands;
mod logging;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "carve",
    version,
    about = "Carve one Linux host into dedicated cores, containers and VMs"
)]
struct Cli {
    /// Print debug logs (CARVE_LOG=FILTER chooses them finer, e.g. CARVE_LOG=carve_observe=debug).
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
    /// Talk to a node's CRI runtime (containerd) like the kubelet: one call, JSON out.
    Cri(commands::cri::Args),
    /// Build root filesystems and guest assets.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Apply a plan: networks, dedicated cores, containers, VMs; -d detaches a supervisor.
    Up(commands::up::Args),
    /// Take a plan down and restore the host.
    Down(commands::down::Args),
    /// One row per partition of every plan: kind, cores, state, pid, CPU %, memory.
    Ps(commands::ps::Args),
    /// A partition's output.
    Logs(commands::logs::Args),
    /// Run a command inside a container partition.
    Exec(commands::exec::Args),
    /// Attach to a system container's console (Ctrl-] detaches).
    Console(commands::console::Args),
    /// Stop a partition and keep it stopped.
    Stop(commands::stop::Args),
    /// Start a partition stopped by `carve stop`.
    Start(commands::start::Args),
    /// Live view of the running plans: cores, partitions, stolen %, keys to stop/start/logs.
    Top(commands::top::Args),
    /// The detached holder of a plan (started by `carve up -d`).
    #[command(hide = true)]
    Supervise(commands::supervise::Args),
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
    match &cli.command {
        // The supervisor logs JSON into its plan's state folder once it exists.
        Command::Supervise(_) => {}
        _ => logging::init_stderr(cli.debug),
    }
    let result = match cli.command {
        Command::Host(a) => commands::host::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Plan(a) => commands::plan::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Noise(a) => commands::noise::run(a),
        Command::Restore(a) => commands::restore::run(a),
        Command::Cri(a) => commands::cri::run(a),
        Command::Image(ImageCommand::Busybox(a)) => commands::image_busybox::run(a),
        Command::Image(ImageCommand::Debian(a)) => commands::image_debian::run(a),
        Command::Up(a) => commands::up::run(a),
        Command::Down(a) => commands::down::run(a),
        Command::Ps(a) => commands::ps::run(a),
        Command::Logs(a) => commands::logs::run(a),
        Command::Exec(a) => commands::exec::run(a),
        Command::Console(a) => commands::console::run(a),
        Command::Stop(a) => commands::stop::run(a),
        Command::Start(a) => commands::start::run(a),
        Command::Supervise(a) => commands::supervise::run(a, cli.debug),
        Command::Top(a) => commands::top::run(a),
        Command::Image(ImageCommand::Guest(a)) => commands::image_guest::run(a),
        Command::Vm(a) => commands::vm::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<commands::Exit>() {
            // The command already printed what went wrong.
            Some(commands::Exit(code)) => ExitCode::from(*code),
            None => {
                eprintln!("carve: {}", commands::report(&e));
                ExitCode::from(commands::EXIT_ERROR)
            }
        },
    }
}
