//! v1 pids: the task limit.

use crate::fs;
use crate::stats::Stats;
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    if let Some(p) = res.pids() {
        fs::write(dir, "pids.max", &crate::pids_max(p.limit()))?;
    }
    Ok(())
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    st.pids.current = fs::read_u64_opt(dir, "pids.current")?.unwrap_or(0);
    st.pids.limit = match fs::read_u64_opt(dir, "pids.max")? {
        Some(u64::MAX) | None => 0,
        Some(v) => v,
    };
    Ok(())
}
