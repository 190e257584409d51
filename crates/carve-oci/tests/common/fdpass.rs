//! Receiving what the runtime sends over a unix socket with an fd beside it (SCM_RIGHTS): the
//! container state and the seccomp notify fd at `listenerPath`, the pty path and master at
//! `--console-socket`.

use serde_json::Value;
use std::os::fd::AsRawFd;

/// Fails the test instead of hanging when nothing comes within 30 s.
pub fn wait_readable(fd: std::os::fd::RawFd, what: &str) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one live pollfd.
    let r = unsafe { libc::poll(&mut p, 1, 30_000) };
    assert_eq!(r, 1, "timed out waiting for {what}");
}

/// Accepts one connection on `l` and reads one message: its bytes and the fd passed with it.
pub fn accept_with_fd(l: &std::os::unix::net::UnixListener) -> (Vec<u8>, std::os::fd::OwnedFd) {
    use std::os::fd::AsFd;
    wait_readable(l.as_raw_fd(), "the runtime to connect");
    let (conn, _) = l.accept().unwrap();
    let mut buf = vec![0u8; 8192];
    let (n, fds) = carve_unix::recv_with_fds(conn.as_fd(), &mut buf, 1).unwrap();
    assert!(n > 0, "an empty message");
    let fd = fds
        .into_iter()
        .next()
        .expect("the runtime sent an fd beside the message");
    buf.truncate(n);
    (buf, fd)
}

/// Accepts one connection on a `listenerPath` socket: the JSON state and the notify fd.
pub fn recv_listener(l: &std::os::unix::net::UnixListener) -> (Value, std::os::fd::OwnedFd) {
    let (buf, fd) = accept_with_fd(l);
    (serde_json::from_slice(&buf).unwrap(), fd)
}
