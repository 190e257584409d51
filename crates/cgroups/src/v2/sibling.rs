//! A container's exec sibling on a pure cgroup2 host: `PARENT/NAME.carve-exec` beside the
//! container's cgroup `PARENT/NAME`, for processes exec'd into the container that must run on
//! other CPUs than the container's cpuset (carve-oci sends `exec` into a dedicated-core
//! container to the host's housekeeping CPUs).
//!
//! Why a sibling: on cgroup2 every controller lives in one tree, so a process cannot leave the
//! container's cpuset without leaving its memory, pids and io cgroup too; a child of the
//! container's cgroup cannot have other CPUs (a child's cpuset is a subset of its parent's) and,
//! with the container's init in it, cannot get controllers of its own (the "no internal
//! processes" rule). The sibling gets a copy of the container's limits (each file as it reads
//! now, [`copied_files`]) and its device programs, so an exec'd process is held to the same
//! limits as the container, counted apart from it; the common parent (a pod's cgroup) bounds
//! both together. It is frozen, killed and removed with the container ([`super::V2`]).

use crate::fs::{self, FsError};
use crate::Error;
use std::path::{Path, PathBuf};

/// What the exec sibling's name adds to the container cgroup's.
pub const EXEC_SIBLING_SUFFIX: &str = ".carve-exec";

/// The limit files copied from the container's cgroup, besides `hugetlb.<size>.max` and
/// `hugetlb.<size>.rsvd.max` (whose sizes the kernel decides). A file the container's cgroup
/// lacks (controller not enabled, older kernel) is skipped.
const COPIED: [&str; 16] = [
    "cpuset.mems",
    "memory.min",
    "memory.low",
    "memory.high",
    "memory.max",
    "memory.swap.max",
    "memory.oom.group",
    "pids.max",
    "cpu.weight",
    "cpu.max",
    "cpu.idle",
    "io.weight",
    "io.bfq.weight",
    "io.max",
    "rdma.max",
    "misc.max",
];

/// The exec sibling of the cgroup at `dir`: `PARENT/NAME.carve-exec`; `None` for a directory
/// without a name (the hierarchy's root).
pub fn exec_sibling(dir: &Path) -> Option<PathBuf> {
    let name = dir.file_name()?.to_str()?;
    if name.ends_with(EXEC_SIBLING_SUFFIX) {
        return None;
    }
    Some(dir.with_file_name(format!("{name}{EXEC_SIBLING_SUFFIX}")))
}

/// The files to copy, in writing order, for a cgroup whose directory lists `names`: the fixed
/// [`COPIED`] list (those present) then the hugetlb limits.
pub fn copied_files<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let has = |f: &str| names.iter().any(|n| n.as_ref() == f);
    let mut out: Vec<String> = COPIED
        .iter()
        .filter(|f| has(f))
        .map(|f| f.to_string())
        .collect();
    let mut huge: Vec<String> = names
        .iter()
        .map(|n| n.as_ref())
        .filter(|n| n.starts_with("hugetlb.") && n.ends_with(".max"))
        .map(str::to_string)
        .collect();
    huge.sort();
    out.extend(huge);
    out
}

/// The writes that reproduce a limit file's content: one per non-empty line (cgroupfs takes one
/// entry per write: `io.max` and `io.weight` hold one line per device).
pub fn writes_for(content: &str) -> Vec<&str> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Makes (or refreshes) the exec sibling of the container cgroup `dir`: its limits copied from
/// `dir` as they are now, `cpuset.cpus` = `cpus`, the device programs of `dir` attached. A
/// sibling made here is removed again when a step fails. Returns its directory.
pub(super) fn make(dir: &Path, cpus: &str) -> Result<PathBuf, Error> {
    let sib = exec_sibling(dir).ok_or_else(|| Error::Invalid {
        field: "cgroupsPath",
        value: dir.display().to_string(),
        expected: "a container cgroup below the cgroup2 root (its exec sibling sits beside it)",
    })?;
    let made = match std::fs::create_dir(&sib) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(source) => {
            return Err(FsError::Mkdir {
                path: sib.clone(),
                source,
            }
            .into())
        }
    };
    let r = fill(dir, &sib, cpus);
    if r.is_err() && made {
        let _ = std::fs::remove_dir(&sib);
    }
    r.map(|()| sib)
}

