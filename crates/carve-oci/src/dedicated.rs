//! Dedicated-core pods: a container whose pod carries `carve.dev/dedicated: "true"` and whose
//! cpuset (`linux.resources.cpu.cpus`, the kubelet static CPU manager's exclusive CPUs) leaves
//! housekeeping CPUs gets what `carve run --dedicated` does to the host, through carve-dedicated's
//! own functions and the journal: IRQs and `default_smp_affinity` off its CPUs (an IRQ named by
//! `carve.dev/irq` routed onto them), the unbound and writeback workqueue masks, timer migration,
//! vm.stat_interval and, for `carve.dev/sched: fifo:N`/`rr:N`, RT throttling off.
//!
//! Shared masks are recomputed from the live set of dedicated pods under one lock
//! (RUN/dedicated/.pods.lock): housekeeping = online CPUs minus every live pod's CPUs. Each pod
//! has its own journal (`pod-ID`, held by its container's init) that only registers it; the host
//! values from before the first pod live in one shared journal (`dedicated-pods`), re-held by a
//! live pod's init at every change. A pod's teardown recomputes the masks from the pods still
//! live, so it never undoes another pod's change; the last one undoes the shared journal, which
//! restores every file byte for byte. After a crash, `carve restore` undoes the journals whose
//! holders are gone.

use anyhow::{bail, Context, Result};
use carve_core::CpuSet;
use carve_dedicated::partition::{validate, RunState};
use carve_dedicated::spec::{DedicatedSpec, SchedPolicy};
use carve_dedicated::sys::{online_cpus, HostPaths};
use carve_dedicated::{launch, tune};
use carve_journal::{journal_path, Change, Journal, ProcessId};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The pod annotation that asks for dedicated cores ("true" or "false").
pub const DEDICATED: &str = "carve.dev/dedicated";
/// The scheduling policy of the container's process ("fifo:80", "rr:10", "other").
pub const SCHED: &str = "carve.dev/sched";
/// IRQ numbers routed onto the pod's CPUs ("N" or "N,M").
pub const IRQ: &str = "carve.dev/irq";
const SHARED_OWNER: &str = "dedicated-pods";

/// What a container asks for.
#[derive(Debug, Clone)]
pub struct Request {
    cpus: CpuSet,
    sched: SchedPolicy,
    irqs: Vec<u32>,
}

/// A live dedicated pod's registration (RUN/dedicated/pod-ID.json; a superset of
/// [`RunState`], so `carve run` sees the pod's CPUs as taken).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PodState {
    name: String,
    holder: ProcessId,
    cpus: CpuSet,
    irqs: Vec<u32>,
    rt: bool,
}

fn pod_name(id: &str) -> String {
    format!("pod-{id}")
}

