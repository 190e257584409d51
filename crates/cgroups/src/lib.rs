//! carve: cgroup v1, v2 and hybrid drivers behind one [`Manager`].
//!
//! # Tour
//! - [`Layout`] finds what is mounted under a cgroup root: pure v1, pure v2, or hybrid (v1
//!   hierarchies plus cgroup2 at `unified`), and which controller sits on which hierarchy.
//! - [`Manager`] is one container's cgroup on every hierarchy: `create`, `add_task`, `apply`
//!   (OCI `LinuxResources`), `freeze`/`thaw`, `stats`, `pids`, `kill_all`, `remove`. It is an enum
//!   over the [`v1::V1`] and [`v2::V2`] drivers; in hybrid mode each resource goes to the
//!   hierarchy that holds its controller (here hugetlb and `unified` keys go to cgroup2, the rest
//!   to v1). A `Manager` is serde-serializable: keep it in the container's state and a later
//!   `remove()` also takes away the parent directories that `create()` made.
//! - [`systemd`] is the systemd driver: a transient scope per container over D-Bus.
//! - [`rt`] says which real-time group scheduling case the kernel is in and sets realtime
//!   budgets along the path.
//! - [`Stats`] has the shape of runc's `events --stats` data.
//! - The cgroup root is a parameter: unit tests run against a temp dir laid out like cgroupfs.
//!
//! ```no_run
//! use carve_cgroups::Manager;
//! use oci_spec::runtime::LinuxResources;
//! let mut m = Manager::new("/sys/fs/cgroup".as_ref(), "/carve/demo").unwrap();
//! m.create().unwrap();
//! let res: LinuxResources =
//!     serde_json::from_str(r#"{"memory":{"limit":268435456},"pids":{"limit":64}}"#).unwrap();
//! m.apply(&res).unwrap();
//! m.add_task(std::process::id() as i32).unwrap();
//! ```

pub mod fs;
pub mod layout;
pub mod rt;
pub mod stats;
pub mod systemd;
pub mod v1;
pub mod v2;

pub use layout::{Hierarchy, Layout, LayoutError, Mode};
pub use stats::Stats;
pub use v2::devices::BpfError;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default cgroup root.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// A cgroup operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cgroupfs read or write failed (names file and value).
    #[error(transparent)]
    Fs(#[from] fs::FsError),
    /// The layout could not be found.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Loading or attaching the v2 device program failed.
    #[error(transparent)]
    Bpf(#[from] BpfError),
    /// the {0} controller is not mounted on any hierarchy
    #[error("the {0} controller is not mounted on any hierarchy")]
    NotMounted(&'static str),
    /// not supported here: {0}
    #[error("not supported here: {0}")]
    Unsupported(&'static str),
    /// {field}: {value:?} is not valid, expected {expected}
    #[error("{field}: {value:?} is not valid, expected {expected}")]
    Invalid {
        /// The JSON path of the field.
        field: &'static str,
        /// The value given.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// {what} through {path} did not finish in time
    #[error("{what} through {} did not finish in time", path.display())]
    Timeout {
        /// "freezing" or "thawing".
        what: &'static str,
        /// The file that was watched.
        path: PathBuf,
    },
    /// sending signal {signal} to pid {pid}: {source}
    #[error("sending signal {signal} to pid {pid}: {source}")]
    Kill {
        /// The process.
        pid: i32,
        /// The signal.
        signal: i32,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// {0}
    #[error("{0}")]
    Realtime(String),
    /// the cgroupsPath is empty
    #[error("the cgroupsPath is empty")]
    EmptyPath,
}

/// The freezer state of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreezerState {
    /// Tasks run.
    Thawed,
    /// Asked to freeze; some task has not stopped yet.
    Freezing,
    /// Every task is stopped.
    Frozen,
}

/// A resource group of `LinuxResources`, named after the controller that enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    Cpu,
    Cpuset,
    Memory,
    Pids,
    Blkio,
    Hugetlb,
    Devices,
    Freezer,
    NetCls,
    NetPrio,
    Rdma,
    Unified,
}

impl Ctl {
    /// The v1 controller name.
    pub(crate) fn v1_name(self) -> &'static str {
        match self {
            Ctl::Cpu => "cpu",
            Ctl::Cpuset => "cpuset",
            Ctl::Memory => "memory",
            Ctl::Pids => "pids",
            Ctl::Blkio => "blkio",
            Ctl::Hugetlb => "hugetlb",
            Ctl::Devices => "devices",
            Ctl::Freezer => "freezer",
            Ctl::NetCls => "net_cls",
            Ctl::NetPrio => "net_prio",
            Ctl::Rdma => "rdma",
            Ctl::Unified => "unified",
        }
    }

    /// The cgroup2 controller name.
    pub(crate) fn v2_name(self) -> &'static str {
        match self {
            Ctl::Blkio => "io",
            c => c.v1_name(),
        }
    }

    /// The groups `res` asks for, in the order they are applied.
    fn requested(res: &LinuxResources) -> Vec<Ctl> {
        let mut v = Vec::new();
        if let Some(c) = res.cpu() {
            if c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.burst().is_some()
                || c.idle().is_some()
                || c.realtime_runtime().is_some()
                || c.realtime_period().is_some()
            {
                v.push(Ctl::Cpu);
            }
            if c.cpus().as_deref().is_some_and(|s| !s.is_empty())
                || c.mems().as_deref().is_some_and(|s| !s.is_empty())
            {
                v.push(Ctl::Cpuset);
            }
        }
        if res.memory().is_some() {
            v.push(Ctl::Memory);
        }
        if res.pids().is_some() {
            v.push(Ctl::Pids);
        }
        if res.block_io().is_some() {
            v.push(Ctl::Blkio);
        }
        if res
            .hugepage_limits()
            .as_ref()
            .is_some_and(|h| !h.is_empty())
        {
            v.push(Ctl::Hugetlb);
        }
        if res.devices().is_some() {
            v.push(Ctl::Devices);
        }
        if let Some(n) = res.network() {
            if n.class_id().is_some() {
                v.push(Ctl::NetCls);
            }
            if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                v.push(Ctl::NetPrio);
            }
        }
        if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            v.push(Ctl::Rdma);
        }
        if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            v.push(Ctl::Unified);
        }
        v
    }
}

