//! v1 cpu (shares, CFS quota/period/burst, idle, realtime budget) and cpuacct (usage stats).

use crate::fs;
use crate::stats::Stats;
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

/// USER_HZ: cpuacct.stat counts in these ticks.
const TICKS_PER_SEC: u64 = 100;

pub(super) fn apply(dir: &Path, mount: &Path, res: &LinuxResources) -> Result<(), Error> {
    let Some(cpu) = res.cpu() else {
        return Ok(());
    };
    if let Some(s) = cpu.shares() {
        if s != 0 {
            fs::write(dir, "cpu.shares", &s.to_string())?;
        }
    }
    // Period before quota: the kernel checks quota against the period in force.
    if let Some(p) = cpu.period() {
        if p != 0 {
            fs::write(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
    }
    if let Some(q) = cpu.quota() {
        if q != 0 {
            let q = if q < 0 { -1 } else { q };
            fs::write(dir, "cpu.cfs_quota_us", &q.to_string())?;
        }
    }
    if let Some(b) = cpu.burst() {
        fs::write(dir, "cpu.cfs_burst_us", &b.to_string())?;
    }
    if let Some(i) = cpu.idle() {
        fs::write(dir, "cpu.idle", &i.to_string())?;
    }
    crate::rt::set_budget(dir, mount, cpu.realtime_period(), cpu.realtime_runtime())
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    if let Some(s) = fs::read_opt(dir, "cpu.stat")? {
        for (k, v) in fs::flat_keyed(&s) {
            match k {
                "nr_periods" => st.cpu.throttling.periods = v,
                "nr_throttled" => st.cpu.throttling.throttled_periods = v,
                "throttled_time" => st.cpu.throttling.throttled_time = v,
                _ => {}
            }
        }
    }
    Ok(())
}

pub(super) fn cpuacct_stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    if let Some(v) = fs::read_u64_opt(dir, "cpuacct.usage")? {
        st.cpu.usage.total = v;
    }
    let list = |f: &str| -> Result<Vec<u64>, Error> {
        Ok(fs::read_opt(dir, f)?
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default())
    };
    st.cpu.usage.percpu = list("cpuacct.usage_percpu")?;
    st.cpu.usage.percpu_kernel = list("cpuacct.usage_percpu_sys")?;
    st.cpu.usage.percpu_user = list("cpuacct.usage_percpu_user")?;
    // Nanoseconds where the kernel has them, else USER_HZ ticks.
    if let (Some(u), Some(k)) = (
        fs::read_u64_opt(dir, "cpuacct.usage_user")?,
        fs::read_u64_opt(dir, "cpuacct.usage_sys")?,
    ) {
        st.cpu.usage.user = u;
        st.cpu.usage.kernel = k;
    } else if let Some(s) = fs::read_opt(dir, "cpuacct.stat")? {
        let ns_per_tick = 1_000_000_000 / TICKS_PER_SEC;
        for (k, v) in fs::flat_keyed(&s) {
            match k {
                "user" => st.cpu.usage.user = v * ns_per_tick,
                "system" => st.cpu.usage.kernel = v * ns_per_tick,
                _ => {}
            }
        }
    }
    Ok(())
}
