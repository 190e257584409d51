//! Real-time scheduling and cgroups: which case this kernel is in, and the realtime budget.
//!
//! With `CONFIG_RT_GROUP_SCHED` every cpu cgroup has its own realtime budget
//! (`cpu.rt_runtime_us`, 0 in a new cgroup), and `sched_setscheduler(SCHED_FIFO/RR)` of a task
//! in a cgroup with no budget fails with EPERM. Those files exist only on the cgroup v1 cpu
//! controller: cgroup v2 has no per-cgroup realtime budget. So:
//! - v1 (or the v1 cpu controller of a hybrid host) with RT_GROUP_SCHED: the budget is set in the
//!   container's cpu cgroup, each ancestor raised to fit (`realtimeRuntime`/`realtimePeriod`);
//! - cgroup v2 without RT_GROUP_SCHED (Debian's kernels): RT tasks may run in any cgroup, under
//!   the global `kernel.sched_rt_runtime_us`; there is no per-cgroup budget to set;
//! - cgroup v2 with RT_GROUP_SCHED: a cgroup with the cpu controller cannot run RT tasks at all
//!   (kernels from 6.16 can turn the group scheduling off with `rt_group_sched=0`).
//!
//! Where a kernel exposes `cpu.rt_runtime_us` on a cgroup2 directory, the budget is set there
//! the same way as on v1.

use crate::fs;
use crate::Error;
use std::path::Path;

/// Whether this kernel schedules real-time tasks per cgroup, and how that was found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtGroupSched {
    /// `CONFIG_RT_GROUP_SCHED=y`; the source (a config file or cgroup file) that says so.
    Enabled(String),
    /// Not configured; the config file that says so.
    Disabled(String),
    /// No kernel config readable.
    Unknown,
}

impl std::fmt::Display for RtGroupSched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RtGroupSched::Enabled(s) => write!(f, "this kernel has CONFIG_RT_GROUP_SCHED ({s})"),
            RtGroupSched::Disabled(s) => {
                write!(f, "this kernel has no CONFIG_RT_GROUP_SCHED ({s})")
            }
            RtGroupSched::Unknown => write!(
                f,
                "whether this kernel has CONFIG_RT_GROUP_SCHED is unknown (no /boot/config-RELEASE \
                 or /proc/config.gz)"
            ),
        }
    }
}

/// The value of `CONFIG_RT_GROUP_SCHED` in a kernel config text.
pub fn config_says(text: &str) -> Option<bool> {
    for l in text.lines() {
        if l == "CONFIG_RT_GROUP_SCHED=y" {
            return Some(true);
        }
        if l == "# CONFIG_RT_GROUP_SCHED is not set" {
            return Some(false);
        }
    }
    None
}

/// Reads the running kernel's config (`/boot/config-RELEASE`, else `/proc/config.gz` through
/// `gzip -dc`); `rt_group_sched=0` on the command line (6.16+) turns it off at boot.
pub fn rt_group_sched() -> RtGroupSched {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.split_whitespace().any(|w| w == "rt_group_sched=0") {
        return RtGroupSched::Disabled("rt_group_sched=0 on the kernel command line".into());
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let boot = format!("/boot/config-{}", release.trim());
    let from = |text: &str, src: &str| match config_says(text) {
        Some(true) => Some(RtGroupSched::Enabled(src.to_string())),
        Some(false) => Some(RtGroupSched::Disabled(src.to_string())),
        None => None,
    };
    if let Some(r) = std::fs::read_to_string(&boot)
        .ok()
        .and_then(|t| from(&t, &boot))
    {
        return r;
    }
    if Path::new("/proc/config.gz").exists() {
        if let Ok(out) = std::process::Command::new("gzip")
            .args(["-dc", "/proc/config.gz"])
            .stderr(std::process::Stdio::null())
            .output()
        {
            if let Some(r) = from(&String::from_utf8_lossy(&out.stdout), "/proc/config.gz") {
                return r;
            }
        }
    }
    RtGroupSched::Unknown
}

/// Why `linux.resources.cpu.realtimeRuntime/realtimePeriod` cannot be set on a cgroup2
/// directory without realtime files, naming this kernel's case.
pub fn v2_budget_error() -> Error {
    let case = rt_group_sched();
    let what = match case {
        RtGroupSched::Disabled(_) => {
            "so real-time tasks may run in any cgroup v2 cgroup, within the global \
             kernel.sched_rt_runtime_us, and there is no per-cgroup budget to give: leave \
             realtimeRuntime/realtimePeriod unset (process.scheduler SCHED_FIFO/RR works as is)"
        }
        RtGroupSched::Enabled(_) => {
            "and cgroup v2 has no realtime budget files (cpu.rt_runtime_us is cgroup v1 only): a \
             cgroup with the cpu controller cannot run real-time tasks; boot with \
             rt_group_sched=0 (Linux 6.16+) or use the cgroup v1 cpu controller"
        }
        RtGroupSched::Unknown => {
            "and cgroup v2 has no realtime budget files (cpu.rt_runtime_us is cgroup v1 only): \
             without CONFIG_RT_GROUP_SCHED real-time tasks run in any cgroup and there is \
             nothing to set; leave realtimeRuntime/realtimePeriod unset"
        }
    };
    Error::Realtime(format!(
        "linux.resources.cpu.realtimeRuntime/realtimePeriod on cgroup v2: {case}, {what}"
    ))
}

/// Sets the realtime period and budget of `dir` (a cgroup with `cpu.rt_runtime_us`). A child's
/// budget must fit in its parent's and new cgroups start with 0, so on EINVAL/EBUSY each
/// ancestor below `mount` is raised to at least `runtime` (top down) and the write is retried.
pub(crate) fn set_budget(
    dir: &Path,
    mount: &Path,
    period: Option<u64>,
    runtime: Option<i64>,
) -> Result<(), Error> {
    if let Some(p) = period.filter(|p| *p != 0) {
        fs::write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    let Some(runtime) = runtime.filter(|r| *r != 0) else {
        return Ok(());
    };
    let v = runtime.to_string();
    match fs::write(dir, "cpu.rt_runtime_us", &v) {
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

/// The realtime budget (`cpu.rt_runtime_us`) of a cpu cgroup directory, if it has one.
pub fn budget_of(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join("cpu.rt_runtime_us"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_config_lines() {
        assert_eq!(
            config_says("CONFIG_X=y\nCONFIG_RT_GROUP_SCHED=y\n"),
            Some(true)
        );
        assert_eq!(
            config_says("# CONFIG_RT_GROUP_SCHED is not set\n"),
            Some(false)
        );
        assert_eq!(
            config_says("CONFIG_RT_GROUP_SCHED_DEFAULT_DISABLED=y\n"),
            None
        );
    }

    #[test]
    fn budget_raises_ancestors_in_a_fake_tree() {
        let t = tempfile::tempdir().unwrap();
        let leaf = t.path().join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        for d in [t.path().join("a"), leaf.clone()] {
            std::fs::write(d.join("cpu.rt_runtime_us"), "0").unwrap();
            std::fs::write(d.join("cpu.rt_period_us"), "0").unwrap();
        }
        set_budget(&leaf, t.path(), Some(500_000), Some(10_000)).unwrap();
        assert_eq!(budget_of(&leaf), Some(10_000));
        assert_eq!(
            std::fs::read_to_string(leaf.join("cpu.rt_period_us")).unwrap(),
            "500000"
        );
        assert_eq!(budget_of(t.path()), None);
    }
}
