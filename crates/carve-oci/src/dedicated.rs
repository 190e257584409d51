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
//!
//! On a cgroup2 host whose kernel has `cpuset.cpus.partition` the container's cgroup becomes an
//! isolated partition when its parent is a partition root (see [`partition_plan`]). `exec` into
//! the container runs on the housekeeping CPUs unless the pod says
//! `carve.dev/exec-cpus: dedicated` (see [`exec_cpus`]).

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
/// Where `exec` into the container runs: "housekeeping" (the default) or "dedicated".
pub const EXEC_CPUS: &str = "carve.dev/exec-cpus";
const KNOWN: [&str; 4] = [DEDICATED, SCHED, IRQ, EXEC_CPUS];
const SHARED_OWNER: &str = "dedicated-pods";

/// What a container asks for.
#[derive(Debug, Clone)]
pub struct Request {
    cpus: CpuSet,
    sched: SchedPolicy,
    irqs: Vec<u32>,
    exec_dedicated: bool,
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
    /// `carve.dev/exec-cpus: dedicated` (absent in registrations older than the annotation).
    #[serde(default)]
    exec_dedicated: bool,
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
            if !KNOWN.contains(&k.as_str()) {
                bail!("annotation {k}: unknown (carve knows {})", KNOWN.join(", "));
            }
        }
    }
    match get(DEDICATED) {
        Some("true") => {}
        None | Some("false") => {
            for k in [SCHED, IRQ, EXEC_CPUS] {
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
    let exec_dedicated = match get(EXEC_CPUS) {
        None | Some("housekeeping") => false,
        Some("dedicated") => true,
        Some(v) => bail!(
            "annotation {EXEC_CPUS}: unknown value {v:?} (expected \"housekeeping\" or \"dedicated\")"
        ),
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
    Ok(Some(Request {
        cpus,
        sched,
        irqs,
        exec_dedicated,
    }))
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
    if !req.exec_dedicated {
        record_exec_sibling(&mut j, &paths, init_pid)?;
    }
    let st = PodState {
        name,
        holder,
        cpus: req.cpus.clone(),
        irqs: req.irqs.clone(),
        rt: req.sched.is_rt(),
        exec_dedicated: req.exec_dedicated,
    };
    let r = std::fs::write(&state_file, serde_json::to_string(&st)?)
        .with_context(|| format!("writing {}", state_file.display()))
        .and_then(|()| apply_shared(&paths, &online, &live_pods(&paths)))
        .and_then(|()| isolate(&mut j, &paths, init_pid))
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
    let hk = housekeeping(online, live.iter().map(|p| &p.cpus));
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

/// The CPUs `exec` into container `id` runs on: the host's housekeeping CPUs (online minus every
/// live dedicated partition's) when `id` is a live dedicated container whose pod did not ask for
/// `carve.dev/exec-cpus: dedicated`; `None` (the container's own cpuset) otherwise.
pub fn exec_cpus(id: &str) -> Result<Option<String>> {
    let paths = HostPaths::default();
    let f = paths.state_root().join(format!("{}.json", pod_name(id)));
    let Ok(text) = std::fs::read(&f) else {
        return Ok(None);
    };
    let st: PodState =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", f.display()))?;
    if st.exec_dedicated || !st.holder.is_alive() {
        return Ok(None);
    }
    let online = online_cpus(&paths.sys).context("reading the online CPUs")?;
    let hk = housekeeping(&online, other_runs(&paths).iter().map(|r| &r.cpus));
    if hk.is_empty() {
        bail!("exec into {id}: no housekeeping CPU is left (every online CPU is dedicated); set {EXEC_CPUS}: dedicated on the pod");
    }
    Ok(Some(hk.to_string()))
}

/// The housekeeping CPUs: `online` minus every CPU of `taken` (the live dedicated partitions').
fn housekeeping<'a>(online: &CpuSet, taken: impl IntoIterator<Item = &'a CpuSet>) -> CpuSet {
    let dedicated = taken.into_iter().fold(CpuSet::new(), |acc, c| acc.union(c));
    online.difference(&dedicated)
}

/// On a pure cgroup2 host `exec` into the pod runs in the container's exec sibling, which
/// carve-container makes at the first exec and its delete removes (killing what runs there).
/// The pod's journal records it too — killed, then removed — so `carve restore` removes it
/// after a crash that no `delete` follows. Nothing on a v1 or hybrid host (the process sits in
/// the pod's v1 cpuset cgroup there, made by nobody but the pod).
fn record_exec_sibling(j: &mut Journal, paths: &HostPaths, init_pid: i32) -> Result<()> {
    let root = paths.sys.join("fs/cgroup");
    let Some(sib) = v2_cpuset_dir(&root, init_pid)
        .as_deref()
        .and_then(carve_cgroups::v2::exec_sibling)
    else {
        return Ok(());
    };
    j.record(Change::Dir { path: sib.clone() })?;
    j.record(Change::WriteBack {
        path: sib.join("cgroup.kill"),
        value: "1".into(),
    })?;
    Ok(())
}

/// What `cpuset.cpus.partition=isolated` needs on this host, decided from the files alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionPlan {
    /// Write "isolated" to this `cpuset.cpus.partition`: the container's cgroup sits on cgroup2
    /// with the cpuset controller and its parent is a partition root (the root cgroup, or one
    /// the admin made "root"/"isolated"), so the kernel accepts a local partition.
    Isolate(PathBuf),
    /// Not done, and why (a v1 cpuset, a kernel without partitions, a parent that is no
    /// partition root: a remote partition needs `cpuset.cpus.exclusive` written down the whole
    /// chain of shared ancestors, which carve does not do).
    Skip(String),
}

/// Decides [`PartitionPlan`] for the cgroup2 directory `dir` of a container below the cgroup2
/// mount `root` (`None` when the container has no cgroup2 directory with the cpuset controller).
pub fn partition_plan(root: &Path, dir: Option<&Path>) -> PartitionPlan {
    let Some(dir) = dir else {
        return PartitionPlan::Skip(
            "cpuset is not a cgroup2 controller here (a v1 or hybrid host): the v1 cpuset with the moved IRQs and workqueues is the partition".into(),
        );
    };
    let file = dir.join("cpuset.cpus.partition");
    if !file.exists() {
        return PartitionPlan::Skip(format!(
            "{} does not exist: the kernel has no cpuset partitions (5.11+, isolated 5.15+)",
            file.display()
        ));
    }
    let parent = match dir.parent() {
        Some(p) if p.starts_with(root) => p,
        _ => return PartitionPlan::Skip(format!("{} has no parent cgroup", dir.display())),
    };
    if parent == root {
        return PartitionPlan::Isolate(file);
    }
    let kind = std::fs::read_to_string(parent.join("cpuset.cpus.partition")).unwrap_or_default();
    match kind.split_whitespace().next() {
        Some("root" | "isolated") if !kind.contains("invalid") => PartitionPlan::Isolate(file),
        _ => PartitionPlan::Skip(format!(
            "the parent {} is not a partition root ({:?}); carve makes local partitions only",
            parent.display(),
            kind.trim()
        )),
    }
}

/// The cgroup2 directory of `pid` when cgroup2 is mounted at `root` with the cpuset controller
/// (a pure v2 host); `None` otherwise.
fn v2_cpuset_dir(root: &Path, pid: i32) -> Option<PathBuf> {
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    if !controllers.split_whitespace().any(|c| c == "cpuset") {
        return None;
    }
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(root.join(rel.trim_start_matches('/')))
}

/// Makes the container of `init_pid` an isolated cpuset partition where [`partition_plan`] says
/// the kernel accepts it (through the pod's journal; the file goes with the cgroup at delete).
/// A partition the kernel marks invalid is put back and reported, not fatal: the rest of the
/// dedication stands without it.
fn isolate(j: &mut Journal, paths: &HostPaths, init_pid: i32) -> Result<()> {
    let root = paths.sys.join("fs/cgroup");
    let plan = partition_plan(&root, v2_cpuset_dir(&root, init_pid).as_deref());
    let file = match plan {
        PartitionPlan::Isolate(f) => f,
        PartitionPlan::Skip(why) => {
            tracing::info!("cpuset.cpus.partition not set: {why}");
            return Ok(());
        }
    };
    let old = std::fs::read_to_string(&file).unwrap_or_default();
    if let Err(e) = j.write_file(&file, "isolated") {
        tracing::warn!("cpuset.cpus.partition=isolated refused: {e}");
        return Ok(());
    }
    let now = std::fs::read_to_string(&file).unwrap_or_default();
    if now.contains("invalid") {
        std::fs::write(&file, old.split_whitespace().next().unwrap_or("member"))
            .with_context(|| format!("putting {} back", file.display()))?;
        tracing::warn!(
            "cpuset.cpus.partition=isolated is invalid here ({}); left a member",
            now.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn housekeeping_is_online_minus_every_live_partition() {
        let set = |s: &str| CpuSet::parse_list(s).unwrap();
        let online = set("0-3");
        assert_eq!(housekeeping(&online, [&set("1"), &set("3")]), set("0,2"));
        assert_eq!(housekeeping(&online, []), online);
        // CPUs beyond the online ones (a stale registration) take nothing more.
        assert_eq!(housekeeping(&online, [&set("2-5")]), set("0-1"));
        assert!(housekeeping(&online, [&set("0-1"), &set("2-3")]).is_empty());
    }

    fn cg(root: &Path, rel: &str, partition: Option<&str>) -> PathBuf {
        let d = root.join(rel);
        std::fs::create_dir_all(&d).unwrap();
        if let Some(p) = partition {
            std::fs::write(d.join("cpuset.cpus.partition"), format!("{p}\n")).unwrap();
        }
        d
    }

    #[test]
    fn partition_plan_isolates_below_a_partition_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // Directly below the root cgroup (always a partition root).
        let top = cg(root, "carve-ctr", Some("member"));
        assert_eq!(
            partition_plan(root, Some(&top)),
            PartitionPlan::Isolate(top.join("cpuset.cpus.partition"))
        );
        // Below a parent the admin made a partition root.
        cg(root, "kubepods", Some("root"));
        let ok = cg(root, "kubepods/ctr", Some("member"));
        assert_eq!(
            partition_plan(root, Some(&ok)),
            PartitionPlan::Isolate(ok.join("cpuset.cpus.partition"))
        );
        // Below a member parent, or an invalid partition root: no local partition.
        cg(root, "system", Some("member"));
        let member = cg(root, "system/ctr", Some("member"));
        assert!(matches!(partition_plan(root, Some(&member)),
            PartitionPlan::Skip(w) if w.contains("not a partition root")));
        cg(
            root,
            "bad",
            Some("root invalid (Cpu list in cpuset.cpus not exclusive)"),
        );
        let bad = cg(root, "bad/ctr", Some("member"));
        assert!(matches!(
            partition_plan(root, Some(&bad)),
            PartitionPlan::Skip(_)
        ));
        // A kernel without partitions, and a host whose cpuset is v1.
        let old = cg(root, "old", None);
        assert!(matches!(partition_plan(root, Some(&old)),
            PartitionPlan::Skip(w) if w.contains("no cpuset partitions")));
        assert!(matches!(partition_plan(root, None),
            PartitionPlan::Skip(w) if w.contains("v1")));
    }

    #[test]
    fn exec_cpus_annotation_values_are_checked() {
        let t = tempfile::tempdir().unwrap();
        let write = |v: &str| {
            let cfg = serde_json::json!({
                "annotations": {DEDICATED: "true", EXEC_CPUS: v},
                "linux": {"resources": {"cpu": {"cpus": "1"}}}
            });
            std::fs::write(t.path().join("config.json"), cfg.to_string()).unwrap();
        };
        write("dedicated");
        assert!(request(t.path()).unwrap().unwrap().exec_dedicated);
        write("housekeeping");
        assert!(!request(t.path()).unwrap().unwrap().exec_dedicated);
        write("fast");
        let e = request(t.path()).unwrap_err().to_string();
        assert!(e.contains(EXEC_CPUS) && e.contains("\"fast\""), "{e}");
    }
}
