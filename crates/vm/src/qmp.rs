//! A small typed QMP client: capability negotiation, commands, and an event queue.
//!
//! QMP is JSON lines over a unix socket: the server greets, the client sends `qmp_capabilities`,
//! then each `{"execute": ..., "id": N}` gets a `{"return": ...}` or `{"error": ...}` with the same
//! id, while `{"event": ...}` messages may arrive at any time (they are queued here). The typed
//! commands are provided methods of the [`Qmp`] trait over one `execute` primitive, so a scripted
//! peer tests the protocol and the real QEMU tests the same code.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// QMP errors.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected, read or written.
    #[error("QMP socket {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The peer closed the connection (QEMU exited).
    #[error("QMP connection closed by QEMU")]
    Closed,
    /// A message that is not QMP.
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    /// QEMU answered a command with an error.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// Nothing came within the time allowed.
    #[error("QMP: timed out waiting for {0}")]
    Timeout(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> QmpError {
    let what = what.into();
    move |source| QmpError::Io { what, source }
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Event {
    /// Its name: SHUTDOWN, STOP, RESUME, MIGRATION, ...
    pub event: String,
    /// Its data (may be null).
    #[serde(default)]
    pub data: Value,
}

/// The answer of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct StatusInfo {
    /// "running", "paused", "inmigrate", "postmigrate", "shutdown", "prelaunch", ...
    pub status: String,
    /// Whether the vCPUs run.
    pub running: bool,
}

/// One entry of `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CpuInfo {
    /// vCPU index.
    #[serde(rename = "cpu-index")]
    pub cpu_index: usize,
    /// The host thread running this vCPU.
    #[serde(rename = "thread-id")]
    pub thread_id: i32,
}

/// The answer of `query-migrate` (the parts carve reads).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct MigrationInfo {
    /// "setup", "active", "completed", "failed", "cancelled"... (absent before any migration).
    #[serde(default)]
    pub status: Option<String>,
    /// QEMU's reason when it failed.
    #[serde(default, rename = "error-desc")]
    pub error_desc: Option<String>,
}

