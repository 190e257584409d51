//! The foreground terminal of `carve-oci run` / `exec -t` without `--console-socket` (runc's
//! foreground tty mode): the container's pty master stays in the runtime, which puts its own
//! stdin terminal into raw mode ([`RawMode`], restored on drop), copies stdin → master and
//! master → stdout, turns SIGWINCH into a window-size change of the master, forwards the usual
//! signals to the container process and returns once that process has exited ([`forward`]).
//!
//! Synchronous and poll(2)-based: one loop over stdin, the master, the process's pidfd and a
//! signalfd; no threads, no async runtime.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Signals forwarded to the container process (as `runc run` / `runc exec` do). SIGWINCH is
/// handled here instead: it resizes the pty.
const FORWARD: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// A terminal put into raw mode; its previous settings come back on drop (carve-unix's guard,
/// shared with the engine's and the VM's consoles).
pub use carve_unix::RawMode;

/// The window size of the terminal on `fd`, if it is one.
pub fn window_size(fd: RawFd) -> Option<libc::winsize> {
    // SAFETY: zeroed winsize is valid; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: ioctl with a pointer to a live winsize.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some(ws)
}

/// Copies the window size of the caller's terminal (stdin, else stdout) to the pty `master`.
/// Nothing happens when neither is a terminal (the config's `consoleSize` stays).
pub fn copy_window_size(master: &OwnedFd) {
    if let Some(ws) = window_size(0).or_else(|| window_size(1)) {
        if ws.ws_row != 0 || ws.ws_col != 0 {
            // SAFETY: TIOCSWINSZ with a live winsize on the master we hold.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
    }
}

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl flag changes on a live fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: read into a live buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: write from a live buffer of the given length.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes all of `buf` to a blocking fd (stdout); a vanished reader ends the copy quietly.
fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match write_fd(fd, buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, -1) };
            }
            Err(_) => return false,
        }
    }
    true
}

/// The forwarded signals (and SIGWINCH), blocked and readable on a signalfd from
/// [`Signals::block`] on; the previous mask comes back on drop. Block them before the container
/// process is started, so that none is lost (or kills the runtime) in between: the runtime
/// unblocks everything in the processes it forks.
pub struct Signals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl Signals {
    /// Blocks the signals and opens the signalfd.
    pub fn block() -> io::Result<Signals> {
        // SAFETY: zeroed sigset_t is a valid buffer for sigprocmask to fill.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigset operations on a local set; sigprocmask/signalfd with valid pointers.
        let fd = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in FORWARD {
                libc::sigaddset(&mut set, s);
            }
            libc::sigaddset(&mut set, libc::SIGWINCH);
            libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: restoring the mask just read.
            unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
            return Err(e);
        }
        // SAFETY: a fresh fd that nobody else owns.
        let fd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Ok(Signals { fd, old })
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restoring the mask read by sigprocmask.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// Until the process behind `pidfd` exits: forwards signals to it and, with a pty `master`,
/// proxies stdin → master and master → stdout and applies SIGWINCH as a window-size change of
/// the master. Returns once the pidfd is readable and what the master still held is written out;
/// the caller then reaps the process. Put stdin into raw mode first ([`RawMode`]) for a terminal.
///
/// Without a master, SIGWINCH is forwarded like the others (the process shares the caller's
/// terminal, if any).
pub fn forward(pidfd: &OwnedFd, master: Option<&OwnedFd>, signals: &Signals) -> io::Result<()> {
    if let Some(m) = master {
        set_nonblock(m.as_raw_fd());
    }
    let mut p = Proxy::new(master.map(|m| m.as_raw_fd()), 0, 1);
    loop {
        let mut fds = p.poll_set(pidfd.as_raw_fd(), signals.fd.as_raw_fd());
        // SAFETY: four valid pollfds (negative fds are ignored by poll).
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents & libc::POLLIN != 0 {
            relay_signals(pidfd, master, signals);
        }
        if fds[3].revents & libc::POLLOUT != 0 {
            p.flush_pending();
        }
        if fds[3].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            p.copy_master_out();
        }
        if fds[2].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            p.copy_stdin_in();
        }
        if fds[0].revents != 0 {
            break;
        }
    }
    p.drain_master();
    Ok(())
}

