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
    /// Instead of pod start: `carve noise` via ExecSync inside a dedicated pod and inside the
    /// same pod without the annotation (this carve binary is bind-mounted into both).
    #[arg(long)]
    pub noise: bool,
    /// With --noise: the pods' exclusive CPU.
    #[arg(long, default_value_t = 1)]
    pub noise_cpu: usize,
    /// With --noise: seconds per probe.
    #[arg(long, default_value_t = 10.0)]
    pub noise_seconds: f64,
    /// With --noise: a real-time policy for one more dedicated pod's probe and carve.dev/sched
    /// ("other": none). The dedicated and plain pods compared side by side probe with SCHED_OTHER
    /// (a plain pod gets no RT budget under RT group scheduling).
    #[arg(long, default_value = "fifo:80")]
    pub noise_sched: String,
}

/// Prints --noise's runs side by side.
fn print_noise(runs: &[carve_cri::bench::NoiseRun], a: &Args) {
    println!(
        "carve noise inside a pod via ExecSync: CPU {}, {} s per pod",
        a.noise_cpu, a.noise_seconds
    );
    println!(
        "{:<10} {:<8} {:>10} {:>12} {:>12} {:>10}",
        "pod", "probe", "stolen %", "interr./s", "max gap µs", "p99 µs"
    );
    for r in runs {
        let c = &r.report["cores"][0]["untuned"];
        println!(
            "{:<10} {:<8} {:>10.3} {:>12.1} {:>12.1} {:>10.1}",
            r.pod,
            r.sched,
            c["stolen_percent"].as_f64().unwrap_or(f64::NAN),
            c["interruptions_per_sec"].as_f64().unwrap_or(f64::NAN),
            c["max_gap_us"].as_f64().unwrap_or(f64::NAN),
            c["percentiles"]["p99"].as_f64().unwrap_or(f64::NAN),
        );
    }
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
    let carve_oci = match a.carve_oci.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("carve-oci"),
    };
    let opts = carve_bench::cri::Options {
        runs: a.runs,
        carve_oci,
        runc: a.runc.clone(),
    };
    if a.noise {
        let runs = carve_bench::cri::noise(
            &opts,
            &carve_cri::bench::NoiseOptions {
                carve: std::env::current_exe()?,
                cpu: a.noise_cpu,
                seconds: a.noise_seconds,
                sched: a.noise_sched.clone(),
            },
        )?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&runs)?);
        } else {
            print_noise(&runs, &a);
        }
        return Ok(());
    }
    let s = carve_bench::cri::run(&opts)?;
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
