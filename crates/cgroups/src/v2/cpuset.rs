//! v2 cpuset: cpuset.cpus and cpuset.mems (empty means "the parent's", so no inheritance step).

use crate::fs;
use crate::stats::{parse_list, Stats};
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

/// The effective cpus and mems (what the tasks really get).
pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    let list = |f: &str| -> Result<Vec<u16>, Error> {
        Ok(fs::read_opt(dir, f)?
            .and_then(|s| parse_list(&s))
            .unwrap_or_default())
    };
    st.cpuset.cpus = list("cpuset.cpus.effective")?;
    st.cpuset.mems = list("cpuset.mems.effective")?;
    Ok(())
}
