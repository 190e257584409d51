//! Thin wrappers over the Linux system calls the runtime needs and libc/nix do not wrap: clone3,
//! pidfds, openat2, mount_setattr, the new mount API, close_range, capset and seccomp.
//!
//! Every wrapper returns `io::Result` with the raw errno; callers add what failed.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a -1 return into the thread's errno.
fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A path as a C string (paths never hold NUL bytes once validated; a NUL gives EINVAL).
pub fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What `clone3` returned.
pub enum Forked {
    /// In the parent: the child's pid and a pidfd for it.
    Parent(libc::pid_t, OwnedFd),
    /// In the child.
    Child,
}

/// `clone3(flags | CLONE_PIDFD)` without a new stack (fork semantics: the child continues here
/// on a copy-on-write copy of the caller's memory). The caller must be single-threaded.
pub fn clone3(flags: u64) -> io::Result<Forked> {
    clone3_into(flags, None)
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// [`clone3`], the child starting in the cgroup2 directory `cgroup` (an fd of it) when given
/// (`CLONE_INTO_CGROUP`: no migration afterwards).
pub fn clone3_into(flags: u64, cgroup: Option<RawFd>) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags
            | libc::CLONE_PIDFD as u64
            | if cgroup.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.unwrap_or(0) as u64,
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; with stack 0 the child runs on a
    // copy of our stack exactly like fork(2), and the caller is single-threaded.
    let r = check(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    if r == 0 {
        Ok(Forked::Child)
    } else {
        // SAFETY: the kernel stored a fresh pidfd that nobody else owns.
        Ok(Forked::Parent(r as libc::pid_t, unsafe {
            OwnedFd::from_raw_fd(pidfd)
        }))
    }
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a NULL siginfo means "as kill(2)".
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// Blocks until the process behind `pidfd` has exited (or `timeout_ms` passes; -1 = forever).
/// Returns whether it exited.
pub fn pidfd_wait_exit(pidfd: &OwnedFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

/// Waits for a child by pidfd and returns its exit status as a shell would (128+signal).
pub fn pidfd_wait_child(pidfd: &OwnedFd) -> io::Result<i32> {
    loop {
        // SAFETY: zeroed siginfo is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: P_PIDFD with a valid pidfd and a valid siginfo pointer.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled a SIGCHLD siginfo.
        let (code, status) = unsafe { (info.si_code, info.si_status()) };
        return Ok(if code == libc::CLD_EXITED {
            status
        } else {
            128 + status
        });
    }
}

/// `openat2(dirfd, path, flags, mode, resolve)`.
pub fn openat2(
    dirfd: RawFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: valid C string and open_how of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match check(r) {
            // SAFETY: a fresh fd that nobody else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `openat(dirfd, path, flags)` with O_CLOEXEC.
pub fn openat(dirfd: RawFd, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(path)?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount_setattr attribute bits.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// No setuid.
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// No device files.
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
/// No execution.
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// Access time mask and values.
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
/// relatime.
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
/// noatime.
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
/// strictatime.
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
/// nodiratime.
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
/// nosymfollow.
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}

/// `mount_setattr(dirfd, path, flags, {set, clr})`, recursive when `recursive`.
pub fn mount_setattr(
    dirfd: RawFd,
    path: &CStr,
    recursive: bool,
    set: u64,
    clr: u64,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: valid C string and mount_attr of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(())
}

/// `close_range(first, u32::MAX, CLOSE_RANGE_CLOEXEC)`: every fd from `first` on is closed at the
/// next exec (and stays usable until then).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })?;
    Ok(())
}

/// Sets the effective, permitted and inheritable capability sets at once (capset v3).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let d = [
        Data {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        Data {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: a v3 header and two data structs, as capset(2) expects.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) })?;
    Ok(())
}

/// Whether the calling thread has `cap` in its effective set.
pub fn has_effective_cap(cap: u32) -> bool {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|m| m & (1u64 << cap) != 0)
}

/// Installs a classic BPF seccomp filter with `flags`; returns the listener fd when
/// SECCOMP_FILTER_FLAG_NEW_LISTENER was asked for.
pub fn seccomp_set_filter(prog: &[libc::sock_filter], flags: u64) -> io::Result<Option<OwnedFd>> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `prog`, which outlives the call; the kernel copies it.
    let r = check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    })?;
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER the return value is a fresh fd.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
    } else {
        Ok(None)
    }
}

/// `setns(fd, nstype)`.
pub fn setns(fd: RawFd, nstype: i32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    if unsafe { libc::setns(fd, nstype) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `unshare(flags)`.
pub fn unshare(flags: i32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    if unsafe { libc::unshare(flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount(2)` with optional source, fstype and data.
pub fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let target = cstr(target)?;
    let fstype = fstype
        .map(|s| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL)))
        .transpose()?;
    let data = data
        .filter(|d| !d.is_empty())
        .map(|s| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL)))
        .transpose()?;
    // SAFETY: every pointer is a valid C string or NULL.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `umount2(target, flags)`.
pub fn umount2(target: &Path, flags: i32) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(t.as_ptr(), flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The path through which an fd is named in /proc (for mount targets pinned by fd).
pub fn fd_path(fd: &impl AsRawFd) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Process start time (field 22 of /proc/PID/stat) and whether it is a zombie or dead; None when
/// the process does not exist.
pub fn proc_start_time(pid: libc::pid_t) -> Option<(u64, bool)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?;
    let start = f.nth(18)?.parse().ok()?;
    Ok::<_, ()>((start, state == "Z" || state == "X")).ok()
}

/// Unblocks every signal (in a freshly forked child: the runtime may have blocked the signals it
/// forwards, and a blocked mask survives execve into the container process).
pub fn unblock_all_signals() {
    // SAFETY: an empty set built locally; sigprocmask with valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_nul_are_refused() {
        assert!(cstr(Path::new("/ok")).is_ok());
        let bad = std::ffi::OsStr::from_bytes(b"/a\0b");
        assert!(cstr(Path::new(bad)).is_err());
    }

    #[test]
    fn a_pidfd_sees_the_exit_of_a_killed_process() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let fd = pidfd_open(child.id() as i32).expect("pidfd");
        let (start, zombie) = proc_start_time(child.id() as i32).expect("start time");
        assert!(start > 0 && !zombie);
        assert!(!pidfd_wait_exit(&fd, 0).expect("poll"), "still running");
        pidfd_send_signal(&fd, libc::SIGKILL).expect("kill");
        assert!(pidfd_wait_exit(&fd, 5000).expect("poll"), "exited");
        let _ = child.wait();
    }
}
