//! The state directory of one VM: `/run/carve/vm/NAME/` with its sockets, console log, spec and
//! exit report.

use crate::spec::VmSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where VM state directories live unless a caller chooses another root (tests may).
pub const DEFAULT_STATE_ROOT: &str = "/run/carve/vm";

/// Errors reading or writing VM state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A state file could not be read or written.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A state file that does not parse.
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// No VM of that name.
    #[error("no VM named {0:?} (no state directory {1})")]
    NotFound(String, PathBuf),
}

/// The files of one VM's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    /// The directory.
    pub dir: PathBuf,
}

impl StatePaths {
    /// The state of VM `name` under `root`.
    pub fn new(root: impl AsRef<Path>, name: &str) -> Self {
        StatePaths {
            dir: root.as_ref().join(name),
        }
    }
    /// The QMP socket.
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// The serial console socket (`carve vm console` attaches here).
    pub fn console_sock(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    /// Everything the guest wrote on its serial console (appended across restores).
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// The gdb stub socket (with `gdb`).
    pub fn gdb(&self) -> PathBuf {
        self.dir.join("gdb.sock")
    }
    /// The spec the VM was started from (JSON).
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    /// The live runtime record (JSON [`Runtime`]).
    pub fn runtime(&self) -> PathBuf {
        self.dir.join("runtime.json")
    }
    /// How QEMU ended (JSON [`ExitReport`]), written by the supervisor.
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    /// QEMU's own stderr.
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// The detached supervisor's log.
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    /// The name of the VM's journal under the journal root.
    pub fn journal_owner(name: &str) -> String {
        format!("vm-{name}")
    }
}

/// What a running VM's supervisor records once QEMU is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// QEMU's pid.
    pub qemu_pid: i32,
    /// QEMU's start time (clock ticks), to tell a recycled pid apart.
    pub qemu_start_time: u64,
    /// The supervising carve process.
    pub supervisor_pid: i32,
    /// The supervisor's start time.
    pub supervisor_start_time: u64,
    /// "kvm" or "tcg".
    pub accel: String,
    /// The tap carve created, if any.
    pub tap: Option<String>,
    /// The cgroup directories QEMU runs in.
    pub cgroups: Vec<PathBuf>,
    /// The full QEMU command line.
    pub argv: Vec<String>,
}

/// How QEMU ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitReport {
    /// QEMU's exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it, when it was killed.
    pub signal: Option<i32>,
    /// Whether it was a clean end (exit code 0 after a guest poweroff or a quit).
    pub clean: bool,
    /// A one-line description.
    pub message: String,
    /// The last lines QEMU wrote on stderr.
    pub stderr_tail: String,
    /// The guest stopped without ending QEMU (every vCPU halted with interrupts off, or QEMU
    /// reported a panic or an internal error), and carve ended QEMU.
    #[serde(default)]
    pub halted: bool,
}

pub(crate) fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec_pretty(v).expect("state serializes");
    std::fs::write(&tmp, data).map_err(|source| StateError::Io {
        action: "write",
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| StateError::Io {
        action: "rename",
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StateError> {
    let data = std::fs::read(path).map_err(|source| StateError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

impl StatePaths {
    /// Reads the spec.
    pub fn read_spec(&self) -> Result<VmSpec, StateError> {
        read_json(&self.spec())
    }
    /// Reads the runtime record, if QEMU got that far.
    pub fn read_runtime(&self) -> Result<Option<Runtime>, StateError> {
        if !self.runtime().exists() {
            return Ok(None);
        }
        read_json(&self.runtime()).map(Some)
    }
    /// Reads the exit report, if QEMU has ended.
    pub fn read_exit(&self) -> Result<Option<ExitReport>, StateError> {
        if !self.exit().exists() {
            return Ok(None);
        }
        read_json(&self.exit()).map(Some)
    }
}
