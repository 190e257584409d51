//! Container state under `--root`: one directory per container holding `state.json` (what the
//! runtime needs to find the container again), a copy of `config.json`, and `init.sock` (the
//! socket on which a created init waits for `start`). Every command takes an `flock` on the
//! container's directory — exclusive to change it, shared to read it — so concurrent CLI calls
//! never see half-written state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// What went wrong with a container's state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// container "{0}" does not exist
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    /// container "{0}" already exists
    #[error("container \"{0}\" already exists")]
    Exists(String),
    /// invalid container id {0:?}: expected [A-Za-z0-9_+.-], not starting with '.' or '-'
    #[error("invalid container id {0:?}: expected letters, digits, '_', '+', '-', '.'")]
    BadId(String),
    /// {path}: {source}
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The container status as the runtime spec defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created (never persisted as final).
    Creating,
    /// Init waits for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by the cgroup freezer.
    Paused,
    /// The process exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Persisted {
    /// Container id.
    pub id: String,
    /// Bundle directory (absolute).
    pub bundle: PathBuf,
    /// Rootfs directory (absolute).
    pub rootfs: PathBuf,
    /// Host pid of init (0 while being created).
    pub pid: i32,
    /// Start time of init (/proc/PID/stat field 22), so a reused pid is never mistaken for it.
    pub pid_start: u64,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Set by `start` before it tells init to exec.
    pub started: bool,
    /// Annotations from config.json.
    pub annotations: BTreeMap<String, String>,
    /// cgroupsPath as resolved at create.
    pub cgroups_path: String,
    /// Whether the container has its own pid namespace (then killing init kills all).
    pub own_pidns: bool,
    /// Whether init's setup finished (false: a create crashed or failed midway).
    pub complete: bool,
    /// poststart hooks, kept here so `start` need not parse the whole config again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststart: Vec<oci_spec::runtime::Hook>,
    /// The sum of the startContainer hooks' timeouts, added to `start`'s wait for the exec.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_hook_secs: u64,
    /// poststop hooks, for `delete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststop: Vec<oci_spec::runtime::Hook>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A locked container directory.
pub struct ContainerDir {
    /// `ROOT/ID`.
    pub path: PathBuf,
    /// The flock holder (the directory itself).
    lock: File,
    /// Container id.
    pub id: String,
}

/// Checks a container id: no path separators, no leading dot.
pub fn check_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadId(id.to_string()))
    }
}

/// How long the runtime waits for another runtime process or for the container's own
/// processes before giving up with an error naming what it waited for: the `flock` of a
/// container's state directory, init's answers during `create`, the exec during `start` and
/// `exec`. `CARVE_OCI_TIMEOUT` (seconds) overrides the default of 60 s.
pub fn wait_bound() -> std::time::Duration {
    std::env::var("CARVE_OCI_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs_f64,
        )
}

/// How long `delete --force` waits for the lock before it kills and cleans up without it: a
/// `create` stopped while holding the lock must not keep the container alive (runc takes no
/// lock across processes at all).
pub fn force_bound() -> std::time::Duration {
    wait_bound().min(std::time::Duration::from_secs(2))
}

fn lock_timeout(bound: std::time::Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "timed out after {:.1} s waiting for the lock (another carve-oci process holds it: a stuck create?)",
            bound.as_secs_f64()
        ),
    )
}

