//! The host change journal: every change carve makes to the host is recorded — with the old value —
//! and persisted *before* it is made, so that teardown, a failed start, or `carve restore` after a crash
//! can undo it in reverse order.
//!
//! # Tour
//! - [`Journal`] is one owner's journal (a `carve run`, a VM, a plan). It is a JSON-lines file under
//!   the journal root (`/run/carve/journal` by default). Its first line, the [`Header`], names the
//!   owner process so that `carve restore` can tell a live journal from an orphan.
//! - [`Change`] is one recorded change: a file whose old content comes back, a directory or file
//!   carve created, a mount, a process, a network link or namespace.
//! - [`Journal::undo`] walks the changes backwards and keeps going past failures, returning every
//!   failure in [`UndoError`]; the file is removed only when everything was undone.
//! - [`restore_orphans`] undoes every journal whose owner is gone.
//!
//! ```no_run
//! # fn main() -> Result<(), carve_journal::Error> {
//! let mut j = carve_journal::Journal::create(carve_journal::DEFAULT_ROOT, "run-1")?;
//! j.write_file("/proc/sys/kernel/timer_migration", "0")?; // old value recorded first
//! j.undo()?; // back to what it was
//! # Ok(()) }
//! ```

mod change;
mod proc_identity;

pub use change::{Change, ChangeError, LinkUndo};
pub use proc_identity::{process_start_time, ProcessId};

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Where journals live unless a caller chooses another root (tests do).
pub const DEFAULT_ROOT: &str = "/run/carve/journal";

/// Errors of the journal itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// could not {action} journal file {path}
    #[error("could not {action} journal file {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The journal file or host file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A journal file line that is not a change.
    #[error("journal {path} line {line} is corrupt: {source}")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A journal with that owner name already exists and its owner is alive.
    #[error("journal {0} is already held by a running carve (pid {1})")]
    Busy(String, i32),
    /// Some changes could not be undone.
    #[error(transparent)]
    Undo(#[from] UndoError),
}

/// Every change that could not be undone, in the order they were tried.
#[derive(Debug, thiserror::Error)]
#[error("{} change(s) could not be undone: {}", .failures.len(), .failures.iter().map(|(c, e)| format!("{c}: {e}")).collect::<Vec<_>>().join("; "))]
pub struct UndoError {
    /// The change and why undoing it failed.
    pub failures: Vec<(Change, ChangeError)>,
}

/// The first line of a journal file: who owns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// The journal's name (unique under its root).
    pub owner: String,
    /// The process that holds the journal; when it is gone the journal is an orphan.
    pub holder: ProcessId,
}

