//! The cpuset partition: the dedicated cores become a cpuset nobody else may use.
//!
//! cgroup v1 (this host): a `carve-ded-NAME` cpuset with `cpu_exclusive=1` and
//! `sched_load_balance=0`; the root's `sched_load_balance=0`, so the kernel builds scheduling
//! domains only from child cpusets that balance; an empty `carve-hk-NAME` cpuset over the
//! housekeeping cores with balancing on, so housekeeping keeps its load balancing; and every other
//! cpuset that held a dedicated core shrunk to exclude it (deepest first, so a parent never gets
//! narrower than a child). The v1 root always holds every CPU, so the tasks that live in it are
//! moved by affinity ([`crate::tasks`]), not into a housekeeping cpuset: a housekeeping cpuset
//! would collect every task forked during the run, and the journal could not empty it again after
//! a crash, while an affinity is restored per task.
//!
//! cgroup v2: a `carve-ded-NAME` cgroup with `cpuset.cpus` (and `cpuset.cpus.exclusive` where the
//! kernel has it) and `cpuset.cpus.partition=isolated`; the kernel takes the CPUs out of every
//! other cgroup's effective set and out of load balancing itself. The state is read back because
//! the kernel reports an invalid partition there rather than failing the write.

use carve_core::CpuSet;
use carve_journal::{Change, Journal};
use std::path::{Path, PathBuf};

use crate::sys::CpusetRoot;

/// Why the cpuset partition could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CpusetError {
    /// The journal failed (the change was not made).
    #[error(transparent)]
    Journal(#[from] carve_journal::Error),
    /// Another cpuset uses only dedicated cores, so it cannot give them up.
    #[error("cpuset {path} uses only CPUs {cpus} of the requested dedicated cores; it cannot give them up")]
    Conflict {
        /// The cpuset directory.
        path: PathBuf,
        /// Its CPUs.
        cpus: String,
    },
    /// The kernel did not accept the v2 partition.
    #[error("cgroup {path}: cpuset.cpus.partition is {state:?}, not \"isolated\"")]
    InvalidPartition {
        /// The cgroup directory.
        path: PathBuf,
        /// What cpuset.cpus.partition reads.
        state: String,
    },
    /// A cpuset file could not be read or written.
    #[error("cpuset file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A cpuset made for a dedicated partition.
#[derive(Debug, Clone)]
pub struct CpusetPartition {
    /// The hierarchy it lives in.
    pub root: CpusetRoot,
    /// The partition's cpuset / cgroup directory.
    pub dir: PathBuf,
    /// Other cpusets shrunk to leave the dedicated cores alone: (dir, old CPUs, new CPUs).
    pub adjusted: Vec<(PathBuf, String, String)>,
}

impl CpusetPartition {
    /// The file a task id is written to, to join the partition (v1 `tasks` takes thread ids;
    /// v2 `cgroup.procs` takes whole processes).
    pub fn tasks_file(&self) -> PathBuf {
        match self.root {
            CpusetRoot::V1(_) => self.dir.join("tasks"),
            CpusetRoot::V2(_) => self.dir.join("cgroup.procs"),
        }
    }

    /// The partition's path inside its hierarchy, as /proc/PID/cgroup prints it ("/carve-ded-x").
    pub fn cgroup_path(&self) -> String {
        let root = match &self.root {
            CpusetRoot::V1(r) | CpusetRoot::V2(r) => r,
        };
        let rel = self.dir.strip_prefix(root).unwrap_or(&self.dir);
        format!("/{}", rel.display())
    }

    /// Whether /proc/PID/task/TID/cgroup content places the task in this partition.
    pub fn holds(&self, cgroup_file: &str) -> bool {
        let want = self.cgroup_path();
        cgroup_file.lines().any(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
            let ctrl_ok = match self.root {
                CpusetRoot::V1(_) => ctrls.is_some_and(|c| c.split(',').any(|x| x == "cpuset")),
                CpusetRoot::V2(_) => ctrls == Some(""),
            };
            ctrl_ok && path == Some(want.as_str())
        })
    }
}

