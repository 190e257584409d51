//! The typed channel between the runtime and the processes it forks: a `SOCK_SEQPACKET` unix
//! socket pair (message boundaries kept, EOF when the peer exits or execs), one JSON-encoded
//! [`Msg`] per packet, file descriptors passed beside it with `SCM_RIGHTS`.
//!
//! Both ends are `CLOEXEC`: when the container process execs its user program, its end closes and
//! the runtime reads EOF — that is how `start` and `exec` learn that the exec succeeded without
//! any timer.

use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Every message of the create/start/exec handshakes. The order is fixed per flow (see
/// docs/oci.md): runtime → child `Go`, `Joined`; child → runtime `NeedMaps` / `InitPid` (general path
/// only), `RunHooks`, `Ready`; runtime → child `HooksDone`; `start` → init `Start`; any side →
/// `Error` then exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Runtime → child: uid/gid maps are written; go on with the setup.
    Go,
    /// Runtime → init: init now sits in its cgroups (sent after `Go`: moving a task between v1
    /// cgroups waits for an RCU grace period, several ms, which overlaps the rootfs setup).
    Joined,
    /// First-stage child → runtime: I unshared a user namespace, write my uid/gid maps.
    NeedMaps,
    /// First-stage child → runtime: this is the init's pid (host view); I exit now.
    InitPid(i32),
    /// Init → runtime: mounts are prepared, run prestart and createRuntime hooks now.
    RunHooks,
    /// Runtime → init: hooks ran.
    HooksDone,
    /// Init → runtime: everything is set up; waiting for `start`.
    Ready,
    /// `start` → init: exec the user process.
    Start,
    /// Either way: the named step failed; the sender exits.
    Error(String),
}

/// One end of a channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair (both CLOEXEC).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid two-int array.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: two fresh fds that nobody else owns.
        Ok(unsafe {
            (
                Channel::from_owned(OwnedFd::from_raw_fd(fds[0])),
                Channel::from_owned(OwnedFd::from_raw_fd(fds[1])),
            )
        })
    }

    /// Wraps a connected SEQPACKET socket.
    pub fn from_owned(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// The raw socket.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends a message with optional fds.
    pub fn send(&self, msg: &Msg, fds: &[RawFd]) -> io::Result<()> {
        let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
        send_with_fds(self.raw(), &body, fds)
    }

    /// Bounds every later send and receive on this end (`SO_RCVTIMEO`/`SO_SNDTIMEO`; also a
    /// `connect` made after it): a peer that is stopped or hung turns into an error of kind
    /// `TimedOut` instead of a wait for ever.
    pub fn set_timeout(&self, d: std::time::Duration) -> io::Result<()> {
        set_timeouts(self.raw(), d)
    }

    /// Receives a message and up to `max_fds` fds; `Ok(None)` on EOF (the peer exited or exec'd).
    pub fn recv(&self, max_fds: usize) -> io::Result<Option<(Msg, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; 64 * 1024];
        let (n, fds) = recv_with_fds(self.raw(), &mut buf, max_fds).map_err(timed_out)?;
        if n == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..n]).map_err(io::Error::other)?;
        Ok(Some((msg, fds)))
    }

    /// Receives a message and fails unless it is `want`; an `Error` from the peer or EOF becomes
    /// an error naming `step`.
    pub fn expect(&self, want: &Msg, step: &str) -> crate::step::StepResult<()> {
        match self.recv(0) {
            Ok(Some((m, _))) if &m == want => Ok(()),
            Ok(Some((Msg::Error(e), _))) => Err(e.into()),
            Ok(Some((m, _))) => Err(format!("{step}: unexpected message {m:?}").into()),
            Ok(None) => Err(format!("{step}: the container process exited early").into()),
            Err(e) => Err(format!("{step}: {e}").into()),
        }
    }
}

/// sendmsg with `SCM_RIGHTS` (carve-unix's), the whole body in one packet. `sock` is held open
/// by the caller for the call.
pub fn send_with_fds(sock: RawFd, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
    // SAFETY: every caller passes a socket it owns and keeps open across this call.
    let sock = unsafe { BorrowedFd::borrow_raw(sock) };
    carve_unix::send_with_fds(sock, body, fds).map(drop)
}

/// Sets `SO_RCVTIMEO` and `SO_SNDTIMEO` of a socket (a unix `connect` honours the latter).
pub fn set_timeouts(sock: RawFd, d: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: a valid timeval of the size given, on a socket we hold.
        let r = unsafe {
            libc::setsockopt(
                sock,
                libc::SOL_SOCKET,
                opt,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A socket timeout (EAGAIN on a blocking socket) as an error that says so.
pub fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer within the wait bound (CARVE_OCI_TIMEOUT, default 60 s)",
        )
    } else {
        e
    }
}

/// recvmsg with `SCM_RIGHTS` (carve-unix's; received fds are CLOEXEC). `sock` is held open by
/// the caller for the call.
pub fn recv_with_fds(
    sock: RawFd,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    // SAFETY: every caller passes a socket it owns and keeps open across this call.
    let sock = unsafe { BorrowedFd::borrow_raw(sock) };
    match carve_unix::recv_with_fds(sock, buf, max_fds) {
        // A peer that exits with a message of ours unread makes the kernel report ECONNRESET
        // once, ahead of what the peer sent before exiting (often its Error): read on, so that
        // message is not lost (then EOF).
        Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => {
            carve_unix::recv_with_fds(sock, buf, max_fds)
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_cross_and_eof_is_seen() {
        let (a, b) = Channel::pair().unwrap();
        let (x, _y) = Channel::pair().unwrap();
        a.send(&Msg::InitPid(42), &[x.raw()]).unwrap();
        let (m, fds) = b.recv(1).unwrap().unwrap();
        assert_eq!(m, Msg::InitPid(42));
        assert_eq!(fds.len(), 1);
        a.send(&Msg::Error("boom".into()), &[]).unwrap();
        let e = b.expect(&Msg::Ready, "ready").unwrap_err();
        assert_eq!(e.to_string(), "boom");
        drop(a);
        assert!(b.recv(0).unwrap().is_none());
    }
}
