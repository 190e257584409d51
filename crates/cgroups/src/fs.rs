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

/// Removes one cgroup directory. Gone already is fine. EBUSY (tasks still exiting) is retried
/// with growing waits until `deadline`; only this slow path ever sleeps.
pub fn rmdir(dir: &Path, deadline: std::time::Instant) -> Result<(), FsError> {
    let mut wait_us = 100u64;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_micros(wait_us));
                wait_us = (wait_us * 2).min(50_000);
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
