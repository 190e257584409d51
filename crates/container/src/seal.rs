//! CVE-2019-5736 class: a container must never be able to open the runtime's binary for writing
//! through `/proc/PID/exe` of a runtime process that entered it (or through `#!/proc/self/exe`).
//!
//! Commands that put a process into a container (create, run, exec) first re-execute the runtime
//! from a read-only view of its own binary: a detached, read-only bind mount of the file
//! (`open_tree(OPEN_TREE_CLONE)` + `mount_setattr(MOUNT_ATTR_RDONLY)`). `/proc/self/exe` of
//! every runtime process that ever sits in a container then names a file on a mount that no
//! namespace can reach or remount, and any open for writing fails with EROFS — even after the
//! runtime exits (the reopen-an-O_PATH-fd trick). It costs three syscalls and no copy. Where
//! open_tree is refused (no CAP_SYS_ADMIN), a write-sealed memfd copy is used instead.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const F_SEAL_SEAL: i32 = 0x1;
const F_SEAL_SHRINK: i32 = 0x2;
const F_SEAL_GROW: i32 = 0x4;
const F_SEAL_WRITE: i32 = 0x8;
const MFD_EXEC: u32 = 0x10;

/// Whether `fd` is a write-sealed memfd.
fn is_sealed(fd: &OwnedFd) -> bool {
    // SAFETY: fcntl on a valid fd.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & F_SEAL_WRITE != 0
}

/// Whether this process already runs from a binary that cannot be written: a sealed memfd, or a
/// file on a read-only mount.
pub fn running_sealed() -> bool {
    let Ok(f) = crate::sys::openat(
        libc::AT_FDCWD,
        std::path::Path::new("/proc/self/exe"),
        libc::O_RDONLY,
        0,
    ) else {
        return false;
    };
    if is_sealed(&f) {
        return true;
    }
    // SAFETY: zeroed statvfs is a valid out-parameter; fstatvfs on a valid fd.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::fstatvfs(f.as_raw_fd(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
}

/// The running binary opened through a detached read-only bind mount of it.
pub fn readonly_view() -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: u32 = 1;
    // SAFETY: valid C string; returns a fresh fd of a detached mount.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nobody else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    crate::sys::mount_setattr(
        tree.as_raw_fd(),
        c"",
        false,
        crate::sys::MOUNT_ATTR_RDONLY
            | crate::sys::MOUNT_ATTR_NOSUID
            | crate::sys::MOUNT_ATTR_NODEV,
        0,
    )?;
    crate::sys::openat(
        libc::AT_FDCWD,
        &crate::sys::fd_path(&tree),
        libc::O_RDONLY,
        0,
    )
}

/// A sealed memfd copy of the running binary.
pub fn sealed_copy() -> io::Result<OwnedFd> {
    let exe = crate::sys::openat(
        libc::AT_FDCWD,
        std::path::Path::new("/proc/self/exe"),
        libc::O_RDONLY,
        0,
    )?;
    // SAFETY: valid C string; flags are plain bits.
    let mut fd = unsafe {
        libc::memfd_create(
            c"carve-oci".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | MFD_EXEC,
        )
    };
    if fd < 0 {
        // Kernels before 6.3 do not know MFD_EXEC.
        // SAFETY: as above.
        fd = unsafe {
            libc::memfd_create(
                c"carve-oci".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nobody else owns.
    let mfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::fs::File::from(crate::hooks::dup(&exe)?)
        .metadata()?
        .len() as usize;
    let mut done = 0usize;
    while done < len {
        // SAFETY: sendfile between two valid fds; NULL offset uses the file position.
        let n = unsafe {
            libc::sendfile(
                mfd.as_raw_fd(),
                exe.as_raw_fd(),
                std::ptr::null_mut(),
                len - done,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    // SAFETY: fcntl on a valid fd.
    let r = unsafe {
        libc::fcntl(
            mfd.as_raw_fd(),
            libc::F_ADD_SEALS,
            F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(mfd)
}

/// Re-executes this process from a sealed copy unless it already runs from one. Returns only on
/// failure.
pub fn ensure_sealed() -> io::Result<()> {
    if running_sealed() {
        return Ok(());
    }
    let fd = readonly_view().or_else(|_| sealed_copy())?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
        .collect::<Result<_, _>>()
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: NULL-terminated argv of live C strings; environ is the process environment; the fd
    // is a sealed executable memfd. execveat only returns on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            environ,
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}
