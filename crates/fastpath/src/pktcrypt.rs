//! The example fast path: AES-128-GCM sealing of 1 KiB packets taken from a [`crate::ring`],
//! in place, with packet/byte counters. `carve-pktcrypt` is the program around it and
//! `carve bench fastpath` measures it against the same loop run bare.
//!
//! A packet on the ring is [`PLAINTEXT_LEN`] bytes of plaintext followed by [`TAG_LEN`] bytes
//! of room: the fast path encrypts the plaintext where it lies and writes the tag after it.

use crate::ring::{Consumer, Producer};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Plaintext bytes per packet.
pub const PLAINTEXT_LEN: usize = 1024;
/// AES-GCM tag bytes appended in place.
pub const TAG_LEN: usize = 16;
/// Bytes of a packet on the ring (plaintext + room for the tag).
pub const PACKET_LEN: usize = PLAINTEXT_LEN + TAG_LEN;
/// The fixed test key (the AES-128 key of FIPS-197 appendix A), used unless
/// `CARVE_PKTCRYPT_KEY` holds 32 hex digits.
pub const TEST_KEY: [u8; 16] = [
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
];
/// Packets moved per ring operation.
pub const BATCH: usize = 32;

/// Errors of the example fast path.
#[derive(Debug, thiserror::Error)]
pub enum PktcryptError {
    /// A key that is not 32 hex digits.
    #[error("CARVE_PKTCRYPT_KEY must be 32 hex digits (AES-128), got {0} characters")]
    BadKey(usize),
    /// A packet shorter than a plaintext plus a tag.
    #[error("packet of {0} bytes is shorter than {PACKET_LEN} (1 KiB + 16-byte tag room)")]
    ShortPacket(usize),
    /// The stats file could not be written.
    #[error("could not write stats file {path}: {source}")]
    Stats {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Parses a 32-hex-digit key.
pub fn parse_key(hex: &str) -> Result<[u8; 16], PktcryptError> {
    let hex = hex.trim();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PktcryptError::BadKey(hex.len()));
    }
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(k)
}

/// The key from `CARVE_PKTCRYPT_KEY`, or [`TEST_KEY`].
pub fn key_from_env() -> Result<[u8; 16], PktcryptError> {
    match std::env::var("CARVE_PKTCRYPT_KEY") {
        Ok(h) => parse_key(&h),
        Err(_) => Ok(TEST_KEY),
    }
}

/// AES-128-GCM with a counter nonce (4 zero bytes + 64-bit counter: never repeats per key
/// within a run).
pub struct Sealer {
    key: LessSafeKey,
    counter: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(counter {})", self.counter)
    }
}

impl Sealer {
    /// A sealer for a 16-byte key.
    pub fn new(key: &[u8; 16]) -> Self {
        let k = UnboundKey::new(&AES_128_GCM, key).expect("16 bytes is an AES-128 key");
        Sealer {
            key: LessSafeKey::new(k),
            counter: 0,
        }
    }

    /// Encrypts `packet[..PLAINTEXT_LEN]` in place and writes the tag into the next 16 bytes.
    /// Returns the nonce counter used.
    #[inline]
    pub fn seal(&mut self, packet: &mut [u8]) -> Result<u64, PktcryptError> {
        if packet.len() < PACKET_LEN {
            return Err(PktcryptError::ShortPacket(packet.len()));
        }
        let n = self.counter;
        self.counter += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        let (data, rest) = packet.split_at_mut(PLAINTEXT_LEN);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), data)
            .expect("AES-GCM sealing of 1 KiB cannot fail");
        rest[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(n)
    }

    /// Decrypts a sealed packet in place (to check the fast path's output).
    pub fn open(&self, counter: u64, packet: &mut [u8]) -> bool {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        self.key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut packet[..PACKET_LEN],
            )
            .is_ok()
    }
}