/// One owner's journal of host changes.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    header: Header,
    changes: Vec<Change>,
    file: Option<File>,
    link_undo: Option<LinkUndo>,
    /// An exclusive flock on the journal file, held while this process may undo it, so that two
    /// undoers (`carve restore`, `carve vm stop`, `carve down`) never undo one journal twice.
    lock: Option<File>,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl Journal {
    /// Creates a new journal for `owner` under `root`, held by this process.
    ///
    /// An orphaned journal of the same name (its holder is dead) is undone first, so a crashed run
    /// is cleaned up before the same owner starts again. A live one makes this fail with [`Error::Busy`].
    pub fn create(root: impl AsRef<Path>, owner: &str) -> Result<Self, Error> {
        Self::create_held_by(root, owner, ProcessId::current())
    }

    /// Like [`Journal::create`] but held by another process (a detached supervisor).
    pub fn create_held_by(
        root: impl AsRef<Path>,
        owner: &str,
        holder: ProcessId,
    ) -> Result<Self, Error> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(io("create directory for", root))?;
        let path = journal_path(root, owner);
        if let Some(old) = Journal::load_if_present(&path)? {
            if old.header.holder.is_alive() && old.header.holder != ProcessId::current() {
                return Err(Error::Busy(owner.to_string(), old.header.holder.pid));
            }
            old.undo()?;
        }
        let header = Header {
            owner: owner.to_string(),
            holder,
        };
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io("create", &path))?;
        let line = serde_json::to_string(&header).expect("header serializes");
        writeln!(file, "{line}").map_err(io("write", &path))?;
        file.sync_data().map_err(io("sync", &path))?;
        Ok(Journal {
            path,
            header,
            changes: Vec::new(),
            file: Some(file),
            link_undo: None,
            lock: None,
        })
    }

    /// Loads a journal file (for `carve restore` or a supervisor taking over), waiting for any
    /// other process that is undoing it. Fails with a not-found I/O error when there is no such
    /// journal (any more); [`Journal::load_if_present`] says `None` instead.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        match Self::load_if_present(path)? {
            Some(j) => Ok(j),
            None => Err(io("open", path)(std::io::ErrorKind::NotFound.into())),
        }
    }

    /// Like [`Journal::load`], but `None` when the journal does not exist (or another undoer
    /// finished it while this one waited).
    pub fn load_if_present(path: impl AsRef<Path>) -> Result<Option<Self>, Error> {
        let path = path.as_ref();
        let Some(lock) = lock_existing(path)? else {
            return Ok(None);
        };
        let f = File::open(path).map_err(io("open", path))?;
        let mut lines = BufReader::new(f).lines();
        let first = lines
            .next()
            .transpose()
            .map_err(io("read", path))?
            .unwrap_or_default();
        let header: Header = serde_json::from_str(&first).map_err(|source| Error::Corrupt {
            path: path.to_path_buf(),
            line: 1,
            source,
        })?;
        let mut changes = Vec::new();
        for (i, line) in lines.enumerate() {
            let line = line.map_err(io("read", path))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(c) => changes.push(c),
                // A crash in the middle of a write leaves a torn last line: the change it
                // describes was never made (we write the record before acting), so skip it.
                Err(_) if i + 2 == count_lines(path) => break,
                Err(source) => {
                    return Err(Error::Corrupt {
                        path: path.to_path_buf(),
                        line: i + 2,
                        source,
                    })
                }
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io("open", path))?;
        Ok(Some(Journal {
            path: path.to_path_buf(),
            header,
            changes,
            file: Some(file),
            link_undo: None,
            lock: Some(lock),
        }))
    }

    /// Sets the function that deletes network links and namespaces on undo (the net crate
    /// provides it; the journal itself speaks no netlink).
    pub fn with_link_undo(mut self, f: LinkUndo) -> Self {
        self.link_undo = Some(f);
        self
    }

    /// The journal's owner name.
    pub fn owner(&self) -> &str {
        &self.header.owner
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The changes recorded so far, oldest first.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Persists `change` before the caller makes it.
    pub fn record(&mut self, change: Change) -> Result<(), Error> {
        let line = serde_json::to_string(&change).expect("change serializes");
        let file = self.file.as_mut().expect("journal open");
        writeln!(file, "{line}").map_err(io("write", &self.path))?;
        file.sync_data().map_err(io("sync", &self.path))?;
        self.changes.push(change);
        Ok(())
    }

    /// Writes `value` to the host file `path` (a sysctl, an IRQ affinity, a cgroup knob) after
    /// recording its current content. Writing a value equal to the current one records nothing.
    pub fn write_file(&mut self, path: impl AsRef<Path>, value: &str) -> Result<(), Error> {
        let path = path.as_ref();
        let old = std::fs::read_to_string(path).map_err(io("read", path))?;
        if old.trim_end() == value.trim_end() {
            return Ok(());
        }
        self.record(Change::File {
            path: path.to_path_buf(),
            old: old.trim_end().to_string(),
        })?;
        std::fs::write(path, value).map_err(io("write", path))
    }

    /// Creates directory `path` (a cgroup) after recording it; undo removes it.
    pub fn create_dir(&mut self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        if path.is_dir() {
            return Ok(());
        }
        self.record(Change::Dir {
            path: path.to_path_buf(),
        })?;
        std::fs::create_dir(path).map_err(io("create directory", path))
    }

    /// Undoes every change in reverse order, continuing past failures. On success the journal file
    /// is removed; on failure it is kept (with the changes that still stand) for `carve restore`.
    pub fn undo(mut self) -> Result<(), Error> {
        if self.lock.is_none() {
            match lock_existing(&self.path)? {
                Some(l) => self.lock = Some(l),
                // Another undoer (a restore after it judged us dead) already finished it.
                None => return Ok(()),
            }
        }
        let mut failures = Vec::new();
        while let Some(change) = self.changes.pop() {
            if let Err(e) = change.undo(self.link_undo) {
                failures.push((change, e));
            }
        }
        if failures.is_empty() {
            drop(self.file.take());
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io("remove", &self.path)(e))
                }
                _ => Ok(()),
            }
        } else {
            // Rewrite the journal with what is left so a later restore retries just those.
            self.rewrite(failures.iter().rev().map(|(c, _)| c))?;
            Err(UndoError { failures }.into())
        }
    }

    /// Forgets the journal without undoing (the changes were handed to another owner).
    pub fn forget(mut self) -> Result<(), Error> {
        drop(self.file.take());
        std::fs::remove_file(&self.path).map_err(io("remove", &self.path))
    }

    fn rewrite<'a>(&self, changes: impl Iterator<Item = &'a Change>) -> Result<(), Error> {
        let tmp = self.path.with_extension("tmp");
        let mut out = String::new();
        out.push_str(&serde_json::to_string(&self.header).expect("header serializes"));
        out.push('\n');
        for c in changes {
            out.push_str(&serde_json::to_string(c).expect("change serializes"));
            out.push('\n');
        }
        std::fs::write(&tmp, out).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io("replace", &self.path))
    }
}

