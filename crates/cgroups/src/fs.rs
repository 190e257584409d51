//! Reading and writing cgroupfs files: one write syscall per value, errors that name file and value.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A cgroupfs file operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// writing {value:?} to {path}: {source}
    #[error("writing {value:?} to {}: {}", path.display(), errno_text(source))]
    Write {
        /// The file written.
        path: PathBuf,
        /// The value that was refused.
        value: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// reading {path}: {source}
    #[error("reading {}: {}", path.display(), errno_text(source))]
    Read {
        /// The file read.
        path: PathBuf,
        /// The kernel's answer.
        source: io::Error,
    },
    /// parsing {path}: unexpected {value:?}
    #[error("parsing {}: unexpected {value:?}", path.display())]
    Parse {
        /// The file whose content did not parse.
        path: PathBuf,
        /// The content (or the part) that did not parse.
        value: String,
    },
    /// creating directory {path}: {source}
    #[error("creating cgroup {}: {}", path.display(), errno_text(source))]
    Mkdir {
        /// The cgroup directory.
        path: PathBuf,
        /// The kernel's answer.
        source: io::Error,
    },
    /// removing directory {path}: {source}
    #[error("removing cgroup {}: {}", path.display(), errno_text(source))]
    Rmdir {
        /// The cgroup directory.
        path: PathBuf,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The cgroup stayed populated (rmdir EBUSY) until the deadline.
    #[error("removing cgroup {}: still in use after {waited_ms} ms (tasks {pids:?})", path.display())]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
        /// How long the removal waited.
        waited_ms: u64,
        /// The processes still listed in it.
        pids: Vec<i32>,
    },
}

/// "Invalid argument" rather than "Invalid argument (os error 22)": the path already says where.
fn errno_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl FsError {
    /// The OS error number, if the failure was a syscall error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FsError::Write { source, .. }
            | FsError::Read { source, .. }
            | FsError::Mkdir { source, .. }
            | FsError::Rmdir { source, .. } => source.raw_os_error(),
            FsError::Parse { .. } => None,
            FsError::Busy { .. } => Some(libc::EBUSY),
        }
    }
}

/// Writes `value` to `dir/file` with a single write(2) (cgroupfs takes one value per write).
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), FsError> {
    let path = dir.join(file);
    write_path(&path, value)
}

/// Writes `value` to `path` with a single write(2).
pub fn write_path(path: &Path, value: &str) -> Result<(), FsError> {
    let r = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    r.map_err(|source| FsError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Reads `dir/file` whole.
pub fn read(dir: &Path, file: &str) -> Result<String, FsError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|source| FsError::Read { path, source })
}

/// Reads `dir/file`, or `None` if the file does not exist (a controller or feature not present).
pub fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, FsError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FsError::Read { path, source }),
    }
}

/// Reads a single unsigned number ("max" reads as `u64::MAX`), or `None` if the file is absent.
pub fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>, FsError> {
    match read_opt(dir, file)? {
        None => Ok(None),
        Some(s) => parse_u64(&dir.join(file), s.trim()).map(Some),
    }
}

/// Parses a number or "max".
pub fn parse_u64(path: &Path, s: &str) -> Result<u64, FsError> {
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse().map_err(|_| FsError::Parse {
        path: path.to_path_buf(),
        value: s.to_string(),
    })
}

/// Parses "key value" lines (cpu.stat, memory.stat, memory.events ...) into pairs.
pub fn flat_keyed(content: &str) -> impl Iterator<Item = (&str, u64)> {
    content.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        let k = it.next()?;
        let v = it.next()?;
        let v = if v == "max" {
            u64::MAX
        } else {
            v.parse().ok()?
        };
        Some((k, v))
    })
}

/// Creates `dir` and any missing parents, returning the directories it made, outermost first.
pub fn mkdir_all(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut made = Vec::new();
    mkdir_rec(dir, &mut made)?;
    Ok(made)
}

