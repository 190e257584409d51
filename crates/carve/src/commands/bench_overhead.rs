//! `carve bench overhead`: seed 004's lmbench table per tier (the logic is in carve-bench).

use std::path::PathBuf;

/// Arguments of `carve bench overhead`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub common: super::bench_seeds::Common,
    /// Rounds of alternating native/container/dedicated runs (default 3, 1 with --quick).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Skip the container tier.
    #[arg(long)]
    pub no_container: bool,
    /// Also run the container tier's variants side by side: docker's default seccomp filter,
    /// that filter with SECCOMP_FILTER_FLAG_SPEC_ALLOW, runc without and with the filter; and
    /// native again at the end of each round (an A/A column: the run's own noise).
    #[arg(long)]
    pub container_variants: bool,
    /// Docker's seccomp template for the filtered variants.
    #[arg(long, default_value = carve_bench::overhead::DEFAULT_SECCOMP_TEMPLATE)]
    pub seccomp_template: PathBuf,
    /// Skip the VM tier.
    #[arg(long)]
    pub no_vm: bool,
    /// Working folder: the built probe, the bundle, the guest initramfs.
    #[arg(long, default_value = super::bench_seeds::DEFAULT_WORK)]
    pub work: PathBuf,
}

/// Runs `carve bench overhead`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let c = a.common;
    let (tools, probe) = super::bench_seeds::setup(&a.work)?;
    let opts = carve_bench::overhead::Options {
        quick: c.quick,
        cpu: c.cpu,
        rounds: a.rounds.unwrap_or(if c.quick { 1 } else { 3 }),
        container: !a.no_container,
        dedicated: !c.no_dedicated,
        vm: !a.no_vm,
        container_variants: a.container_variants,
        seccomp_template: a.seccomp_template,
    };
    let t = carve_bench::overhead::run(&tools, &probe, &a.work, &opts)?;
    super::bench_seeds::print(c.json, &t, carve_bench::overhead::render)
}
