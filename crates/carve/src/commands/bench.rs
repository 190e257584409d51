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
}

/// Runs a `carve bench` subcommand.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Fastpath(a) => super::bench_fastpath::run(a),
        BenchCommand::Vm(a) => super::vm::bench(a),
        BenchCommand::Runtime(a) => super::bench_runtime::run(a),
        BenchCommand::Cri(a) => super::bench_cri::run(a),
    }
}
