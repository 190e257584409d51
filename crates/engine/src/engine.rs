//! `up`, supervision and `down` of one plan.

use crate::cgroup::{hierarchies, Hierarchy};
use crate::dedicated::DedicatedTier;
use crate::network::{attach_container, container_netns, create_bridge};
use crate::oci::OciRuntime;
use crate::restart::{Backoff, Exit};
use crate::spec::{KindSpec, PartitionSpec, PlanSpec};
use crate::state::{
    check_collisions, check_plan_name, Desired, Lock, PartState, PartitionState, PlanDir,
    PlanState, StateError,
};
use crate::tier::{Launched, PlanRef, Tier, TierCtx, TierError, TierResult};
use crate::vm::VmTier;
use carve_journal::{Change, Journal};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Environment variable naming fault points (comma-separated) where `up` fails on purpose, to
/// test rollback: `journal`, `state`, `network:NAME`, `dedicated:NAME`, `container:NAME`,
/// `vm:NAME`, each also with `:after` (fail right after the step succeeded).
pub const FAULT_ENV: &str = "CARVE_FAULT";

/// Kills this process with SIGKILL when `CARVE_FAULT` names `crash:POINT` (points as for
/// [`FAULT_ENV`], plus `container:NAME:created`, between the runtime's create and the journal
/// record of the container's init): crash tests of the holder at chosen moments.
#[cfg(feature = "fault-injection")]
pub fn crash_point(point: &str) {
    let want = format!("crash:{point}");
    if std::env::var(FAULT_ENV)
        .map(|v| v.split(',').any(|f| f.trim() == want))
        .unwrap_or(false)
    {
        // SAFETY: kill on our own pid; SIGKILL does not return.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}

/// Fault points named by `CARVE_FAULT`; none without the `fault-injection` feature.
fn faults_from_env() -> Vec<String> {
    if !cfg!(feature = "fault-injection") {
        return Vec::new();
    }
    std::env::var(FAULT_ENV)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// How long a partition's graceful stop may take before it is killed.
pub const GRACE: Duration = Duration::from_secs(10);

/// A progress report of `up` and `down`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A step begins.
    Step {
        /// What it does ("network carve0", "container web").
        what: String,
    },
    /// The step just begun succeeded.
    Done {
        /// What it did.
        what: String,
        /// How long it took, in milliseconds.
        #[serde(default)]
        ms: u64,
    },
    /// The step just begun failed.
    Failed {
        /// What failed.
        what: String,
        /// Why.
        error: String,
    },
    /// A line of information.
    Info {
        /// The text.
        text: String,
    },
}

/// Why `up` failed (after rolling back everything it did).
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// The plan was refused before anything was changed.
    #[error(transparent)]
    Refused(#[from] StateError),
    /// A step failed; everything done before it was rolled back.
    #[error("{step} failed: {reason}{}", rollback_text(.rollback))]
    Step {
        /// The step ("container web", "network carve0").
        step: String,
        /// Why it failed.
        #[source]
        reason: Box<TierError>,
        /// What the rollback could not undo (empty when the host is back as it was).
        rollback: Vec<String>,
    },
}

fn rollback_text(r: &[String]) -> String {
    if r.is_empty() {
        "; rolled back".into()
    } else {
        format!("; rollback left: {}", r.join("; "))
    }
}

/// Why `down` could not restore everything.
#[derive(Debug, thiserror::Error)]
#[error("plan {plan}: could not undo: {}", .failures.join("; "))]
pub struct DownError {
    /// The plan.
    pub plan: String,
    /// Every stop or undo that failed.
    pub failures: Vec<String>,
}

/// The engine: where state lives and which tiers run the partitions.
pub struct Engine {
    /// The state root (/run/carve).
    pub root: PathBuf,
    /// The journal root (/run/carve/journal).
    pub journal_root: PathBuf,
    /// The container tier.
    pub containers: OciRuntime,
    /// The dedicated-core tier.
    pub dedicated: DedicatedTier,
    /// The VM tier.
    pub vms: VmTier,
    /// Fault points (see [`FAULT_ENV`]).
    pub faults: Vec<String>,
}

impl Engine {
    /// The engine with the default roots, the runtime from the environment and fault points
    /// from `CARVE_FAULT` (with the `fault-injection` feature only).
    pub fn from_env() -> Self {
        Engine {
            root: crate::state::DEFAULT_ROOT.into(),
            journal_root: carve_journal::DEFAULT_ROOT.into(),
            containers: OciRuntime::from_env(),
            dedicated: DedicatedTier::default(),
            vms: VmTier::default(),
            faults: faults_from_env(),
        }
    }

    fn fault(&self, point: &str) -> TierResult<()> {
        crash_point(point);
        if self.faults.iter().any(|f| f == point) {
            Err(TierError::Fault(point.to_string()))
        } else {
            Ok(())
        }
    }

    fn tier(&self, kind: &KindSpec) -> Option<&dyn Tier> {
        match kind {
            KindSpec::Container(_) => Some(&self.containers),
            KindSpec::Dedicated(_) => Some(&self.dedicated),
            KindSpec::Vm(_) => Some(&self.vms),
        }
    }

    /// The journal owner name of a plan.
    pub fn journal_owner(plan: &str) -> String {
        format!("plan-{plan}")
    }

    /// Brings `plan` up: validate → journal → networks → dedicated → containers → VMs, reporting
    /// each step to `progress`. On failure everything done is rolled back and the error names
    /// the step and why. On success the returned [`Running`] holds the plan (its lock and
    /// journal) until [`Running::down`].
    pub fn up(&self, plan: PlanSpec, progress: &mut dyn FnMut(Event)) -> Result<Running, UpError> {
        check_plan_name(&plan.name)?;
        // Partition names become folder, cgroup and namespace names: the same rules.
        for p in &plan.partitions {
            check_plan_name(&p.name).map_err(|_| StateError::BadName(p.name.clone()))?;
        }
        for p in &plan.partitions {
            if self.tier(&p.kind).is_none() {
                return Err(UpError::Step {
                    step: format!("{} {}", p.kind.name(), p.name),
                    reason: Box::new(TierError::NoTier(p.kind.name())),
                    rollback: vec![],
                });
            }
        }
        std::fs::create_dir_all(&self.root).map_err(|source| StateError::Io {
            action: "create",
            path: self.root.clone(),
            source,
        })?;
        // One `up` at a time checks and claims, so two plans can't both pass the check.
        let claim = Lock::take(&self.root.join(".engine.lock"), true)?.expect("waited");
        check_collisions(&self.root, &plan)?;

        progress(Event::Step {
            what: "journal".into(),
        });
        let t = Instant::now();
        let mut run = match self.open_state(&plan) {
            Ok(r) => r,
            Err((step, reason, journal)) => {
                let rollback = undo_all(journal);
                progress(Event::Failed {
                    what: step.clone(),
                    error: reason.to_string(),
                });
                return Err(UpError::Step {
                    step,
                    reason: Box::new(reason),
                    rollback,
                });
            }
        };
        progress(Event::Done {
            what: "journal".into(),
            ms: t.elapsed().as_millis() as u64,
        });
        drop(claim);

        if let Err((step, reason)) = self.realize(&mut run, progress) {
            progress(Event::Failed {
                what: step.clone(),
                error: reason.to_string(),
            });
            progress(Event::Info {
                text: "rolling back".into(),
            });
            let rollback = run.teardown(self, Duration::from_secs(2));
            return Err(UpError::Step {
                step,
                reason: Box::new(reason),
                rollback,
            });
        }
        Ok(run)
    }

    /// Journal, state folder (a tmpfs, so undo removes every file in it at once), lock, plan copy.
    #[allow(clippy::type_complexity, clippy::result_large_err)]
    fn open_state(&self, plan: &PlanSpec) -> Result<Running, (String, TierError, Option<Journal>)> {
        let owner = Self::journal_owner(&plan.name);
        let journal = Journal::create(&self.journal_root, &owner)
            .map_err(|e| ("journal".to_string(), e.into(), None))?
            .with_link_undo(carve_net::journal_undo);
        if let Err(e) = self.fault("journal") {
            return Err(("journal".to_string(), e, Some(journal)));
        }
        let mut journal = Some(journal);
        let r = (|| -> TierResult<Running> {
            let j = journal.as_mut().expect("journal");
            let dir = PlanDir::new(&self.root, &plan.name);
            j.create_dir(&dir.dir)?;
            j.record(Change::Mount {
                target: dir.dir.clone(),
            })?;
            mount_tmpfs(&dir.dir)?;
            let lock = Lock::take(&dir.lock_file(), false)?.ok_or(TierError::LockHeld)?;
            dir.write_plan(plan)?;
            let state = PlanState {
                plan: plan.name.clone(),
                holder: std::process::id() as i32,
                oci_runtime: Some(self.containers.binary.clone()),
                oci_root: Some(dir.oci_root()),
                partitions: plan
                    .partitions
                    .iter()
                    .map(|p| PartitionState {
                        name: p.name.clone(),
                        kind: p.kind.name().into(),
                        cpus: p.cpus.clone(),
                        memory: p.memory,
                        state: PartState::Pending,
                        desired: Desired::Running,
                        pid: None,
                        cgroup: None,
                        log: dir.partition_dir(&p.name).join("log"),
                        id: String::new(),
                        restarts: 0,
                        last_exit: None,
                    })
                    .collect(),
                bridges: plan.networks.iter().map(|n| n.name.clone()).collect(),
                netns: vec![],
            };
            dir.write_state(&state)?;
            for p in &plan.partitions {
                let d = dir.partition_dir(&p.name);
                std::fs::create_dir_all(&d).map_err(TierError::io(&d))?;
            }
            self.fault("state")?;
            Ok(Running {
                plan: plan.clone(),
                dir,
                journal: journal.take(),
                _lock: Some(lock),
                state,
                hierarchies: hierarchies(),
                backoff: HashMap::new(),
                started_at: HashMap::new(),
                restart_at: HashMap::new(),
            })
        })();
        r.map_err(|e| ("state".to_string(), e, journal))
    }

    fn realize(
        &self,
        run: &mut Running,
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), (String, TierError)> {
        self.make_networks(run, progress)?;
        let names = |kind: &str| -> Vec<String> {
            run.plan
                .partitions
                .iter()
                .filter(|p| p.kind.name() == kind)
                .map(|p| p.name.clone())
                .collect()
        };
        let (dedicated, containers, vms) = (names("dedicated"), names("container"), names("vm"));
        // Dedicated partitions take their cores first.
        for name in dedicated {
            self.start_step(run, progress, "dedicated", &name)?;
        }
        // VMs are prepared here (their cpuset, in the journal), then QEMU starts on another
        // thread while the containers start: the two take about as long each, and a VM's
        // launch needs no journal.
        let shared = (run.plan.clone(), run.dir.clone(), run.hierarchies.clone());
        let prepared = self.prepare_vms(run, &shared, &vms)?;
        if !prepared.is_empty() && !containers.is_empty() {
            progress(Event::Info {
                text: format!(
                    "starting {} VM(s) while the containers start",
                    prepared.len()
                ),
            });
        }
        let vms_tier = &self.vms;
        let (containers_result, launched) = std::thread::scope(|s| {
            let vm_thread = s.spawn(|| {
                prepared
                    .into_iter()
                    .map(|(spec, vm)| {
                        let t = Instant::now();
                        let r = vms_tier.launch(&vm_ctx(&shared, &spec), vm);
                        (spec.name.clone(), r, t.elapsed().as_millis() as u64)
                    })
                    .collect::<Vec<_>>()
            });
            let mut r = Ok(());
            for name in &containers {
                r = self.start_step(run, progress, "container", name);
                if r.is_err() {
                    break;
                }
            }
            (r, vm_thread.join().expect("VM launch thread"))
        });
        let vm_result = self.record_vm_launches(run, progress, launched, containers_result.is_ok());
        containers_result?;
        vm_result?;
        run.save();
        Ok(())
    }

    /// The plan's bridges (and their network namespaces), each a step of `up`.
    fn make_networks(
        &self,
        run: &mut Running,
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), (String, TierError)> {
        for net in run.plan.networks.clone() {
            let what = format!("network {}", net.name);
            progress(Event::Step { what: what.clone() });
            let t = Instant::now();
            let point = format!("network:{}", net.name);
            self.fault(&point).map_err(|e| (what.clone(), e))?;
            let made =
                create_bridge(run.journal_mut(), &net).map_err(|e| (what.clone(), e.into()))?;
            run.state.netns.extend(made);
            self.fault(&format!("{point}:after"))
                .map_err(|e| (what.clone(), e))?;
            let ms = t.elapsed().as_millis() as u64;
            progress(Event::Done { what, ms });
        }
        Ok(())
    }

    /// Prepares each VM of `vms` (what the journal records for it), in plan order.
    fn prepare_vms(
        &self,
        run: &mut Running,
        shared: &VmShared,
        vms: &[String],
    ) -> Result<Vec<(PartitionSpec, carve_vm::VmSpec)>, (String, TierError)> {
        let mut prepared = Vec::new();
        for name in vms {
            let what = format!("vm {name}");
            self.fault(&format!("vm:{name}"))
                .map_err(|e| (what.clone(), e))?;
            let spec = run
                .plan
                .partition(name)
                .cloned()
                .expect("partition of the plan");
            let vm = self
                .vms
                .prepare(&vm_ctx(shared, &spec), run.journal_mut())
                .map_err(|e| (what.clone(), e))?;
            prepared.push((spec, vm));
        }
        Ok(prepared)
    }

    /// Records every VM that started (first, so a rollback stops it), then reports the steps;
    /// the first VM error is the result.
    fn record_vm_launches(
        &self,
        run: &mut Running,
        progress: &mut dyn FnMut(Event),
        launched: Vec<(String, TierResult<Launched>, u64)>,
        containers_ok: bool,
    ) -> Result<(), (String, TierError)> {
        let mut vm_result = Ok(());
        for (name, r, ms) in launched {
            let what = format!("vm {name}");
            match r {
                Ok(l) => {
                    run.record_launch(&name, l);
                    if vm_result.is_ok() && containers_ok {
                        progress(Event::Step { what: what.clone() });
                        match self.fault(&format!("vm:{name}:after")) {
                            Ok(()) => progress(Event::Done { what, ms }),
                            Err(e) => vm_result = Err((what, e)),
                        }
                    }
                }
                Err(e) if vm_result.is_ok() => vm_result = Err((what, e)),
                Err(_) => {}
            }
        }
        vm_result
    }

    /// One partition's step of `up`: progress, fault points, start.
    fn start_step(
        &self,
        run: &mut Running,
        progress: &mut dyn FnMut(Event),
        kind: &str,
        name: &str,
    ) -> Result<(), (String, TierError)> {
        let what = format!("{kind} {name}");
        progress(Event::Step { what: what.clone() });
        let t = Instant::now();
        let point = format!("{kind}:{name}");
        self.fault(&point).map_err(|e| (what.clone(), e))?;
        run.start_partition(self, name)
            .map_err(|e| (what.clone(), e))?;
        self.fault(&format!("{point}:after"))
            .map_err(|e| (what.clone(), e))?;
        let ms = t.elapsed().as_millis() as u64;
        progress(Event::Done { what, ms });
        Ok(())
    }

    /// Takes down plan `name` that no live process holds (its holder crashed): stops its
    /// containers through the runtime and undoes its journal. Returns what could not be undone.
    pub fn restore_plan(&self, name: &str) -> Result<(), DownError> {
        let fail = |f: Vec<String>| DownError {
            plan: name.to_string(),
            failures: f,
        };
        let dir = PlanDir::new(&self.root, name);
        let mut failures = Vec::new();
        let lock = if dir.lock_file().exists() {
            match Lock::take(&dir.lock_file(), false) {
                Ok(Some(l)) => Some(l),
                Ok(None) => {
                    return Err(fail(vec![format!(
                        "plan {name} is held by a running carve"
                    )]))
                }
                Err(e) => {
                    failures.push(e.to_string());
                    None
                }
            }
        } else {
            None
        };
        if let (Ok(plan), Ok(state)) = (dir.read_plan(), dir.read_state()) {
            let pr = PlanRef {
                dir: &dir,
                plan: &plan,
            };
            for p in state.partitions.iter().rev() {
                if p.pid.is_none() && p.id.is_empty() {
                    continue;
                }
                if let Some(spec) = plan.partition(&p.name) {
                    if let Some(t) = self.tier(&spec.kind) {
                        if let Err(e) = t.stop(&pr, p, Duration::from_secs(2)) {
                            failures.push(format!("{}: {e}", p.name));
                        }
                    }
                }
            }
        }
        drop(lock);
        let path = carve_journal::journal_path(&self.journal_root, &Self::journal_owner(name));
        // Another undoer (a concurrent `carve restore`) may finish the journal first: then
        // there is nothing left to do here.
        match Journal::load_if_present(&path) {
            Ok(Some(j)) => {
                if let Err(e) = j.with_link_undo(carve_net::journal_undo).undo() {
                    failures.push(e.to_string());
                }
            }
            Ok(None) => {}
            Err(e) => failures.push(e.to_string()),
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(fail(failures))
        }
    }
}

fn undo_all(journal: Option<Journal>) -> Vec<String> {
    match journal.map(Journal::undo) {
        Some(Err(e)) => vec![e.to_string()],
        _ => vec![],
    }
}

/// A copy of what every VM's tier call reads (plan, folder, hierarchies), so VMs can launch on
/// another thread while the containers' steps hold the running plan.
type VmShared = (PlanSpec, PlanDir, Vec<Hierarchy>);

/// The context of a VM's tier calls: a VM has no network namespace of carve's (its tap is on
/// the bridge).
fn vm_ctx<'a>(shared: &'a VmShared, spec: &'a PartitionSpec) -> TierCtx<'a> {
    TierCtx {
        plan: &shared.0,
        dir: &shared.1,
        part: spec,
        netns: None,
        hierarchies: &shared.2,
    }
}

fn mount_tmpfs(dir: &Path) -> TierResult<()> {
    carve_dedicated::tune::mount_fs("tmpfs", dir, "tmpfs", "mode=0700,size=64m").map_err(|source| {
        TierError::Mount {
            path: dir.to_path_buf(),
            source,
        }
    })
}

/// A plan that is up, held by this process: its lock, journal and live state.
#[derive(Debug)]
pub struct Running {
    plan: PlanSpec,
    dir: PlanDir,
    journal: Option<Journal>,
    _lock: Option<Lock>,
    state: PlanState,
    hierarchies: Vec<Hierarchy>,
    backoff: HashMap<String, Backoff>,
    started_at: HashMap<String, Instant>,
    restart_at: HashMap<String, Instant>,
}

impl Running {
    fn journal_mut(&mut self) -> &mut Journal {
        self.journal.as_mut().expect("journal open while running")
    }

    /// The plan.
    pub fn plan(&self) -> &PlanSpec {
        &self.plan
    }

    /// The plan's state folder.
    pub fn dir(&self) -> &PlanDir {
        &self.dir
    }

    /// The live state.
    pub fn state(&self) -> &PlanState {
        &self.state
    }

    fn save(&self) {
        // A failed write only makes `carve ps` stale; the journal is what restores the host.
        let _ = self.dir.write_state(&self.state);
    }

    fn part_mut(&mut self, name: &str) -> &mut PartitionState {
        self.state
            .partitions
            .iter_mut()
            .find(|p| p.name == name)
            .expect("partition of the plan")
    }

    fn start_partition(&mut self, engine: &Engine, name: &str) -> TierResult<()> {
        let spec = self
            .plan
            .partition(name)
            .cloned()
            .ok_or(TierError::NoPartition)?;
        let tier = engine
            .tier(&spec.kind)
            .ok_or(TierError::NoTier(spec.kind.name()))?;
        let mut netns = None;
        if let KindSpec::Container(c) = &spec.kind {
            if let Some(att) = &c.network {
                let ns = container_netns(&self.plan.name, name);
                if !self.state.netns.contains(&ns) {
                    let plan = self.plan.clone();
                    attach_container(self.journal_mut(), &plan, name, att)?;
                    self.state.netns.push(ns.clone());
                }
                netns = Some(ns);
            }
        }
        let hierarchies = self.hierarchies.clone();
        let plan = self.plan.clone();
        let dir = self.dir.clone();
        let ctx = TierCtx {
            plan: &plan,
            dir: &dir,
            part: &spec,
            netns,
            hierarchies: &hierarchies,
        };
        let launched = tier.start(&ctx, self.journal_mut())?;
        self.record_launch(name, launched);
        Ok(())
    }

    fn record_launch(&mut self, name: &str, launched: crate::tier::Launched) {
        let p = self.part_mut(name);
        p.pid = Some(launched.pid);
        p.cgroup = launched.cgroup;
        p.id = launched.id;
        p.log = launched.log;
        p.state = PartState::Running;
        self.started_at.insert(name.to_string(), Instant::now());
        self.save();
    }

    fn stop_partition(&mut self, engine: &Engine, name: &str, grace: Duration) -> TierResult<()> {
        let spec = self
            .plan
            .partition(name)
            .cloned()
            .ok_or(TierError::NoPartition)?;
        let Some(tier) = engine.tier(&spec.kind) else {
            return Ok(());
        };
        let part = self.part_mut(name).clone();
        if part.id.is_empty() {
            return Ok(());
        }
        let r = tier.stop(
            &PlanRef {
                dir: &self.dir,
                plan: &self.plan,
            },
            &part,
            grace,
        );
        let p = self.part_mut(name);
        p.state = PartState::Stopped;
        p.pid = None;
        self.save();
        r
    }

    /// One round of supervision: notices exits and applies restart policies, and acts on
    /// `carve stop` / `carve start` requests. Returns true when something changed. `engine` must
    /// be the one that brought the plan up: its dedicated and VM tiers hold the live partitions.
    pub fn tick(&mut self, engine: &Engine) -> bool {
        let mut changed = false;
        let names: Vec<String> = self
            .state
            .partitions
            .iter()
            .map(|p| p.name.clone())
            .collect();
        for name in names {
            let desired = read_desired(&self.dir, &name);
            let part = self.part_mut(&name).clone();
            self.part_mut(&name).desired = desired;
            match (part.state, desired) {
                (PartState::Running, Desired::Stopped) => {
                    let _ = self.stop_partition(engine, &name, GRACE);
                    changed = true;
                }
                (PartState::Running, Desired::Running) => {
                    // `carve start` of a running partition: nothing to do, and nothing to
                    // remember for when it exits.
                    take_start_request(&self.dir, &name);
                    let Some(tier) = self
                        .plan
                        .partition(&name)
                        .and_then(|p| engine.tier(&p.kind))
                    else {
                        continue;
                    };
                    if let Some(exit) = tier.poll(&part) {
                        changed = true;
                        self.on_exit(engine, &name, exit);
                    }
                }
                (PartState::Restarting, Desired::Running)
                    if self
                        .restart_at
                        .get(&name)
                        .is_none_or(|t| Instant::now() >= *t) =>
                {
                    changed = true;
                    self.restart(engine, &name);
                }
                (PartState::Stopped | PartState::Exited, Desired::Running)
                    if take_start_request(&self.dir, &name) =>
                {
                    // `carve start`: after `carve stop`, or after it exited for good.
                    changed = true;
                    self.restart(engine, &name);
                }
                (PartState::Restarting, Desired::Stopped) => {
                    self.part_mut(&name).state = PartState::Stopped;
                    changed = true;
                }
                _ => {}
            }
            if desired == Desired::Stopped && self.part_mut(&name).state == PartState::Stopped {
                self.part_mut(&name).last_exit = Some("stopped".into());
            }
        }
        if changed {
            self.save();
        }
        changed
    }

    fn on_exit(&mut self, engine: &Engine, name: &str, exit: Exit) {
        let policy = self
            .plan
            .partition(name)
            .map(|p| p.restart)
            .unwrap_or_default();
        let ran = self
            .started_at
            .get(name)
            .map(|t| t.elapsed())
            .unwrap_or_default();
        let delay = self
            .backoff
            .entry(name.to_string())
            .or_default()
            .on_exit(&policy, exit, ran);
        // The runtime's record of the dead container goes now; a restart makes a new one.
        let _ = self.stop_partition(engine, name, Duration::ZERO);
        let p = self.part_mut(name);
        p.last_exit = Some(exit.to_string());
        match delay {
            Some(d) => {
                p.state = PartState::Restarting;
                self.restart_at.insert(name.to_string(), Instant::now() + d);
            }
            None => p.state = PartState::Exited,
        }
    }

    fn restart(&mut self, engine: &Engine, name: &str) {
        match self.start_partition(engine, name) {
            Ok(()) => {
                let p = self.part_mut(name);
                p.restarts += 1;
                p.last_exit = None;
            }
            Err(e) => {
                self.on_exit(engine, name, Exit::Unknown);
                self.part_mut(name).last_exit = Some(format!("restart failed: {e}"));
            }
        }
    }

    /// Stops every partition (VMs, then containers, then dedicated; graceful, then forced after
    /// `grace`) and undoes the journal: networks, cgroups, state folder. Returns what failed.
    pub fn teardown(mut self, engine: &Engine, grace: Duration) -> Vec<String> {
        let mut failures = Vec::new();
        for kind in ["vm", "container", "dedicated"] {
            let names: Vec<String> = self
                .plan
                .partitions
                .iter()
                .rev()
                .filter(|p| p.kind.name() == kind)
                .map(|p| p.name.clone())
                .collect();
            for name in names {
                if let Err(e) = self.stop_partition(engine, &name, grace) {
                    failures.push(format!("{kind} {name}: {e}"));
                }
            }
        }
        drop(self._lock.take());
        failures.extend(undo_all(self.journal.take()));
        failures
    }

    /// [`Running::teardown`] with the default grace, reporting to `progress`.
    pub fn down(self, engine: &Engine, progress: &mut dyn FnMut(Event)) -> Result<(), DownError> {
        let plan = self.plan.name.clone();
        progress(Event::Step {
            what: format!("down {plan}"),
        });
        let t = Instant::now();
        let failures = self.teardown(engine, GRACE);
        if failures.is_empty() {
            progress(Event::Done {
                what: format!("down {plan}"),
                ms: t.elapsed().as_millis() as u64,
            });
            Ok(())
        } else {
            progress(Event::Failed {
                what: format!("down {plan}"),
                error: failures.join("; "),
            });
            Err(DownError { plan, failures })
        }
    }
}

/// The file through which `carve stop` / `carve start` tell the holder what they want.
pub fn desired_file(dir: &PlanDir, part: &str) -> PathBuf {
    dir.partition_dir(part).join("desired")
}

fn read_desired(dir: &PlanDir, part: &str) -> Desired {
    match std::fs::read_to_string(desired_file(dir, part)).as_deref() {
        Ok("stopped") => Desired::Stopped,
        _ => Desired::Running,
    }
}

/// Asks the holder of the plan to stop or start partition `part`.
///
/// Asking for `Running` also leaves a one-shot start request, so a partition that exited for
/// good (policy `no`, or out of retries) starts again, not only one stopped by `carve stop`.
pub fn request(dir: &PlanDir, part: &str, want: Desired) -> Result<(), StateError> {
    let io = |path: PathBuf| {
        move |source| StateError::Io {
            action: "write",
            path,
            source,
        }
    };
    if want == Desired::Running {
        let start = start_request_file(dir, part);
        std::fs::write(&start, "start").map_err(io(start.clone()))?;
    }
    let path = desired_file(dir, part);
    let text = match want {
        Desired::Running => "running",
        Desired::Stopped => "stopped",
    };
    std::fs::write(&path, text).map_err(io(path.clone()))
}

fn start_request_file(dir: &PlanDir, part: &str) -> PathBuf {
    dir.partition_dir(part).join("start")
}

/// Whether `carve start` asked for `part` (the request is consumed).
fn take_start_request(dir: &PlanDir, part: &str) -> bool {
    std::fs::remove_file(start_request_file(dir, part)).is_ok()
}

impl Running {
    /// Supervises until SIGINT/SIGTERM/SIGHUP (see [`crate::process::catch_stop_signals`]),
    /// then takes the plan down.
    pub fn supervise(
        mut self,
        engine: &Engine,
        progress: &mut dyn FnMut(Event),
    ) -> Result<(), DownError> {
        while !crate::process::stop_requested() {
            self.tick(engine);
            std::thread::sleep(Duration::from_millis(100));
        }
        self.down(engine, progress)
    }
}
