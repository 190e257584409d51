//! `carve bench fastpath`: the example fast path's sealing loop run bare (packets already in
//! memory) and through the shared-memory ring with a generator on another core, interleaved in
//! one run; medians and their ratio (the target is ring ≥ 0.9× bare speed).
//!
//! The headline ns/packet is the median duration of a full batch divided by its packets: the
//! steady-state cost per packet, which preemptions on a shared core do not distort (on a
//! dedicated core there are none; what remains there is measured by `carve noise`). The mean
//! (every batch, preemptions included) and the wall time (including waits for the generator)
//! are kept beside it.

use crate::stats::median;
use crate::BenchError;
use carve_fastpath::memory;
pub use carve_fastpath::pktcrypt::ProducerLoad;
/// Packets per batch in the ring path (re-exported for the benchmark's report).
pub use carve_fastpath::pktcrypt::BATCH;
use carve_fastpath::pktcrypt::{self, Feed, LoopStats, ProducerMode, ThreadPlacement};
use serde_json::{json, Value};

/// The target ratio of issue 5: the ring path reaches at least 0.9× the bare loop's speed.
pub const TARGET_RATIO: f64 = 0.9;

/// What `carve bench fastpath` measures.
#[derive(Debug, Clone)]
pub struct Options {
    /// Packets per measurement.
    pub packets: u64,
    /// Measurements of each kind (bare and ring alternate).
    pub runs: usize,
    /// Ring slots (and the bare loop's packet pool).
    pub slots: u32,
    /// CPU of the sealing loop (default: the last CPU this process may use).
    pub cpu: Option<usize>,
    /// CPU of the ring's packet generator (default: the first CPU other than `cpu`).
    pub generator_cpu: Option<usize>,
    /// SCHED_FIFO priority of both loops and the generator.
    pub fifo: Option<i32>,
    /// Packets per second of the paced generator (the demo's condition: `carve-pktcrypt
    /// --generate --rate`, at normal priority).
    pub rate: u64,
    /// What shares the paced generator's CPU.
    pub producer_load: ProducerLoad,
}

/// The demo's generator rate (examples/gateway.toml): the paced loop's default.
pub const DEMO_RATE: u64 = 200_000;

impl Options {
    /// Packets of a paced run: as many as `packets`, but no more than two seconds' worth.
    pub fn paced_packets(&self) -> u64 {
        self.packets.min(self.rate.saturating_mul(2)).max(1)
    }
}

/// Where the loops run, resolved from [`Options`].
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// The sealing loop's CPU.
    pub cpu: usize,
    /// The generator's CPU (none: unpinned).
    pub generator_cpu: Option<usize>,
}

/// One run of each loop.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Packets already in memory.
    pub bare: LoopStats,
    /// Through the ring from the generator.
    pub ring: LoopStats,
    /// The ring filled and drained by one thread (no line crosses cores).
    pub local: LoopStats,
    /// The ring with a generator retrying at once when it is full.
    pub spin: LoopStats,
    /// The ring fed at [`Options::rate`] by a generator at normal priority, with
    /// [`Options::producer_load`] on its CPU: the demo's condition.
    pub paced: LoopStats,
}

/// Checks `opts` and resolves the CPUs.
pub fn placement(opts: &Options) -> Result<Placement, BenchError> {
    if opts.rate == 0 {
        return Err(BenchError::Invalid {
            field: "--rate",
            why: "must be at least 1 packet per second".into(),
        });
    }
    if opts.runs == 0 || opts.packets == 0 {
        return Err(BenchError::Invalid {
            field: "--runs/--packets",
            why: "must be at least 1".into(),
        });
    }
    let allowed = memory::current_affinity();
    let cpu = opts
        .cpu
        .or_else(|| allowed.last().copied())
        .ok_or_else(|| BenchError::Invalid {
            field: "--cpu",
            why: "no CPU allowed".into(),
        })?;
    let generator_cpu = opts
        .generator_cpu
        .or_else(|| allowed.iter().copied().find(|&c| c != cpu));
    Ok(Placement { cpu, generator_cpu })
}

