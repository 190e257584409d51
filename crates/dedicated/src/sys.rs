//! Small wrappers over the syscalls and files the tier uses: affinity, task lists, paths.

use carve_core::CpuSet;
use std::path::{Path, PathBuf};

/// Where the tier reads and writes. Every root is a parameter so logic is tested against a temp dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// procfs, normally "/proc".
    pub proc: PathBuf,
    /// sysfs, normally "/sys".
    pub sys: PathBuf,
    /// carve's runtime directory, normally "/run/carve" (journals, run state, hugetlbfs mounts).
    pub run: PathBuf,
    /// The cpuset hierarchy; `None` detects it from /proc/self/mountinfo.
    pub cpuset: Option<CpusetRoot>,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: "/proc".into(),
            sys: "/sys".into(),
            run: "/run/carve".into(),
            cpuset: None,
        }
    }
}

impl HostPaths {
    /// The journal root: RUN/journal.
    pub fn journal_root(&self) -> PathBuf {
        self.run.join("journal")
    }

    /// Where live dedicated runs register their cores: RUN/dedicated.
    pub fn state_root(&self) -> PathBuf {
        self.run.join("dedicated")
    }

    /// A sysctl's file: "kernel/timer_migration" → PROC/sys/kernel/timer_migration.
    pub fn sysctl(&self, name: &str) -> PathBuf {
        self.proc.join("sys").join(name)
    }

    /// The cpuset hierarchy: the given one, or the one mounted on this host.
    pub fn cpuset_root(&self) -> Option<CpusetRoot> {
        self.cpuset.clone().or_else(|| {
            let mi = std::fs::read_to_string(self.proc.join("self/mountinfo")).ok()?;
            detect_cpuset_root(&mi)
        })
    }
}

/// A cpuset hierarchy: cgroup v1's cpuset controller or a cgroup v2 tree with cpuset available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpusetRoot {
    /// The v1 cpuset mount (e.g. /sys/fs/cgroup/cpuset).
    V1(PathBuf),
    /// The cgroup2 mount whose cgroup.controllers lists cpuset.
    V2(PathBuf),
}

/// Finds the cpuset hierarchy in mountinfo text: a v1 `cgroup` mount with the cpuset option wins;
/// else a cgroup2 mount whose root offers the cpuset controller.
pub fn detect_cpuset_root(mountinfo: &str) -> Option<CpusetRoot> {
    let mut v2 = None;
    for m in carve_core::mountinfo::parse(mountinfo) {
        if m.is_cgroup_v1() && m.cgroup_controllers().iter().any(|c| c == "cpuset") {
            return Some(CpusetRoot::V1(m.mount_point));
        }
        if m.is_cgroup_v2() && v2.is_none() {
            let c = std::fs::read_to_string(m.mount_point.join("cgroup.controllers"))
                .unwrap_or_default();
            if c.split_whitespace().any(|x| x == "cpuset") {
                v2 = Some(CpusetRoot::V2(m.mount_point));
            }
        }
    }
    v2
}

/// Reads a file, trimmed; `None` when it cannot be read.
pub fn read_trim(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The online CPUs from SYS/devices/system/cpu/online.
pub fn online_cpus(sys: &Path) -> Option<CpuSet> {
    CpuSet::parse_list(&read_trim(sys.join("devices/system/cpu/online"))?).ok()
}

/// How many CPU bits the kernel prints in masks (nr_cpu_ids: the highest possible CPU + 1).
pub fn possible_cpu_count(sys: &Path) -> usize {
    read_trim(sys.join("devices/system/cpu/possible"))
        .and_then(|s| CpuSet::parse_list(&s).ok())
        .and_then(|s| s.iter().last())
        .map_or(1, |c| c + 1)
}

fn to_cpu_set_t(cpus: &CpuSet) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus.iter().filter(|&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: c < CPU_SETSIZE, so CPU_SET writes inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// Sets the affinity of task `tid` (0 = the calling thread).
pub fn set_affinity(tid: i32, cpus: &CpuSet) -> std::io::Result<()> {
    let set = to_cpu_set_t(cpus);
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The affinity of task `tid` (0 = the calling thread).
pub fn get_affinity(tid: i32) -> std::io::Result<CpuSet> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: c < CPU_SETSIZE, so CPU_ISSET reads inside `set`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// One task (thread) of the host, as listed under PROC/PID/task/TID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The thread id.
    pub tid: i32,
    /// The thread group (process) id.
    pub tgid: i32,
    /// The parent process id.
    pub ppid: i32,
    /// The thread's name (comm).
    pub comm: String,
    /// PF_* flags (field 9 of stat).
    pub flags: u64,
}

/// PF_KTHREAD: a kernel thread.
pub const PF_KTHREAD: u64 = 0x0020_0000;
/// PF_NO_SETAFFINITY: the kernel refuses affinity changes (per-CPU kthreads, workqueue workers).
pub const PF_NO_SETAFFINITY: u64 = 0x0400_0000;

impl TaskInfo {
    /// Whether this is a kernel thread.
    pub fn is_kthread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

/// Parses PROC/PID/task/TID/stat.
pub fn read_task(proc: &Path, tgid: i32, tid: i32) -> Option<TaskInfo> {
    let stat = std::fs::read_to_string(proc.join(format!("{tgid}/task/{tid}/stat"))).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, flags field 9.
    let ppid = rest.get(1)?.parse().ok()?;
    let flags = rest.get(6)?.parse().ok()?;
    Some(TaskInfo {
        tid,
        tgid,
        ppid,
        comm,
        flags,
    })
}

/// Every (tgid, tid) pair on the host.
pub fn list_tasks(proc: &Path) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(proc) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(e.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                out.push((pid, tid));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_cpuset_wins_over_cgroup2() {
        let mi = "30 24 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  31 24 0:27 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset\n";
        assert_eq!(
            detect_cpuset_root(mi),
            Some(CpusetRoot::V1("/sys/fs/cgroup/cpuset".into()))
        );
        assert_eq!(
            detect_cpuset_root("1 0 0:1 / / rw - ext4 /dev/x rw\n"),
            None
        );
    }

    #[test]
    fn own_affinity_round_trips() {
        let mine = get_affinity(0).unwrap();
        assert!(!mine.is_empty());
        set_affinity(0, &mine).unwrap();
        let t = read_task(Path::new("/proc"), std::process::id() as i32, gettid()).unwrap();
        assert!(!t.is_kthread());
    }
}
