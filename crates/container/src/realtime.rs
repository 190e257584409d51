//! Real-time process scheduling (`process.scheduler` SCHED_FIFO/RR/DEADLINE) and the container's
//! cpu cgroup: a check before anything runs, so a policy the kernel will refuse in that cgroup
//! fails `create` naming the field and the case (see `carve_cgroups::rt` for the cases).

use carve_cgroups::rt::{self, RtGroupSched};
use carve_cgroups::Manager;
use oci_spec::runtime::{LinuxSchedulerPolicy, Process};

/// The scheduler's policy name as the runtime-spec spells it, when it is a real-time one that
/// group scheduling restricts (SCHED_DEADLINE is not: it has its own admission control).
fn rt_policy(p: &Process) -> Option<(&'static str, i32)> {
    let s = p.scheduler().as_ref()?;
    let name = match s.policy() {
        LinuxSchedulerPolicy::SchedFifo => "SCHED_FIFO",
        LinuxSchedulerPolicy::SchedRr => "SCHED_RR",
        _ => return None,
    };
    Some((name, s.priority().unwrap_or(0)))
}

/// Whether `process` can get its real-time policy in the cgroup `cg` made for it: `Err` names
/// the case and what to change.
pub fn check(process: &Process, cg: Option<&Manager>) -> crate::step::StepResult<()> {
    let (Some((policy, prio)), Some(m)) = (rt_policy(process), cg) else {
        return Ok(());
    };
    let Some(dir) = m.path_on("cpu") else {
        return Ok(());
    };
    match rt::budget_of(&dir) {
        Some(0) => Err(format!(
            "{policy} (priority {prio}) needs a realtime budget: this kernel has \
             CONFIG_RT_GROUP_SCHED and the container's cpu cgroup {} has none (cpu.rt_runtime_us \
             is 0); set linux.resources.cpu.realtimeRuntime (and realtimePeriod): carve raises \
             each parent cgroup's budget to fit",
            dir.display()
        )
        .into()),
        Some(_) => Ok(()),
        None => {
            // cgroup v2: only a problem with RT_GROUP_SCHED and the cpu controller on.
            let controllers =
                std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            let cpu_on = controllers.split_whitespace().any(|c| c == "cpu");
            match rt::rt_group_sched() {
                RtGroupSched::Enabled(src) if cpu_on => Err(format!(
                    "{policy} (priority {prio}): this kernel has CONFIG_RT_GROUP_SCHED ({src}) \
                     and cgroup v2 has no realtime budget files, so no task in {} (the cpu \
                     controller is on) can be real-time; boot with rt_group_sched=0 (Linux \
                     6.16+) or use the cgroup v1 cpu controller",
                    dir.display()
                )
                .into()),
                _ => Ok(()),
            }
        }
    }
}

/// Why `sched_setattr` failed, for the error init reports.
pub fn explain(policy: u32, err: &std::io::Error) -> &'static str {
    const FIFO: u32 = 1;
    const RR: u32 = 2;
    const DEADLINE: u32 = 6;
    match (policy, err.raw_os_error()) {
        (FIFO | RR, Some(libc::EPERM)) => {
            " (a real-time policy needs CAP_SYS_NICE over the host, which a container in its own \
             user namespace lacks: give it an RLIMIT_RTPRIO of at least the priority; with \
             CONFIG_RT_GROUP_SCHED its cpu cgroup also needs a realtime budget, \
             linux.resources.cpu.realtimeRuntime)"
        }
        (DEADLINE, Some(libc::EPERM)) => {
            " (SCHED_DEADLINE needs CAP_SYS_NICE over the host and a CPU affinity spanning its \
             whole root domain: no linux.resources.cpu.cpus or execCPUAffinity subset)"
        }
        (DEADLINE, Some(libc::EBUSY)) => {
            " (SCHED_DEADLINE admission control refused runtime/period: the CPUs' deadline \
             bandwidth is taken)"
        }
        (DEADLINE, Some(libc::EINVAL)) => {
            " (SCHED_DEADLINE needs 1024 ns <= runtime <= deadline <= period)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(policy: &str) -> Process {
        serde_json::from_value(serde_json::json!({
            "cwd": "/", "user": {"uid": 0, "gid": 0},
            "scheduler": {"policy": policy, "priority": 10}
        }))
        .unwrap()
    }

    #[test]
    fn only_fifo_and_rr_are_checked_against_the_cgroup() {
        assert_eq!(rt_policy(&process("SCHED_FIFO")), Some(("SCHED_FIFO", 10)));
        assert_eq!(rt_policy(&process("SCHED_RR")), Some(("SCHED_RR", 10)));
        assert_eq!(rt_policy(&process("SCHED_DEADLINE")), None);
        assert_eq!(rt_policy(&process("SCHED_OTHER")), None);
        // No cgroup made (yet): nothing to check against.
        assert!(check(&process("SCHED_FIFO"), None).is_ok());
    }

    #[test]
    fn scheduler_errors_are_explained_per_policy() {
        let eperm = std::io::Error::from_raw_os_error(libc::EPERM);
        assert!(explain(1, &eperm).contains("RLIMIT_RTPRIO"));
        assert!(explain(6, &eperm).contains("root domain"));
        let ebusy = std::io::Error::from_raw_os_error(libc::EBUSY);
        assert!(explain(6, &ebusy).contains("admission control"));
        assert_eq!(explain(0, &eperm), "");
    }
}