/// One container's cgroup on every hierarchy of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    /// Only v1 hierarchies.
    V1(v1::V1),
    /// Only cgroup2.
    V2(v2::V2),
    /// v1 hierarchies plus cgroup2 at `unified` (which holds only some controllers).
    Hybrid {
        /// The v1 side.
        v1: v1::V1,
        /// The cgroup2 side.
        v2: v2::V2,
    },
}

/// The controllers `events --stats` reads on cgroup2.
const STATS_CONTROLLERS: [Ctl; 6] = [
    Ctl::Cpu,
    Ctl::Cpuset,
    Ctl::Memory,
    Ctl::Pids,
    Ctl::Blkio,
    Ctl::Hugetlb,
];

impl Manager {
    /// The cgroup `cgroup_path` (an OCI cgroupsPath: absolute from each hierarchy's root, or
    /// relative to this process's own cgroup, as runc does) on the hierarchies under `root`.
    /// Nothing is created yet.
    pub fn new(root: &Path, cgroup_path: &str) -> Result<Manager, Error> {
        let layout = Layout::detect(root)?;
        Self::with_layout(&layout, cgroup_path)
    }

    /// As [`Manager::new`], with a layout detected before (detect once, make many managers).
    pub fn with_layout(layout: &Layout, cgroup_path: &str) -> Result<Manager, Error> {
        if cgroup_path.trim_matches('/').is_empty() {
            return Err(Error::EmptyPath);
        }
        Ok(match (layout.mode, &layout.unified) {
            (Mode::V1, _) | (Mode::Hybrid, None) => {
                Manager::V1(v1::V1::new(&layout.v1, cgroup_path))
            }
            (Mode::V2, Some(u)) => Manager::V2(v2::V2::new(u, cgroup_path)),
            (Mode::Hybrid, Some(u)) => Manager::Hybrid {
                v1: v1::V1::new(&layout.v1, cgroup_path),
                v2: v2::V2::new(u, cgroup_path),
            },
            (Mode::V2, None) => return Err(LayoutError::NoHierarchy(layout.root.clone()).into()),
        })
    }