/// Fills a packet: a recognizable pattern with the sequence number in its first 8 bytes.
/// Written with streaming stores ([`crate::ring::copy_streaming`]): the first line is built
/// on the stack so that no plain store pulls a line of the packet back into this core's cache.
#[inline]
pub fn fill_packet(template: &[u8; PLAINTEXT_LEN], seq: u64, buf: &mut [u8]) -> usize {
    let mut first = [0u8; 64];
    first.copy_from_slice(&template[..64]);
    first[..8].copy_from_slice(&seq.to_le_bytes());
    crate::ring::copy_streaming(&mut buf[..64], &first);
    crate::ring::copy_streaming(&mut buf[64..PLAINTEXT_LEN], &template[64..]);
    PACKET_LEN
}

/// The generator's packet template.
pub fn template() -> [u8; PLAINTEXT_LEN] {
    let mut t = [0u8; PLAINTEXT_LEN];
    for (i, b) in t.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7).wrapping_add(3);
    }
    t
}

/// Counters shared between the fast path and whoever reports them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Packets sealed.
    pub packets: AtomicU64,
    /// Plaintext bytes sealed.
    pub bytes: AtomicU64,
    /// Nanoseconds spent sealing (in batches that had packets; empty polls excluded).
    pub busy_ns: AtomicU64,
}

/// Takes up to one batch from the ring and seals it in place; returns packets processed.
#[inline]
pub fn process_batch(c: &mut Consumer, sealer: &mut Sealer, bad: &mut u64) -> usize {
    c.pop_with(BATCH, |_, p| {
        if sealer.seal(p).is_err() {
            *bad += 1;
        }
    })
}

/// Pushes up to one batch of generated packets; returns how many went in.
#[inline]
pub fn generate_batch(p: &mut Producer, tpl: &[u8; PLAINTEXT_LEN], seq: &mut u64) -> usize {
    let base = *seq;
    let n = p.push_with(BATCH, |i, buf| fill_packet(tpl, base + i as u64, buf));
    *seq += n as u64;
    n
}

/// One reporting period's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Packets per second of wall time.
    pub packets_per_sec: f64,
    /// Sealing time per packet (busy time / packets).
    pub ns_per_packet: f64,
}

/// Computes the figures between two counter readings over `wall`.
pub fn rate(d_packets: u64, d_busy_ns: u64, wall: Duration) -> Rate {
    let secs = wall.as_secs_f64();
    Rate {
        packets_per_sec: if secs > 0.0 {
            d_packets as f64 / secs
        } else {
            0.0
        },
        ns_per_packet: if d_packets > 0 {
            d_busy_ns as f64 / d_packets as f64
        } else {
            0.0
        },
    }
}

/// The stats document (`--stats FILE`), as JSON text.
pub fn stats_json(
    packets: u64,
    bytes: u64,
    r: Rate,
    uptime: Duration,
    cpu: Option<usize>,
    ring: &str,
) -> String {
    let cpu = cpu.map_or("null".to_string(), |c| c.to_string());
    let ring = ring.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "{{\"packets\":{packets},\"bytes\":{bytes},\"packets_per_sec\":{:.1},\"ns_per_packet\":{:.1},\
         \"uptime_s\":{:.3},\"cpu\":{cpu},\"ring\":\"{ring}\",\"cipher\":\"AES-128-GCM\",\"packet_bytes\":{PLAINTEXT_LEN}}}\n",
        r.packets_per_sec,
        r.ns_per_packet,
        uptime.as_secs_f64()
    )
}

/// Atomically replaces `path` with `content` (write a sibling temp file, rename), so a reader
/// (an HTTP server in a control container) never sees half a document.
pub fn write_atomically(path: &Path, content: &str) -> Result<(), PktcryptError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let err = |source| PktcryptError::Stats {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(content.as_bytes()).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// What a benchmark loop measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopStats {
    /// Time inside batches that had packets, per packet: the fast path's own cost (what
    /// `carve-pktcrypt` reports as ns/packet).
    pub busy_ns_per_packet: f64,
    /// Wall time from the first packet to the last, per packet (includes waiting for packets).
    pub wall_ns_per_packet: f64,
    /// Mean packets per non-empty batch.
    pub mean_batch: f64,
    /// Median time of a full batch ([`BATCH`] packets), per packet: the steady-state cost,
    /// insensitive to the preemptions a shared core suffers (a dedicated core has none; its
    /// remaining noise is what `carve noise` measures). 0 when no batch was full.
    pub median_ns_per_packet: f64,
}

