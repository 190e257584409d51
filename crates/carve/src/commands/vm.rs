//! `carve vm run | stop | pause | resume | console | status | snapshot | restore | migrate`.
//!
//! A VM needs a live supervisor (it reaps QEMU, records how it ended and undoes the journal).
//! `carve vm run` without `--detach`/`--wait-for` is that supervisor itself, in the foreground;
//! otherwise carve starts a detached `carve vm supervise` (same binary), hands it the spec on
//! stdin, and waits for its one-line ready message.

use carve_engine::single_vm::{
    self as vm, CmdError, Context, ForegroundEvent, Mode, StopOutcome, SuperviseEvent,
    SupervisorError, VmError, VmRequest, VmSpec,
};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// `carve vm ...`.
#[derive(clap::Subcommand)]
pub enum VmCommand {
    /// Start a VM (foreground supervisor, or detached with --detach / --wait-for).
    Run(Box<RunArgs>),
    /// Stop a VM: ACPI powerdown, then kill after --timeout; removes everything it made.
    Stop {
        /// The VM.
        name: String,
        /// Kill QEMU at once.
        #[arg(long)]
        force: bool,
        /// Seconds the guest gets to power off.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Pause the vCPUs.
    Pause {
        /// The VM.
        name: String,
    },
    /// Resume the vCPUs.
    Resume {
        /// The VM.
        name: String,
    },
    /// Attach to the serial console (Ctrl-] detaches).
    Console {
        /// The VM.
        name: String,
    },
    /// Show state, QEMU pid, accelerator, and each vCPU's thread and allowed cores.
    Status {
        /// The VM.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Save the whole VM state to FILE (and its spec to FILE.spec.json); the VM keeps running.
    Snapshot {
        /// The VM.
        name: String,
        /// The snapshot file.
        file: PathBuf,
    },
    /// Start VM NAME from a snapshot; the guest continues where it was.
    Restore {
        /// The VM's (new) name.
        name: String,
        /// The snapshot file (its spec is read from FILE.spec.json).
        file: PathBuf,
        /// Return once TEXT appears on the console after the restore.
        #[arg(long)]
        wait_for: Option<String>,
        /// Seconds to wait.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Live-migrate VM NAME to a new QEMU on this host (over a unix socket), named --to.
    Migrate {
        /// The running VM.
        name: String,
        /// The destination VM's name.
        #[arg(long)]
        to: String,
        /// The destination's cores (default: the source's).
        #[arg(long)]
        cpus: Option<String>,
    },
    /// (internal) Supervise a VM: spec on stdin, one ready line on stdout.
    #[command(hide = true)]
    Supervise {
        /// "fresh", "restore:FILE" or "migrate:SOURCE".
        #[arg(long)]
        mode: String,
    },
}

/// `carve vm run` arguments.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The VM's name (state in /run/carve/vm/NAME).
    #[arg(long)]
    pub name: String,
    /// Kernel to boot directly.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Initramfs.
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (console=ttyS0 is added).
    #[arg(long)]
    pub append: Option<String>,
    /// A virtio-blk disk: PATH[,format=raw|qcow2][,readonly][,cache=MODE]; boots from the first
    /// when there is no kernel.
    #[arg(long)]
    pub disk: Vec<String>,
    /// Guest memory.
    #[arg(long, default_value = "256MiB")]
    pub memory: String,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: usize,
    /// The partition's cores, one per vCPU (default: the last N online cores).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Cores for QEMU's other threads (default: the online cores outside --cpus).
    #[arg(long)]
    pub housekeeping: Option<String>,
    /// Back memory with 2 MiB huge pages.
    #[arg(long)]
    pub hugepages: bool,
    /// Lock guest memory.
    #[arg(long)]
    pub mem_lock: bool,
    /// Do not preallocate guest memory.
    #[arg(long)]
    pub no_prealloc: bool,
    /// q35 or microvm.
    #[arg(long, default_value = "q35")]
    pub machine: String,
    /// A NIC on a new tap attached to BRIDGE: BRIDGE[,netns=NS][,mac=MAC][,ip=A/LEN][,gw=A].
    #[arg(long)]
    pub net: Option<String>,
    /// A VFIO PCI device to pass through (DDDD:BB:DD.F).
    #[arg(long)]
    pub device: Vec<String>,
    /// Expose a gdb stub on /run/carve/vm/NAME/gdb.sock.
    #[arg(long)]
    pub gdb: bool,
    /// Run vCPU threads SCHED_FIFO at this priority.
    #[arg(long)]
    pub rt_priority: Option<u32>,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// Return once QEMU runs, leaving a detached supervisor.
    #[arg(long)]
    pub detach: bool,
    /// Return 0 once TEXT appears on the console (non-zero on timeout or QEMU exit); implies
    /// --detach.
    #[arg(long)]
    pub wait_for: Option<String>,
    /// Seconds --wait-for waits.
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Print the QEMU command line and exit.
    #[arg(long)]
    pub dry_run: bool,
}

/// Exit code when `--wait-for` times out (as timeout(1)).
const EXIT_TIMEOUT: u8 = 124;

fn fail(e: VmError) -> anyhow::Error {
    let code = match e {
        VmError::Spec(_) | VmError::Vfio(_) => super::EXIT_INVALID,
        VmError::Console {
            source: vm::WaitError::Timeout { .. },
            ..
        } => EXIT_TIMEOUT,
        _ => super::EXIT_ERROR,
    };
    eprintln!("carve: {e}");
    super::Exit(code).into()
}

/// A VM's own errors print with their exit code ([`fail`]); the rest as any error.
fn fail_cmd(e: CmdError) -> anyhow::Error {
    match e {
        CmdError::Vm(e) => fail(e),
        e => e.into(),
    }
}

fn request_of(a: &RunArgs) -> VmRequest {
    VmRequest {
        name: a.name.clone(),
        kernel: a.kernel.clone(),
        initrd: a.initrd.clone(),
        append: a.append.clone(),
        disk: a.disk.clone(),
        memory: a.memory.clone(),
        vcpus: a.vcpus,
        cpus: a.cpus.clone(),
        housekeeping: a.housekeeping.clone(),
        hugepages: a.hugepages,
        mem_lock: a.mem_lock,
        prealloc: !a.no_prealloc,
        machine: a.machine.clone(),
        net: a.net.clone(),
        device: a.device.clone(),
        gdb: a.gdb,
        rt_priority: a.rt_priority,
        qemu: a.qemu.clone(),
    }
}

/// Runs a `carve vm` subcommand.
pub fn run(cmd: VmCommand) -> anyhow::Result<()> {
    let ctx = Context::default();
    match cmd {
        VmCommand::Run(a) => run_vm(&ctx, *a),
        VmCommand::Stop {
            name,
            force,
            timeout,
        } => {
            let how =
                vm::stop(&ctx, &name, force, Duration::from_secs_f64(timeout)).map_err(fail)?;
            println!(
                "vm {name}: {}",
                match how {
                    StopOutcome::PoweredOff => "powered off",
                    StopOutcome::Killed => "killed",
                    StopOutcome::Halted =>
                        "the guest had halted without powering off; QEMU was ended",
                    StopOutcome::AlreadyStopped => "was not running; cleaned up",
                }
            );
            Ok(())
        }
        VmCommand::Pause { name } => vm::pause(&ctx, &name).map_err(fail),
        VmCommand::Resume { name } => vm::resume(&ctx, &name).map_err(fail),
        VmCommand::Console { name } => console(&ctx, &name),
        VmCommand::Status { name, json } => status(&ctx, &name, json),
        VmCommand::Snapshot { name, file } => {
            let side = vm::snapshot(&ctx, &name, &file).map_err(fail_cmd)?;
            println!(
                "vm {name}: snapshot in {} (spec {})",
                file.display(),
                side.display()
            );
            Ok(())
        }
        VmCommand::Restore {
            name,
            file,
            wait_for,
            timeout,
        } => {
            let (spec, mode) = vm::restore_spec(&name, &file).map_err(fail_cmd)?;
            detach(&ctx, &spec, mode, wait_for, timeout)
        }
        VmCommand::Migrate { name, to, cpus } => {
            let (spec, mode) =
                vm::migrate_spec(&ctx, &name, &to, cpus.as_deref()).map_err(fail_cmd)?;
            detach(&ctx, &spec, mode, None, 60.0)
        }
        VmCommand::Supervise { mode } => supervise(&ctx, &mode),
    }
}

fn status(ctx: &Context, name: &str, json: bool) -> anyhow::Result<()> {
    let st = vm::status(ctx, name).map_err(fail)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(());
    }
    println!("vm {}: {}", st.name, st.state);
    if let Some(p) = st.qemu_pid {
        println!(
            "  qemu pid {p}, accel {}",
            st.accel.as_deref().unwrap_or("?")
        );
    }
    for v in &st.vcpus {
        println!(
            "  vcpu {} thread {} cores {}",
            v.index, v.thread_id, v.allowed_cores
        );
    }
    if let Some(t) = &st.tap {
        println!("  tap {t}");
    }
    if let Some(e) = &st.exit {
        println!("  {}", e.message);
    }
    println!("  console log {}", st.console_log.display());
    Ok(())
}

fn run_vm(ctx: &Context, a: RunArgs) -> anyhow::Result<()> {
    let spec = vm::spec_on_host(ctx, &request_of(&a)).map_err(fail_cmd)?;
    if a.dry_run {
        println!("{}", vm::dry_run(ctx, &spec).map_err(fail)?);
        return Ok(());
    }
    if a.detach || a.wait_for.is_some() {
        return detach(ctx, &spec, Mode::Fresh, a.wait_for, a.timeout);
    }
    foreground(ctx, spec)
}

/// Foreground: this process supervises; the console is copied to stdout; Ctrl-C or SIGTERM
/// stops the VM gracefully.
fn foreground(ctx: &Context, spec: VmSpec) -> anyhow::Result<()> {
    let (name, report) = vm::run_foreground(ctx, spec, &mut std::io::stdout(), &mut |e| match e {
        ForegroundEvent::Warning(w) => eprintln!("carve: {w}"),
        ForegroundEvent::Stopping(name) => eprintln!("carve: stopping VM {name}"),
    })
    .map_err(fail)?;
    if report.clean {
        eprintln!("carve: VM {name}: {}", report.message);
        Ok(())
    } else {
        eprintln!(
            "carve: VM {name}: {} {}",
            report.message, report.stderr_tail
        );
        Err(super::Exit(super::EXIT_ERROR).into())
    }
}

/// Starts a detached supervisor (this binary as `carve vm supervise`) for `spec` in `mode`,
/// waits for its ready line, then optionally for `wait_for` on the console.
fn detach(
    ctx: &Context,
    spec: &VmSpec,
    mode: Mode,
    wait_for: Option<String>,
    timeout: f64,
) -> anyhow::Result<()> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["vm", "supervise", "--mode", &mode.arg()]);
    let d = match vm::detach(ctx, spec, cmd) {
        Ok(d) => d,
        Err(SupervisorError::Launch { message, invalid }) => {
            eprintln!("carve: {message}");
            let code = if invalid {
                super::EXIT_INVALID
            } else {
                super::EXIT_ERROR
            };
            return Err(super::Exit(code).into());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(w) = &d.warning {
        eprintln!("carve: {w}");
    }
    if let Some(text) = wait_for {
        if let Err(e) = d.wait_for(&text, Duration::from_secs_f64(timeout)) {
            let code = match e {
                vm::WaitError::Timeout { .. } => EXIT_TIMEOUT,
                _ => super::EXIT_ERROR,
            };
            eprintln!("carve: VM {}: {e}", spec.name);
            if code == EXIT_TIMEOUT {
                eprintln!(
                    "carve: the VM is still running; `carve vm stop {}` ends it",
                    spec.name
                );
            }
            return Err(super::Exit(code).into());
        }
    }
    println!("vm {}: running (qemu pid {})", spec.name, d.qemu_pid);
    Ok(())
}

/// The detached supervisor: launches, reports ready on stdout, then supervises until QEMU ends.
fn supervise(ctx: &Context, mode: &str) -> anyhow::Result<()> {
    let launched = vm::supervise(ctx, mode, &mut |e| match e {
        SuperviseEvent::Warning(w) => eprintln!("carve: {w}"),
        SuperviseEvent::Supervising { name, qemu_pid } => {
            eprintln!("carve: supervising VM {name} (qemu pid {qemu_pid})")
        }
        SuperviseEvent::Ended { name, report } => {
            eprintln!(
                "carve: VM {name}: {} {}",
                report.message, report.stderr_tail
            )
        }
    })?;
    if !launched {
        return Err(super::Exit(super::EXIT_ERROR).into());
    }
    Ok(())
}

/// Attaches the terminal to the VM's serial console socket until Ctrl-] or EOF.
fn console(ctx: &Context, name: &str) -> anyhow::Result<()> {
    vm::attach(ctx, name, &mut || {
        eprintln!("carve: connected to VM {name}'s console; Ctrl-] detaches")
    })
    .map_err(fail_cmd)?;
    eprintln!("\ncarve: detached from VM {name}'s console");
    Ok(())
}

/// `carve bench vm` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Boots per side.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Guest assets folder (prepared if needed, as `carve image guest`).
    #[arg(long, default_value = "cache/guest")]
    pub guest: PathBuf,
    /// Guest memory.
    #[arg(long, default_value = "256MiB")]
    pub memory: String,
    /// Kernel command line of both sides.
    #[arg(long, default_value = "quiet")]
    pub append: String,
    /// Start the hand-run QEMU with no CPU placement (by default it gets the cores carve pins
    /// the vCPUs to, as `taskset -c CORES qemu ...` would, so both sides compete for the same
    /// cores on a shared machine).
    #[arg(long)]
    pub hand_unpinned: bool,
    /// Machine type of both sides: q35 or microvm.
    #[arg(long, default_value = "q35")]
    pub machine: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `carve bench vm`: boot-to-marker time of `carve vm run ... --wait-for carve-guest-ready`
/// against the same QEMU command line started by hand until the same marker, interleaved in one
/// run; medians and their ratio (measured by [`carve_bench::vmboot`]).
pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let (_, warning) = vm::host_accel(&Context::default()).map_err(fail)?;
    if let Some(w) = warning {
        eprintln!("carve: {w}");
    }
    let opts = carve_bench::vmboot::Options {
        runs: a.runs,
        guest: a.guest,
        memory: a.memory,
        append: a.append,
        hand_unpinned: a.hand_unpinned,
        machine: a.machine,
    };
    let report = carve_bench::vmboot::run(&std::env::current_exe()?, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let rounded = |v: &[f64]| v.iter().map(|x| x.round()).collect::<Vec<_>>();
    println!(
        "boot to {:?} under {}, {}, {} runs each, interleaved:",
        vm::READY_MARKER,
        report.accel,
        report.machine,
        report.runs
    );
    println!(
        "  carve vm run --wait-for   median {:8.1} ms   {:?}",
        report.carve_median_ms,
        rounded(&report.carve_ms)
    );
    println!(
        "  same QEMU line by hand    median {:8.1} ms   {:?}",
        report.qemu_median_ms,
        rounded(&report.qemu_ms)
    );
    println!(
        "  ratio carve / by hand     {:.3}x (target <= 1.05x)",
        report.ratio
    );
    println!("  carve: {}", report.carve_command);
    println!("  qemu:  {}", report.qemu_command);
    Ok(())
}
