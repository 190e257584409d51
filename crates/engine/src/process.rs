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

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag instead of killing this process, so a holder of a
/// plan tears it down before exiting ([`stop_requested`]).
pub fn catch_stop_signals() {
    catch_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
}

/// Makes each of `signals` set the [`stop_requested`] flag instead of its default action.
pub fn catch_signals(signals: &[i32]) {
    for &sig in signals {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is fully initialized before the call.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a stop signal arrived since [`catch_stop_signals`] (or [`catch_signals`]).
pub fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

/// Starts a new session, so the terminal's Ctrl-C and hangup no longer reach this process.
pub fn new_session() {
    // SAFETY: setsid has no memory effects; failure (already a group leader) is harmless.
    unsafe { libc::setsid() };
}

/// Points stdin, stdout and stderr at /dev/null (a detached supervisor: whoever read its
/// progress sees EOF).
pub fn detach_stdio() {
    use std::os::fd::AsRawFd;
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard fds from a valid open fd; Rust's std handles keep
        // working on the new targets.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}
