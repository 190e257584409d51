//! Consoles of system containers (`init = true`): the runtime runs their init on a pty
//! (`terminal: true`) and hands the master to carve over `--console-socket`; the process that
//! started the container (the supervisor) keeps it, copies its output to the partition's log
//! and to every client of the partition's console socket, and writes what clients send into it.
//! `carve console NAME` is such a client ([`attach`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The console socket of a partition, in its state folder.
pub fn socket_path(partition_dir: &Path) -> PathBuf {
    partition_dir.join("console.sock")
}

/// Accepts the runtime's connection on `listener` and receives the pty master it sends
/// (SCM_RIGHTS beside the slave's path).
pub fn receive_master(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    let (conn, _) = listener.accept()?;
    let mut buf = [0u8; 512];
    let (_, fds) = carve_unix::recv_with_fds(conn.as_fd(), &mut buf, 1)?;
    fds.into_iter()
        .next()
        .ok_or_else(|| std::io::Error::other("the runtime sent no console fd"))
}

/// Serves `master`: its output appended to `log` and sent to every client of a unix socket at
/// `sock` (made here), clients' input written into it. Runs on threads until the container's
/// side of the pty is closed (its processes ended); the socket file is removed then.
pub fn serve(master: OwnedFd, log: &Path, sock: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock)?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut reader = File::from(master);
    let writer = Arc::new(Mutex::new(reader.try_clone()?));
    let clients: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
    let listen_fd = listener.as_raw_fd();
    {
        let clients = clients.clone();
        std::thread::Builder::new()
            .name("console-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(conn) = conn else { break };
                    let Ok(mut input) = conn.try_clone() else {
                        continue;
                    };
                    clients.lock().expect("console clients").push(conn);
                    let writer = writer.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = input.read(&mut buf) {
                            if writer
                                .lock()
                                .expect("console")
                                .write_all(&buf[..n])
                                .is_err()
                            {
                                break;
                            }
                        }
                    });
                }
            })?;
    }
    let sock = sock.to_path_buf();
    std::thread::Builder::new()
        .name("console-pump".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every process holding the slave has ended.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let _ = out.write_all(&buf[..n]);
                clients
                    .lock()
                    .expect("console clients")
                    .retain_mut(|c| c.write_all(&buf[..n]).is_ok());
            }
            let _ = std::fs::remove_file(&sock);
            // Wakes the accept thread (accept on a shut-down socket fails on Linux) and drops
            // the clients, which see the console end.
            // SAFETY: shutdown on the listener's fd, which the accept thread still owns.
            unsafe { libc::shutdown(listen_fd, libc::SHUT_RDWR) };
            for c in clients.lock().expect("console clients").drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        })?;
    Ok(())
}

/// Attaches this process's stdin and stdout to the console at `sock` until the console ends, or
/// stdin ends and the console has been quiet for `linger`. On a terminal, stdin is put in raw
/// mode and Ctrl-] detaches.
pub fn attach(sock: &Path, linger: std::time::Duration) -> std::io::Result<()> {
    let conn = UnixStream::connect(sock)?;
    let mut input = conn.try_clone()?;
    // On a terminal, raw mode until we return (a failure to set it leaves cooked mode).
    let raw = carve_unix::RawMode::stdin().ok().flatten();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let done = done.clone();
        let is_tty = raw.is_some();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdin.read(&mut buf) {
                let chunk = &buf[..n];
                if is_tty {
                    if let Some(i) = chunk.iter().position(|b| *b == 0x1d) {
                        let _ = input.write_all(&chunk[..i]);
                        break;
                    }
                }
                if input.write_all(chunk).is_err() {
                    break;
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            if is_tty {
                let _ = input.shutdown(std::net::Shutdown::Both);
            }
        });
    }
    let mut output = conn;
    output.set_read_timeout(Some(linger))?;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 4096];
    loop {
        match output.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                stdout.write_all(&buf[..n])?;
                stdout.flush()?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    drop(raw);
    Ok(())
}
