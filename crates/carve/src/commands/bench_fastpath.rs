//! `carve bench fastpath`: the example fast path's sealing loop run bare (packets already in
//! memory) and through the shared-memory ring with a generator on another core, interleaved in
//! one run; medians and their ratio (the target is ring ≥ 0.9× bare speed).
//!
//! The headline ns/packet is the median duration of a full batch divided by its packets: the
//! steady-state cost per packet, which preemptions on a shared core do not distort (on a
//! dedicated core there are none; what remains there is measured by `carve noise`). The mean
//! (every batch, preemptions included) and the wall time (including waits for the generator)
//! are printed beside it.

use anyhow::{bail, Context};
use carve_fastpath::memory;
use carve_fastpath::pktcrypt::{self, LoopStats, ProducerMode, ThreadPlacement};

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

/// The target ratio of issue 5: the ring path reaches at least 0.9× the bare loop's speed.
pub const TARGET_RATIO: f64 = 0.9;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Runs `carve bench fastpath`.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.runs == 0 || args.packets == 0 {
        bail!("--runs and --packets must be at least 1");
    }
    let allowed = memory::current_affinity();
    let cpu = args
        .cpu
        .or_else(|| allowed.last().copied())
        .context("no CPU allowed")?;
    let gen_cpu = args
        .generator_cpu
        .or_else(|| allowed.iter().copied().find(|&c| c != cpu));
    if gen_cpu == Some(cpu) {
        eprintln!("carve bench fastpath: warning: generator and sealing loop share CPU {cpu}");
    }
    let key = pktcrypt::key_from_env()?;
    if !args.json {
        println!(
            "carve bench fastpath: AES-128-GCM, 1 KiB packets, {} packets x {} runs, {} slots; \
             sealing on CPU {cpu}, generator on CPU {}{}",
            args.packets,
            args.runs,
            args.slots,
            gen_cpu.map_or("(unpinned)".to_string(), |c| c.to_string()),
            args.fifo
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
    let (mut bare, mut ring, mut local, mut spin) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Warm up once (page faults, CPU frequency), unrecorded.
    let sealing = ThreadPlacement {
        cpu: Some(cpu),
        fifo: args.fifo,
    };
    let generator = ThreadPlacement {
        cpu: gen_cpu,
        fifo: args.fifo,
    };
    bare_on(sealing, &key, args.packets / 10 + 1, args.slots as usize)?;
    for i in 0..args.runs {
        let b = bare_on(sealing, &key, args.packets, args.slots as usize)?;
        let r = pktcrypt::bench_ring(&key, args.packets, args.slots, generator, sealing)?;
        // The breakdown: the ring's own cost on one thread (no line crosses cores), and the
        // generator retrying at once when the ring is full (the loop it had before).
        let l = local_on(sealing, &key, args.packets, args.slots)?;
        let sp = pktcrypt::bench_ring_with(
            &key,
            args.packets,
            args.slots,
            generator,
            sealing,
            ProducerMode::Spin,
        )?;
        if !args.json {
            println!(
                "{:>4} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1} {:>11.1}",
                i + 1,
                b.median_ns_per_packet,
                r.median_ns_per_packet,
                b.busy_ns_per_packet,
                r.busy_ns_per_packet,
                b.wall_ns_per_packet,
                r.wall_ns_per_packet,
                l.median_ns_per_packet,
                sp.median_ns_per_packet,
            );
        }
        bare.push(b);
        ring.push(r);
        local.push(l);
        spin.push(sp);
    }
    let col = |v: &[LoopStats], f: fn(&LoopStats) -> f64| v.iter().map(f).collect::<Vec<_>>();
    let med = |s: &LoopStats| s.median_ns_per_packet;
    let busy = |s: &LoopStats| s.busy_ns_per_packet;
    let wall = |s: &LoopStats| s.wall_ns_per_packet;
    let (mb, mr) = (median(&col(&bare, med)), median(&col(&ring, med)));
    let (bb, br) = (median(&col(&bare, busy)), median(&col(&ring, busy)));
    let (wb, wr) = (median(&col(&bare, wall)), median(&col(&ring, wall)));
    let ratio = mb / mr;
    let (ml, ms) = (median(&col(&local, med)), median(&col(&spin, med)));
    if args.json {
        let doc = serde_json::json!({
            "packets": args.packets,
            "runs": args.runs,
            "slots": args.slots,
            "cpu": cpu,
            "generator_cpu": gen_cpu,
            "fifo": args.fifo,
            "bare_ns_per_packet": col(&bare, med),
            "ring_ns_per_packet": col(&ring, med),
            "bare_mean_ns_per_packet": col(&bare, busy),
            "ring_mean_ns_per_packet": col(&ring, busy),
            "bare_wall_ns_per_packet": col(&bare, wall),
            "ring_wall_ns_per_packet": col(&ring, wall),
            "ring_mean_batch": col(&ring, |s| s.mean_batch),
            "local_ns_per_packet": col(&local, med),
            "spin_ns_per_packet": col(&spin, med),
            "breakdown": {
                "crypto_ns": mb,
                "ring_one_thread_extra_ns": ml - mb,
                "cross_core_extra_ns": mr - ml,
                "spinning_producer_extra_ns": ms - mr,
                "spinning_producer_ratio": mb / ms,
            },
            "bare_median_ns": mb,
            "ring_median_ns": mr,
            "ratio": ratio,
            "mean_ratio": bb / br,
            "wall_ratio": wb / wr,
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio >= TARGET_RATIO,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "ns/packet (median of full {}-packet batches, medians over runs): bare {mb:.1}, \
             ring {mr:.1} -> the ring path runs at {ratio:.2}x the bare speed \
             (target >= {TARGET_RATIO}x: {})",
            pktcrypt::BATCH,
            if ratio >= TARGET_RATIO {
                "met"
            } else {
                "NOT met"
            }
        );
        println!(
            "mean incl. preemptions: bare {bb:.1}, ring {br:.1} ({:.2}x); wall incl. waiting \
             for the generator: bare {wb:.1}, ring {wr:.1} ({:.2}x)",
            bb / br,
            wb / wr
        );
        print_breakdown(mb, ml, mr, ms);
    }
    Ok(())
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

/// The one-thread ring loop on a thread placed as asked.
fn local_on(
    place: ThreadPlacement,
    key: &[u8; 16],
    packets: u64,
    slots: u32,
) -> anyhow::Result<LoopStats> {
    let key = *key;
    std::thread::spawn(move || -> anyhow::Result<LoopStats> {
        place.apply()?;
        Ok(pktcrypt::bench_ring_local(&key, packets, slots)?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("one-thread ring loop panicked"))?
}

/// The bare loop on a thread placed as asked (the caller's own affinity is left alone).
fn bare_on(
    place: ThreadPlacement,
    key: &[u8; 16],
    packets: u64,
    pool: usize,
) -> anyhow::Result<LoopStats> {
    let key = *key;
    std::thread::spawn(move || -> anyhow::Result<LoopStats> {
        place.apply()?;
        Ok(pktcrypt::bench_bare(&key, packets, pool))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("bare loop thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
