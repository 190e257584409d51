//! `--machine microvm` against real QEMU (TCG here): boots to the marker reliably, with a
//! virtio-mmio disk found through ACPI, and stops through the ACPI power button. Root only.
//!
//! Without `tsc_early_khz=` about one microvm boot in ten hung here in `calibrate_delay()`: the
//! hardware-reduced ACPI of microvm leaves Linux no timer interrupt but the TSC-calibrated local
//! APIC, and the PIT calibration of the TSC fails when the QEMU thread is preempted (see
//! `cmdline::kernel_append`); and without `tsc=reliable` the jiffies watchdog demoted the TSC
//! in about a third of the boots. Several boots in a row make a regression visible.

mod common;

use carve_testkit::unique_name;
use carve_vm::assets::READY_MARKER;
use carve_vm::spec::Machine;
use carve_vm::vm::{Boot, StopOutcome, Vm};
use common::*;
use std::time::Duration;

#[test]
fn microvm_boots_to_the_marker_every_time() {
    let t = context();
    let accel = carve_vm::vm::host_accel(&t.ctx).unwrap().0;
    for i in 0..3 {
        let name = unique_name("vm-micro");
        // The last boot stays up and is stopped by `system_powerdown` (microvm's GED button).
        let last = i == 2;
        let cmd = if last {
            "carve.cmd=\"ls /sys/block; sleep 600\""
        } else {
            "carve.cmd=\"ls /sys/block\""
        };
        let mut s = spec(&name, cmd);
        s.machine = Machine::Microvm;
        // Not quiet: the kernel's TSC messages are checked below.
        // The shared cached disk, read-only, as a virtio-blk-device on the MMIO bus.
        s.disks.push(
            format!("{},readonly,cache=none", guest().disk.display())
                .parse()
                .unwrap(),
        );
        let (mut vm, at) = boot_with_a_timer(&t.ctx, s, i);
        let log = vm.paths().console_log();
        let console = if last {
            vm.wait_for_console("vda", at, BOOT).unwrap();
            let console = carve_vm::console::read_from_str(&log, 0);
            let (how, report) = vm.stop(false, Duration::from_secs(60));
            assert_eq!(how, StopOutcome::PoweredOff, "{report:?}");
            console
        } else {
            // The guest runs the command and powers itself off.
            vm.wait_for_console("carve-guest-exit=0", at, BOOT).unwrap();
            let console = carve_vm::console::read_from_str(&log, 0);
            // Bounded: a guest that halts instead of powering off is detected and reported.
            let r = vm.wait_timeout(BOOT).unwrap_or_else(|e| {
                panic!(
                    "boot {i}: {e}\n{}\n{}",
                    qemu_state(vm.paths()),
                    carve_vm::console::read_from_str(&log, 0)
                )
            });
            assert!(r.clean && !r.halted, "boot {i}: {r:?}\n{console}");
            console
        };
        assert!(console.contains("\nvda"), "boot {i}: no vda\n{console}");
        if accel == carve_vm::cmdline::Accel::Tcg {
            // The host's TSC rate reached the guest, which used it instead of the PIT, and the
            // jiffies watchdog did not demote the TSC.
            assert!(console.contains(" tsc_early_khz="), "{console}");
            assert!(console.contains(" tsc=reliable"), "{console}");
            assert!(!console.contains("Marking TSC unstable"), "{console}");
            assert!(
                !console.contains("Switched to clocksource refined-jiffies"),
                "{console}"
            );
        }
        // The supervisor (this test) undid the journal: no cgroup or state is left.
        t.assert_journals_undone();
    }
}

/// What QEMU says of a guest that did not end: run state and every vCPU's registers.
fn qemu_state(paths: &carve_vm::state::StatePaths) -> String {
    use carve_vm::qmp::Qmp;
    let Ok(mut q) = carve_vm::qmp::QmpClient::connect(&paths.qmp(), Duration::from_secs(5)) else {
        return "QMP does not answer".into();
    };
    format!(
        "{:?}\n{}",
        q.query_status(),
        q.human_monitor_command("info registers -a")
            .unwrap_or_default()
    )
}

/// Boots `spec` to the ready marker. A boot whose kernel disabled its only timer (a vCPU stall
/// during the LAPIC timer calibration on a loaded host: the init reports
/// `carve-guest-error=no-timer` and resets, which ends QEMU on microvm) is booted again, at most
/// twice, and says so: the kernel's calibration is not carve's to fix, a hang is.
fn boot_with_a_timer(ctx: &carve_vm::vm::Context, spec: carve_vm::VmSpec, i: usize) -> (Vm, u64) {
    for attempt in 0..3 {
        let mut vm = Vm::launch(ctx, spec.clone(), Boot::Fresh).unwrap();
        let log = vm.paths().console_log();
        match vm.wait_for_console(READY_MARKER, 0, BOOT) {
            Ok(at) => return (vm, at),
            Err(e) => {
                let console = carve_vm::console::read_from_str(&log, 0);
                if attempt < 2 && console.contains("carve-guest-error=no-timer") {
                    eprintln!("boot {i}: the guest kernel found no timer; booting it again");
                    let r = vm.wait_timeout(BOOT).unwrap();
                    assert!(!r.halted, "{r:?}");
                    vm.remove_state().unwrap();
                    continue;
                }
                panic!("boot {i}: {e}\n{console}");
            }
        }
    }
    unreachable!("the loop returns or panics")
}
