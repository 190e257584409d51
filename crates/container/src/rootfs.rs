//! The container's filesystem view, built inside its mount namespace: propagation, the rootfs bind,
//! every configured mount, devices, pivot_root (or MS_MOVE + chroot), then masked and read-only
//! paths and the read-only root.
//!
//! Every path inside the rootfs is resolved with `openat2(RESOLVE_IN_ROOT)` against an fd of the
//! rootfs, and mounts target the resulting fd through `/proc/self/fd/N`, so a symlink in the image
//! can never point a mount outside the rootfs.

use crate::sys::{self, cstr, fd_path, openat2};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::step::StepError;
/// Errors are plain strings naming the step and path: they travel to the runtime as messages.
pub use crate::step::StepResult as R;

fn e(step: &str, p: &Path, err: std::io::Error) -> StepError {
    crate::step::at(step, p)(err)
}

const RESOLVE_IN_ROOT: u64 = 0x10;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// Mount options split into what mount(2), mount_setattr and propagation each take.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Opts {
    /// MS_* flags set.
    pub flags: libc::c_ulong,
    /// MS_* flags explicitly cleared (rw, suid, dev, exec, ...).
    pub clear: libc::c_ulong,
    /// Propagation flags (MS_SHARED etc., with MS_REC when recursive).
    pub propagation: Vec<libc::c_ulong>,
    /// mount_setattr bits to set recursively (rro, rnosuid, ...).
    pub rec_set: u64,
    /// mount_setattr bits to clear recursively (rrw, ...).
    pub rec_clr: u64,
    /// `tmpcopyup`: copy what the image has at the destination into the new tmpfs.
    pub copyup: bool,
    /// Filesystem data (mode=755, size=..., ...).
    pub data: Vec<String>,
    /// bind or rbind.
    pub bind: bool,
    /// rbind.
    pub rbind: bool,
}

/// Parses OCI mount options.
pub fn parse_opts(opts: &[String]) -> Opts {
    let mut o = Opts::default();
    for s in opts {
        if let Some((set, clr)) = recursive_attr(s) {
            o.rec_set |= set;
            o.rec_clr |= clr;
            continue;
        }
        let (set, clr): (libc::c_ulong, libc::c_ulong) = match s.as_str() {
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "silent" => (libc::MS_SILENT, 0),
            "loud" => (0, libc::MS_SILENT),
            "lazytime" => (libc::MS_LAZYTIME, 0),
            "nolazytime" => (0, libc::MS_LAZYTIME),
            "bind" => {
                o.bind = true;
                (0, 0)
            }
            "rbind" => {
                o.bind = true;
                o.rbind = true;
                (0, 0)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let base = match s.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                let rec = if s.starts_with('r') { libc::MS_REC } else { 0 };
                o.propagation.push(base | rec);
                (0, 0)
            }
            "nosymfollow" => (MS_NOSYMFOLLOW, 0),
            "symfollow" => (0, MS_NOSYMFOLLOW),
            "iversion" => (libc::MS_I_VERSION, 0),
            "noiversion" => (0, libc::MS_I_VERSION),
            "tmpcopyup" => {
                o.copyup = true;
                (0, 0)
            }
            "idmap" | "ridmap" | "defaults" => (0, 0),
            other => {
                o.data.push(other.to_string());
                (0, 0)
            }
        };
        o.flags = (o.flags | set) & !clr;
        o.clear = (o.clear | clr) & !set;
    }
    o
}

