//! carve-oci's systemd cgroup driver for real: scripts/systemd-guest.sh boots a QEMU TCG guest
//! whose PID 1 is systemd (a cached debootstrap Debian bookworm image with dbus and podman) and
//! runs scripts/systemd-guest-checks.sh there: `podman --cgroup-manager systemd --runtime
//! carve-oci run` with memory, cpu and pids limits (the scope in `systemctl status`, its
//! properties and cgroup files, the OOM kill and the fork limit enforced, `podman update`
//! reaching the unit, no unit left after `podman rm`), then the same with carve-oci called
//! directly (`--systemd-cgroup create/start/update/delete`), and nothing left behind.
//! The image is built by `scripts/systemd-guest.sh --build-only` (scripts/test.sh runs it before
//! the suite); here only the boot and the checks are timed.

/// How many checks the guest runs: 18 through podman, 17 with carve-oci called directly, 3 for
/// the whole guest. A check that silently stops running fails the test; podman has no skip path.
const CHECKS: usize = 38;

#[test]
fn systemd_cgroup_driver_in_a_systemd_guest() {
    if !carve_testkit::require_root() {
        return;
    }
    let run = carve_testkit::run_guest_script("systemd-guest.sh", "CARVE-SYSTEMD");
    run.assert_checks_passed("the systemd guest did not pass", CHECKS);
    assert!(!run.has_line_starting("SKIP"), "the guest skipped a part");
    for must in [
        "ok podman run with carve-oci",
        "ok podman: systemctl status shows the active scope",
        "ok podman: a 100 MiB allocation in 64 MiB is killed",
        "ok podman update reaches the unit",
        "ok podman rm: no unit left",
        "ok direct: the scope is active",
        "ok direct: update reaches the unit",
        "ok direct: no unit left",
        "ok no libpod or carve scope loaded",
    ] {
        assert!(
            run.console.lines().any(|l| l.contains(must)),
            "missing check: {must}"
        );
    }
}
