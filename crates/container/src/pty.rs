//! The foreground terminal of `carve-oci run` / `exec -t` without `--console-socket` (runc's
//! foreground tty mode): the container's pty master stays in the runtime, which puts its own
//! stdin terminal into raw mode ([`RawMode`], restored on drop), copies stdin → master and
//! master → stdout, turns SIGWINCH into a window-size change of the master, forwards the usual
//! signals to the container process and returns once that process has exited ([`forward`]).
//!
//! Synchronous and poll(2)-based: one loop over stdin, the master, the process's pidfd and a
//! signalfd; no threads, no async runtime.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

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

/// A terminal put into raw mode; its previous settings come back on drop.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts `fd` into raw mode if it is a terminal (`None` if it is not).
    pub fn enter(fd: BorrowedFd<'_>) -> io::Result<Option<RawMode>> {
        let fd = fd.as_raw_fd();
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a live fd with a local termios buffer.
        unsafe {
            if libc::isatty(fd) != 1 {
                return Ok(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Some(RawMode { fd, saved }))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the settings read from the same fd.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

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
    let sfd = &signals.fd;
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    if let Some(m) = master {
        set_nonblock(m.as_raw_fd());
    }
    let mfd = master.map(|m| m.as_raw_fd()).unwrap_or(-1);
    // Input read from stdin that the master did not take yet (its buffer was full).
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open && pending.is_empty() {
                    0
                } else {
                    -1
                },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if master_open { mfd } else { -1 },
                events: libc::POLLIN | if pending.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            },
        ];
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
            // SAFETY: zeroed siginfo is a valid buffer of the size read.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of_val(&info);
            // SAFETY: reading one signalfd_siginfo into a live buffer.
            while unsafe {
                libc::read(
                    sfd.as_raw_fd(),
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
        if fds[3].revents & libc::POLLOUT != 0 && !pending.is_empty() {
            match write_fd(mfd, &pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => pending.clear(),
            }
        }
        if fds[3].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match read_fd(mfd, &mut buf) {
                Ok(0) => master_open = false,
                Ok(n) => {
                    if !write_all(1, &buf[..n]) {
                        // Nobody reads our stdout any more: keep draining the master so the
                        // container does not block on a full pty.
                    }
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                // EIO: every slave fd is closed (the process exited).
                Err(_) => master_open = false,
            }
        }
        if fds[2].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match read_fd(0, &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => {
                    let mut data = &buf[..n];
                    while !data.is_empty() {
                        match write_fd(mfd, data) {
                            Ok(w) => data = &data[w..],
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                pending.extend_from_slice(data);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => stdin_open = false,
            }
        }
        if fds[0].revents != 0 {
            break;
        }
    }
    // The process is gone: write out what the pty still holds (its children may keep the slave
    // open; take only what is there now).
    if master_open {
        loop {
            match read_fd(mfd, &mut buf) {
                Ok(n) if n > 0 => {
                    if !write_all(1, &buf[..n]) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
    }
    Ok(())
}
