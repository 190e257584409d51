//! QEMU's own cgroup (through carve-cgroups' `Manager`): the partition's cpuset (vCPU cores plus
//! housekeeping cores) and a memory limit, on every hierarchy, journaled.

use carve_cgroups::{Layout, Manager};
use carve_core::CpuSet;
use carve_journal::{Change, Journal};
use std::path::{Path, PathBuf};

/// The cgroup path of VM `name`: at the top of each hierarchy, carrying "carve" so leak checks
/// see it, with no shared parent directory to remove.
pub fn cgroup_path(name: &str) -> String {
    format!("/carve-vm-{name}")
}

/// Makes the cgroup with `cpus` and `memory_limit` bytes under the cgroup root `root`, after
/// journaling each directory it will create (undo removes them). Returns the manager and the
/// directories.
pub fn make(
    journal: &mut Journal,
    root: &Path,
    name: &str,
    cpus: &CpuSet,
    memory_limit: u64,
) -> Result<(Manager, Vec<PathBuf>), String> {
    let path = cgroup_path(name);
    let layout = Layout::detect(root).map_err(|e| e.to_string())?;
    let mut dirs: Vec<PathBuf> = layout.v1.iter().map(|h| h.dir_of(&path)).collect();
    if let Some(u) = &layout.unified {
        dirs.push(u.dir_of(&path));
    }
    for d in &dirs {
        journal
            .record(Change::Dir { path: d.clone() })
            .map_err(|e| e.to_string())?;
    }
    let m = Manager::with_cpuset_and_memory(
        root,
        &path,
        &cpus.to_string(),
        None,
        Some(memory_limit as i64),
    )
    .map_err(|e| format!("{path}: {e}"))?;
    Ok((m, dirs))
}
