//! `carve bench packet`: seed 000's packet arithmetic with this machine's numbers.
//!
//! The seed: encrypting 1 KiB packets at 100 000 cycles each plus 500 cycles of per-packet
//! overhead on a 1 Gcps core of which the application gets 98 % gives 9751 packets/s (99 %:
//! 9850); a kernel-owned accelerator at 50 000 cycles + 10 000 cycles of setup + 20 cycles per
//! 8 bytes copied in and out gives 15 356. Here the fast path's own loop is measured: cycles
//! per 1 KiB (AES-128-GCM, the bare loop's median batch), per-packet overhead (the ring path's
//! median minus the bare loop's), and the available share (1 − stolen, from the noise meter),
//! on a shared core and on a dedicated one; the model's prediction sits beside the measured
//! packets/s. This host has no AF_ALG, so the accelerator line is modelled from the measured
//! cost of moving 1 KiB into and out of the kernel.

use crate::{run_with_deadline, BenchError, Tools};
use carve_dedicated::noise::{self, ProbeOptions};
/// The worker's scheduling policy (re-exported so callers need not name the dedicated tier).
pub use carve_dedicated::SchedPolicy;
use carve_fastpath::pktcrypt::{self, Sealer, ThreadPlacement, BATCH};
use carve_fastpath::ring::RingMap;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Seed 000's three lines: (label, packets/s as printed in the seed).
pub const SEED_LINES: [(&str, f64); 3] = [
    ("98 % of a 1 Gcps core, 100 000 + 500 cycles", 9751.0),
    ("99 % of the core", 9850.0),
    (
        "kernel-owned accelerator: 50 000 + 10 000 setup + 2 × 20 cycles/8 B",
        15356.0,
    ),
];

/// The model: packets/s = Hz × share ÷ (cycles + overhead cycles).
pub fn model_pps(hz: f64, share: f64, cycles: f64, overhead: f64) -> f64 {
    hz * share / (cycles + overhead)
}

/// What one core measured.
#[derive(Debug, Clone, Serialize)]
pub struct CoreLine {
    /// "shared core (SCHED_OTHER)" or "dedicated core (FIFO 99)".
    pub core: String,
    /// Share of the core the loop gets: 1 − stolen (noise meter, same placement).
    pub share: f64,
    /// The bare loop's median full batch, ns per packet (the crypto).
    pub bare_ns: f64,
    /// The ring path's median full batch, ns per packet.
    pub ring_ns: f64,
    /// TSC cycles per packet of crypto.
    pub cycles_per_packet: f64,
    /// TSC cycles of per-packet ring overhead (ring − bare).
    pub overhead_cycles: f64,
    /// The model's packets/s.
    pub predicted_pps: f64,
    /// Packets through the ring per second of wall time.
    pub measured_pps: f64,
    /// measured ÷ predicted.
    pub ratio: f64,
}

/// The accelerator line.
#[derive(Debug, Clone, Serialize)]
pub struct AccelLine {
    /// Whether this kernel offers AF_ALG.
    pub af_alg: bool,
    /// What the line is.
    pub note: String,
    /// Measured: one 1 KiB write + read through a pipe, ns (two syscalls and two copies).
    pub kernel_round_trip_ns: f64,
    /// Measured: one 1 KiB memcpy, ns.
    pub copy_ns: f64,
    /// Modelled accelerator time: half the software crypto, as in the seed, ns.
    pub accel_ns: f64,
    /// Modelled packets/s on the dedicated core's share.
    pub predicted_pps: f64,
    /// Share of the core the application still spends (setup + copies) ÷ total.
    pub cpu_share: f64,
}

/// The whole result (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Packet {
    /// The sealing core.
    pub cpu: usize,
    /// The TSC rate, Hz.
    pub tsc_hz: f64,
    /// Packets per measurement.
    pub packets: u64,
    /// The seed's lines recomputed with its own figures, and as printed.
    pub seed: Vec<(String, f64, f64)>,
    /// Shared and dedicated core.
    pub lines: Vec<CoreLine>,
    /// The accelerator line.
    pub accel: AccelLine,
}

/// What the loop on one core measured (the worker's JSON).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WorkerReport {
    /// 1 − stolen on this core.
    pub share: f64,
    /// Bare median ns/packet.
    pub bare_ns: f64,
    /// Ring median ns/packet.
    pub ring_ns: f64,
    /// Packets per wall second through the ring.
    pub ring_pps: f64,
    /// TSC Hz.
    pub tsc_hz: f64,
}

