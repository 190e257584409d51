//! One VM by name, outside any plan (`carve vm run|stop|pause|resume|console|status|snapshot|
//! restore|migrate`): its state lives in /run/carve/vm/NAME and its own supervisor (this
//! process in the foreground, or a detached `carve vm supervise` speaking
//! [`carve_vm::supervisor`]'s protocol) reaps QEMU, records how it ended and undoes its journal
//! (`vm-NAME`, undone by [`crate::restore`] if the supervisor dies). The engine's VM tier
//! ([`crate::vm`]) launches a plan's VMs with the same `Vm::launch`.

mod console;
mod foreground;
mod supervise;

pub use carve_vm::assets::prepare_guest;
pub use carve_vm::console::WaitError;
pub use carve_vm::state::ExitReport;
pub use carve_vm::supervisor::{Detached, Mode, SupervisorError};
pub use carve_vm::vm::{host_accel, pause, resume, status, stop, Context, StopOutcome, VmError};
pub use carve_vm::VmSpec;
pub use console::attach;
pub use foreground::{run_foreground, ForegroundEvent};
pub use supervise::{detach, supervise, SuperviseEvent};

use carve_core::CpuSet;
use carve_vm::spec::{Disk, Machine, NetSpec};
use std::path::{Path, PathBuf};

/// The text a guest prepared by `carve image guest` prints once it is up.
pub const READY_MARKER: &str = carve_vm::assets::READY_MARKER;

/// What `carve vm run` asks for, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct VmRequest {
    /// The VM's name.
    pub name: String,
    /// Kernel to boot directly.
    pub kernel: Option<PathBuf>,
    /// Initramfs.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub append: Option<String>,
    /// virtio-blk disks, PATH[,format=...][,readonly][,cache=MODE] each.
    pub disk: Vec<String>,
    /// Guest memory.
    pub memory: String,
    /// vCPUs.
    pub vcpus: usize,
    /// The partition's cores (default: the last `vcpus` online cores).
    pub cpus: Option<String>,
    /// Cores for QEMU's other threads.
    pub housekeeping: Option<String>,
    /// Back memory with 2 MiB huge pages.
    pub hugepages: bool,
    /// Lock guest memory.
    pub mem_lock: bool,
    /// Preallocate guest memory.
    pub prealloc: bool,
    /// q35 or microvm.
    pub machine: String,
    /// A NIC: BRIDGE[,netns=NS][,mac=MAC][,ip=A/LEN][,gw=A].
    pub net: Option<String>,
    /// VFIO PCI devices.
    pub device: Vec<String>,
    /// Expose a gdb stub.
    pub gdb: bool,
    /// vCPU threads' SCHED_FIFO priority.
    pub rt_priority: Option<u32>,
    /// The QEMU binary.
    pub qemu: PathBuf,
}

