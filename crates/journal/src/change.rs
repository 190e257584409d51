//! One recorded host change and how to undo it.

use crate::ProcessId;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Deletes a network link or namespace recorded as [`Change::Link`] or [`Change::Netns`]. The
/// journal speaks no netlink itself; `carve_net::journal_undo` is the implementation.
pub type LinkUndo = fn(&Change) -> Result<(), ChangeError>;

/// Why one change could not be undone.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The file, directory or mount call failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A link or namespace change, but no netlink undo was given to the journal.
    #[error("no netlink undo was given to the journal")]
    NoLinkUndo,
    /// The process survived SIGKILL.
    #[error("process {0} did not exit after SIGKILL")]
    Unkillable(i32),
    /// The recorded affinity is not a CPU list.
    #[error(transparent)]
    CpuList(#[from] carve_core::cpuset::CpuSetError),
    /// The recorded affinity names a CPU `cpu_set_t` cannot hold.
    #[error(
        "affinity {list:?}: CPU {cpu} is beyond CPU_SETSIZE ({})",
        libc::CPU_SETSIZE
    )]
    BeyondSetSize {
        /// The recorded list.
        list: String,
        /// The first CPU beyond the set.
        cpu: usize,
    },
    /// The change is not one the link undo handles.
    #[error("{0}: not a network change")]
    NotNetwork(Box<Change>),
    /// The link undo failed (its own error, e.g. a netlink error).
    #[error(transparent)]
    Link(Box<dyn std::error::Error + Send + Sync>),
}

/// One change to the host, as recorded before it was made.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A file's content was replaced; undo writes `old` back.
    File {
        /// The host file (sysctl, IRQ affinity, cgroup knob...).
        path: PathBuf,
        /// Its content before the change, without the trailing newline.
        old: String,
    },
    /// Undo writes `value` into `path` (moving a task back into its old cgroup, say).
    WriteBack {
        /// The file written on undo.
        path: PathBuf,
        /// The value written on undo.
        value: String,
    },
    /// A directory (a cgroup) was created; undo removes it.
    Dir {
        /// The directory.
        path: PathBuf,
    },
    /// A file or socket was created; undo removes it.
    CreatedFile {
        /// The file.
        path: PathBuf,
    },
    /// Something was mounted; undo detaches it.
    Mount {
        /// The mount point.
        target: PathBuf,
    },
    /// A process was started; undo kills it (SIGTERM, then SIGKILL after `grace_ms`) if it is
    /// still the same process.
    Process {
        /// The process.
        id: ProcessId,
        /// How long SIGTERM is given before SIGKILL.
        grace_ms: u64,
    },
    /// A task's CPU affinity was changed; undo sets `old` (a CPU list) back if it still runs.
    Affinity {
        /// The task (a thread id is a pid here).
        id: ProcessId,
        /// Its old allowed-CPU list, as in /proc/PID/status Cpus_allowed_list.
        old: String,
    },
    /// A network link was created; undo deletes it.
    Link {
        /// The link's name.
        name: String,
        /// The named network namespace it lives in, if not the host's.
        netns: Option<String>,
    },
    /// A named network namespace (/run/netns/NAME) was created; undo deletes it.
    Netns {
        /// Its name.
        name: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::File { path, old } => write!(f, "restore {} to {old:?}", path.display()),
            Change::WriteBack { path, value } => write!(f, "write {value:?} to {}", path.display()),
            Change::Dir { path } => write!(f, "remove directory {}", path.display()),
            Change::CreatedFile { path } => write!(f, "remove file {}", path.display()),
            Change::Mount { target } => write!(f, "unmount {}", target.display()),
            Change::Process { id, .. } => write!(f, "stop process {}", id.pid),
            Change::Affinity { id, old } => write!(f, "set task {} affinity to {old}", id.pid),
            Change::Link { name, netns } => match netns {
                Some(ns) => write!(f, "delete link {name} in netns {ns}"),
                None => write!(f, "delete link {name}"),
            },
            Change::Netns { name } => write!(f, "delete netns {name}"),
        }
    }
}

