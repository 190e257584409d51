//! `carve bench vm`: boot-to-marker time of `carve vm run ... --wait-for carve-guest-ready`
//! against the same QEMU command line started by hand until the same marker, interleaved in one
//! run; medians and their ratio.

use crate::stats::median;
use crate::BenchError;
use carve_core::CpuSet;
use carve_vm::assets::{GuestAssets, READY_MARKER};
use carve_vm::cmdline::Accel;
use carve_vm::spec::{Machine, VmSpec};
use carve_vm::vm::{self, Context};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What `carve bench vm` measures.
#[derive(Debug, Clone)]
pub struct Options {
    /// Boots per side.
    pub runs: usize,
    /// Guest assets folder (prepared if needed, as `carve image guest`).
    pub guest: PathBuf,
    /// Guest memory.
    pub memory: String,
    /// Kernel command line of both sides.
    pub append: String,
    /// Start the hand-run QEMU with no CPU placement (by default it gets the cores carve pins
    /// the vCPUs to, as `taskset -c CORES qemu ...` would).
    pub hand_unpinned: bool,
    /// Machine type of both sides: q35 or microvm.
    pub machine: String,
}

/// The medians of both sides and their ratio.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Boots per side.
    pub runs: usize,
    /// KVM or TCG.
    pub accel: String,
    /// The machine type.
    pub machine: String,
    /// Each carve boot, ms.
    pub carve_ms: Vec<f64>,
    /// Each hand-started boot, ms.
    pub qemu_ms: Vec<f64>,
    /// Median of `carve_ms`.
    pub carve_median_ms: f64,
    /// Median of `qemu_ms`.
    pub qemu_median_ms: f64,
    /// carve / by hand.
    pub ratio: f64,
    /// The carve command of one boot.
    pub carve_command: String,
    /// The hand-started command of one boot.
    pub qemu_command: String,
}

/// The longest one boot may take under TCG on a busy host.
const BOOT_LIMIT: Duration = Duration::from_secs(180);

/// Runs both sides `opts.runs` times, alternating which goes first; `carve` is the carve binary.
pub fn run(carve: &Path, opts: &Options) -> Result<Report, BenchError> {
    let ctx = Context::default();
    let g = carve_vm::assets::prepare_guest(&opts.guest).map_err(|e| BenchError::Tool {
        what: format!("preparing the guest in {}", opts.guest.display()),
        detail: e.to_string(),
    })?;
    let (accel, _) = vm::host_accel(&ctx).map_err(vm_err("host accelerator"))?;
    let online = carve_core::read_host(&ctx.roots)
        .map_err(|e| BenchError::Tool {
            what: "reading the host".into(),
            detail: e.to_string(),
        })?
        .online_cpus();
    let hand_dir = std::env::temp_dir().join(format!("carve-bench-vm-{}", std::process::id()));
    std::fs::create_dir_all(&hand_dir).map_err(BenchError::io("create", &hand_dir))?;
    let mut carve_ms = Vec::new();
    let mut qemu_ms = Vec::new();
    let mut qemu_command = String::new();
    let result = (|| {
        for i in 0..opts.runs {
            // Alternate which side goes first so drift on a shared machine hits both alike.
            for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
                if side == 0 {
                    carve_ms.push(carve_boot(carve, &g, opts, i)?);
                } else {
                    let (ms, cmd) = hand_boot(&g, opts, accel, &online, &hand_dir, i)?;
                    qemu_ms.push(ms);
                    qemu_command = cmd;
                }
            }
        }
        Ok::<(), BenchError>(())
    })();
    let _ = std::fs::remove_dir_all(&hand_dir);
    result?;
    Ok(Report {
        runs: opts.runs,
        accel: accel.as_str().into(),
        machine: opts.machine.clone(),
        carve_median_ms: median(&carve_ms),
        qemu_median_ms: median(&qemu_ms),
        ratio: median(&carve_ms) / median(&qemu_ms).max(1e-9),
        carve_ms,
        qemu_ms,
        carve_command: format!(
            "carve {}",
            carve_vm::cmdline::shell_quote(&carve_args(&g, opts, "NAME"))
        ),
        qemu_command,
    })
}