fn share_here(cpu: usize, seconds: f64, sched: SchedPolicy) -> Result<(f64, f64), BenchError> {
    let cpus: carve_core::CpuSet = [cpu].into_iter().collect();
    let opts = ProbeOptions {
        duration: Duration::from_secs_f64(seconds),
        threshold: Duration::from_micros(1),
        sched,
    };
    let pin = |tid: i32, c: usize| -> Result<(), noise::JoinError> {
        Ok(carve_dedicated::sys::set_affinity(
            tid,
            &[c].into_iter().collect(),
        )?)
    };
    let raw = noise::probe(&cpus, &opts, &pin, &|| {})?;
    let s = noise::stats(&raw[0], &opts.sched);
    Ok((1.0 - s.stolen_percent / 100.0, s.tsc_hz))
}

/// The sealing side of the ring (this thread, already placed): seals `packets` packets and
/// returns (median full-batch ns/packet, packets per wall second).
fn seal_from_ring(ring: RingMap, packets: u64) -> (f64, f64) {
    let mut c = ring.into_consumer();
    let mut sealer = Sealer::new(&pktcrypt::TEST_KEY);
    let mut bad = 0;
    let mut full = Vec::with_capacity((packets / BATCH as u64) as usize + 1);
    while c.ring().is_empty() {
        std::hint::spin_loop();
    }
    let start = Instant::now();
    let mut done = 0u64;
    while done < packets {
        let t0 = Instant::now();
        let n = pktcrypt::process_batch(&mut c, &mut sealer, &mut bad);
        if n == BATCH {
            full.push(t0.elapsed().as_nanos() as f64 / BATCH as f64);
        } else if n == 0 {
            std::hint::spin_loop();
        }
        done += n as u64;
    }
    (
        crate::stats::median(&full),
        packets as f64 / start.elapsed().as_secs_f64(),
    )
}

/// Feeds `packets` packets into the ring file at `path` from this thread.
fn generate_into(path: &Path, packets: u64) -> Result<(), BenchError> {
    let mut p = RingMap::open_path_wait(path, Duration::from_secs(60))?.into_producer();
    let tpl = pktcrypt::template();
    let mut seq = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seq < packets {
        if pktcrypt::generate_batch(&mut p, &tpl, &mut seq) == 0 {
            p.wait_free(pktcrypt::refill_burst(1024), 1000);
            if Instant::now() > deadline {
                return Err(BenchError::Timeout {
                    what: "the sealing loop to drain the ring".into(),
                    seconds: 600,
                });
            }
        }
    }
    Ok(())
}

/// The measuring side on its (already chosen) core: share, bare loop, then the ring at `ring`
/// fed by a generator elsewhere. `carve bench packet --worker` runs this under `carve run
/// --dedicated`.
pub fn worker(
    ring: &Path,
    packets: u64,
    sched: SchedPolicy,
    cpu: usize,
) -> Result<WorkerReport, BenchError> {
    let (share, tsc_hz) = share_here(cpu, 1.0, sched)?;
    let bare = pktcrypt::bench_bare(&pktcrypt::TEST_KEY, packets, 1024);
    let map = RingMap::create_file(ring, carve_fastpath::ring::DEFAULT_SLOT_SIZE, 1024)?;
    let (ring_ns, ring_pps) = seal_from_ring(map, packets);
    let _ = std::fs::remove_file(ring);
    Ok(WorkerReport {
        share,
        bare_ns: bare.median_ns_per_packet,
        ring_ns,
        ring_pps,
        tsc_hz,
    })
}

fn line(core: &str, w: &WorkerReport) -> CoreLine {
    let ghz = w.tsc_hz;
    let cycles = w.bare_ns * ghz / 1e9;
    let overhead = ((w.ring_ns - w.bare_ns) * ghz / 1e9).max(0.0);
    let predicted = model_pps(ghz, w.share, cycles, overhead);
    CoreLine {
        core: core.to_string(),
        share: w.share,
        bare_ns: w.bare_ns,
        ring_ns: w.ring_ns,
        cycles_per_packet: cycles,
        overhead_cycles: overhead,
        predicted_pps: predicted,
        measured_pps: w.ring_pps,
        ratio: w.ring_pps / predicted,
    }
}

