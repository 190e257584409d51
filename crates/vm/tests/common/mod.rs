//! Shared helpers of the VM tier's privileged tests: guest assets, a temp context, counters.
#![allow(dead_code)]

use carve_core::CpuSet;
use carve_vm::assets::{prepare_guest, GuestAssets};
use carve_vm::spec::VmSpec;
use carve_vm::vm::Context;
use std::time::Duration;

/// The counter a guest prints: `count=N` every 0.2 s.
pub const COUNTER_CMD: &str =
    "quiet carve.cmd=\"i=0; while true; do echo count=$i; i=$((i+1)); sleep 0.2; done\"";

/// Boot timeout under TCG with other tests sharing 2 cores.
pub const BOOT: Duration = Duration::from_secs(90);

/// The guest assets (built once into the workspace cache, shared by parallel tests).
pub fn guest() -> GuestAssets {
    prepare_guest(&carve_testkit::guest_dir()).expect("guest assets")
}

/// A context whose state and journals live in a temp dir (removed on drop); cgroups are real.
pub struct TestContext {
    pub ctx: Context,
    _dir: tempfile::TempDir,
    _lock: carve_testkit::HostLock,
}

/// A *shared* hold of the host-tuning lock: VM tests run side by side, but not while a
/// host-tuning test (which holds it exclusively) makes a core exclusive or moves tasks — the VM's
/// cpuset and pinning need the cores as Linux normally has them.
fn host_shared_lock() -> carve_testkit::HostLock {
    carve_testkit::HostLock::shared()
}

pub fn context() -> TestContext {
    context_locked(host_shared_lock())
}

/// As [`context`] with `lock` held instead of the shared host lock (a test that holds the host
/// lock exclusively would wait for itself on a second flock).
pub fn context_locked(lock: carve_testkit::HostLock) -> TestContext {
    assert!(carve_testkit::is_root(), "the VM tests run as root");
    let dir = tempfile::Builder::new()
        .prefix("carve-vmt")
        .tempdir()
        .unwrap();
    let ctx = Context {
        state_root: dir.path().join("vm"),
        journal_root: dir.path().join("journal"),
        // A test killed by nextest's timeout takes its QEMU along...
        die_with_launcher: true,
        ..Context::default()
    };
    // ...and the reaper undoes its journals (cgroups, sockets) and removes the temp dir.
    let reaper = carve_testkit::reaper();
    reaper.remove(dir.path());
    reaper.journals(&ctx.journal_root);
    TestContext {
        ctx,
        _dir: dir,
        _lock: lock,
    }
}

impl TestContext {
    /// Checks every journal of this context was undone (and removed): no cgroup or state left.
    pub fn assert_journals_undone(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.ctx.journal_root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "journals left: {left:?}");
    }
}

/// The core a test VM's vCPU gets: the last online core (housekeeping keeps the others).
pub fn vcpu_core() -> usize {
    carve_testkit::vm_core()
}

/// A 1-vCPU, 256 MiB spec booting the cached guest with `append`.
pub fn spec(name: &str, append: &str) -> VmSpec {
    let g = guest();
    let mut b = VmSpec::builder(name)
        .unwrap()
        .kernel(&g.kernel)
        .unwrap()
        .initrd(&g.initrd)
        .unwrap()
        .memory("256MiB")
        .unwrap()
        .cpus(CpuSet::from_iter([vcpu_core()]));
    if !append.is_empty() {
        b = b.append(append);
    }
    b.build_unchecked()
}

/// A VM named from `tag` booting the counter guest ([`COUNTER_CMD`]) in `t`, once it has
/// counted to 3: its name, its spec and the VM.
pub fn counter_vm(t: &TestContext, tag: &str) -> (String, VmSpec, carve_vm::vm::Vm) {
    let name = carve_testkit::unique_name(tag);
    let s = spec(&name, COUNTER_CMD);
    let mut vm = carve_vm::vm::Vm::launch(&t.ctx, s.clone(), carve_vm::vm::Boot::Fresh).unwrap();
    vm.wait_for_console("count=3", 0, BOOT).unwrap();
    (name, s, vm)
}

/// Every `count=N` the guest printed after `from`, in order.
pub fn counts(log: &std::path::Path, from: u64) -> Vec<u64> {
    carve_vm::console::read_from_str(log, from)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("count=")?.parse().ok())
        .collect()
}
