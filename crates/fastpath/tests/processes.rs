//! The ring across processes, and the carve-pktcrypt program end to end.

use carve_fastpath::pktcrypt;
use carve_fastpath::ring::RingMap;
use std::os::fd::AsRawFd;
use std::process::Command;

const CHILD_ENV: &str = "CARVE_TEST_RING_PATH";
const N: u64 = 20_000;

/// Not a test of its own: the child half of `a_child_process_feeds_the_ring`, run in a separate
/// process (the test binary re-executed with `--ignored --exact`).
#[test]
#[ignore = "child process of a_child_process_feeds_the_ring"]
fn ring_child_producer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut p = RingMap::open_path(path.as_ref()).unwrap().into_producer();
    let tpl = pktcrypt::template();
    let mut seq = 0;
    while seq < N {
        if pktcrypt::generate_batch(&mut p, &tpl, &mut seq) == 0 {
            std::thread::yield_now();
        }
    }
}

#[test]
fn a_child_process_feeds_the_ring() {
    // The parent creates an anonymous ring; the child maps the same memfd through
    // /proc/PARENT/fd/N, as a process in another container could through a shared file.
    let ring = RingMap::create_memfd("carve-test-xproc", 2048, 64).unwrap();
    let path = format!("/proc/{}/fd/{}", std::process::id(), ring.fd().as_raw_fd());
    let mut c = ring.into_consumer();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["ring_child_producer", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &path)
        .spawn()
        .unwrap();
    let tpl = pktcrypt::template();
    let mut sealer = pktcrypt::Sealer::new(&pktcrypt::TEST_KEY);
    let opener = pktcrypt::Sealer::new(&pktcrypt::TEST_KEY);
    let mut got = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while got < N {
        let n = c.pop_with(32, |i, p| {
            let seq = got + i as u64;
            assert_eq!(p.len(), pktcrypt::PACKET_LEN);
            assert_eq!(u64::from_le_bytes(p[..8].try_into().unwrap()), seq);
            assert_eq!(&p[8..pktcrypt::PLAINTEXT_LEN], &tpl[8..]);
            // Seal in place in the shared memory, then check the result opens.
            let ctr = sealer.seal(p).unwrap();
            let mut copy = p.to_vec();
            assert!(opener.open(ctr, &mut copy));
        });
        if n == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "child stalled at {got}"
            );
            if let Some(st) = child.try_wait().unwrap() {
                assert!(
                    !c.ring().is_empty() || got == N,
                    "child exited ({st}) at {got}"
                );
            }
            std::thread::yield_now();
        }
        got += n as u64;
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(c.ring().enqueued(), N);
}

#[test]
fn pktcrypt_fast_path_and_generator_as_two_processes() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("carve-ring-test");
    let stats = dir.path().join("stats.json");
    let bin = env!("CARGO_BIN_EXE_carve-pktcrypt");
    let fast = Command::new(bin)
        .arg("--ring")
        .arg(&ring)
        .args([
            "--packets",
            "20000",
            "--quiet",
            "--interval-ms",
            "50",
            "--slots",
            "256",
        ])
        .arg("--stats")
        .arg(&stats)
        .spawn()
        .unwrap();
    let gen = Command::new(bin)
        .args(["--generate", "--ring"])
        .arg(&ring)
        .args(["--packets", "20000"])
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let out = fast.wait_with_output().unwrap();
    assert!(out.status.success());
    let doc = std::fs::read_to_string(&stats).unwrap();
    assert!(doc.contains("\"packets\":20000,"), "{doc}");
    assert!(doc.contains("\"bytes\":20480000,"), "{doc}");
    assert!(!ring.exists(), "the fast path removes the ring it created");
}

#[test]
fn pktcrypt_standalone_generates_its_own_packets() {
    let out = Command::new(env!("CARGO_BIN_EXE_carve-pktcrypt"))
        .args([
            "--generate",
            "--packets",
            "5000",
            "--interval-ms",
            "20",
            "--mlock",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("packets/s"), "{text}");
    assert!(text.contains("done: 5000 packets"), "{text}");
    let none = Command::new(env!("CARGO_BIN_EXE_carve-pktcrypt"))
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("give --ring"));
}

#[test]
fn pktcrypt_bare_prints_the_reference_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_carve-pktcrypt"))
        .args(["--bare", "--packets", "2000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bare loop") && text.contains("2000 packets"),
        "{text}"
    );
    let both = Command::new(env!("CARGO_BIN_EXE_carve-pktcrypt"))
        .args(["--bare", "--generate"])
        .output()
        .unwrap();
    assert!(!both.status.success(), "--bare excludes --generate");
}
