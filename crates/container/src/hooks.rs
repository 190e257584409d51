//! OCI hooks: run each program with the container state JSON on stdin, wait for it with its
//! timeout (on a pidfd, no polling), and fail with the hook's name, exit status and stderr.

use oci_spec::runtime::Hook;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// A hook that failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// {kind} hook {path}: cannot start: {source}
    #[error("{kind} hook {path}: cannot start: {source}")]
    Spawn {
        /// Which list.
        kind: String,
        /// The program.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// {kind} hook {path} failed with status {status}: {stderr}
    #[error("{kind} hook {path} failed with status {status}: {stderr}")]
    Failed {
        /// Which list.
        kind: String,
        /// The program.
        path: String,
        /// Exit status (128+signal when killed).
        status: i32,
        /// What it wrote to stderr (trimmed).
        stderr: String,
    },
    /// {kind} hook {path} timed out after {secs} s and was killed
    #[error("{kind} hook {path} timed out after {secs} s and was killed")]
    Timeout {
        /// Which list.
        kind: String,
        /// The program.
        path: String,
        /// The timeout.
        secs: i64,
    },
}

/// Runs `hooks` in order with `state` (JSON) on stdin; stops at the first failure. A hook gets
/// exactly its `env`.
pub fn run(kind: &str, hooks: &[Hook], state: &[u8]) -> Result<(), HookError> {
    run_with_env(kind, hooks, state, &[])
}

/// As [`run`], but a hook without `env` gets `default_env`: startContainer hooks run in the
/// container and see the container process's environment (as runc's, which inherit it).
pub fn run_with_env(
    kind: &str,
    hooks: &[Hook],
    state: &[u8],
    default_env: &[String],
) -> Result<(), HookError> {
    for h in hooks {
        run_one(kind, h, state, default_env)?;
    }
    Ok(())
}

fn run_one(kind: &str, h: &Hook, state: &[u8], default_env: &[String]) -> Result<(), HookError> {
    let path = h.path().display().to_string();
    let spawn_err = |source| HookError::Spawn {
        kind: kind.into(),
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(h.path());
    if let Some(args) = h.args() {
        if let Some(a0) = args.first() {
            cmd.arg0(a0);
        }
        cmd.args(args.iter().skip(1));
    }
    cmd.env_clear();
    for e in h.env().as_deref().unwrap_or(default_env) {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let pidfd = crate::sys::pidfd_open(child.id() as i32).map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading its stdin: EPIPE is not an error.
        let _ = stdin.write_all(state);
    }
    let timeout_ms = h.timeout().map_or(-1, |s| (s as i32).saturating_mul(1000));
    let exited = crate::sys::pidfd_wait_exit(&pidfd, timeout_ms).map_err(spawn_err)?;
    if !exited {
        let _ = crate::sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
        let _ = child.wait();
        return Err(HookError::Timeout {
            kind: kind.into(),
            path,
            secs: h.timeout().unwrap_or(0),
        });
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        // The hook has exited; read what is buffered without blocking on its descendants.
        set_nonblocking(&e);
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().map_err(spawn_err)?;
    let code = status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
    });
    if code != 0 {
        return Err(HookError::Failed {
            kind: kind.into(),
            path,
            status: code,
            stderr: err.trim().to_string(),
        });
    }
    Ok(())
}

fn set_nonblocking(f: &impl AsRawFd) {
    // SAFETY: fcntl on a valid fd.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Duplicates an fd (used to keep a hook-independent copy).
pub fn dup(fd: &impl AsRawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a fresh fd.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(path: &str, args: &[&str], env: &[&str], timeout: Option<i64>) -> Hook {
        serde_json::from_value(serde_json::json!({
            "path": path, "args": args, "env": env, "timeout": timeout
        }))
        .unwrap()
    }

    #[test]
    fn a_hook_gets_the_state_on_stdin_and_only_its_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let script = format!(
            "cat > {}; echo \"$ONLY\" >> {}",
            out.display(),
            out.display()
        );
        let h = hook("/bin/sh", &["sh", "-c", &script], &["ONLY=yes"], Some(5));
        run("prestart", &[h], b"{\"id\":\"c\"}").expect("hook runs");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"id\":\"c\"}yes\n"
        );
        // Without env of its own, startContainer's default applies.
        let h = hook("/bin/sh", &["sh", "-c", "test \"$X\" = 1"], &[], None);
        let h: Hook = {
            let mut v = serde_json::to_value(&h).unwrap();
            v.as_object_mut().unwrap().remove("env");
            serde_json::from_value(v).unwrap()
        };
        run_with_env("startContainer", &[h], b"{}", &["X=1".into()]).expect("default env");
    }

    #[test]
    fn failures_name_the_kind_the_status_and_stderr() {
        let h = hook("/bin/sh", &["sh", "-c", "echo nope >&2; exit 3"], &[], None);
        let e = run("poststart", &[h], b"{}").expect_err("fails");
        assert_eq!(
            e.to_string(),
            "poststart hook /bin/sh failed with status 3: nope"
        );
        let e = run(
            "prestart",
            &[hook("/nonexistent/carve", &[], &[], None)],
            b"{}",
        )
        .expect_err("no such program");
        assert!(matches!(e, HookError::Spawn { .. }), "{e}");
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let h = hook("/bin/sleep", &["sleep", "30"], &[], Some(1));
        let t = std::time::Instant::now();
        let e = run("createRuntime", &[h], b"{}").expect_err("times out");
        assert_eq!(
            e.to_string(),
            "createRuntime hook /bin/sleep timed out after 1 s and was killed"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
    }
}
