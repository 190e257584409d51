//! [`Partition`]: sets a dedicated partition up, launches into it, and tears it down.
//!
//! Setup order (each step journaled; a failure undoes what was done and reports both errors):
//! validate against the host and the other live runs → register the run → cpuset partition →
//! sysctls → workqueue masks → IRQs → huge pages → move tasks → /dev/cpu_dma_latency → watcher.

use carve_core::CpuSet;
use carve_journal::{Change, Journal, ProcessId};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cpuset::{setup_v1, setup_v2, CpusetError, CpusetPartition};
use crate::launch::{launch_with_output, LaunchConfig, LaunchError};
use crate::spec::DedicatedSpec;
use crate::sys::{online_cpus, CpusetRoot, HostPaths};
use crate::tasks::{Immovable, TaskMover, Watcher};
use crate::tune::{
    grant_hugepages, move_block_completions, move_workqueues, reboot_advice, refresh_vmstat,
    route_irqs, set_sysctls, HugePagesError, HugePagesGrant, IrqReport, RebootAdvice,
};

/// Why a partition was refused or could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be honoured on this host; nothing was changed.
    #[error("refused: {0}")]
    Refused(String),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] carve_journal::Error),
    /// The cpuset partition failed.
    #[error(transparent)]
    Cpuset(#[from] CpusetError),
    /// Huge pages could not be granted.
    #[error(transparent)]
    HugePages(#[from] HugePagesError),
    /// The process could not be started.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A file of the run's own state failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Setup failed and so did undoing it.
    #[error("{first}; undoing what was done also failed: {undo}")]
    Rollback {
        /// The setup error.
        first: Box<Error>,
        /// The undo error.
        undo: Box<carve_journal::Error>,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A live run's registration: RUN/dedicated/NAME.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunState {
    /// The partition's name.
    pub name: String,
    /// The carve process holding it.
    pub holder: ProcessId,
    /// Its dedicated cores.
    pub cpus: CpuSet,
}

/// Every registered run under `state_root`.
pub fn registered_runs(state_root: &Path) -> Vec<RunState> {
    let Ok(rd) = std::fs::read_dir(state_root) else {
        return Vec::new();
    };
    let mut v: Vec<RunState> = rd
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Checks `spec` against the host's online CPUs and the other registered runs; returns the
/// housekeeping cores it will really use (its housekeeping minus cores other live runs dedicate).
/// Nothing changes.
pub fn validate(spec: &DedicatedSpec, online: &CpuSet, runs: &[RunState]) -> Result<CpuSet, Error> {
    let r = |m: String| Err(Error::Refused(m));
    if spec.name.is_empty()
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return r(format!(
            "partition name {:?} must be letters, digits, '-' or '_'",
            spec.name
        ));
    }
    if spec.cpus.is_empty() {
        return r("no dedicated CPU given".into());
    }
    if !spec.cpus.is_subset(online) {
        return r(format!(
            "CPUs {} are not online (online: {online})",
            spec.cpus.difference(online)
        ));
    }
    if !spec.housekeeping.intersection(&spec.cpus).is_empty() {
        return r(format!(
            "CPUs {} are both dedicated and housekeeping",
            spec.housekeeping.intersection(&spec.cpus)
        ));
    }
    let mut hk = spec.housekeeping.intersection(online);
    for run in runs {
        if !run.holder.is_alive() {
            return r(format!(
                "an earlier dedicated run {:?} (pid {}) ended without restoring the host; run `carve restore` first",
                run.name, run.holder.pid
            ));
        }
        if run.name == spec.name {
            return r(format!(
                "a dedicated run named {:?} is already live (pid {})",
                run.name, run.holder.pid
            ));
        }
        let overlap = run.cpus.intersection(&spec.cpus);
        if !overlap.is_empty() {
            return r(format!(
                "CPUs {overlap} are already dedicated to the live run {:?} (pid {})",
                run.name, run.holder.pid
            ));
        }
        // Another run's cores are not housekeeping for this one.
        hk = hk.difference(&run.cpus);
    }
    if hk.is_empty() {
        return r(format!(
            "dedicating CPUs {} leaves no housekeeping core for Linux (online: {online}, dedicated by live runs: {}); keep at least one",
            spec.cpus,
            runs.iter().map(|r| r.cpus.to_string()).collect::<Vec<_>>().join(" ")
        ));
    }
    Ok(hk)
}

/// The partition builder: a spec plus the host roots and options.
#[derive(Debug, Clone)]
pub struct Partition {
    spec: DedicatedSpec,
    paths: HostPaths,
    watch_interval: Duration,
}

/// What setup did, for the user.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    /// Dedicated cores.
    pub cpus: String,
    /// Housekeeping cores.
    pub housekeeping: String,
    /// The partition's cpuset and the hierarchy version ("v1 /sys/fs/cgroup/cpuset/carve-ded-x").
    pub cpuset: String,
    /// Other cpusets shrunk: (dir, old, new).
    pub cpusets_adjusted: Vec<(PathBuf, String, String)>,
    /// Tasks moved off at setup.
    pub tasks_moved: usize,
    /// Tasks that stay on the dedicated cores.
    pub immovable: Vec<Immovable>,
    /// IRQ routing.
    pub irqs: IrqReport,
    /// Workqueue masks and block queues' rq_affinity set.
    pub workqueues: Vec<PathBuf>,
    /// Huge pages granted.
    pub hugepages: Vec<HugePagesGrant>,
    /// Whether /dev/cpu_dma_latency is held at 0.
    pub dma_latency: bool,
    /// Knobs that would need a reboot.
    pub reboot: RebootAdvice,
}

impl Partition {
    /// A partition for `spec` on the real host.
    pub fn new(spec: DedicatedSpec) -> Self {
        Partition {
            spec,
            paths: HostPaths::default(),
            watch_interval: Duration::from_millis(200),
        }
    }

    /// Uses other host roots (tests).
    pub fn paths(mut self, paths: HostPaths) -> Self {
        self.paths = paths;
        self
    }

    /// How often the watcher looks for tasks that landed on the dedicated cores.
    pub fn watch_interval(mut self, d: Duration) -> Self {
        self.watch_interval = d;
        self
    }

    /// The journal owner name of a partition called `name`.
    pub fn journal_owner(name: &str) -> String {
        format!("dedicated-{name}")
    }

    /// Validates and sets the partition up. On failure everything done so far is undone.
    ///
    /// The phases: check the host (`check`), register the run under the state lock and make
    /// the journaled host changes (`apply`), move tasks off the dedicated cores
    /// (`first_moves`), hold /dev/cpu_dma_latency, report (`report`), and start the watcher.
    pub fn setup(self) -> Result<ActivePartition, Error> {
        let (mut spec, paths, watch_interval) = (self.spec, self.paths, self.watch_interval);
        let online = Self::check(&spec, &paths)?;
        let state_root = paths.state_root();
        std::fs::create_dir_all(&state_root).map_err(io_err(&state_root))?;
        // One setup at a time: the check of other runs and our registration are one step.
        let lock_path = state_root.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // SAFETY: the fd is valid for the life of `lock`; flock has no memory effects.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        spec.housekeeping = validate(&spec, &online, &registered_runs(&state_root))?;
        let mut j = Journal::create(paths.journal_root(), &Self::journal_owner(&spec.name))?;
        let state_file = state_root.join(format!("{}.json", spec.name));
        let mut partial = match apply(&mut j, &paths, &spec, &state_file, lock) {
            Ok(p) => p,
            Err(e) => return Err(rollback(e, j)),
        };
        let journal = Arc::new(Mutex::new(j));
        let mut mover = TaskMover::new(
            &paths.proc,
            spec.cpus.clone(),
            spec.housekeeping.clone(),
            partial.cpuset.clone(),
        );
        let moved = match first_moves(&mut mover, &journal) {
            Ok(n) => n,
            Err(e) => return Err(rollback(e, unwrap_journal(journal))),
        };
        refresh_vmstat(&paths);
        let dma = if spec.dma_latency {
            match hold_dma_latency() {
                Ok(f) => Some(f),
                Err(e) => {
                    return Err(rollback(
                        Error::Io {
                            path: "/dev/cpu_dma_latency".into(),
                            source: e,
                        },
                        unwrap_journal(journal),
                    ))
                }
            }
        } else {
            None
        };
        let report = report(&spec, &paths, &mut partial, moved, &mover, dma.is_some());
        let mover = Arc::new(Mutex::new(mover));
        let watcher = Watcher::start(mover.clone(), journal.clone(), watch_interval);
        Ok(ActivePartition {
            spec,
            paths,
            journal: Some(journal),
            mover,
            watcher: Some(watcher),
            dma,
            cpuset: partial.cpuset,
            report,
        })
    }

    /// What must hold before anything changes: the online CPUs are readable, the IRQs exist.
    fn check(spec: &DedicatedSpec, paths: &HostPaths) -> Result<CpuSet, Error> {
        let online = online_cpus(&paths.sys)
            .ok_or_else(|| Error::Refused("cannot read the online CPUs".into()))?;
        for irq in &spec.irqs {
            if !paths.proc.join(format!("irq/{irq}")).exists() {
                return Err(Error::Refused(format!("IRQ {irq} does not exist")));
            }
        }
        Ok(online)
    }
}

/// Registers the run (its state file, then the state lock is released) and makes every
/// journaled host change: the cpuset, sysctls, workqueue and block-completion masks, IRQ
/// routing, huge pages. The caller rolls the journal back on error.
fn apply(
    j: &mut Journal,
    paths: &HostPaths,
    spec: &DedicatedSpec,
    state_file: &Path,
    lock: File,
) -> Result<Partial, Error> {
    let mut partial = Partial::default();
    j.record(Change::CreatedFile {
        path: state_file.to_path_buf(),
    })?;
    let st = RunState {
        name: spec.name.clone(),
        holder: ProcessId::current(),
        cpus: spec.cpus.clone(),
    };
    std::fs::write(state_file, serde_json::to_string(&st).expect("serializes"))
        .map_err(io_err(state_file))?;
    drop(lock);
    partial.cpuset = match paths.cpuset_root() {
        Some(CpusetRoot::V1(root)) => Some(setup_v1(
            j,
            &root,
            &spec.name,
            &spec.cpus,
            &spec.housekeeping,
        )?),
        Some(CpusetRoot::V2(root)) => Some(setup_v2(j, &root, &spec.name, &spec.cpus)?),
        None => None,
    };
    set_sysctls(j, paths, spec.sched.is_rt(), spec.stat_interval)?;
    partial.workqueues = move_workqueues(j, paths, &spec.housekeeping)?;
    partial.workqueues.extend(move_block_completions(j, paths)?);
    partial.irqs = route_irqs(j, paths, &spec.housekeeping, &spec.cpus, &spec.irqs)?;
    for h in &spec.hugepages {
        partial
            .hugepages
            .push(grant_hugepages(j, paths, &spec.name, h)?);
    }
    Ok(partial)
}

/// Moves tasks off the dedicated cores. Tasks forked while a pass runs (by a parent it had not
/// reached yet) inherit the old affinity and are missed by it: pass again until a pass finds
/// nobody (at most 4). Returns how many moved.
fn first_moves(mover: &mut TaskMover, journal: &Arc<Mutex<Journal>>) -> Result<usize, Error> {
    let mut moved = 0;
    for i in 0..4 {
        let n = mover.pass(journal)?;
        moved += n;
        if n == 0 && i > 0 {
            break;
        }
    }
    mover.moved_later = 0;
    Ok(moved)
}

/// What setup did, for the user (the IRQ, workqueue and huge-page lists move into it).
fn report(
    spec: &DedicatedSpec,
    paths: &HostPaths,
    partial: &mut Partial,
    moved: usize,
    mover: &TaskMover,
    dma_latency: bool,
) -> SetupReport {
    SetupReport {
        cpus: spec.cpus.to_string(),
        housekeeping: spec.housekeeping.to_string(),
        cpuset: match &partial.cpuset {
            Some(c) => format!(
                "{} {}",
                match c.root {
                    CpusetRoot::V1(_) => "v1",
                    CpusetRoot::V2(_) => "v2",
                },
                c.dir.display()
            ),
            None => "none (no cpuset hierarchy mounted)".into(),
        },
        cpusets_adjusted: partial
            .cpuset
            .as_ref()
            .map(|c| c.adjusted.clone())
            .unwrap_or_default(),
        tasks_moved: moved,
        immovable: mover.immovable(),
        irqs: std::mem::take(&mut partial.irqs),
        workqueues: std::mem::take(&mut partial.workqueues),
        hugepages: std::mem::take(&mut partial.hugepages),
        dma_latency,
        reboot: match carve_core::host::read_host(&carve_core::host::Roots {
            proc: paths.proc.clone(),
            sys: paths.sys.clone(),
            ..Default::default()
        }) {
            Ok(h) => reboot_advice(&h.kernel, &spec.cpus),
            Err(e) => RebootAdvice {
                lines: vec![format!("cannot tell which boot-time knobs are set: {e}")],
            },
        },
    }
}

#[derive(Default)]
struct Partial {
    cpuset: Option<CpusetPartition>,
    workqueues: Vec<PathBuf>,
    irqs: IrqReport,
    hugepages: Vec<HugePagesGrant>,
}

fn unwrap_journal(j: Arc<Mutex<Journal>>) -> Journal {
    match Arc::try_unwrap(j) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => panic!("journal still shared"),
    }
}

