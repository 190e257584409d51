//! v2 memory: memory.max, memory.low (reservation), memory.swap.max (from OCI's memory+swap).
//! disableOOMKiller and swappiness have no cgroup2 file and are ignored, as runc does.

use crate::fs;
use crate::stats::{MemoryEntry, Stats};
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

fn max_str(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// OCI's swap is memory+swap (the v1 meaning); cgroup2's memory.swap.max is swap alone.
pub fn swap_to_v2(swap: i64, limit: Option<i64>) -> Result<i64, Error> {
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    let invalid = |expected| Error::Invalid {
        field: "linux.resources.memory.swap",
        value: swap.to_string(),
        expected,
    };
    match limit {
        None | Some(0) | Some(-1) => Err(invalid("a memory limit to go with a swap limit")),
        Some(l) if swap < l => Err(invalid("memory+swap at least the memory limit")),
        Some(l) => Ok(swap - l),
    }
}

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    let Some(m) = res.memory() else {
        return Ok(());
    };
    if m.check_before_update() == Some(true) {
        crate::check_limit_above_usage(dir, "memory.current", m.limit())?;
    }
    if let Some(s) = m.swap().filter(|s| *s != 0) {
        // Equal memory and memory+swap limits convert to 0: no swap at all.
        let v = swap_to_v2(s, m.limit())?;
        fs::write(dir, "memory.swap.max", &max_str(v))?;
    }
    if let Some(l) = m.limit() {
        if l != 0 {
            fs::write(dir, "memory.max", &max_str(l))?;
        }
    }
    if let Some(r) = m.reservation() {
        if r != 0 {
            fs::write(dir, "memory.low", &max_str(r))?;
        }
    }
    Ok(())
}

fn entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, Error> {
    let f = |n: &str| fs::read_u64_opt(dir, &format!("{prefix}.{n}"));
    let failcnt = match fs::read_opt(dir, &format!("{prefix}.events"))? {
        Some(s) => fs::flat_keyed(&s)
            .find(|(k, _)| *k == "max")
            .map(|(_, v)| v)
            .unwrap_or(0),
        None => 0,
    };
    Ok(MemoryEntry {
        usage: f("current")?.unwrap_or(0),
        max: f("peak")?.unwrap_or(0),
        limit: f("max")?.unwrap_or(0),
        failcnt,
    })
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    st.memory.usage = entry(dir, "memory")?;
    st.memory.swap = entry(dir, "memory.swap")?;
    if let Some(s) = fs::read_opt(dir, "memory.stat")? {
        for (k, v) in fs::flat_keyed(&s) {
            st.memory.raw.insert(k.to_string(), v);
        }
        st.memory.cache = st.memory.raw.get("file").copied().unwrap_or(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_to_v2(-1, Some(100)).unwrap(), -1);
        assert_eq!(swap_to_v2(300, Some(100)).unwrap(), 200);
        assert_eq!(swap_to_v2(100, Some(100)).unwrap(), 0);
        assert!(swap_to_v2(50, Some(100)).is_err());
        assert!(swap_to_v2(50, None).is_err());
    }
}