    /// Makes a cgroup with `cpus` (and `mems`, else the parent's) and an optional memory limit:
    /// what the dedicated-core and VM tiers need. Removes what it made if a step fails.
    pub fn with_cpuset_and_memory(
        root: &Path,
        cgroup_path: &str,
        cpus: &str,
        mems: Option<&str>,
        memory_limit: Option<i64>,
    ) -> Result<Manager, Error> {
        let mut cpu = oci_spec::runtime::LinuxCpu::default();
        cpu.set_cpus(Some(cpus.to_string()));
        cpu.set_mems(mems.map(str::to_string));
        let mut res = LinuxResources::default();
        res.set_cpu(Some(cpu));
        if let Some(l) = memory_limit {
            let mut m = oci_spec::runtime::LinuxMemory::default();
            m.set_limit(Some(l));
            res.set_memory(Some(m));
        }
        let mut m = Manager::new(root, cgroup_path)?;
        m.create()?;
        if let Err(e) = m.apply(&res) {
            let _ = m.remove();
            return Err(e);
        }
        Ok(m)
    }

    /// The cgroup mode this manager drives.
    pub fn mode(&self) -> Mode {
        match self {
            Manager::V1(_) => Mode::V1,
            Manager::V2(_) => Mode::V2,
            Manager::Hybrid { .. } => Mode::Hybrid,
        }
    }

    /// Makes the cgroup on every hierarchy (and any missing parents). On failure, what was made
    /// is removed again.
    pub fn create(&mut self) -> Result<(), Error> {
        let r = match self {
            Manager::V1(v1) => v1.create(),
            Manager::V2(v2) => v2.create(),
            Manager::Hybrid { v1, v2 } => v1.create().and_then(|()| v2.create()),
        };
        if let Err(e) = r {
            let _ = self.remove();
            return Err(e);
        }
        Ok(())
    }

    /// Whether the cgroup exists.
    pub fn exists(&self) -> bool {
        match self {
            Manager::V1(v1) => v1.exists(),
            Manager::V2(v2) => v2.exists(),
            Manager::Hybrid { v1, v2 } => v1.exists() || v2.exists(),
        }
    }

    /// Moves the calling thread into the cgroup on the v1 hierarchies (none on a pure cgroup2
    /// host: `Ok(None)`), so that a child it forks next starts there; [`V1Home::leave`] moves it
    /// back. Meant for starting a container's init inside its cgroups without a migration.
    ///
    /// Why: moving *another* process (writing its pid to `cgroup.procs`, [`Manager::add_task`])
    /// takes the kernel's global threadgroup rwsem for writing, which waits for an RCU grace
    /// period when the lock was idle — 5–15 ms measured on this host, the largest part of a
    /// container create. A thread moving *itself* with "0" into `tasks` skips that lock. The
    /// cgroup2 hierarchy has no such file for domain cgroups; there, clone3's
    /// `CLONE_INTO_CGROUP` with [`Manager::v2_dir`] does the same.
    ///
    /// The way back is the calling process's own cgroups as detected when this manager was made
    /// ([`Manager::new`]): use it on a manager made by this process, not on one loaded from a
    /// state file written by another.
    pub fn enter_v1(&self) -> Result<Option<V1Home>, Error> {
        match self {
            Manager::V1(v1) | Manager::Hybrid { v1, .. } => Ok(Some(V1Home(v1.enter_self()?))),
            Manager::V2(_) => Ok(None),
        }
    }

    /// The cgroup2 directory, if there is a cgroup2 hierarchy.
    pub fn v2_dir(&self) -> Option<&Path> {
        match self {
            Manager::V1(_) => None,
            Manager::V2(v2) | Manager::Hybrid { v2, .. } => Some(v2.dir()),
        }
    }

    /// On a pure cgroup2 host, makes (or refreshes) the cgroup's exec sibling: a cgroup beside
    /// it with `cpus` and a copy of its limits and device programs, for a process exec'd into
    /// the container that must run on other CPUs ([`v2::sibling`]); it is frozen, killed and
    /// removed with the cgroup. `None` on v1 and hybrid hosts, where the v1 cpuset can be left
    /// alone.
    pub fn make_exec_sibling(&self, cpus: &str) -> Result<Option<PathBuf>, Error> {
        match self {
            Manager::V2(v2) => v2.make_exec_sibling(cpus).map(Some),
            Manager::V1(_) | Manager::Hybrid { .. } => Ok(None),
        }
    }

