//! Launching and supervising QEMU, and the operations on a running VM by name.

use crate::cmdline::{qemu_argv, Accel, LaunchArgs};
use crate::console::{self, WaitError};
use crate::host::{allowed_cpus, choose_accel, free_hugepages, hugetlbfs_mount};
use crate::pin::{self, PinError, VcpuPin};
use crate::qmp::{Qmp, QmpClient, QmpError};
use crate::spec::{SpecError, VmSpec};
use crate::state::{read_json, write_json, ExitReport, Runtime, StateError, StatePaths};
use crate::vfio::{self, VfioError};
use carve_core::host::Roots;
use carve_journal::{Change, Journal, ProcessId};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors of VM operations.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The spec was rejected before QEMU started.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A pass-through device is not ready.
    #[error("device pass-through: {0}")]
    Vfio(#[from] VfioError),
    /// State files.
    #[error(transparent)]
    State(#[from] StateError),
    /// The host change journal.
    #[error("journal: {0}")]
    Journal(#[from] carve_journal::Error),
    /// Talking to QEMU.
    #[error("VM {name}: {source}")]
    Qmp {
        /// The VM.
        name: String,
        /// The QMP error.
        source: QmpError,
    },
    /// Pinning vCPUs.
    #[error("VM {name}: {source}")]
    Pin {
        /// The VM.
        name: String,
        /// The pinning error.
        source: PinError,
    },
    /// The host model could not be read.
    #[error("reading the host: {0}")]
    Host(String),
    /// Creating the tap or attaching it.
    #[error("VM {name} network: {detail}")]
    Net {
        /// The VM.
        name: String,
        /// What failed.
        detail: String,
    },
    /// Placing QEMU in its cgroup.
    #[error("VM {name} cgroup: {detail}")]
    Cgroup {
        /// The VM.
        name: String,
        /// What failed.
        detail: String,
    },
    /// Making the VM's cgroup.
    #[error("VM {name} cgroup: {source}")]
    CgroupSetup {
        /// The VM.
        name: String,
        /// What failed.
        source: Box<crate::cgroup::CgroupError>,
    },
    /// QEMU could not be started.
    #[error("could not start {qemu}: {source}")]
    Spawn {
        /// The binary.
        qemu: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// QEMU ended while carve was setting it up or waiting on it.
    #[error("VM {name}: {}{}", .report.message, if .report.stderr_tail.is_empty() { String::new() } else { format!("; QEMU said: {}", .report.stderr_tail) })]
    Exited {
        /// The VM.
        name: String,
        /// How QEMU ended.
        report: ExitReport,
    },
    /// A VM of that name is running.
    #[error("VM {0} is already running (QEMU pid {1}); stop it first (carve vm stop {0})")]
    AlreadyRunning(String, i32),
    /// No running VM of that name.
    #[error("VM {0} is not running")]
    NotRunning(String),
    /// Waiting for console text.
    #[error("VM {name}: {source}")]
    Console {
        /// The VM.
        name: String,
        /// What happened.
        source: WaitError,
    },
    /// A wait with a deadline ran out.
    #[error("VM {name}: {what} did not happen within {} s", .waited.as_secs_f64())]
    Timeout {
        /// The VM.
        name: String,
        /// What was waited for.
        what: &'static str,
        /// How long.
        waited: Duration,
    },
    /// A file operation.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The hugetlbfs mount backing the guest's memory when the spec asks for huge pages, checked
/// to hold enough free 2 MiB pages.
fn hugetlbfs_for(ctx: &Context, spec: &VmSpec) -> Result<Option<String>, VmError> {
    if !spec.hugepages {
        return Ok(None);
    }
    let mnt = hugetlbfs_mount(&ctx.roots)
        .ok_or_else(|| SpecError::Hugepages("no hugetlbfs with 2 MiB pages is mounted".into()))?;
    let need = spec.memory / (2 << 20);
    let free = free_hugepages(&ctx.roots);
    if free < need {
        return Err(SpecError::Hugepages(format!(
            "{need} free 2 MiB pages needed, {free} free (reserve them in /proc/sys/vm/nr_hugepages)"
        ))
        .into());
    }
    Ok(Some(mnt))
}

/// Makes the VM's state folder ready for a launch (refusing a VM whose QEMU still runs), writes
/// the spec, and returns where this boot's output starts in the console log.
fn prepare_state_dir(paths: &StatePaths, spec: &VmSpec, boot: Boot) -> Result<u64, VmError> {
    if let Some(rt) = paths.read_runtime().ok().flatten() {
        if live_qemu(&rt) {
            return Err(VmError::AlreadyRunning(spec.name.clone(), rt.qemu_pid));
        }
    }
    std::fs::create_dir_all(&paths.dir).map_err(io("create", &paths.dir))?;
    for f in [paths.runtime(), paths.exit()] {
        let _ = std::fs::remove_file(f);
    }
    if boot == Boot::Fresh {
        std::fs::write(paths.console_log(), b"").map_err(io("create", &paths.console_log()))?;
    }
    let console_start = console::log_len(&paths.console_log());
    write_json(&paths.spec(), spec)?;
    Ok(console_start)
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VmError + 'a {
    move |source| VmError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Where the VM tier keeps and reads things; every root is a parameter.
#[derive(Debug, Clone)]
pub struct Context {
    /// VM state directories (`/run/carve/vm`).
    pub state_root: PathBuf,
    /// Host change journals (`/run/carve/journal`).
    pub journal_root: PathBuf,
    /// Host roots (/proc, /sys, /dev).
    pub roots: Roots,
    /// The cgroup root QEMU's cgroup `/carve-vm-NAME` is made under (`/sys/fs/cgroup`);
    /// `None` leaves QEMU in carve's own cgroup.
    pub cgroup_root: Option<PathBuf>,
    /// QEMU gets SIGKILL when the thread that launched it ends (`PR_SET_PDEATHSIG`): for tests,
    /// whose QEMU must not outlive a killed test process. Off for carve itself, whose VMs
    /// outlive a killed carve on purpose (`carve vm stop` / `carve restore` clean up after it),
    /// and whose launching thread is not always the one that keeps the VM.
    pub die_with_launcher: bool,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            state_root: crate::state::DEFAULT_STATE_ROOT.into(),
            journal_root: carve_journal::DEFAULT_ROOT.into(),
            roots: Roots::default(),
            cgroup_root: Some(carve_cgroups::DEFAULT_ROOT.into()),
            die_with_launcher: false,
        }
    }
}

impl Context {
    /// The state paths of VM `name`.
    pub fn paths(&self, name: &str) -> StatePaths {
        StatePaths::new(&self.state_root, name)
    }
}

/// How to start QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Boot {
    /// Boot the guest.
    #[default]
    Fresh,
    /// Wait paused for an incoming migration (`-incoming defer`); the console log is kept.
    Incoming,
}

/// A VM whose QEMU this process started and supervises. Dropping it kills QEMU (if it still
/// runs) and undoes the journal.
#[derive(Debug)]
pub struct Vm {
    spec: VmSpec,
    paths: StatePaths,
    child: Option<Child>,
    journal: Option<Journal>,
    runtime: Runtime,
    pins: Vec<VcpuPin>,
    warning: Option<String>,
    console_start: u64,
    report: Option<ExitReport>,
    /// When to look next for a guest that stopped without ending QEMU; `None` until the
    /// guest runs (a paused or incoming QEMU is not checked).
    next_halt_check: Option<Instant>,
    /// Why carve is ending QEMU for a stopped guest (goes into the exit report).
    halted: Option<String>,
}

/// How often a supervised VM is checked for a guest that stopped without ending QEMU.
pub const HALT_CHECK_EVERY: Duration = Duration::from_secs(2);

fn tap_name(vm: &str) -> String {
    // "cvt" + 8 hex digits of the name's FNV hash + "-0": unique per VM and ≤ 15 bytes.
    let mut h: u32 = 0x811c9dc5;
    for b in vm.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x01000193);
    }
    format!("carvt{h:08x}")
}

