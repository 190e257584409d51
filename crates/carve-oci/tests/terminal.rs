//! The foreground terminal (runc's tty mode without --console-socket): `carve-oci run` and
//! `carve-oci exec -t` driven from a pty this test opens, as a user at a terminal would.

mod common;
use common::*;
use serde_json::json;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A pty pair: the test holds the master; the slave is the runtime's stdin/stdout/stderr and
/// controlling terminal.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn check(r: libc::c_int, what: &str) {
    assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
}

impl Pty {
    fn open(rows: u16, cols: u16) -> Pty {
        // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r/open on fds and buffers we own.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            check(m, "posix_openpt");
            let master = OwnedFd::from_raw_fd(m);
            check(libc::grantpt(m), "grantpt");
            check(libc::unlockpt(m), "unlockpt");
            let mut name = [0 as libc::c_char; 64];
            check(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), "ptsname");
            let s = libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            check(s, "open pty slave");
            let p = Pty {
                master,
                slave: OwnedFd::from_raw_fd(s),
            };
            p.resize(rows, cols);
            p
        }
    }

    /// Sets the window size (the kernel sends SIGWINCH to the slave's foreground group).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a live winsize.
        check(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
            "TIOCSWINSZ",
        );
    }

    fn termios(&self) -> libc::termios {
        // SAFETY: zeroed termios is a valid buffer for tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr on the slave we hold.
        check(
            unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) },
            "tcgetattr",
        );
        t
    }

    /// Starts `carve-oci --root ROOT ARGS…` in a new session with this pty as its terminal.
    fn spawn(&self, env: &Env, args: &[&str]) -> Child {
        let io = || Stdio::from(self.slave.try_clone().unwrap());
        let mut cmd = Command::new(BIN);
        cmd.arg("--root")
            .arg(&env.root)
            .args(args)
            .stdin(io())
            .stdout(io())
            .stderr(io());
        // SAFETY: setsid and TIOCSCTTY on fd 0 (the slave) are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    fn write(&self, s: &str) {
        let mut b = s.as_bytes();
        while !b.is_empty() {
            // SAFETY: write from a live buffer.
            let n = unsafe { libc::write(self.master.as_raw_fd(), b.as_ptr().cast(), b.len()) };
            check(n as i32, "write to the pty");
            b = &b[n as usize..];
        }
    }

    /// Reads what arrives on the master into `out` until `want` appears in it (true) or
    /// `timeout` passes (false).
    fn read_until(&self, out: &mut String, want: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while !out.contains(want) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut p = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, left.as_millis().max(1) as i32) };
            if r <= 0 {
                continue;
            }
            // SAFETY: read into a live buffer.
            let n = unsafe { libc::read(self.master.as_raw_fd(), buf.as_mut_ptr().cast(), 4096) };
            if n <= 0 {
                return out.contains(want);
            }
            out.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
        }
        true
    }

    /// Sends `cmd` (one shell line) until its output shows `want` (a resize travels through a
    /// signal: the first tries may see the old size).
    fn ask(&self, cmd: &str, want: &str) -> String {
        let mut out = String::new();
        for _ in 0..20 {
            self.write(&format!("{cmd}\r"));
            if self.read_until(&mut out, want, Duration::from_millis(500)) {
                return out;
            }
        }
        panic!("{cmd:?} never printed {want:?}; the terminal showed:\n{out}");
    }
}

/// Waits (bounded) for the runtime to exit, killing it on timeout.
fn wait_exit(child: &mut Child, pty: &Pty, out: &mut String) -> i32 {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        // Keep draining the pty so the runtime never blocks writing to it.
        pty.read_until(out, "\u{0}never", Duration::from_millis(50));
        if let Some(s) = child.try_wait().unwrap() {
            // A runtime killed by a signal shows as minus that signal, so a failure names it.
            return s.code().unwrap_or_else(|| {
                -std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
            });
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("carve-oci did not exit; the terminal showed:\n{out}");
        }
    }
}

fn same_termios(a: &libc::termios, b: &libc::termios) -> bool {
    a.c_iflag == b.c_iflag
        && a.c_oflag == b.c_oflag
        && a.c_cflag == b.c_cflag
        && a.c_lflag == b.c_lflag
        && a.c_cc == b.c_cc
}

fn terminal_env(prefix: &str, args: &[&str]) -> Env {
    let mut e = Env::new(prefix, args);
    e.config["process"]["terminal"] = json!(true);
    e.config["process"]["env"] = json!(["PATH=/bin", "TERM=xterm", "PS1=$ "]);
    e.write_config();
    e
}