/// Median per-packet cost from the durations (ns) of full batches.
fn median_per_packet(mut full: Vec<u32>) -> f64 {
    if full.is_empty() {
        return 0.0;
    }
    full.sort_unstable();
    let n = full.len();
    let m = if n % 2 == 1 {
        f64::from(full[n / 2])
    } else {
        (f64::from(full[n / 2 - 1]) + f64::from(full[n / 2])) / 2.0
    };
    m / BATCH as f64
}

/// Seals `packets` packets taken in batches of [`BATCH`] from a pool of `pool` buffers, with no
/// ring: the bare loop the ring path is compared with. Timed per batch like the ring path.
pub fn bench_bare(key: &[u8; 16], packets: u64, pool: usize) -> LoopStats {
    let tpl = template();
    let pool = pool.max(BATCH);
    // The same memory layout as ring slots: one packet per 2 KiB, payload after a 64-byte line.
    const STRIDE: usize = crate::ring::DEFAULT_SLOT_SIZE as usize;
    const AT: usize = crate::ring::SLOT_HEADER;
    let mut bufs = vec![0u8; pool * STRIDE];
    for (i, b) in bufs.chunks_mut(STRIDE).enumerate() {
        fill_packet(&tpl, i as u64, &mut b[AT..]);
    }
    let mut s = Sealer::new(key);
    let (mut done, mut busy, mut batches) = (0u64, 0u64, 0u64);
    let mut full: Vec<u32> = Vec::with_capacity((packets / BATCH as u64) as usize + 1);
    let mut at = 0usize;
    let start = Instant::now();
    while done < packets {
        let n = (BATCH as u64).min(packets - done) as usize;
        let n = n.min(pool - at);
        let t0 = Instant::now();
        for b in bufs[at * STRIDE..(at + n) * STRIDE].chunks_mut(STRIDE) {
            s.seal(&mut b[AT..AT + PACKET_LEN])
                .expect("full-size packet");
        }
        let dt = t0.elapsed().as_nanos() as u64;
        busy += dt;
        if n == BATCH {
            full.push(dt.min(u64::from(u32::MAX)) as u32);
        }
        batches += 1;
        done += n as u64;
        at = (at + n) % pool;
    }
    let wall = start.elapsed().as_nanos() as f64;
    std::hint::black_box(&bufs);
    LoopStats {
        busy_ns_per_packet: busy as f64 / packets as f64,
        wall_ns_per_packet: wall / packets as f64,
        mean_batch: packets as f64 / batches as f64,
        median_ns_per_packet: median_per_packet(full),
    }
}

/// Where and how a benchmark thread runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadPlacement {
    /// Pin to this CPU.
    pub cpu: Option<usize>,
    /// Run at this SCHED_FIFO priority.
    pub fifo: Option<i32>,
}

impl ThreadPlacement {
    /// Applies this placement to the calling thread.
    pub fn apply(&self) -> Result<(), crate::memory::MemoryError> {
        if let Some(cpu) = self.cpu {
            crate::memory::pin_current_thread(&[cpu])?;
        }
        if let Some(p) = self.fifo {
            crate::memory::set_fifo_current_thread(p)?;
        }
        Ok(())
    }
}

/// How a generator waits when the ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProducerMode {
    /// Wait politely ([`crate::ring::Producer::wait_free`]) until a burst of slots is free,
    /// then refill them: what `carve-pktcrypt --generate` and the benchmark do.
    #[default]
    Burst,
    /// Retry at once (one PAUSE): the tight loop this code had before. Kept to measure what it
    /// costs (`carve bench fastpath` prints it as part of the breakdown).
    Spin,
}