/// Whether a VM's QEMU is alive according to its runtime record.
fn live_qemu(rt: &Runtime) -> bool {
    ProcessId {
        pid: rt.qemu_pid,
        start_time: rt.qemu_start_time,
    }
    .is_alive()
}

fn live_supervisor(rt: &Runtime) -> bool {
    ProcessId {
        pid: rt.supervisor_pid,
        start_time: rt.supervisor_start_time,
    }
    .is_alive()
}

impl Vm {
    /// Validates `spec` against the host, then starts QEMU paused, pins its threads and (for a
    /// fresh boot) lets the guest run. Every host change is journaled under `ctx.journal_root`
    /// as `vm-NAME`, held by this process.
    pub fn launch(ctx: &Context, spec: VmSpec, boot: Boot) -> Result<Vm, VmError> {
        let dir = ctx.paths(&spec.name).dir;
        let fresh_dir = !dir.exists();
        let r = Self::launch_inner(ctx, spec, boot);
        if r.is_err() && fresh_dir {
            // A VM that never ran leaves no state directory behind (its journal is undone).
            let _ = std::fs::remove_dir_all(&dir);
        }
        r
    }

    fn launch_inner(ctx: &Context, spec: VmSpec, boot: Boot) -> Result<Vm, VmError> {
        let host = carve_core::read_host(&ctx.roots).map_err(|e| VmError::Host(e.to_string()))?;
        let online = host.online_cpus();
        spec.validate(&online)?;
        for d in &spec.devices {
            vfio::check_device(&ctx.roots.sys, &ctx.roots.dev, d)?;
        }
        let hugetlbfs = hugetlbfs_for(ctx, &spec)?;
        let (accel, warning) = choose_accel(&host);
        // Default housekeeping cores: online, not the VM's, not held exclusively by a cpuset.
        let exclusive = ctx
            .cgroup_root
            .as_ref()
            .map(|r| crate::host::exclusive_cpus(&r.join("cpuset")))
            .unwrap_or_default();
        let housekeeping =
            spec.housekeeping_cores(&online.difference(&exclusive).union(&spec.cpus));

        let paths = ctx.paths(&spec.name);
        let console_start = prepare_state_dir(&paths, &spec, boot)?;

        let journal = Journal::create(&ctx.journal_root, &StatePaths::journal_owner(&spec.name))?
            .with_link_undo(carve_net::journal_undo);
        let mut vm = Vm {
            runtime: Runtime {
                qemu_pid: 0,
                qemu_start_time: 0,
                supervisor_pid: std::process::id() as i32,
                supervisor_start_time: ProcessId::current().start_time,
                accel: accel.as_str().into(),
                tap: None,
                cgroups: Vec::new(),
                argv: Vec::new(),
            },
            spec,
            paths,
            child: None,
            journal: Some(journal),
            pins: Vec::new(),
            warning,
            console_start,
            report: None,
            next_halt_check: None,
            halted: None,
        };
        // From here on a failure drops `vm`, which kills QEMU and undoes the journal.
        let tap = vm.make_tap()?;
        let la = LaunchArgs {
            incoming: boot == Boot::Incoming,
            // Paused (-S) so pinning happens before the guest runs.
            paused: true,
            tap_fd: tap.as_ref().map(|t| t.as_raw_fd()),
            hugetlbfs,
            tsc_khz: crate::host::guest_tsc_khz(&vm.spec, accel),
        };
        let argv = qemu_argv(&vm.spec, &vm.paths, accel, &la);
        vm.runtime.argv = argv.clone();
        // The cgroup is journaled before QEMU, so undo kills QEMU first and then removes it.
        let cgroup = vm.make_cgroup(ctx, &housekeeping)?;
        vm.spawn(
            &argv,
            tap.as_ref().map(|t| t.as_raw_fd()),
            ctx.die_with_launcher,
        )?;
        drop(tap); // QEMU holds its own copy; the tap goes away when QEMU exits.
        if let Some(m) = &cgroup {
            // QEMU starts paused (-S): moving it now, before the guest runs, is soon enough.
            m.add_task(vm.runtime.qemu_pid)
                .map_err(|e| VmError::Cgroup {
                    name: vm.spec.name.clone(),
                    detail: format!("move QEMU pid {} in: {e}", vm.runtime.qemu_pid),
                })?;
        }
        write_json(&vm.paths.runtime(), &vm.runtime)?;

        vm.pin_and_run(ctx, &housekeeping, boot == Boot::Fresh && la.paused)?;
        Ok(vm)
    }

