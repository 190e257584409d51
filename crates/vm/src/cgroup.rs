//! QEMU's own cgroup (through carve-cgroups' `Manager`): the partition's cpuset (vCPU cores plus
//! housekeeping cores), a memory limit, and — for SCHED_FIFO vCPUs — a real-time budget, on every
//! hierarchy, journaled.

use carve_cgroups::{Layout, Manager};
use carve_core::CpuSet;
use carve_journal::{Change, Journal};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};
use std::path::{Path, PathBuf};

/// Why the VM's cgroup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The host's cgroup layout could not be read.
    #[error(transparent)]
    Layout(#[from] carve_cgroups::LayoutError),
    /// The journal refused the record.
    #[error(transparent)]
    Journal(#[from] carve_journal::Error),
    /// The cpu controller has no real-time budget left for SCHED_FIFO vCPUs.
    #[error(
        "no real-time budget left in {} ({free} µs per period free): SCHED_FIFO vCPUs need some",
        mount.display()
    )]
    NoRtBudget {
        /// The cpu hierarchy.
        mount: PathBuf,
        /// What is free, in µs per period.
        free: i64,
    },
    /// The cgroup could not be made or configured; `hint` says what usually causes it.
    #[error("{path}: {source}{hint}")]
    Manager {
        /// The cgroup path.
        path: String,
        /// The cause.
        source: carve_cgroups::Error,
        /// Empty, or why the kernel said no.
        hint: String,
    },
}

/// The cgroup path of VM `name`: at the top of each hierarchy, carrying "carve" so leak checks
/// see it, with no shared parent directory to remove.
pub fn cgroup_path(name: &str) -> String {
    format!("/carve-vm-{name}")
}

/// The real-time budget (µs per period) left at the top of the v1 cpu hierarchy: the root's
/// `cpu.rt_runtime_us` minus what its other children hold. `None` when the kernel has no
/// real-time group scheduling (no such file): then FIFO threads need no budget.
fn free_rt_runtime(mount: &Path, own: &Path) -> Option<i64> {
    let root: i64 = std::fs::read_to_string(mount.join("cpu.rt_runtime_us"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let used: i64 = std::fs::read_dir(mount)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p != own)
        .filter_map(|p| std::fs::read_to_string(p.join("cpu.rt_runtime_us")).ok())
        .filter_map(|s| s.trim().parse::<i64>().ok())
        .filter(|v| *v > 0)
        .sum();
    Some(root - used)
}

/// Makes the cgroup with `cpus` and `memory_limit` bytes under the cgroup root `root` (and, with
/// `realtime`, the real-time budget still free, since a v1 cpu cgroup starts with none and
/// SCHED_FIFO is refused in it), after journaling each directory it will create (undo removes
/// them). Returns the manager and the directories.
pub fn make(
    journal: &mut Journal,
    root: &Path,
    name: &str,
    cpus: &CpuSet,
    memory_limit: u64,
    realtime: bool,
) -> Result<(Manager, Vec<PathBuf>), CgroupError> {
    let path = cgroup_path(name);
    let layout = Layout::detect(root)?;
    let mut dirs: Vec<PathBuf> = layout.v1.iter().map(|h| h.dir_of(&path)).collect();
    if let Some(u) = &layout.unified {
        dirs.push(u.dir_of(&path));
    }
    for d in &dirs {
        journal.record(Change::Dir { path: d.clone() })?;
    }
    let mut cpu = LinuxCpu::default();
    cpu.set_cpus(Some(cpus.to_string()));
    if realtime {
        if let Some(h) = layout.v1_with("cpu") {
            if let Some(free) = free_rt_runtime(&h.mount, &h.dir_of(&path)) {
                if free < 10_000 {
                    return Err(CgroupError::NoRtBudget {
                        mount: h.mount.clone(),
                        free,
                    });
                }
                cpu.set_realtime_runtime(Some(free));
            }
        }
    }
    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(memory_limit as i64));
    let mut res = LinuxResources::default();
    res.set_cpu(Some(cpu));
    res.set_memory(Some(mem));
    let manager_err = |source| CgroupError::Manager {
        path: path.clone(),
        source,
        hint: String::new(),
    };
    let mut m = Manager::with_layout(&layout, &path).map_err(manager_err)?;
    m.create().map_err(manager_err)?;
    if let Err(source) = m.apply(&res) {
        let _ = m.remove();
        let msg = source.to_string();
        let hint = if msg.contains("cpuset.cpus") && msg.contains("Invalid argument") {
            format!(
                " (another cpuset holds one of the cores {cpus} exclusively — a dedicated \
                 partition? choose --cpus/--housekeeping outside it)"
            )
        } else {
            String::new()
        };
        return Err(CgroupError::Manager { path, source, hint });
    }
    Ok((m, dirs))
}