/// `flock` with a deadline. flock(2) has no timeout, so a held lock is retried with LOCK_NB
/// at growing intervals (1 ms doubling to 32 ms): an uncontended lock costs one syscall.
fn flock(f: &File, how: i32, bound: std::time::Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + bound;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        // SAFETY: flock on a valid fd.
        if unsafe { libc::flock(f.as_raw_fd(), how | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => {}
            _ => return Err(e),
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Err(lock_timeout(bound));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(std::time::Duration::from_millis(32));
    }
}

impl ContainerDir {
    /// Makes `ROOT/ID` (it must not exist) and locks it exclusively.
    pub fn create(root: &Path, id: &str) -> Result<ContainerDir, StateError> {
        check_id(id)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(io_err(root))?;
        let path = root.join(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        let lock = File::open(&path).map_err(io_err(&path))?;
        flock(&lock, libc::LOCK_EX, wait_bound()).map_err(io_err(&path))?;
        Ok(ContainerDir {
            path,
            lock,
            id: id.to_string(),
        })
    }

    /// Opens and locks an existing `ROOT/ID` (exclusive or shared).
    pub fn open(root: &Path, id: &str, exclusive: bool) -> Result<ContainerDir, StateError> {
        check_id(id).map_err(|_| StateError::NotFound(id.to_string()))?;
        let path = root.join(id);
        let lock = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        flock(
            &lock,
            if exclusive {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            },
            wait_bound(),
        )
        .map_err(io_err(&path))?;
        // Deleted while we waited for the lock?
        let meta = lock.metadata().map_err(io_err(&path))?;
        if meta.nlink() == 0 || !path.join("state.json").exists() {
            return Err(StateError::NotFound(id.to_string()));
        }
        Ok(ContainerDir {
            path,
            lock,
            id: id.to_string(),
        })
    }

    /// Opens a directory whose `state.json` may be missing (a crashed create), for `delete`.
    pub fn open_any(root: &Path, id: &str) -> Result<ContainerDir, StateError> {
        let bound = wait_bound();
        match Self::open_any_within(root, id, bound)? {
            (d, true) => Ok(d),
            (d, false) => Err(StateError::Io {
                source: lock_timeout(bound),
                path: d.path,
            }),
        }
    }

    /// As [`ContainerDir::open_any`], but when the lock is not had within `bound` the
    /// directory is returned unlocked (`false`): for `delete --force` behind a stuck command.
    pub fn open_any_forced(
        root: &Path,
        id: &str,
        bound: std::time::Duration,
    ) -> Result<(ContainerDir, bool), StateError> {
        Self::open_any_within(root, id, bound)
    }

    fn open_any_within(
        root: &Path,
        id: &str,
        bound: std::time::Duration,
    ) -> Result<(ContainerDir, bool), StateError> {
        check_id(id).map_err(|_| StateError::NotFound(id.to_string()))?;
        let path = root.join(id);
        let lock = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StateError::NotFound(id.to_string())
            } else {
                io_err(&path)(e)
            }
        })?;
        let locked = match flock(&lock, libc::LOCK_EX, bound) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => false,
            Err(e) => return Err(io_err(&path)(e)),
        };
        if lock.metadata().map_err(io_err(&path))?.nlink() == 0 {
            return Err(StateError::NotFound(id.to_string()));
        }
        let dir = ContainerDir {
            path,
            lock,
            id: id.to_string(),
        };
        Ok((dir, locked))
    }

    /// Reads `state.json`.
    pub fn load(&self) -> Result<Persisted, StateError> {
        let p = self.path.join("state.json");
        let b = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(self.id.clone()))
            }
            Err(e) => return Err(io_err(&p)(e)),
        };
        serde_json::from_slice(&b).map_err(|e| StateError::Io {
            path: p,
            source: io::Error::other(e),
        })
    }

    /// Writes `state.json` atomically (temp file + rename).
    pub fn save(&self, st: &Persisted) -> Result<(), StateError> {
        let tmp = self.path.join(".state.json.tmp");
        let body = serde_json::to_vec(st).map_err(|e| StateError::Io {
            path: tmp.clone(),
            source: io::Error::other(e),
        })?;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&body).map_err(io_err(&tmp))?;
        drop(f);
        let p = self.path.join("state.json");
        std::fs::rename(&tmp, &p).map_err(io_err(&p))
    }

    /// Removes the directory (while still holding the lock, so waiters see it gone).
    pub fn remove(self) -> Result<(), StateError> {
        let r = std::fs::remove_dir_all(&self.path);
        drop(self.lock);
        match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&self.path)(e)),
            _ => Ok(()),
        }
    }

    /// The lock file, to keep the directory locked.
    pub fn lock_fd(&self) -> &File {
        &self.lock
    }
}

use std::os::unix::fs::MetadataExt;

/// Ids of all containers under `root`, sorted.
pub fn list_ids(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .map(|r| {
            r.filter_map(|e| {
                let e = e.ok()?;
                if !e.file_type().ok()?.is_dir() {
                    return None;
                }
                e.file_name().into_string().ok()
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether init (pid + start time) is alive (not exited, not a zombie).
pub fn init_alive(st: &Persisted) -> bool {
    if st.pid <= 0 {
        return false;
    }
    matches!(crate::sys::proc_start_time(st.pid), Some((start, zombie)) if start == st.pid_start && !zombie)
}

/// Formats a time as RFC 3339 UTC with nanoseconds, as runc does.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let dd = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_nanos()
    )
}

/// The owner name of a uid from /etc/passwd (the uid as text when not found).
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id = f.nth(1)?;
                (id == uid.to_string()).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(
            rfc3339(std::time::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        let leap = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("abc-1_2.3+x").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn create_lock_save_load_remove() {
        let d = std::env::temp_dir().join(format!("carve-state-unit-{}", std::process::id()));
        let c = ContainerDir::create(&d, "c1").unwrap();
        assert!(matches!(
            ContainerDir::create(&d, "c1"),
            Err(StateError::Exists(_))
        ));
        let st = Persisted {
            id: "c1".into(),
            pid: 7,
            ..Default::default()
        };
        c.save(&st).unwrap();
        assert_eq!(c.load().unwrap().pid, 7);
        c.remove().unwrap();
        assert!(matches!(
            ContainerDir::open(&d, "c1", false),
            Err(StateError::NotFound(_))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
