//! Named network namespaces, as `ip netns` makes them: a namespace is kept alive by a bind mount
//! of its nsfs file on `/run/netns/NAME`, and `/run/netns` is a shared mount so the name is seen
//! (and removed) in every mount namespace that inherited it.
//!
//! Work inside a namespace always happens on a dedicated thread ([`in_netns`]): `setns` changes
//! only the calling thread, so the caller's namespace never changes.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where named network namespaces live (the iproute2 convention).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Errors of named network namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A name that cannot be a file name under /run/netns.
    #[error("invalid network namespace name {0:?}")]
    InvalidName(String),
    /// The namespace already exists.
    #[error("network namespace {0} already exists")]
    Exists(String),
    /// The namespace does not exist.
    #[error("network namespace {0} does not exist")]
    NotFound(String),
    /// A system call on the namespace failed.
    #[error("network namespace {name}: could not {action}: {source}")]
    Io {
        /// The namespace.
        name: String,
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

fn io_err<'a>(
    name: &'a str,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io {
        name: name.to_string(),
        action,
        source,
    }
}

fn check_name(name: &str) -> Result<(), NetnsError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.len() > 255
    {
        return Err(NetnsError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// The path of a named namespace: `/run/netns/NAME`.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Whether a named namespace exists (its file is there).
pub fn netns_exists(name: &str) -> bool {
    check_name(name).is_ok() && netns_path(name).exists()
}

/// Opens a named namespace's file; the fd is what `setns`, a veth peer's `IFLA_NET_NS_FD` and
/// [`crate::link::Netlink::move_to_netns`] take.
pub fn open_netns(name: &str) -> Result<File, NetnsError> {
    check_name(name)?;
    File::open(netns_path(name)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NetnsError::NotFound(name.to_string())
        } else {
            NetnsError::Io {
                name: name.to_string(),
                action: "open",
                source: e,
            }
        }
    })
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths built here have no NUL")
}

fn mount(src: &Path, target: &Path, fstype: &str, flags: libc::c_ulong) -> std::io::Result<()> {
    let (s, t) = (cstr(src), cstr(target));
    let f = CString::new(fstype).expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings for the call; data is null.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, std::ptr::null()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes /run/netns exist and be a shared mount (bind-mounted onto itself first when it is not a
/// mount point), as iproute2 does, so namespaces mounted there propagate to other mount
/// namespaces (containers started later see them, and their removal).
fn prepare_run_dir(name: &str) -> Result<(), NetnsError> {
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir).map_err(io_err(name, "create /run/netns"))?;
    let none = Path::new("none");
    match mount(none, dir, "none", libc::MS_SHARED | libc::MS_REC) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then make it shared. Two creators
            // racing here would stack two bind mounts (hiding a namespace file made in between),
            // so the check and the bind happen under an flock on /run.
            let run = File::open("/run").map_err(io_err(name, "open /run"))?;
            // SAFETY: run is an open fd; flock has no memory effects. Released on close.
            if unsafe { libc::flock(run.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(io_err(name, "lock /run")(std::io::Error::last_os_error()));
            }
            if mount(none, dir, "none", libc::MS_SHARED | libc::MS_REC).is_ok() {
                return Ok(()); // another creator finished first
            }
            match mount(dir, dir, "none", libc::MS_BIND | libc::MS_REC) {
                Ok(()) => {}
                // Another creator raced us and mounted it already: that is fine.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(io_err(name, "bind-mount /run/netns")(e)),
            }
            mount(none, dir, "none", libc::MS_SHARED | libc::MS_REC)
                .map_err(io_err(name, "make /run/netns shared"))
        }
        Err(e) => Err(io_err(name, "make /run/netns shared")(e)),
    }
}

/// Creates a named network namespace (like `ip netns add NAME`): a new, empty network namespace
/// with only a (down) loopback, kept alive by a bind mount on `/run/netns/NAME`.
///
/// Record `carve_journal::Change::Netns { name }` before calling this so that undo removes it.
pub fn create_netns(name: &str) -> Result<(), NetnsError> {
    check_name(name)?;
    prepare_run_dir(name)?;
    let path = netns_path(name);
    let c = cstr(&path);
    // SAFETY: c is a valid path; O_CREAT|O_EXCL makes a new empty file or fails.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o000,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(NetnsError::Exists(name.to_string()));
        }
        return Err(io_err(name, "create its file")(e));
    }
    // SAFETY: fd was just opened and is closed once.
    unsafe { libc::close(fd) };

    // unshare() on a throwaway thread: the new namespace becomes that thread's only, and the bind
    // mount of its nsfs file keeps it alive after the thread exits.
    let p = path.clone();
    let made = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: unshare has no memory effects; it changes only this thread's netns.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        mount(
            Path::new("/proc/thread-self/ns/net"),
            &p,
            "none",
            libc::MS_BIND,
        )
    })
    .join()
    .expect("netns thread does not panic");
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(io_err(name, "create and mount")(e));
    }
    Ok(())
}

/// Deletes a named network namespace (like `ip netns delete NAME`): detaches its mount and
/// removes its file. The namespace itself dies when its last user (process, open fd) is gone.
/// A namespace that does not exist is [`NetnsError::NotFound`].
pub fn delete_netns(name: &str) -> Result<(), NetnsError> {
    check_name(name)?;
    let path = netns_path(name);
    if !path.exists() {
        return Err(NetnsError::NotFound(name.to_string()));
    }
    let c = cstr(&path);
    // SAFETY: c is a valid path for the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = std::io::Error::last_os_error();
        // EINVAL: not mounted (a half-made namespace); remove the file anyway.
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(io_err(name, "unmount")(e));
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(name, "remove its file")(e)),
    }
}

/// Like [`in_netns`] for a namespace given by its nsfs path: `/proc/PID/ns/net` of a container's
/// process, or any bind mount of one.
pub fn in_netns_path<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let what = path.display().to_string();
    let ns = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NetnsError::NotFound(what.clone())
        } else {
            io_err(&what, "open")(e)
        }
    })?;
    run_in(&ns, &what, f)
}

/// Runs `f` on a new thread that has joined the named network namespace, and returns its result.
/// The caller's thread never changes namespace. Sockets (netlink among them) and tap devices
/// opened by `f` belong to that namespace and keep working after `f` returns. Processes spawned
/// by `f` start in that namespace. A panic in `f` is resumed in the caller.
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let ns = open_netns(name)?;
    run_in(&ns, name, f)
}

fn run_in<T, F>(ns: &File, name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        let h = s.spawn(|| -> Result<T, NetnsError> {
            // SAFETY: ns is an open nsfs fd; setns changes only this thread.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io_err(name, "enter (setns)")(
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// A named network namespace that is deleted when dropped (for tests and short-lived setups).
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    /// Creates the namespace.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        create_netns(name)?;
        Ok(NetnsGuard {
            name: name.to_string(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = delete_netns(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", ".", "..", "a/b", "x\0y"] {
            assert!(matches!(check_name(bad), Err(NetnsError::InvalidName(_))));
        }
        assert!(check_name("carve-t-x-1-2").is_ok());
        assert_eq!(netns_path("n1"), PathBuf::from("/run/netns/n1"));
    }

    #[test]
    fn missing_netns_is_not_found() {
        assert!(matches!(
            open_netns("carve-surely-missing-netns"),
            Err(NetnsError::NotFound(_))
        ));
        assert!(matches!(
            delete_netns("carve-surely-missing-netns"),
            Err(NetnsError::NotFound(_))
        ));
    }
}
