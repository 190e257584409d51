//! Logging through `tracing`: `CARVE_LOG` (an env-filter, e.g. `CARVE_LOG=carve_observe=debug`)
//! or `--debug` (debug for everything) to stderr; the supervisor writes JSON lines to
//! /run/carve/PLAN/supervisor.log instead.

use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::EnvFilter;

/// The variable holding the log filter.
pub const ENV: &str = "CARVE_LOG";

fn filter(debug: bool) -> EnvFilter {
    if debug {
        return EnvFilter::new("debug");
    }
    EnvFilter::try_from_env(ENV).unwrap_or_else(|_| EnvFilter::new("warn"))
}

/// Logs to stderr, human-readable.
pub fn init_stderr(debug: bool) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(debug))
        .with_writer(std::io::stderr)
        .try_init();
}

/// A log file opened later (the plan's state folder is a tmpfs mounted during `up`): lines
/// logged before [`LateFile::open`] are dropped.
#[derive(Clone, Default)]
pub struct LateFile(Arc<Mutex<Option<std::fs::File>>>);

impl LateFile {
    /// Starts writing to `path` (appending).
    pub fn open(&self, path: &std::path::Path) -> std::io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        *self.0.lock().expect("log file") = Some(f);
        Ok(())
    }
}

impl Write for LateFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock().expect("log file").as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs JSON lines (info and up, or as `CARVE_LOG`/`--debug` say) to `file`.
pub fn init_json(debug: bool, file: LateFile) {
    let f = if debug || std::env::var_os(ENV).is_some() {
        filter(debug)
    } else {
        EnvFilter::new("info")
    };
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(f)
        .with_writer(move || file.clone())
        .try_init();
}