/// The mount_setattr(AT_RECURSIVE) bits (set, clear) of a recursive option (`rro`, `rnosuid`,
/// ...), None for any other option. atime is one enum in mount_setattr: every `r*atime` option
/// clears the whole field and sets one mode; `ratime` and `rnostrictatime` fall back to the
/// kernel's default (relatime), `rnorelatime` to strictatime, as mount(8) reads them.
fn recursive_attr(o: &str) -> Option<(u64, u64)> {
    use sys::{
        MOUNT_ATTR_NODEV as NODEV, MOUNT_ATTR_NODIRATIME as NODIRATIME,
        MOUNT_ATTR_NOEXEC as NOEXEC, MOUNT_ATTR_NOSUID as NOSUID,
        MOUNT_ATTR_NOSYMFOLLOW as NOSYMFOLLOW, MOUNT_ATTR_RDONLY as RDONLY,
        MOUNT_ATTR__ATIME as ATIME,
    };
    Some(match o {
        "rro" => (RDONLY, 0),
        "rrw" => (0, RDONLY),
        "rnosuid" => (NOSUID, 0),
        "rsuid" => (0, NOSUID),
        "rnodev" => (NODEV, 0),
        "rdev" => (0, NODEV),
        "rnoexec" => (NOEXEC, 0),
        "rexec" => (0, NOEXEC),
        "rnosymfollow" => (NOSYMFOLLOW, 0),
        "rsymfollow" => (0, NOSYMFOLLOW),
        "rnodiratime" => (NODIRATIME, 0),
        "rdiratime" => (0, NODIRATIME),
        "rnoatime" => (sys::MOUNT_ATTR_NOATIME, ATIME),
        "rstrictatime" | "rnorelatime" => (sys::MOUNT_ATTR_STRICTATIME, ATIME),
        "rrelatime" | "ratime" | "rnostrictatime" => (sys::MOUNT_ATTR_RELATIME, ATIME),
        _ => return None,
    })
}

/// MS_NOSYMFOLLOW (Linux 5.10; not in the libc crate for every target).
const MS_NOSYMFOLLOW: libc::c_ulong = 256;
/// ST_NOSYMFOLLOW, statvfs's bit for it.
const ST_NOSYMFOLLOW: libc::c_ulong = 0x2000;

/// A path inside the container made relative (no leading `/`, no `..` escapes are possible since
/// resolution happens under RESOLVE_IN_ROOT anyway).
fn rel(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Opens `path` (relative to the rootfs fd) as O_PATH, resolved inside the root.
pub fn open_in_root(root: &OwnedFd, path: &Path) -> std::io::Result<OwnedFd> {
    let r = rel(path);
    let r = if r.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        r
    };
    openat2(
        root.as_raw_fd(),
        &r,
        libc::O_PATH,
        0,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Creates `path` inside the root (directories on the way; the last one a directory or an empty
/// file) without following symlinks out of the root, and returns an O_PATH fd of it.
pub fn mkdir_all_in_root(root: &OwnedFd, path: &Path, file: bool) -> R<OwnedFd> {
    let mut todo: Vec<OsString> = components(&rel(path));
    todo.reverse();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        let last = todo.is_empty();
        let parent = open_in_root(root, &cur).map_err(|er| e("open", &cur, er))?;
        let next = cur.join(&c);
        if open_in_root(root, &next).is_ok() {
            cur = next;
            continue;
        }
        let name = cstr(Path::new(&c)).map_err(|er| e("name", &next, er))?;
        // A dangling symlink: follow it by hand, inside the root.
        if let Some(target) = read_link_at(&parent, &name) {
            links += 1;
            if links > 40 {
                return Err(
                    format!("{}: too many levels of symbolic links", path.display()).into(),
                );
            }
            // Restart from the root with the link's target followed by what remained.
            todo = follow_link(&cur, &target, todo);
            cur = PathBuf::new();
            continue;
        }
        if last && file {
            // O_CREAT through openat2 keeps the resolution inside the root.
            openat2(
                root.as_raw_fd(),
                &next,
                libc::O_CREAT | libc::O_RDONLY,
                0o644,
                RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
            )
            .map_err(|er| e("create file", &next, er))?;
        } else {
            // SAFETY: valid dirfd and C string.
            let rc = unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) };
            if rc < 0 {
                let er = std::io::Error::last_os_error();
                if er.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e("mkdir", &next, er));
                }
            }
        }
        cur = next;
    }
    open_in_root(root, path).map_err(|er| e("open", path, er))
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .map(|c| c.as_os_str().to_os_string())
        .collect()
}

/// The target of the symlink `name` in `dir`, if it is one.
fn read_link_at(dir: &OwnedFd, name: &std::ffi::CStr) -> Option<PathBuf> {
    let mut buf = [0u8; 4096];
    // SAFETY: valid dirfd, C string and buffer of the given size.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    (n > 0).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&buf[..n as usize])))
}