/// Whether the kernel offers AF_ALG sockets.
pub fn has_af_alg() -> bool {
    // SAFETY: socket(2) with constant arguments; the fd is closed right away.
    let fd = unsafe { libc::socket(libc::AF_ALG, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: fd was just returned by socket(2).
        unsafe { libc::close(fd) };
    }
    fd >= 0
}

/// (1 KiB write + read through a pipe, 1 KiB memcpy), ns, medians of 15 batches.
fn kernel_copy_costs() -> (f64, f64) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) fills two fds.
    unsafe { libc::pipe(fds.as_mut_ptr()) };
    let src = [7u8; 1024];
    let mut dst = [0u8; 1024];
    let mut rt = Vec::new();
    let mut cp = Vec::new();
    for _ in 0..15 {
        let t0 = Instant::now();
        for _ in 0..2000 {
            // SAFETY: valid fds and buffers of 1024 bytes; a pipe holds 64 KiB, so the write
            // never blocks before the read.
            unsafe {
                libc::write(fds[1], src.as_ptr().cast(), 1024);
                libc::read(fds[0], dst.as_mut_ptr().cast(), 1024);
            }
        }
        rt.push(t0.elapsed().as_nanos() as f64 / 2000.0);
        let t0 = Instant::now();
        for i in 0..20000u32 {
            let s = std::hint::black_box(&src);
            dst.copy_from_slice(s);
            dst[0] = i as u8;
            std::hint::black_box(&dst);
        }
        cp.push(t0.elapsed().as_nanos() as f64 / 20000.0);
    }
    // SAFETY: closing the two fds made above.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    (crate::stats::median(&rt), crate::stats::median(&cp))
}

/// Runs the shared-core measurement in this process and the dedicated one under `carve run
/// --dedicated CPU --sched fifo:99 -- carve bench packet --worker ...`.
pub fn run(
    tools: &Tools,
    cpu: Option<usize>,
    packets: u64,
    dedicated: bool,
) -> Result<Packet, BenchError> {
    let cpu = match cpu {
        Some(c) => c,
        None => crate::default_cpu()?,
    };
    let gen_cpu = crate::online_cpus()?
        .iter()
        .find(|&c| c != cpu)
        .unwrap_or(0);
    let shared = shared_core(cpu, gen_cpu, packets)?;
    let mut lines = vec![line("shared core (SCHED_OTHER)", &shared)];
    if dedicated {
        let w = dedicated_core(tools, cpu, gen_cpu, packets)?;
        lines.push(line("dedicated core (FIFO 99)", &w));
    }
    let accel = accel_line(lines.last().expect("a line"));
    Ok(Packet {
        cpu,
        tsc_hz: shared.tsc_hz,
        packets,
        seed: seed_lines(),
        lines,
        accel,
    })
}

/// A ring file of this run in /dev/shm, named by `tag`.
fn ring_path(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/dev/shm/carve-bench-ring-{}-{}-{tag}",
        std::process::id(),
        crate::unique()
    ))
}

/// Pins the calling thread to `cpu` (a placement the kernel refuses leaves it where it was).
fn pin(cpu: usize) {
    let _ = ThreadPlacement {
        cpu: Some(cpu),
        fifo: None,
    }
    .apply();
}

/// Shared core: the worker on a thread pinned to `cpu`, the generator pinned to `gen_cpu`.
fn shared_core(cpu: usize, gen_cpu: usize, packets: u64) -> Result<WorkerReport, BenchError> {
    let path = ring_path("shared");
    let shared = std::thread::scope(|s| {
        let g = s.spawn(|| {
            pin(gen_cpu);
            generate_into(&path, packets)
        });
        let w = s.spawn(|| {
            pin(cpu);
            worker(&path, packets, SchedPolicy::Other, cpu)
        });
        let w = w.join().expect("worker thread");
        let g = g.join().expect("generator thread");
        w.and_then(|w| g.map(|()| w))
    });
    let _ = std::fs::remove_file(&path);
    shared
}

/// Dedicated core: `carve bench packet --worker` under `carve run --dedicated`, fed by a
/// generator thread pinned to `gen_cpu`.
fn dedicated_core(
    tools: &Tools,
    cpu: usize,
    gen_cpu: usize,
    packets: u64,
) -> Result<WorkerReport, BenchError> {
    let path = ring_path("dedicated");
    let mut cmd = tools.dedicated_fifo(cpu);
    cmd.arg(&tools.carve)
        .args(["bench", "packet", "--worker"])
        .arg(&path)
        .args(["--packets", &packets.to_string(), "--cpu", &cpu.to_string()]);
    let out = std::thread::scope(|s| {
        let g = s.spawn(|| {
            pin(gen_cpu);
            generate_into(&path, packets)
        });
        let o = run_with_deadline(&mut cmd, Duration::from_secs(900));
        if o.is_err() {
            // The generator waits for a ring that will not come: let it time out quietly.
            let _ = std::fs::remove_file(&path);
        }
        let g = g.join().expect("generator thread");
        o.and_then(|o| g.map(|()| o))
    });
    let _ = std::fs::remove_file(&path);
    serde_json::from_str(out?.stdout.trim())
        .map_err(|e| BenchError::Parse(format!("the dedicated worker's report: {e}")))
}

