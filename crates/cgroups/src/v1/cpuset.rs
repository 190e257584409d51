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
    let v = if file == "cpuset.cpus" {
        without_exclusive_siblings(dir, parent, &v)
    } else {
        v
    };
    fs::write(dir, file, &v)?;
    Ok(Some(v))
}

/// The parent's CPUs less those a sibling holds exclusively (a dedicated-core partition): the
/// kernel refuses a new cpuset that overlaps an exclusive sibling, so copying the parent as is
/// would make every container creation fail while a core is dedicated.
fn without_exclusive_siblings(dir: &Path, parent: &Path, cpus: &str) -> String {
    let Some(mut set) = parse_list(cpus) else {
        return cpus.to_string();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return cpus.to_string();
    };
    for e in entries.flatten() {
        let p = e.path();
        if p == dir || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let exclusive = fs::read_opt(&p, "cpuset.cpu_exclusive")
            .ok()
            .flatten()
            .is_some_and(|x| x.trim() == "1");
        if !exclusive {
            continue;
        }
        if let Some(taken) = fs::read_opt(&p, "cpuset.cpus")
            .ok()
            .flatten()
            .and_then(|c| parse_list(&c))
        {
            set.retain(|c| !taken.contains(c));
        }
    }
    if set.is_empty() {
        // Nothing left: write the parent's list and let the kernel's error say why.
        return cpus.to_string();
    }
    format_list(&set)
}

fn format_list(cpus: &[u16]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_cpuset_skips_cpus_of_an_exclusive_sibling() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::write(r.join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(r.join("cpuset.mems"), "0\n").unwrap();
        let ded = r.join("carve-ded");
        std::fs::create_dir(&ded).unwrap();
        std::fs::write(ded.join("cpuset.cpus"), "2\n").unwrap();
        std::fs::write(ded.join("cpuset.cpu_exclusive"), "1\n").unwrap();
        let other = r.join("shared");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(other.join("cpuset.cpu_exclusive"), "0\n").unwrap();
        let new = r.join("carve-c");
        std::fs::create_dir(&new).unwrap();
        // The kernel makes these, empty, with the directory.
        std::fs::write(new.join("cpuset.cpus"), "").unwrap();
        std::fs::write(new.join("cpuset.mems"), "").unwrap();
        inherit_parent(&new).unwrap();
        assert_eq!(
            std::fs::read_to_string(new.join("cpuset.cpus"))
                .unwrap()
                .trim(),
            "0-1,3"
        );
        assert_eq!(
            std::fs::read_to_string(new.join("cpuset.mems"))
                .unwrap()
                .trim(),
            "0"
        );
    }

    #[test]
    fn lists_format_with_ranges() {
        assert_eq!(format_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(format_list(&[4]), "4");
    }
}
