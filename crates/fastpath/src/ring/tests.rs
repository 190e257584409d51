use super::*;

fn ring(slot: u32, cap: u32) -> RingMap {
    RingMap::create_memfd("carve-test-ring", slot, cap).unwrap()
}

/// A packet whose length and bytes derive from its sequence number, so the receiver can check it.
fn packet(seq: u64, buf: &mut [u8]) -> usize {
    let len = 1 + (seq.wrapping_mul(2654435761) % (buf.len() as u64)) as usize;
    for (i, b) in buf[..len].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8).wrapping_mul(31);
    }
    len
}

#[test]
fn header_layout_is_as_documented() {
    assert_eq!(std::mem::size_of::<RingHeader>(), 24);
    assert_eq!(std::mem::offset_of!(RingHeader, version), 8);
    assert_eq!(std::mem::offset_of!(RingHeader, slot_size), 12);
    assert_eq!(std::mem::offset_of!(RingHeader, capacity), 16);
    assert_eq!(std::mem::offset_of!(RingHeader, slots_offset), 20);
    assert_eq!(ring_bytes(2048, 4), 384 + 8192);
    let r = ring(2048, 4);
    let h = r.header();
    assert_eq!(h.magic, MAGIC);
    assert_eq!(
        (h.version, h.slot_size, h.capacity, h.slots_offset),
        (1, 2048, 4, 384)
    );
    assert_eq!(r.max_packet(), 1984);
    // head and tail each sit alone in a 128-byte block, away from the header.
    assert_eq!(HEAD_OFFSET % 128, 0);
    assert_eq!(TAIL_OFFSET - HEAD_OFFSET, 128);
    assert_eq!(SLOTS_OFFSET - TAIL_OFFSET, 128);
}

#[test]
fn bad_geometry_is_refused() {
    assert!(RingMap::create_memfd("x", 100, 4).is_err());
    assert!(RingMap::create_memfd("x", 64, 4).is_err());
    assert!(RingMap::create_memfd("x", 2048, 3).is_err());
    assert!(RingMap::create_memfd("x", 2048, 1).is_err());
}

#[test]
fn single_thread_fifo_semantics() {
    let (mut p, mut c) = ring(256, 8).split();
    let mut buf = [0u8; 256];
    assert_eq!(c.pop(&mut buf), None);
    assert!(p.push(b"one"));
    assert!(p.push(b""));
    assert!(p.push(&[7u8; 192]));
    assert_eq!(p.ring().len(), 3);
    assert_eq!(c.pop(&mut buf), Some(3));
    assert_eq!(&buf[..3], b"one");
    assert_eq!(c.pop(&mut buf), Some(0));
    assert_eq!(c.pop(&mut buf), Some(192));
    assert_eq!(&buf[..192], &[7u8; 192]);
    assert_eq!(c.pop(&mut buf), None);
    assert!(c.ring().is_empty());
    assert_eq!((c.ring().enqueued(), c.ring().dequeued()), (3, 3));
}

#[test]
#[should_panic(expected = "exceeds slot payload")]
fn oversized_packets_panic() {
    let (mut p, _c) = ring(128, 2).split();
    p.push(&[0u8; 65]);
}

#[test]
fn full_and_empty() {
    let (mut p, mut c) = ring(128, 4).split();
    for i in 0..4u8 {
        assert!(p.push(&[i]), "slot {i}");
    }
    assert!(!p.push(&[9]), "full");
    assert_eq!(p.push_batch(&[b"a", b"b"]), 0);
    assert_eq!(p.ring().len(), 4);
    let mut seen = Vec::new();
    assert_eq!(c.pop_with(2, |_, b| seen.push(b[0])), 2);
    // Two slots free again: a batch of three enqueues two.
    assert_eq!(p.push_batch(&[b"x", b"y", b"z"]), 2);
    assert_eq!(c.pop_with(10, |_, b| seen.push(b[0])), 4);
    assert_eq!(seen, vec![0, 1, 2, 3, b'x', b'y']);
    assert_eq!(c.pop_with(10, |_, _| panic!("empty")), 0);
}

#[test]
fn wraparound_keeps_order_and_contents() {
    let (mut p, mut c) = ring(128, 4).split();
    let (mut sent, mut got) = (0u64, 0u64);
    // Batches of varying size walk the indices many times around the 4 slots.
    for round in 0..2000u64 {
        let want = (round % 5) as usize + 1;
        sent += p.push_with(want, |i, buf| packet(sent + i as u64, &mut buf[..64])) as u64;
        let max = (round % 3) as usize + 1;
        got += c.pop_with(max, |i, b| {
            let seq = got + i as u64;
            let mut w = [0u8; 64];
            let n = packet(seq, &mut w);
            assert_eq!(b, &w[..n], "packet {seq}");
        }) as u64;
    }
    while c.pop_with(4, |_, _| {}) > 0 {}
    assert!(sent > 4000, "{sent}");
    assert_eq!(c.ring().dequeued(), sent);
}

#[test]
fn in_place_edits_are_seen_only_by_the_consumer() {
    let (mut p, mut c) = ring(128, 2).split();
    p.push(b"abc");
    c.pop_with(1, |_, b| b.make_ascii_uppercase());
    p.push(b"def");
    let mut buf = [0u8; 8];
    assert_eq!(c.pop(&mut buf), Some(3));
    assert_eq!(&buf[..3], b"def");
}

