//! Idmapped bind mounts (runtime-spec 1.2 `mounts[].uidMappings`/`gidMappings`, the `idmap` and
//! `ridmap` options).
//!
//! The runtime makes them on the host side, before init is cloned: `open_tree(OPEN_TREE_CLONE)`
//! detaches a copy of the source, and `mount_setattr(MOUNT_ATTR_IDMAP)` gives it the mapping of
//! a user namespace made for that purpose (a child cloned into a new user namespace, its maps
//! written from here, its `ns/user` opened, the child killed). Both steps need CAP_SYS_ADMIN over
//! the source filesystem's user namespace (the initial one for a disk filesystem), which init
//! inside the container's user namespace does not have; init inherits the detached mounts' fds
//! and only attaches them with `move_mount` (see `rootfs`). This is runc 1.2's split too.
//!
//! Mapping semantics are the kernel's: a file whose owner on disk is `containerID + k` shows up
//! through the mount as `hostID + k`, and a file created through it by `hostID + k` is stored as
//! `containerID + k`. So `{"containerID": 1000, "hostID": 100000, "size": 1}` lets the root of a
//! container mapped to host 100000 own files that are uid 1000 on disk.

use crate::sys::MountAttr;
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

const OPEN_TREE_CLONE: u32 = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// The mappings a mount asks for, or `None` when it is not idmapped. The `idmap`/`ridmap`
/// options without mappings of their own use the container's (runc 1.2); the second value says
/// whether the idmap applies to the whole tree (`ridmap`, or mappings on an `rbind`).
pub fn wanted(spec: &Spec, m: &Mount) -> Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>, bool)> {
    let opts = m.options().as_deref().unwrap_or(&[]);
    let has = |o: &str| opts.iter().any(|x| x == o);
    let explicit = m.uid_mappings().is_some() || m.gid_mappings().is_some();
    if !explicit && !has("idmap") && !has("ridmap") {
        return None;
    }
    let recursive = has("ridmap") || (has("rbind") && !has("idmap"));
    if explicit {
        return Some((
            m.uid_mappings().clone().unwrap_or_default(),
            m.gid_mappings().clone().unwrap_or_default(),
            recursive,
        ));
    }
    let linux = spec.linux().as_ref();
    Some((
        linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default(),
        linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default(),
        recursive,
    ))
}

/// Checks an idmapped mount's shape; the error's path is the field of the mount.
pub fn validate(spec: &Spec, m: &Mount, bind: bool) -> Result<(), crate::config::FieldError> {
    let Some((uids, gids, _)) = wanted(spec, m) else {
        return Ok(());
    };
    if !bind {
        return Err((
            "uidMappings",
            "idmapped mounts are bind mounts: add the \"bind\" or \"rbind\" option",
        )
            .into());
    }
    if uids.is_empty() || gids.is_empty() {
        let (f, what) = if uids.is_empty() {
            ("uidMappings", "uid")
        } else {
            ("gidMappings", "gid")
        };
        return Err((
            f,
            format!(
                "an idmapped mount needs both uid and gid mappings (no {what} mappings here or, \
                 for the idmap/ridmap options, in linux.{f})"
            ),
        )
            .into());
    }
    if uids.iter().chain(gids.iter()).any(|x| x.size() == 0) {
        return Err(("uidMappings", "a mapping of size 0").into());
    }
    Ok(())
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A user namespace with the given maps, as an fd of its `ns/user`.
fn userns_with(
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> crate::step::StepResult<OwnedFd> {
    // SAFETY: a raw clone without CLONE_VM is a fork; the child only makes syscalls (prctl,
    // pause, _exit), which is safe after forking this single-threaded runtime.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(crate::step::os(
            "cloning a user namespace for an idmapped mount",
        )(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: plain syscalls in the child; it waits to be killed and never returns.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            loop {
                libc::pause();
            }
        }
    }
    let pid = pid as i32;
    let result = (|| {
        let proc = format!("/proc/{pid}");
        std::fs::write(format!("{proc}/uid_map"), map_text(uids)).map_err(crate::step::os(
            format!("writing {proc}/uid_map for an idmapped mount"),
        ))?;
        std::fs::write(format!("{proc}/gid_map"), map_text(gids)).map_err(crate::step::os(
            format!("writing {proc}/gid_map for an idmapped mount"),
        ))?;
        let f = std::fs::File::open(format!("{proc}/ns/user"))
            .map_err(crate::step::os(format!("opening {proc}/ns/user")))?;
        Ok(OwnedFd::from(f))
    })();
    // SAFETY: our own child; kill and reap it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    result
}