/// The seed's three modelled lines.
fn seed_lines() -> Vec<(String, f64, f64)> {
    vec![
        (
            SEED_LINES[0].0.into(),
            model_pps(1e9, 0.98, 100_000.0, 500.0),
            SEED_LINES[0].1,
        ),
        (
            SEED_LINES[1].0.into(),
            model_pps(1e9, 0.99, 100_000.0, 500.0),
            SEED_LINES[1].1,
        ),
        (
            SEED_LINES[2].0.into(),
            model_pps(1e9, 1.0, 50_000.0, 10_000.0 + 2.0 * 1024.0 / 8.0 * 20.0),
            SEED_LINES[2].1,
        ),
    ]
}

/// The accelerator line, modelled from the best measured core and this kernel's copy costs.
fn accel_line(best: &CoreLine) -> AccelLine {
    let (rt, copy) = kernel_copy_costs();
    let accel_ns = best.bare_ns / 2.0;
    let app_ns = rt;
    let accel_pps = 1e9 * best.share / (accel_ns + app_ns);
    let af_alg = has_af_alg();
    AccelLine {
        af_alg,
        note: if af_alg {
            "this kernel offers AF_ALG; the line is still the model (no accelerator is driven)"
                .into()
        } else {
            "no AF_ALG on this kernel (socket(AF_ALG) fails): modelled as the seed does — the \
             accelerator at half the software crypto time, plus the measured cost of handing 1 KiB \
             to the kernel and back (a pipe write + read: two syscalls, two copies)"
                .into()
        },
        kernel_round_trip_ns: rt,
        copy_ns: copy,
        accel_ns,
        predicted_pps: accel_pps,
        cpu_share: app_ns / (accel_ns + app_ns),
    }
}

/// The table as text.
pub fn render(p: &Packet) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "carve bench packet: AES-128-GCM over 1 KiB packets, CPU {}, TSC {:.3} GHz, {} packets per loop",
        p.cpu,
        p.tsc_hz / 1e9,
        p.packets
    );
    let _ = writeln!(
        s,
        "{:<28} {:>7} {:>12} {:>11} {:>12} {:>12} {:>9}",
        "line", "share", "cycles/pkt", "overhead", "predicted/s", "measured/s", "meas÷pred"
    );
    for l in &p.lines {
        let _ = writeln!(
            s,
            "{:<28} {:>6.2}% {:>12.0} {:>11.0} {:>12.0} {:>12.0} {:>9.3}",
            l.core,
            l.share * 100.0,
            l.cycles_per_packet,
            l.overhead_cycles,
            l.predicted_pps,
            l.measured_pps,
            l.ratio
        );
    }
    let a = &p.accel;
    let _ = writeln!(
        s,
        "{:<28} {:>7} {:>12} {:>11} {:>12.0} {:>12} {:>9}   (app CPU {:.0} %)",
        "accelerator (model)",
        "",
        format!("{:.0} ns", a.accel_ns),
        format!("{:.0} ns", a.kernel_round_trip_ns),
        a.predicted_pps,
        "-",
        "",
        a.cpu_share * 100.0
    );
    let _ = writeln!(
        s,
        "accelerator: {}; 1 KiB memcpy {:.0} ns",
        a.note, a.copy_ns
    );
    for (label, computed, printed) in &p.seed {
        let _ = writeln!(
            s,
            "seed 000: {label}: {:.0} packets/s, truncated as the seed does (the seed prints {printed:.0})",
            computed.floor()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_arithmetic_reproduces() {
        assert_eq!(model_pps(1e9, 0.98, 100_000.0, 500.0).floor(), 9751.0);
        assert_eq!(model_pps(1e9, 0.99, 100_000.0, 500.0).floor(), 9850.0);
        let accel = model_pps(1e9, 1.0, 50_000.0, 10_000.0 + 2.0 * 128.0 * 20.0);
        assert_eq!(accel.round(), 15356.0);
        let (rt, cp) = kernel_copy_costs();
        assert!(rt > cp && cp > 0.0, "{rt} {cp}");
    }
}
