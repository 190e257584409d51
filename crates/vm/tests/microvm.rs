//! `--machine microvm` against real QEMU (TCG here): boots to the marker reliably, with a
//! virtio-mmio disk found through ACPI. Root only.
//!
//! Without `tsc_early_khz=` about one microvm boot in ten hung here in `calibrate_delay()`: the
//! hardware-reduced ACPI of microvm leaves Linux no timer interrupt but the TSC-calibrated local
//! APIC, and the PIT calibration of the TSC fails when the QEMU thread is preempted (see
//! `cmdline::kernel_append`). Several boots in a row make a regression visible.

mod common;

use carve_testkit::unique_name;
use carve_vm::assets::READY_MARKER;
use carve_vm::spec::Machine;
use carve_vm::vm::{Boot, Vm};
use common::*;

#[test]
fn microvm_boots_to_the_marker_every_time() {
    let t = context();
    let accel = carve_vm::vm::host_accel(&t.ctx).unwrap().0;
    for i in 0..3 {
        let name = unique_name("vm-micro");
        let mut s = spec(&name, "carve.cmd=\"ls /sys/block\"");
        s.machine = Machine::Microvm;
        // Not quiet: the kernel's TSC messages are checked below.
        // The shared cached disk, read-only, as a virtio-blk-device on the MMIO bus.
        s.disks.push(
            format!("{},readonly,cache=none", guest().disk.display())
                .parse()
                .unwrap(),
        );
        let mut vm = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap();
        let log = vm.paths().console_log();
        let at = vm
            .wait_for_console(READY_MARKER, 0, BOOT)
            .unwrap_or_else(|e| {
                panic!(
                    "boot {i}: {e}\n{}",
                    carve_vm::console::read_from_str(&log, 0)
                )
            });
        // The guest runs the command and powers itself off.
        vm.wait_for_console("carve-guest-exit=0", at, BOOT).unwrap();
        let console = carve_vm::console::read_from_str(&log, 0);
        let r = vm.wait();
        assert!(r.clean, "boot {i}: {r:?}");
        assert!(console.contains("\nvda"), "boot {i}: no vda\n{console}");
        if accel == carve_vm::cmdline::Accel::Tcg {
            // The host's TSC rate reached the guest, which used it instead of the PIT.
            assert!(console.contains(" tsc_early_khz="), "{console}");
            assert!(!console.contains("Marking TSC unstable"), "{console}");
        }
        // The supervisor (this test) undid the journal: no cgroup or state is left.
        assert!(std::fs::read_dir(&t.ctx.journal_root)
            .unwrap()
            .next()
            .is_none());
    }
}
