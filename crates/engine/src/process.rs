//! Waiting on partition processes: our children (the supervisor is a subreaper, so container
//! inits become its children when the runtime exits) give their exit status; others are watched
//! through /proc with their start time, so a recycled pid is never mistaken for ours.

use crate::restart::Exit;
use carve_journal::ProcessId;
use std::time::{Duration, Instant};

/// Makes this process the reaper of its orphaned descendants (container inits whose runtime
/// process exited), so their exit status reaches us.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag and no pointers.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// If `id` has ended: how. `None` while it runs.
pub fn poll_exit(id: ProcessId) -> Option<Exit> {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG writes only into `status`.
    let r = unsafe { libc::waitpid(id.pid, &mut status, libc::WNOHANG) };
    if r == id.pid {
        return Some(decode(status));
    }
    if r == 0 {
        return None; // our child, still running
    }
    // Not our child (ECHILD): watch it through /proc.
    if id.is_alive() {
        None
    } else {
        Some(Exit::Unknown)
    }
}

fn decode(status: i32) -> Exit {
    if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Unknown
    }
}

/// Waits up to `timeout` for `id` to end.
pub fn wait_exit(id: ProcessId, timeout: Duration) -> Option<Exit> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = poll_exit(id) {
            return Some(e);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to `id` if it is still that process.
pub fn signal(id: ProcessId, sig: i32) {
    if id.is_alive() {
        // SAFETY: kill takes a pid and a signal number and touches no memory.
        unsafe { libc::kill(id.pid, sig) };
    }
}
