//! Process attributes applied in the container process just before it execs: rlimits, OOM score,
//! scheduler, I/O priority, personality, CPU affinity, user and groups, capabilities (all five
//! sets), no_new_privs, umask, cwd, and the environment and program path.

use crate::sys;
use oci_spec::runtime::{LinuxCapabilities, PosixRlimitType, Process};
use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::step::StepResult as R;

const CAP_SYS_RESOURCE: u32 = 24;

fn rlimit_resource(t: PosixRlimitType) -> (libc::__rlimit_resource_t, &'static str) {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        RlimitFsize => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        RlimitData => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        RlimitStack => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        RlimitCore => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        RlimitRss => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        RlimitNproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        RlimitNofile => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        RlimitMemlock => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        RlimitAs => (libc::RLIMIT_AS, "RLIMIT_AS"),
        RlimitLocks => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        RlimitSigpending => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        RlimitNice => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        RlimitRtprio => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        RlimitRttime => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    }
}

/// Sets the rlimits; an EPERM names the rlimit and the missing CAP_SYS_RESOURCE.
pub fn set_rlimits(p: &Process) -> R<()> {
    for r in p.rlimits().iter().flatten() {
        let (res, name) = rlimit_resource(r.typ());
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: valid rlimit struct.
        if unsafe { libc::setrlimit(res, &lim) } < 0 {
            let er = std::io::Error::last_os_error();
            let mut msg = format!(
                "setting rlimit {name} (type {res}) to soft {} hard {}: {er}",
                r.soft(),
                r.hard()
            );
            if er.raw_os_error() == Some(libc::EPERM) && !sys::has_effective_cap(CAP_SYS_RESOURCE) {
                let mut cur = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: valid out-parameter.
                unsafe { libc::getrlimit(res, &mut cur) };
                msg.push_str(&format!(
                    "; raising the hard limit above the current {} needs CAP_SYS_RESOURCE, which \
                     this runtime lacks (lower the limit, or run where CAP_SYS_RESOURCE is held)",
                    cur.rlim_max
                ));
            }
            return Err(msg.into());
        }
    }
    Ok(())
}

/// Writes oom_score_adj; lowering it below the current minimum needs CAP_SYS_RESOURCE.
pub fn set_oom_score_adj(p: &Process) -> R<()> {
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|er| {
            let mut m = format!("setting oomScoreAdj {adj}: {er}");
            if er.raw_os_error() == Some(libc::EACCES) && !sys::has_effective_cap(CAP_SYS_RESOURCE)
            {
                m.push_str("; lowering it needs CAP_SYS_RESOURCE, which this runtime lacks");
            }
            m
        })?;
    }
    Ok(())
}

/// Scheduler policy/priority/nice via sched_setattr.
pub fn set_scheduler(p: &Process) -> R<()> {
    let Some(s) = p.scheduler() else {
        return Ok(());
    };
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let policy = match format!("{:?}", s.policy()).as_str() {
        "SchedOther" => 0,
        "SchedFifo" => 1,
        "SchedRr" => 2,
        "SchedBatch" => 3,
        "SchedIso" => 4,
        "SchedIdle" => 5,
        "SchedDeadline" => 6,
        other => return Err(format!("unknown scheduler policy {other}").into()),
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        use oci_spec::runtime::LinuxSchedulerFlag as F;
        // An exhaustive match: a flag this code does not know must not become 0 silently.
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let a = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: valid sched_attr of the declared size, pid 0 = self.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) } < 0 {
        let err = std::io::Error::last_os_error();
        return Err(format!(
            "process.scheduler: sched_setattr: {err}{}",
            crate::realtime::explain(policy, &err)
        )
        .into());
    }
    Ok(())
}