/// Takes an exclusive lock on the journal file at `path` for the caller's undo, waiting for any
/// other restorer. `None` when there is no such journal (any more).
fn lock_existing(path: &Path) -> Result<Option<File>, Error> {
    use std::os::fd::AsRawFd;
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open", path)(e)),
    };
    // SAFETY: the fd is valid for the life of `f`; flock has no memory effects.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io("lock", path)(std::io::Error::last_os_error()));
    }
    // The restorer we waited for may have removed (or rewritten) the journal meanwhile.
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) if m.ino() == f.metadata().map_err(io("stat", path))?.ino() => Ok(Some(f)),
        Ok(_) => lock_existing(path),
        Err(_) => Ok(None),
    }
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The journal file of `owner` under `root`.
pub fn journal_path(root: &Path, owner: &str) -> PathBuf {
    root.join(format!("{owner}.jsonl"))
}

/// What `restore_orphans` did with one journal.
#[derive(Debug)]
pub struct Restored {
    /// The journal's owner name.
    pub owner: String,
    /// How many changes it held.
    pub changes: usize,
    /// `Ok` when every change was undone.
    pub result: Result<(), Error>,
}

/// Undoes every journal under `root` whose holder process is gone (a crashed carve), oldest owner
/// first. Journals of live holders are left alone.
pub fn restore_orphans(root: impl AsRef<Path>, link_undo: Option<LinkUndo>) -> Vec<Restored> {
    restore_orphans_of(root, &[], link_undo)
}

/// [`restore_orphans`] limited to the journals whose owner is in `only` (all when empty): one
/// crashed run can be restored while another run's orphan is left for whoever looks after it.
pub fn restore_orphans_of(
    root: impl AsRef<Path>,
    only: &[String],
    link_undo: Option<LinkUndo>,
) -> Vec<Restored> {
    let root = root.as_ref();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    for p in paths {
        // Loading locks the journal: two restorers never undo one journal twice, and the second
        // finds it gone.
        match Journal::load_if_present(&p) {
            Ok(None) => {}
            Ok(Some(j)) if j.header.holder.is_alive() => {}
            Ok(Some(j)) if !only.is_empty() && !only.contains(&j.header.owner) => {}
            Ok(Some(j)) => {
                let owner = j.header.owner.clone();
                let changes = j.changes.len();
                let j = match link_undo {
                    Some(f) => j.with_link_undo(f),
                    None => j,
                };
                out.push(Restored {
                    owner,
                    changes,
                    result: j.undo(),
                });
            }
            Err(e) => out.push(Restored {
                owner: p.display().to_string(),
                changes: 0,
                result: Err(e),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests;
