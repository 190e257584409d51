//! `carve vm console NAME`: the terminal on the VM's serial console socket.

use super::{file_error, CmdError, Context, VmError};
use std::io::{Read, Write};

/// Attaches stdin and stdout to VM `name`'s serial console socket until Ctrl-] (in raw mode
/// on a terminal, or as a byte on piped stdin), the end of stdin, or the end of the console.
/// `connected` is called once the socket is open.
pub fn attach(ctx: &Context, name: &str, connected: &mut dyn FnMut()) -> Result<(), CmdError> {
    let paths = ctx.paths(name);
    let st = super::status(ctx, name)?;
    if st.qemu_pid.is_none() {
        return Err(VmError::NotRunning(name.into()).into());
    }
    let sock_path = paths.console_sock();
    let sock = std::os::unix::net::UnixStream::connect(&sock_path)
        .map_err(file_error("connecting to", &sock_path))?;
    connected();
    // Raw mode while attached, when stdin is a terminal (restored on every return path).
    let raw = carve_unix::RawMode::stdin().ok().flatten();
    let mut to_vm = sock.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        let mut stdin = std::io::stdin();
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(i) = buf[..n].iter().position(|&c| c == 0x1d) {
                let _ = to_vm.write_all(&buf[..i]);
                break;
            }
            if to_vm.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to_vm.shutdown(std::net::Shutdown::Both);
    });
    let mut from_vm = sock;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        match from_vm.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
        }
    }
    drop(raw);
    Ok(())
}
