//! `carve vm run | stop | pause | resume | console | status | snapshot | restore | migrate`.
//!
//! A VM needs a live supervisor (it reaps QEMU, records how it ended and undoes the journal).
//! `carve vm run` without `--detach`/`--wait-for` is that supervisor itself, in the foreground;
//! otherwise carve starts a detached `carve vm supervise` (same binary), hands it the spec on
//! stdin, and waits for its one-line ready message.

use anyhow::Context as _;
use carve_core::CpuSet;
use carve_vm::spec::{Disk, Machine, NetSpec, VmSpec};
use carve_vm::vm::{self, Boot, Context, StopOutcome, Vm, VmError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
            source: carve_vm::console::WaitError::Timeout { .. },
            ..
        } => EXIT_TIMEOUT,
        _ => super::EXIT_ERROR,
    };
    eprintln!("carve: {e}");
    super::Exit(code).into()
}

/// Turns `carve vm run` arguments into a checked spec.
pub fn spec_from(a: &RunArgs, online: &CpuSet) -> Result<VmSpec, VmError> {
    let mut b = VmSpec::builder(&a.name)?
        .machine(a.machine.parse::<Machine>()?)
        .vcpus(a.vcpus)?
        .memory(&a.memory)?
        .hugepages(a.hugepages)
        .mem_lock(a.mem_lock)
        .prealloc(!a.no_prealloc)
        .gdb(a.gdb)
        .qemu(&a.qemu);
    let cpus = match &a.cpus {
        Some(c) => CpuSet::parse_list(c).map_err(|e| VmError::Host(e.to_string()))?,
        None => {
            let all: Vec<usize> = online.iter().collect();
            all[all.len().saturating_sub(a.vcpus)..]
                .iter()
                .copied()
                .collect()
        }
    };
    b = b.cpus(cpus);
    if let Some(h) = &a.housekeeping {
        b = b.housekeeping(CpuSet::parse_list(h).map_err(|e| VmError::Host(e.to_string()))?);
    }
    if let Some(k) = &a.kernel {
        b = b.kernel(k)?;
    }
    if let Some(i) = &a.initrd {
        b = b.initrd(i)?;
    }
    if let Some(ap) = &a.append {
        b = b.append(ap);
    }
    for d in &a.disk {
        b = b.disk(d.parse::<Disk>()?)?;
    }
    if let Some(n) = &a.net {
        b = b.net(n.parse::<NetSpec>()?);
    }
    for d in &a.device {
        b = b.device(d)?;
    }
    if let Some(p) = a.rt_priority {
        b = b.rt_priority(p)?;
    }
    Ok(b.build(online)?)
}

fn online(ctx: &Context) -> anyhow::Result<CpuSet> {
    Ok(carve_core::read_host(&ctx.roots)?.online_cpus())
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
        VmCommand::Status { name, json } => {
            let st = vm::status(&ctx, &name).map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
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
            }
            Ok(())
        }
        VmCommand::Snapshot { name, file } => {
            let spec = ctx.paths(&name).read_spec().map_err(|e| fail(e.into()))?;
            vm::snapshot(&ctx, &name, &file).map_err(fail)?;
            let side = spec_sidecar(&file);
            std::fs::write(&side, serde_json::to_vec_pretty(&spec)?)
                .with_context(|| format!("writing {}", side.display()))?;
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
            let side = spec_sidecar(&file);
            let mut spec: VmSpec = serde_json::from_slice(
                &std::fs::read(&side).with_context(|| format!("reading {}", side.display()))?,
            )
            .with_context(|| format!("parsing {}", side.display()))?;
            spec.name = name;
            let file = file
                .canonicalize()
                .with_context(|| format!("{}", file.display()))?;
            detach(
                &ctx,
                &spec,
                &format!("restore:{}", file.display()),
                wait_for,
                timeout,
            )
        }
        VmCommand::Migrate { name, to, cpus } => {
            let mut spec = ctx.paths(&name).read_spec().map_err(|e| fail(e.into()))?;
            spec.name = to;
            if let Some(c) = cpus {
                spec.cpus = CpuSet::parse_list(&c)?;
            }
            detach(&ctx, &spec, &format!("migrate:{name}"), None, 60.0)
        }
        VmCommand::Supervise { mode } => supervise(&ctx, &mode),
    }
}

fn spec_sidecar(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".spec.json");
    PathBuf::from(s)
}

