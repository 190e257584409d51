//! The cgroup v2 driver: one directory on the unified hierarchy, one small module per controller.
//! In hybrid mode the same driver serves the controllers that sit on `/sys/fs/cgroup/unified`.

pub(crate) mod cpu;
mod cpuset;
pub mod devices;
mod hugetlb;
pub(crate) mod io;
pub(crate) mod memory;
mod pids;
pub mod sibling;

pub use cpu::{cpu_max, shares_to_weight};
pub use io::blkio_to_io_weight;
pub use memory::swap_to_v2;
pub use sibling::{exec_sibling, EXEC_SIBLING_SUFFIX};

use crate::fs;
use crate::layout::Hierarchy;
use crate::stats::Stats;
use crate::{Ctl, Error, FreezerState};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A container's cgroup on the unified hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2 {
    hierarchy: Hierarchy,
    dir: PathBuf,
    /// Directories `create()` made, outermost first.
    created: Vec<PathBuf>,
}

impl V2 {
    /// The cgroup `cgroup_path` on `hierarchy`.
    pub fn new(hierarchy: &Hierarchy, cgroup_path: &str) -> Self {
        V2 {
            dir: hierarchy.dir_of(cgroup_path),
            hierarchy: hierarchy.clone(),
            created: Vec::new(),
        }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `ctl` can be served here: a controller the hierarchy offers, or devices and
    /// freezer, which cgroup2 has on every non-root cgroup (BPF and cgroup.freeze).
    pub(crate) fn has(&self, ctl: Ctl) -> bool {
        match ctl {
            Ctl::Devices | Ctl::Freezer | Ctl::Unified => true,
            Ctl::NetCls | Ctl::NetPrio => false,
            c => self.hierarchy.has(c.v2_name()),
        }
    }

    /// Makes the cgroup and enables the hierarchy's controllers in every ancestor's
    /// cgroup.subtree_control (from the mount down to the parent), so the leaf has their files.
    pub fn create(&mut self) -> Result<(), Error> {
        let made = fs::mkdir_all(&self.dir)?;
        self.created.extend(made.iter().cloned());
        if self.hierarchy.controllers.is_empty() {
            return Ok(());
        }
        let all: String = self
            .hierarchy
            .controllers
            .iter()
            .map(|c| format!("+{c} "))
            .collect();
        let all = all.trim_end();
        let mut ancestors: Vec<&Path> = self
            .dir
            .ancestors()
            .skip(1)
            .take_while(|a| a.starts_with(&self.hierarchy.mount))
            .collect();
        ancestors.reverse();
        for a in ancestors {
            threaded_if_invalid(&made, a)?;
            if fs::write(a, "cgroup.subtree_control", all).is_err() {
                // One at a time: an ancestor may lack some controller; what cannot be enabled
                // shows up later as a missing file naming the controller's knob.
                for c in &self.hierarchy.controllers {
                    let _ = fs::write(a, "cgroup.subtree_control", &format!("+{c}"));
                }
            }
        }
        threaded_if_invalid(&made, &self.dir)?;
        Ok(())
    }

    /// Whether the cgroup exists.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Moves `pid` into the cgroup.
    pub fn add_task(&self, pid: i32) -> Result<(), Error> {
        Ok(fs::write(&self.dir, "cgroup.procs", &pid.to_string())?)
    }

    /// Applies one controller's part of `res`.
    pub(crate) fn apply(&self, ctl: Ctl, res: &LinuxResources) -> Result<(), Error> {
        let d = &self.dir;
        match ctl {
            Ctl::Cpu => cpu::apply(d, &self.hierarchy.mount, res),
            Ctl::Cpuset => cpuset::apply(d, res),
            Ctl::Memory => memory::apply(d, res),
            Ctl::Pids => pids::apply(d, res),
            Ctl::Blkio => io::apply(d, res),
            Ctl::Hugetlb => hugetlb::apply(d, res),
            Ctl::Devices => devices::apply(d, res),
            Ctl::Unified => apply_unified(d, res),
            Ctl::Rdma => apply_rdma(d, res),
            Ctl::NetCls | Ctl::NetPrio | Ctl::Freezer => Ok(()),
        }
    }

    /// Makes (or refreshes) the cgroup's exec sibling with `cpus` and a copy of the cgroup's
    /// limits and device programs (see [`sibling`]); returns its directory.
    pub fn make_exec_sibling(&self, cpus: &str) -> Result<PathBuf, Error> {
        sibling::make(&self.dir, cpus)
    }

    /// Freezes or thaws the cgroup, and its exec sibling if there is one, and waits until
    /// cgroup.events says it is done.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        set_frozen(&self.dir, frozen)?;
        match exec_sibling(&self.dir).filter(|s| s.is_dir()) {
            Some(s) => set_frozen(&s, frozen),
            None => Ok(()),
        }
    }

    /// Frozen, freezing (asked, not yet done) or thawed.
    pub fn freezer_state(&self) -> Result<FreezerState, Error> {
        freezer_state(&self.dir)
    }