fn read(path: &Path) -> Result<String, CpusetError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CpusetError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn parse(path: &Path, s: &str) -> Result<CpuSet, CpusetError> {
    CpuSet::parse_list(s).map_err(|e| CpusetError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<(usize, PathBuf)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
            out.push((depth, e.path()));
            walk(&e.path(), depth + 1, out);
        }
    }
}

/// The cpusets under `root` (not `root` itself, not `skip`) that hold any of `cpus`, with the CPUs
/// they would keep, deepest first. Fails when one would keep none.
pub fn plan_v1_shrink(
    root: &Path,
    cpus: &CpuSet,
    skip: &[PathBuf],
) -> Result<Vec<(PathBuf, CpuSet, CpuSet)>, CpusetError> {
    let mut dirs = Vec::new();
    walk(root, 1, &mut dirs);
    dirs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = Vec::new();
    for (_, d) in dirs {
        if skip.contains(&d) {
            continue;
        }
        let f = d.join("cpuset.cpus");
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue; // removed meanwhile
        };
        let old = parse(&f, &text)?;
        if old.intersection(cpus).is_empty() {
            continue;
        }
        let new = old.difference(cpus);
        if new.is_empty() {
            return Err(CpusetError::Conflict {
                path: d,
                cpus: old.to_string(),
            });
        }
        out.push((d, old, new));
    }
    Ok(out)
}

