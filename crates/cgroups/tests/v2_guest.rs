//! Runs the pure cgroup v2 suite (tests/v2.rs) in a QEMU TCG guest booted with only cgroup2
//! mounted, through scripts/v2-guest-test.sh, and reads the verdict from the guest's console.

#[test]
fn pure_v2_suite_passes_in_a_qemu_guest() {
    if !carve_testkit::require_root() {
        return;
    }
    let run = carve_testkit::run_guest_script("v2-guest-test.sh", "CARVE-V2");
    let console = &run.console;
    let passed: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("test ") && l.ends_with(" ok"))
        .collect();
    run.assert_passed("the v2 suite failed in the guest");
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
