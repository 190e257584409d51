//! v1 cpuset: cpus and mems, and the parent values a new directory must start from.

use crate::fs;
use crate::stats::{parse_list, Stats};
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

/// Gives a directory just made its parent's cpuset.cpus and cpuset.mems (v1 starts it empty, and
/// an empty cpuset refuses tasks). An empty ancestor (made by someone else and never filled) is
/// filled the same way first, as runc does.
pub(super) fn inherit_parent(dir: &Path) -> Result<(), Error> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        fill(dir, f, true)?;
    }
    Ok(())
}

/// Makes `dir/file` non-empty from the nearest non-empty ancestor and returns its value.
/// `fresh`: the directory was just made, so it is known to be empty (no read needed).
fn fill(dir: &Path, file: &str, fresh: bool) -> Result<Option<String>, Error> {
    if !fresh {
        // A directory without the file is no cpuset hierarchy a kernel made (a test's fake root).
        let Some(v) = fs::read_opt(dir, file)? else {
            return Ok(None);
        };
        let v = v.trim();
        if !v.is_empty() {
            return Ok(Some(v.to_string()));
        }
    }
    let Some(parent) = dir.parent() else {
        return Ok(None);
    };
    let Some(v) = fill(parent, file, false)? else {
        return Ok(None);
    };
    fs::write(dir, file, &v)?;
    Ok(Some(v))
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

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    let c = &mut st.cpuset;
    let list = |f: &str| -> Result<Vec<u16>, Error> {
        Ok(fs::read_opt(dir, f)?
            .and_then(|s| parse_list(&s))
            .unwrap_or_default())
    };
    c.cpus = list("cpuset.cpus")?;
    c.mems = list("cpuset.mems")?;
    for (f, slot) in [
        ("cpuset.cpu_exclusive", &mut c.cpu_exclusive),
        ("cpuset.mem_hardwall", &mut c.mem_hardwall),
        ("cpuset.mem_exclusive", &mut c.mem_exclusive),
        ("cpuset.memory_migrate", &mut c.memory_migrate),
        ("cpuset.memory_spread_page", &mut c.memory_spread_page),
        ("cpuset.memory_spread_slab", &mut c.memory_spread_slab),
        ("cpuset.memory_pressure", &mut c.memory_pressure),
        ("cpuset.sched_load_balance", &mut c.sched_load_balance),
    ] {
        *slot = fs::read_u64_opt(dir, f)?.unwrap_or(0);
    }
    c.sched_relax_domain_level = fs::read_opt(dir, "cpuset.sched_relax_domain_level")?
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Ok(())
}
