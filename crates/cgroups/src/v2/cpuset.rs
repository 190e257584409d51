//! v2 cpuset: cpuset.cpus and cpuset.mems (empty means "the parent's", so no inheritance step).

use crate::fs;
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    let Some(cpu) = res.cpu() else {
        return Ok(());
    };
    if let Some(m) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        fs::write(dir, "cpuset.mems", m)?;
    }
    if let Some(c) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        fs::write(dir, "cpuset.cpus", c)?;
    }
    Ok(())
}
