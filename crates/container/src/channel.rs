//! The typed channel between the runtime and the processes it forks: a `SOCK_SEQPACKET` unix
//! socket pair (message boundaries kept, EOF when the peer exits or execs), one JSON-encoded
//! [`Msg`] per packet, file descriptors passed beside it with `SCM_RIGHTS`.
//!
//! Both ends are `CLOEXEC`: when the container process execs its user program, its end closes and
//! the runtime reads EOF — that is how `start` and `exec` learn that the exec succeeded without
//! any timer.

use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

/// sendmsg with `SCM_RIGHTS`.
pub fn send_with_fds(sock: RawFd, body: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: body.as_ptr() as *mut libc::c_void,
        iov_len: body.len(),
    };
    let space = if fds.is_empty() {
        0
    } else {
        // SAFETY: CMSG_SPACE is a pure computation.
        unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize }
    };
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: zeroed msghdr is valid; we fill in the pointers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` bytes, enough for one header with the fds.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr() as *const u8,
                libc::CMSG_DATA(c),
                std::mem::size_of_val(fds),
            );
        }
    }
    loop {
        // SAFETY: msg points at live buffers for the duration of the call.
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(());
    }
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

/// recvmsg with `SCM_RIGHTS` (received fds are CLOEXEC).
pub fn recv_with_fds(
    sock: RawFd,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((max_fds.max(1) * 4) as u32) as usize };
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: zeroed msghdr is valid; pointers filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    let mut reset_seen = false;
    let n = loop {
        // SAFETY: msg points at live buffers.
        let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // A peer that exits with a message of ours unread makes the kernel report
            // ECONNRESET once, ahead of what the peer sent before exiting (often its Error):
            // read on, so that message is not lost (then EOF).
            if e.raw_os_error() == Some(libc::ECONNRESET) && !reset_seen {
                reset_seen = true;
                continue;
            }
            return Err(e);
        }
        break r as usize;
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control buffer the kernel filled, with the libc CMSG macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, fds))
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
