//! Test helpers shared by every crate's privileged tests.
//!
//! # Tour
//! - [`unique_name`] / [`short_name`]: names that never collide between parallel tests (the short
//!   form fits a network interface name, 15 bytes).
//! - [`HostLock`]: an exclusive lock for tests that retune the host (IRQ affinity, cpusets, sysctls,
//!   workqueue masks) or need a core nobody else is tuning.
//! - [`Snapshot`]: the host state that tests must leave unchanged (carve cgroups, mounts, netns,
//!   links, QEMU processes, sysctls, IRQ affinities, workqueue masks, huge pages); `carve-leakcheck`
//!   takes one before and after the whole suite and fails on any difference.
//! - [`skip`] / [`require_root`] / [`require_tool`]: a test that cannot run says why in a form
//!   the suite counts (scripts/test.sh prints the summary; CI fails on a skip it must not have).
//! - [`wait_for`]: a poll with a deadline whose panic names what it waited for;
//!   [`KillOnDrop`]: a child process that never outlives its test.
//! - [`guest_dir`] / [`vm_core`]: where the VM tests' guest assets are and which core a test VM
//!   gets.
//! - [`reaper()`]: a watcher process that undoes what a test registered ([`reaper::Item`]) once
//!   the test process is gone, SIGKILL included; `carve-leakcheck reap-stale` cleans what an
//!   earlier killed run left.
//! - [`run_guest_script`] (and [`run_guest_script_with`] arguments) / [`GuestRun`]: a QEMU guest test's script run and its console verdict.

mod guest;
pub mod reaper;
mod skip;
mod snapshot;

pub use guest::{run_guest_script, run_guest_script_with, GuestRun};
pub use reaper::reaper;
pub use skip::{require_root, require_tool, skip, SkipKind};
pub use snapshot::Snapshot;

/// What the dedicated-core tier creates on the host (cpusets, huge pages, journals, tracefs
/// instances), for [`Snapshot::diff_touching`].
pub const DEDICATED_FOOTPRINT: &[&str] = &[
    "carve-ded-",
    "carve-hk-",
    "hugepages",
    "dedicated-",
    "noise-",
    "tracefs",
];

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process and call: `carve-t-PREFIX-PID-N`. Everything a test creates
/// carries "carve" so the leak check sees it.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("carve-t-{prefix}-{}-{n}", std::process::id())
}

/// A unique name of at most 15 bytes (an interface name): `cv` + up to 4 prefix letters + a
/// base-36 tag from pid and counter.
pub fn short_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u64;
    let tag = (u64::from(std::process::id()) << 12) ^ n;
    let p: String = prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(4)
        .collect();
    let mut t = String::new();
    let mut v = tag;
    while v > 0 && t.len() < 9 {
        let d = (v % 36) as u32;
        t.push(std::char::from_digit(d, 36).unwrap_or('0'));
        v /= 36;
    }
    format!("cv{p}{t}")
}

/// An exclusive, process-wide lock on host tuning, held until dropped. Nextest runs each test in
/// its own process, so this is an flock on a file, not a mutex.
pub struct HostLock {
    _file: File,
}

/// The lock file that serializes host-tuning tests.
pub const HOST_LOCK_PATH: &str = "/run/carve-test-host.lock";

impl HostLock {
    /// Waits for and takes the lock exclusively: for tests that retune the host.
    pub fn exclusive() -> Self {
        Self::take(libc::LOCK_EX)
    }

    /// Waits for and takes the lock shared: for tests that need the cores as Linux normally has
    /// them (no exclusive cpuset, no moved tasks) but change nothing host-wide themselves.
    pub fn shared() -> Self {
        Self::take(libc::LOCK_SH)
    }

    fn take(how: i32) -> Self {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK_PATH)
            .expect("open host lock");
        // SAFETY: the fd is valid for the life of `f`; flock has no memory effects.
        let r = unsafe { libc::flock(f.as_raw_fd(), how) };
        assert_eq!(r, 0, "flock {HOST_LOCK_PATH}");
        HostLock { _file: f }
    }
}

/// Whether this process is root (the privileged suites need it and say so when it is not).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The OCI runtime tests drive: `CARVE_TEST_OCI_RUNTIME`, else the workspace's `carve-oci` built
/// beside the running test (target/debug/deps/TEST → target/debug/carve-oci).
///
/// # Panics
/// When neither exists: a test meant for carve-oci must never run another runtime silently (a
/// test that means runc names it, see [`runc`]).
pub fn oci_runtime() -> std::path::PathBuf {
    if let Some(r) = std::env::var_os("CARVE_TEST_OCI_RUNTIME") {
        return r.into();
    }
    let exe = std::env::current_exe().expect("current test executable");
    let beside = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("carve-oci"));
    match beside {
        Some(p) if p.is_file() => p,
        other => panic!(
            "carve-oci is not built at {} (build the workspace: cargo build --workspace, or set CARVE_TEST_OCI_RUNTIME)",
            other.map(|p| p.display().to_string()).unwrap_or_default()
        ),
    }
}

/// runc, for tests that compare carve-oci with it by name; `None` (with a counted skip) when it is
/// not installed.
pub fn runc() -> Option<std::path::PathBuf> {
    require_tool("runc").then(|| "runc".into())
}

/// Fills `rootfs` with busybox-static and its applets, the usual top-level folders, and an
/// /etc/passwd and /etc/group with root and nobody: the smallest rootfs a container test needs.
pub fn busybox_rootfs(rootfs: &std::path::Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "sys", "dev", "tmp", "etc", "root", "run"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("/bin/busybox: busybox-static is installed by scripts/setup.sh");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for a in String::from_utf8_lossy(&list.stdout).lines() {
        if a != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(a));
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// Polls `f` every 100 ms until it is true; panics naming `what` once `timeout` has passed.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Where the tests' guest assets (kernel, initrd) live: `CARVE_GUEST_DIR`, else the workspace's
/// git-ignored cache/guest, which `carve_vm::assets::prepare_guest` fills once for every test.
pub fn guest_dir() -> std::path::PathBuf {
    std::env::var_os("CARVE_GUEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../cache/guest"))
        })
}

/// The core a test VM's vCPU gets: the last online core (housekeeping keeps the others).
pub fn vm_core() -> usize {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .expect("/sys/devices/system/cpu/online");
    carve_core::CpuSet::parse_list(&online)
        .expect("the online CPU list")
        .iter()
        .last()
        .expect("an online CPU")
}

/// A child process killed (SIGKILL) and reaped on drop, also when the test fails.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
