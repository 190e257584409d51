//! The cgroup v1 driver: one directory per mounted hierarchy, one small module per controller.

mod blkio;
mod cpu;
mod cpuset;
mod devices;
mod freezer;
mod hugetlb;
mod memory;
mod net;
mod pids;

use crate::fs;
use crate::layout::Hierarchy;
use crate::stats::Stats;
use crate::{Ctl, Error, FreezerState};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A container's cgroup on every v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1 {
    /// `(hierarchy, this cgroup's directory on it)`.
    dirs: Vec<(Hierarchy, PathBuf)>,
    /// Directories `create()` made, outermost first; `remove()` takes them away again.
    created: Vec<PathBuf>,
}

impl V1 {
    /// The cgroup `cgroup_path` on each of `hierarchies`.
    pub fn new(hierarchies: &[Hierarchy], cgroup_path: &str) -> Self {
        V1 {
            dirs: hierarchies
                .iter()
                .map(|h| (h.clone(), h.dir_of(cgroup_path)))
                .collect(),
            created: Vec::new(),
        }
    }

    /// The directory holding `controller` ("cpu", "memory", "name=systemd" ...).
    pub fn path_on(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(h, _)| h.has(controller))
            .map(|(_, d)| d.as_path())
    }

    fn mount_of(&self, controller: &str) -> &Path {
        self.dirs
            .iter()
            .find(|(h, _)| h.has(controller))
            .map(|(h, _)| h.mount.as_path())
            .unwrap_or(Path::new("/"))
    }

    pub(crate) fn has(&self, ctl: Ctl) -> bool {
        self.path_on(ctl.v1_name()).is_some()
    }

    fn dir(&self, ctl: Ctl) -> Result<&Path, Error> {
        self.path_on(ctl.v1_name())
            .ok_or(Error::NotMounted(ctl.v1_name()))
    }

    /// Every directory, one per hierarchy.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(_, d)| d.as_path())
    }

    /// Makes the cgroup on every hierarchy. New cpuset directories get their parent's cpus and
    /// mems (v1 starts them empty, and an empty cpuset takes no task).
    pub fn create(&mut self) -> Result<(), Error> {
        for (h, dir) in &self.dirs {
            let made = fs::mkdir_all(dir)?;
            if h.has("cpuset") {
                for d in &made {
                    cpuset::inherit_parent(d)?;
                }
            }
            self.created.extend(made);
        }
        Ok(())
    }

    /// Whether the cgroup exists (on the first hierarchy).
    pub fn exists(&self) -> bool {
        self.dirs.first().is_some_and(|(_, d)| d.is_dir())
    }

    /// Moves `pid` into the cgroup on every hierarchy.
    pub fn add_task(&self, pid: i32) -> Result<(), Error> {
        let s = pid.to_string();
        for (_, dir) in &self.dirs {
            fs::write(dir, "cgroup.procs", &s)?;
        }
        Ok(())
    }

    /// Moves the calling thread (not its process) into this cgroup on every hierarchy, by
    /// writing "0" to `tasks`; returns the `tasks` files of the cgroups it came from (its own, as
    /// detected with the layout). On an error it is moved back first.
    pub(crate) fn enter_self(&self) -> Result<Vec<PathBuf>, Error> {
        let mut home = Vec::new();
        for (h, dir) in &self.dirs {
            if let Err(e) = fs::write(dir, "tasks", "0") {
                let _ = leave_self(&home);
                return Err(e.into());
            }
            home.push(h.dir_of(&h.own));
        }
        Ok(home)
    }

    /// Applies one controller's part of `res`.
    pub(crate) fn apply(&self, ctl: Ctl, res: &LinuxResources) -> Result<(), Error> {
        if ctl == Ctl::Unified {
            return Err(Error::Unsupported(
                "linux.resources.unified needs a cgroup2 hierarchy",
            ));
        }
        let dir = self.dir(ctl)?;
        match ctl {
            Ctl::Cpu => cpu::apply(dir, self.mount_of("cpu"), res),
            Ctl::Cpuset => cpuset::apply(dir, res),
            Ctl::Memory => memory::apply(dir, res),
            Ctl::Pids => pids::apply(dir, res),
            Ctl::Blkio => blkio::apply(dir, res),
            Ctl::Hugetlb => hugetlb::apply(dir, res),
            Ctl::Devices => devices::apply(dir, res),
            Ctl::NetCls => net::apply_cls(dir, res),
            Ctl::NetPrio => net::apply_prio(dir, res),
            Ctl::Rdma => Err(Error::Unsupported("rdma limits")),
            Ctl::Freezer => Ok(()),
            Ctl::Unified => unreachable!("handled above"),
        }
    }

    /// Freezes (`true`) or thaws every task, waiting until the kernel says so.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        freezer::set(self.dir(Ctl::Freezer)?, frozen)
    }

    /// The freezer state.
    pub fn freezer_state(&self) -> Result<FreezerState, Error> {
        freezer::state(self.dir(Ctl::Freezer)?)
    }

    /// Whether a freezer hierarchy is mounted.
    pub fn has_freezer(&self) -> bool {
        self.has(Ctl::Freezer)
    }

    /// Every pid in the cgroup and its descendants, read on the freezer hierarchy (else the first).
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let dir = self
            .path_on("freezer")
            .or_else(|| self.dirs.first().map(|(_, d)| d.as_path()));
        match dir {
            Some(d) => crate::all_pids(d),
            None => Ok(Vec::new()),
        }
    }

    /// Fills in everything the v1 controllers report.
    pub fn stats(&self, st: &mut Stats) -> Result<(), Error> {
        if let Some(d) = self.path_on("cpuacct") {
            cpu::cpuacct_stats(d, st)?;
        }
        if let Some(d) = self.path_on("cpu") {
            cpu::stats(d, st)?;
        }
        if let Some(d) = self.path_on("cpuset") {
            cpuset::stats(d, st)?;
        }
        if let Some(d) = self.path_on("memory") {
            memory::stats(d, st)?;
        }
        if let Some(d) = self.path_on("pids") {
            pids::stats(d, st)?;
        }
        if let Some(d) = self.path_on("blkio") {
            blkio::stats(d, st)?;
        }
        if let Some(d) = self.path_on("hugetlb") {
            hugetlb::stats(d, st)?;
        }
        Ok(())
    }

    /// Removes the cgroup (with any child cgroups a container made inside) on every hierarchy,
    /// then the ancestors `create()` made if they are empty. Already gone is fine.
    pub fn remove(&self, deadline: std::time::Instant) -> Result<(), Error> {
        let mut first_err = None;
        for (_, dir) in &self.dirs {
            if let Err(e) = crate::remove_tree(dir, deadline) {
                first_err.get_or_insert(e);
            }
        }
        crate::remove_created(&self.created, self.dirs.iter().map(|(_, d)| d.as_path()));
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Moves the calling thread back into the cgroups [`V1::enter_self`] returned.
pub(crate) fn leave_self(home: &[PathBuf]) -> Result<(), Error> {
    let mut r = Ok(());
    for d in home {
        if let Err(e) = fs::write(d, "tasks", "0") {
            r = r.and(Err(e.into()));
        }
    }
    r
}
