//! Root filesystems for containers: a busybox rootfs (from busybox-static) and a Debian one
//! (debootstrap --variant=minbase).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's busybox-static package installs the static binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// Errors of the rootfs builders.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file operation under the rootfs failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The busybox binary is not a static executable (a dynamic one would not run in the rootfs).
    #[error("{} is not a statically linked busybox (install busybox-static)", .0.display())]
    NotStatic(PathBuf),
    /// A helper program failed.
    #[error("{program} failed: {detail}")]
    Program {
        /// The program (busybox, debootstrap).
        program: String,
        /// Exit status and the end of its error output.
        detail: String,
    },
    /// The target folder exists and is not empty.
    #[error("{} exists and is not empty; carve only builds into a new or empty folder", .0.display())]
    NotEmpty(PathBuf),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`busybox_rootfs`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyboxImage {
    /// The rootfs folder.
    pub dir: PathBuf,
    /// How many applet links were made.
    pub applets: usize,
}

/// The inittab written into busybox rootfs for system containers (`init = true`): busybox init
/// runs /etc/init.d/rcS once, keeps /etc/carve/service running when the image has one and a
/// shell on the console (`carve console`), and on SIGPWR/SIGTERM runs the shutdown line before
/// killing what is left.
pub const INITTAB: &str = "\
# carve: busybox init for a system container (stopped with SIGPWR, then SIGKILL).
::sysinit:/etc/init.d/rcS
::respawn:/etc/init.d/service
::respawn:-/bin/sh
::shutdown:/bin/echo carve-init: shutting down
::ctrlaltdel:/sbin/reboot
";

const RCS: &str = "#!/bin/sh
# carve: runs once at boot of a busybox system container.
[ -f /etc/hostname ] && hostname -F /etc/hostname
for s in /etc/init.d/S*; do [ -x \"$s\" ] && \"$s\" start; done
echo carve-init: up
";

const SERVICE: &str = "#!/bin/sh
# carve: the respawned service of a busybox system container. Put a command in
# /etc/carve/service to run it under init; without one, init just idles.
if [ -x /etc/carve/service ]; then exec /etc/carve/service; fi
exec sleep 2147483647
";

/// Builds a busybox rootfs into `dir` (created if missing; must be empty): the static `busybox`
/// binary as /bin/busybox, one symlink per applet from `busybox --list-full` (so /sbin/init is
/// busybox init), /etc/passwd, /etc/group, /etc/hostname, an inittab and rcS for system
/// containers, and the empty mount points a runtime expects (dev, proc, sys, tmp, run).
pub fn busybox_rootfs(dir: &Path, busybox: &Path) -> Result<BusyboxImage, ImageError> {
    check_static(busybox)?;
    prepare_empty_dir(dir)?;
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/init.d",
        "etc/carve",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
        "var/log",
        "var/run",
        "home",
    ] {
        let p = dir.join(d);
        std::fs::create_dir_all(&p).map_err(io("create", &p))?;
    }
    let tmp = dir.join("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
        .map_err(io("chmod", &tmp))?;
    let target = dir.join("bin/busybox");
    std::fs::copy(busybox, &target).map_err(io("copy busybox to", &target))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &target))?;

    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io("run", busybox))?;
    if !out.status.success() {
        return Err(ImageError::Program {
            program: format!("{} --list-full", busybox.display()),
            detail: format!("{}", out.status),
        });
    }
    let list = String::from_utf8_lossy(&out.stdout);
    let mut applets = 0;
    for rel in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // Only plain relative paths inside the rootfs; busybox never lists anything else.
        if rel.starts_with('/') || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            continue;
        }
        if rel == "bin/busybox" {
            continue;
        }
        let link = dir.join(rel);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        // Relative links so the rootfs also reads right from the host.
        let depth = rel.matches('/').count();
        let to = format!("{}bin/busybox", "../".repeat(depth));
        match symlink(&to, &link) {
            Ok(()) => applets += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("link", &link)(e)),
        }
    }
    // /sbin/init must be busybox init even for a busybox built without it in its list.
    let init = dir.join("sbin/init");
    if !init.exists() {
        symlink("../bin/busybox", &init).map_err(io("link", &init))?;
    }
    let files: [(&str, &str, u32); 8] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
        ("etc/hostname", "carve\n", 0o644),
        ("etc/hosts", "127.0.0.1 localhost\n", 0o644),
        ("etc/inittab", INITTAB, 0o644),
        ("etc/init.d/rcS", RCS, 0o755),
        ("etc/init.d/service", SERVICE, 0o755),
        ("etc/resolv.conf", "", 0o644),
    ];
    for (rel, content, mode) in files {
        let p = dir.join(rel);
        std::fs::write(&p, content).map_err(io("write", &p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &p))?;
    }
    Ok(BusyboxImage {
        dir: dir.to_path_buf(),
        applets,
    })
}

