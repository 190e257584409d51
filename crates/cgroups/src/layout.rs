//! Which cgroup hierarchies exist under a root and which controller sits on which.
//!
//! The real root is detected with statfs (cgroup2 magic on the root → pure v2; cgroup2 magic on
//! `root/unified` → hybrid) and /proc/self/mountinfo (the v1 hierarchies and their controllers). A
//! root that is not a cgroup mount (a temp dir laid out like cgroupfs, for tests) is read from its
//! directory structure instead: `cgroup.controllers` marks a v2 root, and each subdirectory holding
//! `cgroup.procs` is a v1 hierarchy named after its controllers.

use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A failure to find out the cgroup layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// no cgroup hierarchy found under {0}
    #[error("no cgroup hierarchy found under {}", .0.display())]
    NoHierarchy(PathBuf),
    /// statfs {path}: {source}
    #[error("statfs {}: {source}", path.display())]
    Statfs {
        /// The path examined.
        path: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A cgroupfs read failed.
    #[error(transparent)]
    Fs(#[from] crate::fs::FsError),
}

/// The cgroup mode of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only v1 hierarchies.
    V1,
    /// Only the unified (cgroup2) hierarchy, at the root.
    V2,
    /// v1 hierarchies plus cgroup2 at `root/unified`.
    Hybrid,
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// Where it is mounted (e.g. /sys/fs/cgroup/cpu).
    pub mount: PathBuf,
    /// The controllers on it: `["cpu"]`, `["cpu", "cpuacct"]`, `["name=systemd"]`; on cgroup2 the
    /// controllers its root offers (`cgroup.controllers`).
    pub controllers: Vec<String>,
    /// This process's own cgroup on it, relative to the mount (`/` when unknown): relative
    /// cgroupsPaths are placed under it, as runc does.
    pub own: String,
}

impl Hierarchy {
    /// Whether `controller` is on this hierarchy.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The directory of `cgroup_path` on this hierarchy: absolute paths from the mount, relative
    /// ones under this process's own cgroup. `..` never climbs above the mount.
    pub fn dir_of(&self, cgroup_path: &str) -> PathBuf {
        let mut parts: Vec<&str> = Vec::new();
        let joined;
        let full = if cgroup_path.starts_with('/') {
            cgroup_path
        } else {
            joined = format!("{}/{}", self.own, cgroup_path);
            joined.as_str()
        };
        for c in full.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c),
            }
        }
        let mut p = self.mount.clone();
        for c in parts {
            p.push(c);
        }
        p
    }
}

/// The hierarchies under a cgroup root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// v1, v2 or hybrid.
    pub mode: Mode,
    /// The root (normally /sys/fs/cgroup).
    pub root: PathBuf,
    /// The v1 hierarchies (none in pure v2).
    pub v1: Vec<Hierarchy>,
    /// The cgroup2 hierarchy: the root itself in v2, `root/unified` in hybrid.
    pub unified: Option<Hierarchy>,
}

fn statfs_magic(path: &Path) -> Result<Option<i64>, LayoutError> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| LayoutError::Statfs {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path, `st` a valid out pointer for this call.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(LayoutError::Statfs {
            path: path.to_path_buf(),
            source: e,
        });
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(Some(st.f_type as i64))
}

#[allow(clippy::unnecessary_cast)] // c_long on x86_64, c_uint on some targets
const CGROUP2_MAGIC: i64 = libc::CGROUP2_SUPER_MAGIC as i64;

/// One cgroup mount from mountinfo.
struct MountEntry {
    /// The mount's root inside its hierarchy (field 4): a cgroup namespace or bind mount shows
    /// a subpath here, and /proc/self/cgroup paths are relative to the hierarchy root.
    root: String,
    mount_point: PathBuf,
    v2: bool,
    controllers: Vec<String>,
}

/// The cgroup mounts of mountinfo text (core's parser: escapes undone, controllers split).
fn parse_mountinfo(content: &str) -> Vec<MountEntry> {
    carve_core::mountinfo::parse(content)
        .into_iter()
        .filter(|m| m.is_cgroup_v1() || m.is_cgroup_v2())
        .map(|m| MountEntry {
            controllers: m.cgroup_controllers(),
            v2: m.is_cgroup_v2(),
            root: m.root,
            mount_point: m.mount_point,
        })
        .collect()
}

