//! v1 cpuset: cpus and mems, and the parent values a new directory must start from.

use crate::fs;
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

/// Copies the parent's cpuset.cpus and cpuset.mems into a directory just made (v1 starts it
/// empty, and an empty cpuset refuses tasks).
pub(super) fn inherit_parent(dir: &Path) -> Result<(), Error> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        // A parent without the file is no cpuset hierarchy a kernel made (a test's fake root).
        let Some(v) = fs::read_opt(parent, f)? else {
            continue;
        };
        let v = v.trim();
        if !v.is_empty() {
            fs::write(dir, f, v)?;
        }
    }
    Ok(())
}

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    let Some(cpu) = res.cpu() else {
        return Ok(());
    };
    // Mems first: a task must always have somewhere to allocate from.
    if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        fs::write(dir, "cpuset.mems", m)?;
    }
    if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        fs::write(dir, "cpuset.cpus", c)?;
    }
    Ok(())
}
