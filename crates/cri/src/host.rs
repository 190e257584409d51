//! What a node leaves on the host when its daemon dies: processes, cgroup trees, mounts.
//! Used by [`crate::node::Node`]'s teardown and by tests' leftover checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Pids of processes whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c: Vec<u8> = c
                .into_iter()
                .map(|b| if b == 0 { b' ' } else { b })
                .collect();
            String::from_utf8_lossy(&c).contains(needle).then_some(pid)
        })
        .collect()
}

/// Every cgroup hierarchy mounted on this host (v1 controllers and the unified one).
pub fn hierarchies() -> Vec<PathBuf> {
    carve_core::mountinfo::read(Path::new("/proc"))
        .into_iter()
        .filter(|m| m.is_cgroup_v1() || m.is_cgroup_v2())
        .map(|m| m.mount_point)
        .collect()
}

fn collect_dirs(d: &Path, out: &mut Vec<PathBuf>) {
    out.push(d.to_path_buf());
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Every cgroup directory at or below `/name` on every hierarchy.
pub fn cgroup_tree(name: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for h in hierarchies() {
        let top = h.join(name.trim_start_matches('/'));
        if top.is_dir() {
            collect_dirs(&top, &mut dirs);
        }
    }
    dirs
}

/// Pids in any cgroup at or below `/name`.
pub fn procs_in_tree(name: &str) -> Vec<i32> {
    let mut v: Vec<i32> = cgroup_tree(name)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|p| {
            p.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Removes the cgroup tree `/name` on every hierarchy, deepest first, killing what is left in it.
/// Returns the directories that could not be removed.
pub fn remove_cgroup_tree(name: &str) -> Vec<PathBuf> {
    let mut dirs = cgroup_tree(name);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let mut left = Vec::new();
    for d in dirs {
        for _ in 0..50 {
            for pid in std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
            {
                // SAFETY: kill has no memory effects; the pid is in the node's own cgroup tree.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if d.exists() {
            left.push(d);
        }
    }
    left
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    carve_core::mountinfo::read(Path::new("/proc"))
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|t| t.starts_with(dir))
        .collect()
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let mut m = mounts_under(dir);
    m.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in m {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: c is a valid NUL-terminated path for the call's duration.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}
