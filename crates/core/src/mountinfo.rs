//! /proc/PID/mountinfo, parsed once for every crate (proc(5)):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
//! ```
//!
//! The kernel escapes space, tab, newline and backslash in paths as `\040`, `\011`, `\012` and
//! `\134`; [`unescape`] turns them back, so a mount point with a space compares equal to the
//! path a caller holds. Reading only: nothing here changes the host.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Field 3, `MAJ:MIN` of the filesystem: the same hierarchy bind-mounted twice shares it.
    pub device: String,
    /// Field 4, the mount's root inside its filesystem (a bind mount or a cgroup namespace
    /// shows a subpath here), unescaped.
    pub root: String,
    /// Field 5, the mount point, unescaped.
    pub mount_point: PathBuf,
    /// The filesystem type ("cgroup2", "ext4").
    pub fstype: String,
    /// The source ("/dev/sda1", "cgroup"), unescaped.
    pub source: String,
    /// Per-superblock options ("rw,cpu,cpuacct" for a v1 cgroup hierarchy).
    pub super_options: String,
}

/// Generic mount options a v1 cgroup mount shows beside its controllers.
const V1_MOUNT_OPTIONS: [&str; 12] = [
    "rw",
    "ro",
    "relatime",
    "noatime",
    "nosuid",
    "nodev",
    "noexec",
    "clone_children",
    "noprefix",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
];

impl Mount {
    /// A cgroup v1 hierarchy (`cgroup`)?
    pub fn is_cgroup_v1(&self) -> bool {
        self.fstype == "cgroup"
    }

    /// A cgroup v2 hierarchy (`cgroup2`)?
    pub fn is_cgroup_v2(&self) -> bool {
        self.fstype == "cgroup2"
    }

    /// The controllers (and `name=` options) of a v1 cgroup mount, in the order mounted:
    /// `["cpu", "cpuacct"]`, `["name=systemd"]`. Empty for any other mount (cgroup2 lists its
    /// controllers in `cgroup.controllers`, not in its options).
    pub fn cgroup_controllers(&self) -> Vec<String> {
        if !self.is_cgroup_v1() {
            return Vec::new();
        }
        self.super_options
            .split(',')
            .filter(|o| {
                !o.is_empty() && !V1_MOUNT_OPTIONS.contains(o) && !o.starts_with("release_agent=")
            })
            .map(str::to_string)
            .collect()
    }
}

/// Every well-formed line of mountinfo text; malformed lines are skipped (the kernel writes
/// none, and a fixture's stray line should not hide the rest).
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// One mountinfo line, or `None` when it lacks the ` - ` separator or a field.
pub fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let (_id, _parent) = (l.next()?, l.next()?);
    let device = l.next()?;
    let root = l.next()?;
    let mount_point = l.next()?;
    let mut r = right.split(' ');
    let fstype = r.next().filter(|f| !f.is_empty())?;
    Some(Mount {
        device: device.to_string(),
        root: unescape(root),
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype: fstype.to_string(),
        source: unescape(r.next().unwrap_or("")),
        super_options: r.next().unwrap_or("").to_string(),
    })
}

/// The mounts of this process: `PROC/self/mountinfo`, empty when it cannot be read (a fake
/// /proc without it has no mounts).
pub fn read(proc: &Path) -> Vec<Mount> {
    std::fs::read_to_string(proc.join("self/mountinfo"))
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash; any `\ooo` in general). A backslash not followed by three octal digits stays.
pub fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits.iter().fold(0u32, |a, d| a * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 /inner /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory,release_agent=/x
35 22 0:31 / /mnt/a\\040b rw - ext4 /dev/sda rw
not a mountinfo line
";

    #[test]
    fn fields_and_cgroup_controllers() {
        let m = parse(HYBRID);
        assert_eq!(m.len(), 6, "the malformed line is skipped");
        assert!(m[1].is_cgroup_v2() && m[1].cgroup_controllers().is_empty());
        assert_eq!(m[2].cgroup_controllers(), ["name=systemd"]);
        assert_eq!(m[3].cgroup_controllers(), ["cpu", "cpuacct"]);
        assert_eq!(m[3].mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[4].root, "/inner");
        assert_eq!(m[4].device, "0:30");
        assert_eq!(m[4].cgroup_controllers(), ["memory"]);
        assert_eq!(m[5].mount_point, Path::new("/mnt/a b"));
        assert_eq!(m[5].source, "/dev/sda");
        assert!(m[0].cgroup_controllers().is_empty(), "tmpfs has none");
    }

    #[test]
    fn octal_escapes_come_back() {
        assert_eq!(unescape(r"a\040b"), "a b");
        assert_eq!(unescape(r"tab\011x"), "tab\tx");
        assert_eq!(unescape(r"nl\012x"), "nl\nx");
        assert_eq!(unescape(r"back\134slash"), r"back\slash");
        assert_eq!(unescape(r"\040\040"), "  ");
        // Not an escape: left as written.
        assert_eq!(unescape(r"a\04"), r"a\04");
        assert_eq!(unescape(r"a\089"), r"a\089");
        assert_eq!(unescape(r"end\"), r"end\");
        assert_eq!(unescape("plain"), "plain");
        let line = r"40 22 0:50 /a\040dir /mnt/with\040space\011tab rw - ext4 /dev/x\134y rw";
        let m = parse_line(line).unwrap();
        assert_eq!(m.root, "/a dir");
        assert_eq!(m.mount_point, Path::new("/mnt/with space\ttab"));
        assert_eq!(m.source, r"/dev/x\y");
    }

    #[test]
    fn optional_fields_do_not_shift_the_tail() {
        let line = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue";
        let m = parse_line(line).unwrap();
        assert_eq!(m.mount_point, Path::new("/mnt2"));
        assert_eq!(m.fstype, "ext3");
        assert_eq!(m.super_options, "rw,errors=continue");
        assert!(parse_line("36 35 98:0 /mnt1 - ext3 x y").is_none());
    }
}
