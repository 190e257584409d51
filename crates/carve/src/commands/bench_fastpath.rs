//! `carve bench fastpath`: the example fast path's sealing loop run bare and through the
//! shared-memory ring, interleaved in one run; the measurement is [`carve_bench::fastpath`],
//! this file parses and prints.

use carve_bench::fastpath::{self, Medians, Placement, ProducerLoad, Round, TARGET_RATIO};

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
    /// Packets per second of the paced run (the demo's condition: a generator at normal
    /// priority, `carve-pktcrypt --generate --rate`); it seals --packets packets, at most two
    /// seconds' worth.
    #[arg(long, value_name = "PPS", default_value_t = fastpath::DEMO_RATE)]
    pub rate: u64,
    /// What shares the generator's CPU in the paced run: `hog` (a thread spinning at normal
    /// priority, as the demo's VM and container share core 0) or `none`.
    #[arg(long, value_name = "LOAD", default_value = "hog", value_parser = parse_load)]
    pub producer_load: ProducerLoad,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_load(s: &str) -> Result<ProducerLoad, String> {
    match s {
        "hog" => Ok(ProducerLoad::Hog),
        "none" => Ok(ProducerLoad::None),
        _ => Err(format!("{s:?} is not a producer load (hog or none)")),
    }
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
        rate: args.rate,
        producer_load: args.producer_load,
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
        "paced: {} packets at {} packets/s from a generator at normal priority, producer load: {:?}",
        opts.paced_packets(),
        opts.rate,
        opts.producer_load
    );
    println!(
        "{:>4} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "run",
        "bare",
        "ring",
        "bare mean",
        "ring mean",
        "bare wall",
        "ring wall",
        "1 thread",
        "spinning",
        "paced",
        "paced mean"
    );
}

fn print_round(i: usize, r: &Round) {
    println!(
        "{:>4} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1}",
        i + 1,
        r.bare.median_ns_per_packet,
        r.ring.median_ns_per_packet,
        r.bare.busy_ns_per_packet,
        r.ring.busy_ns_per_packet,
        r.bare.wall_ns_per_packet,
        r.ring.wall_ns_per_packet,
        r.local.median_ns_per_packet,
        r.spin.median_ns_per_packet,
        r.paced.median_ns_per_packet,
        r.paced.busy_ns_per_packet,
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
    print_paced(m);
}

/// The demo's condition against the bare loop: steady state (full batches) and the slow
/// batches the mean adds (the demo reports the mean), beside the bare loop's own.
fn print_paced(m: &Medians) {
    println!(
        "paced (the demo's condition): crypto {:.1} + fresh lines from the generator's core and \
         the wake-up read of head per batch {:+.1} = full batches {:.1} ({:.2}x); slow batches \
         add {:+.1} (bare's own: {:+.1}) = every batch {:.1}, the demo's ns/packet, against bare \
         {:.1} -> {:.2}x",
        m.bare,
        m.paced - m.bare,
        m.paced,
        m.paced_ratio(),
        m.paced_mean - m.paced,
        m.bare_mean - m.bare,
        m.paced_mean,
        m.bare_mean,
        m.paced_mean_ratio()
    );
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
