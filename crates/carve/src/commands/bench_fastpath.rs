//! `carve bench fastpath`: the example fast path's sealing loop run bare and through the
//! shared-memory ring, interleaved in one run; the measurement is [`carve_bench::fastpath`],
//! this file parses and prints.

use carve_bench::fastpath::{self, Medians, Placement, Round, TARGET_RATIO};

/// Arguments of `carve bench fastpath`.
#[derive(clap::Args)]
pub struct Args {
    /// Packets per measurement.
    #[arg(long, default_value_t = 2_000_000)]
    pub packets: u64,
    /// Measurements of each kind (bare and ring alternate).
    #[arg(long, default_value_t = 7)]
    pub runs: usize,
    /// Ring slots (and the bare loop's packet pool, so both touch the same amount of memory).
    #[arg(long, default_value_t = 1024)]
    pub slots: u32,
    /// CPU of the sealing loop (default: the last CPU this process may use).
    #[arg(long)]
    pub cpu: Option<usize>,
    /// CPU of the ring's packet generator (default: the first CPU other than --cpu).
    #[arg(long)]
    pub generator_cpu: Option<usize>,
    /// Run both loops (and the generator) at this SCHED_FIFO priority, so ordinary tasks stop
    /// preempting them (RT throttling still takes 50 ms a second unless
    /// kernel.sched_rt_runtime_us is -1). Short of `carve run --dedicated`, this makes the mean
    /// meaningful on a busy host.
    #[arg(long, value_name = "PRIO")]
    pub fifo: Option<i32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `carve bench fastpath`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = fastpath::Options {
        packets: args.packets,
        runs: args.runs,
        slots: args.slots,
        cpu: args.cpu,
        generator_cpu: args.generator_cpu,
        fifo: args.fifo,
    };
    let at = fastpath::placement(&opts)?;
    if at.generator_cpu == Some(at.cpu) {
        eprintln!(
            "carve bench fastpath: warning: generator and sealing loop share CPU {}",
            at.cpu
        );
    }
    if args.json {
        let rounds = fastpath::run(&opts, at, &mut |_, _| {})?;
        let doc = fastpath::to_json(&opts, at, &rounds);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print_header(&opts, at);
    let rounds = fastpath::run(&opts, at, &mut print_round)?;
    print_summary(&Medians::of(&rounds));
    Ok(())
}

fn print_header(opts: &fastpath::Options, at: Placement) {
    println!(
        "carve bench fastpath: AES-128-GCM, 1 KiB packets, {} packets x {} runs, {} slots; \
         sealing on CPU {}, generator on CPU {}{}",
        opts.packets,
        opts.runs,
        opts.slots,
        at.cpu,
        at.generator_cpu
            .map_or("(unpinned)".to_string(), |c| c.to_string()),
        opts.fifo
            .map_or(String::new(), |p| format!(", both at SCHED_FIFO {p}"))
    );
    println!(
        "{:>4} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "run",
        "bare",
        "ring",
        "bare mean",
        "ring mean",
        "bare wall",
        "ring wall",
        "1 thread",
        "spinning"
    );
}

fn print_round(i: usize, r: &Round) {
    println!(
        "{:>4} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1}",
        i + 1,
        r.bare.median_ns_per_packet,
        r.ring.median_ns_per_packet,
        r.bare.busy_ns_per_packet,
        r.ring.busy_ns_per_packet,
        r.bare.wall_ns_per_packet,
        r.ring.wall_ns_per_packet,
        r.local.median_ns_per_packet,
        r.spin.median_ns_per_packet,
    );
}

fn print_summary(m: &Medians) {
    let ratio = m.ratio();
    println!(
        "ns/packet (median of full {}-packet batches, medians over runs): bare {:.1}, \
         ring {:.1} -> the ring path runs at {ratio:.2}x the bare speed \
         (target >= {TARGET_RATIO}x: {})",
        fastpath::BATCH,
        m.bare,
        m.ring,
        if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "mean incl. preemptions: bare {:.1}, ring {:.1} ({:.2}x); wall incl. waiting \
         for the generator: bare {:.1}, ring {:.1} ({:.2}x)",
        m.bare_mean,
        m.ring_mean,
        m.bare_mean / m.ring_mean,
        m.bare_wall,
        m.ring_wall,
        m.bare_wall / m.ring_wall
    );
    print_breakdown(m.bare, m.local, m.ring, m.spin);
}

/// Where the ring's time goes, from the medians of the four loops (ns/packet).
fn print_breakdown(mb: f64, ml: f64, mr: f64, ms: f64) {
    println!(
        "breakdown (medians, ns/packet): crypto {mb:.1} + the ring on one thread (bookkeeping, \
         copy into the slot, prefetches) {:+.1} + lines crossing cores {:+.1} = {mr:.1}; a \
         generator retrying at once when the ring is full (before) would add {:+.1} -> {:.2}x",
        ml - mb,
        mr - ml,
        ms - mr,
        mb / ms
    );
}