/// A static ELF has no PT_INTERP program header: look for one.
fn check_static(binary: &Path) -> Result<(), ImageError> {
    let data = std::fs::read(binary).map_err(io("read", binary))?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return Err(ImageError::NotStatic(binary.to_path_buf()));
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let phoff = u64_at(32);
    let phentsize = u16_at(54);
    let phnum = u16_at(56);
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > data.len() {
            return Err(ImageError::NotStatic(binary.to_path_buf()));
        }
        // PT_INTERP = 3: a dynamic executable names its loader.
        if u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) == 3 {
            return Err(ImageError::NotStatic(binary.to_path_buf()));
        }
    }
    Ok(())
}

fn prepare_empty_dir(dir: &Path) -> Result<(), ImageError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io("read", dir))?;
        if entries.next().is_some() {
            return Err(ImageError::NotEmpty(dir.to_path_buf()));
        }
    } else {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    Ok(())
}

/// The Debian mirror apt is configured with (first `deb` source that is not the security
/// archive), or deb.debian.org.
pub fn apt_mirror() -> String {
    let mut text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    text.push('\n');
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "list" || e == "sources") {
                text.push_str(&std::fs::read_to_string(p).unwrap_or_default());
                text.push('\n');
            }
        }
    }
    mirror_from_sources(&text).unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// Picks the Debian mirror from sources.list or deb822 text.
fn mirror_from_sources(text: &str) -> Option<String> {
    let good = |u: &str| u.contains("/debian") && !u.contains("security") && !u.contains("ports");
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("URIs:") {
            if let Some(u) = rest.split_whitespace().find(|u| good(u)) {
                return Some(u.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("deb ") {
            let u = rest
                .split_whitespace()
                .find(|w| !w.starts_with('['))
                .unwrap_or("");
            if good(u) {
                return Some(u.to_string());
            }
        }
    }
    None
}

/// Builds a Debian `suite` rootfs into `dir` with `debootstrap --variant=minbase` from `mirror`
/// (a full userland for system containers: /sbin/init is systemd when the caller adds it, else
/// none). Takes about 20 s and 200 MB here.
pub fn debian_rootfs(dir: &Path, suite: &str, mirror: &str) -> Result<(), ImageError> {
    prepare_empty_dir(dir)?;
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", suite])
        .arg(dir)
        .arg(mirror)
        .output()
        .map_err(io("run debootstrap for", dir))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(ImageError::Program {
            program: "debootstrap".into(),
            detail: format!(
                "{}: {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        });
    }
    let host = dir.join("etc/hostname");
    std::fs::write(&host, "carve\n").map_err(io("write", &host))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_is_read_from_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\n# c\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(
            mirror_from_sources(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let old = "deb http://security.debian.org/debian-security bookworm-security main\n\
                   deb [arch=amd64] http://ftp.de.debian.org/debian bookworm main\n";
        assert_eq!(
            mirror_from_sources(old).as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        assert_eq!(mirror_from_sources("deb https://example.org/x y z\n"), None);
    }

    #[test]
    fn busybox_rootfs_has_applets_init_and_passwd() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("rootfs");
        let img = busybox_rootfs(&dir, Path::new(DEFAULT_BUSYBOX)).unwrap();
        assert!(img.applets > 100, "only {} applets", img.applets);
        assert_eq!(
            std::fs::read_link(dir.join("sbin/init")).unwrap(),
            Path::new("../bin/busybox")
        );
        assert!(std::fs::canonicalize(dir.join("usr/bin/wget"))
            .unwrap()
            .ends_with("bin/busybox"));
        let passwd = std::fs::read_to_string(dir.join("etc/passwd")).unwrap();
        assert!(passwd.starts_with("root:x:0:0:"));
        // The shell in the rootfs really runs (static binary, links resolve).
        let out = Command::new(dir.join("bin/sh"))
            .args(["-c", "echo $((6*7))"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
        // A second build into the same folder is refused rather than mixed in.
        assert!(matches!(
            busybox_rootfs(&dir, Path::new(DEFAULT_BUSYBOX)),
            Err(ImageError::NotEmpty(_))
        ));
    }

    #[test]
    fn a_dynamic_binary_is_refused_as_busybox() {
        let t = tempfile::tempdir().unwrap();
        let err = busybox_rootfs(&t.path().join("r"), Path::new("/bin/ls")).unwrap_err();
        assert!(matches!(err, ImageError::NotStatic(_)), "{err}");
    }
}