/// Runs one unrecorded warm-up of the bare loop, then `opts.runs` rounds; `each` sees every
/// round as it finishes.
pub fn run(
    opts: &Options,
    at: Placement,
    each: &mut dyn FnMut(usize, &Round),
) -> Result<Vec<Round>, BenchError> {
    let key = pktcrypt::key_from_env().map_err(|e| BenchError::Invalid {
        field: "CARVE_PKTCRYPT_KEY",
        why: e.to_string(),
    })?;
    let sealing = ThreadPlacement {
        cpu: Some(at.cpu),
        fifo: opts.fifo,
    };
    let generator = ThreadPlacement {
        cpu: at.generator_cpu,
        fifo: opts.fifo,
    };
    // Warm up once (page faults, CPU frequency), unrecorded.
    bare_on(sealing, &key, opts.packets / 10 + 1, opts.slots as usize)?;
    let mut rounds = Vec::new();
    for i in 0..opts.runs {
        let bare = bare_on(sealing, &key, opts.packets, opts.slots as usize)?;
        let ring = pktcrypt::bench_ring(&key, opts.packets, opts.slots, generator, sealing)?;
        // The breakdown: the ring's own cost on one thread (no line crosses cores), and the
        // generator retrying at once when the ring is full (the loop it had before).
        let local = local_on(sealing, &key, opts.packets, opts.slots)?;
        let spin = pktcrypt::bench_ring_with(
            &key,
            opts.packets,
            opts.slots,
            generator,
            sealing,
            ProducerMode::Spin,
        )?;
        // The demo's condition: packets arrive a batch at a time, fresh from the generator's
        // core, which something else keeps busy.
        let feed = Feed {
            rate: Some(opts.rate),
            load: opts.producer_load,
            ..Feed::default()
        };
        let paced = pktcrypt::bench_ring_fed(
            &key,
            opts.paced_packets(),
            opts.slots,
            generator,
            sealing,
            feed,
        )?;
        let r = Round {
            bare,
            ring,
            local,
            spin,
            paced,
        };
        each(i, &r);
        rounds.push(r);
    }
    Ok(rounds)
}

/// The medians over the rounds, ns/packet.
#[derive(Debug, Clone, Copy)]
pub struct Medians {
    /// Bare, full batches.
    pub bare: f64,
    /// Ring, full batches.
    pub ring: f64,
    /// Bare, every batch (preemptions included).
    pub bare_mean: f64,
    /// Ring, every batch.
    pub ring_mean: f64,
    /// Bare, wall time.
    pub bare_wall: f64,
    /// Ring, wall time (waits for the generator included).
    pub ring_wall: f64,
    /// The ring on one thread.
    pub local: f64,
    /// The ring with a spinning generator.
    pub spin: f64,
    /// The paced ring (the demo's condition), full batches.
    pub paced: f64,
    /// The paced ring, every batch: the demo's own figure (busy time / packets).
    pub paced_mean: f64,
}

impl Medians {
    /// Medians of `rounds`.
    pub fn of(rounds: &[Round]) -> Medians {
        let m = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
        Medians {
            bare: m(&|r| r.bare.median_ns_per_packet),
            ring: m(&|r| r.ring.median_ns_per_packet),
            bare_mean: m(&|r| r.bare.busy_ns_per_packet),
            ring_mean: m(&|r| r.ring.busy_ns_per_packet),
            bare_wall: m(&|r| r.bare.wall_ns_per_packet),
            ring_wall: m(&|r| r.ring.wall_ns_per_packet),
            local: m(&|r| r.local.median_ns_per_packet),
            spin: m(&|r| r.spin.median_ns_per_packet),
            paced: m(&|r| r.paced.median_ns_per_packet),
            paced_mean: m(&|r| r.paced.busy_ns_per_packet),
        }
    }

    /// Bare over ring: the ring path's speed relative to the bare loop.
    pub fn ratio(&self) -> f64 {
        self.bare / self.ring
    }

    /// Bare over the paced ring, full batches.
    pub fn paced_ratio(&self) -> f64 {
        self.bare / self.paced
    }

    /// Bare over the paced ring, means: the demo's definition (busy time per packet).
    pub fn paced_mean_ratio(&self) -> f64 {
        self.bare_mean / self.paced_mean
    }
}