fn rollback(first: Error, j: Journal) -> Error {
    match j.undo() {
        Ok(()) => first,
        Err(undo) => Error::Rollback {
            first: Box::new(first),
            undo: Box::new(undo),
        },
    }
}

/// Stops every process listed in `procs` (a cgroup.procs file) except this one: SIGTERM, then
/// SIGKILL after `grace`. The command's descendants live there, and the cpuset cannot be removed
/// while they do.
fn stop_members(procs: &Path, grace: Duration) {
    let me = std::process::id() as i32;
    let members = || -> Vec<i32> {
        std::fs::read_to_string(procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|&p| p != me)
            // Zombies are gone as far as the cpuset is concerned (and cannot be killed).
            .filter(|&p| ProcessId::of(p).is_some_and(|id| id.is_alive()))
            .collect()
    };
    for (sig, wait) in [
        (libc::SIGTERM, grace),
        (libc::SIGKILL, Duration::from_secs(5)),
    ] {
        let pids = members();
        if pids.is_empty() {
            return;
        }
        for p in pids {
            // SAFETY: kill has no memory effects; the pids are members of our own cpuset.
            unsafe { libc::kill(p, sig) };
        }
        let deadline = std::time::Instant::now() + wait;
        while !members().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// /dev/cpu_dma_latency holds its request while the file is open: closing it (also by a crash)
/// gives the request back, so it needs no journal entry.
fn hold_dma_latency() -> std::io::Result<File> {
    let mut f = File::options().write(true).open("/dev/cpu_dma_latency")?;
    f.write_all(&0i32.to_ne_bytes())?;
    Ok(f)
}

/// A partition that is set up. Drop tears it down too, but [`ActivePartition::teardown`] reports.
pub struct ActivePartition {
    spec: DedicatedSpec,
    paths: HostPaths,
    journal: Option<Arc<Mutex<Journal>>>,
    mover: Arc<Mutex<TaskMover>>,
    watcher: Option<Watcher>,
    dma: Option<File>,
    cpuset: Option<CpusetPartition>,
    report: SetupReport,
}

/// What teardown found.
#[derive(Debug, Clone, Serialize)]
pub struct TeardownReport {
    /// Tasks the watcher moved off the cores during the run.
    pub tasks_moved_later: usize,
    /// New tasks given their parent's old affinity back on teardown.
    pub tasks_inherited: usize,
    /// How many journaled changes were undone.
    pub changes_undone: usize,
    /// Things the caller should tell the user (another run still live, say).
    pub warnings: Vec<String>,
}

impl ActivePartition {
    /// The spec it was set up from.
    pub fn spec(&self) -> &DedicatedSpec {
        &self.spec
    }

    /// The host roots it was set up under.
    pub fn paths(&self) -> &HostPaths {
        &self.paths
    }

    /// What setup did.
    pub fn report(&self) -> &SetupReport {
        &self.report
    }

    /// The partition's cpuset.
    pub fn cpuset(&self) -> Option<&CpusetPartition> {
        self.cpuset.as_ref()
    }

    /// The journal file (for `carve restore` after a crash).
    pub fn journal_path(&self) -> Option<PathBuf> {
        self.journal
            .as_ref()
            .map(|j| j.lock().expect("journal lock").path().to_path_buf())
    }

    /// Puts thread `tid` of this process in the partition (v1: its cpuset; v2, where a single
    /// thread cannot join a domain cgroup: its affinity) and pins it to `cpu`.
    pub fn join_thread(&self, tid: i32, cpu: usize) -> Result<(), Error> {
        self.mover.lock().expect("mover lock").exempt(tid);
        if let Some(c) = &self.cpuset {
            if matches!(c.root, CpusetRoot::V1(_)) {
                let f = c.tasks_file();
                std::fs::write(&f, tid.to_string()).map_err(io_err(&f))?;
            }
        }
        crate::sys::set_affinity(tid, &[cpu].into_iter().collect()).map_err(|source| Error::Io {
            path: format!("sched_setaffinity({tid})").into(),
            source,
        })
    }

    /// The environment handed to the process: CARVE_PARTITION, CARVE_CPUS, CARVE_HOUSEKEEPING,
    /// CARVE_SCHED, CARVE_MLOCK, and CARVE_HUGEPAGES ("SIZE:COUNT:MOUNT" per grant, comma-separated).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CARVE_PARTITION".into(), self.spec.name.clone()),
            ("CARVE_CPUS".into(), self.spec.cpus.to_string()),
            (
                "CARVE_HOUSEKEEPING".into(),
                self.spec.housekeeping.to_string(),
            ),
            ("CARVE_SCHED".into(), self.spec.sched.to_string()),
            (
                "CARVE_MLOCK".into(),
                if self.spec.mlock { "1" } else { "0" }.into(),
            ),
        ];
        if !self.report.hugepages.is_empty() {
            let hp: Vec<String> = self
                .report
                .hugepages
                .iter()
                .map(|g| {
                    format!(
                        "{}:{}:{}",
                        crate::spec::HugePagesSpec {
                            node: None,
                            ..g.spec
                        }
                        .to_string()
                        .split(':')
                        .next()
                        .unwrap_or(""),
                        g.spec.count,
                        g.mount.display()
                    )
                })
                .collect();
            env.push(("CARVE_HUGEPAGES".into(), hp.join(",")));
        }
        env.extend(self.spec.env.iter().cloned());
        env
    }

    /// Starts the spec's command in the partition (recorded in the journal, so a crashed carve's
    /// `carve restore` stops it before undoing the partition).
    pub fn launch(&mut self) -> Result<Child, Error> {
        self.launch_logged(None)
    }

    /// Like [`ActivePartition::launch`], with the command's stdout and stderr going to `log`.
    pub fn launch_logged(&mut self, log: Option<&File>) -> Result<Child, Error> {
        let cfg = LaunchConfig {
            command: self.spec.command.clone(),
            env: self.env(),
            cpus: self.spec.cpus.clone(),
            sched: self.spec.sched,
            rlimits: self.spec.rlimits.clone(),
            thp_disable: self.spec.thp_disable,
            mlock: self.spec.mlock,
            join: self.cpuset.as_ref().map(|c| c.tasks_file()),
        };
        let child = launch_with_output(&cfg, log)?;
        {
            let mut m = self.mover.lock().expect("mover lock");
            m.recorded.insert(child.id() as i32);
            m.exempt(child.id() as i32);
        }
        if let (Some(j), Some(id)) = (&self.journal, ProcessId::of(child.id() as i32)) {
            j.lock()
                .expect("journal lock")
                .record(Change::Process { id, grace_ms: 2000 })?;
        }
        Ok(child)
    }

    /// Stops the watcher, releases /dev/cpu_dma_latency and undoes every change in reverse.
    pub fn teardown(mut self) -> Result<TeardownReport, Error> {
        self.teardown_inner()
    }

    fn teardown_inner(&mut self) -> Result<TeardownReport, Error> {
        let watch_err = self.watcher.take().and_then(Watcher::stop);
        drop(self.dma.take());
        if let Some(c) = &self.cpuset {
            stop_members(&c.dir.join("cgroup.procs"), Duration::from_secs(2));
        }
        let Some(j) = self.journal.take() else {
            return Ok(TeardownReport {
                tasks_moved_later: 0,
                tasks_inherited: 0,
                changes_undone: 0,
                warnings: Vec::new(),
            });
        };
        let j = unwrap_journal(j);
        let (later, inherited) = {
            let m = self.mover.lock().expect("mover lock");
            (m.moved_later, m.inherited)
        };
        let n = j.changes().len();
        // Host-wide knobs go back to what they were before this partition. A run that started
        // after it found them tuned and recorded the tuned values; ending out of order undoes
        // them under that run's feet.
        let warnings: Vec<String> = registered_runs(&self.paths.state_root())
            .into_iter()
            .filter(|r| r.name != self.spec.name && r.holder.is_alive())
            .map(|r| {
                format!(
                    "dedicated run {:?} (CPUs {}) is still live: the host-wide knobs (root cpuset balancing, sysctls, IRQ and workqueue masks) now return to their values from before this run, which also undoes them for it; end dedicated runs in the reverse order of their start",
                    r.name, r.cpus
                )
            })
            .collect();
        j.undo()?;
        if let Some(e) = watch_err {
            return Err(e.into());
        }
        Ok(TeardownReport {
            tasks_moved_later: later,
            tasks_inherited: inherited,
            changes_undone: n,
            warnings,
        })
    }
}

