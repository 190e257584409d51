//! `carve bench ...`: benchmarks that put a number on what each tier costs.

/// `carve bench ...`.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The example fast path (AES-128-GCM over 1 KiB packets) bare vs through the shared-memory
    /// ring fed from another core, in one run.
    Fastpath(super::bench_fastpath::Args),
}

/// Runs a `carve bench` subcommand.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Fastpath(a) => super::bench_fastpath::run(a),
    }
}