/// The burst a waiting generator refills: half the ring. Measured on an AMD EPYC guest (2
/// vCPUs): a producer retrying at once held the sealing loop at 0.6–0.7× the bare loop's
/// speed; refilling in half-ring bursts brings it to 0.97–1.0×.
pub fn refill_burst(capacity: u32) -> usize {
    (capacity as usize / 2).max(1)
}

/// Seals `packets` packets arriving through a ring of `capacity` slots from a generator thread
/// placed at `producer`, the sealing loop at `consumer`.
pub fn bench_ring(
    key: &[u8; 16],
    packets: u64,
    capacity: u32,
    producer: ThreadPlacement,
    consumer: ThreadPlacement,
) -> Result<LoopStats, crate::ring::RingError> {
    bench_ring_with(
        key,
        packets,
        capacity,
        producer,
        consumer,
        ProducerMode::Burst,
    )
}

/// One thread fills a batch into the ring and seals it, batch after batch: the ring's own
/// cost (bookkeeping, the copy into the slot, the prefetches) without any line crossing cores.
pub fn bench_ring_local(
    key: &[u8; 16],
    packets: u64,
    capacity: u32,
) -> Result<LoopStats, crate::ring::RingError> {
    let ring = crate::ring::RingMap::create_memfd("carve-bench-ring-local", 2048, capacity)?;
    let (mut p, mut c) = ring.split();
    let tpl = template();
    let mut sealer = Sealer::new(key);
    let (mut seq, mut bad) = (0u64, 0u64);
    let mut times = BatchTimes::new(packets);
    while times.done < packets {
        let t0 = Instant::now();
        generate_batch(&mut p, &tpl, &mut seq);
        let n = process_batch(&mut c, &mut sealer, &mut bad);
        times.record(t0, n);
    }
    assert_eq!(bad, 0, "short packets on the ring");
    Ok(times.stats(packets))
}

/// The clock of a sealing loop: busy time, batches, and the times of full batches (for the
/// median), turned into [`LoopStats`] at the end.
struct BatchTimes {
    start: Instant,
    done: u64,
    busy: u64,
    batches: u64,
    full: Vec<u32>,
}

impl BatchTimes {
    /// Starts the wall clock now, for a loop of `packets` packets.
    fn new(packets: u64) -> Self {
        BatchTimes {
            start: Instant::now(),
            done: 0,
            busy: 0,
            batches: 0,
            full: Vec::with_capacity((packets / BATCH as u64) as usize + 1),
        }
    }

    /// Counts a batch of `n` packets whose work began at `t0`.
    fn record(&mut self, t0: Instant, n: usize) {
        let dt = t0.elapsed().as_nanos() as u64;
        self.busy += dt;
        if n == BATCH {
            self.full.push(dt.min(u64::from(u32::MAX)) as u32);
        }
        self.batches += 1;
        self.done += n as u64;
    }

    fn stats(self, packets: u64) -> LoopStats {
        LoopStats {
            busy_ns_per_packet: self.busy as f64 / packets as f64,
            wall_ns_per_packet: self.start.elapsed().as_nanos() as f64 / packets as f64,
            mean_batch: packets as f64 / self.batches.max(1) as f64,
            median_ns_per_packet: median_per_packet(self.full),
        }
    }
}

/// [`bench_ring`] with the generator waiting as `mode` says.
pub fn bench_ring_with(
    key: &[u8; 16],
    packets: u64,
    capacity: u32,
    producer: ThreadPlacement,
    consumer: ThreadPlacement,
    mode: ProducerMode,
) -> Result<LoopStats, crate::ring::RingError> {
    let feed = Feed {
        mode,
        ..Feed::default()
    };
    bench_ring_fed(key, packets, capacity, producer, consumer, feed)
}

