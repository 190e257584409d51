//! `carve bench ...`: benchmarks that put a number on what each tier costs.

/// `carve bench ...`.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The example fast path (AES-128-GCM over 1 KiB packets) bare vs through the shared-memory
    /// ring fed from another core, in one run.
    Fastpath(super::bench_fastpath::Args),
    /// `carve vm run --wait-for carve-guest-ready` against the same QEMU command line started by
    /// hand until the same marker, interleaved in one run: medians and ratio.
    Vm(super::vm::BenchArgs),
    /// carve-oci side by side with runc and youki on one busybox bundle: lifecycle phases,
    /// run /bin/true, peak RSS, ratios and targets; --churn N checks for leaks.
    Runtime(super::bench_runtime::Args),
    /// Pod start and teardown through containerd's CRI plugin, handler `carve` (carve-oci)
    /// against `runc`, side by side on a private node.
    Cri(super::bench_cri::Args),
    /// Seed 004's lmbench table: one static probe natively, in a container, on a dedicated
    /// core and in a VM; ratios to native.
    Overhead(super::bench_overhead::Args),
    /// Seed 004's real-time experiment: a periodic probe quiet, untuned and dedicated under a
    /// load plan carve brings up; deviation per period, with the platform floor apart.
    Interference(super::bench_interference::Args),
    /// Seed 000's packet arithmetic with this machine's cycles, overhead and share.
    Packet(super::bench_packet::Args),
    /// Run the seed benchmarks and write one HTML page with SVG plots and its JSON.
    Report(super::bench_report::Args),
}

/// Runs a `carve bench` subcommand.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Fastpath(a) => super::bench_fastpath::run(a),
        BenchCommand::Vm(a) => super::vm::bench(a),
        BenchCommand::Runtime(a) => super::bench_runtime::run(a),
        BenchCommand::Cri(a) => super::bench_cri::run(a),
        BenchCommand::Overhead(a) => super::bench_overhead::run(a),
        BenchCommand::Interference(a) => super::bench_interference::run(a),
        BenchCommand::Packet(a) => super::bench_packet::run(a),
        BenchCommand::Report(a) => super::bench_report::run(a),
    }
}
