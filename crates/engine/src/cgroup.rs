//! The cgroup hierarchies a partition's cgroup lives in, and the figures `carve ps` reads.

use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Its mount point.
    pub mount: PathBuf,
    /// v1 controllers (and `name=` options) on it; empty for cgroup2.
    pub controllers: Vec<String>,
    /// cgroup2?
    pub v2: bool,
}

/// Every cgroup hierarchy in `mountinfo` text (/proc/self/mountinfo), each mount point once.
pub fn hierarchies_from(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for m in carve_core::mountinfo::parse(mountinfo) {
        if !(m.is_cgroup_v1() || m.is_cgroup_v2()) || out.iter().any(|h| h.mount == m.mount_point) {
            continue;
        }
        out.push(Hierarchy {
            controllers: m.cgroup_controllers(),
            v2: m.is_cgroup_v2(),
            mount: m.mount_point,
        });
    }
    out
}

/// The host's cgroup hierarchies.
pub fn hierarchies() -> Vec<Hierarchy> {
    hierarchies_from(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The folder of cgroup `path` (e.g. `/carve-demo/web`) in hierarchy `h`.
pub fn dir_in(h: &Hierarchy, path: &str) -> PathBuf {
    h.mount.join(path.trim_start_matches('/'))
}

/// The folder of cgroup `path` on the hierarchy holding `controller` (v1), or on cgroup2.
pub fn controller_dir(hs: &[Hierarchy], controller: &str, path: &str) -> Option<PathBuf> {
    hs.iter()
        .find(|h| !h.v2 && h.controllers.iter().any(|c| c == controller))
        .or_else(|| hs.iter().find(|h| h.v2))
        .map(|h| dir_in(h, path))
}

/// Figures of one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU time used so far, in nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Memory in use, in bytes.
    pub memory: Option<u64>,
    /// Memory limit, in bytes (`None`: unlimited or unknown).
    pub memory_limit: Option<u64>,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Reads a cgroup's CPU time and memory from v1 cpuacct/memory, or cgroup2's cpu.stat/memory.
pub fn usage(hs: &[Hierarchy], path: &str) -> Usage {
    let mut u = Usage::default();
    if let Some(d) = controller_dir(hs, "cpuacct", path) {
        u.cpu_ns = read_u64(&d.join("cpuacct.usage")).or_else(|| {
            let stat = std::fs::read_to_string(d.join("cpu.stat")).ok()?;
            let us: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))?
                .trim()
                .parse()
                .ok()?;
            Some(us * 1000)
        });
    }
    if let Some(d) = controller_dir(hs, "memory", path) {
        u.memory = read_u64(&d.join("memory.usage_in_bytes"))
            .or_else(|| read_u64(&d.join("memory.current")));
        // v1 reports "no limit" as a huge page-aligned number; v2 as "max".
        u.memory_limit = read_u64(&d.join("memory.limit_in_bytes"))
            .or_else(|| read_u64(&d.join("memory.max")))
            .filter(|l| *l < (1u64 << 62));
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_mountinfo_gives_v1_controllers_and_the_v2_mount() {
        let hs = hierarchies_from(HYBRID);
        assert_eq!(hs.len(), 4);
        assert!(hs[0].v2);
        // xattr is a mount option, not a controller (core's one list of them).
        assert_eq!(hs[1].controllers, vec!["name=systemd"]);
        assert_eq!(
            controller_dir(&hs, "cpuacct", "/carve-p/web").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/carve-p/web")
        );
        assert_eq!(
            controller_dir(&hs, "hugetlb", "/x").unwrap(),
            Path::new("/sys/fs/cgroup/unified/x")
        );
    }

    #[test]
    fn usage_reads_v1_files_and_ignores_no_limit() {
        let t = tempfile::tempdir().unwrap();
        let hs = vec![
            Hierarchy {
                mount: t.path().join("cpuacct"),
                controllers: vec!["cpuacct".into()],
                v2: false,
            },
            Hierarchy {
                mount: t.path().join("memory"),
                controllers: vec!["memory".into()],
                v2: false,
            },
        ];
        let c = t.path().join("cpuacct/p/x");
        let m = t.path().join("memory/p/x");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(c.join("cpuacct.usage"), "1500\n").unwrap();
        std::fs::write(m.join("memory.usage_in_bytes"), "4096\n").unwrap();
        std::fs::write(m.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        let u = usage(&hs, "/p/x");
        assert_eq!(u.cpu_ns, Some(1500));
        assert_eq!(u.memory, Some(4096));
        assert_eq!(u.memory_limit, None);
        std::fs::write(m.join("memory.limit_in_bytes"), "268435456\n").unwrap();
        assert_eq!(usage(&hs, "/p/x").memory_limit, Some(256 << 20));
    }
}