fn run_vm(ctx: &Context, a: RunArgs) -> anyhow::Result<()> {
    let spec = spec_from(&a, &online(ctx)?).map_err(fail)?;
    if a.dry_run {
        let (accel, _) = vm::host_accel(ctx).map_err(fail)?;
        let la = carve_vm::cmdline::LaunchArgs {
            tsc_khz: carve_vm::host::guest_tsc_khz(&spec, accel),
            ..Default::default()
        };
        let argv = carve_vm::cmdline::qemu_argv(&spec, &ctx.paths(&spec.name), accel, &la);
        println!("{}", carve_vm::cmdline::shell_quote(&argv));
        return Ok(());
    }
    if a.detach || a.wait_for.is_some() {
        return detach(ctx, &spec, "fresh", a.wait_for, a.timeout);
    }
    foreground(ctx, spec)
}

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Foreground: this process supervises; the console is copied to stdout; Ctrl-C or SIGTERM
/// stops the VM gracefully.
fn foreground(ctx: &Context, spec: VmSpec) -> anyhow::Result<()> {
    let paths = ctx.paths(&spec.name);
    let mut vm = match Vm::launch(ctx, spec, Boot::Fresh) {
        Ok(vm) => vm,
        Err(e) => {
            // Nothing runs: leave no state behind for a VM that never started.
            if paths.read_runtime().ok().flatten().is_none() {
                let _ = std::fs::remove_dir_all(&paths.dir);
            }
            return Err(fail(e));
        }
    };
    if let Some(w) = vm.warning() {
        eprintln!("carve: {w}");
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let log = vm.paths().console_log();
    let mut pos = vm.console_start();
    let mut out = std::io::stdout();
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
        if STOP_REQUESTED.swap(false, Ordering::SeqCst) {
            eprintln!("carve: stopping VM {}", vm.spec().name);
            break vm.stop(false, Duration::from_secs(30)).1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let name = vm.spec().name.clone();
    vm.remove_state().map_err(fail)?;
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

/// The supervisor's one ready line.
#[derive(Serialize, Deserialize)]
struct Ready {
    ok: bool,
    error: Option<String>,
    invalid: bool,
    qemu_pid: Option<i32>,
    warning: Option<String>,
    console_start: u64,
}

/// Starts a detached supervisor for `spec` in `mode`, waits for its ready line, then optionally
/// for `wait_for` on the console.
fn detach(
    ctx: &Context,
    spec: &VmSpec,
    mode: &str,
    wait_for: Option<String>,
    timeout: f64,
) -> anyhow::Result<()> {
    let paths = ctx.paths(&spec.name);
    std::fs::create_dir_all(&paths.dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.supervisor_log())?;
    let exe = std::env::current_exe()?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(exe);
        c.args(["vm", "supervise", "--mode", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; the child leaves carve's session and terminal.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
        c.spawn().context("starting the VM supervisor")?
    };
    {
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(&serde_json::to_vec(spec)?)?;
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let ready: Ready = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(_) => {
            let _ = child.wait();
            let log = std::fs::read_to_string(paths.supervisor_log()).unwrap_or_default();
            anyhow::bail!("the VM supervisor failed: {}", log.trim());
        }
    };
    if !ready.ok {
        let _ = child.wait();
        eprintln!("carve: {}", ready.error.unwrap_or_default());
        // Nothing runs: leave no state behind for a VM that never started.
        if paths.read_runtime().ok().flatten().is_none()
            && paths.read_exit().ok().flatten().is_none()
        {
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
        let code = if ready.invalid {
            super::EXIT_INVALID
        } else {
            super::EXIT_ERROR
        };
        return Err(super::Exit(code).into());
    }
    if let Some(w) = &ready.warning {
        eprintln!("carve: {w}");
    }
    let pid = ready.qemu_pid.unwrap_or(0);
    let qemu = carve_journal::ProcessId::of(pid);
    if let Some(text) = wait_for {
        let r = carve_vm::console::wait_for(
            &paths.console_log(),
            ready.console_start,
            &text,
            Duration::from_secs_f64(timeout),
            || {
                if qemu.is_some_and(|q| q.is_alive()) {
                    return None;
                }
                // Give the supervisor the moment it needs to reap QEMU and write its report
                // (bounded: a supervisor that is gone too writes none).
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    if let Some(e) = paths.read_exit().ok().flatten() {
                        return Some(format!("{} {}", e.message, e.stderr_tail));
                    }
                    if std::time::Instant::now() >= deadline {
                        return Some("QEMU is gone (the supervisor wrote no report)".into());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            },
        );
        if let Err(e) = r {
            let code = match e {
                carve_vm::console::WaitError::Timeout { .. } => EXIT_TIMEOUT,
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
    println!("vm {}: running (qemu pid {pid})", spec.name);
    Ok(())
}

/// The detached supervisor: launches, reports ready on stdout, then supervises until QEMU ends.
fn supervise(ctx: &Context, mode: &str) -> anyhow::Result<()> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let spec: VmSpec = serde_json::from_slice(&input)?;
    let launched = if mode == "fresh" {
        Vm::launch(ctx, spec, Boot::Fresh)
    } else if let Some(file) = mode.strip_prefix("restore:") {
        vm::restore(ctx, spec, Path::new(file))
    } else if let Some(src) = mode.strip_prefix("migrate:") {
        vm::migrate(ctx, src, spec)
    } else {
        anyhow::bail!("unknown supervise mode {mode:?}");
    };
    let ready = match &launched {
        Ok(vm) => Ready {
            ok: true,
            error: None,
            invalid: false,
            qemu_pid: Some(vm.pid()),
            warning: vm.warning().map(str::to_string),
            console_start: vm.console_start(),
        },
        Err(e) => Ready {
            ok: false,
            error: Some(e.to_string()),
            invalid: matches!(e, VmError::Spec(_) | VmError::Vfio(_)),
            qemu_pid: None,
            warning: None,
            console_start: 0,
        },
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(&ready)?)?;
        out.flush()?;
    }
    // Nobody reads stdout any more: point it at /dev/null so a late write cannot SIGPIPE us.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto fd 1 with a valid fd; stdout's Rust handle is not in use now.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    let mut vm = match launched {
        Ok(vm) => vm,
        Err(_) => return Err(super::Exit(super::EXIT_ERROR).into()),
    };
    if let Some(w) = vm.warning() {
        eprintln!("carve: {w}");
    }
    eprintln!(
        "carve: supervising VM {} (qemu pid {})",
        vm.spec().name,
        vm.pid()
    );
    let r = vm.wait();
    eprintln!(
        "carve: VM {}: {} {}",
        vm.spec().name,
        r.message,
        r.stderr_tail
    );
    Ok(())
}

/// Attaches the terminal to the VM's serial console socket until Ctrl-] or EOF.
fn console(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let paths = ctx.paths(name);
    let st = vm::status(ctx, name).map_err(fail)?;
    if st.qemu_pid.is_none() {
        return Err(fail(VmError::NotRunning(name.into())));
    }
    let sock = std::os::unix::net::UnixStream::connect(paths.console_sock())
        .with_context(|| format!("connecting to {}", paths.console_sock().display()))?;
    eprintln!("carve: connected to VM {name}'s console; Ctrl-] detaches");
    let raw = RawTerminal::enter();
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
    eprintln!("\ncarve: detached from VM {name}'s console");
    Ok(())
}

/// The terminal in raw mode while it lives (when stdin is a terminal).
struct RawTerminal(Option<libc::termios>);

impl RawTerminal {
    fn enter() -> Self {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0 or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid termios pointer.
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return RawTerminal(None);
        }
        let old = t;
        // SAFETY: t is a valid termios; cfmakeraw only edits it.
        unsafe { libc::cfmakeraw(&mut t) };
        // SAFETY: fd 0 and a valid termios pointer.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        RawTerminal(Some(old))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: fd 0 and the termios saved by enter().
            unsafe { libc::tcsetattr(0, libc::TCSANOW, old) };
        }
    }
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

#[derive(Serialize)]
struct BenchReport {
    runs: usize,
    accel: String,
    machine: String,
    carve_ms: Vec<f64>,
    qemu_ms: Vec<f64>,
    carve_median_ms: f64,
    qemu_median_ms: f64,
    ratio: f64,
    carve_command: String,
    qemu_command: String,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// `carve bench vm`: boot-to-marker time of `carve vm run ... --wait-for carve-guest-ready`
/// against the same QEMU command line started by hand until the same marker, interleaved in one
/// run; medians and their ratio.
pub fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let ctx = Context::default();
    let g = carve_vm::assets::prepare_guest(&a.guest)?;
    let (accel, warning) = vm::host_accel(&ctx).map_err(fail)?;
    if let Some(w) = warning {
        eprintln!("carve: {w}");
    }
    let marker = carve_vm::assets::READY_MARKER;
    let exe = std::env::current_exe()?;
    let pid = std::process::id();
    let carve_args = |name: &str| -> Vec<String> {
        vec![
            "vm".into(),
            "run".into(),
            "--name".into(),
            name.into(),
            "--kernel".into(),
            g.kernel.display().to_string(),
            "--initrd".into(),
            g.initrd.display().to_string(),
            "--append".into(),
            a.append.clone(),
            "--memory".into(),
            a.memory.clone(),
            "--machine".into(),
            a.machine.clone(),
            "--wait-for".into(),
            marker.into(),
            "--timeout".into(),
            "180".into(),
        ]
    };
    let online = online(&ctx)?;
    let mut carve_ms = Vec::new();
    let mut qemu_ms = Vec::new();
    let mut qemu_command = String::new();
    let hand_dir = tempfile_dir()?;
    for i in 0..a.runs {
        // Alternate which side goes first so drift on a shared machine hits both alike.
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                let name = format!("carve-bench-{pid}-{i}");
                let args = carve_args(&name);
                let t = std::time::Instant::now();
                let st = Command::new(&exe)
                    .args(&args)
                    .stderr(Stdio::null())
                    .stdout(Stdio::null())
                    .status()?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let _ = Command::new(&exe)
                    .args(["vm", "stop", &name, "--force"])
                    .stdout(Stdio::null())
                    .status();
                anyhow::ensure!(st.success(), "carve vm run failed in run {i}");
                carve_ms.push(ms);
            } else {
                let name = format!("carve-bench-hand-{pid}-{i}");
                let run = RunArgs {
                    name: name.clone(),
                    kernel: Some(g.kernel.clone()),
                    initrd: Some(g.initrd.clone()),
                    append: Some(a.append.clone()),
                    disk: vec![],
                    memory: a.memory.clone(),
                    vcpus: 1,
                    cpus: None,
                    housekeeping: None,
                    hugepages: false,
                    mem_lock: false,
                    no_prealloc: false,
                    machine: a.machine.clone(),
                    net: None,
                    device: vec![],
                    gdb: false,
                    rt_priority: None,
                    qemu: "qemu-system-x86_64".into(),
                    detach: false,
                    wait_for: None,
                    timeout: 0.0,
                    dry_run: true,
                };
                let spec = spec_from(&run, &online).map_err(fail)?;
                let paths = carve_vm::state::StatePaths::new(hand_dir.as_path(), &name);
                std::fs::create_dir_all(&paths.dir)?;
                // Exactly the command line carve runs, minus -S (nobody would `cont` by hand).
                let la = carve_vm::cmdline::LaunchArgs {
                    tsc_khz: carve_vm::host::guest_tsc_khz(&spec, accel),
                    ..Default::default()
                };
                let argv = carve_vm::cmdline::qemu_argv(&spec, &paths, accel, &la);
                let cores: Vec<usize> = spec.vcpu_cores();
                qemu_command = carve_vm::cmdline::shell_quote(&argv);
                if !a.hand_unpinned {
                    let list: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
                    qemu_command = format!("taskset -c {} {qemu_command}", list.join(","));
                }
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if !a.hand_unpinned {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
                    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                    for &c in &cores {
                        // SAFETY: planned cores are below CPU_SETSIZE (checked against online).
                        unsafe { libc::CPU_SET(c, &mut set) };
                    }
                    // SAFETY: sched_setaffinity is async-signal-safe; `set` is a copied value.
                    unsafe {
                        cmd.pre_exec(move || {
                            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        })
                    };
                }
                let t = std::time::Instant::now();
                let mut child = cmd.spawn()?;
                let r = carve_vm::console::wait_for(
                    &paths.console_log(),
                    0,
                    marker,
                    Duration::from_secs(180),
                    || child.try_wait().ok().flatten().map(|s| s.to_string()),
                );
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&paths.dir);
                r.map_err(|e| anyhow::anyhow!("hand-started QEMU, run {i}: {e}"))?;
                qemu_ms.push(ms);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&hand_dir);
    let report = BenchReport {
        runs: a.runs,
        accel: accel.as_str().into(),
        machine: a.machine.clone(),
        carve_median_ms: median(&carve_ms),
        qemu_median_ms: median(&qemu_ms),
        ratio: median(&carve_ms) / median(&qemu_ms).max(1e-9),
        carve_ms,
        qemu_ms,
        carve_command: format!(
            "carve {}",
            carve_vm::cmdline::shell_quote(&carve_args("NAME"))
        ),
        qemu_command,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "boot to {marker:?} under {}, {}, {} runs each, interleaved:",
            report.accel, report.machine, report.runs
        );
        println!(
            "  carve vm run --wait-for   median {:8.1} ms   {:?}",
            report.carve_median_ms,
            report
                .carve_ms
                .iter()
                .map(|x| x.round())
                .collect::<Vec<_>>()
        );
        println!(
            "  same QEMU line by hand    median {:8.1} ms   {:?}",
            report.qemu_median_ms,
            report.qemu_ms.iter().map(|x| x.round()).collect::<Vec<_>>()
        );
        println!(
            "  ratio carve / by hand     {:.3}x (target <= 1.05x)",
            report.ratio
        );
        println!("  carve: {}", report.carve_command);
        println!("  qemu:  {}", report.qemu_command);
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("carve-bench-vm-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
