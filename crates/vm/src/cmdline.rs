//! The QEMU command line of a VM spec: pure, so it is unit-tested and printed by `carve vm run
//! --dry-run` and the benchmark.

use crate::spec::{Machine, VmSpec};
use crate::state::StatePaths;
use serde::{Deserialize, Serialize};

/// The accelerator QEMU runs guests with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization (`-accel kvm -cpu host`).
    Kvm,
    /// QEMU's translator (`-accel tcg -cpu max`): slow but runs anywhere.
    Tcg,
}

impl Accel {
    /// "kvm" or "tcg".
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The TCG translation buffer (MiB): 256, or 128 with `mem_lock`.
pub fn tcg_tb_mib(spec: &VmSpec) -> u64 {
    if spec.mem_lock {
        128
    } else {
        256
    }
}

/// Launch-time inputs beyond the spec.
#[derive(Debug, Clone, Default)]
pub struct LaunchArgs {
    /// Wait for an incoming migration (`-incoming defer`) instead of booting.
    pub incoming: bool,
    /// Start with the vCPUs stopped (`-S`), so carve can pin them before the guest runs.
    pub paused: bool,
    /// An open tap fd passed to QEMU (`-netdev tap,fd=N`), with the tap's name.
    pub tap_fd: Option<i32>,
    /// The hugetlbfs mount to back memory from (with `hugepages`).
    pub hugetlbfs: Option<String>,
    /// The host's TSC rate (kHz), handed to a microvm guest under TCG as `tsc_early_khz=`
    /// ([`crate::host::guest_tsc_khz`]).
    pub tsc_khz: Option<u64>,
}

/// The kernel command line QEMU gets: the spec's `append`, `console=ttyS0` unless a console is
/// given, `tsc_early_khz=N tsc=reliable` on microvm when `tsc_khz` is given (each unless the
/// user set it), and the guest network settings as `carve.ip=` / `carve.gw=`.
///
/// Why microvm needs the TSC rate: its ACPI tables are hardware-reduced, so Linux installs no
/// legacy timer (no PIT/HPET clockevent, no PM timer) and everything — the delay loop, the local
/// APIC timer, the clocksource — rests on the TSC frequency. Linux measures it against the PIT
/// channel 2, whose sanity checks fail when the QEMU thread is descheduled during the
/// measurement (TCG on a shared host); with no HPET or PM timer to fall back on the TSC is then
/// marked unstable and the boot spins forever in `calibrate_delay()` waiting for a jiffy that no
/// timer interrupt advances. Under TCG the guest TSC is the host's, so the host's rate is exact.
///
/// `tsc=reliable`: the host TSC is invariant (checked before `tsc_khz` is measured), and the only
/// clocksource watchdog microvm leaves Linux is jiffies, which fall behind under TCG (ticks are
/// lost while QEMU is preempted): the watchdog then wrongly demoted the TSC to refined-jiffies
/// (a 4 ms clock that drifts) in about a third of the boots.
///
/// `no_timer_check` (both machines, unless the user set it): at IO-APIC setup Linux checks that
/// the timer interrupt works by busy-waiting ~40 ms of calibrated delay and counting ticks. A
/// TCG guest whose QEMU threads are descheduled in that window sees no tick, decides "8254 timer
/// not connected to IO-APIC" and wanders into fallbacks: 1 of 8 guests booted at once on this
/// 2-core host hung there for good (its console's last line was that message). QEMU's timer is
/// wired correctly, so the check only ever lies here; cloud images set the same flag for VMs.
pub fn kernel_append(spec: &VmSpec, tsc_khz: Option<u64>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let user = spec.append.clone().unwrap_or_default();
    if !user.split_whitespace().any(|w| w.starts_with("console=")) {
        parts.push(match spec.machine {
            Machine::Q35 => "console=ttyS0".into(),
            // microvm has no PCI serial probing delay but the same 8250 at 0x3f8.
            Machine::Microvm => "console=ttyS0 reboot=t".into(),
        });
    }
    if !user.split_whitespace().any(|w| w == "no_timer_check") {
        parts.push("no_timer_check".into());
    }
    if let (Machine::Microvm, Some(khz)) = (spec.machine, tsc_khz) {
        if !user
            .split_whitespace()
            .any(|w| w.starts_with("tsc_early_khz="))
        {
            parts.push(format!("tsc_early_khz={khz}"));
        }
        if !user.split_whitespace().any(|w| w.starts_with("tsc=")) {
            parts.push("tsc=reliable".into());
        }
    }
    if let Some(n) = &spec.net {
        if let Some(ip) = &n.ip {
            parts.push(format!("carve.ip={ip}"));
        }
        if let Some(gw) = &n.gw {
            parts.push(format!("carve.gw={gw}"));
        }
    }
    if !user.is_empty() {
        parts.push(user);
    }
    parts.join(" ")
}

/// QEMU option values use ',' as a separator: a literal comma is written twice.
fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

/// The id of the guest's memory backend object.
const MEM_ID: &str = "carve-mem";

/// The full argv (binary first) that runs `spec` with state in `paths`.
pub fn qemu_argv(spec: &VmSpec, paths: &StatePaths, accel: Accel, la: &LaunchArgs) -> Vec<String> {
    let mut a: Vec<String> = vec![spec.qemu.display().to_string()];
    machine_args(&mut a, spec, accel);
    memory_args(&mut a, spec, la);
    boot_args(&mut a, spec, accel, la);
    device_args(&mut a, spec, la);
    channel_args(&mut a, spec, paths);
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    if la.paused {
        push(&["-S"]);
    }
    if la.incoming {
        push(&["-incoming", "defer"]);
    }
    a
}

/// Name, machine type, accelerator and CPU.
fn machine_args(a: &mut Vec<String>, spec: &VmSpec, accel: Accel) {
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    let machine = match spec.machine {
        Machine::Q35 => format!("q35,memory-backend={MEM_ID}"),
        Machine::Microvm => format!("microvm,memory-backend={MEM_ID},rtc=on"),
    };
    push(&[
        "-name",
        &format!("guest={},debug-threads=on", esc(&spec.name)),
    ]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-machine", &machine]);
    if spec.machine == Machine::Microvm {
        // A guest reset does not restart a microvm guest here (QEMU 7.2, `-kernel`: after
        // `sysrq b` the vCPU never runs the kernel again and QEMU idles on): end QEMU instead,
        // so a guest that reboots — carve's init does when its kernel has no timer — ends.
        push(&["-no-reboot"]);
    }
    match accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        // TCG's translation buffer defaults to 1 GiB and fills as guest code is translated: it
        // is bounded so QEMU stays inside its cgroup's memory limit (smaller still when locked,
        // as mem-lock makes it all resident).
        Accel::Tcg => push(&[
            "-accel",
            &format!("tcg,tb-size={}", tcg_tb_mib(spec)),
            "-cpu",
            "max",
        ]),
    }
}

/// vCPU count, memory size and its backend.
fn memory_args(a: &mut Vec<String>, spec: &VmSpec, la: &LaunchArgs) {
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["-smp", &spec.vcpus.to_string()]);
    let mib = spec.memory >> 20;
    push(&["-m", &format!("{mib}M")]);
    let prealloc = if spec.prealloc { "on" } else { "off" };
    let backend = match (&la.hugetlbfs, spec.hugepages) {
        (Some(mnt), true) => format!(
            "memory-backend-file,id={MEM_ID},size={mib}M,mem-path={},share=on,prealloc={prealloc}",
            esc(mnt)
        ),
        // memfd: shareable (vhost-user, migration to a local peer) and anonymous.
        _ => format!("memory-backend-memfd,id={MEM_ID},size={mib}M,share=on,prealloc={prealloc}"),
    };
    push(&["-object", &backend]);
    if spec.mem_lock {
        push(&["-overcommit", "mem-lock=on"]);
    }
}