#[test]
fn two_threads_stress_with_checksums() {
    const N: u64 = 50_000;
    let (mut p, mut c) = ring(2048, 64).split();
    let producer = std::thread::spawn(move || {
        let mut sent = 0u64;
        let mut sum = 0u64;
        while sent < N {
            let batch = ((sent % 7) + 1).min(N - sent) as usize;
            let n = p.push_with(batch, |i, buf| {
                let seq = sent + i as u64;
                let len = packet(seq, &mut buf[..1500]);
                sum = buf[..len]
                    .iter()
                    .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
                len
            });
            if n == 0 {
                std::hint::spin_loop();
                std::thread::yield_now();
            }
            sent += n as u64;
        }
        sum
    });
    let mut got = 0u64;
    let mut sum = 0u64;
    let mut scratch = [0u8; 1500];
    while got < N {
        let n = c.pop_with(((got % 5) + 1) as usize, |i, b| {
            let seq = got + i as u64;
            let len = packet(seq, &mut scratch);
            assert_eq!(b.len(), len, "length of packet {seq}");
            assert_eq!(b, &scratch[..len], "packet {seq}");
            sum = b
                .iter()
                .fold(sum, |s, &x| s.wrapping_mul(31).wrapping_add(u64::from(x)));
        });
        if n == 0 {
            std::thread::yield_now();
        }
        got += n as u64;
    }
    assert_eq!(producer.join().unwrap(), sum);
    assert!(c.ring().is_empty());
}

#[test]
fn files_are_published_whole_and_checked_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let created = RingMap::create_file(&path, 256, 8).unwrap();
    assert!(matches!(
        RingMap::create_file(&path, 256, 8),
        Err(RingError::Io { .. })
    ));
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let opened = RingMap::open_path(&path).unwrap();
    assert_eq!(opened.header(), created.header());
    let mut p = created.into_producer();
    let mut c = opened.into_consumer();
    p.push(b"across mappings");
    let mut buf = [0u8; 64];
    assert_eq!(c.pop(&mut buf), Some(15));
    assert_eq!(&buf[..15], b"across mappings");

    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    assert!(matches!(
        RingMap::open_path(&junk),
        Err(RingError::BadHeader { .. })
    ));
    std::fs::write(&junk, b"short").unwrap();
    assert!(matches!(
        RingMap::open_path(&junk),
        Err(RingError::BadHeader { .. })
    ));
    // A ring whose file is cut short is refused rather than mapped past its end.
    let cut = dir.path().join("cut");
    drop(RingMap::create_file(&cut, 256, 8).unwrap());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(1000)
        .unwrap();
    assert!(matches!(
        RingMap::open_path(&cut),
        Err(RingError::BadHeader { .. })
    ));
    assert!(matches!(
        RingMap::open_path_wait(
            &dir.path().join("never"),
            std::time::Duration::from_millis(50)
        ),
        Err(RingError::Timeout(_))
    ));
}

#[test]
fn a_hostile_peer_cannot_make_this_side_panic_or_overrun() {
    let (mut p, mut c) = ring(128, 4).split();
    assert!(p.push(b"ok"));
    // The "producer" writes nonsense: a head far ahead and a slot length beyond the slot.
    p.ring().head().store(u64::MAX - 3, Ordering::Release);
    // SAFETY: test-only write of a slot header inside the mapping.
    unsafe { p.ring().slot(1).cast::<u32>().write(1_000_000) };
    let mut lens = Vec::new();
    let n = c.pop_with(100, |_, b| lens.push(b.len()));
    assert!(n <= 4, "capped at capacity: {n}");
    assert!(
        lens.iter().all(|&l| l <= 64),
        "clamped to the slot payload: {lens:?}"
    );
    // The "consumer" writes a tail ahead of head: the producer sees no room, and no panic.
    let (mut p2, _c2) = ring(128, 4).split();
    p2.ring().tail().store(1000, Ordering::Release);
    // Asking for more than the cached room re-reads the tail: nonsense reads as "full" rather
    // than wrapping around into a huge free count.
    assert_eq!(p2.push_batch(&[&b"y"[..]; 8]), 0);
    assert!(!p2.push(b"x"));
}

#[test]
fn streaming_copies_match_plain_ones_at_any_alignment() {
    let src: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
    for off in 0..70 {
        for len in [0, 1, 15, 63, 64, 65, 127, 128, 200, 300] {
            let mut dst = vec![0xAAu8; 400 + 70];
            copy_streaming(&mut dst[off..off + len], &src[..len]);
            assert_eq!(
                &dst[off..off + len],
                &src[..len],
                "offset {off}, length {len}"
            );
            assert!(
                dst[..off].iter().all(|&b| b == 0xAA),
                "before, offset {off}"
            );
            assert!(
                dst[off + len..].iter().all(|&b| b == 0xAA),
                "after, offset {off}"
            );
        }
    }
}

#[test]
fn streamed_packets_reach_another_thread_whole() {
    // push_batch streams the packets; the consumer on another thread must see every byte
    // (the fence before publishing head orders the streaming stores).
    const N: u64 = 20_000;
    let (mut p, mut c) = ring(2048, 64).split();
    let fill = |seq: u64| -> Vec<u8> {
        let len = 64 + (seq as usize * 37) % 1400;
        (0..len).map(|i| (seq as usize + i * 13) as u8).collect()
    };
    let producer = std::thread::spawn(move || {
        let mut sent = 0u64;
        while sent < N {
            let batch: Vec<Vec<u8>> = (sent..(sent + 8).min(N)).map(fill).collect();
            let refs: Vec<&[u8]> = batch.iter().map(|b| &b[..]).collect();
            let n = p.push_batch(&refs);
            if n == 0 {
                std::thread::yield_now();
            }
            sent += n as u64;
        }
    });
    let mut got = 0u64;
    while got < N {
        let n = c.pop_with(16, |i, b| {
            let seq = got + i as u64;
            assert_eq!(b, &fill(seq)[..], "packet {seq}");
        });
        if n == 0 {
            std::thread::yield_now();
        }
        got += n as u64;
    }
    producer.join().unwrap();
}