/// The JSON document of `carve bench fastpath --json`.
pub fn to_json(opts: &Options, at: Placement, rounds: &[Round]) -> Value {
    let col = |f: fn(&Round) -> f64| rounds.iter().map(f).collect::<Vec<_>>();
    let m = Medians::of(rounds);
    let ratio = m.ratio();
    json!({
        "packets": opts.packets,
        "runs": opts.runs,
        "slots": opts.slots,
        "cpu": at.cpu,
        "generator_cpu": at.generator_cpu,
        "fifo": opts.fifo,
        "rate": opts.rate,
        "producer_load": format!("{:?}", opts.producer_load).to_lowercase(),
        "paced_packets": opts.paced_packets(),
        "bare_ns_per_packet": col(|r| r.bare.median_ns_per_packet),
        "ring_ns_per_packet": col(|r| r.ring.median_ns_per_packet),
        "bare_mean_ns_per_packet": col(|r| r.bare.busy_ns_per_packet),
        "ring_mean_ns_per_packet": col(|r| r.ring.busy_ns_per_packet),
        "bare_wall_ns_per_packet": col(|r| r.bare.wall_ns_per_packet),
        "ring_wall_ns_per_packet": col(|r| r.ring.wall_ns_per_packet),
        "ring_mean_batch": col(|r| r.ring.mean_batch),
        "local_ns_per_packet": col(|r| r.local.median_ns_per_packet),
        "spin_ns_per_packet": col(|r| r.spin.median_ns_per_packet),
        "paced_ns_per_packet": col(|r| r.paced.median_ns_per_packet),
        "paced_mean_ns_per_packet": col(|r| r.paced.busy_ns_per_packet),
        "paced_mean_batch": col(|r| r.paced.mean_batch),
        "breakdown": {
            "crypto_ns": m.bare,
            "ring_one_thread_extra_ns": m.local - m.bare,
            "cross_core_extra_ns": m.ring - m.local,
            "spinning_producer_extra_ns": m.spin - m.ring,
            "spinning_producer_ratio": m.bare / m.spin,
            "paced_extra_ns": m.paced - m.bare,
        },
        "paced_ratio": m.paced_ratio(),
        "paced_mean_ratio": m.paced_mean_ratio(),
        "bare_median_ns": m.bare,
        "ring_median_ns": m.ring,
        "ratio": ratio,
        "mean_ratio": m.bare_mean / m.ring_mean,
        "wall_ratio": m.bare_wall / m.ring_wall,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "paced_meets_target": m.paced_ratio() >= TARGET_RATIO,
    })
}

/// The one-thread ring loop on a thread placed as asked.
fn local_on(
    place: ThreadPlacement,
    key: &[u8; 16],
    packets: u64,
    slots: u32,
) -> Result<LoopStats, BenchError> {
    let key = *key;
    on_thread("one-thread ring loop", move || {
        place.apply().map_err(placement_err)?;
        Ok(pktcrypt::bench_ring_local(&key, packets, slots)?)
    })
}

/// The bare loop on a thread placed as asked (the caller's own affinity is left alone).
fn bare_on(
    place: ThreadPlacement,
    key: &[u8; 16],
    packets: u64,
    pool: usize,
) -> Result<LoopStats, BenchError> {
    let key = *key;
    on_thread("bare loop", move || {
        place.apply().map_err(placement_err)?;
        Ok(pktcrypt::bench_bare(&key, packets, pool))
    })
}

fn placement_err(e: carve_fastpath::memory::MemoryError) -> BenchError {
    BenchError::Tool {
        what: "placing the loop's thread".into(),
        detail: e.to_string(),
    }
}

fn on_thread(
    what: &str,
    f: impl FnOnce() -> Result<LoopStats, BenchError> + Send + 'static,
) -> Result<LoopStats, BenchError> {
    std::thread::spawn(f).join().map_err(|_| BenchError::Tool {
        what: what.into(),
        detail: "the thread panicked".into(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_run_has_every_column() {
        let opts = Options {
            packets: 3000,
            runs: 1,
            slots: 64,
            cpu: None,
            generator_cpu: None,
            fifo: None,
            rate: 50_000,
            producer_load: ProducerLoad::Hog,
        };
        assert_eq!(opts.paced_packets(), 3000);
        let at = placement(&opts).unwrap();
        let rounds = run(&opts, at, &mut |_, _| {}).unwrap();
        let doc = to_json(&opts, at, &rounds);
        for key in [
            "bare_ns_per_packet",
            "ring_ns_per_packet",
            "local_ns_per_packet",
            "spin_ns_per_packet",
            "paced_ns_per_packet",
            "paced_mean_ns_per_packet",
        ] {
            let v = doc[key][0].as_f64().unwrap_or_default();
            assert!(v > 0.0, "{key}: {doc}");
        }
        assert_eq!(doc["producer_load"], "hog");
        assert!(doc["paced_mean_ratio"].as_f64().unwrap() > 0.0, "{doc}");
        let bad = Options { rate: 0, ..opts };
        assert!(matches!(
            placement(&bad),
            Err(BenchError::Invalid {
                field: "--rate",
                ..
            })
        ));
    }
}
