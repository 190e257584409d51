//! Unix plumbing that several tiers need and none owns: file descriptors passed beside a message
//! on a unix socket ([`send_with_fds`], [`recv_with_fds`]) and a terminal held in raw mode while a
//! guard lives ([`RawMode`]).
//!
//! Why a crate of its own: the container runtime (handshake channel, `--console-socket`), the
//! engine (system-container consoles), the VM tier (QMP `getfd`) and the `carve` binary (VM
//! console) all need them, and tiers never import each other. carve-core is the one crate below
//! them all, but it promises to change nothing (it reads /proc and /sys, it never calls a
//! syscall that changes state); tcsetattr and sendmsg would break that promise. carve-journal
//! records host changes: a terminal mode or a passed fd is process state, not a host change.
//! So this leaf crate depends only on nix and libc, and every crate may depend on it.
//!
//! Built on nix's `sendmsg`/`recvmsg` with `ControlMessage::ScmRights` and its termios
//! (`cfmakeraw`), so no msghdr is built by hand.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Sends `body` with `fds` beside it (`SCM_RIGHTS`; none: a plain send), retrying on EINTR and
/// never raising SIGPIPE (`MSG_NOSIGNAL`: a peer that is gone is an `EPIPE` error). Returns how
/// many bytes of `body` went: the fds ride with the first byte, so on a stream socket the caller
/// writes the rest plainly.
pub fn send_with_fds(sock: BorrowedFd<'_>, body: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let iov = [IoSlice::new(body)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Receives one message into `buf` and up to `max_fds` fds sent beside it (received CLOEXEC, so
/// no child inherits them by accident). Returns the bytes read (0: the peer closed) and the fds,
/// owned. EINTR is retried; every other error is the caller's to judge (a seqpacket channel reads
/// past one `ECONNRESET`, a console socket does not).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let want = max_fds.max(1) * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(want as u32) } as usize;
    let mut cmsg = vec![0u8; space];
    let mut iov = [IoSliceMut::new(buf)];
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    loop {
        let msg = match recvmsg::<()>(raw, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r.map_err(io::Error::from)?,
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(got) = c {
                // SAFETY: the kernel installed these fds in this process for us; nobody else
                // holds them, so each becomes owned exactly once.
                fds.extend(
                    got.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        return Ok((msg.bytes, fds));
    }
}

/// A terminal put into raw mode (`cfmakeraw`: no echo, no line editing, no signals from keys);
/// its previous settings come back when the guard drops, on error paths too.
pub struct RawMode<'fd> {
    fd: BorrowedFd<'fd>,
    saved: Termios,
}

impl<'fd> RawMode<'fd> {
    /// Puts `fd` into raw mode if it is a terminal (`Ok(None)` if it is not).
    pub fn enter(fd: BorrowedFd<'fd>) -> io::Result<Option<RawMode<'fd>>> {
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            return Ok(None);
        }
        let saved = tcgetattr(fd).map_err(io::Error::from)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).map_err(io::Error::from)?;
        Ok(Some(RawMode { fd, saved }))
    }

    /// Puts stdin into raw mode if it is a terminal.
    pub fn stdin() -> io::Result<Option<RawMode<'static>>> {
        // SAFETY: fd 0 is never closed by carve's processes, so it outlives any guard.
        RawMode::enter(unsafe { BorrowedFd::borrow_raw(0) })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.fd.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn fds_cross_a_socket_and_arrive_cloexec() {
        let (a, b) = UnixDatagram::pair().unwrap();
        let (x, y) = UnixDatagram::pair().unwrap();
        let n = send_with_fds(a.as_fd(), b"hello", &[x.as_raw_fd(), y.as_raw_fd()]).unwrap();
        assert_eq!(n, 5);
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 4).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 2);
        for fd in &fds {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0, "received fds are CLOEXEC");
        }
        // The received fd is the same socket: what goes into it comes out of its peer.
        let got = UnixDatagram::from(fds.into_iter().next().unwrap());
        got.send(b"via").unwrap();
        let mut b2 = [0u8; 8];
        assert_eq!(y.recv(&mut b2).unwrap(), 3);
    }

    #[test]
    fn plain_messages_and_a_gone_peer() {
        let (a, b) = UnixDatagram::pair().unwrap();
        assert_eq!(send_with_fds(a.as_fd(), b"x", &[]).unwrap(), 1);
        let mut buf = [0u8; 4];
        let (n, fds) = recv_with_fds(b.as_fd(), &mut buf, 1).unwrap();
        assert_eq!((n, fds.len()), (1, 0));
        drop(b);
        assert!(
            send_with_fds(a.as_fd(), b"x", &[]).is_err(),
            "no SIGPIPE, an error"
        );
    }

    #[test]
    fn raw_mode_is_none_off_a_terminal_and_restores_a_pty() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert!(RawMode::enter(r.as_fd()).unwrap().is_none());
        let pty = nix::pty::openpty(None, None).unwrap();
        let before = tcgetattr(pty.slave.as_fd()).unwrap();
        {
            let _g = RawMode::enter(pty.slave.as_fd())
                .unwrap()
                .expect("a pty is a terminal");
            let during = tcgetattr(pty.slave.as_fd()).unwrap();
            assert!(!during
                .local_flags
                .contains(nix::sys::termios::LocalFlags::ECHO));
        }
        let after = tcgetattr(pty.slave.as_fd()).unwrap();
        assert_eq!(before.local_flags, after.local_flags);
        assert_eq!(before.input_flags, after.input_flags);
    }
}
