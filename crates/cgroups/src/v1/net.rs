//! v1 net_cls (classid) and net_prio (per-interface priorities), applied when mounted.

use crate::fs;
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

pub(super) fn apply_cls(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    if let Some(id) = res.network().as_ref().and_then(|n| n.class_id()) {
        fs::write(dir, "net_cls.classid", &id.to_string())?;
    }
    Ok(())
}

pub(super) fn apply_prio(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    let prios = res.network().as_ref().and_then(|n| n.priorities().clone());
    for p in prios.iter().flatten() {
        fs::write(
            dir,
            "net_prio.ifpriomap",
            &format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}