/// Why a `carve vm` command failed outside the VM itself.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The VM (its spec, state, QEMU or QMP).
    #[error(transparent)]
    Vm(#[from] VmError),
    /// The host's CPUs could not be read.
    #[error(transparent)]
    Host(#[from] carve_core::host::HostError),
    /// A CPU list.
    #[error(transparent)]
    Cpus(#[from] carve_core::cpuset::CpuSetError),
    /// A file beside a snapshot, or the console socket.
    #[error("{action} {}", path.display())]
    File {
        /// What was being done ("reading", "writing", "connecting to").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot file that is not there.
    #[error("{}", .0.display())]
    Snapshot(PathBuf, #[source] std::io::Error),
    /// A snapshot's spec file that is not a spec.
    #[error("parsing {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A spec that could not be written as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Copying the console.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn file_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CmdError {
    let path = path.to_path_buf();
    move |source| CmdError::File {
        action,
        path,
        source,
    }
}

/// Turns a `carve vm run` request into a checked spec.
pub fn spec_from(r: &VmRequest, online: &CpuSet) -> Result<VmSpec, VmError> {
    let mut b = VmSpec::builder(&r.name)?
        .machine(r.machine.parse::<Machine>()?)
        .vcpus(r.vcpus)?
        .memory(&r.memory)?
        .hugepages(r.hugepages)
        .mem_lock(r.mem_lock)
        .prealloc(r.prealloc)
        .gdb(r.gdb)
        .qemu(&r.qemu);
    let cpus = match &r.cpus {
        Some(c) => CpuSet::parse_list(c).map_err(|e| VmError::Host(e.to_string()))?,
        None => {
            let all: Vec<usize> = online.iter().collect();
            all[all.len().saturating_sub(r.vcpus)..]
                .iter()
                .copied()
                .collect()
        }
    };
    b = b.cpus(cpus);
    if let Some(h) = &r.housekeeping {
        b = b.housekeeping(CpuSet::parse_list(h).map_err(|e| VmError::Host(e.to_string()))?);
    }
    if let Some(k) = &r.kernel {
        b = b.kernel(k)?;
    }
    if let Some(i) = &r.initrd {
        b = b.initrd(i)?;
    }
    if let Some(ap) = &r.append {
        b = b.append(ap);
    }
    for d in &r.disk {
        b = b.disk(d.parse::<Disk>()?)?;
    }
    if let Some(n) = &r.net {
        b = b.net(n.parse::<NetSpec>()?);
    }
    for d in &r.device {
        b = b.device(d)?;
    }
    if let Some(p) = r.rt_priority {
        b = b.rt_priority(p)?;
    }
    Ok(b.build(online)?)
}

/// The checked spec of a `carve vm run` request on this host.
pub fn spec_on_host(ctx: &Context, r: &VmRequest) -> Result<VmSpec, CmdError> {
    let online = carve_core::read_host(&ctx.roots)?.online_cpus();
    Ok(spec_from(r, &online)?)
}

/// The QEMU command line `spec` would run, shell-quoted (`carve vm run --dry-run`).
pub fn dry_run(ctx: &Context, spec: &VmSpec) -> Result<String, VmError> {
    let (accel, _) = host_accel(ctx)?;
    let la = carve_vm::cmdline::LaunchArgs {
        tsc_khz: carve_vm::host::guest_tsc_khz(spec, accel),
        ..Default::default()
    };
    let argv = carve_vm::cmdline::qemu_argv(spec, &ctx.paths(&spec.name), accel, &la);
    Ok(carve_vm::cmdline::shell_quote(&argv))
}

/// Where a snapshot's spec is kept: FILE.spec.json.
fn spec_sidecar(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".spec.json");
    PathBuf::from(s)
}

/// Saves running VM `name` to `file` and its spec beside it; returns the spec file's path.
pub fn snapshot(ctx: &Context, name: &str, file: &Path) -> Result<PathBuf, CmdError> {
    let spec = ctx
        .paths(name)
        .read_spec()
        .map_err(|e| CmdError::Vm(e.into()))?;
    carve_vm::vm::snapshot(ctx, name, file)?;
    let side = spec_sidecar(file);
    std::fs::write(&side, serde_json::to_vec_pretty(&spec)?)
        .map_err(file_error("writing", &side))?;
    Ok(side)
}

/// The spec and mode that start VM `name` from snapshot `file` (its spec read from
/// FILE.spec.json), for [`detach`].
pub fn restore_spec(name: &str, file: &Path) -> Result<(VmSpec, Mode), CmdError> {
    let side = spec_sidecar(file);
    let bytes = std::fs::read(&side).map_err(file_error("reading", &side))?;
    let mut spec: VmSpec = serde_json::from_slice(&bytes).map_err(|source| CmdError::Parse {
        path: side.clone(),
        source,
    })?;
    spec.name = name.to_string();
    let file = file
        .canonicalize()
        .map_err(|e| CmdError::Snapshot(file.to_path_buf(), e))?;
    Ok((spec, Mode::Restore(file)))
}

/// The spec and mode that live-migrate running VM `name` to a new VM `to` (on `cpus`, or the
/// source's cores), for [`detach`].
pub fn migrate_spec(
    ctx: &Context,
    name: &str,
    to: &str,
    cpus: Option<&str>,
) -> Result<(VmSpec, Mode), CmdError> {
    let mut spec = ctx
        .paths(name)
        .read_spec()
        .map_err(|e| CmdError::Vm(e.into()))?;
    spec.name = to.to_string();
    if let Some(c) = cpus {
        spec.cpus = CpuSet::parse_list(c)?;
    }
    Ok((spec, Mode::Migrate(name.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> VmRequest {
        VmRequest {
            name: "t".into(),
            kernel: Some("/bin/true".into()),
            memory: "256MiB".into(),
            vcpus: 2,
            prealloc: true,
            machine: "q35".into(),
            qemu: "qemu-system-x86_64".into(),
            ..Default::default()
        }
    }

    #[test]
    fn vcpus_default_to_the_last_online_cores() {
        let online = CpuSet::parse_list("0-3").unwrap();
        let spec = spec_from(&req(), &online).unwrap();
        assert_eq!(spec.cpus.to_string(), "2-3");
        let mut r = req();
        r.cpus = Some("0-1".into());
        assert_eq!(spec_from(&r, &online).unwrap().cpus.to_string(), "0-1");
    }

    #[test]
    fn a_snapshot_without_its_spec_file_names_that_file() {
        let d = tempfile::tempdir().unwrap();
        let snap = d.path().join("s.bin");
        let e = restore_spec("t", &snap).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("reading {}", d.path().join("s.bin.spec.json").display())
        );
        std::fs::write(d.path().join("s.bin.spec.json"), "{").unwrap();
        let e = restore_spec("t", &snap).unwrap_err();
        assert!(e.to_string().starts_with("parsing "), "{e}");
    }
}
