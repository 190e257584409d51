//! The VM tier against real QEMU (TCG here): boot, pinning, pause/resume, snapshot/restore, live
//! migration, stop, crash detection, networking. Root only.

mod common;

use carve_testkit::unique_name;
use carve_vm::assets::READY_MARKER;
use carve_vm::console;
use carve_vm::qmp::Qmp;
use carve_vm::vm::{self, Boot, StopOutcome, Vm};
use common::*;
use std::time::Duration;

#[test]
fn boots_to_marker_pins_vcpus_and_stops_gracefully() {
    let t = context();
    let name = unique_name("vm-boot");
    let mut s = spec(&name, "quiet carve.cmd=\"ls /sys/block; sleep 600\"");
    // The shared cached disk, read-only (QEMU's image locks allow many readers).
    s.disks.push(
        format!("{},readonly,cache=none", guest().disk.display())
            .parse()
            .unwrap(),
    );
    let mut vm = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap();
    let at = vm.wait_for_console(READY_MARKER, 0, BOOT).unwrap();
    // The virtio-blk disk shows up in the guest.
    vm.wait_for_console("vda", at, BOOT).unwrap();
    let pid = vm.pid();

    // Each vCPU thread runs only on its planned core; QEMU's other threads stay off it.
    let st = vm::status(&t.ctx, &name).unwrap();
    assert_eq!(st.state, "running");
    assert_eq!(st.qemu_pid, Some(pid));
    assert_eq!(
        st.accel.as_deref(),
        Some(carve_vm::vm::host_accel(&t.ctx).unwrap().0.as_str())
    );
    assert_eq!(st.vcpus.len(), 1);
    let core = vcpu_core().to_string();
    let tid = st.vcpus[0].thread_id;
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(allowed, core);
    assert_eq!(st.vcpus[0].allowed_cores, core);
    if carve_core::CpuSet::parse_list(
        &std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap(),
    )
    .unwrap()
    .len()
        > 1
    {
        for t2 in carve_vm::host::threads("/proc".as_ref(), pid) {
            if t2 != tid {
                let a = carve_vm::host::allowed_cpus("/proc".as_ref(), pid, t2).unwrap();
                assert!(
                    !a.contains(vcpu_core()),
                    "thread {t2} may run on the vCPU core: {a}"
                );
            }
        }
    }
    // QEMU sits in its own cgroup with the partition's cpuset.
    let cg = vm.runtime().cgroups.clone();
    assert!(!cg.is_empty());
    let cpuset_dir = cg
        .iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/cpuset"))
        .unwrap();
    let procs = std::fs::read_to_string(cpuset_dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");

    // ACPI powerdown: the guest's acpid powers it off within the timeout.
    let (how, report) = vm.stop(false, Duration::from_secs(60));
    assert_eq!(how, StopOutcome::PoweredOff, "{report:?}");
    assert!(report.clean, "{report:?}");
    let log = std::fs::read_to_string(vm.paths().console_log()).unwrap();
    assert!(log.contains("carve-guest-poweroff"));
    // Everything carve made is gone: cgroup, sockets, journal.
    for d in &cg {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert!(!vm.paths().qmp().exists());
    assert!(!vm.paths().console_sock().exists());
    t.assert_journals_undone();
}

#[test]
fn pause_stops_the_counter_and_resume_continues_it_and_stop_falls_back_to_kill() {
    let t = context();
    let (name, _, mut vm) = counter_vm(&t, "vm-pause");
    let log = vm.paths().console_log();

    vm::pause(&t.ctx, &name).unwrap();
    assert_eq!(vm::status(&t.ctx, &name).unwrap().state, "paused");
    std::thread::sleep(Duration::from_millis(300));
    let before = *counts(&log, 0).last().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let still = *counts(&log, 0).last().unwrap();
    assert_eq!(before, still, "the counter moved while paused");

    vm::resume(&t.ctx, &name).unwrap();
    let next = format!("count={}", before + 3);
    vm.wait_for_console(&next, 0, BOOT).unwrap();
    let c = counts(&log, 0);
    // No restart: the sequence just goes on.
    assert!(c.windows(2).all(|w| w[1] == w[0] + 1), "{c:?}");

    // QMP for real: events arrive in order and HMP works as the fallback.
    let mut q = vm.connect_qmp(Duration::from_secs(10)).unwrap();
    q.stop().unwrap();
    q.wait_event("STOP", Duration::from_secs(10)).unwrap();
    assert!(q
        .human_monitor_command("info status")
        .unwrap()
        .contains("paused"));
    q.cont().unwrap();
    q.wait_event("RESUME", Duration::from_secs(10)).unwrap();
    assert!(q.query_status().unwrap().running);
    drop(q);

    // A paused guest cannot answer the power button: stop waits out the timeout, then kills.
    vm::pause(&t.ctx, &name).unwrap();
    let (how, report) = vm.stop(false, Duration::from_secs(2));
    assert_eq!(how, StopOutcome::Killed);
    assert_eq!(report.signal, Some(libc::SIGKILL));
}

#[test]
fn snapshot_then_kill_then_restore_continues_the_counter() {
    let t = context();
    let (name, s, mut vm) = counter_vm(&t, "vm-snap");
    let log = vm.paths().console_log();
    let snap = tempfile::NamedTempFile::new().unwrap();
    vm::pause(&t.ctx, &name).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let at = *counts(&log, 0).last().unwrap();
    vm::snapshot(&t.ctx, &name, snap.path()).unwrap();
    assert!(std::fs::metadata(snap.path()).unwrap().len() > 1 << 20);
    let r = vm.kill();
    assert_eq!(r.signal, Some(libc::SIGKILL));
    drop(vm);

    let mut vm = vm::restore(&t.ctx, s, snap.path()).unwrap();
    let from = vm.console_start();
    let want = format!("count={}", at + 3);
    vm.wait_for_console(&want, from, BOOT).unwrap();
    let after = counts(&log, from);
    assert!(!after.is_empty());
    // It goes on from the snapshot (count at+1, at+2, ...), not from a fresh boot.
    assert!(
        after[0] > at && after[0] <= at + 2,
        "before {at}, after {after:?}"
    );
    assert!(!console::read_from_str(&log, from).contains(READY_MARKER));
    vm.kill();
}

#[test]
fn live_migration_keeps_the_counter() {
    let t = context();
    let (name, _, mut src) = counter_vm(&t, "vm-mig");
    let dest_name = unique_name("vm-mig-dest");
    let mut d = src.spec().clone();
    d.name = dest_name.clone();
    let mut dest = vm::migrate(&t.ctx, &name, d).unwrap();
    // The source QEMU quits once the destination runs.
    let r = src.wait_timeout(BOOT).unwrap();
    assert!(r.clean, "{r:?}");
    let src_counts = counts(&src.paths().console_log(), 0);
    let last = *src_counts.last().unwrap();
    let want = format!("count={}", last + 3);
    dest.wait_for_console(&want, 0, BOOT).unwrap();
    let c = counts(&dest.paths().console_log(), 0);
    assert!(
        c[0] > last && c[0] <= last + 2,
        "source ended at {last}, destination {c:?}"
    );
    assert!(!console::read_from_str(&dest.paths().console_log(), 0).contains(READY_MARKER));
    let st = vm::status(&t.ctx, &dest_name).unwrap();
    assert_eq!(st.state, "running");
    dest.kill();
}

#[test]
fn a_qemu_crash_is_detected_and_reported() {
    let t = context();
    let name = unique_name("vm-crash");
    let mut vm = Vm::launch(&t.ctx, spec(&name, "quiet"), Boot::Fresh).unwrap();
    // SAFETY: kill with the pid of the QEMU this test started and has not reaped.
    unsafe { libc::kill(vm.pid(), libc::SIGKILL) };
    let r = vm.wait_timeout(BOOT).unwrap();
    assert!(!r.clean);
    assert_eq!(r.signal, Some(libc::SIGKILL));
    assert_eq!(r.message, "QEMU was killed by signal 9");
    let st = vm::status(&t.ctx, &name).unwrap();
    assert_eq!(st.state, "crashed");
    assert_eq!(st.exit.unwrap().signal, Some(9));
    // The journal was undone by the supervisor (this test).
    t.assert_journals_undone();
}

#[test]
fn qemu_that_fails_to_start_is_reported_with_its_message() {
    let t = context();
    let name = unique_name("vm-bad");
    let mut s = spec(&name, "quiet");
    // A disk QEMU cannot open as qcow2: QEMU starts, complains and exits.
    let bogus = tempfile::Builder::new()
        .suffix(".qcow2")
        .tempfile()
        .unwrap();
    std::fs::write(bogus.path(), b"not a qcow2 image").unwrap();
    s.disks
        .push(format!("{}", bogus.path().display()).parse().unwrap());
    let e = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("QEMU exited with status 1"), "{msg}");
    assert!(msg.to_lowercase().contains("qcow2"), "{msg}");
    assert!(!t.ctx.paths(&name).dir.exists());
    t.assert_journals_undone();
}

#[test]
fn bad_values_are_rejected_before_qemu_starts() {
    let t = context();
    let name = unique_name("vm-reject");
    let mut s = spec(&name, "quiet");
    s.kernel = Some("/nonexistent/vmlinuz".into());
    let e = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap_err();
    assert_eq!(e.to_string(), "kernel /nonexistent/vmlinuz does not exist");
    let mut s = spec(&name, "quiet");
    s.vcpus = 2;
    let e = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap_err();
    assert!(
        e.to_string().contains("2 vCPU(s) but only 1 core(s)"),
        "{e}"
    );
    let mut s = spec(&name, "quiet");
    s.memory = 8 << 20;
    assert!(Vm::launch(&t.ctx, s, Boot::Fresh)
        .unwrap_err()
        .to_string()
        .contains("too small"));
    let mut s = spec(&name, "quiet");
    s.devices.push("0000:7f:1f.7".into());
    let e = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("device pass-through: PCI device 0000:7f:1f.7 does not exist"),
        "{e}"
    );
    let mut s = spec(&name, "");
    s.hugepages = true;
    s.memory = 1 << 40;
    let e = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap_err();
    assert!(e.to_string().starts_with("hugepages: "), "{e}");
    // Nothing was started or made.
    assert!(!t.ctx.paths(&name).dir.exists());
}