    /// Pins the vCPU threads (QEMU is paused, the guest has not run) and, with `resume`, lets
    /// the guest run and watches for its halt.
    fn pin_and_run(
        &mut self,
        ctx: &Context,
        housekeeping: &carve_core::CpuSet,
        resume: bool,
    ) -> Result<(), VmError> {
        let mut qmp = self.connect_qmp(Duration::from_secs(30))?;
        let name = self.spec.name.clone();
        let qe = |source| VmError::Qmp {
            name: name.clone(),
            source,
        };
        let cpus = qmp.query_cpus_fast().map_err(qe)?;
        let plan = pin::plan(&cpus, &self.spec.vcpu_cores()).map_err(|source| VmError::Pin {
            name: name.clone(),
            source,
        })?;
        pin::apply(
            &ctx.roots.proc,
            self.runtime.qemu_pid,
            &plan,
            housekeeping,
            self.spec.rt_priority,
        )
        .map_err(|source| VmError::Pin {
            name: name.clone(),
            source,
        })?;
        self.pins = plan;
        if resume {
            qmp.cont().map_err(qe)?;
            self.watch_halt();
        }
        Ok(())
    }

    fn make_tap(&mut self) -> Result<Option<OwnedFd>, VmError> {
        let Some(net) = self.spec.net.clone() else {
            return Ok(None);
        };
        let name = tap_name(&self.spec.name);
        let vm_name = self.spec.name.clone();
        let neterr = |d: String| VmError::Net {
            name: vm_name.clone(),
            detail: d,
        };
        self.journal_mut().record(Change::Link {
            name: name.clone(),
            netns: net.netns.clone(),
        })?;
        // Not persistent: the device lives as long as an fd (QEMU's) is open on it.
        let opts = carve_net::TapOptions {
            vnet_hdr: true,
            persist: false,
            multi_queue: false,
        };
        let tap = match &net.netns {
            Some(ns) => carve_net::in_netns(ns, || carve_net::create_tap(&name, &opts))
                .map_err(|e| neterr(e.to_string()))?,
            None => carve_net::create_tap(&name, &opts),
        }
        .map_err(|e| neterr(e.to_string()))?;
        let mut nl = match &net.netns {
            Some(ns) => carve_net::Netlink::open_in(ns),
            None => carve_net::Netlink::open(),
        }
        .map_err(|e| neterr(e.to_string()))?;
        nl.set_master(&name, &net.bridge)
            .map_err(|e| neterr(format!("attach tap {name} to bridge {}: {e}", net.bridge)))?;
        nl.set_up(&name).map_err(|e| neterr(e.to_string()))?;
        self.runtime.tap = Some(name);
        Ok(Some(tap.into_file().into()))
    }

