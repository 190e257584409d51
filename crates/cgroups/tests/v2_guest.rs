//! Runs the pure cgroup v2 suite (tests/v2.rs) in a QEMU TCG guest booted with only cgroup2
//! mounted, through scripts/v2-guest-test.sh, and reads the verdict from the guest's console.

use std::path::Path;
use std::process::Command;

#[test]
fn pure_v2_suite_passes_in_a_qemu_guest() {
    if !carve_testkit::require_root() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/v2-guest-test.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/v2-guest-test.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{console}");
    eprintln!("{err}");
    let passed: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("test ") && l.ends_with(" ok"))
        .collect();
    assert!(
        console.lines().any(|l| l == "CARVE-V2: PASS") && out.status.success(),
        "the v2 suite failed in the guest (console above)"
    );
    assert!(
        console.contains("CARVE-V2: mounts: cgroup2 /sys/fs/cgroup cgroup2"),
        "the guest did not mount cgroup2 alone"
    );
    assert!(
        passed.len() >= 10,
        "only {} tests ran: {passed:?}",
        passed.len()
    );
}