fn mkdir_rec(dir: &Path, made: &mut Vec<PathBuf>) -> Result<(), FsError> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            made.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                mkdir_rec(parent, made)?;
            }
            match std::fs::create_dir(dir) {
                Ok(()) => {
                    made.push(dir.to_path_buf());
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(source) => Err(FsError::Mkdir {
                    path: dir.to_path_buf(),
                    source,
                }),
            }
        }
        Err(source) => Err(FsError::Mkdir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Removes one cgroup directory. Gone already is fine.
///
/// EBUSY means tasks are still linked to the cgroup (the kernel refuses while it is populated):
/// after a SIGKILL they are exiting. Instead of retrying blindly, this waits for exactly that
/// condition to end ([`wait_released`]) and retries, until `deadline`; then the error names the
/// directory and the tasks still in it.
pub fn rmdir(dir: &Path, deadline: std::time::Instant) -> Result<(), FsError> {
    let start = std::time::Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if std::time::Instant::now() >= deadline {
                    return Err(FsError::Busy {
                        path: dir.to_path_buf(),
                        waited_ms: start.elapsed().as_millis() as u64,
                        pids: procs(dir).unwrap_or_default(),
                    });
                }
                wait_released(dir, deadline);
            }
            Err(source) => {
                return Err(FsError::Rmdir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Waits (at most until `deadline`) until the tasks linked to the cgroup `dir` are gone — the
/// condition that makes rmdir EBUSY.
///
/// - cgroup2 (`cgroup.events` present): until it reads `populated 0`, woken by inotify (the
///   kernel notifies a change of that file). The kernel rate-limits those notifications to one
///   per 10 ms per file (a container created and killed within 10 ms gets its "populated 0"
///   late), so the file is also re-read every millisecond.
/// - cgroup1 (no populated notification): until the processes listed in `cgroup.procs` have
///   exited, each waited for through a pidfd. A task leaves its cgroups in the kernel's
///   `cgroup_exit()`, before its pidfd turns readable on kernels that unlink there (this one,
///   6.18); where the unlink comes a little later, or when the listing is already empty (the
///   task is past it but still linked), the retry comes after a 50 µs pause.
pub fn wait_released(dir: &Path, deadline: std::time::Instant) {
    let events = dir.join("cgroup.events");
    if events.exists() {
        wait_unpopulated(&events, deadline);
    } else {
        wait_procs_exit(dir, deadline);
    }
}

fn ms_until(deadline: std::time::Instant, cap_ms: i32) -> i32 {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    (left.as_micros().div_ceil(1000) as i32).min(cap_ms)
}

fn populated(events: &Path) -> Option<bool> {
    let s = std::fs::read_to_string(events).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("populated "))
        .map(|v| v.trim() != "0")
}

fn wait_unpopulated(events: &Path, deadline: std::time::Instant) {
    // SAFETY: inotify_init1 with flags only.
    let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    let ifd = (ifd >= 0).then(|| {
        // SAFETY: a fresh fd that nobody else owns.
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ifd) }
    });
    if let (Some(fd), Ok(c)) = (
        &ifd,
        std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(events.as_os_str())),
    ) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid C string; the watch lives as long as the fd.
        unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
    }
    match populated(events) {
        // Not populated (or unreadable) and still EBUSY: something else holds the directory
        // for a moment (a child cgroup being removed); retry shortly.
        Some(false) | None => {
            std::thread::sleep(std::time::Duration::from_micros(50));
            return;
        }
        Some(true) => {}
    }
    let mut buf = [0u8; 256];
    while std::time::Instant::now() < deadline {
        if let Some(fd) = &ifd {
            use std::os::fd::AsRawFd;
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, ms_until(deadline, 1)) };
            // SAFETY: draining the inotify fd into a local buffer.
            unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        } else {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if populated(events) != Some(true) {
            return;
        }
    }
}

fn wait_procs_exit(dir: &Path, deadline: std::time::Instant) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let pids = procs(dir).unwrap_or_default();
    let fds: Vec<OwnedFd> = pids
        .iter()
        .take(256)
        .filter_map(|&pid| {
            // SAFETY: pidfd_open with a pid and no flags.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            // SAFETY: a fresh fd that nobody else owns.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect();
    if fds.is_empty() {
        std::thread::sleep(std::time::Duration::from_micros(50));
        return;
    }
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|f| libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while std::time::Instant::now() < deadline {
        // SAFETY: valid pollfds (negative fds are skipped by poll).
        let r = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                ms_until(deadline, 100),
            )
        };
        if r > 0 {
            for p in pfds.iter_mut() {
                if p.revents != 0 {
                    p.fd = -1;
                }
            }
        }
        if pfds.iter().all(|p| p.fd < 0) {
            return;
        }
        if r == 0 {
            // Re-list now and then: tasks may have moved away.
            return;
        }
    }
}

/// Reads the pids in `dir/cgroup.procs`.
pub fn procs(dir: &Path) -> Result<Vec<i32>, FsError> {
    let s = read(dir, "cgroup.procs")?;
    s.lines()
        .map(|l| {
            l.trim().parse().map_err(|_| FsError::Parse {
                path: dir.join("cgroup.procs"),
                value: l.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_file_and_value() {
        let d = tempfile::tempdir().unwrap();
        let e = write(&d.path().join("nope"), "cpu.cfs_quota_us", "100000 50000").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("writing \"100000 50000\" to "), "{msg}");
        assert!(
            msg.ends_with("nope/cpu.cfs_quota_us: No such file or directory"),
            "{msg}"
        );
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn mkdir_all_reports_made_dirs_outermost_first() {
        let d = tempfile::tempdir().unwrap();
        let leaf = d.path().join("a/b/c");
        let made = mkdir_all(&leaf).unwrap();
        assert_eq!(
            made,
            vec![d.path().join("a"), d.path().join("a/b"), leaf.clone()]
        );
        assert!(mkdir_all(&leaf).unwrap().is_empty());
        let soon = std::time::Instant::now();
        rmdir(&leaf, soon).unwrap();
        rmdir(&leaf, soon).unwrap();
    }

    #[test]
    fn flat_keyed_parses_max() {
        let v: Vec<_> = flat_keyed("usage_usec 12\nmax max\nbad\n").collect();
        assert_eq!(v, vec![("usage_usec", 12), ("max", u64::MAX)]);
    }
}
