//! A process named by pid *and* start time, so a recycled pid is never mistaken for ours.

use serde::{Deserialize, Serialize};

/// A process identity that survives pid reuse: the pid plus its start time in clock ticks since
/// boot (field 22 of /proc/PID/stat).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The pid.
    pub pid: i32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id() as i32;
        Self::of(pid).expect("/proc/self/stat is readable")
    }

    /// The live process `pid`, or `None` when there is none.
    pub fn of(pid: i32) -> Option<Self> {
        process_start_time(pid).map(|start_time| ProcessId { pid, start_time })
    }

    /// Whether this very process still runs (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        match read_stat(self.pid) {
            Some((state, start)) => start == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }
}

/// The start time (clock ticks since boot) of process `pid`, if it exists.
pub fn process_start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|(_, start)| start)
}

fn read_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start = fields.get(22 - 3)?.parse().ok()?;
    Some((state, start))
}