/// I/O priority via ioprio_set.
pub fn set_io_priority(p: &Process) -> R<()> {
    let Some(io) = p.io_priority() else {
        return Ok(());
    };
    let class: i64 = match format!("{:?}", io.class()).as_str() {
        "IoprioClassRt" => 1,
        "IoprioClassBe" => 2,
        "IoprioClassIdle" => 3,
        other => return Err(format!("unknown ioPriority class {other}").into()),
    };
    let prio = (class << 13) | io.priority();
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, 0 = self, prio).
    if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) } < 0 {
        return Err(crate::step::os("ioprio_set")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Parses a cpu list like "0-2,5" (core's list grammar), each CPU below `CPU_SETSIZE` so
/// `CPU_SET` stays inside its set.
pub fn parse_cpus(s: &str) -> R<Vec<usize>> {
    carve_core::CpuSet::parse_list_below(s, libc::CPU_SETSIZE as usize)
        .map(|set| set.iter().collect())
        .map_err(|e| format!("bad cpu list {s:?}: {e}").into())
}

/// Sets this process's CPU affinity.
pub fn set_affinity(cpus: &str) -> R<()> {
    set_affinity_of(0, cpus)
}

/// Sets the CPU affinity of process `pid` (0: this one).
pub fn set_affinity_of(pid: libc::pid_t, cpus: &str) -> R<()> {
    let list = parse_cpus(cpus)?;
    // SAFETY: zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in list {
        // SAFETY: c < 1024 = CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: valid set of the declared size.
    if unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) } < 0 {
        return Err(crate::step::os(format!("sched_setaffinity {cpus}"))(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Allows this process every CPU its cpuset allows: the kernel intersects a full mask with the
/// cpuset (sched_setaffinity(2)). The mask is larger than `cpu_set_t` so hosts above 1024 CPUs
/// are not cut off (runc#5023).
pub fn reset_affinity() -> R<()> {
    let full = [u64::MAX; 128];
    // SAFETY: a readable mask of the declared size (8192 CPUs).
    if unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            0,
            std::mem::size_of_val(&full),
            full.as_ptr(),
        )
    } < 0
    {
        return Err(
            crate::step::os("sched_setaffinity to the container's cpus")(
                std::io::Error::last_os_error(),
            ),
        );
    }
    Ok(())
}

/// Capability names → bit mask.
fn mask(set: Option<&std::collections::HashSet<oci_spec::runtime::Capability>>) -> R<u64> {
    let mut m = 0u64;
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: caps::Capability = name
            .parse()
            .map_err(|_| format!("unknown capability {name}"))?;
        m |= 1u64 << cap.index();
    }
    Ok(m)
}

/// The five capability sets as masks.
#[derive(Debug, Default, Clone, Copy)]
pub struct CapMasks {
    /// Bounding.
    pub bounding: u64,
    /// Effective.
    pub effective: u64,
    /// Permitted.
    pub permitted: u64,
    /// Inheritable.
    pub inheritable: u64,
    /// Ambient.
    pub ambient: u64,
}

/// Resolves the OCI capability lists.
pub fn cap_masks(c: &LinuxCapabilities) -> R<CapMasks> {
    Ok(CapMasks {
        bounding: mask(c.bounding().as_ref())?,
        effective: mask(c.effective().as_ref())?,
        permitted: mask(c.permitted().as_ref())?,
        inheritable: mask(c.inheritable().as_ref())?,
        ambient: mask(c.ambient().as_ref())?,
    })
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drops capabilities outside the bounding set (needs CAP_SETPCAP, so before the user switch).
pub fn drop_bounding(m: &CapMasks) -> R<()> {
    for cap in 0..=last_cap() {
        if m.bounding & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                let er = std::io::Error::last_os_error();
                if er.raw_os_error() != Some(libc::EINVAL) {
                    return Err(
                        format!("dropping capability {cap} from the bounding set: {er}").into(),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Switches to the process user (groups, gid, uid) keeping capabilities across the switch.
pub fn set_user(p: &Process) -> R<()> {
    let u = p.user();
    let uid = u.uid();
    let gid = u.gid();
    let mut groups: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
    groups.retain(|g| *g != gid);
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    // setgroups is refused in a user namespace whose setgroups file says "deny": only fail when
    // groups were asked for.
    // SAFETY: valid array of the given length.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 && !groups.is_empty() {
        return Err(crate::step::os(format!("setgroups {groups:?}"))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: integer arguments.
    if unsafe { libc::setresgid(gid, gid, gid) } < 0 {
        return Err(crate::step::os(format!("setresgid {gid}"))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: integer arguments.
    if unsafe { libc::setresuid(uid, uid, uid) } < 0 {
        return Err(crate::step::os(format!("setresuid {uid}"))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(mask) = u.umask() {
        // SAFETY: umask has no failure mode.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

/// Sets effective/permitted/inheritable at once, then the ambient set.
pub fn set_caps(m: &CapMasks) -> R<()> {
    sys::capset(m.effective, m.permitted, m.inheritable).map_err(crate::step::os("capset"))?;
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    for cap in 0..=last_cap() {
        if m.ambient & (1u64 << cap) != 0 {
            // SAFETY: prctl with integer arguments.
            if unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            } < 0
            {
                // Ambient needs the cap in permitted and inheritable; runc ignores failures too.
                continue;
            }
        }
    }
    Ok(())
}

/// Sets no_new_privs.
pub fn set_no_new_privs() -> R<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(crate::step::os("no_new_privs")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The program and environment to exec: HOME from /etc/passwd when unset, program found on
/// PATH. Called inside the container's root.
pub struct ExecTarget {
    /// Program path.
    pub path: CString,
    /// argv.
    pub argv: Vec<CString>,
    /// envp.
    pub envp: Vec<CString>,
}

fn c(s: &str) -> R<CString> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte").into())
}

/// Resolves the program and builds argv/envp.
pub fn exec_target(p: &Process) -> R<ExecTarget> {
    let args = p.args().clone().unwrap_or_default();
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let uid = p.user().uid();
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 6 && f[2] == uid.to_string()).then(|| f[5].to_string())
                })
            })
            .unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    let prog = &args[0];
    let path = if prog.contains('/') {
        PathBuf::from(prog)
    } else {
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        search
            .split(':')
            .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(prog))
            .find(|cand| is_executable(cand))
            .ok_or_else(|| format!("exec: {prog:?}: executable file not found in $PATH"))?
    };
    if !is_executable(&path) {
        // runc's words: podman maps an exec error containing "no such file" or "not found" to
        // 127 and any other to 126 (define.ExitCode).
        let why = match std::fs::metadata(&path) {
            Err(e) => format!("stat {}: {e}", path.display()),
            Ok(_) => "permission denied".into(),
        };
        return Err(format!("exec: {:?}: {why}", path.display().to_string()).into());
    }
    Ok(ExecTarget {
        path: c(&path.to_string_lossy())?,
        argv: args.iter().map(|a| c(a)).collect::<R<_>>()?,
        envp: env.iter().map(|e| c(e)).collect::<R<_>>()?,
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// argv and envp as the NULL-terminated pointer arrays execve takes, built ahead so that the
/// exec itself allocates nothing.
pub struct ExecArgs {
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl ExecTarget {
    /// The pointer arrays (valid while `self` lives: a CString's bytes do not move).
    pub fn prepare(&self) -> ExecArgs {
        let mut argv: Vec<*const libc::c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.envp.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        ExecArgs { argv, envp }
    }
}

/// execve with arrays from [`ExecTarget::prepare`]; returns only on failure.
pub fn exec_prepared(t: &ExecTarget, a: &ExecArgs) -> String {
    // SAFETY: NULL-terminated arrays of pointers into `t`'s C strings, which outlive the call.
    unsafe { libc::execve(t.path.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr()) };
    format!(
        "exec {}: {}",
        t.path.to_string_lossy(),
        std::io::Error::last_os_error()
    )
}

/// execve; returns only on failure.
pub fn exec(t: &ExecTarget) -> String {
    exec_prepared(t, &t.prepare())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpus("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("0,1024").is_err(), "beyond cpu_set_t");
    }
    fn process(j: serde_json::Value) -> Process {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn the_program_is_found_in_the_process_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("carve-prog");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("PATH=/nonexistent-carve:{}", dir.path().display());
        let p = process(serde_json::json!({
            "args": ["carve-prog", "x"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "env": [path, "HOME=/h"]
        }));
        let t = exec_target(&p).unwrap();
        assert_eq!(t.path.to_str().unwrap(), prog.to_str().unwrap());
        assert_eq!(t.argv.len(), 2);
        let env: Vec<&str> = t.envp.iter().map(|e| e.to_str().unwrap()).collect();
        assert_eq!(env.iter().filter(|e| e.starts_with("HOME=")).count(), 1);
        // Without HOME the user's home (from /etc/passwd, else /) is added.
        let p = process(serde_json::json!({
            "args": [prog], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": []
        }));
        let t = exec_target(&p).unwrap();
        assert!(t
            .envp
            .iter()
            .any(|e| e.to_str().unwrap().starts_with("HOME=")));
    }

    #[test]
    fn a_missing_or_non_executable_program_is_named() {
        let p = process(serde_json::json!({
            "args": ["carve-no-such-prog"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/nonexistent-carve"]
        }));
        assert_eq!(
            exec_target(&p).err().unwrap().to_string(),
            "exec: \"carve-no-such-prog\": executable file not found in $PATH"
        );
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        let p = process(serde_json::json!({
            "args": [plain], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": []
        }));
        assert_eq!(
            exec_target(&p).err().unwrap().to_string(),
            format!("exec: {:?}: permission denied", plain.display().to_string())
        );
    }

    #[test]
    fn capability_lists_become_masks() {
        let c: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": [], "permitted": ["CAP_KILL"],
            "inheritable": [], "ambient": []
        }))
        .unwrap();
        let m = cap_masks(&c).unwrap();
        assert_eq!(m.bounding, 1 | 1 << 5);
        assert_eq!(m.permitted, 1 << 5);
        assert_eq!((m.effective, m.inheritable, m.ambient), (0, 0, 0));
    }
}