fn fill(dir: &Path, sib: &Path, cpus: &str) -> Result<(), Error> {
    // A container cgroup made threaded (below a cgroup with processes) has a threaded sibling.
    if fs::read(dir, "cgroup.type").is_ok_and(|t| t.trim() == "threaded")
        && fs::read(sib, "cgroup.type").is_ok_and(|t| t.trim() != "threaded")
    {
        fs::write(sib, "cgroup.type", "threaded")?;
    }
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| FsError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for f in copied_files(&names) {
        let Some(content) = fs::read_opt(dir, &f)? else {
            continue;
        };
        for w in writes_for(&content) {
            fs::write(sib, &f, w)?;
        }
    }
    fs::write(sib, "cpuset.cpus", cpus)?;
    super::devices::copy(dir, sib)?;
    Ok(())
}

/// Kills what runs in the exec sibling of `dir` and removes it (with any cgroup below it), if it
/// exists; waits for its tasks until `deadline`.
pub(super) fn remove(dir: &Path, deadline: std::time::Instant) -> Result<(), Error> {
    let Some(sib) = exec_sibling(dir).filter(|s| s.is_dir()) else {
        return Ok(());
    };
    kill(dir)?;
    crate::remove_tree(&sib, deadline)
}

/// SIGKILLs every task of the exec sibling of `dir`, if it exists: cgroup.kill, else each pid.
pub(super) fn kill(dir: &Path) -> Result<(), Error> {
    let Some(sib) = exec_sibling(dir).filter(|s| s.is_dir()) else {
        return Ok(());
    };
    match fs::write(&sib, "cgroup.kill", "1") {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EOPNOTSUPP)) => {
            for pid in crate::all_pids(&sib)? {
                // SAFETY: kill(2) has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sibling_sits_beside_the_container_cgroup() {
        assert_eq!(
            exec_sibling(Path::new("/sys/fs/cgroup/kubepods/pod1/abc")),
            Some(PathBuf::from("/sys/fs/cgroup/kubepods/pod1/abc.carve-exec"))
        );
        assert_eq!(
            exec_sibling(Path::new(
                "/sys/fs/cgroup/k.slice/k-pod1.slice/cri-containerd-abc.scope"
            )),
            Some(PathBuf::from(
                "/sys/fs/cgroup/k.slice/k-pod1.slice/cri-containerd-abc.scope.carve-exec"
            ))
        );
        // Never a sibling of a sibling, nor of the root.
        assert_eq!(exec_sibling(Path::new("/sys/fs/cgroup/a.carve-exec")), None);
        assert_eq!(exec_sibling(Path::new("/")), None);
    }

    #[test]
    fn limits_are_copied_in_a_fixed_order_with_the_hugetlb_sizes_present() {
        let names = [
            "cgroup.procs",
            "hugetlb.2MB.max",
            "memory.max",
            "hugetlb.1GB.rsvd.max",
            "cpuset.cpus",
            "hugetlb.2MB.current",
            "hugetlb.2MB.numa_stat",
            "pids.max",
            "cpuset.mems",
            "io.max",
            "memory.current",
        ];
        assert_eq!(
            copied_files(&names),
            [
                "cpuset.mems",
                "memory.max",
                "pids.max",
                "io.max",
                "hugetlb.1GB.rsvd.max",
                "hugetlb.2MB.max"
            ]
        );
        // cpuset.cpus is never copied: the sibling's CPUs are the point.
        assert!(!copied_files(&names).iter().any(|f| f == "cpuset.cpus"));
    }

    #[test]
    fn multi_line_limits_are_written_one_line_at_a_time() {
        assert_eq!(
            writes_for("8:0 rbps=1048576 wbps=max riops=max wiops=max\n1:0 rbps=max wbps=2 riops=max wiops=max\n"),
            [
                "8:0 rbps=1048576 wbps=max riops=max wiops=max",
                "1:0 rbps=max wbps=2 riops=max wiops=max"
            ]
        );
        assert_eq!(writes_for("max 100000\n"), ["max 100000"]);
        assert!(
            writes_for("\n").is_empty(),
            "an empty io.max writes nothing"
        );
    }
}
