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
    use std::os::fd::FromRawFd;
    wait_readable(l.as_raw_fd(), "the runtime to connect");
    let (conn, _) = l.accept().unwrap();
    let mut buf = vec![0u8; 8192];
    let mut cmsg = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr, pointers to live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg);
    // SAFETY: recvmsg into the buffers above.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0);
    // SAFETY: the runtime sent one SCM_RIGHTS header with one fd.
    let fd = unsafe {
        let h = libc::CMSG_FIRSTHDR(&msg);
        assert!(!h.is_null() && (*h).cmsg_type == libc::SCM_RIGHTS);
        *(libc::CMSG_DATA(h) as *const i32)
    };
    buf.truncate(n as usize);
    // SAFETY: a fresh fd we own now.
    (buf, unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Accepts one connection on a `listenerPath` socket: the JSON state and the notify fd.
pub fn recv_listener(l: &std::os::unix::net::UnixListener) -> (Value, std::os::fd::OwnedFd) {
    let (buf, fd) = accept_with_fd(l);
    (serde_json::from_slice(&buf).unwrap(), fd)
}