/// What else runs on the generator's CPU during a benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProducerLoad {
    /// Nothing the benchmark starts.
    #[default]
    None,
    /// A thread spinning at normal priority on the generator's CPU for the whole run: the
    /// demo's control core, which also carries a VM (examples/gateway.toml).
    Hog,
}

/// How a benchmark's generator feeds the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Feed {
    /// How it waits when the ring is full.
    pub mode: ProducerMode,
    /// Packets per second ([`generate`]'s pacing, as `carve-pktcrypt --generate --rate`);
    /// none: as fast as the ring takes them.
    pub rate: Option<u64>,
    /// What shares the generator's CPU.
    pub load: ProducerLoad,
}

/// The packet generator of `carve-pktcrypt --generate` and of the benchmarks: pushes numbered
/// packets in batches until `limit` packets went in or `stop` is set. With a `rate` it sleeps
/// 100 µs whenever it is ahead of `rate` packets per second, so packets arrive in bursts of
/// about one batch, as in the demo. A full ring is waited for as `mode` says.
pub fn generate(
    p: &mut Producer,
    limit: u64,
    rate: Option<u64>,
    mode: ProducerMode,
    stop: &AtomicBool,
) -> u64 {
    let tpl = template();
    let mut seq = 0u64;
    let start = Instant::now();
    while seq < limit && !stop.load(Ordering::Relaxed) {
        if let Some(r) = rate {
            let due = (start.elapsed().as_secs_f64() * r as f64) as u64;
            if seq >= due {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
        }
        let base = seq;
        let want = (limit - seq).min(BATCH as u64) as usize;
        let n = p.push_with(want, |i, buf| fill_packet(&tpl, base + i as u64, buf));
        seq += n as u64;
        if n == 0 {
            match mode {
                ProducerMode::Burst => {
                    p.wait_free(refill_burst(p.ring().capacity() as u32), 1000);
                }
                ProducerMode::Spin => std::hint::spin_loop(),
            }
        }
    }
    seq
}

/// Spins on `place`'s CPU at normal priority until `stop` is set.
fn hog(place: ThreadPlacement, stop: &AtomicBool) {
    let _ = ThreadPlacement {
        fifo: None,
        ..place
    }
    .apply();
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// Seals `packets` packets from a ring fed by a generator thread at `producer` as `feed` says,
/// the sealing loop at `consumer`. Each batch that had packets is timed (the waits for an empty
/// ring are not: the same busy time `carve-pktcrypt` reports as ns/packet).
pub fn bench_ring_fed(
    key: &[u8; 16],
    packets: u64,
    capacity: u32,
    producer: ThreadPlacement,
    consumer: ThreadPlacement,
    feed: Feed,
) -> Result<LoopStats, crate::ring::RingError> {
    let ring = crate::ring::RingMap::create_memfd("carve-bench-ring", 2048, capacity)?;
    let (mut p, mut c) = ring.split();
    let done = AtomicBool::new(false);
    Ok(std::thread::scope(|s| {
        if feed.load == ProducerLoad::Hog {
            s.spawn(|| hog(producer, &done));
        }
        s.spawn(|| {
            // A placement the kernel refuses leaves the thread where it was: still a result.
            // A paced generator runs at normal priority, as the demo's does in its container.
            let place = if feed.rate.is_some() {
                ThreadPlacement {
                    fifo: None,
                    ..producer
                }
            } else {
                producer
            };
            let _ = place.apply();
            generate(&mut p, packets, feed.rate, feed.mode, &done);
        });
        let sealing = s.spawn(|| {
            // Stops the generator and the hog even when this thread panics (else the scope
            // would wait for them forever).
            let _stop = StopOnDrop(&done);
            let _ = consumer.apply();
            let mut sealer = Sealer::new(key);
            let mut bad = 0;
            // Wait for the first packet, then time the whole stream.
            while c.ring().is_empty() {
                std::hint::spin_loop();
            }
            let mut times = BatchTimes::new(packets);
            while times.done < packets {
                let t0 = Instant::now();
                let n = process_batch(&mut c, &mut sealer, &mut bad);
                if n == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                times.record(t0, n);
            }
            assert_eq!(bad, 0, "short packets on the ring");
            times.stats(packets)
        });
        sealing.join().expect("sealing thread")
    }))
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_packets_open_with_the_same_key() {
        let mut s = Sealer::new(&TEST_KEY);
        let tpl = template();
        let mut p = vec![0u8; 2040];
        fill_packet(&tpl, 42, &mut p);
        let orig = p[..PLAINTEXT_LEN].to_vec();
        let n = s.seal(&mut p[..PACKET_LEN]).unwrap();
        assert_ne!(&p[..PLAINTEXT_LEN], &orig[..], "encrypted in place");
        assert!(s.open(n, &mut p));
        assert_eq!(&p[..PLAINTEXT_LEN], &orig[..]);
        assert!(matches!(
            s.seal(&mut [0u8; 100]),
            Err(PktcryptError::ShortPacket(100))
        ));
    }

    #[test]
    fn ring_packets_are_sealed_in_place() {
        let ring = crate::ring::RingMap::create_memfd("t", 2048, 64).unwrap();
        let (mut p, mut c) = ring.split();
        let tpl = template();
        let mut seq = 0;
        assert_eq!(generate_batch(&mut p, &tpl, &mut seq), BATCH);
        let mut s = Sealer::new(&TEST_KEY);
        let mut bad = 0;
        let mut copies = Vec::new();
        // The consumer owns the slot data only inside the closure: copy the sealed packets out.
        let n = c.pop_with(BATCH, |_, pkt| {
            s.seal(pkt).unwrap();
            copies.push(pkt.to_vec());
        });
        assert_eq!(n, BATCH);
        let opener = Sealer::new(&TEST_KEY);
        for (i, mut pkt) in copies.into_iter().enumerate() {
            assert!(opener.open(i as u64, &mut pkt));
            assert_eq!(u64::from_le_bytes(pkt[..8].try_into().unwrap()), i as u64);
            assert_eq!(&pkt[8..PLAINTEXT_LEN], &tpl[8..]);
        }
        assert_eq!(process_batch(&mut c, &mut s, &mut bad), 0);
        assert_eq!(bad, 0);
    }

    #[test]
    fn keys_and_stats_documents() {
        assert_eq!(
            parse_key("2b7e151628aed2a6abf7158809cf4f3c").unwrap(),
            TEST_KEY
        );
        assert!(matches!(parse_key("abc"), Err(PktcryptError::BadKey(3))));
        let r = rate(1000, 125_000, Duration::from_millis(500));
        assert_eq!(r.packets_per_sec, 2000.0);
        assert_eq!(r.ns_per_packet, 125.0);
        let j = stats_json(
            10,
            10240,
            r,
            Duration::from_secs(2),
            Some(1),
            "/dev/shm/x\"y",
        );
        assert!(j.contains("\"packets\":10,"), "{j}");
        assert!(j.contains("\"ns_per_packet\":125.0"), "{j}");
        assert!(j.contains("\"ring\":\"/dev/shm/x\\\"y\""), "{j}");
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("stats.json");
        write_atomically(&f, &j).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), j);
    }

    #[test]
    fn bench_loops_run() {
        let b = bench_bare(&TEST_KEY, 1000, 16);
        assert!(b.busy_ns_per_packet > 0.0 && b.wall_ns_per_packet >= b.busy_ns_per_packet);
        assert!(b.mean_batch > 1.0, "{b:?}"); // batches of up to 32 from a pool of 32
        let r = bench_ring(&TEST_KEY, 1000, 64, Default::default(), Default::default()).unwrap();
        assert!(r.busy_ns_per_packet > 0.0 && r.mean_batch >= 1.0, "{r:?}");
        assert!(b.median_ns_per_packet > 0.0, "{b:?}");
        assert_eq!(median_per_packet(vec![320, 64, 3200]), 10.0);
        assert_eq!(median_per_packet(vec![]), 0.0);
    }
}
