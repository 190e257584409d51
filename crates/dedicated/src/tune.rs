//! Host knobs moved out of the dedicated cores' way: IRQ affinities, workqueue masks, sysctls,
//! huge pages. Every write goes through the journal.

use carve_core::CpuSet;
use carve_journal::{Change, Journal};
use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::spec::HugePagesSpec;
use crate::sys::{possible_cpu_count, read_trim, HostPaths};

/// What happened to the host's IRQs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IrqReport {
    /// IRQs moved to housekeeping: (irq, names, old CPUs).
    pub moved: Vec<(u32, String, String)>,
    /// IRQs routed to the dedicated cores because the partition asked for them.
    pub to_partition: Vec<u32>,
    /// IRQs whose affinity the kernel manages or refuses to change: (irq, names, CPUs, error).
    pub fixed: Vec<(u32, String, String, String)>,
}

/// The action names of IRQ `n` (the subdirectories of PROC/irq/N), joined with ",".
pub fn irq_names(proc: &Path, n: u32) -> String {
    let mut names: Vec<String> = std::fs::read_dir(proc.join(format!("irq/{n}")))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.join(",")
}

/// Every IRQ number under PROC/irq.
pub fn list_irqs(proc: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(proc.join("irq"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Routes every IRQ to `housekeeping` except `wanted`, which go to `dedicated`; sets
/// default_smp_affinity for IRQs registered later. An IRQ the kernel will not move (a managed IRQ
/// answers EIO) is reported, not recorded: a harmless rewrite of its current value finds that out
/// before the journal records anything.
pub fn route_irqs(
    j: &mut Journal,
    paths: &HostPaths,
    housekeeping: &CpuSet,
    dedicated: &CpuSet,
    wanted: &[u32],
) -> Result<IrqReport, carve_journal::Error> {
    let mut report = IrqReport::default();
    let ncpus = possible_cpu_count(&paths.sys);
    let default = paths.proc.join("irq/default_smp_affinity");
    if default.exists() {
        j.write_file(&default, &housekeeping.to_mask(ncpus))?;
    }
    for n in list_irqs(&paths.proc) {
        let f = paths.proc.join(format!("irq/{n}/smp_affinity_list"));
        let Some(cur) = read_trim(&f) else { continue };
        let target = if wanted.contains(&n) {
            dedicated
        } else {
            housekeeping
        };
        if CpuSet::parse_list(&cur).ok().as_ref() == Some(target) {
            if wanted.contains(&n) {
                report.to_partition.push(n);
            }
            continue;
        }
        if let Err(e) = std::fs::write(&f, &cur) {
            report
                .fixed
                .push((n, irq_names(&paths.proc, n), cur, e.to_string()));
            continue;
        }
        match j.write_file(&f, &target.to_string()) {
            Ok(()) if wanted.contains(&n) => report.to_partition.push(n),
            Ok(()) => report.moved.push((n, irq_names(&paths.proc, n), cur)),
            // Recorded but refused (an IRQ with no online CPU in the target, say): the record
            // rewrites the unchanged value on undo, which is harmless.
            Err(carve_journal::Error::Io {
                action: "write",
                path,
                source,
            }) if path == f => {
                report
                    .fixed
                    .push((n, irq_names(&paths.proc, n), cur, source.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// Sets the unbound workqueue cpumask and writeback's to `housekeeping`. Returns the files written.
pub fn move_workqueues(
    j: &mut Journal,
    paths: &HostPaths,
    housekeeping: &CpuSet,
) -> Result<Vec<PathBuf>, carve_journal::Error> {
    let ncpus = possible_cpu_count(&paths.sys);
    let mut out = Vec::new();
    for f in [
        "devices/virtual/workqueue/cpumask",
        "bus/workqueue/devices/writeback/cpumask",
    ] {
        let p = paths.sys.join(f);
        if p.exists() {
            j.write_file(&p, &housekeeping.to_mask(ncpus))?;
            out.push(p);
        }
    }
    Ok(out)
}

/// Sets every block queue's `rq_affinity` to 2: a request completes on the CPU that submitted it
/// (housekeeping, since every task is there) instead of the CPU its IRQ hit. A managed IRQ that
/// stays on a dedicated core then only runs its short handler there; the completion work and the
/// queue re-run (kblockd, a per-CPU workqueue) follow to the submitter. Returns the files written.
pub fn move_block_completions(
    j: &mut Journal,
    paths: &HostPaths,
) -> Result<Vec<PathBuf>, carve_journal::Error> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(paths.sys.join("block")) else {
        return Ok(out);
    };
    let mut devs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    devs.sort();
    for d in devs {
        let f = d.join("queue/rq_affinity");
        if read_trim(&f).is_some_and(|v| v != "2") {
            j.write_file(&f, "2")?;
            out.push(f);
        }
    }
    Ok(out)
}

/// Sets the scheduler and vmstat sysctls: timer_migration=0 (timers stay where they were armed,
/// not pulled onto an idle dedicated core), vm.stat_interval raised (the per-CPU vmstat work runs
/// that rarely), and sched_rt_runtime_us=-1 when an RT policy runs (see docs/dedicated.md: with
/// the default 950000 an RT spinner loses 50 ms every second).
pub fn set_sysctls(
    j: &mut Journal,
    paths: &HostPaths,
    rt: bool,
    stat_interval: u32,
) -> Result<(), carve_journal::Error> {
    let knobs: [(&str, String, bool); 3] = [
        ("kernel/timer_migration", "0".into(), true),
        ("vm/stat_interval", stat_interval.to_string(), true),
        ("kernel/sched_rt_runtime_us", "-1".into(), rt),
    ];
    for (name, value, on) in knobs {
        let p = paths.sysctl(name);
        if on && p.exists() {
            j.write_file(&p, &value)?;
        }
    }
    Ok(())
}

/// Folds every CPU's pending vmstat counters now (`vm/stat_refresh`). The vmstat shepherd only
/// queues `vmstat_update` on a CPU whose counters changed; a dedicated core whose counters are
/// folded once its tasks have left then gets none, instead of one more at the old interval. Nothing
/// to undo: it changes no setting. Errors are ignored (the file is optional).
pub fn refresh_vmstat(paths: &HostPaths) {
    let _ = std::fs::write(paths.sysctl("vm/stat_refresh"), "1");
}

/// Huge pages reserved and mounted for the partition.
#[derive(Debug, Clone, Serialize)]
pub struct HugePagesGrant {
    /// What was asked.
    pub spec: HugePagesSpec,
    /// The hugetlbfs mount the process maps them from.
    pub mount: PathBuf,
}

/// Why huge pages could not be granted.
#[derive(Debug, thiserror::Error)]
pub enum HugePagesError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] carve_journal::Error),
    /// The kernel has no pool of that size (or node).
    #[error("no huge page pool {0}")]
    NoPool(PathBuf),
    /// The kernel could not find enough free memory.
    #[error("only {got} of {want} huge pages of {size_kib} KiB could be reserved (memory too fragmented or too small)")]
    Short {
        /// Wanted total.
        want: u64,
        /// Reached total.
        got: u64,
        /// Page size.
        size_kib: u64,
    },
    /// Mounting hugetlbfs failed.
    #[error("mount hugetlbfs at {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Grows the pool by `spec.count` pages (per node when asked) and mounts a hugetlbfs of that page
/// size at RUN/hugepages/NAME-SIZEkB whose `min_size` holds exactly those pages for the process.
pub fn grant_hugepages(
    j: &mut Journal,
    paths: &HostPaths,
    name: &str,
    spec: &HugePagesSpec,
) -> Result<HugePagesGrant, HugePagesError> {
    let pool = match spec.node {
        Some(n) => paths.sys.join(format!(
            "devices/system/node/node{n}/hugepages/{}/nr_hugepages",
            spec.dir_name()
        )),
        None => paths.sys.join(format!(
            "kernel/mm/hugepages/{}/nr_hugepages",
            spec.dir_name()
        )),
    };
    let cur: u64 = read_trim(&pool)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HugePagesError::NoPool(pool.clone()))?;
    let want = cur + spec.count;
    j.write_file(&pool, &want.to_string())?;
    let mut got: u64 = read_trim(&pool).and_then(|s| s.parse().ok()).unwrap_or(0);
    if got < want {
        // The kernel gives up on a fragmented zone at once; compacting memory (no lasting
        // state) and asking again is what an admin would do before calling it short.
        let _ = std::fs::write(paths.proc.join("sys/vm/compact_memory"), "1");
        let _ = std::fs::write(&pool, want.to_string());
        got = read_trim(&pool).and_then(|s| s.parse().ok()).unwrap_or(0);
    }
    if got < want {
        return Err(HugePagesError::Short {
            want,
            got,
            size_kib: spec.size_kib,
        });
    }
    let base = paths.run.join("hugepages");
    std::fs::create_dir_all(&base).map_err(|source| HugePagesError::Mount {
        path: base.clone(),
        source,
    })?;
    let mount = base.join(format!("{name}-{}kB", spec.size_kib));
    j.create_dir(&mount)?;
    j.record(Change::Mount {
        target: mount.clone(),
    })?;
    let kib = spec.size_kib * spec.count;
    let opts = format!("pagesize={}K,size={kib}K,min_size={kib}K", spec.size_kib);
    mount_fs("hugetlbfs", &mount, "hugetlbfs", &opts).map_err(|source| HugePagesError::Mount {
        path: mount.clone(),
        source,
    })?;
    Ok(HugePagesGrant { spec: *spec, mount })
}

/// mount(2) with a filesystem type and data string.
pub fn mount_fs(source: &str, target: &Path, fstype: &str, data: &str) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &[u8]| CString::new(s).map_err(std::io::Error::other);
    let (src, tgt, fs, d) = (
        c(source.as_bytes())?,
        c(target.as_os_str().as_bytes())?,
        c(fstype.as_bytes())?,
        c(data.as_bytes())?,
    );
    // SAFETY: all four are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            d.as_ptr().cast(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Kernel knobs that would help but only take effect at boot: reported, never pretended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebootAdvice {
    /// One line per knob: what is set now and what the command line would need.
    pub lines: Vec<String>,
}

/// What the kernel command line would need for `cpus`, given what this boot has (the host
/// model's kernel: command line, CONFIG_NO_HZ_FULL, HZ).
pub fn reboot_advice(kernel: &carve_core::host::Kernel, cpus: &CpuSet) -> RebootAdvice {
    use carve_core::host::Known;
    let mut lines = Vec::new();
    let covers = |set: Option<&CpuSet>| set.is_some_and(|s| cpus.is_subset(s));
    let isol = kernel.isolcpus.as_ref();
    if covers(isol.map(|i| &i.cpus)) {
        lines.push(format!(
            "isolcpus={} is set at boot",
            isol.map(|i| i.raw.as_str()).unwrap_or_default()
        ));
    } else {
        lines.push(format!(
            "isolcpus=managed_irq,domain,{cpus} needs a reboot (kernel command line): keeps managed IRQs and the scheduler's domains off the cores from boot"
        ));
    }
    let tick = match kernel.hz {
        Some(hz) => format!("the {hz} Hz tick"),
        None => "the periodic tick".into(),
    };
    match kernel.no_hz_full {
        Known::No => lines.push(format!(
            "this kernel is built without CONFIG_NO_HZ_FULL: nohz_full cannot work, {tick} stays on every core (the noise floor)"
        )),
        _ if covers(kernel.nohz_full.as_ref().map(|l| &l.cpus)) => {
            lines.push("nohz_full covers the cores (set at boot)".into())
        }
        _ => lines.push(format!(
            "nohz_full={cpus} needs a reboot (kernel command line): stops {tick} on a core running one task"
        )),
    }
    if covers(kernel.rcu_nocbs.as_ref().map(|l| &l.cpus)) {
        lines.push("rcu_nocbs covers the cores (set at boot)".into());
    } else {
        lines.push(format!(
            "rcu_nocbs={cpus} needs a reboot (kernel command line): moves RCU callbacks off the cores"
        ));
    }
    RebootAdvice { lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(json: &str) -> carve_core::host::Kernel {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reboot_advice_says_what_this_boot_lacks() {
        let cpus = CpuSet::parse_list("1").unwrap();
        // This machine: nothing on the command line, no NO_HZ_FULL, HZ=250.
        let k = kernel(r#"{"release":"6.18","no_hz_full":"no","hz":250}"#);
        let a = reboot_advice(&k, &cpus).lines.join("\n");
        assert!(
            a.contains("isolcpus=managed_irq,domain,1 needs a reboot"),
            "{a}"
        );
        assert!(a.contains("without CONFIG_NO_HZ_FULL"), "{a}");
        assert!(a.contains("250 Hz tick"), "{a}");
        assert!(a.contains("rcu_nocbs=1 needs a reboot"), "{a}");
        // A boot that has them all.
        let k = kernel(
            r#"{"release":"6.18","no_hz_full":"yes",
                "isolcpus":{"raw":"managed_irq,domain,1-3","flags":["managed_irq","domain"],"cpus":"1-3"},
                "nohz_full":{"raw":"1-3","cpus":"1-3"},"rcu_nocbs":{"raw":"1-3","cpus":"1-3"}}"#,
        );
        let a = reboot_advice(&k, &cpus).lines.join("\n");
        assert!(!a.contains("needs a reboot"), "{a}");
    }
}
