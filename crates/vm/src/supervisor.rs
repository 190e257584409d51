//! The detached supervisor protocol: a VM needs a live process that reaps QEMU, records how it
//! ended and undoes the journal. A front end that returns early (`carve vm run --detach`,
//! `carve vm restore`, `carve vm migrate`) starts that process detached, hands it the spec on
//! stdin and waits for its one [`Ready`] line on stdout:
//!
//! 1. [`start`] (front end): spawn the supervisor in its own session, write the spec, read
//!    [`Ready`]; a failed launch leaves no state behind.
//! 2. [`serve`] (supervisor): read the spec, launch in the given [`Mode`], write [`Ready`],
//!    point stdout at /dev/null; the caller then supervises the returned [`Vm`].
//! 3. [`Detached::wait_for`] (front end, optional): wait for text on the console, or for
//!    QEMU's end and the supervisor's report of it.
//!
//! Which binary runs the supervisor is the caller's choice (carve re-executes itself as the
//! hidden `carve vm supervise --mode MODE`), so this crate names no program.

use crate::console::{self, WaitError};
use crate::spec::VmSpec;
use crate::state::StatePaths;
use crate::vm::{self, Boot, Context, Vm, VmError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Errors of the supervisor protocol.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A state file or pipe operation failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The supervisor process could not be started.
    #[error("starting the VM supervisor: {0}")]
    Spawn(std::io::Error),
    /// The supervisor ended without a ready line; its log says why.
    #[error("the VM supervisor failed: {log}")]
    NoReport {
        /// The supervisor's log (its stderr).
        log: String,
    },
    /// The supervisor reported that the VM did not start.
    #[error("{message}")]
    Launch {
        /// The launch error, as the supervisor printed it.
        message: String,
        /// The spec was rejected (bad input) rather than the host failing.
        invalid: bool,
    },
    /// The mode argument is none of `fresh`, `restore:FILE`, `migrate:SOURCE`.
    #[error("unknown supervise mode {0:?}")]
    Mode(String),
    /// The spec on stdin (or the ready line) is not valid JSON.
    #[error("the supervisor's {what} is not valid JSON: {source}")]
    Json {
        /// The spec or the ready line.
        what: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> SupervisorError {
    let action = action.into();
    move |source| SupervisorError::Io { action, source }
}

/// How the supervisor brings the VM up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// A fresh boot.
    Fresh,
    /// From a snapshot file ([`vm::restore`]).
    Restore(PathBuf),
    /// Live migration from the running VM of that name ([`vm::migrate`]).
    Migrate(String),
}

impl Mode {
    /// The mode as one command-line argument (`fresh`, `restore:FILE`, `migrate:SOURCE`).
    pub fn arg(&self) -> String {
        match self {
            Mode::Fresh => "fresh".into(),
            Mode::Restore(f) => format!("restore:{}", f.display()),
            Mode::Migrate(src) => format!("migrate:{src}"),
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = SupervisorError;

    fn from_str(s: &str) -> Result<Mode, SupervisorError> {
        if s == "fresh" {
            Ok(Mode::Fresh)
        } else if let Some(file) = s.strip_prefix("restore:") {
            Ok(Mode::Restore(file.into()))
        } else if let Some(src) = s.strip_prefix("migrate:") {
            Ok(Mode::Migrate(src.into()))
        } else {
            Err(SupervisorError::Mode(s.into()))
        }
    }
}

/// The supervisor's one ready line.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ready {
    /// QEMU runs.
    pub ok: bool,
    /// Why not, when it does not.
    pub error: Option<String>,
    /// The error is a rejected spec (bad input).
    pub invalid: bool,
    /// QEMU's pid.
    pub qemu_pid: Option<i32>,
    /// A launch warning (TCG instead of KVM, ...).
    pub warning: Option<String>,
    /// Where this boot's output starts in the console log.
    pub console_start: u64,
}

impl Ready {
    fn of(launched: &Result<Vm, VmError>) -> Ready {
        match launched {
            Ok(vm) => Ready {
                ok: true,
                error: None,
                invalid: false,
                qemu_pid: Some(vm.pid()),
                warning: vm.warning().map(str::to_string),
                console_start: vm.console_start(),
            },
            Err(e) => Ready {
                ok: false,
                error: Some(e.to_string()),
                invalid: matches!(e, VmError::Spec(_) | VmError::Vfio(_)),
                qemu_pid: None,
                warning: None,
                console_start: 0,
            },
        }
    }
}

/// A VM running under a detached supervisor.
#[derive(Debug)]
pub struct Detached {
    /// The VM's state paths.
    pub paths: StatePaths,
    /// QEMU's pid (0 if the supervisor did not say).
    pub qemu_pid: i32,
    /// A launch warning to show.
    pub warning: Option<String>,
    /// Where this boot's output starts in the console log.
    pub console_start: u64,
}

/// Starts `supervisor` (a command that runs [`serve`] with `spec`'s mode) detached in its own
/// session, stderr to the VM's supervisor log, writes `spec` to its stdin and waits for its
/// ready line. A VM that did not start leaves no state directory behind.
pub fn start(
    ctx: &Context,
    spec: &VmSpec,
    mut supervisor: Command,
) -> Result<Detached, SupervisorError> {
    let paths = ctx.paths(&spec.name);
    std::fs::create_dir_all(&paths.dir).map_err(io(format!("create {}", paths.dir.display())))?;
    let log_path = paths.supervisor_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(format!("open {}", log_path.display())))?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        supervisor
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; the child leaves the caller's session and terminal.
        unsafe {
            supervisor.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
        supervisor.spawn().map_err(SupervisorError::Spawn)?
    };
    let ready = hand_over(&mut child, spec);
    let ready = match ready {
        Ok(r) => r,
        Err(_) => {
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(SupervisorError::NoReport {
                log: log.trim().to_string(),
            });
        }
    };
    if !ready.ok {
        let _ = child.wait();
        // Nothing runs: leave no state behind for a VM that never started.
        if paths.read_runtime().ok().flatten().is_none()
            && paths.read_exit().ok().flatten().is_none()
        {
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
        return Err(SupervisorError::Launch {
            message: ready.error.unwrap_or_default(),
            invalid: ready.invalid,
        });
    }
    Ok(Detached {
        paths,
        qemu_pid: ready.qemu_pid.unwrap_or(0),
        warning: ready.warning,
        console_start: ready.console_start,
    })
}

/// Writes the spec to the supervisor and reads its ready line.
fn hand_over(child: &mut std::process::Child, spec: &VmSpec) -> Result<Ready, SupervisorError> {
    {
        let mut stdin = child.stdin.take().expect("piped");
        let json = serde_json::to_vec(spec).map_err(|source| SupervisorError::Json {
            what: "spec",
            source,
        })?;
        stdin
            .write_all(&json)
            .map_err(io("write the spec to the supervisor"))?;
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(io("read the supervisor's ready line"))?;
    serde_json::from_str(&line).map_err(|source| SupervisorError::Json {
        what: "ready line",
        source,
    })
}

impl Detached {
    /// Waits until `text` appears on the console after this boot started, failing when QEMU
    /// ends first (with the supervisor's report of how) or `timeout` passes.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> Result<(), WaitError> {
        let qemu = carve_journal::ProcessId::of(self.qemu_pid);
        console::wait_for(
            &self.paths.console_log(),
            self.console_start,
            text,
            timeout,
            || {
                if qemu.is_some_and(|q| q.is_alive()) {
                    return None;
                }
                Some(self.exit_report())
            },
        )
        .map(|_| ())
    }

    /// How QEMU ended, from the supervisor's report. The supervisor needs a moment to reap
    /// QEMU and write it (bounded: a supervisor that is gone too writes none).
    fn exit_report(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.paths.read_exit().ok().flatten() {
                return format!("{} {}", e.message, e.stderr_tail);
            }
            if Instant::now() >= deadline {
                return "QEMU is gone (the supervisor wrote no report)".into();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The supervisor's side: reads the spec from `input`, launches the VM in `mode`, writes the
/// [`Ready`] line to `out`, then points fd 1 at /dev/null (nobody reads it any more, and a late
/// write must not SIGPIPE the supervisor). The caller supervises the returned VM
/// ([`Vm::wait`]); a launch error has been reported on the ready line and is returned too.
pub fn serve(
    ctx: &Context,
    mode: &Mode,
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<Result<Vm, VmError>, SupervisorError> {
    let mut buf = Vec::new();
    input
        .read_to_end(&mut buf)
        .map_err(io("read the spec from stdin"))?;
    let spec: VmSpec = serde_json::from_slice(&buf).map_err(|source| SupervisorError::Json {
        what: "spec",
        source,
    })?;
    let launched = match mode {
        Mode::Fresh => Vm::launch(ctx, spec, Boot::Fresh),
        Mode::Restore(file) => vm::restore(ctx, spec, file),
        Mode::Migrate(src) => vm::migrate(ctx, src, spec),
    };
    let line =
        serde_json::to_string(&Ready::of(&launched)).map_err(|source| SupervisorError::Json {
            what: "ready line",
            source,
        })?;
    writeln!(out, "{line}").map_err(io("write the ready line"))?;
    out.flush().map_err(io("write the ready line"))?;
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto fd 1 with a valid fd; the ready line was flushed above.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    Ok(launched)
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[test]
    fn modes_round_trip_through_their_argument() {
        for m in [
            Mode::Fresh,
            Mode::Restore("/tmp/a b.snap".into()),
            Mode::Migrate("src".into()),
        ] {
            assert_eq!(m.arg().parse::<Mode>().unwrap(), m);
        }
        assert!("boot".parse::<Mode>().is_err());
    }
}