    /// [`Manager::add_task`] on the v1 hierarchies only (`v1`) and/or on the cgroup2 one (`v2`).
    pub fn add_task_to(&self, pid: i32, v1: bool, v2: bool) -> Result<(), Error> {
        match self {
            Manager::V1(m) if v1 => m.add_task(pid),
            Manager::V2(m) if v2 => m.add_task(pid),
            Manager::Hybrid { v1: a, v2: b } => {
                if v1 {
                    a.add_task(pid)?;
                }
                if v2 {
                    b.add_task(pid)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Moves `pid` (all its threads) into the cgroup on every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<(), Error> {
        match self {
            Manager::V1(v1) => v1.add_task(pid),
            Manager::V2(v2) => v2.add_task(pid),
            Manager::Hybrid { v1, v2 } => {
                v1.add_task(pid)?;
                v2.add_task(pid)
            }
        }
    }

    /// Applies the OCI resources. Each group goes to the hierarchy holding its controller (v1
    /// first in hybrid mode); a group whose controller is nowhere is an error, except net_cls
    /// and net_prio, applied only when mounted.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), Error> {
        for ctl in Ctl::requested(res) {
            let optional = matches!(ctl, Ctl::NetCls | Ctl::NetPrio);
            match self {
                Manager::V1(v1) if v1.has(ctl) || ctl == Ctl::Unified => v1.apply(ctl, res)?,
                Manager::V2(v2) if v2.has(ctl) => v2.apply(ctl, res)?,
                Manager::Hybrid { v1, .. } if v1.has(ctl) => v1.apply(ctl, res)?,
                Manager::Hybrid { v2, .. } if v2.has(ctl) => v2.apply(ctl, res)?,
                _ if optional => {}
                _ => return Err(Error::NotMounted(ctl.v1_name())),
            }
        }
        Ok(())
    }

    /// Stops every task in the cgroup and waits until they are stopped.
    pub fn freeze(&self) -> Result<(), Error> {
        self.set_frozen(true)
    }

    /// Lets every task run again.
    pub fn thaw(&self) -> Result<(), Error> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        match self {
            Manager::V1(v1) => v1.set_frozen(frozen),
            Manager::V2(v2) => v2.set_frozen(frozen),
            Manager::Hybrid { v1, .. } if v1.has_freezer() => v1.set_frozen(frozen),
            Manager::Hybrid { v2, .. } => v2.set_frozen(frozen),
        }
    }

    /// The freezer state.
    pub fn freezer_state(&self) -> Result<FreezerState, Error> {
        match self {
            Manager::V1(v1) => v1.freezer_state(),
            Manager::V2(v2) => v2.freezer_state(),
            Manager::Hybrid { v1, .. } if v1.has_freezer() => v1.freezer_state(),
            Manager::Hybrid { v2, .. } => v2.freezer_state(),
        }
    }

    /// Every pid in the cgroup (and in cgroups below it).
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        match self {
            Manager::V1(v1) | Manager::Hybrid { v1, .. } => v1.pids(),
            Manager::V2(v2) => v2.pids(),
        }
    }

    /// Sends `signal` to every task. SIGKILL uses cgroup.kill where cgroup2 has it (atomic);
    /// otherwise the cgroup is frozen, signalled and thawed, so no task forks away meanwhile.
    pub fn kill_all(&self, signal: i32) -> Result<(), Error> {
        if signal == libc::SIGKILL {
            if let Manager::V2(v2) | Manager::Hybrid { v2, .. } = self {
                if v2.kill_all_sigkill()? {
                    return Ok(());
                }
            }
        }
        let frozen = self.freeze().is_ok();
        let mut r = Ok(());
        for pid in self.pids()? {
            // SAFETY: kill(2) has no memory effects.
            if unsafe { libc::kill(pid, signal) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) && r.is_ok() {
                    r = Err(Error::Kill {
                        pid,
                        signal,
                        source: e,
                    });
                }
            }
        }
        if frozen {
            self.thaw()?;
        }
        r
    }

    /// Resource usage, shaped for `events --stats`.
    pub fn stats(&self) -> Result<Stats, Error> {
        let mut st = Stats::default();
        match self {
            Manager::V1(v1) => v1.stats(&mut st)?,
            Manager::V2(v2) => v2.stats(&STATS_CONTROLLERS, &mut st)?,
            Manager::Hybrid { v1, v2 } => {
                v1.stats(&mut st)?;
                // CPU usage comes from v1's cpuacct on a hybrid host, whatever cgroup2 holds.
                let rest: Vec<Ctl> = STATS_CONTROLLERS
                    .into_iter()
                    .filter(|c| *c != Ctl::Cpu && !v1.has(*c))
                    .collect();
                v2.stats(&rest, &mut st)?;
            }
        }
        Ok(st)
    }