/// Own cgroup paths from /proc/self/cgroup: `(controllers of the line, path)`; v2's line has none.
fn parse_proc_cgroup(content: &str) -> Vec<(Vec<String>, String)> {
    content
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            let c = if ctrls.is_empty() {
                Vec::new()
            } else {
                ctrls.split(',').map(str::to_string).collect()
            };
            Some((c, path.to_string()))
        })
        .collect()
}

/// The own path relative to the mount: strip the mount's root from the /proc/self/cgroup path.
fn relative_own(path: &str, mount_root: &str) -> String {
    if mount_root == "/" {
        return path.to_string();
    }
    match path.strip_prefix(mount_root) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => "/".to_string(),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

impl Layout {
    /// Finds the hierarchies under `root` (normally /sys/fs/cgroup).
    pub fn detect(root: &Path) -> Result<Layout, LayoutError> {
        // "/sys/fs/cgroup/" and "/sys/fs/cgroup" are the same root.
        let root: PathBuf = root.components().collect();
        let root = root.as_path();
        let root_magic = statfs_magic(root)?;
        if root_magic == Some(CGROUP2_MAGIC) {
            let mounts = read_mountinfo();
            let own = read_proc_cgroup();
            let unified = v2_hierarchy(root, &mounts, &own)?;
            return Ok(Layout {
                mode: Mode::V2,
                root: root.to_path_buf(),
                v1: Vec::new(),
                unified: Some(unified),
            });
        }
        let mounts = read_mountinfo();
        let own = read_proc_cgroup();
        let mut v1: Vec<Hierarchy> = mounts
            .iter()
            .filter(|m| !m.v2 && m.mount_point.parent() == Some(root))
            .map(|m| Hierarchy {
                mount: m.mount_point.clone(),
                controllers: m.controllers.clone(),
                own: own
                    .iter()
                    .find(|(c, _)| same_set(c, &m.controllers))
                    .map(|(_, p)| relative_own(p, &m.root))
                    .unwrap_or_else(|| "/".to_string()),
            })
            .collect();
        let unified_dir = root.join("unified");
        let mut unified = None;
        if statfs_magic(&unified_dir)? == Some(CGROUP2_MAGIC) {
            unified = Some(v2_hierarchy(&unified_dir, &mounts, &own)?);
        }
        if v1.is_empty() && unified.is_none() {
            // Not a mounted cgroupfs: a directory laid out like one (tests).
            return Self::from_dir(root);
        }
        v1.sort_by(|a, b| a.mount.cmp(&b.mount));
        let mode = if unified.is_some() {
            Mode::Hybrid
        } else {
            Mode::V1
        };
        Ok(Layout {
            mode,
            root: root.to_path_buf(),
            v1,
            unified,
        })
    }

    /// Reads a layout from a directory shaped like cgroupfs (no statfs, no mountinfo): own
    /// cgroups are all `/`.
    pub fn from_dir(root: &Path) -> Result<Layout, LayoutError> {
        let dir_controllers = |d: &Path| -> Result<Vec<String>, LayoutError> {
            Ok(crate::fs::read(d, "cgroup.controllers")?
                .split_whitespace()
                .map(str::to_string)
                .collect())
        };
        if root.join("cgroup.controllers").exists() {
            return Ok(Layout {
                mode: Mode::V2,
                root: root.to_path_buf(),
                v1: Vec::new(),
                unified: Some(Hierarchy {
                    mount: root.to_path_buf(),
                    controllers: dir_controllers(root)?,
                    own: "/".into(),
                }),
            });
        }
        let mut v1 = Vec::new();
        let mut unified = None;
        let entries = std::fs::read_dir(root).map_err(|source| crate::fs::FsError::Read {
            path: root.to_path_buf(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "unified" && p.join("cgroup.controllers").exists() {
                unified = Some(Hierarchy {
                    controllers: dir_controllers(&p)?,
                    mount: p,
                    own: "/".into(),
                });
            } else if p.join("cgroup.procs").exists() {
                let controllers = name
                    .split(',')
                    .map(|c| {
                        if c == "systemd" {
                            "name=systemd".to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                v1.push(Hierarchy {
                    mount: p,
                    controllers,
                    own: "/".into(),
                });
            }
        }
        if v1.is_empty() {
            return Err(LayoutError::NoHierarchy(root.to_path_buf()));
        }
        v1.sort_by(|a, b| a.mount.cmp(&b.mount));
        Ok(Layout {
            mode: if unified.is_some() {
                Mode::Hybrid
            } else {
                Mode::V1
            },
            root: root.to_path_buf(),
            v1,
            unified,
        })
    }

    /// The v1 hierarchy holding `controller`.
    pub fn v1_with(&self, controller: &str) -> Option<&Hierarchy> {
        self.v1.iter().find(|h| h.has(controller))
    }
}

fn read_mountinfo() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| parse_mountinfo(&s))
        .unwrap_or_default()
}

fn read_proc_cgroup() -> Vec<(Vec<String>, String)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .map(|s| parse_proc_cgroup(&s))
        .unwrap_or_default()
}

fn v2_hierarchy(
    dir: &Path,
    mounts: &[MountEntry],
    own: &[(Vec<String>, String)],
) -> Result<Hierarchy, LayoutError> {
    let controllers = crate::fs::read(dir, "cgroup.controllers")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mount_root = mounts
        .iter()
        .find(|m| m.v2 && m.mount_point == dir)
        .map(|m| m.root.as_str())
        .unwrap_or("/");
    let own = own
        .iter()
        .find(|(c, _)| c.is_empty())
        .map(|(_, p)| relative_own(p, mount_root))
        .unwrap_or_else(|| "/".to_string());
    Ok(Hierarchy {
        mount: dir.to_path_buf(),
        controllers,
        own,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 /inner /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
35 22 0:31 / /mnt/a\\040b rw - ext4 /dev/sda rw
";

    #[test]
    fn mountinfo_controllers_and_roots() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert!(m[0].v2);
        assert_eq!(m[1].controllers, vec!["name=systemd"]);
        assert_eq!(m[2].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(
            m[2].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(m[3].root, "/inner");
    }

    #[test]
    fn own_paths_are_relative_to_mount_root() {
        let own = parse_proc_cgroup("4:memory:/inner/x\n1:cpu,cpuacct:/\n0::/user.slice\n");
        assert_eq!(own[0], (vec!["memory".to_string()], "/inner/x".to_string()));
        assert_eq!(own[2].0.len(), 0);
        assert_eq!(relative_own("/inner/x", "/inner"), "/x");
        assert_eq!(relative_own("/inner", "/inner"), "/");
        assert_eq!(relative_own("/other", "/inner"), "/");
    }

    #[test]
    fn dir_of_absolute_relative_and_dotdot() {
        let h = Hierarchy {
            mount: "/sys/fs/cgroup/memory".into(),
            controllers: vec!["memory".into()],
            own: "/process_api/abc".into(),
        };
        assert_eq!(
            h.dir_of("/carve/x"),
            PathBuf::from("/sys/fs/cgroup/memory/carve/x")
        );
        assert_eq!(
            h.dir_of("carve/x"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/carve/x")
        );
        assert_eq!(
            h.dir_of("/../../etc"),
            PathBuf::from("/sys/fs/cgroup/memory/etc")
        );
    }

    #[test]
    fn layout_from_fake_dirs() {
        let d = tempfile::tempdir().unwrap();
        for c in ["cpu", "memory", "systemd"] {
            std::fs::create_dir(d.path().join(c)).unwrap();
            std::fs::write(d.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        std::fs::create_dir(d.path().join("unified")).unwrap();
        std::fs::write(d.path().join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        let l = Layout::detect(d.path()).unwrap();
        assert_eq!(l.mode, Mode::Hybrid);
        assert_eq!(l.v1.len(), 3);
        assert!(l.v1_with("name=systemd").is_some());
        assert_eq!(l.unified.unwrap().controllers, vec!["hugetlb"]);

        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let l = Layout::detect(v2.path()).unwrap();
        assert_eq!(l.mode, Mode::V2);
        assert!(l.unified.unwrap().has("pids"));

        let empty = tempfile::tempdir().unwrap();
        assert!(Layout::detect(empty.path()).is_err());
    }
}