/// The QMP command set carve uses, as provided methods over [`Qmp::execute`].
pub trait Qmp {
    /// Runs one command and returns its `return` value; queues events that arrive meanwhile.
    fn execute(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError>;

    /// Runs one command passing `fd` beside it (SCM_RIGHTS), as `getfd` and `add-fd` need.
    fn execute_with_fd(
        &mut self,
        command: &str,
        args: Option<Value>,
        fd: RawFd,
    ) -> Result<Value, QmpError>;

    /// The next event: a queued one, else waits up to `timeout` for one.
    fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, QmpError>;

    /// `query-status`.
    fn query_status(&mut self) -> Result<StatusInfo, QmpError> {
        parse(self.execute("query-status", None)?)
    }
    /// `query-cpus-fast`: each vCPU's host thread.
    fn query_cpus_fast(&mut self) -> Result<Vec<CpuInfo>, QmpError> {
        parse(self.execute("query-cpus-fast", None)?)
    }
    /// `stop`: pauses the vCPUs.
    fn stop(&mut self) -> Result<(), QmpError> {
        self.execute("stop", None).map(drop)
    }
    /// `cont`: resumes the vCPUs.
    fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).map(drop)
    }
    /// `system_powerdown`: presses the ACPI power button.
    fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).map(drop)
    }
    /// `quit`: QEMU exits at once.
    fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None) {
            // QEMU may close the socket before its answer is read.
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
    /// `migrate` to `uri` ("unix:PATH", "fd:NAME", "exec:CMD", "file:PATH" on QEMU ≥ 8.2).
    fn migrate(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate", Some(json!({ "uri": uri })))
            .map(drop)
    }
    /// `migrate-incoming` from `uri` (QEMU started with `-incoming defer`).
    fn migrate_incoming(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-incoming", Some(json!({ "uri": uri })))
            .map(drop)
    }
    /// `query-migrate`.
    fn query_migrate(&mut self) -> Result<MigrationInfo, QmpError> {
        parse(self.execute("query-migrate", None)?)
    }
    /// `getfd`: hands `fd` to QEMU under `name` (for `fd:NAME` migration URIs).
    fn getfd(&mut self, name: &str, fd: RawFd) -> Result<(), QmpError> {
        self.execute_with_fd("getfd", Some(json!({ "fdname": name })), fd)
            .map(drop)
    }
    /// `human-monitor-command`: the HMP fallback for what QMP lacks.
    fn human_monitor_command(&mut self, line: &str) -> Result<String, QmpError> {
        let v = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": line })),
        )?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }
    /// Polls `query-migrate` until the migration completes; fails when it fails or `timeout` passes.
    fn wait_migration(&mut self, timeout: Duration) -> Result<(), QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.query_migrate()?;
            match m.status.as_deref() {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => {
                    return Err(QmpError::Command {
                        command: "migrate".into(),
                        class: m.status.unwrap_or_default(),
                        desc: m.error_desc.unwrap_or_else(|| "no reason given".into()),
                    })
                }
                _ if Instant::now() > deadline => {
                    return Err(QmpError::Timeout("migration to complete".into()))
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    /// Waits for an event named `name` (others are dropped), up to `timeout`.
    fn wait_event(&mut self, name: &str, timeout: Duration) -> Result<Event, QmpError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(QmpError::Timeout(format!("event {name}")));
            }
            if let Some(e) = self.next_event(left)? {
                if e.event == name {
                    return Ok(e);
                }
            }
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, QmpError> {
    serde_json::from_value(v.clone())
        .map_err(|e| QmpError::Protocol(format!("unexpected answer {v}: {e}")))
}

/// A QMP connection over a unix stream.
#[derive(Debug)]
pub struct QmpClient {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    events: VecDeque<Event>,
    next_id: u64,
    timeout: Duration,
    /// The version QEMU announced in its greeting.
    pub version: Value,
}

impl QmpClient {
    /// Connects to the QMP socket at `path`, retrying until `wait` passes (QEMU creates it a
    /// moment after starting), and negotiates capabilities.
    pub fn connect(path: &Path, wait: Duration) -> Result<Self, QmpError> {
        let deadline = Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io(format!("connect {}", path.display()))(e)),
            }
        };
        Self::handshake(stream, Duration::from_secs(30))
    }

    /// Speaks QMP on an already connected stream: reads the greeting and negotiates. Every read
    /// waits at most `timeout`.
    pub fn handshake(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        let reader = stream.try_clone().map_err(io("clone"))?;
        let mut c = QmpClient {
            writer: stream,
            reader: BufReader::new(reader),
            events: VecDeque::new(),
            next_id: 1,
            timeout,
            version: Value::Null,
        };
        let greeting = c.read_message(timeout)?;
        let Some(qmp) = greeting.get("QMP") else {
            return Err(QmpError::Protocol(format!(
                "expected a greeting, got {greeting}"
            )));
        };
        c.version = qmp.get("version").cloned().unwrap_or(Value::Null);
        c.execute("qmp_capabilities", None)?;
        Ok(c)
    }

    /// Sets how long a command waits for its answer.
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    fn read_message(&mut self, timeout: Duration) -> Result<Value, QmpError> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .map_err(io("set timeout"))?;
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return Err(QmpError::Closed),
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return Err(QmpError::Timeout("a QMP message".into()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(QmpError::Closed)
                }
                Err(e) => return Err(io("read")(e)),
            }
        }
        serde_json::from_str(&line)
            .map_err(|e| QmpError::Protocol(format!("bad JSON {:?}: {e}", line.trim())))
    }

    fn send(&mut self, msg: &Value, fd: Option<RawFd>) -> Result<(), QmpError> {
        let mut data = serde_json::to_vec(msg).expect("json serializes");
        data.push(b'\n');
        match fd {
            None => self.writer.write_all(&data).map_err(|e| match e.kind() {
                std::io::ErrorKind::BrokenPipe => QmpError::Closed,
                _ => io("write")(e),
            }),
            Some(fd) => {
                let n = carve_unix::send_with_fds(self.writer.as_fd(), &data, &[fd])
                    .map_err(io("sendmsg"))?;
                // The fd rides with the first byte; the rest of the line follows plainly.
                self.writer.write_all(&data[n..]).map_err(io("write"))
            }
        }
    }

    fn run(
        &mut self,
        command: &str,
        args: Option<Value>,
        fd: Option<RawFd>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = args {
            msg["arguments"] = a;
        }
        self.send(&msg, fd)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(QmpError::Timeout(format!("the answer to {command}")));
            }
            let m = match self.read_message(left) {
                Err(QmpError::Timeout(_)) => {
                    return Err(QmpError::Timeout(format!("the answer to {command}")))
                }
                r => r?,
            };
            if m.get("event").is_some() {
                self.events.push_back(parse(m)?);
                continue;
            }
            if m.get("id").and_then(Value::as_u64) != Some(id) {
                return Err(QmpError::Protocol(format!(
                    "answer {m} does not match command {command} (id {id})"
                )));
            }
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(QmpError::Command {
                    command: command.into(),
                    class: e["class"].as_str().unwrap_or("?").into(),
                    desc: e["desc"].as_str().unwrap_or("?").into(),
                });
            }
            return Err(QmpError::Protocol(format!("unexpected message {m}")));
        }
    }
}

impl Qmp for QmpClient {
    fn execute(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        self.run(command, args, None)
    }

    fn execute_with_fd(
        &mut self,
        command: &str,
        args: Option<Value>,
        fd: RawFd,
    ) -> Result<Value, QmpError> {
        self.run(command, args, Some(fd))
    }

    fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, QmpError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        match self.read_message(timeout) {
            Ok(m) if m.get("event").is_some() => Ok(Some(parse(m)?)),
            Ok(m) => Err(QmpError::Protocol(format!("unexpected message {m}"))),
            Err(QmpError::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