/// The components still to walk (reversed, as a stack) after the symlink at `cur/…` whose
/// target is `target`: the target resolved lexically against the root (absolute) or `cur`
/// (relative), `..` never above the root, then what remained of `todo`.
fn follow_link(cur: &Path, target: &Path, mut todo: Vec<OsString>) -> Vec<OsString> {
    let mut stack: Vec<OsString> = if target.is_absolute() {
        Vec::new()
    } else {
        components(cur)
    };
    for tc in target.components() {
        match tc {
            Component::Normal(x) => stack.push(x.to_os_string()),
            Component::ParentDir => {
                stack.pop();
            }
            _ => {}
        }
    }
    let mut rest: Vec<OsString> = todo.drain(..).rev().collect();
    stack.append(&mut rest);
    stack.reverse();
    stack
}

/// Mount flags the kernel locks on a mount made in a less privileged namespace (nosuid, nodev,
/// noexec, ro, atime); a bind remount must repeat them.
fn locked_flags(p: &Path) -> libc::c_ulong {
    let Ok(c) = cstr(p) else { return 0 };
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and statvfs pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let f = st.f_flag;
    let mut out = 0;
    for (st_bit, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
        (ST_NOSYMFOLLOW, MS_NOSYMFOLLOW),
    ] {
        if f & st_bit != 0 {
            out |= ms;
        }
    }
    out
}

/// Remounts a bind mount at `target` with `flags` (plus what is locked on it).
fn bind_remount(target: &Path, flags: libc::c_ulong) -> std::io::Result<()> {
    let f = libc::MS_REMOUNT | libc::MS_BIND | flags | locked_flags(target);
    sys::mount(None, target, None, f, None).or_else(|er| {
        // Inside a user namespace a locked ro/atime combination can refuse; retry with only the
        // flags asked for plus the locked ones.
        if er.raw_os_error() == Some(libc::EPERM) {
            sys::mount(
                None,
                target,
                None,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | flags
                    | (locked_flags(target) & !libc::MS_RELATIME),
                None,
            )
        } else {
            Err(er)
        }
    })
}

/// What the rootfs setup needs to know about the container.
pub struct Ctx<'a> {
    /// The whole config.
    pub spec: &'a Spec,
    /// Bundle (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// Absolute rootfs.
    pub rootfs: &'a Path,
    /// Whether the container runs in a user namespace (devices are bound, not created).
    pub userns: bool,
    /// The container's cgroup directory per hierarchy mount point, for `cgroup` mounts.
    pub cgroups: Vec<(PathBuf, PathBuf)>,
    /// Detached idmapped trees by mount index (see `crate::idmap`).
    pub idmap: &'a [(usize, RawFd)],
}

/// Steps before pivot_root: propagation, rootfs bind, mounts, devices. Returns an fd of the
/// rootfs bind mount.
pub fn prepare(ctx: &Ctx) -> R<OwnedFd> {
    let linux = ctx.spec.linux().as_ref();
    let prop = linux
        .and_then(|l| l.rootfs_propagation().clone())
        .unwrap_or_default();
    let root_prop = match prop.as_str() {
        "private" | "rprivate" => libc::MS_PRIVATE,
        _ => libc::MS_SLAVE,
    };
    sys::mount(None, Path::new("/"), None, root_prop | libc::MS_REC, None)
        .map_err(|er| e("make / rslave", Path::new("/"), er))?;
    sys::mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|er| e("bind rootfs", ctx.rootfs, er))?;
    let root = sys::openat(
        libc::AT_FDCWD,
        ctx.rootfs,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(|er| e("open rootfs", ctx.rootfs, er))?;
    let mut dev_tmpfs = false;
    for (i, m) in ctx.spec.mounts().iter().flatten().enumerate() {
        let idmapped = ctx.idmap.iter().find(|(j, _)| *j == i).map(|(_, fd)| *fd);
        mount_one(ctx, &root, m, idmapped).map_err(|source| StepError::Mount {
            index: i,
            dest: m.destination().display().to_string(),
            source: Box::new(source),
        })?;
        if rel(m.destination()) == Path::new("dev") && m.typ().as_deref() != Some("bind") {
            dev_tmpfs = true;
        }
    }
    if dev_tmpfs {
        create_devices(ctx, &root)?;
    } else if let Some(devs) = linux.and_then(|l| l.devices().as_ref()) {
        for d in devs {
            create_device(ctx, &root, d)?;
        }
    }
    Ok(root)
}