/// A detached copy of `src` (the whole tree when `recursive`) carrying `userns`'s mapping.
fn idmapped_tree(
    src: &Path,
    userns: &OwnedFd,
    recursive: bool,
) -> crate::step::StepResult<OwnedFd> {
    let c = CString::new(src.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{}: NUL in path", src.display()))?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: valid C string; open_tree returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(crate::step::os(format!("open_tree {}", src.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh fd that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let mut at = libc::AT_EMPTY_PATH as u32;
    if recursive {
        at |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: valid fd, empty C string and a mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            at,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        let hint = match err.raw_os_error() {
            Some(libc::EINVAL) => {
                " (the filesystem may not support idmapped mounts, or a mapping is invalid)"
            }
            _ => "",
        };
        return Err(format!(
            "mount_setattr(MOUNT_ATTR_IDMAP) on {}: {err}{hint}",
            src.display()
        )
        .into());
    }
    Ok(tree)
}

/// The detached idmapped trees of every idmapped mount of `spec`, by mount index. One user
/// namespace is made per distinct mapping.
pub fn prepare(spec: &Spec, bundle: &Path) -> crate::step::StepResult<Vec<(usize, OwnedFd)>> {
    let mut out = Vec::new();
    let mut userns: Vec<(String, OwnedFd)> = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let Some((uids, gids, recursive)) = wanted(spec, m) else {
            continue;
        };
        let key = format!("{}|{}", map_text(&uids), map_text(&gids));
        let ns = match userns.iter().position(|(k, _)| *k == key) {
            Some(p) => p,
            None => {
                userns.push((key, userns_with(&uids, &gids)?));
                userns.len() - 1
            }
        };
        let src = m.source().clone().unwrap_or_default();
        let src = if src.is_relative() {
            bundle.join(src)
        } else {
            src
        };
        let tree = idmapped_tree(&src, &userns[ns].1, recursive)
            .map_err(|e| format!("mounts[{i}] ({}): {e}", m.destination().display()))?;
        out.push((i, tree));
    }
    Ok(out)
}

/// Attaches a detached tree from [`prepare`] at `target` (an O_PATH fd of the mount point).
pub fn attach(tree: RawFd, target: &OwnedFd) -> std::io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
    // SAFETY: valid fds and empty C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(j: &str) -> Spec {
        serde_json::from_str(j).unwrap()
    }

    #[test]
    fn explicit_mappings_and_options_select_idmapped_mounts() {
        let s = spec(
            r#"{"ociVersion":"1.2.0","linux":{
                "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],
                "gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]},
              "mounts":[
                {"destination":"/a","type":"bind","source":"/x","options":["bind"]},
                {"destination":"/b","type":"bind","source":"/x","options":["rbind"],
                 "uidMappings":[{"containerID":1000,"hostID":100000,"size":1}],
                 "gidMappings":[{"containerID":1000,"hostID":100000,"size":1}]},
                {"destination":"/c","type":"bind","source":"/x","options":["bind","ridmap"]},
                {"destination":"/d","type":"tmpfs","source":"t","options":["idmap"]}]}"#,
        );
        let m = s.mounts().as_ref().unwrap();
        assert!(wanted(&s, &m[0]).is_none());
        let (u, _, rec) = wanted(&s, &m[1]).unwrap();
        assert_eq!(
            (u[0].container_id(), u[0].host_id(), rec),
            (1000, 100000, true)
        );
        let (u, _, rec) = wanted(&s, &m[2]).unwrap();
        assert_eq!((u[0].host_id(), rec), (100000, true));
        assert!(validate(&s, &m[1], true).is_ok());
        assert!(validate(&s, &m[3], false).unwrap_err().msg.contains("bind"));
        assert_eq!(map_text(&u), "0 100000 65536\n");
    }

    #[test]
    fn idmap_option_without_any_mapping_is_refused() {
        let s = spec(
            r#"{"ociVersion":"1.2.0","mounts":[
                {"destination":"/a","type":"bind","source":"/x","options":["bind","idmap"]}]}"#,
        );
        let m = &s.mounts().as_ref().unwrap()[0];
        let crate::config::FieldError { path: f, msg } = validate(&s, m, true).unwrap_err();
        assert_eq!(f, "uidMappings");
        assert!(msg.contains("both uid and gid"), "{msg}");
    }
}
