//! What the VM tier reads from the host beyond carve-core's host model: the accelerator choice,
//! hugetlbfs, thread lists and affinities, the TSC rate. Roots are parameters so the logic is tested against a
//! temp dir.

use crate::cmdline::Accel;
use carve_core::host::{Host, Roots};
use carve_core::CpuSet;
use std::path::Path;

/// KVM when the host model says KVM can run guests (`Host::kvm_usable`, as `carve host` shows),
/// else TCG with the reason for the warning.
pub fn choose_accel(host: &Host) -> (Accel, Option<String>) {
    if host.kvm_usable() {
        return (Accel::Kvm, None);
    }
    let why = if !host.virt.kvm_device {
        "there is no /dev/kvm".to_string()
    } else {
        format!(
            "/dev/kvm is backed by {}, which cannot run unmodified guests",
            host.virt
                .kvm_module
                .as_deref()
                .unwrap_or("an unknown module")
        )
    };
    (
        Accel::Tcg,
        Some(format!(
            "warning: {why}; using TCG (software emulation, much slower)"
        )),
    )
}

/// The first hugetlbfs mount whose page size is 2 MiB (or has no pagesize option), from
/// `PROC/mounts`.
pub fn hugetlbfs_mount(roots: &Roots) -> Option<String> {
    let mounts = std::fs::read_to_string(roots.proc.join("mounts")).ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3
            && f[2] == "hugetlbfs"
            && (!f[3].contains("pagesize=") || f[3].contains("pagesize=2M")))
        .then(|| f[1].to_string())
    })
}

/// Free 2 MiB huge pages.
pub fn free_hugepages(roots: &Roots) -> u64 {
    std::fs::read_to_string(
        roots
            .sys
            .join("kernel/mm/hugepages/hugepages-2048kB/free_hugepages"),
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(0)
}

/// Cores some v1 cpuset holds exclusively (`cpuset.cpu_exclusive` = 1), e.g. a dedicated
/// partition: QEMU's housekeeping threads must stay off them (a cpuset that includes them is
/// refused with EINVAL). Looks three levels deep under `cpuset_mount`.
pub fn exclusive_cpus(cpuset_mount: &Path) -> CpuSet {
    fn walk(dir: &Path, depth: usize, out: &mut CpuSet) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            let excl = std::fs::read_to_string(p.join("cpuset.cpu_exclusive"))
                .map(|s| s.trim() == "1")
                .unwrap_or(false);
            if excl {
                if let Some(c) = std::fs::read_to_string(p.join("cpuset.cpus"))
                    .ok()
                    .and_then(|s| CpuSet::parse_list(&s).ok())
                {
                    *out = out.union(&c);
                }
            }
            if depth < 3 {
                walk(&p, depth + 1, out);
            }
        }
    }
    let mut out = CpuSet::new();
    walk(cpuset_mount, 1, &mut out);
    out
}

/// A task's allowed cores, from `PROC/PID/task/TID/status` (Cpus_allowed_list).
pub fn allowed_cpus(proc_root: &Path, pid: i32, tid: i32) -> Option<CpuSet> {
    let s = std::fs::read_to_string(proc_root.join(format!("{pid}/task/{tid}/status"))).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|v| CpuSet::parse_list(v.trim()).ok())
}

/// The threads of process `pid`.
pub fn threads(proc_root: &Path, pid: i32) -> Vec<i32> {
    let mut t: Vec<i32> = std::fs::read_dir(proc_root.join(format!("{pid}/task")))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    t.sort_unstable();
    t
}

/// The TSC rate (kHz) a guest should be told on its kernel command line: the host's, for a
/// microvm under TCG (see [`crate::cmdline::kernel_append`] for why), else None.
pub fn guest_tsc_khz(spec: &crate::spec::VmSpec, accel: Accel) -> Option<u64> {
    match (spec.machine, accel) {
        (crate::spec::Machine::Microvm, Accel::Tcg) => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
            if !invariant_tsc(&cpuinfo) {
                return None;
            }
            host_tsc_khz()
        }
        _ => None,
    }
}

/// Whether `/proc/cpuinfo` text shows an invariant TSC (`constant_tsc` and `nonstop_tsc`): one
/// rate that holds across frequency changes and idle states, so a single measurement stands.
pub fn invariant_tsc(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.contains(&"constant_tsc") && f.contains(&"nonstop_tsc")
        })
        .unwrap_or(false)
}