/// One entry of `mounts`: a cgroup tree, a bind (idmapped or not) or a filesystem.
fn mount_one(ctx: &Ctx, root: &OwnedFd, m: &Mount, idmapped: Option<RawFd>) -> R<()> {
    let o = parse_opts(m.options().as_deref().unwrap_or(&[]));
    let ty = m.typ().clone().unwrap_or_default();
    if ty == "cgroup" || ty == "cgroup2" {
        return mount_cgroups(ctx, root, m, &o);
    }
    let bind = o.bind || ty == "bind";
    let src = m.source().clone().map(|s| {
        if bind && s.is_relative() {
            ctx.bundle.join(s)
        } else {
            s
        }
    });
    if bind {
        mount_bind(root, m.destination(), src.as_deref(), &o, idmapped)
    } else {
        mount_fs(root, m, &ty, &o)
    }
}

/// A bind mount of `src` (or the detached idmapped tree) on `dest`, remounted with the flags
/// asked for.
fn mount_bind(
    root: &OwnedFd,
    dest: &Path,
    src: Option<&Path>,
    o: &Opts,
    idmapped: Option<RawFd>,
) -> R<()> {
    let is_file = src
        .and_then(|s| std::fs::metadata(s).ok())
        .is_some_and(|md| !md.is_dir());
    if let Some(s) = src {
        if !s.exists() {
            return Err(format!("bind source {} does not exist", s.display()).into());
        }
    }
    let target = mkdir_all_in_root(root, dest, is_file)?;
    let mut f = libc::MS_BIND;
    if o.rbind {
        f |= libc::MS_REC;
    }
    match idmapped {
        Some(tree) => crate::idmap::attach(tree, &target)
            .map_err(|er| e("move_mount (idmapped)", dest, er))?,
        None => sys::mount(src, &fd_path(&target), None, f, None)
            .map_err(|er| e("bind", src.unwrap_or(Path::new("")), er))?,
    }
    let top = open_in_root(root, dest).map_err(|er| e("reopen", dest, er))?;
    let want = o.flags & !(libc::MS_REMOUNT);
    if want & BIND_REMOUNT_FLAGS != 0 {
        bind_remount(&fd_path(&top), want).map_err(|er| e("remount", dest, er))?;
    }
    finish(&top, dest, o)
}

/// The flags a bind mount gets only through a remount.
const BIND_REMOUNT_FLAGS: libc::c_ulong = libc::MS_RDONLY
    | libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME
    | MS_NOSYMFOLLOW;

/// A filesystem of type `ty` on the mount's destination (a tmpfs with `tmpcopyup` gets what
/// was below it).
fn mount_fs(root: &OwnedFd, m: &Mount, ty: &str, o: &Opts) -> R<()> {
    let dest = m.destination();
    let target = mkdir_all_in_root(root, dest, false)?;
    let tpath = fd_path(&target);
    let data = o.data.join(",");
    let src_s = m.source().clone().unwrap_or_else(|| PathBuf::from(ty));
    let lower = (o.copyup && ty == "tmpfs")
        .then(|| crate::copyup::open_lower(&target))
        .flatten();
    match sys::mount(Some(&src_s), &tpath, Some(ty), o.flags, Some(&data)) {
        Ok(()) => {}
        Err(er) if er.raw_os_error() == Some(libc::EPERM) && (ty == "sysfs" || ty == "mqueue") => {
            bind_host_instead(root, dest, &tpath, ty, o)?
        }
        Err(er) => return Err(e(&format!("mount {ty}"), dest, er)),
    }
    let top = open_in_root(root, dest).map_err(|er| e("reopen", dest, er))?;
    if let Some(l) = &lower {
        let own = ["mode=", "uid=", "gid="];
        let root_attrs = !o.data.iter().any(|d| own.iter().any(|p| d.starts_with(p)));
        crate::copyup::copy(l, &top, root_attrs)?;
    }
    finish(&top, dest, o)
}

