//! `carve vm run` in the foreground: this process is the VM's supervisor.

use super::{Context, ExitReport, VmError, VmSpec};
use carve_vm::vm::{Boot, Vm};
use std::io::Write;
use std::time::Duration;

/// What happens while a foreground VM runs, for the caller to show.
#[derive(Debug)]
pub enum ForegroundEvent<'a> {
    /// A launch warning (e.g. no KVM: TCG).
    Warning(&'a str),
    /// A stop signal arrived; the VM `name` is being powered down.
    Stopping(&'a str),
}

/// Launches `spec` and supervises it until QEMU ends: its console is copied to `out`, and
/// SIGINT/SIGTERM (caught as a plan's holder catches them, [`crate::process::catch_signals`])
/// stop the VM gracefully. Removes the VM's state and returns how it ended.
pub fn run_foreground(
    ctx: &Context,
    spec: VmSpec,
    out: &mut dyn Write,
    on: &mut dyn FnMut(ForegroundEvent<'_>),
) -> Result<(String, ExitReport), VmError> {
    let paths = ctx.paths(&spec.name);
    let mut vm = match Vm::launch(ctx, spec, Boot::Fresh) {
        Ok(vm) => vm,
        Err(e) => {
            // Nothing runs: leave no state behind for a VM that never started.
            if paths.read_runtime().ok().flatten().is_none() {
                let _ = std::fs::remove_dir_all(&paths.dir);
            }
            return Err(e);
        }
    };
    if let Some(w) = vm.warning() {
        on(ForegroundEvent::Warning(w));
    }
    crate::process::catch_signals(&[libc::SIGINT, libc::SIGTERM]);
    let log = vm.paths().console_log();
    let mut pos = vm.console_start();
    let report = loop {
        let chunk = carve_vm::console::read_from_str(&log, pos);
        if !chunk.is_empty() {
            pos += chunk.len() as u64;
            let _ = out.write_all(chunk.as_bytes());
            let _ = out.flush();
        }
        if let Some(r) = vm.try_exit() {
            break r;
        }
        if crate::process::stop_requested() {
            on(ForegroundEvent::Stopping(&vm.spec().name));
            break vm.stop(false, Duration::from_secs(30)).1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let name = vm.spec().name.clone();
    vm.remove_state()?;
    Ok((name, report))
}