fn ignore_missing(r: std::io::Result<()>) -> Result<(), ChangeError> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => Ok(r?),
    }
}

impl Change {
    /// Undoes this change. Changes that are already gone (a removed directory, a dead process)
    /// count as undone.
    pub fn undo(&self, link_undo: Option<LinkUndo>) -> Result<(), ChangeError> {
        match self {
            Change::File { path, old } => ignore_missing(std::fs::write(path, format!("{old}\n"))),
            Change::WriteBack { path, value } => ignore_missing(std::fs::write(path, value)),
            Change::Dir { path } => remove_dir_patiently(path),
            Change::CreatedFile { path } => ignore_missing(std::fs::remove_file(path)),
            Change::Mount { target } => unmount(target),
            Change::Process { id, grace_ms } => stop_process(*id, Duration::from_millis(*grace_ms)),
            Change::Affinity { id, old } => restore_affinity(*id, old),
            Change::Link { .. } | Change::Netns { .. } => match link_undo {
                Some(f) => f(self),
                None => Err(ChangeError::NoLinkUndo),
            },
        }
    }
}

/// A cgroup directory stays busy for a moment after its last task is killed: retry briefly.
fn remove_dir_patiently(path: &std::path::Path) -> Result<(), ChangeError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn unmount(target: &std::path::Path) -> Result<(), ChangeError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(target.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: c is a valid NUL-terminated path; umount2 does not keep the pointer.
    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // Not a mount point (any more) or already gone: nothing to undo.
        Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
        _ => Err(e.into()),
    }
}

fn stop_process(id: ProcessId, grace: Duration) -> Result<(), ChangeError> {
    if !id.is_alive() {
        return Ok(());
    }
    // A pidfd pins the identity: signals through it can't reach a recycled pid.
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, id.pid, 0) } as i32;
    if fd < 0 {
        return Ok(()); // gone between the check and the open
    }
    if !id.is_alive() {
        // SAFETY: fd was returned by pidfd_open above and is closed once.
        unsafe { libc::close(fd) };
        return Ok(());
    }
    let send = |sig: i32| {
        // SAFETY: fd is a valid pidfd; a null siginfo means "as kill(2)".
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                sig,
                std::ptr::null::<u8>(),
                0,
            )
        };
    };
    let wait = |d: Duration| {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: p is a valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut p, 1, d.as_millis().min(i32::MAX as u128) as i32) > 0 }
    };
    let mut done = false;
    if !grace.is_zero() {
        send(libc::SIGTERM);
        done = wait(grace);
    }
    if !done {
        send(libc::SIGKILL);
        done = wait(Duration::from_secs(5));
    }
    // SAFETY: fd was returned by pidfd_open above and is closed once.
    unsafe { libc::close(fd) };
    if done {
        Ok(())
    } else {
        Err(ChangeError::Unkillable(id.pid))
    }
}

fn restore_affinity(id: ProcessId, old: &str) -> Result<(), ChangeError> {
    if !id.is_alive() {
        return Ok(());
    }
    let cpus = parse_cpu_list(old)?;
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus {
        // SAFETY: CPU_SET writes inside set for c < CPU_SETSIZE, checked by parse_cpu_list.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: set is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(id.pid, std::mem::size_of_val(&set), &set) };
    if r == 0 || !id.is_alive() {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().into())
    }
}

/// The CPUs of an affinity list (core's list grammar), each below `CPU_SETSIZE` so `CPU_SET` stays
/// inside its set.
fn parse_cpu_list(s: &str) -> Result<Vec<usize>, ChangeError> {
    Ok(
        carve_core::CpuSet::parse_list_below(s, libc::CPU_SETSIZE as usize)?
            .iter()
            .collect(),
    )
}

#[cfg(test)]
pub(crate) fn tests_parse(s: &str) -> Result<Vec<usize>, ChangeError> {
    parse_cpu_list(s)
}