/// Makes the v1 partition under `root` (see the module docs). Every write goes through `j`.
pub fn setup_v1(
    j: &mut Journal,
    root: &Path,
    name: &str,
    cpus: &CpuSet,
    housekeeping: &CpuSet,
) -> Result<CpusetPartition, CpusetError> {
    let dir = root.join(format!("carve-ded-{name}"));
    let hk = root.join(format!("carve-hk-{name}"));
    // Plan every shrink before changing anything: a conflict leaves the host untouched.
    let shrink = plan_v1_shrink(root, cpus, &[dir.clone(), hk.clone()])?;
    let mems = read(&root.join("cpuset.mems"))?;
    let mut adjusted = Vec::new();
    for (d, old, new) in &shrink {
        match j.write_file(d.join("cpuset.cpus"), &new.to_string()) {
            Ok(()) => adjusted.push((d.clone(), old.to_string(), new.to_string())),
            // Removed since the plan was made (its owner tore it down): nothing to narrow.
            Err(carve_journal::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(libc::ENODEV) =>
            {
                if d.exists() {
                    return Err(CpusetError::Io {
                        path: d.join("cpuset.cpus"),
                        source,
                    });
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The housekeeping cpuset holds no task: it only tells the kernel to balance those cores.
    j.create_dir(&hk)?;
    j.write_file(hk.join("cpuset.cpus"), &housekeeping.to_string())?;
    j.write_file(hk.join("cpuset.mems"), &mems)?;
    j.write_file(hk.join("cpuset.sched_load_balance"), "1")?;
    j.create_dir(&dir)?;
    j.write_file(dir.join("cpuset.cpus"), &cpus.to_string())?;
    j.write_file(dir.join("cpuset.mems"), &mems)?;
    j.write_file(dir.join("cpuset.cpu_exclusive"), "1")?;
    j.write_file(dir.join("cpuset.sched_load_balance"), "0")?;
    j.write_file(root.join("cpuset.sched_load_balance"), "0")?;
    Ok(CpusetPartition {
        root: CpusetRoot::V1(root.to_path_buf()),
        dir,
        adjusted,
    })
}

/// Makes the v2 partition under `root`: enables the cpuset controller for the root's children if
/// needed (undone with "-cpuset"), then an isolated partition over `cpus`.
pub fn setup_v2(
    j: &mut Journal,
    root: &Path,
    name: &str,
    cpus: &CpuSet,
) -> Result<CpusetPartition, CpusetError> {
    let dir = root.join(format!("carve-ded-{name}"));
    let sc = root.join("cgroup.subtree_control");
    let enabled = read(&sc)?;
    if !enabled.split_whitespace().any(|c| c == "cpuset") {
        // subtree_control takes +/- tokens, so its "old value" is written back as "-cpuset".
        j.record(Change::WriteBack {
            path: sc.clone(),
            value: "-cpuset".into(),
        })?;
        std::fs::write(&sc, "+cpuset").map_err(|source| CpusetError::Io {
            path: sc.clone(),
            source,
        })?;
    }
    j.create_dir(&dir)?;
    j.write_file(dir.join("cpuset.cpus"), &cpus.to_string())?;
    let excl = dir.join("cpuset.cpus.exclusive");
    if excl.exists() {
        j.write_file(&excl, &cpus.to_string())?;
    }
    let part = dir.join("cpuset.cpus.partition");
    j.write_file(&part, "isolated")?;
    let state = read(&part)?;
    if state != "isolated" {
        return Err(CpusetError::InvalidPartition { path: dir, state });
    }
    Ok(CpusetPartition {
        root: CpusetRoot::V2(root.to_path_buf()),
        dir,
        adjusted: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jroot() -> (tempfile::TempDir, Journal) {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::create(t.path().join("j"), "cpuset-test").unwrap();
        (t, j)
    }

    #[test]
    fn v2_isolated_partition_is_written_and_undone() {
        let (t, mut j) = jroot();
        let root = t.path().join("cg2");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpuset cpu memory\n").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "memory\n").unwrap();
        // cgroupfs populates a new directory with its knobs; a temp dir does not, so the test
        // creates the cgroup as the kernel would show it (and the journal then leaves it in place).
        let dir = root.join("carve-ded-t");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("cpuset.cpus"), "\n").unwrap();
        std::fs::write(dir.join("cpuset.cpus.exclusive"), "\n").unwrap();
        std::fs::write(dir.join("cpuset.cpus.partition"), "member\n").unwrap();
        let cpus = CpuSet::parse_list("2-3").unwrap();
        let p = setup_v2(&mut j, &root, "t", &cpus).unwrap();
        assert_eq!(p.tasks_file(), dir.join("cgroup.procs"));
        assert_eq!(p.cgroup_path(), "/carve-ded-t");
        assert!(p.holds("0::/carve-ded-t\n"));
        assert!(!p.holds("0::/other\n"));
        assert_eq!(
            std::fs::read_to_string(dir.join("cpuset.cpus.partition")).unwrap(),
            "isolated"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpuset.cpus")).unwrap(),
            "2-3"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("cpuset.cpus.exclusive")).unwrap(),
            "2-3"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpuset"
        );
        j.undo().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("cpuset.cpus.partition")).unwrap(),
            "member\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "-cpuset"
        );
    }

    #[test]
    fn v1_shrink_plan_is_deepest_first_and_refuses_a_cpuset_left_empty() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for (d, c) in [("a", "0-3"), ("a/b", "2-3"), ("c", "0-1"), ("d", "3")] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(root.join(d).join("cpuset.cpus"), c).unwrap();
        }
        let plan = plan_v1_shrink(root, &CpuSet::parse_list("2").unwrap(), &[]).unwrap();
        let got: Vec<(String, String)> = plan
            .iter()
            .map(|(d, _, n)| {
                (
                    d.strip_prefix(root).unwrap().display().to_string(),
                    n.to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("a/b".into(), "3".into()), ("a".into(), "0-1,3".into())]
        );
        let e = plan_v1_shrink(root, &CpuSet::parse_list("3").unwrap(), &[]).unwrap_err();
        assert!(matches!(e, CpusetError::Conflict { .. }), "{e}");
    }

    #[test]
    fn v1_membership_reads_the_cpuset_line() {
        let p = CpusetPartition {
            root: CpusetRoot::V1("/sys/fs/cgroup/cpuset".into()),
            dir: "/sys/fs/cgroup/cpuset/carve-ded-x".into(),
            adjusted: vec![],
        };
        assert!(p.holds("12:cpuset:/carve-ded-x\n1:name=systemd:/\n"));
        assert!(!p.holds("12:cpuset:/\n"));
        assert_eq!(
            p.tasks_file(),
            PathBuf::from("/sys/fs/cgroup/cpuset/carve-ded-x/tasks")
        );
    }
}