    /// How many times the kernel's OOM killer killed a task of this cgroup: `oom_kill` in
    /// memory.oom_control (v1) or memory.events (cgroup2). `None` without a memory controller or
    /// on a kernel without the counter.
    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.path_on("memory")?;
        let file = if self.mode_of_memory_is_v2() {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = fs::read_opt(&dir, file).ok()??;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == "oom_kill").then(|| v.trim().parse().ok())?
        })
    }

    fn mode_of_memory_is_v2(&self) -> bool {
        match self {
            Manager::V1(_) => false,
            Manager::V2(_) => true,
            Manager::Hybrid { v1, .. } => !v1.has(Ctl::Memory),
        }
    }

    /// Removes the cgroup on every hierarchy (with child cgroups inside it), and the parents
    /// `create()` made if nothing else uses them. Already gone is fine; a cgroup whose tasks are
    /// still exiting is waited for (until they are gone, see [`fs::wait_released`]) for at most
    /// about a second, then the error names the directory and the tasks left.
    pub fn remove(&self) -> Result<(), Error> {
        // One deadline for all hierarchies: a live task would make each of them wait otherwise.
        let deadline = std::time::Instant::now() + REMOVE_PATIENCE;
        match self {
            Manager::V1(v1) => v1.remove(deadline),
            Manager::V2(v2) => v2.remove(deadline),
            Manager::Hybrid { v1, v2 } => {
                let a = v1.remove(deadline);
                let b = v2.remove(deadline);
                a.and(b)
            }
        }
    }

    /// The cgroup's directory on the hierarchy holding `controller` ("cpu", "memory", "hugetlb",
    /// "name=systemd"; "unified" for the cgroup2 directory).
    pub fn path_on(&self, controller: &str) -> Option<PathBuf> {
        let v2_has = |v2: &v2::V2| {
            controller == "unified"
                || STATS_CONTROLLERS
                    .iter()
                    .chain(&[Ctl::Rdma])
                    .any(|c| c.v2_name() == controller && v2.has(*c))
        };
        match self {
            Manager::V1(v1) => v1.path_on(controller).map(Path::to_path_buf),
            Manager::V2(v2) => v2_has(v2).then(|| v2.dir().to_path_buf()),
            Manager::Hybrid { v1, v2 } => v1
                .path_on(controller)
                .map(Path::to_path_buf)
                .or_else(|| v2_has(v2).then(|| v2.dir().to_path_buf())),
        }
    }

    /// Every directory of this cgroup, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Manager::V1(v1) => v1.dirs().map(Path::to_path_buf).collect(),
            Manager::V2(v2) => vec![v2.dir().to_path_buf()],
            Manager::Hybrid { v1, v2 } => v1
                .dirs()
                .chain(std::iter::once(v2.dir()))
                .map(Path::to_path_buf)
                .collect(),
        }
    }
}

/// Maps a systemd-style cgroupsPath "slice:prefix:name" to a cgroupfs path the way systemd
/// would lay it out ("system.slice:docker:abc" → "/system.slice/docker-abc.scope";
/// "a-b.slice" nests as "/a.slice/a-b.slice"). `None` if it is not of that form.
pub fn systemd_path(s: &str) -> Option<String> {
    let mut parts = s.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let stem = slice.strip_suffix(".slice")?;
    let mut path = String::new();
    if stem != "-" {
        let mut acc = String::new();
        for (i, p) in stem.split('-').enumerate() {
            if p.is_empty() {
                return None;
            }
            if i > 0 {
                acc.push('-');
            }
            acc.push_str(p);
            path.push('/');
            path.push_str(&acc);
            path.push_str(".slice");
        }
    }
    let unit = if name.ends_with(".slice") || name.ends_with(".scope") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Some(format!("{path}/{unit}"))
}

/// pids.max for an OCI limit: zero or negative means no limit.
pub(crate) fn pids_max(limit: i64) -> String {
    if limit <= 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

/// Validates an OCI hugepage pageSize ("2MB", "1GB", "64KB") as used in hugetlb file names.
pub(crate) fn hugetlb_size(page_size: &str) -> Result<String, Error> {
    let digits = page_size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &page_size[digits.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Invalid {
            field: "linux.resources.hugepageLimits.pageSize",
            value: page_size.to_string(),
            expected: "a size such as \"2MB\" or \"1GB\"",
        });
    }
    match unit {
        "KB" | "MB" | "GB" => Ok(page_size.to_string()),
        _ => Err(Error::Invalid {
            field: "linux.resources.hugepageLimits.pageSize",
            value: page_size.to_string(),
            expected: "a size such as \"2MB\" or \"1GB\"",
        }),
    }
}