/// The host TSC rate in kHz, measured against `CLOCK_MONOTONIC_RAW` over 20 ms (each end the
/// tightest of a few `rdtsc`/`clock_gettime`/`rdtsc` brackets, so a preemption inside one does
/// not count): within ~0.01 %.
#[cfg(target_arch = "x86_64")]
pub fn host_tsc_khz() -> Option<u64> {
    fn raw_ns() -> u128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
        ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
    }
    fn sample() -> (u128, u128) {
        let mut best = (u64::MAX, 0u128, 0u128);
        for _ in 0..8 {
            // SAFETY: rdtsc has no memory effects; every x86_64 CPU has it.
            let a = unsafe { std::arch::x86_64::_rdtsc() };
            let ns = raw_ns();
            // SAFETY: as above.
            let b = unsafe { std::arch::x86_64::_rdtsc() };
            let width = b.wrapping_sub(a);
            if width < best.0 {
                best = (width, a as u128 + width as u128 / 2, ns);
            }
        }
        (best.1, best.2)
    }
    let (t0, n0) = sample();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (t1, n1) = sample();
    if n1 <= n0 || t1 <= t0 {
        return None;
    }
    // cycles per ns × 10⁶ = cycles per ms = kHz.
    let khz = (t1 - t0) * 1_000_000 / (n1 - n0);
    u64::try_from(khz).ok().filter(|&k| k > 0)
}

/// Not measurable off x86_64.
#[cfg(not(target_arch = "x86_64"))]
pub fn host_tsc_khz() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_tsc_needs_both_flags() {
        let both = "processor\t: 0\nflags\t\t: fpu tsc constant_tsc nonstop_tsc rep_good\n";
        assert!(invariant_tsc(both));
        assert!(!invariant_tsc("flags\t\t: fpu tsc constant_tsc\n"));
        assert!(!invariant_tsc("processor\t: 0\n"));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn host_tsc_rate_is_plausible() {
        let khz = host_tsc_khz().unwrap();
        assert!((100_000..20_000_000).contains(&khz), "{khz} kHz");
    }

    #[test]
    fn host_files_parse() {
        let d = tempfile::tempdir().unwrap();
        let r = Roots::under(d.path());
        std::fs::create_dir_all(&r.proc).unwrap();
        std::fs::write(
            r.proc.join("mounts"),
            "proc /proc proc rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n",
        )
        .unwrap();
        assert_eq!(hugetlbfs_mount(&r).as_deref(), Some("/dev/hugepages"));
        assert_eq!(free_hugepages(&r), 0);
        std::fs::create_dir_all(r.proc.join("7/task/8")).unwrap();
        std::fs::write(
            r.proc.join("7/task/8/status"),
            "Name:\tx\nCpus_allowed_list:\t1\n",
        )
        .unwrap();
        assert_eq!(allowed_cpus(&r.proc, 7, 8).unwrap().to_string(), "1");
        assert_eq!(threads(&r.proc, 7), vec![8]);
    }

    #[test]
    fn exclusive_cpusets_are_found() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("dedicated/inner");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(d.path().join("dedicated/cpuset.cpu_exclusive"), "0\n").unwrap();
        std::fs::write(a.join("cpuset.cpu_exclusive"), "1\n").unwrap();
        std::fs::write(a.join("cpuset.cpus"), "2-3\n").unwrap();
        let b = d.path().join("other");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("cpuset.cpu_exclusive"), "0\n").unwrap();
        std::fs::write(b.join("cpuset.cpus"), "0-7\n").unwrap();
        assert_eq!(exclusive_cpus(d.path()).to_string(), "2-3");
    }

    #[test]
    fn pvm_kvm_falls_back_to_tcg() {
        // This host's model, with its virtualization facts replaced.
        let mut h = carve_core::read_host(&Roots::default()).unwrap();
        h.virt.kvm_device = false;
        let (a, why) = choose_accel(&h);
        assert_eq!(a, Accel::Tcg);
        assert!(why.unwrap().contains("no /dev/kvm"));
        h.virt.kvm_device = true;
        h.virt.kvm_module = Some("kvm_pvm".into());
        let (a, why) = choose_accel(&h);
        assert_eq!(a, Accel::Tcg);
        assert!(why.unwrap().contains("kvm_pvm"));
        h.virt.kvm_module = Some("kvm_intel".into());
        assert_eq!(choose_accel(&h).0, Accel::Kvm);
    }
}
