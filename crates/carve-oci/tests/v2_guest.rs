//! Runs carve-oci on a pure cgroup v2 host for real: scripts/oci-v2-guest-test.sh boots a QEMU
//! TCG guest with only cgroup2 mounted and drives a static carve-oci through busybox bundles:
//! the lifecycle (create, state, start, exec, ps, events --stats, update, pause/resume through
//! cgroup.freeze, kill, delete, delete --force of a running and of a paused container), every
//! cgroup resource group set and read inside and outside (memory, pids, cpu, cpuset, io, hugetlb,
//! devices, unified) and enforced (OOM kill, fork failure, io.max throttling, a refused huge page,
//! EPERM from the device program), empty, relative and systemd cgroupsPaths, bad input leaving
//! nothing, and a few checks each of namespaces, mounts and process attributes; then it runs the
//! integration tests lifecycle.rs, isolation.rs, process.rs, security.rs, seccomp.rs and
//! reliability_fault_points.rs and realtime.rs (a SCHED_FIFO task in a cgroup v2 container) there,
//! built static.
//! A second test boots the same guest with `--dedicated`: the dedicated-container checks of
//! scripts/oci-v2-guest-dedicated.sh (issue 13), `exec` on the housekeeping CPUs included.
//! The verdict is read from the guest's console: one "CARVE-OCI-V2: ok NAME" line per passed
//! check and per passed test ("ok SUITE::TEST").

/// How many checks the guest runs: a check that silently stops running fails the test.
const CHECKS: usize = 144 + 43;
/// How many checks the `--dedicated` guest runs.
const DEDICATED_CHECKS: usize = 51 + 2;

#[test]
fn lifecycle_and_cgroups_on_pure_v2_in_a_qemu_guest() {
    if !carve_testkit::require_root() {
        return;
    }
    let run = carve_testkit::run_guest_script("oci-v2-guest-test.sh", "CARVE-OCI-V2");
    let console = &run.console;
    assert!(
        console.contains("CARVE-OCI-V2: mounts: cgroup2 /sys/fs/cgroup cgroup2")
            && !console.contains("CARVE-OCI-V2: mounts: cgroup ")
            && !console.contains(";cgroup "),
        "the guest did not mount cgroup2 alone"
    );
    run.assert_checks_passed("carve-oci failed in the pure-v2 guest", CHECKS);
    for suite in [
        "lifecycle",
        "isolation",
        "process",
        "security",
        "seccomp",
        "reliability_fault_points",
        "realtime",
    ] {
        assert!(
            console.contains(&format!("CARVE-OCI-V2: suite {suite} exited 0 "))
                && console.contains(&format!("CARVE-OCI-V2: ok {suite}::")),
            "the {suite} tests did not pass in the guest"
        );
    }

    // `events --stats` of the running main container, as JSON: real numbers from cgroup2 files.
    let stats = console
        .lines()
        .find_map(|l| l.strip_prefix("CARVE-OCI-V2: stats "))
        .expect("the guest printed no stats");
    let ev: serde_json::Value = serde_json::from_str(stats).expect("stats is JSON");
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], "c1");
    let d = &ev["data"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    assert!(n(&d["memory"]["usage"]["usage"]) > 0, "{d}");
    assert_eq!(n(&d["memory"]["usage"]["limit"]), 64 << 20, "{d}");
    assert!(n(&d["memory"]["raw"]["anon"]) > 0, "{d}");
    assert_eq!(n(&d["pids"]["current"]), 1, "{d}");
    assert_eq!(n(&d["pids"]["limit"]), 32, "{d}");
    assert!(n(&d["cpu"]["usage"]["total"]) > 0, "{d}");
    assert_eq!(d["cpuset"]["cpus"], serde_json::json!([1]), "{d}");
    assert_eq!(d["cpuset"]["mems"], serde_json::json!([0]), "{d}");
}

/// A dedicated container on a pure cgroup2 host (issue 13), CPU 1 of the guest's 2: its cgroup an
/// isolated cpuset partition; `exec` into it runs on the housekeeping CPU 0 in the container's
/// exec sibling cgroup, which has a copy of its limits (memory, swap, pids, cpu.max, cpuset.mems,
/// hugetlb), enforces them (an exec'd memory hog OOM-killed there, the container's own cgroup
/// untouched) and its device program (mknod refused), is frozen by `pause`, listed by `ps`, and
/// is gone after `delete --force` and after `delete` of a container whose init was killed — no
/// cgroup, journal or process left; with `carve.dev/exec-cpus: dedicated` exec stays on CPU 1.
#[test]
fn dedicated_exec_on_housekeeping_cpus_on_pure_v2_in_a_qemu_guest() {
    if !carve_testkit::require_root() {
        return;
    }
    let run = carve_testkit::run_guest_script_with(
        "oci-v2-guest-test.sh",
        &["--dedicated"],
        "CARVE-OCI-V2",
    );
    run.assert_checks_passed(
        "the dedicated checks failed in the pure-v2 guest",
        DEDICATED_CHECKS,
    );
    for must in [
        "ded: exec runs on the housekeeping CPU 0",
        "ded: the detached process",
        "ded: an exec'd memory hog is OOM-killed",
        "ded: no sibling left",
        "ded2: no sibling left",
    ] {
        assert!(
            run.oks().iter().any(|o| o.starts_with(must)),
            "no passed check {must:?}"
        );
    }
}