    fn spawn(
        &mut self,
        argv: &[String],
        tap_fd: Option<i32>,
        die_with_launcher: bool,
    ) -> Result<(), VmError> {
        for s in [
            self.paths.qmp(),
            self.paths.console_sock(),
            self.paths.gdb(),
        ] {
            let _ = std::fs::remove_file(&s);
            self.journal_mut().record(Change::CreatedFile { path: s })?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.paths.qemu_log())
            .map_err(io("open", &self.paths.qemu_log()))?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a Ctrl-C at carve's terminal is carve's to handle.
            .process_group(0);
        if let Some(fd) = tap_fd {
            // SAFETY: the closure only calls fcntl, which is async-signal-safe, on an fd number.
            unsafe {
                cmd.pre_exec(move || {
                    // Keep the tap fd open across exec: QEMU's -netdev tap,fd=N uses it.
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
        }
        if die_with_launcher {
            // SAFETY: getpid has no preconditions; it runs here, before the fork.
            let launcher = unsafe { libc::getpid() };
            // SAFETY: the closure only calls prctl and getppid, both async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    // The signal fires when the launching *thread* ends: tests launch from the
                    // test's own thread, which lives as long as the VM should.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The launcher died before prctl took effect: nobody would kill us later.
                    if libc::getppid() != launcher {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                })
            };
        }
        let child = cmd.spawn().map_err(|source| VmError::Spawn {
            qemu: self.spec.qemu.clone(),
            source,
        })?;
        let pid = child.id() as i32;
        self.child = Some(child);
        let id = ProcessId::of(pid).unwrap_or(ProcessId { pid, start_time: 0 });
        self.runtime.qemu_pid = pid;
        self.runtime.qemu_start_time = id.start_time;
        // Recorded right after the spawn (a pid cannot be known before): undo kills it.
        self.journal_mut()
            .record(Change::Process { id, grace_ms: 500 })?;
        Ok(())
    }

    fn make_cgroup(
        &mut self,
        ctx: &Context,
        housekeeping: &carve_core::CpuSet,
    ) -> Result<Option<carve_cgroups::Manager>, VmError> {
        let Some(root) = &ctx.cgroup_root else {
            return Ok(None);
        };
        let cpus = self.spec.cpus.union(housekeeping);
        // Guest RAM plus QEMU's own share: code, heap, device state, I/O buffers, the TCG translation buffer;
        // with mem-lock all of its address space is resident.
        let mut limit = self.spec.memory + (256 << 20);
        if self.runtime.accel == "tcg" {
            limit += crate::cmdline::tcg_tb_mib(&self.spec) << 20;
        }
        if self.spec.mem_lock {
            limit += 256 << 20;
        }
        let name = self.spec.name.clone();
        let rt = self.spec.rt_priority.is_some();
        let (m, dirs) = crate::cgroup::make(self.journal_mut(), root, &name, &cpus, limit, rt)
            .map_err(|source| VmError::CgroupSetup {
                name: name.clone(),
                source: Box::new(source),
            })?;
        self.runtime.cgroups = dirs;
        Ok(Some(m))
    }

    fn journal_mut(&mut self) -> &mut Journal {
        self.journal
            .as_mut()
            .expect("journal open until the VM is done")
    }

    /// Connects to QEMU's QMP socket, failing early if QEMU exits.
    pub fn connect_qmp(&mut self, wait: Duration) -> Result<QmpClient, VmError> {
        let deadline = Instant::now() + wait;
        loop {
            match QmpClient::connect(&self.paths.qmp(), Duration::ZERO) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    if let Some(r) = self.try_exit() {
                        return Err(VmError::Exited {
                            name: self.spec.name.clone(),
                            report: r,
                        });
                    }
                    if Instant::now() > deadline {
                        return Err(VmError::Qmp {
                            name: self.spec.name.clone(),
                            source: e,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// The spec.
    pub fn spec(&self) -> &VmSpec {
        &self.spec
    }
    /// The state paths.
    pub fn paths(&self) -> &StatePaths {
        &self.paths
    }
    /// The runtime record (QEMU pid, accel, tap, cgroups, argv).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
    /// QEMU's pid.
    pub fn pid(&self) -> i32 {
        self.runtime.qemu_pid
    }
    /// Where each vCPU was pinned.
    pub fn pins(&self) -> &[VcpuPin] {
        &self.pins
    }
    /// The TCG fallback warning, when KVM is not usable.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }
    /// The console log offset where this QEMU's output starts.
    pub fn console_start(&self) -> u64 {
        self.console_start
    }

    /// Waits until `text` appears on the console after offset `from`; fails on timeout or when
    /// QEMU exits first. Returns the offset past the match.
    pub fn wait_for_console(
        &mut self,
        text: &str,
        from: u64,
        timeout: Duration,
    ) -> Result<u64, VmError> {
        let log = self.paths.console_log();
        let name = self.spec.name.clone();
        console::wait_for(&log, from, text, timeout, || {
            self.try_exit().map(|r| r.message)
        })
        .map_err(|source| VmError::Console { name, source })
    }

    /// From now on, [`Vm::try_exit`] also looks (every [`HALT_CHECK_EVERY`]) for a guest that
    /// stopped for good while QEMU runs, and ends QEMU then. Called once the guest runs.
    pub fn watch_halt(&mut self) {
        self.next_halt_check = Some(Instant::now() + HALT_CHECK_EVERY);
    }

    /// QEMU's exit report if it has ended (reaps it, writes exit.json, undoes the journal). A
    /// guest that stopped without ending QEMU ([`crate::halt`]) counts as ended: QEMU is quit
    /// (killed if it does not quit) and the report says why (`halted`).
    pub fn try_exit(&mut self) -> Option<ExitReport> {
        if self.report.is_some() {
            return self.report.clone();
        }
        if let Some(status) = self.child.as_mut()?.try_wait().ok()? {
            return Some(self.finish(status));
        }
        if self.next_halt_check.is_none_or(|t| Instant::now() < t) {
            return None;
        }
        self.next_halt_check = Some(Instant::now() + HALT_CHECK_EVERY);
        let why = crate::halt::guest_stopped(&self.paths.qmp(), Duration::from_secs(1))?;
        Some(self.end_stopped_guest(why))
    }

    /// Ends QEMU for a guest that stopped while QEMU runs: `quit`, then SIGKILL if it lingers.
    fn end_stopped_guest(&mut self, why: String) -> ExitReport {
        self.halted = Some(why);
        if let Ok(stream) = std::os::unix::net::UnixStream::connect(self.paths.qmp()) {
            if let Ok(mut q) = QmpClient::handshake(stream, Duration::from_secs(2)) {
                let _ = q.quit();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                return self.finish(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill()
    }

    /// Supervises: returns once QEMU has ended (or the guest stopped for good and carve ended
    /// QEMU), records how and undoes the journal. It waits as long as the VM runs — that is a
    /// supervisor's job; anything else waits with [`Vm::wait_timeout`].
    pub fn wait(&mut self) -> ExitReport {
        loop {
            if let Some(r) = self.try_exit() {
                return r;
            }
            if self.child.is_none() {
                return never_started();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// As [`Vm::wait`], for at most `timeout`; QEMU keeps running when the time is up.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitReport, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.try_exit() {
                return Ok(r);
            }
            if self.child.is_none() {
                return Ok(never_started());
            }
            if Instant::now() >= deadline {
                return Err(VmError::Timeout {
                    name: self.spec.name.clone(),
                    what: "QEMU's exit",
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(&mut self, st: std::process::ExitStatus) -> ExitReport {
        let tail = stderr_tail(&self.paths.qemu_log());
        let report = match (st.code(), st.signal()) {
            (Some(0), _) => ExitReport {
                code: Some(0),
                signal: None,
                clean: true,
                message: "QEMU exited cleanly".into(),
                stderr_tail: tail,
                halted: false,
            },
            (Some(c), _) => ExitReport {
                code: Some(c),
                signal: None,
                clean: false,
                message: format!("QEMU exited with status {c}"),
                stderr_tail: tail,
                halted: false,
            },
            (None, s) => ExitReport {
                code: None,
                signal: s,
                clean: false,
                message: format!("QEMU was killed by signal {}", s.unwrap_or(0)),
                stderr_tail: tail,
                halted: false,
            },
        };
        let report = match self.halted.take() {
            // The guest's end, not QEMU's: carve quit (or killed) it, as asked.
            Some(why) => ExitReport {
                clean: true,
                halted: true,
                message: format!("{why}; carve ended QEMU"),
                ..report
            },
            None => report,
        };
        let _ = write_json(&self.paths.exit(), &report);
        let _ = std::fs::remove_file(self.paths.runtime());
        if let Some(j) = self.journal.take() {
            if let Err(e) = j.undo() {
                eprintln!("carve: VM {}: cleanup incomplete: {e}", self.spec.name);
            }
        }
        self.report = Some(report.clone());
        report
    }

    /// Kills QEMU at once and cleans up; returns the exit report.
    pub fn kill(&mut self) -> ExitReport {
        if let Some(r) = &self.report {
            return r.clone();
        }
        let Some(c) = self.child.as_mut() else {
            return never_started();
        };
        let _ = c.kill();
        // SIGKILL ends a process unless it sits in uninterruptible I/O; even then this is
        // bounded, and the journal stays for `carve vm stop` / `carve restore`.
        let deadline = Instant::now() + KILL_WAIT;
        while Instant::now() < deadline {
            match c.try_wait() {
                Ok(Some(st)) => return self.finish(st),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    let mut r = self.finish(std::process::ExitStatus::from_raw(0));
                    r.message = format!("lost track of QEMU: {e}");
                    r.clean = false;
                    return r;
                }
            }
        }
        ExitReport {
            code: None,
            signal: None,
            clean: false,
            message: format!(
                "QEMU (pid {}) did not end within {} s of SIGKILL; its journal is kept",
                self.runtime.qemu_pid,
                KILL_WAIT.as_secs()
            ),
            stderr_tail: stderr_tail(&self.paths.qemu_log()),
            halted: false,
        }
    }

    /// Stops this VM: ACPI powerdown and up to `timeout` for the guest to power off, then a
    /// kill (at once with `force`).
    pub fn stop(&mut self, force: bool, timeout: Duration) -> (StopOutcome, ExitReport) {
        if let Some(r) = self.try_exit() {
            return (StopOutcome::AlreadyStopped, r);
        }
        if !force {
            if let Ok(mut q) = QmpClient::connect(&self.paths.qmp(), Duration::from_secs(2)) {
                if q.system_powerdown().is_ok() {
                    drop(q);
                    let deadline = Instant::now() + timeout;
                    while Instant::now() < deadline {
                        if let Some(r) = self.try_exit() {
                            let how = if r.halted {
                                StopOutcome::Halted
                            } else {
                                StopOutcome::PoweredOff
                            };
                            return (how, r);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        (StopOutcome::Killed, self.kill())
    }

    /// Removes the state directory (after QEMU has ended).
    pub fn remove_state(mut self) -> Result<(), VmError> {
        self.wait();
        std::fs::remove_dir_all(&self.paths.dir).map_err(io("remove", &self.paths.dir))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.report.is_none() {
            if self.child.is_some() {
                self.kill();
            } else if let Some(j) = self.journal.take() {
                let _ = j.undo();
            }
        }
    }
}

/// How long a SIGKILLed QEMU may take to be gone.
const KILL_WAIT: Duration = Duration::from_secs(60);

fn never_started() -> ExitReport {
    ExitReport {
        code: None,
        signal: None,
        clean: false,
        message: "QEMU never started".into(),
        stderr_tail: String::new(),
        halted: false,
    }
}

fn stderr_tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// The state of a VM as `carve vm status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The VM's name.
    pub name: String,
    /// QEMU's run state ("running", "paused", "inmigrate", ...), or "exited" / "crashed" /
    /// "halted" (the guest stopped without powering off, and carve ended QEMU) once QEMU is gone, or "orphaned" when QEMU runs but its supervisor is gone.
    pub state: String,
    /// QEMU's pid while it runs.
    pub qemu_pid: Option<i32>,
    /// The supervising carve process.
    pub supervisor_pid: Option<i32>,
    /// "kvm" or "tcg".
    pub accel: Option<String>,
    /// vCPUs: index, thread id, allowed cores.
    pub vcpus: Vec<VcpuStatus>,
    /// The tap, if any.
    pub tap: Option<String>,
    /// How QEMU ended, once it has.
    pub exit: Option<ExitReport>,
    /// The console log.
    pub console_log: PathBuf,
}

/// One vCPU in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VcpuStatus {
    /// vCPU index.
    pub index: usize,
    /// Host thread id.
    pub thread_id: i32,
    /// Cores the thread may run on (Cpus_allowed_list).
    pub allowed_cores: String,
}

fn runtime_of(ctx: &Context, name: &str) -> Result<(StatePaths, Runtime), VmError> {
    let paths = ctx.paths(name);
    if !paths.dir.exists() {
        return Err(StateError::NotFound(name.into(), paths.dir.clone()).into());
    }
    match paths.read_runtime()? {
        Some(rt) if live_qemu(&rt) => Ok((paths, rt)),
        _ => Err(VmError::NotRunning(name.into())),
    }
}

/// Connects to the QMP socket of running VM `name`.
pub fn qmp_of(ctx: &Context, name: &str) -> Result<QmpClient, VmError> {
    let (paths, _) = runtime_of(ctx, name)?;
    QmpClient::connect(&paths.qmp(), Duration::from_secs(5)).map_err(|source| VmError::Qmp {
        name: name.into(),
        source,
    })
}

fn qerr(name: &str) -> impl Fn(QmpError) -> VmError + '_ {
    move |source| VmError::Qmp {
        name: name.into(),
        source,
    }
}

/// The status of VM `name`.
pub fn status(ctx: &Context, name: &str) -> Result<Status, VmError> {
    let paths = ctx.paths(name);
    if !paths.dir.exists() {
        return Err(StateError::NotFound(name.into(), paths.dir.clone()).into());
    }
    let rt = paths.read_runtime()?;
    let exit = paths.read_exit()?;
    let mut st = Status {
        name: name.into(),
        state: "unknown".into(),
        qemu_pid: None,
        supervisor_pid: None,
        accel: rt.as_ref().map(|r| r.accel.clone()),
        vcpus: Vec::new(),
        tap: rt.as_ref().and_then(|r| r.tap.clone()),
        exit: exit.clone(),
        console_log: paths.console_log(),
    };
    match rt {
        Some(rt) if live_qemu(&rt) => {
            st.qemu_pid = Some(rt.qemu_pid);
            st.supervisor_pid = live_supervisor(&rt).then_some(rt.supervisor_pid);
            let mut q = qmp_of(ctx, name)?;
            let s = q.query_status().map_err(qerr(name))?;
            st.state = if st.supervisor_pid.is_none() {
                format!("orphaned ({})", s.status)
            } else {
                s.status
            };
            for c in q.query_cpus_fast().map_err(qerr(name))? {
                st.vcpus.push(VcpuStatus {
                    index: c.cpu_index,
                    thread_id: c.thread_id,
                    allowed_cores: allowed_cpus(&ctx.roots.proc, rt.qemu_pid, c.thread_id)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                });
            }
        }
        _ => {
            st.state = match &exit {
                Some(e) if e.halted => "halted".into(),
                Some(e) if e.clean => "exited".into(),
                Some(_) => "crashed".into(),
                None => "stopped".into(),
            };
        }
    }
    Ok(st)
}

/// Pauses VM `name`'s vCPUs.
pub fn pause(ctx: &Context, name: &str) -> Result<(), VmError> {
    qmp_of(ctx, name)?.stop().map_err(qerr(name))
}

/// Resumes VM `name`'s vCPUs.
pub fn resume(ctx: &Context, name: &str) -> Result<(), VmError> {
    qmp_of(ctx, name)?.cont().map_err(qerr(name))
}

/// Saves VM `name`'s whole state to `file` (migration to a file while paused). The VM is left
/// running if it was running.
pub fn snapshot(ctx: &Context, name: &str, file: &Path) -> Result<(), VmError> {
    let mut q = qmp_of(ctx, name)?;
    q.set_timeout(Duration::from_secs(60));
    let was_running = q.query_status().map_err(qerr(name))?.running;
    q.stop().map_err(qerr(name))?;
    let f = std::fs::File::create(file).map_err(io("create", file))?;
    // QEMU 7.2 has no file: URI; an fd handed over with getfd works on every version.
    q.getfd("carve-snapshot", f.as_raw_fd())
        .map_err(qerr(name))?;
    drop(f);
    q.migrate("fd:carve-snapshot").map_err(qerr(name))?;
    let r = q
        .wait_migration(Duration::from_secs(120))
        .map_err(qerr(name));
    if was_running {
        q.cont().map_err(qerr(name))?;
    }
    r
}

/// Waits on the destination side until an incoming migration has landed, then resumes.
fn finish_incoming(vm: &mut Vm, q: &mut QmpClient, timeout: Duration) -> Result<(), VmError> {
    let name = vm.spec.name.clone();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(r) = vm.try_exit() {
            return Err(VmError::Exited { name, report: r });
        }
        let s = q.query_status().map_err(qerr(&name))?;
        match s.status.as_str() {
            "inmigrate" if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            "inmigrate" => {
                return Err(VmError::Qmp {
                    name,
                    source: QmpError::Timeout("the incoming migration".into()),
                })
            }
            _ => break,
        }
    }
    q.cont().map_err(qerr(&name))?;
    vm.watch_halt();
    Ok(())
}

/// Starts `spec` from a snapshot `file` made by [`snapshot`]; the guest continues where it was.
/// The caller supervises the returned VM.
pub fn restore(ctx: &Context, spec: VmSpec, file: &Path) -> Result<Vm, VmError> {
    let f = std::fs::File::open(file).map_err(io("open", file))?;
    let mut vm = Vm::launch(ctx, spec, Boot::Incoming)?;
    let mut q = vm.connect_qmp(Duration::from_secs(10))?;
    q.set_timeout(Duration::from_secs(60));
    let name = vm.spec.name.clone();
    q.getfd("carve-restore", f.as_raw_fd())
        .map_err(qerr(&name))?;
    drop(f);
    q.migrate_incoming("fd:carve-restore")
        .map_err(qerr(&name))?;
    finish_incoming(&mut vm, &mut q, Duration::from_secs(120))?;
    Ok(vm)
}

/// Live-migrates running VM `name` to a new QEMU on this host running `dest` (the same spec
/// under a new name, on the same or other cores) over a unix socket. The source QEMU quits once
/// the destination runs; the caller supervises the returned VM.
pub fn migrate(ctx: &Context, name: &str, mut dest: VmSpec) -> Result<Vm, VmError> {
    let (src_paths, _) = runtime_of(ctx, name)?;
    let src_spec = src_paths.read_spec()?;
    if let (Some(n), Some(sn)) = (dest.net.as_mut(), src_spec.net.as_ref()) {
        // The guest keeps its MAC address across the move.
        n.mac = Some(sn.mac.clone().unwrap_or_else(|| crate::spec::mac_for(name)));
    }
    let mut vm = Vm::launch(ctx, dest, Boot::Incoming)?;
    let sock = vm.paths.dir.join("migrate.sock");
    let dname = vm.spec.name.clone();
    let mut dq = vm.connect_qmp(Duration::from_secs(10))?;
    dq.migrate_incoming(&format!("unix:{}", sock.display()))
        .map_err(qerr(&dname))?;
    let mut sq = qmp_of(ctx, name)?;
    sq.set_timeout(Duration::from_secs(60));
    sq.migrate(&format!("unix:{}", sock.display()))
        .map_err(qerr(name))?;
    let r = sq.wait_migration(Duration::from_secs(300));
    let _ = std::fs::remove_file(&sock);
    if let Err(e) = r {
        // The source keeps running; the half-made destination is dropped (killed, cleaned).
        let _ = sq.cont();
        return Err(qerr(name)(e));
    }
    finish_incoming(&mut vm, &mut dq, Duration::from_secs(60))?;
    // The source is now "postmigrate": end it; its supervisor cleans up after it.
    let _ = sq.quit();
    Ok(vm)
}

/// How a stop ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopOutcome {
    /// The guest powered off after the ACPI button.
    PoweredOff,
    /// QEMU was killed (forced, or the guest ignored the button until the timeout).
    Killed,
    /// The guest stopped without ending QEMU (halted with interrupts off, panicked); carve
    /// ended QEMU.
    Halted,
    /// QEMU was not running; leftovers were cleaned.
    AlreadyStopped,
}

/// Stops VM `name`: ACPI powerdown, waiting up to `timeout` for the guest to power off, then a
/// kill (at once with `force`). Then the VM's journal is undone (by its supervisor, or here
/// when the supervisor is gone) and its state directory removed.
pub fn stop(
    ctx: &Context,
    name: &str,
    force: bool,
    timeout: Duration,
) -> Result<StopOutcome, VmError> {
    let paths = ctx.paths(name);
    let journal_path =
        carve_journal::journal_path(&ctx.journal_root, &StatePaths::journal_owner(name));
    if !paths.dir.exists() && !journal_path.exists() {
        return Err(StateError::NotFound(name.into(), paths.dir.clone()).into());
    }
    let rt = paths.read_runtime().ok().flatten();
    let mut outcome = StopOutcome::AlreadyStopped;
    if let Some(rt) = rt.as_ref().filter(|rt| live_qemu(rt)) {
        let qemu = ProcessId {
            pid: rt.qemu_pid,
            start_time: rt.qemu_start_time,
        };
        let mut ended = Ended::TimedOut;
        if !force {
            if let Ok(mut q) = QmpClient::connect(&paths.qmp(), Duration::from_secs(2)) {
                if q.system_powerdown().is_ok() {
                    drop(q);
                    ended = wait_gone_or_halted(&qemu, &paths.qmp(), timeout);
                }
            }
        }
        if ended == Ended::Gone {
            // The supervisor may have ended QEMU for a guest that halted instead of powering off.
            let halted = paths.read_exit().ok().flatten().is_some_and(|e| e.halted);
            outcome = if halted {
                StopOutcome::Halted
            } else {
                StopOutcome::PoweredOff
            };
        } else {
            if qemu.is_alive() {
                // SAFETY: kill takes a pid, checked to be this QEMU (pid + start time) just before.
                unsafe { libc::kill(qemu.pid, libc::SIGKILL) };
            }
            wait_gone(&qemu, Duration::from_secs(10));
            outcome = if ended == Ended::Halted {
                StopOutcome::Halted
            } else {
                StopOutcome::Killed
            };
        }
        // Give a live supervisor the moment it needs to reap QEMU and undo the journal.
        if live_supervisor(rt) {
            let sup = ProcessId {
                pid: rt.supervisor_pid,
                start_time: rt.supervisor_start_time,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while journal_path.exists() && sup.is_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // A journal still there means its holder is gone (carve was killed) or stuck: undo it here
    // (QEMU, tap, cgroup, sockets). Each undo step tolerates what is already gone.
    if let Some(j) = Journal::load_if_present(&journal_path)? {
        j.with_link_undo(carve_net::journal_undo).undo()?;
    }
    if paths.dir.exists() {
        std::fs::remove_dir_all(&paths.dir).map_err(io("remove", &paths.dir))?;
    }
    Ok(outcome)
}

/// How a wait for QEMU to end after `system_powerdown` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// QEMU is gone.
    Gone,
    /// QEMU runs but its guest stopped for good ([`crate::halt`]): waiting longer is useless.
    Halted,
    /// The timeout passed.
    TimedOut,
}

fn wait_gone_or_halted(p: &ProcessId, qmp: &Path, timeout: Duration) -> Ended {
    let deadline = Instant::now() + timeout;
    let mut next_check = Instant::now() + HALT_CHECK_EVERY;
    while p.is_alive() {
        let now = Instant::now();
        if now >= deadline {
            return Ended::TimedOut;
        }
        if now >= next_check {
            if crate::halt::guest_stopped(qmp, Duration::from_secs(1)).is_some() {
                return Ended::Halted;
            }
            next_check = Instant::now() + HALT_CHECK_EVERY;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ended::Gone
}

fn wait_gone(p: &ProcessId, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while p.is_alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Reads a JSON file (re-exported for the CLI).
pub fn read_state_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Result<T, VmError> {
    Ok(read_json(p)?)
}

/// The accelerator this host gives VMs, with the fallback warning.
pub fn host_accel(ctx: &Context) -> Result<(Accel, Option<String>), VmError> {
    let host = carve_core::read_host(&ctx.roots).map_err(|e| VmError::Host(e.to_string()))?;
    Ok(choose_accel(&host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_an_interface_name() {
        let t = tap_name("a-very-long-vm-name-that-goes-on");
        assert!(t.len() <= 15, "{t}");
        assert!(t.contains("carv"));
        assert_ne!(tap_name("a"), tap_name("b"));
    }
}