/// Direct kernel boot: kernel, initrd and command line.
fn boot_args(a: &mut Vec<String>, spec: &VmSpec, accel: Accel, la: &LaunchArgs) {
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    if let Some(k) = &spec.kernel {
        push(&["-kernel", &k.display().to_string()]);
        if let Some(i) = &spec.initrd {
            push(&["-initrd", &i.display().to_string()]);
        }
        // Only TCG: the guest TSC is the host's there; under KVM the guest learns its rate
        // from kvmclock and the hypervisor CPUID leaves.
        let tsc = match accel {
            Accel::Tcg => la.tsc_khz,
            Accel::Kvm => None,
        };
        push(&["-append", &kernel_append(spec, tsc)]);
    }
}

/// Disks, the tap NIC and passed-through PCI devices.
fn device_args(a: &mut Vec<String>, spec: &VmSpec, la: &LaunchArgs) {
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    let (blk, net_dev) = match spec.machine {
        Machine::Q35 => ("virtio-blk-pci", "virtio-net-pci"),
        Machine::Microvm => ("virtio-blk-device", "virtio-net-device"),
    };
    for (i, d) in spec.disks.iter().enumerate() {
        let ro = if d.readonly { ",readonly=on" } else { "" };
        push(&[
            "-drive",
            &format!(
                "file={},format={},if=none,id=disk{i},cache={}{ro}",
                esc(&d.path.display().to_string()),
                d.format.as_str(),
                d.cache.as_str()
            ),
        ]);
        let boot = if spec.kernel.is_none() && i == 0 {
            ",bootindex=1"
        } else {
            ""
        };
        push(&["-device", &format!("{blk},drive=disk{i}{boot}")]);
    }
    if let (Some(n), Some(fd)) = (&spec.net, la.tap_fd) {
        let mac = n
            .mac
            .clone()
            .unwrap_or_else(|| crate::spec::mac_for(&spec.name));
        push(&["-netdev", &format!("tap,id=net0,fd={fd}")]);
        push(&["-device", &format!("{net_dev},netdev=net0,mac={mac}")]);
    }
    for d in &spec.devices {
        push(&["-device", &format!("vfio-pci,host={d}")]);
    }
}