#[test]
fn run_in_the_foreground_proxies_the_terminal() {
    if !require_root() {
        return;
    }
    let e = terminal_env("term-run", &["sh"]);
    let pty = Pty::open(33, 97);
    let before = pty.termios();
    let _g = Guard { env: &e };
    let b = e.bundle.to_str().unwrap().to_string();
    let mut child = pty.spawn(&e, &["run", "--bundle", &b, &e.id]);

    // The shell inside runs on a pty of its own, sized like the caller's terminal.
    let out = pty.ask("tty", "/dev/pts/");
    assert!(!out.contains("not a tty"), "{out}");
    // The runtime stepped into the container's cgroups only around init's clone: it waits in
    // its own ones (those it inherited from this test).
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap(),
        std::fs::read_to_string("/proc/self/cgroup").unwrap(),
        "carve-oci run did not return to its own cgroups"
    );
    pty.ask("stty size", "33 97");
    // The caller's terminal is raw meanwhile: what is typed reaches the container unprocessed
    // and the echo comes from the container's pty.
    let t = pty.termios();
    assert_eq!(
        t.c_lflag & (libc::ICANON | libc::ECHO),
        0,
        "caller's terminal not raw"
    );
    let out = pty.ask("echo typed-$((6*7))", "typed-42");
    assert!(
        out.contains("echo typed-$((6*7))"),
        "input not echoed: {out}"
    );
    // A resize of the caller's terminal reaches the container (SIGWINCH → TIOCSWINSZ).
    pty.resize(41, 123);
    pty.ask("stty size", "41 123");
    // The exit status comes back, and the caller's terminal settings with it.
    pty.write("exit 7\r");
    let mut out = String::new();
    let code = wait_exit(&mut child, &pty, &mut out);
    assert_eq!(code, 7, "exit status; the terminal showed:\n{out}");
    assert!(
        same_termios(&before, &pty.termios()),
        "the caller's termios was not restored"
    );
    drop(_g);
    e.assert_gone();
}

#[test]
fn exec_tty_in_the_foreground_proxies_the_terminal_and_signals() {
    if !require_root() {
        return;
    }
    let e = Env::new("term-exec", &["sleep", "1000"]);
    let _g = e.create_started();
    let pty = Pty::open(25, 81);
    let before = pty.termios();

    let mut child = pty.spawn(&e, &["exec", "-t", "-e", "PS1=$ ", &e.id, "sh"]);
    pty.ask("tty", "/dev/pts/");
    pty.ask("stty size", "25 81");
    pty.ask("echo in-$((2+3))", "in-5");
    pty.write("exit 3\r");
    let mut out = String::new();
    assert_eq!(wait_exit(&mut child, &pty, &mut out), 3, "{out}");
    assert!(
        same_termios(&before, &pty.termios()),
        "termios not restored"
    );

    // Signals sent to the runtime reach the process (sleep dies of SIGTERM: 128 + 15).
    let mut child = pty.spawn(&e, &["exec", "-t", &e.id, "sleep", "100"]);
    // Wait until the sleep runs inside the container.
    let end = Instant::now() + Duration::from_secs(10);
    while !e.ok(&["ps", &e.id]).contains("sleep 100") {
        assert!(Instant::now() < end, "exec'd sleep never showed up");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut out = String::new();
    assert_eq!(wait_exit(&mut child, &pty, &mut out), 128 + 15, "{out}");
    assert!(
        same_termios(&before, &pty.termios()),
        "termios not restored"
    );
    drop(_g);
    e.assert_gone();
}

#[test]
fn detached_terminal_without_console_socket_is_refused() {
    if !require_root() {
        return;
    }
    let e = terminal_env("term-det", &["sh"]);
    let b = e.bundle.to_str().unwrap().to_string();
    for args in [
        vec!["run", "-d", "--bundle", &b, &e.id],
        vec!["create", "--bundle", &b, &e.id],
    ] {
        let err = e.fails(&args);
        assert!(err.contains("--console-socket"), "{args:?}: {err}");
        assert!(!e.root.join(&e.id).exists(), "{args:?} left state behind");
        e.assert_gone();
    }
    // exec -d -t into a running container.
    let e = Env::new("term-det2", &["sleep", "1000"]);
    let _g = e.create_started();
    e.fails_with(&["exec", "-d", "-t", &e.id, "sh"], &["--console-socket"]);
    drop(_g);
    e.assert_gone();
}
