//! v1 memory: limit, soft limit (reservation), memory+swap, swappiness, OOM killer, kernel TCP.

use crate::fs;
use crate::stats::{MemoryEntry, Stats};
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

fn limit_str(v: i64) -> String {
    if v < 0 {
        "-1".to_string()
    } else {
        v.to_string()
    }
}

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    let Some(m) = res.memory() else {
        return Ok(());
    };
    if m.check_before_update() == Some(true) {
        crate::check_limit_above_usage(dir, "memory.usage_in_bytes", m.limit())?;
    }
    match (m.limit(), m.swap()) {
        (Some(l), Some(s)) => {
            // memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes: raising both
            // needs memsw first, lowering both needs memory first. Try the usual order (fresh
            // cgroups are unlimited) and swap it on EINVAL rather than reading first.
            let (l, s) = (limit_str(l), limit_str(s));
            match fs::write(dir, "memory.limit_in_bytes", &l) {
                Ok(()) => fs::write(dir, "memory.memsw.limit_in_bytes", &s)?,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    fs::write(dir, "memory.memsw.limit_in_bytes", &s)?;
                    fs::write(dir, "memory.limit_in_bytes", &l)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        (Some(l), None) => fs::write(dir, "memory.limit_in_bytes", &limit_str(l))?,
        (None, Some(s)) => fs::write(dir, "memory.memsw.limit_in_bytes", &limit_str(s))?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation() {
        fs::write(dir, "memory.soft_limit_in_bytes", &limit_str(r))?;
    }
    if let Some(t) = m.kernel_tcp() {
        fs::write(dir, "memory.kmem.tcp.limit_in_bytes", &limit_str(t))?;
    }
    if let Some(sw) = m.swappiness() {
        if sw > 100 {
            return Err(Error::Invalid {
                field: "linux.resources.memory.swappiness",
                value: sw.to_string(),
                expected: "0 to 100",
            });
        }
        fs::write(dir, "memory.swappiness", &sw.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        fs::write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

fn entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, Error> {
    let f = |name: &str| fs::read_u64_opt(dir, &format!("{prefix}{name}"));
    Ok(MemoryEntry {
        usage: f("usage_in_bytes")?.unwrap_or(0),
        max: f("max_usage_in_bytes")?.unwrap_or(0),
        limit: f("limit_in_bytes")?.unwrap_or(0),
        failcnt: f("failcnt")?.unwrap_or(0),
    })
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    st.memory.usage = entry(dir, "memory.")?;
    st.memory.swap = entry(dir, "memory.memsw.")?;
    st.memory.kernel = entry(dir, "memory.kmem.")?;
    st.memory.kernel_tcp = entry(dir, "memory.kmem.tcp.")?;
    if let Some(s) = fs::read_opt(dir, "memory.stat")? {
        for (k, v) in fs::flat_keyed(&s) {
            st.memory.raw.insert(k.to_string(), v);
        }
        st.memory.cache = st.memory.raw.get("total_cache").copied().unwrap_or(0);
    }
    Ok(())
}