fn vm_err(what: &'static str) -> impl Fn(vm::VmError) -> BenchError {
    move |e| BenchError::Tool {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// The `carve vm run` arguments of one carve boot.
fn carve_args(g: &GuestAssets, opts: &Options, name: &str) -> Vec<String> {
    [
        "vm",
        "run",
        "--name",
        name,
        "--kernel",
        &g.kernel.display().to_string(),
        "--initrd",
        &g.initrd.display().to_string(),
        "--append",
        &opts.append,
        "--memory",
        &opts.memory,
        "--machine",
        &opts.machine,
        "--wait-for",
        READY_MARKER,
        "--timeout",
        "180",
    ]
    .map(String::from)
    .to_vec()
}

/// One `carve vm run --wait-for` boot, then `carve vm stop --force`; ms to the marker.
fn carve_boot(carve: &Path, g: &GuestAssets, opts: &Options, i: usize) -> Result<f64, BenchError> {
    let name = format!("carve-bench-{}-{i}", std::process::id());
    let t = Instant::now();
    let st = Command::new(carve)
        .args(carve_args(g, opts, &name))
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(BenchError::io("run", carve))?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let _ = Command::new(carve)
        .args(["vm", "stop", &name, "--force"])
        .stdout(Stdio::null())
        .status();
    if !st.success() {
        return Err(BenchError::Tool {
            what: format!("carve vm run, run {i}"),
            detail: st.to_string(),
        });
    }
    Ok(ms)
}

/// The spec carve would build for the same boot: one vCPU on the last online core.
fn hand_spec(
    g: &GuestAssets,
    opts: &Options,
    online: &CpuSet,
    name: &str,
) -> Result<VmSpec, BenchError> {
    let spec_err = |e: carve_vm::spec::SpecError| BenchError::Invalid {
        field: "vm spec",
        why: e.to_string(),
    };
    let last: CpuSet = online.iter().last().into_iter().collect();
    VmSpec::builder(name)
        .map_err(spec_err)?
        .machine(opts.machine.parse::<Machine>().map_err(spec_err)?)
        .vcpus(1)
        .map_err(spec_err)?
        .memory(&opts.memory)
        .map_err(spec_err)?
        .cpus(last)
        .kernel(&g.kernel)
        .map_err(spec_err)?
        .initrd(&g.initrd)
        .map_err(spec_err)?
        .append(&opts.append)
        .build(online)
        .map_err(spec_err)
}

/// One hand-started QEMU on exactly carve's command line minus -S (nobody would `cont` by
/// hand), pinned as `taskset` would unless `hand_unpinned`; ms to the marker and the command.
fn hand_boot(
    g: &GuestAssets,
    opts: &Options,
    accel: Accel,
    online: &CpuSet,
    dir: &Path,
    i: usize,
) -> Result<(f64, String), BenchError> {
    let name = format!("carve-bench-hand-{}-{i}", std::process::id());
    let spec = hand_spec(g, opts, online, &name)?;
    let paths = carve_vm::state::StatePaths::new(dir, &name);
    std::fs::create_dir_all(&paths.dir).map_err(BenchError::io("create", &paths.dir))?;
    let la = carve_vm::cmdline::LaunchArgs {
        tsc_khz: carve_vm::host::guest_tsc_khz(&spec, accel),
        ..Default::default()
    };
    let argv = carve_vm::cmdline::qemu_argv(&spec, &paths, accel, &la);
    let cores: Vec<usize> = spec.vcpu_cores();
    let mut qemu_command = carve_vm::cmdline::shell_quote(&argv);
    let mut cmd = match cores.first() {
        Some(&c) if !opts.hand_unpinned => {
            qemu_command = format!("taskset -c {c} {qemu_command}");
            crate::pinned(Path::new(&argv[0]), c)
        }
        _ => Command::new(&argv[0]),
    };
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(BenchError::io("run", Path::new(&argv[0])))?;
    let r = carve_vm::console::wait_for(&paths.console_log(), 0, READY_MARKER, BOOT_LIMIT, || {
        child.try_wait().ok().flatten().map(|s| s.to_string())
    });
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&paths.dir);
    r.map_err(|e| BenchError::Tool {
        what: format!("hand-started QEMU, run {i}"),
        detail: e.to_string(),
    })?;
    Ok((ms, qemu_command))
}
