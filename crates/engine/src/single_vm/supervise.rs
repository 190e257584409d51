//! A VM under a detached supervisor: [`detach`] starts one (this binary as `carve vm
//! supervise`), [`supervise`] is that supervisor — both through [`carve_vm::supervisor`]'s
//! protocol (spec on stdin, one ready line on stdout).

use super::{Context, Detached, ExitReport, Mode, SupervisorError, VmSpec};
use std::process::Command;

/// Starts `supervisor` (a command that runs [`supervise`] in `spec`'s mode) detached, hands it
/// `spec`, and waits for its ready line. A VM that did not start leaves no state behind.
pub fn detach(
    ctx: &Context,
    spec: &VmSpec,
    supervisor: Command,
) -> Result<Detached, SupervisorError> {
    carve_vm::supervisor::start(ctx, spec, supervisor)
}

/// What a detached supervisor does, for its log (stderr).
#[derive(Debug)]
pub enum SuperviseEvent<'a> {
    /// A launch warning.
    Warning(&'a str),
    /// The VM runs; supervising it.
    Supervising {
        /// The VM.
        name: &'a str,
        /// QEMU's pid.
        qemu_pid: i32,
    },
    /// QEMU ended.
    Ended {
        /// The VM.
        name: &'a str,
        /// How.
        report: &'a ExitReport,
    },
}

/// The detached supervisor: reads the spec from stdin, launches the VM in `mode` ("fresh",
/// "restore:FILE", "migrate:SOURCE"), reports ready on stdout, then supervises until QEMU
/// ends. Returns false when the VM did not start (already said on the ready line).
pub fn supervise(
    ctx: &Context,
    mode: &str,
    on: &mut dyn FnMut(SuperviseEvent<'_>),
) -> Result<bool, SupervisorError> {
    let mode: Mode = mode.parse()?;
    let launched = carve_vm::supervisor::serve(
        ctx,
        &mode,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    )?;
    let Ok(mut vm) = launched else {
        return Ok(false);
    };
    if let Some(w) = vm.warning() {
        on(SuperviseEvent::Warning(w));
    }
    on(SuperviseEvent::Supervising {
        name: &vm.spec().name,
        qemu_pid: vm.pid(),
    });
    let r = vm.wait();
    on(SuperviseEvent::Ended {
        name: &vm.spec().name,
        report: &r,
    });
    Ok(true)
}