    /// Every pid in the cgroup and its descendants, and in its exec sibling.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let mut v = crate::all_pids(&self.dir)?;
        if let Some(s) = exec_sibling(&self.dir).filter(|s| s.is_dir()) {
            v.extend(crate::all_pids(&s)?);
        }
        Ok(v)
    }

    /// Kills every task, its exec sibling's too, with cgroup.kill (Linux 5.14+) if the kernel
    /// has it; `false` if not.
    pub fn kill_all_sigkill(&self) -> Result<bool, Error> {
        match fs::write(&self.dir, "cgroup.kill", "1") {
            Ok(()) => {
                sibling::kill(&self.dir)?;
                Ok(true)
            }
            // EOPNOTSUPP: a threaded cgroup (see create()) has no cgroup.kill.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EOPNOTSUPP)) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Fills in what the controllers `ctls` report.
    pub(crate) fn stats(&self, ctls: &[Ctl], st: &mut Stats) -> Result<(), Error> {
        let d = &self.dir;
        for c in ctls {
            match c {
                Ctl::Cpu => cpu::stats(d, st)?,
                Ctl::Cpuset if self.has(Ctl::Cpuset) => cpuset::stats(d, st)?,
                Ctl::Memory if self.has(Ctl::Memory) => memory::stats(d, st)?,
                Ctl::Pids if self.has(Ctl::Pids) => pids::stats(d, st)?,
                Ctl::Blkio if self.has(Ctl::Blkio) => io::stats(d, st)?,
                Ctl::Hugetlb if self.has(Ctl::Hugetlb) => hugetlb::stats(d, st)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes the cgroup (and child cgroups inside it) and its exec sibling (its tasks killed),
    /// then the ancestors `create()` made if they are empty. Already gone is fine.
    pub fn remove(&self, deadline: std::time::Instant) -> Result<(), Error> {
        let r = crate::remove_tree(&self.dir, deadline);
        let s = sibling::remove(&self.dir, deadline);
        crate::remove_created(&self.created, std::iter::once(self.dir.as_path()));
        r.and(s)
    }
}

/// Freezes or thaws the cgroup `dir` and waits until its cgroup.events says it is done.
fn set_frozen(dir: &Path, frozen: bool) -> Result<(), Error> {
    fs::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let want = if frozen {
        FreezerState::Frozen
    } else {
        FreezerState::Thawed
    };
    let mut poll = crate::Backoff::new();
    loop {
        if freezer_state(dir)? == want {
            return Ok(());
        }
        if !poll.wait() {
            return Err(Error::Timeout {
                what: if frozen { "freezing" } else { "thawing" },
                path: dir.join("cgroup.events"),
            });
        }
    }
}

/// Frozen, freezing (asked, not yet done) or thawed: the cgroup `dir`.
fn freezer_state(dir: &Path) -> Result<FreezerState, Error> {
    let want = fs::read(dir, "cgroup.freeze")?;
    let events = fs::read(dir, "cgroup.events")?;
    let frozen = fs::flat_keyed(&events).any(|(k, v)| k == "frozen" && v == 1);
    Ok(match (want.trim() == "1", frozen) {
        (true, true) => FreezerState::Frozen,
        (true, false) => FreezerState::Freezing,
        (false, _) => FreezerState::Thawed,
    })
}

/// Under a cgroup that has processes and thread-aware controllers enabled (a thread root: e.g. the
/// runtime's own cgroup, for a relative cgroupsPath) a new cgroup is "domain invalid": no process
/// can join it and no controller can be enabled in it. As runc does, a directory we `made` in that
/// state becomes threaded: the thread-aware controllers (cpu, cpuset, pids), devices and freezer
/// still work; a domain controller's limit then fails naming its missing file.
fn threaded_if_invalid(made: &[PathBuf], dir: &Path) -> Result<(), Error> {
    if made.iter().any(|m| m == dir)
        && fs::read(dir, "cgroup.type").is_ok_and(|t| t.trim() == "domain invalid")
    {
        fs::write(dir, "cgroup.type", "threaded")?;
    }
    Ok(())
}

/// `unified` keys are cgroup2 file names (e.g. "memory.high"): a plain name, never a path.
fn apply_unified(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    for (k, v) in res.unified().iter().flatten() {
        if k.is_empty() || k.contains('/') || k.starts_with('.') {
            return Err(Error::Invalid {
                field: "linux.resources.unified",
                value: k.clone(),
                expected: "a cgroup2 file name such as \"memory.high\"",
            });
        }
        fs::write(dir, k, v)?;
    }
    Ok(())
}

fn apply_rdma(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    for (dev, l) in res.rdma().iter().flatten() {
        let mut v = dev.clone();
        if let Some(h) = l.hca_handles() {
            v.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            v.push_str(&format!(" hca_object={o}"));
        }
        fs::write(dir, "rdma.max", &v)?;
    }
    Ok(())
}
