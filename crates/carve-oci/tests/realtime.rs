//! Real-time containers: `process.scheduler` SCHED_FIFO/DEADLINE and the realtime budget
//! (`linux.resources.cpu.realtimeRuntime/realtimePeriod`) do what this kernel allows, and a clear
//! error names the case when it does not. On this hybrid host the cpu controller is cgroup v1
//! with CONFIG_RT_GROUP_SCHED: FIFO needs a budget, which carve sets along the path. In the pure
//! cgroup v2 guest (Debian's kernel, no RT_GROUP_SCHED; scripts/oci-v2-guest-test.sh runs this
//! file there) FIFO works in any cgroup and a budget is refused naming that case.

mod common;
use carve_testkit::{skip, SkipKind};
use common::*;
use serde_json::json;

/// The priority, rt_priority and policy fields of /proc/PID/stat (18, 40, 41) of the container's
/// process (pid 1) and of a child it forks (`cut` reading its own): a FIFO priority 10 task shows
/// `-11 10 1`.
const SHOW_SCHED: &str =
    "cut -d' ' -f18,40,41 /proc/1/stat; cut -d' ' -f18,40,41 /proc/self/stat; true";

/// True where the container's cpu cgroup has a realtime budget file (cgroup v1 cpu with
/// CONFIG_RT_GROUP_SCHED).
fn v1_rt_budget() -> bool {
    !pure_v2() && std::path::Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists()
}

fn rt_env(prefix: &str, sched: serde_json::Value) -> Env {
    let mut e = Env::new(prefix, &["sh", "-c", SHOW_SCHED]);
    e.config["process"]["scheduler"] = sched;
    // A cpu limit too, so the cpu controller is on for the container's cgroup (on cgroup v2
    // that is what RT_GROUP_SCHED would restrict).
    e.config["linux"]["resources"]["cpu"] = json!({"shares": 512});
    e.write_config();
    e
}

/// SCHED_FIFO priority 10.
fn fifo() -> serde_json::Value {
    json!({"policy": "SCHED_FIFO", "priority": 10})
}

/// [`rt_env`] with SCHED_FIFO and, where the kernel needs one (cgroup v1 cpu with
/// RT_GROUP_SCHED), a realtime budget of 10 ms a second.
fn fifo_env(prefix: &str) -> Env {
    let mut e = rt_env(prefix, fifo());
    if v1_rt_budget() {
        e.config["linux"]["resources"]["cpu"]["realtimeRuntime"] = json!(10000);
        e.config["linux"]["resources"]["cpu"]["realtimePeriod"] = json!(1000000);
        e.write_config();
    }
    e
}

/// A SCHED_FIFO task in a container: with a budget where the kernel needs one (this host), as
/// is everywhere else (the v2 guest); its children inherit the policy.
#[test]
fn fifo_task_runs_in_a_container() {
    if !require_root() {
        return;
    }
    let e = fifo_env("rtfifo");
    let out = e.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(
        l,
        ["-11 10 1", "-11 10 1"],
        "FIFO priority 10 for init and its child: {out}"
    );
    e.assert_gone();
}

/// Without a budget on a RT_GROUP_SCHED v1 cpu controller, `create` fails before anything runs,
/// naming process.scheduler, the cgroup and realtimeRuntime; nothing is left.
#[test]
fn fifo_without_budget_names_the_case() {
    if !require_root() {
        return;
    }
    if !v1_rt_budget() {
        skip(
            SkipKind::Host,
            "no cgroup v1 realtime budget (RT_GROUP_SCHED) here",
        );
        return;
    }
    let e = rt_env("rtnobudget", fifo());
    e.create_refused(&[
        "process.scheduler",
        "CONFIG_RT_GROUP_SCHED",
        "realtimeRuntime",
    ]);
}

/// On cgroup v2 a realtime budget cannot be given: the error says which RT_GROUP_SCHED case the
/// kernel is in.
#[test]
fn realtime_budget_on_cgroup_v2_names_the_case() {
    if !require_root() {
        return;
    }
    if !pure_v2() {
        skip(SkipKind::Host, "not a pure cgroup v2 host");
        return;
    }
    let mut e = rt_env("rtv2budget", fifo());
    e.config["linux"]["resources"]["cpu"]["realtimeRuntime"] = json!(10000);
    e.write_config();
    e.create_refused(&["realtimeRuntime", "cgroup v2", "RT_GROUP_SCHED"]);
}

/// SCHED_DEADLINE (runtime 2 ms every 10 ms) in a container: the policy shows in /proc/PID/stat.
/// A deadline task may not fork (EAGAIN) unless reset-on-fork is set: its child runs SCHED_OTHER.
#[test]
fn deadline_task_runs_in_a_container() {
    if !require_root() {
        return;
    }
    let e = rt_env(
        "rtdl",
        json!({"policy": "SCHED_DEADLINE", "runtime": 2000000, "deadline": 10000000,
               "period": 10000000, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}),
    );
    let out = e.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert!(
        l.len() == 2 && l[0].ends_with(" 6") && l[1].ends_with(" 0"),
        "SCHED_DEADLINE (6), its child SCHED_OTHER (0): {out}"
    );
    e.assert_gone();
}

/// In its own user namespace a container has no CAP_SYS_NICE over the host: FIFO is refused, and
/// the error says so (and how to allow it: RLIMIT_RTPRIO).
#[test]
fn fifo_in_user_namespace_explains_the_refusal() {
    if !require_root() {
        return;
    }
    let mut e = fifo_env("rtuserns");
    e.map_user_ns(100000);
    e.write_config();
    e.create_refused(&["process.scheduler", "RLIMIT_RTPRIO"]);
}