impl Drop for ActivePartition {
    fn drop(&mut self) {
        if self.journal.is_some() {
            if let Err(e) = self.teardown_inner() {
                eprintln!(
                    "carve: restoring the host after partition {:?}: {e}",
                    self.spec.name
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpus: &str, online: &CpuSet) -> DedicatedSpec {
        DedicatedSpec::new("t", CpuSet::parse_list(cpus).unwrap(), online)
    }

    #[test]
    fn refusals_name_the_problem() {
        let online = CpuSet::parse_list("0-1").unwrap();
        let e = validate(&spec("0-1", &online), &online, &[]).unwrap_err();
        assert!(e.to_string().contains("no housekeeping core"), "{e}");
        let e = validate(&spec("2", &online), &online, &[]).unwrap_err();
        assert!(e.to_string().contains("not online"), "{e}");
        let me = RunState {
            name: "other".into(),
            holder: ProcessId::current(),
            cpus: CpuSet::parse_list("1").unwrap(),
        };
        let e = validate(&spec("1", &online), &online, std::slice::from_ref(&me)).unwrap_err();
        assert!(e.to_string().contains("already dedicated"), "{e}");
        let mut s = spec("1", &online);
        s.name = "bad name".into();
        assert!(validate(&s, &online, &[]).is_err());
        let four = CpuSet::parse_list("0-3").unwrap();
        let ok = validate(&spec("3", &four), &four, std::slice::from_ref(&me));
        assert_eq!(ok.as_ref().map(|c| c.to_string()).ok(), Some("0,2".into()));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_dead_runs_registration_asks_for_restore() {
        let online = CpuSet::parse_list("0-3").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = ProcessId::of(child.id() as i32).unwrap();
        child.wait().unwrap();
        let run = RunState {
            name: "old".into(),
            holder: dead,
            cpus: CpuSet::parse_list("3").unwrap(),
        };
        let e = validate(&spec("2", &online), &online, &[run]).unwrap_err();
        assert!(e.to_string().contains("carve restore"), "{e}");
    }
}