/// sysfs or mqueue refused (EPERM): without its own network namespace inside a user namespace,
/// sysfs cannot be mounted, so the host's is bound instead (as runc does), read-only when
/// asked; likewise the host's /dev/mqueue.
fn bind_host_instead(root: &OwnedFd, dest: &Path, tpath: &Path, ty: &str, o: &Opts) -> R<()> {
    if ty == "sysfs" {
        sys::mount(
            Some(Path::new("/sys")),
            tpath,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|er| e("bind /sys", dest, er))?;
        let top = open_in_root(root, dest).map_err(|er| e("reopen", dest, er))?;
        bind_remount(&fd_path(&top), o.flags).map_err(|er| e("remount", dest, er))?;
    } else {
        sys::mount(
            Some(Path::new("/dev/mqueue")),
            tpath,
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(|er| e("bind /dev/mqueue", dest, er))?;
    }
    Ok(())
}

/// Propagation and recursive attributes of a mount just made.
fn finish(top: &OwnedFd, dest: &Path, o: &Opts) -> R<()> {
    let tp = fd_path(top);
    for p in &o.propagation {
        sys::mount(None, &tp, None, *p, None).map_err(|er| e("propagation", dest, er))?;
    }
    if o.rec_set != 0 || o.rec_clr != 0 {
        sys::mount_setattr(top.as_raw_fd(), c"", true, o.rec_set, o.rec_clr)
            .map_err(|er| e("mount_setattr (recursive attributes)", dest, er))?;
    }
    Ok(())
}

/// `cgroup` mounts: a tmpfs with one bind of this container's cgroup per hierarchy (v1 and the
/// unified one), which inside a cgroup namespace is exactly what a native mount would show.
fn mount_cgroups(ctx: &Ctx, root: &OwnedFd, m: &Mount, o: &Opts) -> R<()> {
    let dest = m.destination();
    let target = mkdir_all_in_root(root, dest, false)?;
    if ctx
        .cgroups
        .iter()
        .any(|(mp, _)| mp == Path::new("/sys/fs/cgroup"))
    {
        // Pure cgroup2 host: bind the container's cgroup directly.
        let (_, src) = &ctx.cgroups[0];
        sys::mount(
            Some(src),
            &fd_path(&target),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|er| e("bind cgroup", src, er))?;
        let top = open_in_root(root, dest).map_err(|er| e("reopen", dest, er))?;
        return bind_remount(&fd_path(&top), o.flags).map_err(|er| e("remount", dest, er));
    }
    sys::mount(
        Some(Path::new("tmpfs")),
        &fd_path(&target),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(|er| e("mount cgroup tmpfs", dest, er))?;
    for (mp, src) in &ctx.cgroups {
        let Some(name) = mp.file_name() else { continue };
        let sub = dest.join(name);
        let t = mkdir_all_in_root(root, &sub, false)?;
        sys::mount(
            Some(src),
            &fd_path(&t),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|er| e("bind cgroup", src, er))?;
        let top = open_in_root(root, &sub).map_err(|er| e("reopen", &sub, er))?;
        bind_remount(
            &fd_path(&top),
            o.flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        )
        .map_err(|er| e("remount", &sub, er))?;
    }
    if o.flags & libc::MS_RDONLY != 0 {
        let top = open_in_root(root, dest).map_err(|er| e("reopen", dest, er))?;
        sys::mount(
            None,
            &fd_path(&top),
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(|er| e("remount ro", dest, er))?;
    }
    Ok(())
}

/// (name, major, minor) of the devices every container gets.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn create_devices(ctx: &Ctx, root: &OwnedFd) -> R<()> {
    // SAFETY: umask has no failure mode.
    let old = unsafe { libc::umask(0) };
    let r = (|| {
        let configured: Vec<LinuxDevice> = ctx
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        for (name, maj, min) in DEFAULT_DEVICES {
            let path = PathBuf::from("/dev").join(name);
            if configured.iter().any(|d| d.path() == &path) {
                continue;
            }
            let d: LinuxDevice = serde_json::from_value(serde_json::json!({
                "path": path, "type": "c", "major": maj, "minor": min,
                "fileMode": 0o666, "uid": 0, "gid": 0
            }))
            .map_err(|er| er.to_string())?;
            create_device(ctx, root, &d)?;
        }
        for d in &configured {
            create_device(ctx, root, d)?;
        }
        let dev =
            open_in_root(root, Path::new("/dev")).map_err(|er| e("open", Path::new("/dev"), er))?;
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("core", "/proc/kcore"),
        ] {
            symlinkat(target, &dev, link)?;
        }
        if open_in_root(root, Path::new("/dev/pts/ptmx")).is_ok()
            && open_in_root(root, Path::new("/dev/ptmx")).is_err()
        {
            symlinkat("pts/ptmx", &dev, "ptmx")?;
        }
        Ok(())
    })();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    r
}

fn symlinkat(target: &str, dir: &OwnedFd, name: &str) -> R<()> {
    let t = cstr(Path::new(target))?;
    let n = cstr(Path::new(name))?;
    // An O_PATH dirfd works for *at() calls.
    // SAFETY: valid C strings and dirfd.
    if unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) } < 0 {
        let er = std::io::Error::last_os_error();
        if er.raw_os_error() != Some(libc::EEXIST) {
            return Err(e("symlink", Path::new(name), er));
        }
    }
    Ok(())
}

