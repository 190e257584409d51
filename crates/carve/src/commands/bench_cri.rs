//! `carve bench cri`: pod start and teardown through containerd's CRI plugin, handler `carve`
//! (carve-oci) against `runc`, side by side in one run on a private node
//! ([`carve_cri::node::Node`]); the measurement is [`carve_bench::cri`].

use carve_cri::bench::{median, quantile, Samples};
use std::path::PathBuf;

/// Arguments of `carve bench cri`.
#[derive(clap::Args)]
pub struct Args {
    /// Recorded rounds per handler.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// carve-oci (default: beside this carve binary).
    #[arg(long)]
    pub carve_oci: Option<PathBuf>,
    /// runc.
    #[arg(long, default_value = "/usr/sbin/runc")]
    pub runc: PathBuf,
    /// Print the samples as JSON.
    #[arg(long)]
    pub json: bool,
}

fn line(what: &str, s: &[Samples], f: fn(&Samples) -> &Vec<f64>) {
    let cell = |v: &Vec<f64>| {
        format!(
            "{:.1} [{:.1} .. {:.1}]",
            median(v),
            quantile(v, 0.1),
            quantile(v, 0.9)
        )
    };
    let ratio = median(f(&s[0])) / median(f(&s[1]));
    println!(
        "{what:<10} {:>26} {:>26} {ratio:>10.3}x",
        cell(f(&s[0])),
        cell(f(&s[1]))
    );
}

/// Runs `carve bench cri`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let carve_oci = match a.carve_oci {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("carve-oci"),
    };
    let s = carve_bench::cri::run(&carve_bench::cri::Options {
        runs: a.runs,
        carve_oci,
        runc: a.runc.clone(),
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "milliseconds: median [p10 .. p90], {} rounds per handler, interleaved",
        a.runs
    );
    println!(
        "{:<10} {:>26} {:>26} {:>11}",
        "", "carve", "runc", "carve/runc"
    );
    line("pod start", &s, |x| &x.start_ms);
    line(" sandbox", &s, |x| &x.sandbox_ms);
    line(" create", &s, |x| &x.create_ms);
    line(" start", &s, |x| &x.run_ms);
    line("teardown", &s, |x| &x.teardown_ms);
    Ok(())
}
