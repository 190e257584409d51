//! `carve-pktcrypt`: the example fast path. It takes 1 KiB packets from a shared-memory ring,
//! seals them in place with AES-128-GCM, and prints packets/s and ns/packet every interval
//! (optionally also rewriting a JSON stats file, for a control container to serve).
//!
//! - `carve-pktcrypt --ring gw [--cpu 1] [--stats FILE]`: the fast path; creates the ring
//!   `/dev/shm/carve-ring-gw` (or a path given with a '/') if it does not exist.
//! - `carve-pktcrypt --generate --ring gw [--cpu 0] [--rate PPS]`: the packet generator feeding
//!   that ring (waits for it to appear).
//! - `carve-pktcrypt --generate`: standalone — a generator thread and the fast path in one
//!   process, on an anonymous (memfd) ring.

use anyhow::{bail, Context, Result};
use carve_fastpath::memory;
use carve_fastpath::pktcrypt::{self, ProducerMode, Sealer};
use carve_fastpath::ring::{Consumer, Producer, RingMap, DEFAULT_SLOT_SIZE};
use clap::Parser;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "carve-pktcrypt",
    version,
    about = "Example fast path: AES-128-GCM over 1 KiB packets from a shared-memory ring"
)]
struct Args {
    /// The ring: a name (→ /dev/shm/carve-ring-NAME) or a path (tmpfs or hugetlbfs file).
    #[arg(long)]
    ring: Option<String>,
    /// Run the packet generator (with --ring: only the generator; without: standalone).
    #[arg(long)]
    generate: bool,
    /// Pin the fast path (or, with --generate --ring, the generator) to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// In standalone mode, pin the generator thread to this CPU.
    #[arg(long)]
    generator_cpu: Option<usize>,
    /// Rewrite this JSON file with the counters every interval.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Reporting interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Stop after this many packets (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    packets: Option<u64>,
    /// Generator rate limit in packets per second (default: as fast as the ring takes them).
    #[arg(long)]
    rate: Option<u64>,
    /// Ring slots when this process creates the ring (a power of two).
    #[arg(long, default_value_t = 1024)]
    slots: u32,
    /// Lock memory (mlockall) before running.
    #[arg(long)]
    mlock: bool,
    /// Print nothing periodically (the stats file still updates).
    #[arg(long)]
    quiet: bool,
    /// Run the same sealing loop bare (no ring: packets already in memory) for --packets
    /// packets (default 10 million), print its ns/packet and exit: the reference figure.
    #[arg(long, conflicts_with_all = ["ring", "generate"])]
    bare: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn ring_path(ring: &str) -> PathBuf {
    if ring.contains('/') {
        PathBuf::from(ring)
    } else {
        PathBuf::from(format!("/dev/shm/carve-ring-{ring}"))
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    install_signal_handlers();
    if args.mlock {
        memory::lock_all_memory()?;
    }
    let key = pktcrypt::key_from_env()?;
    if args.bare {
        if let Some(cpu) = args.cpu {
            memory::pin_current_thread(&[cpu])?;
        }
        let n = args.packets.unwrap_or(10_000_000);
        let s = pktcrypt::bench_bare(&key, n, args.slots as usize);
        println!(
            "carve-pktcrypt: bare loop on CPU {}: {n} packets, {:.1} ns/packet (mean), {:.1} ns/packet \
             (median {}-packet batch)",
            memory::current_cpu().map_or("?".into(), |c| c.to_string()),
            s.busy_ns_per_packet,
            s.median_ns_per_packet,
            pktcrypt::BATCH
        );
        return Ok(());
    }
    match (&args.ring, args.generate) {
        (None, false) => bail!("give --ring NAME (the fast path) or --generate (standalone)"),
        (Some(r), true) => {
            let path = ring_path(r);
            let ring = RingMap::open_path_wait(&path, Duration::from_secs(30))?;
            if let Some(cpu) = args.cpu {
                memory::pin_current_thread(&[cpu])?;
            }
            let sent = generate(ring.into_producer(), args.packets, args.rate);
            eprintln!("carve-pktcrypt: generator sent {sent} packets");
            Ok(())
        }
        (Some(r), false) => {
            let path = ring_path(r);
            let (ring, created) = match RingMap::open_path(&path) {
                Ok(ring) => (ring, false),
                Err(_) if !path.exists() => {
                    let ring = RingMap::create_file(&path, DEFAULT_SLOT_SIZE, args.slots)
                        .with_context(|| format!("creating ring {}", path.display()))?;
                    (ring, true)
                }
                Err(e) => return Err(e.into()),
            };
            let what = path.display().to_string();
            let result = fast_path(ring.into_consumer(), &args, &key, &what);
            if created {
                let _ = std::fs::remove_file(&path);
            }
            result
        }
        (None, true) => {
            let ring = RingMap::create_memfd("carve-pktcrypt", DEFAULT_SLOT_SIZE, args.slots)?;
            let (p, c) = ring.split();
            let (limit, rate, gcpu) = (args.packets, args.rate, args.generator_cpu);
            let gen = std::thread::spawn(move || {
                if let Some(cpu) = gcpu {
                    let _ = memory::pin_current_thread(&[cpu]);
                }
                generate(p, limit, rate)
            });
            let r = fast_path(c, &args, &key, "memfd (standalone)");
            STOP.store(true, Ordering::Relaxed);
            let _ = gen.join();
            r
        }
    }
}

/// The generator (pktcrypt::generate) until stopped or the limit is reached.
fn generate(mut p: Producer, limit: Option<u64>, rate: Option<u64>) -> u64 {
    let limit = limit.unwrap_or(u64::MAX);
    pktcrypt::generate(&mut p, limit, rate, ProducerMode::Burst, &STOP)
}

/// The fast path: poll the ring, seal batches in place, report every interval.
fn fast_path(mut c: Consumer, args: &Args, key: &[u8; 16], what: &str) -> Result<()> {
    if let Some(cpu) = args.cpu {
        memory::pin_current_thread(&[cpu])?;
    }
    let mut sealer = Sealer::new(key);
    let interval = Duration::from_millis(args.interval_ms.max(10));
    let limit = args.packets.unwrap_or(u64::MAX);
    let started = Instant::now();
    let (mut packets, mut busy_ns, mut bad) = (0u64, 0u64, 0u64);
    let (mut last_packets, mut last_busy, mut last_report) = (0u64, 0u64, Instant::now());
    let mut polls = 0u32;
    let cpu = memory::current_cpu();
    if !args.quiet {
        println!(
            "carve-pktcrypt: sealing 1 KiB packets with AES-128-GCM from ring {what} on CPU {}",
            cpu.map_or("?".into(), |c| c.to_string())
        );
    }
    loop {
        let t0 = Instant::now();
        let n = pktcrypt::process_batch(&mut c, &mut sealer, &mut bad);
        if n > 0 {
            busy_ns += t0.elapsed().as_nanos() as u64;
            packets += n as u64;
        } else {
            std::hint::spin_loop();
        }
        polls = polls.wrapping_add(1);
        // Look at the clock and the stop flag only every 256 polls: the loop stays tight.
        if polls % 256 != 0 && packets < limit {
            continue;
        }
        let done = packets >= limit || STOP.load(Ordering::Relaxed);
        let now = Instant::now();
        if now - last_report >= interval || done {
            let r = pktcrypt::rate(
                packets - last_packets,
                busy_ns - last_busy,
                now - last_report,
            );
            if !args.quiet {
                println!(
                    "carve-pktcrypt: {:>12.0} packets/s  {:>7.1} ns/packet  total {packets}",
                    r.packets_per_sec, r.ns_per_packet
                );
            }
            if let Some(f) = &args.stats {
                let doc = pktcrypt::stats_json(
                    packets,
                    packets * pktcrypt::PLAINTEXT_LEN as u64,
                    r,
                    started.elapsed(),
                    cpu,
                    what,
                );
                pktcrypt::write_atomically(f, &doc)?;
            }
            last_packets = packets;
            last_busy = busy_ns;
            last_report = now;
        }
        if done {
            break;
        }
    }
    if bad > 0 {
        bail!("{bad} packets on the ring were shorter than 1 KiB + tag room");
    }
    let total = pktcrypt::rate(packets, busy_ns, started.elapsed());
    println!(
        "carve-pktcrypt: done: {packets} packets, {:.1} ns/packet sealing, {:.0} packets/s overall",
        total.ns_per_packet, total.packets_per_sec
    );
    Ok(())
}
