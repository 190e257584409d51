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
    if let Some(p) = cpu.realtime_period() {
        if p != 0 {
            fs::write(dir, "cpu.rt_period_us", &p.to_string())?;
        }
    }
    if let Some(r) = cpu.realtime_runtime() {
        if r != 0 {
            set_rt_runtime(dir, mount, r)?;
        }
    }
    Ok(())
}

/// A child's realtime runtime must fit in its parent's, and new v1 cpu cgroups start with 0: on
/// EINVAL, give each ancestor below the mount at least `runtime` (top down) and try again.
fn set_rt_runtime(dir: &Path, mount: &Path, runtime: i64) -> Result<(), Error> {
    let v = runtime.to_string();
    match fs::write(dir, "cpu.rt_runtime_us", &v) {
        // The kernel says EINVAL or EBUSY when the parent's budget is too small.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EBUSY)) && runtime > 0 => {
            let mut ancestors: Vec<&Path> = dir
                .ancestors()
                .skip(1)
                .take_while(|a| a.starts_with(mount) && *a != mount)
                .collect();
            ancestors.reverse();
            for a in ancestors {
                let cur: i64 = fs::read(a, "cpu.rt_runtime_us")?
                    .trim()
                    .parse()
                    .unwrap_or(0);
                if cur >= 0 && cur < runtime {
                    fs::write(a, "cpu.rt_runtime_us", &v)?;
                }
            }
            fs::write(dir, "cpu.rt_runtime_us", &v)?;
            Ok(())
        }
        r => Ok(r?),
    }
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