/// The serial console, QMP and gdb sockets.
fn channel_args(a: &mut Vec<String>, spec: &VmSpec, paths: &StatePaths) {
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    // The serial console: a socket for `carve vm console`, and a log file carve reads markers from.
    push(&[
        "-chardev",
        &format!(
            "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
            esc(&paths.console_sock().display().to_string()),
            esc(&paths.console_log().display().to_string())
        ),
    ]);
    push(&["-serial", "chardev:serial0"]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=qmp,path={},server=on,wait=off",
            esc(&paths.qmp().display().to_string())
        ),
    ]);
    push(&["-mon", "chardev=qmp,mode=control"]);
    if spec.gdb {
        push(&[
            "-gdb",
            &format!(
                "unix:{},server=on,wait=off",
                esc(&paths.gdb().display().to_string())
            ),
        ]);
    }
}

/// Quotes an argv for a shell, for printing.
pub fn shell_quote(argv: &[String]) -> String {
    argv.iter()
        .map(|s| {
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c))
            {
                s.clone()
            } else {
                format!("'{}'", s.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Disk, NetSpec};

    fn spec() -> VmSpec {
        let mut s = VmSpec::builder("vm1").unwrap().build_unchecked();
        s.kernel = Some("/k/vmlinuz".into());
        s.initrd = Some("/k/initrd.img".into());
        s.append = Some("carve.cmd=\"echo hi\"".into());
        s
    }

    fn has(argv: &[String], pair: [&str; 2]) -> bool {
        argv.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1])
    }

    #[test]
    fn tcg_direct_boot_command_line() {
        let p = StatePaths::new("/run/carve/vm", "vm1");
        let a = qemu_argv(&spec(), &p, Accel::Tcg, &LaunchArgs::default());
        assert_eq!(a[0], "qemu-system-x86_64");
        assert!(a.contains(&"-nodefaults".to_string()));
        assert!(a.contains(&"-no-user-config".to_string()));
        assert!(has(&a, ["-display", "none"]));
        assert!(has(&a, ["-accel", "tcg,tb-size=256"]));
        assert!(has(&a, ["-cpu", "max"]));
        assert!(has(&a, ["-machine", "q35,memory-backend=carve-mem"]));
        assert!(has(
            &a,
            [
                "-object",
                "memory-backend-memfd,id=carve-mem,size=256M,share=on,prealloc=on"
            ]
        ));
        assert!(has(
            &a,
            [
                "-append",
                "console=ttyS0 no_timer_check carve.cmd=\"echo hi\""
            ]
        ));
        assert!(has(&a, ["-mon", "chardev=qmp,mode=control"]));
        assert!(has(&a, ["-serial", "chardev:serial0"]));
        assert!(!a.contains(&"-S".to_string()));
    }

    #[test]
    fn kvm_hugepages_disks_net_vfio_gdb() {
        let mut s = spec();
        s.hugepages = true;
        s.mem_lock = true;
        s.gdb = true;
        s.disks
            .push("/d/a.qcow2,readonly,cache=none".parse::<Disk>().unwrap());
        s.net = Some("br0,ip=10.0.0.2/24,gw=10.0.0.1".parse::<NetSpec>().unwrap());
        s.devices.push("0000:03:00.0".into());
        let p = StatePaths::new("/run/carve/vm", "vm1");
        let la = LaunchArgs {
            incoming: true,
            paused: true,
            tap_fd: Some(7),
            hugetlbfs: Some("/dev/hugepages".into()),
            tsc_khz: Some(2_300_000),
        };
        let a = qemu_argv(&s, &p, Accel::Kvm, &la);
        assert!(has(&a, ["-accel", "kvm"]));
        assert!(has(&a, ["-cpu", "host"]));
        assert!(has(&a, ["-object", "memory-backend-file,id=carve-mem,size=256M,mem-path=/dev/hugepages,share=on,prealloc=on"]));
        assert!(has(&a, ["-overcommit", "mem-lock=on"]));
        assert!(has(
            &a,
            [
                "-drive",
                "file=/d/a.qcow2,format=qcow2,if=none,id=disk0,cache=none,readonly=on"
            ]
        ));
        assert!(has(&a, ["-device", "virtio-blk-pci,drive=disk0"]));
        assert!(has(&a, ["-netdev", "tap,id=net0,fd=7"]));
        let mac = crate::spec::mac_for("vm1");
        assert!(has(
            &a,
            ["-device", &format!("virtio-net-pci,netdev=net0,mac={mac}")]
        ));
        assert!(has(&a, ["-device", "vfio-pci,host=0000:03:00.0"]));
        assert!(has(
            &a,
            ["-gdb", "unix:/run/carve/vm/vm1/gdb.sock,server=on,wait=off"]
        ));
        assert!(has(&a, ["-incoming", "defer"]));
        assert!(a.contains(&"-S".to_string()));
        assert!(has(
            &a,
            [
                "-append",
                "console=ttyS0 no_timer_check carve.ip=10.0.0.2/24 carve.gw=10.0.0.1 carve.cmd=\"echo hi\""
            ]
        ));
    }

    #[test]
    fn locked_tcg_gets_a_bounded_translation_buffer() {
        let mut s = spec();
        s.mem_lock = true;
        let p = StatePaths::new("/r", "vm1");
        let a = qemu_argv(&s, &p, Accel::Tcg, &LaunchArgs::default());
        assert!(has(&a, ["-accel", "tcg,tb-size=128"]));
        assert!(has(&a, ["-overcommit", "mem-lock=on"]));
    }

    #[test]
    fn disk_boot_and_microvm() {
        let mut s = VmSpec::builder("vm,2").unwrap_or_else(|_| VmSpec::builder("vm2").unwrap());
        s = s.machine(Machine::Microvm);
        let mut s = s.build_unchecked();
        s.disks.push("/d/root.raw".parse::<Disk>().unwrap());
        let p = StatePaths::new("/r", "vm2");
        let a = qemu_argv(&s, &p, Accel::Tcg, &LaunchArgs::default());
        assert!(!a.contains(&"-kernel".to_string()));
        assert!(has(
            &a,
            ["-device", "virtio-blk-device,drive=disk0,bootindex=1"]
        ));
        assert!(has(
            &a,
            ["-machine", "microvm,memory-backend=carve-mem,rtc=on"]
        ));
        // A microvm guest's reset ends QEMU (a reset does not restart it); q35's reboots.
        assert!(a.contains(&"-no-reboot".to_string()));
        let a = qemu_argv(&spec(), &p, Accel::Tcg, &LaunchArgs::default());
        assert!(!a.contains(&"-no-reboot".to_string()));
    }

    #[test]
    fn microvm_under_tcg_gets_the_tsc_rate() {
        let mut s = spec();
        s.machine = Machine::Microvm;
        let p = StatePaths::new("/r", "vm1");
        let la = LaunchArgs {
            tsc_khz: Some(2_300_000),
            ..Default::default()
        };
        let a = qemu_argv(&s, &p, Accel::Tcg, &la);
        assert!(has(
            &a,
            [
                "-append",
                "console=ttyS0 reboot=t no_timer_check tsc_early_khz=2300000 tsc=reliable carve.cmd=\"echo hi\""
            ]
        ));
        // Not under KVM (kvmclock), not on q35 (PM timer and HPET), not over the user's own.
        let a = qemu_argv(&s, &p, Accel::Kvm, &la);
        assert!(has(
            &a,
            [
                "-append",
                "console=ttyS0 reboot=t no_timer_check carve.cmd=\"echo hi\""
            ]
        ));
        let a = qemu_argv(&spec(), &p, Accel::Tcg, &la);
        assert!(has(
            &a,
            [
                "-append",
                "console=ttyS0 no_timer_check carve.cmd=\"echo hi\""
            ]
        ));
        s.append = Some("no_timer_check tsc_early_khz=1000000 tsc=unstable".into());
        let a = qemu_argv(&s, &p, Accel::Tcg, &la);
        assert!(has(
            &a,
            [
                "-append",
                "console=ttyS0 reboot=t no_timer_check tsc_early_khz=1000000 tsc=unstable"
            ]
        ));
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let mut s = spec();
        s.disks.push("/d/a,b.raw".parse::<Disk>().unwrap_or(Disk {
            path: "/d/a,b.raw".into(),
            format: crate::spec::DiskFormat::Raw,
            readonly: false,
            cache: Default::default(),
        }));
        let p = StatePaths::new("/r", "vm1");
        let a = qemu_argv(&s, &p, Accel::Tcg, &LaunchArgs::default());
        assert!(a.iter().any(|x| x.starts_with("file=/d/a,,b.raw,")));
        assert_eq!(
            shell_quote(&["a b".into(), "c".into()]),
            "'a b' c".to_string()
        );
    }
}
