//! A snapshot of the host state that carve changes, for before/after comparison.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Host state a test or a carve run may change. Two snapshots taken around a clean run are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// Path → content of every tuning file carve may write (sysctls, IRQ affinities, workqueue
    /// masks, huge page counts, root cpuset flags).
    pub files: BTreeMap<String, String>,
    /// cgroup directories whose name contains "carve", on every hierarchy.
    pub carve_cgroups: Vec<String>,
    /// Mount points whose path or source contains "carve", plus every hugetlbfs and overlay mount.
    pub carve_mounts: Vec<String>,
    /// Named network namespaces (/run/netns).
    pub netns: Vec<String>,
    /// Network links of the host namespace.
    pub links: Vec<String>,
    /// Running qemu-system processes (pid and command).
    pub qemu: Vec<String>,
    /// Journals left under /run/carve/journal.
    pub journals: Vec<String>,
    /// Container state directories under the default carve-oci root.
    pub oci_state: Vec<String>,
    /// Entries of the temp dir whose name contains "carve" (test bundles, built helpers).
    #[serde(default)]
    pub temp: Vec<String>,
}

const SYSCTLS: &[&str] = &[
    "/proc/sys/kernel/sched_rt_runtime_us",
    "/proc/sys/kernel/sched_rt_period_us",
    "/proc/sys/kernel/timer_migration",
    "/proc/sys/vm/stat_interval",
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/irq/default_smp_affinity",
    "/sys/devices/virtual/workqueue/cpumask",
    "/sys/bus/workqueue/devices/writeback/cpumask",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/sys/fs/cgroup/cpuset/cpuset.cpus",
    "/sys/fs/cgroup/cpuset/cpuset.cpu_exclusive",
    "/sys/fs/cgroup/cpuset/cpuset.sched_load_balance",
];

impl Snapshot {
    /// Reads the live host.
    pub fn take() -> Self {
        let mut s = Snapshot::default();
        for f in SYSCTLS {
            if let Ok(v) = std::fs::read_to_string(f) {
                s.files.insert(f.to_string(), v.trim().to_string());
            }
        }
        for irq in list_dir("/proc/irq") {
            let p = format!("/proc/irq/{irq}/smp_affinity");
            if let Ok(v) = std::fs::read_to_string(&p) {
                s.files.insert(p, v.trim().to_string());
            }
        }
        for size in list_dir("/sys/kernel/mm/hugepages") {
            let p = format!("/sys/kernel/mm/hugepages/{size}/nr_hugepages");
            if let Ok(v) = std::fs::read_to_string(&p) {
                s.files.insert(p, v.trim().to_string());
            }
        }
        let mut cgroups = Vec::new();
        walk_carve_dirs(Path::new("/sys/fs/cgroup"), 0, &mut cgroups);
        cgroups.sort();
        s.carve_cgroups = cgroups;
        if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
            for line in m.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let target = fields.get(4).copied().unwrap_or("");
                let fstype = line.split(" - ").nth(1).unwrap_or("");
                if line.contains("carve")
                    || fstype.starts_with("hugetlbfs")
                    || fstype.starts_with("overlay")
                {
                    s.carve_mounts.push(format!(
                        "{target} ({})",
                        fstype.split(' ').next().unwrap_or("")
                    ));
                }
            }
        }
        s.netns = list_dir("/run/netns");
        s.links = list_dir("/sys/class/net");
        for pid in list_dir("/proc")
            .into_iter()
            .filter(|p| p.parse::<u32>().is_ok())
        {
            if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/cmdline")) {
                if c.starts_with("qemu-system") || c.contains("/qemu-system") {
                    s.qemu.push(format!(
                        "{pid}: {}",
                        c.replace('\0', " ").chars().take(100).collect::<String>()
                    ));
                }
            }
        }
        s.journals = list_dir("/run/carve/journal");
        s.oci_state = list_dir("/run/carve-oci");
        s.temp = list_dir(&std::env::temp_dir().to_string_lossy());
        s.temp.retain(|n| n.contains("carve"));
        s
    }

    /// Lines describing how `after` differs from `self`; empty when equal.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.files {
            match after.files.get(k) {
                Some(w) if w != v => out.push(format!("{k}: {v:?} -> {w:?}")),
                None => out.push(format!("{k}: {v:?} -> (gone)")),
                _ => {}
            }
        }
        for (k, w) in &after.files {
            if !self.files.contains_key(k) {
                out.push(format!("{k}: (new) {w:?}"));
            }
        }
        let lists: [(&str, &Vec<String>, &Vec<String>); 8] = [
            ("cgroup", &self.carve_cgroups, &after.carve_cgroups),
            ("mount", &self.carve_mounts, &after.carve_mounts),
            ("netns", &self.netns, &after.netns),
            ("link", &self.links, &after.links),
            ("qemu", &self.qemu, &after.qemu),
            ("journal", &self.journals, &after.journals),
            ("oci state", &self.oci_state, &after.oci_state),
            ("temp entry", &self.temp, &after.temp),
        ];
        for (what, a, b) in lists {
            for x in b.iter().filter(|x| !a.contains(x)) {
                out.push(format!("{what} left behind: {x}"));
            }
            for x in a.iter().filter(|x| !b.contains(x)) {
                out.push(format!("{what} gone: {x}"));
            }
        }
        out
    }

    /// The differences in host tuning files (lines starting with '/') and in objects whose name
    /// holds one of `names`: what one test owns, while other tests create and remove their own
    /// cgroups, namespaces and journals in parallel.
    pub fn diff_touching(&self, after: &Snapshot, names: &[&str]) -> Vec<String> {
        self.diff(after)
            .into_iter()
            .filter(|l| l.starts_with('/') || names.iter().any(|k| l.contains(k)))
            .collect()
    }

    /// Panics with the differences when `after` differs from `self`.
    pub fn assert_unchanged(&self, after: &Snapshot) {
        let d = self.diff(after);
        assert!(d.is_empty(), "host changed:\n  {}", d.join("\n  "));
    }
}

fn list_dir(p: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn walk_carve_dirs(dir: &Path, depth: usize, out: &mut Vec<String>) {
    if depth > 5 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() || ft.is_symlink() {
            continue;
        }
        let p = e.path();
        if e.file_name().to_string_lossy().contains("carve") {
            out.push(p.display().to_string());
        }
        walk_carve_dirs(&p, depth + 1, out);
    }
}
