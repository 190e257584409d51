//! v2 cpu: cpu.weight (from v1 shares), cpu.max, cpu.max.burst, cpu.idle; usage from cpu.stat.

use crate::fs;
use crate::stats::Stats;
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

/// v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000], the quadratic-in-log mapping crun and
/// runc use: 2 → 1, 1024 (the default) → 100, 262144 → 10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    10f64.powf(exponent).ceil() as u64
}

/// The cpu.max value: "QUOTA PERIOD", "max" for no quota, the period left out when not given.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let q = quota.unwrap_or(0);
    let p = period.unwrap_or(0);
    if q == 0 && p == 0 {
        return None;
    }
    let mut s = if q > 0 {
        q.to_string()
    } else {
        "max".to_string()
    };
    if p != 0 {
        s.push_str(&format!(" {p}"));
    }
    Some(s)
}

pub(super) fn apply(dir: &Path, mount: &Path, res: &LinuxResources) -> Result<(), Error> {
    let Some(cpu) = res.cpu() else {
        return Ok(());
    };
    if let Some(s) = cpu.shares() {
        if s != 0 {
            fs::write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
    }
    if let Some(v) = cpu_max(cpu.quota(), cpu.period()) {
        fs::write(dir, "cpu.max", &v)?;
    }
    if let Some(b) = cpu.burst() {
        fs::write(dir, "cpu.max.burst", &b.to_string())?;
    }
    if let Some(i) = cpu.idle() {
        fs::write(dir, "cpu.idle", &i.to_string())?;
    }
    if cpu.realtime_runtime().unwrap_or(0) != 0 || cpu.realtime_period().unwrap_or(0) != 0 {
        // No kernel release here has cgroup2 realtime files; should one add them, they work
        // as on v1. Otherwise the error says which RT_GROUP_SCHED case this kernel is in.
        if !dir.join("cpu.rt_runtime_us").exists() {
            return Err(crate::rt::v2_budget_error());
        }
        crate::rt::set_budget(dir, mount, cpu.realtime_period(), cpu.realtime_runtime())?;
    }
    Ok(())
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    if let Some(s) = fs::read_opt(dir, "cpu.stat")? {
        for (k, v) in fs::flat_keyed(&s) {
            match k {
                "usage_usec" => st.cpu.usage.total = v * 1000,
                "user_usec" => st.cpu.usage.user = v * 1000,
                "system_usec" => st.cpu.usage.kernel = v * 1000,
                "nr_periods" => st.cpu.throttling.periods = v,
                "nr_throttled" => st.cpu.throttling.throttled_periods = v,
                "throttled_usec" => st.cpu.throttling.throttled_time = v * 1000,
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_runc_and_crun() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert!(shares_to_weight(512) < 100 && shares_to_weight(2048) > 100);
    }

    #[test]
    fn cpu_max_forms() {
        assert_eq!(
            cpu_max(Some(50_000), Some(100_000)).unwrap(),
            "50000 100000"
        );
        assert_eq!(cpu_max(Some(-1), None).unwrap(), "max");
        assert_eq!(cpu_max(None, Some(20_000)).unwrap(), "max 20000");
        assert_eq!(cpu_max(None, None), None);
    }
}
