//! The `tmpcopyup` mount option (runtime-spec: "copy up the contents to a tmpfs", a MAY that runc
//! and crun implement and podman sends for its tmpfs mounts): what the image has at a tmpfs
//! mount's destination is copied into the fresh tmpfs, so mounting a tmpfs over, say, `/etc/ssl`
//! keeps its files.
//!
//! The image directory is opened before the tmpfs hides it; the copy reads through that fd. Modes,
//! owners and symlinks are kept; symlinks are never followed (both ends are reached through
//! `/proc/self/fd`, and the destination is a new, empty tmpfs).

use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Opens the directory that a tmpfs is about to hide (None when it is not a directory with
/// entries: nothing to copy).
pub fn open_lower(target: &OwnedFd) -> Option<OwnedFd> {
    let p = crate::sys::fd_path(target);
    let f = std::fs::File::open(&p).ok()?;
    if !f.metadata().ok()?.is_dir() {
        return None;
    }
    std::fs::read_dir(&p).ok()?.next()?.ok()?;
    Some(OwnedFd::from(f))
}

/// Copies everything under `lower` into `upper` (the new tmpfs's root). With `root_attrs` the
/// tmpfs root also takes the hidden directory's mode and owner (when the mount's options set
/// none of `mode=`, `uid=`, `gid=` themselves).
pub fn copy(lower: &OwnedFd, upper: &OwnedFd, root_attrs: bool) -> crate::step::StepResult<()> {
    let (from, to) = (crate::sys::fd_path(lower), crate::sys::fd_path(upper));
    if root_attrs {
        let md = std::fs::metadata(&from).map_err(crate::step::os("tmpcopyup"))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(crate::step::os("tmpcopyup: chmod"))?;
        std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()))
            .map_err(crate::step::os("tmpcopyup: chown"))?;
    }
    copy_tree(&from, &to).map_err(crate::step::os("tmpcopyup"))
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let md = std::fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            // Device nodes, fifos and sockets are not copied (runc copies regular content only).
            continue;
        }
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
        std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opath(p: &Path) -> OwnedFd {
        crate::sys::openat(libc::AT_FDCWD, p, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap()
    }

    #[test]
    fn the_hidden_directory_is_copied_with_modes_and_links() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        std::fs::write(lower.path().join("a"), "data").unwrap();
        std::fs::set_permissions(
            lower.path().join("a"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::create_dir(lower.path().join("d")).unwrap();
        std::fs::write(lower.path().join("d/b"), "").unwrap();
        std::os::unix::fs::symlink("/nonexistent-carve", lower.path().join("l")).unwrap();
        std::fs::set_permissions(lower.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let l = open_lower(&opath(lower.path())).expect("a directory with entries");
        copy(&l, &opath(upper.path()), true).expect("copied");
        let u = upper.path();
        assert_eq!(std::fs::read_to_string(u.join("a")).unwrap(), "data");
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&u.join("a")), 0o640);
        assert_eq!(
            mode(u),
            0o711,
            "root_attrs: the tmpfs root takes the hidden dir's mode"
        );
        assert!(u.join("d/b").is_file());
        assert_eq!(
            std::fs::read_link(u.join("l")).unwrap(),
            Path::new("/nonexistent-carve"),
            "links are copied, not followed"
        );
    }

    #[test]
    fn an_empty_directory_has_nothing_to_copy() {
        let empty = tempfile::tempdir().unwrap();
        assert!(open_lower(&opath(empty.path())).is_none());
    }
}
