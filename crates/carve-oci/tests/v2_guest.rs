//! Runs carve-oci on a pure cgroup v2 host for real: scripts/oci-v2-guest-test.sh boots a QEMU
//! TCG guest with only cgroup2 mounted and drives a static carve-oci through a busybox bundle with
//! memory, pids and cpu limits (create, state, start, limits inside and outside, exec, update,
//! pause/resume through cgroup.freeze, kill, delete, cgroup dir gone); the verdict is read from
//! the guest's console.

use std::path::Path;
use std::process::Command;

#[test]
fn lifecycle_and_cgroups_on_pure_v2_in_a_qemu_guest() {
    if !carve_testkit::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oci-v2-guest-test.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/oci-v2-guest-test.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{console}");
    eprintln!("{err}");
    assert!(
        console.contains("CARVE-OCI-V2: mounts: cgroup2 /sys/fs/cgroup cgroup2")
            && !console.contains("CARVE-OCI-V2: mounts: cgroup ")
            && !console.contains(";cgroup "),
        "the guest did not mount cgroup2 alone"
    );
    let ok = console
        .lines()
        .filter(|l| l.starts_with("CARVE-OCI-V2: ok "))
        .count();
    assert!(
        console.lines().any(|l| l == "CARVE-OCI-V2: PASS") && out.status.success(),
        "carve-oci failed in the pure-v2 guest (console above)"
    );
    assert!(ok >= 30, "only {ok} checks passed in the guest");
}