#[test]
fn the_gdb_stub_answers_on_its_socket() {
    use std::io::{Read, Write};
    let t = context();
    let name = unique_name("vm-gdb");
    let mut s = spec(&name, "quiet");
    s.gdb = true;
    let mut vm = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap();
    let mut sock = std::os::unix::net::UnixStream::connect(vm.paths().gdb()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // "?" asks why the target stopped: the stub stops the guest and answers with a stop reply.
    sock.write_all(b"$?#3f").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got
        .windows(2)
        .any(|w| w[0] == b'$' && (w[1] == b'S' || w[1] == b'T'))
    {
        let n = sock.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "gdb stub closed: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&got);
    assert!(reply.contains("$T") || reply.contains("$S"), "{reply:?}");
    drop(sock);
    vm.kill();
}

#[test]
fn rt_priority_runs_vcpu_threads_sched_fifo() {
    let t = context();
    let name = unique_name("vm-rt");
    let mut s = spec(&name, "quiet");
    s.rt_priority = Some(1);
    let mut vm = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap();
    let tid = vm.pins()[0].thread_id;
    // SAFETY: sched_getscheduler takes a thread id and reads nothing else.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    // Kill at once: a FIFO vCPU booting under TCG would hog its core.
    vm.kill();
    assert_eq!(policy, libc::SCHED_FIFO);
}

#[test]
fn mem_lock_keeps_guest_memory_resident() {
    let t = context();
    let name = unique_name("vm-lock");
    let mut s = spec(&name, "quiet");
    s.mem_lock = true;
    let mut vm = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap();
    vm.wait_for_console(READY_MARKER, 0, BOOT).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", vm.pid())).unwrap();
    let locked_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(locked_kb >= 256 * 1024, "only {locked_kb} kB locked");
    vm.kill();
}

/// A guest that halts instead of powering off (`halt -f`: every vCPU in `hlt` with interrupts
/// disabled, QEMU still "running") is detected, QEMU is ended and the VM reported as stopped —
/// by the supervisor's bounded wait and by `stop` — instead of waiting forever.
#[test]
fn a_guest_that_halts_without_powering_off_counts_as_stopped() {
    let t = context();
    let name = unique_name("vm-halt");
    let mut vm = Vm::launch(
        &t.ctx,
        spec(&name, "quiet carve.cmd=\"halt -f\""),
        Boot::Fresh,
    )
    .unwrap();
    let r = vm.wait_timeout(BOOT).unwrap();
    assert!(r.halted && r.clean, "{r:?}");
    assert!(r.message.contains("halted without powering off"), "{r:?}");
    let log = console::read_from_str(&vm.paths().console_log(), 0);
    assert!(log.contains("System halted"), "{log}");
    assert_eq!(vm::status(&t.ctx, &name).unwrap().state, "halted");
    t.assert_journals_undone();

    // `stop` on a guest that ignores the power button (no acpid) and then halts: no waiting out
    // the timeout.
    let name = unique_name("vm-halt-stop");
    let mut vm = Vm::launch(
        &t.ctx,
        spec(
            &name,
            "quiet carve.cmd=\"killall acpid; echo acpid-gone; sleep 2; halt -f\"",
        ),
        Boot::Fresh,
    )
    .unwrap();
    vm.wait_for_console("acpid-gone", 0, BOOT).unwrap();
    let t0 = std::time::Instant::now();
    // Halted, not Killed after the timeout: the halt was seen, not waited out.
    let (how, report) = vm.stop(false, Duration::from_secs(150));
    assert_eq!(how, StopOutcome::Halted, "{report:?}");
    eprintln!("stop returned after {:?}", t0.elapsed());
}