/// The host's huge page sizes in hugetlb file form ("2MB", "1GB"), from /sys/kernel/mm/hugepages.
pub(crate) fn hugepage_sizes() -> &'static [String] {
    static SIZES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SIZES.get_or_init(|| {
        let mut v: Vec<u64> = std::fs::read_dir("/sys/kernel/mm/hugepages")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_prefix("hugepages-")?
                            .strip_suffix("kB")?
                            .parse()
                            .ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v.into_iter().map(kb_to_size).collect()
    })
}

fn kb_to_size(kb: u64) -> String {
    if kb >= 1 << 20 && kb % (1 << 20) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb % (1 << 10) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// A v1 devices.allow/deny line: "c 1:3 rwm", with `*` for a missing number.
pub(crate) fn device_rule_string(d: &LinuxDeviceCgroup) -> String {
    let num = |n: Option<i64>| match n {
        Some(v) if v >= 0 => v.to_string(),
        _ => "*".to_string(),
    };
    let access = d
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    format!(
        "{} {}:{} {}",
        d.typ().unwrap_or_default().as_str(),
        num(d.major()),
        num(d.minor()),
        access
    )
}

/// OCI `checkBeforeUpdate`: a new memory limit below what the cgroup uses now is refused
/// instead of sending the kernel reclaiming (or OOM-killing).
pub(crate) fn check_limit_above_usage(
    dir: &Path,
    usage_file: &str,
    limit: Option<i64>,
) -> Result<(), Error> {
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return Ok(());
    };
    let usage = fs::read_u64_opt(dir, usage_file)?.unwrap_or(0);
    if (limit as u64) < usage {
        return Err(Error::Invalid {
            field: "linux.resources.memory.limit",
            value: format!("{limit} (the cgroup uses {usage} now)"),
            expected: "at least the current usage, as checkBeforeUpdate asks",
        });
    }
    Ok(())
}

/// Every pid in `dir` and the cgroups below it.
pub(crate) fn all_pids(dir: &Path) -> Result<Vec<i32>, Error> {
    let mut pids = fs::procs(dir)?;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(all_pids(&e.path())?);
            }
        }
    }
    Ok(pids)
}

/// How long `remove()` keeps retrying a cgroup whose tasks are still exiting (EBUSY), in all.
const REMOVE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Removes `dir` and every cgroup below it, deepest first, waiting out EBUSY until `deadline`.
pub(crate) fn remove_tree(dir: &Path, deadline: std::time::Instant) -> Result<(), Error> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path(), deadline)?;
            }
        }
    }
    Ok(fs::rmdir(dir, deadline)?)
}

/// Removes the parents `create()` made (innermost first), once each: one still in use by
/// another cgroup stays.
pub(crate) fn remove_created<'a>(created: &[PathBuf], leaves: impl Iterator<Item = &'a Path>) {
    let leaves: Vec<&Path> = leaves.collect();
    for d in created.iter().rev() {
        if !leaves.contains(&d.as_path()) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The cgroups a thread left with [`Manager::enter_v1`] (their `tasks` files' directories).
#[derive(Debug)]
#[must_use = "the thread stays in the container's cgroups until `leave`"]
pub struct V1Home(Vec<PathBuf>);

impl V1Home {
    /// Moves the calling thread back to where it was.
    pub fn leave(self) -> Result<(), Error> {
        v1::leave_self(&self.0)
    }
}

/// Polling with growing waits for state changes the kernel does not signal cheaply (freezer):
/// the first checks are immediate, so a quick change costs no sleep.
pub(crate) struct Backoff {
    n: u32,
    waited_us: u64,
}

impl Backoff {
    const BUDGET_US: u64 = 10_000_000;

    pub(crate) fn new() -> Self {
        Backoff { n: 0, waited_us: 0 }
    }

    /// Waits a little; `false` once the budget is spent.
    pub(crate) fn wait(&mut self) -> bool {
        if self.waited_us >= Self::BUDGET_US {
            return false;
        }
        self.n += 1;
        if self.n <= 3 {
            std::thread::yield_now();
            return true;
        }
        let us = (10u64 << (self.n - 3).min(10)).min(10_000);
        std::thread::sleep(std::time::Duration::from_micros(us));
        self.waited_us += us;
        true
    }
}

#[cfg(test)]
mod tests;