fn create_device(ctx: &Ctx, root: &OwnedFd, d: &LinuxDevice) -> R<()> {
    let path = d.path();
    let parent = path.parent().unwrap_or(Path::new("/dev"));
    let pfd = mkdir_all_in_root(root, parent, false)?;
    let name = path
        .file_name()
        .ok_or_else(|| format!("bad device path {}", path.display()))?;
    let cname = cstr(Path::new(name))?;
    if ctx.userns {
        // mknod is not allowed in a user namespace: bind the host's node onto an empty file.
        let t = mkdir_all_in_root(root, path, true)?;
        sys::mount(Some(path), &fd_path(&t), None, libc::MS_BIND, None)
            .map_err(|er| e("bind device", path, er))?;
        return Ok(());
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(format!("device {}: type 'a' cannot be created", path.display()).into())
        }
    };
    let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
    let dev = libc::makedev(d.major() as u32, d.minor() as u32);
    // SAFETY: valid dirfd and C string.
    let rc = unsafe { libc::mknodat(pfd.as_raw_fd(), cname.as_ptr(), kind | mode, dev) };
    if rc < 0 {
        let er = std::io::Error::last_os_error();
        if er.raw_os_error() != Some(libc::EEXIST) {
            return Err(e("mknod", path, er));
        }
        if let Some(have) = same_node(&pfd, &cname, kind, dev) {
            return Err(format!(
                "linux.devices: {} exists in the rootfs as {have}, not the device asked for",
                path.display()
            )
            .into());
        }
    }
    let uid = d.uid().unwrap_or(0);
    let gid = d.gid().unwrap_or(0);
    // SAFETY: valid dirfd and C string; AT_SYMLINK_NOFOLLOW keeps it on the node itself.
    unsafe {
        libc::fchownat(
            pfd.as_raw_fd(),
            cname.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
    Ok(())
}

/// Enters the root without a mount namespace of our own (runc's `chroot()` path): nothing is
/// mounted or moved in the runtime's namespace.
pub fn chroot_into(rootfs: &Path) -> R<()> {
    let c = cstr(rootfs)?;
    // SAFETY: valid C strings.
    unsafe {
        if libc::chdir(c.as_ptr()) < 0 {
            return Err(e("chdir", rootfs, std::io::Error::last_os_error()));
        }
        if libc::chroot(c".".as_ptr()) < 0 {
            return Err(e("chroot", rootfs, std::io::Error::last_os_error()));
        }
        if libc::chdir(c"/".as_ptr()) < 0 {
            return Err(e("chdir", Path::new("/"), std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// pivot_root into `rootfs` and detach the old root; with `no_pivot`, MS_MOVE + chroot (for
/// rootfs on ramfs, where pivot_root is impossible).
pub fn pivot(rootfs: &Path, no_pivot: bool) -> R<()> {
    let chdir = |p: &Path| -> R<()> {
        let c = cstr(p)?;
        // SAFETY: valid C string.
        if unsafe { libc::chdir(c.as_ptr()) } < 0 {
            return Err(e("chdir", p, std::io::Error::last_os_error()));
        }
        Ok(())
    };
    if no_pivot {
        chdir(rootfs)?;
        sys::mount(Some(rootfs), Path::new("/"), None, libc::MS_MOVE, None)
            .map_err(|er| e("move rootfs to /", rootfs, er))?;
        // SAFETY: valid C string.
        if unsafe { libc::chroot(c".".as_ptr()) } < 0 {
            return Err(e("chroot", rootfs, std::io::Error::last_os_error()));
        }
        return chdir(Path::new("/"));
    }
    let old = sys::openat(
        libc::AT_FDCWD,
        Path::new("/"),
        libc::O_DIRECTORY | libc::O_RDONLY,
        0,
    )
    .map_err(|er| e("open", Path::new("/"), er))?;
    chdir(rootfs)?;
    // SAFETY: valid C strings.
    if unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } < 0 {
        return Err(e("pivot_root", rootfs, std::io::Error::last_os_error()));
    }
    // SAFETY: valid fd.
    if unsafe { libc::fchdir(old.as_raw_fd()) } < 0 {
        return Err(e(
            "fchdir old root",
            rootfs,
            std::io::Error::last_os_error(),
        ));
    }
    // The old root is now stacked under "."; make it rslave so detaching it does not propagate.
    sys::mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(|er| e("make old root rslave", Path::new("."), er))?;
    sys::umount2(Path::new("."), libc::MNT_DETACH)
        .map_err(|er| e("detach old root", Path::new("."), er))?;
    drop(old);
    chdir(Path::new("/"))
}

/// Steps after pivot_root: sysctls are written by the caller; here masked paths, readonly paths,
/// the read-only root and the rootfs propagation.
pub fn finalize(spec: &Spec) -> R<()> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask(Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new(p);
        if std::fs::symlink_metadata(path).is_err() {
            continue;
        }
        sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)
            .map_err(|er| e("bind readonly path", path, er))?;
        bind_remount(path, libc::MS_RDONLY).map_err(|er| e("remount readonly path", path, er))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        bind_remount(Path::new("/"), libc::MS_RDONLY)
            .map_err(|er| e("remount root read-only", Path::new("/"), er))?;
    }
    if let Some(p) = linux.and_then(|l| l.rootfs_propagation().clone()) {
        let f = match p.as_str() {
            "shared" | "rshared" => libc::MS_SHARED,
            "slave" | "rslave" => libc::MS_SLAVE,
            "private" | "rprivate" => libc::MS_PRIVATE,
            "unbindable" | "runbindable" => libc::MS_UNBINDABLE,
            _ => 0,
        };
        if f != 0 {
            sys::mount(None, Path::new("/"), None, f | libc::MS_REC, None)
                .map_err(|er| e("rootfs propagation", Path::new("/"), er))?;
        }
    }
    Ok(())
}

fn mask(path: &Path) -> R<()> {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if md.is_dir() {
        sys::mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            libc::MS_RDONLY,
            Some("size=0"),
        )
        .map_err(|er| e("mask directory", path, er))
    } else {
        sys::mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(|er| e("mask file", path, er))
    }
}

/// `/dev/console` for a container with a terminal: the pty slave (now our stdin) bind-mounted
/// over it, as the runtime-spec's default devices ask and runc does.
pub fn bind_console() -> R<()> {
    let console = Path::new("/dev/console");
    // Whatever an image has there already (a device node) is bound over, never opened.
    if std::fs::symlink_metadata(console).is_err() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(console)
            .map_err(|er| e("create", console, er))?;
    }
    sys::mount(
        Some(Path::new("/proc/self/fd/0")),
        console,
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(|er| e("bind the pty", console, er))
}

/// Whether `name` in `dir` is already the node asked for (runtime-spec: a file at a device's path
/// that does not match it is an error). Err describes what is there instead.
fn same_node(
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    kind: libc::mode_t,
    dev: libc::dev_t,
) -> Option<String> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dirfd, C string and stat pointer.
    if unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } < 0
    {
        return Some(std::io::Error::last_os_error().to_string());
    }
    let fmt = st.st_mode & libc::S_IFMT;
    if fmt == kind && (kind == libc::S_IFIFO || st.st_rdev == dev) {
        return None;
    }
    Some(match fmt {
        libc::S_IFCHR | libc::S_IFBLK => format!(
            "device {}:{}",
            libc::major(st.st_rdev),
            libc::minor(st.st_rdev)
        ),
        libc::S_IFREG => "a regular file".into(),
        libc::S_IFDIR => "a directory".into(),
        libc::S_IFLNK => "a symlink".into(),
        _ => format!("file type {fmt:o}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_data_propagation_and_recursive_attrs() {
        let o = parse_opts(
            &[
                "rbind", "ro", "nosuid", "rslave", "rro", "mode=755", "size=1k", "rw",
            ]
            .map(String::from),
        );
        assert!(o.bind && o.rbind);
        assert_eq!(o.flags & libc::MS_RDONLY, 0, "later rw wins");
        assert_ne!(o.flags & libc::MS_NOSUID, 0);
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.rec_set, sys::MOUNT_ATTR_RDONLY);
        assert_eq!(o.data, vec!["mode=755", "size=1k"]);
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn links_are_followed_lexically_inside_the_root() {
        // todo is a stack: "d" is walked next, then "e".
        let todo = os(&["e", "d"]);
        assert_eq!(
            follow_link(Path::new("a/b"), Path::new("../c"), todo.clone()),
            os(&["e", "d", "c", "a"])
        );
        assert_eq!(
            follow_link(Path::new("a/b"), Path::new("/x/y"), todo.clone()),
            os(&["e", "d", "y", "x"])
        );
        // `..` never climbs above the root.
        assert_eq!(
            follow_link(Path::new("a"), Path::new("../../../etc"), Vec::new()),
            os(&["etc"])
        );
    }

    fn root_of(dir: &Path) -> OwnedFd {
        sys::openat(libc::AT_FDCWD, dir, libc::O_PATH | libc::O_DIRECTORY, 0).expect("root")
    }

    #[test]
    fn mkdir_all_in_root_keeps_dangling_links_inside_the_root() {
        let top = tempfile::tempdir().expect("tempdir");
        let rootfs = top.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        let outside = top.path().join("outside");
        // An absolute link and a relative one climbing out: both resolve inside the rootfs.
        std::os::unix::fs::symlink(&outside, rootfs.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../outside2", rootfs.join("rel")).unwrap();
        let root = root_of(&rootfs);
        mkdir_all_in_root(&root, Path::new("/abs/sub"), false).expect("abs");
        mkdir_all_in_root(&root, Path::new("/rel/f"), true).expect("rel");
        assert!(!outside.exists() && !top.path().join("outside2").exists());
        assert!(rootfs.join(rel(&outside)).join("sub").is_dir());
        assert!(rootfs.join("outside2/f").is_file());
    }

    #[test]
    fn mkdir_all_in_root_makes_files_and_refuses_link_loops() {
        let top = tempfile::tempdir().expect("tempdir");
        let root = root_of(top.path());
        mkdir_all_in_root(&root, Path::new("/a/b/file"), true).expect("file");
        assert!(top.path().join("a/b/file").is_file());
        mkdir_all_in_root(&root, Path::new("/a/b/file"), true).expect("again: nothing to do");
        std::os::unix::fs::symlink("l2", top.path().join("l1")).unwrap();
        std::os::unix::fs::symlink("l1", top.path().join("l2")).unwrap();
        let e = mkdir_all_in_root(&root, Path::new("/l1/x"), false).expect_err("loop");
        assert_eq!(e.to_string(), "/l1/x: too many levels of symbolic links");
    }

    #[test]
    fn a_failed_mount_names_its_index_and_destination() {
        let inner = crate::step::at("mount proc", Path::new("/proc"))(
            std::io::Error::from_raw_os_error(libc::EPERM),
        );
        let e = StepError::Mount {
            index: 2,
            dest: "/proc".into(),
            source: Box::new(inner),
        };
        assert_eq!(
            e.to_string(),
            "mounts[2] (/proc): mount proc /proc: Operation not permitted (os error 1)"
        );
    }

    #[test]
    fn paths_are_made_relative() {
        assert_eq!(rel(Path::new("/a/../b/./c")), PathBuf::from("a/b/c"));
    }
}