/// Reads every pending signal from the signalfd: SIGWINCH resizes the `master`, the others go
/// to the process.
fn relay_signals(pidfd: &OwnedFd, master: Option<&OwnedFd>, signals: &Signals) {
    // SAFETY: zeroed siginfo is a valid buffer of the size read.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of_val(&info);
    // SAFETY: reading one signalfd_siginfo into a live buffer.
    while unsafe {
        libc::read(
            signals.fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    } == size as isize
    {
        let sig = info.ssi_signo as i32;
        match master {
            Some(m) if sig == libc::SIGWINCH => copy_window_size(m),
            _ => {
                let _ = crate::sys::pidfd_send_signal(pidfd, sig);
            }
        }
    }
}

/// The copying half of [`forward`]: stdin → a non-blocking `master`, `master` → stdout (fds
/// given, so the copy is tested over socket pairs).
struct Proxy {
    /// The pty master (-1: none).
    master: RawFd,
    stdin: RawFd,
    stdout: RawFd,
    stdin_open: bool,
    master_open: bool,
    /// Input read from stdin that the master did not take yet (its buffer was full).
    pending: Vec<u8>,
    buf: Vec<u8>,
}

impl Proxy {
    fn new(master: Option<RawFd>, stdin: RawFd, stdout: RawFd) -> Proxy {
        Proxy {
            master: master.unwrap_or(-1),
            stdin,
            stdout,
            stdin_open: master.is_some(),
            master_open: master.is_some(),
            pending: Vec::new(),
            buf: vec![0u8; 16 * 1024],
        }
    }

    /// pidfd, signalfd, stdin (unless input is pending) and master (writable wanted while
    /// input is pending), in that order.
    fn poll_set(&self, pidfd: RawFd, sfd: RawFd) -> [libc::pollfd; 4] {
        let pfd = |fd, events| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let stdin = if self.stdin_open && self.pending.is_empty() {
            self.stdin
        } else {
            -1
        };
        let out = if self.pending.is_empty() {
            0
        } else {
            libc::POLLOUT
        };
        [
            pfd(pidfd, libc::POLLIN),
            pfd(sfd, libc::POLLIN),
            pfd(stdin, libc::POLLIN),
            pfd(
                if self.master_open { self.master } else { -1 },
                libc::POLLIN | out,
            ),
        ]
    }

    /// Writes what the master can take of the pending input.
    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match write_fd(self.master, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.pending.clear(),
        }
    }

    /// Copies what the master holds to stdout.
    fn copy_master_out(&mut self) {
        match read_fd(self.master, &mut self.buf) {
            Ok(0) => self.master_open = false,
            Ok(n) => {
                if !write_all(self.stdout, &self.buf[..n]) {
                    // Nobody reads our stdout any more: keep draining the master so the
                    // container does not block on a full pty.
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            // EIO: every slave fd is closed (the process exited).
            Err(_) => self.master_open = false,
        }
    }

    /// Copies what stdin holds to the master; what the master cannot take waits in `pending`.
    fn copy_stdin_in(&mut self) {
        match read_fd(self.stdin, &mut self.buf) {
            Ok(0) => self.stdin_open = false,
            Ok(n) => {
                let mut data = &self.buf[..n];
                while !data.is_empty() {
                    match write_fd(self.master, data) {
                        Ok(w) => data = &data[w..],
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.pending.extend_from_slice(data);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.stdin_open = false,
        }
    }

    /// The process is gone: writes out what the pty still holds (its children may keep the
    /// slave open; takes only what is there now).
    fn drain_master(&mut self) {
        if !self.master_open {
            return;
        }
        loop {
            match read_fd(self.master, &mut self.buf) {
                Ok(n) if n > 0 => {
                    if !write_all(self.stdout, &self.buf[..n]) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two fds into the array.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        // SAFETY: two fresh fds that nobody else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = read_fd(fd.as_raw_fd(), &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn copies_both_ways_and_stops_at_eof() {
        let (master, container) = pair();
        let (stdin, user_in) = pair();
        let (stdout, user_out) = pair();
        let mut p = Proxy::new(
            Some(master.as_raw_fd()),
            stdin.as_raw_fd(),
            stdout.as_raw_fd(),
        );
        write_all(user_in.as_raw_fd(), b"ls\n");
        p.copy_stdin_in();
        assert_eq!(read_all(&container), b"ls\n");
        write_all(container.as_raw_fd(), b"bin etc\n");
        p.copy_master_out();
        assert_eq!(read_all(&user_out), b"bin etc\n");
        drop(user_in);
        p.copy_stdin_in();
        assert!(!p.stdin_open);
        assert_eq!(p.poll_set(-1, -1)[2].fd, -1, "a closed stdin is not polled");
        drop(container);
        p.copy_master_out();
        assert!(!p.master_open);
    }

    #[test]
    fn input_the_master_cannot_take_waits_and_pauses_stdin() {
        let (master, container) = pair();
        let (stdin, user_in) = pair();
        let (stdout, _user_out) = pair();
        let mut p = Proxy::new(
            Some(master.as_raw_fd()),
            stdin.as_raw_fd(),
            stdout.as_raw_fd(),
        );
        // Fill the master's send buffer until it refuses more.
        let chunk = [b'x'; 4096];
        while write_fd(master.as_raw_fd(), &chunk).is_ok() {}
        write_all(user_in.as_raw_fd(), b"typed");
        p.copy_stdin_in();
        assert_eq!(p.pending, b"typed");
        let set = p.poll_set(-1, -1);
        assert_eq!(set[2].fd, -1, "stdin waits while input is pending");
        assert_ne!(set[3].events & libc::POLLOUT, 0);
        let got = read_all(&container);
        assert!(got.iter().all(|b| *b == b'x'));
        p.flush_pending();
        assert!(p.pending.is_empty());
        assert!(read_all(&container).ends_with(b"typed"));
    }

    #[test]
    fn what_the_master_holds_at_exit_is_written_out() {
        let (master, container) = pair();
        let (stdout, user_out) = pair();
        let mut p = Proxy::new(Some(master.as_raw_fd()), -1, stdout.as_raw_fd());
        write_all(container.as_raw_fd(), b"last words");
        p.drain_master();
        assert_eq!(read_all(&user_out), b"last words");
        let idle = Proxy::new(None, 0, 1);
        assert_eq!(
            idle.poll_set(-1, -1)[3].fd,
            -1,
            "no master, nothing to copy"
        );
        assert_eq!(idle.poll_set(-1, -1)[2].fd, -1);
    }
}