/// The dedicated-core request of the bundle's config.json, checked before anything is created.
/// `None` for an ordinary container and for the pod's sandbox (pause) container.
pub fn request(bundle: &Path) -> Result<Option<Request>> {
    // Absolute, as create's own errors: "reading ./config.json" would not say which directory.
    let p = std::path::absolute(bundle)
        .context("bundle path")?
        .join("config.json");
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
    )
    .with_context(|| format!("parsing {}", p.display()))?;
    let ann = &cfg["annotations"];
    let get = |k: &str| ann[k].as_str();
    if let Some(obj) = ann.as_object() {
        for k in obj.keys().filter(|k| k.starts_with("carve.dev/")) {
            if ![DEDICATED, SCHED, IRQ].contains(&k.as_str()) {
                bail!("annotation {k}: unknown (carve knows {DEDICATED}, {SCHED}, {IRQ})");
            }
        }
    }
    match get(DEDICATED) {
        Some("true") => {}
        None | Some("false") => {
            for k in [SCHED, IRQ] {
                if get(k).is_some() {
                    bail!("annotation {k} needs {DEDICATED}: \"true\" on the pod");
                }
            }
            return Ok(None);
        }
        Some(v) => {
            bail!("annotation {DEDICATED}: unknown value {v:?} (expected \"true\" or \"false\")")
        }
    }
    let sched: SchedPolicy = match get(SCHED) {
        Some(s) => s
            .parse()
            .with_context(|| format!("annotation {SCHED}: unknown value {s:?}"))?,
        None => SchedPolicy::default(),
    };
    let irqs = match get(IRQ) {
        Some(s) => s
            .split(',')
            .map(|n| n.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("annotation {IRQ}: {s:?} is not a list of IRQ numbers"))?,
        None => Vec::new(),
    };
    // The sandbox (pause) container carries the pod's annotations too: its values are checked
    // above (a bad pod is refused at RunPodSandbox), but it holds no CPU.
    if get("io.kubernetes.cri.container-type") == Some("sandbox") {
        return Ok(None);
    }
    let cpus = cfg["linux"]["resources"]["cpu"]["cpus"]
        .as_str()
        .unwrap_or("");
    if cpus.is_empty() {
        bail!("{DEDICATED}: the container's CPUs are not exclusive: it has no cpuset (linux.resources.cpu.cpus); a dedicated pod needs whole CPUs the kubelet's static CPU manager gives a Guaranteed pod");
    }
    let cpus =
        CpuSet::parse_list(cpus).with_context(|| format!("linux.resources.cpu.cpus {cpus:?}"))?;
    Ok(Some(Request { cpus, sched, irqs }))
}

/// Holds RUN/dedicated/.pods.lock: pod setups and teardowns run one at a time.
fn lock(paths: &HostPaths) -> Result<std::fs::File> {
    let root = paths.state_root();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let p = root.join(".pods.lock");
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    // SAFETY: the fd is valid for the life of `f`; flock has no memory effects.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!(
            "locking {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(f)
}

/// Live dedicated pods: registrations whose container still runs. A pod whose container exited
/// but was not deleted yet holds no CPU any more.
fn live_pods(paths: &HostPaths) -> Vec<PodState> {
    let Ok(rd) = std::fs::read_dir(paths.state_root()) else {
        return Vec::new();
    };
    let mut v: Vec<PodState> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pod-"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .filter(|p: &PodState| p.holder.is_alive())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Other registrations (`carve run`, live pods) as `validate` sees them; dead pods left out.
fn other_runs(paths: &HostPaths) -> Vec<RunState> {
    carve_dedicated::partition::registered_runs(&paths.state_root())
        .into_iter()
        .filter(|r| !r.name.starts_with("pod-") || r.holder.is_alive())
        .collect()
}

/// Dedicates the request's CPUs to container `id` whose init is `init_pid` (created, not started).
pub fn setup(id: &str, req: &Request, init_pid: i32) -> Result<()> {
    let paths = HostPaths::default();
    let online = online_cpus(&paths.sys).context("reading the online CPUs")?;
    let _lock = lock(&paths)?;
    let name = pod_name(id);
    let mut spec = DedicatedSpec::new(&name, req.cpus.clone(), &online);
    spec.irqs = req.irqs.clone();
    if req.cpus == online {
        bail!(
            "{DEDICATED}: the container's CPUs {} are not exclusive: they are every online CPU",
            req.cpus
        );
    }
    validate(&spec, &online, &other_runs(&paths))
        .map_err(|e| anyhow::anyhow!("{DEDICATED}: {e}"))?;
    for irq in &req.irqs {
        if !paths.proc.join(format!("irq/{irq}")).exists() {
            bail!("annotation {IRQ}: IRQ {irq} does not exist");
        }
    }
    let holder = ProcessId::of(init_pid).with_context(|| format!("container init {init_pid}"))?;
    let mut j = Journal::create_held_by(paths.journal_root(), &name, holder)?;
    let state_file = paths.state_root().join(format!("{name}.json"));
    j.record(Change::CreatedFile {
        path: state_file.clone(),
    })?;
    let st = PodState {
        name,
        holder,
        cpus: req.cpus.clone(),
        irqs: req.irqs.clone(),
        rt: req.sched.is_rt(),
    };
    let r = std::fs::write(&state_file, serde_json::to_string(&st)?)
        .with_context(|| format!("writing {}", state_file.display()))
        .and_then(|()| apply_shared(&paths, &online, &live_pods(&paths)))
        .and_then(|()| {
            launch::set_sched(init_pid, &req.sched)
                .with_context(|| format!("{SCHED}: setting {} on pid {init_pid}", req.sched))
        });
    if let Err(e) = r {
        let undo = j.undo();
        let again = apply_shared(&paths, &online, &live_pods(&paths));
        if let Err(u) = undo.map_err(anyhow::Error::from).and(again) {
            bail!("{e:#}; undoing it also failed: {u:#}");
        }
        return Err(e);
    }
    Ok(())
}

/// Gives container `id`'s CPUs back (at delete): its registration goes, the shared masks are
/// recomputed from the pods still live (restored when it was the last). Nothing for an ordinary
/// container.
pub fn teardown(id: &str) -> Result<()> {
    let paths = HostPaths::default();
    let jp = journal_path(&paths.journal_root(), &pod_name(id));
    if !jp.exists() {
        return Ok(());
    }
    let online = online_cpus(&paths.sys).context("reading the online CPUs")?;
    let _lock = lock(&paths)?;
    if let Some(j) = Journal::load_if_present(&jp)? {
        j.undo()?;
    }
    apply_shared(&paths, &online, &live_pods(&paths))
}

fn changed_path(c: &Change) -> Option<&PathBuf> {
    match c {
        Change::File { path, .. } | Change::WriteBack { path, .. } => Some(path),
        _ => None,
    }
}

/// Sets the host-wide masks for the live set `live` (restores them when it is empty). The shared
/// journal keeps each file's value from before the first pod; writes go through a scratch
/// journal whose records are kept only for files the shared one does not hold yet.
fn apply_shared(paths: &HostPaths, online: &CpuSet, live: &[PodState]) -> Result<()> {
    let root = paths.journal_root();
    let old = Journal::load_if_present(journal_path(&root, SHARED_OWNER))?;
    let Some(first) = live.first() else {
        if let Some(j) = old {
            j.undo()?;
        }
        return Ok(());
    };
    let orig: Vec<Change> = match old {
        Some(j) => {
            let c = j.changes().to_vec();
            j.forget()?;
            c
        }
        None => Vec::new(),
    };
    let mut shared = Journal::create_held_by(&root, SHARED_OWNER, first.holder)?;
    for c in &orig {
        shared.record(c.clone())?;
    }
    let mut scratch = Journal::create(
        &root,
        &format!("{SHARED_OWNER}-scratch-{}", std::process::id()),
    )?;
    let dedicated = live.iter().fold(CpuSet::new(), |acc, p| acc.union(&p.cpus));
    let hk = online.difference(&dedicated);
    let wanted: Vec<u32> = live.iter().flat_map(|p| p.irqs.iter().copied()).collect();
    let stat_interval = DedicatedSpec::new("x", dedicated.clone(), online).stat_interval;
    let r = (|| -> Result<()> {
        tune::set_sysctls(
            &mut scratch,
            paths,
            live.iter().any(|p| p.rt),
            stat_interval,
        )?;
        tune::move_workqueues(&mut scratch, paths, &hk)?;
        tune::route_irqs(&mut scratch, paths, &hk, &dedicated, &wanted)?;
        for p in live.iter().filter(|p| p.cpus != dedicated) {
            for irq in &p.irqs {
                let f = paths.proc.join(format!("irq/{irq}/smp_affinity_list"));
                scratch.write_file(&f, &p.cpus.to_string())?;
            }
        }
        Ok(())
    })();
    let held: Vec<&PathBuf> = orig.iter().filter_map(changed_path).collect();
    for c in scratch.changes() {
        if changed_path(c).is_none_or(|p| !held.contains(&p)) {
            shared.record(c.clone())?;
        }
    }
    scratch.forget()?;
    r
}
