//! A plan's state under /run/carve/PLAN/: the plan copy, each partition's state, the lock that
//! says the plan is held by a live carve, and the claims check that refuses a second plan asking
//! for a core, name or bridge a running plan holds.

use crate::spec::PlanSpec;
use carve_core::CpuSet;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where plan states live unless a caller chooses another root (tests do not: the runtime and
/// `carve ps` look here).
pub const DEFAULT_ROOT: &str = "/run/carve";

/// Names a plan may not take: folders of the state root used by others.
const RESERVED: &[&str] = &["journal", "oci", "dedicated", "vm", "vms", "run"];

/// Errors about plan state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A state file did not parse.
    #[error("{} is corrupt: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The plan's name cannot name a state folder.
    #[error("plan name {0:?} is not usable: letters, digits, '-', '_' and '.' only, not reserved")]
    BadName(String),
    /// Another running plan holds something this plan asks for.
    #[error("plan {plan} collides with running plan {other}: {}", .what.join(", "))]
    Collision {
        /// This plan.
        plan: String,
        /// The running plan.
        other: String,
        /// Everything both ask for ("core 1", "partition name web", "bridge carve0").
        what: Vec<String>,
    },
    /// The plan is already up.
    #[error("plan {0} is already up (held by pid {1})")]
    AlreadyUp(String, i32),
    /// The plan is not up.
    #[error("no plan {0} is up")]
    NotUp(String),
    /// No running plan has a partition of that name.
    #[error("no running plan has a partition named {0}")]
    NoPartition(String),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a plan name is usable as a folder and cgroup name.
pub fn check_plan_name(name: &str) -> Result<(), StateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !RESERVED.contains(&name);
    if ok {
        Ok(())
    } else {
        Err(StateError::BadName(name.to_string()))
    }
}

/// Where a partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartState {
    /// Not started yet.
    Pending,
    /// Running.
    Running,
    /// Exited; the supervisor will start it again after its backoff.
    Restarting,
    /// Stopped (by `carve stop`, or exited with restart policy "no").
    Stopped,
    /// Exited and its policy gave up on it or does not restart it.
    Exited,
}

impl std::fmt::Display for PartState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartState::Pending => "pending",
            PartState::Running => "running",
            PartState::Restarting => "restarting",
            PartState::Stopped => "stopped",
            PartState::Exited => "exited",
        })
    }
}

/// What the user wants of a partition (`carve stop` / `carve start` set it; the holder acts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Keep it running.
    #[default]
    Running,
    /// Keep it stopped.
    Stopped,
}

/// One partition's live state, as recorded by the plan's holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The partition's name.
    pub name: String,
    /// "dedicated", "container" or "vm".
    pub kind: String,
    /// Its cores.
    pub cpus: CpuSet,
    /// Its memory limit in bytes.
    pub memory: u64,
    /// Where it stands.
    pub state: PartState,
    /// What the user asked for.
    #[serde(default)]
    pub desired: Desired,
    /// Its main process (container init, dedicated process, QEMU).
    pub pid: Option<i32>,
    /// Its cgroup path below each hierarchy's root (e.g. `/carve-demo/web`).
    pub cgroup: Option<String>,
    /// Its output (container stdout/stderr, VM console, dedicated process output).
    pub log: PathBuf,
    /// The tier's id for it (the container id, the VM name).
    pub id: String,
    /// How many times the supervisor restarted it.
    pub restarts: u32,
    /// The last exit status, as text ("exit 1", "signal 9").
    pub last_exit: Option<String>,
}

/// The state of one plan, written by its holder to /run/carve/PLAN/state.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanState {
    /// The plan's name.
    pub plan: String,
    /// The process holding the plan (foreground carve or the supervisor).
    pub holder: i32,
    /// The OCI runtime binary and root used for its containers.
    pub oci_runtime: Option<PathBuf>,
    /// The runtime's --root.
    pub oci_root: Option<PathBuf>,
    /// Every partition.
    pub partitions: Vec<PartitionState>,
    /// Bridges the plan made.
    pub bridges: Vec<String>,
    /// Network namespaces the plan made or uses.
    pub netns: Vec<String>,
}

/// The folders and files of one plan's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDir {
    /// /run/carve/PLAN
    pub dir: PathBuf,
}

impl PlanDir {
    /// The state folder of `plan` under `root`.
    pub fn new(root: &Path, plan: &str) -> Self {
        PlanDir {
            dir: root.join(plan),
        }
    }
    /// The copy of the resolved plan.
    pub fn plan_file(&self) -> PathBuf {
        self.dir.join("plan.json")
    }
    /// The live state.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// The lock held by the plan's holder for as long as the plan is up.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }
    /// A partition's folder (bundle, log).
    pub fn partition_dir(&self, part: &str) -> PathBuf {
        self.dir.join("partitions").join(part)
    }
    /// The OCI runtime's --root for the plan's containers.
    pub fn oci_root(&self) -> PathBuf {
        self.dir.join("oci")
    }

    /// Reads the resolved plan.
    pub fn read_plan(&self) -> Result<PlanSpec, StateError> {
        read_json(&self.plan_file())
    }

    /// Reads the live state.
    pub fn read_state(&self) -> Result<PlanState, StateError> {
        read_json(&self.state_file())
    }

    /// Replaces the live state atomically (write + rename, so readers never see half a file).
    pub fn write_state(&self, state: &PlanState) -> Result<(), StateError> {
        write_json(&self.state_file(), state)
    }

    /// Writes the plan copy.
    pub fn write_plan(&self, plan: &PlanSpec) -> Result<(), StateError> {
        write_json(&self.plan_file(), plan)
    }

    /// Whether a live process holds the plan's lock.
    pub fn is_held(&self) -> bool {
        let Ok(f) = File::open(self.lock_file()) else {
            return false;
        };
        match try_flock(&f) {
            // We got it: nobody holds it. Dropping `f` releases it again.
            Ok(true) => false,
            Ok(false) => true,
            Err(_) => false,
        }
    }
}

/// Reads a JSON file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StateError> {
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    serde_json::from_str(&text).map_err(|source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a JSON file atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).expect("state serializes");
    std::fs::write(&tmp, text).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("replace", path))
}

/// Tries to take an exclusive flock: Ok(true) when taken, Ok(false) when someone holds it.
fn try_flock(f: &File) -> std::io::Result<bool> {
    // SAFETY: the fd is valid for the life of `f`; flock has no memory effects.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// An exclusive flock held until dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock at `path` (created if missing), waiting for it when `wait`; `Ok(None)` when
    /// it is held and `wait` is false.
    pub fn take(path: &Path, wait: bool) -> Result<Option<Lock>, StateError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io("open lock", path))?;
        if wait {
            // SAFETY: the fd is valid for the life of `file`; flock has no memory effects.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r != 0 {
                return Err(io("lock", path)(std::io::Error::last_os_error()));
            }
        } else if !try_flock(&file).map_err(io("lock", path))? {
            return Ok(None);
        }
        Ok(Some(Lock {
            file,
            path: path.to_path_buf(),
        }))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open lock file (a child process that must keep holding it inherits this fd).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// What a plan claims on the host: its cores, partition names and bridges.
///
/// Cores of dedicated partitions are held exclusively; the cores of containers and VMs may be
/// shared with other plans' containers and VMs (as within one plan), never with a dedicated core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// Cores of dedicated partitions.
    pub exclusive: CpuSet,
    /// Every core of every partition.
    pub cores: CpuSet,
    /// Partition names (global, so `carve logs NAME` is unambiguous).
    pub names: Vec<String>,
    /// Bridge names.
    pub bridges: Vec<String>,
}

impl Claims {
    /// What `plan` asks for.
    pub fn of(plan: &PlanSpec) -> Self {
        let mut c = Claims::default();
        for p in &plan.partitions {
            c.cores = c.cores.union(&p.cpus);
            if matches!(p.kind, crate::spec::KindSpec::Dedicated(_)) {
                c.exclusive = c.exclusive.union(&p.cpus);
            }
            c.names.push(p.name.clone());
        }
        c.bridges = plan.networks.iter().map(|n| n.name.clone()).collect();
        c
    }

    /// What both claim, as readable items.
    pub fn overlap(&self, other: &Claims) -> Vec<String> {
        let mut out = Vec::new();
        let cores = self
            .exclusive
            .intersection(&other.cores)
            .union(&self.cores.intersection(&other.exclusive));
        for c in cores.iter() {
            out.push(format!("core {c}"));
        }
        for n in self.names.iter().filter(|n| other.names.contains(n)) {
            out.push(format!("partition name {n}"));
        }
        for b in self.bridges.iter().filter(|b| other.bridges.contains(b)) {
            out.push(format!("bridge {b}"));
        }
        out
    }
}

/// The plans under `root` whose state folder has a plan copy, with whether they are held.
pub fn list_plans(root: &Path) -> Vec<(String, PlanDir, bool)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let dir = PlanDir::new(root, &name);
        if check_plan_name(&name).is_ok() && dir.plan_file().is_file() {
            let held = dir.is_held();
            out.push((name, dir, held));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Refuses `plan` when a running plan under `root` claims one of its cores, names or bridges,
/// or when the plan itself is already up.
pub fn check_collisions(root: &Path, plan: &PlanSpec) -> Result<(), StateError> {
    let mine = Claims::of(plan);
    for (name, dir, held) in list_plans(root) {
        if !held {
            continue;
        }
        if name == plan.name {
            let pid = dir.read_state().map(|s| s.holder).unwrap_or(0);
            return Err(StateError::AlreadyUp(name, pid));
        }
        let Ok(other) = dir.read_plan() else { continue };
        let what = mine.overlap(&Claims::of(&other));
        if !what.is_empty() {
            return Err(StateError::Collision {
                plan: plan.name.clone(),
                other: name,
                what,
            });
        }
    }
    Ok(())
}

/// Finds the running plan holding partition `name`.
pub fn find_partition(root: &Path, name: &str) -> Result<(PlanDir, PlanState), StateError> {
    for (_, dir, held) in list_plans(root) {
        if !held {
            continue;
        }
        if let Ok(st) = dir.read_state() {
            if st.partitions.iter().any(|p| p.name == name) {
                return Ok((dir, st));
            }
        }
    }
    Err(StateError::NoPartition(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{DedicatedSpec, KindSpec, NetworkSpec, PartitionSpec, RestartPolicy, VmSpec};

    fn plan(name: &str, parts: &[(&str, &str)], bridges: &[&str]) -> PlanSpec {
        PlanSpec {
            name: name.into(),
            networks: bridges
                .iter()
                .map(|b| NetworkSpec {
                    name: b.to_string(),
                    namespace: None,
                    subnet: "10.0.0.0".parse().unwrap(),
                    prefix: 24,
                    gateway: None,
                })
                .collect(),
            partitions: parts
                .iter()
                .map(|(n, cpus)| PartitionSpec {
                    name: n.trim_start_matches('!').to_string(),
                    cpus: CpuSet::parse_list(cpus).unwrap(),
                    memory: 1 << 20,
                    restart: RestartPolicy::No.into(),
                    // A leading '!' makes it a dedicated partition.
                    kind: if n.starts_with('!') {
                        KindSpec::Dedicated(DedicatedSpec {
                            command: vec!["x".into()],
                            env: vec![],
                            sched: None,
                            hugepages: None,
                            irqs: vec![],
                        })
                    } else {
                        KindSpec::Vm(VmSpec {
                            vcpus: 1,
                            kernel: None,
                            initrd: None,
                            append: None,
                            disks: vec![],
                            network: None,
                        })
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn plan_names_are_checked() {
        check_plan_name("demo-1.a_b").unwrap();
        for bad in ["", "journal", "a/b", "..", ".x", "a b"] {
            assert!(check_plan_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn overlap_names_dedicated_cores_names_and_bridges() {
        let a = Claims::of(&plan(
            "a",
            &[("web", "0"), ("!fast", "1"), ("db", "2")],
            &["br0"],
        ));
        let b = Claims::of(&plan("b", &[("web", "0-1"), ("x", "3")], &["br0", "br1"]));
        assert_eq!(
            a.overlap(&b),
            vec!["core 1", "partition name web", "bridge br0"]
        );
        assert_eq!(
            b.overlap(&a),
            vec!["core 1", "partition name web", "bridge br0"]
        );
        // Shared cores of containers and VMs do not collide; a dedicated one does, both ways.
        let c = Claims::of(&plan("c", &[("y", "0,2-3")], &["br1"]));
        assert!(a.overlap(&c).is_empty());
        let d = Claims::of(&plan("d", &[("!z", "2")], &[]));
        assert_eq!(a.overlap(&d), vec!["core 2"]);
    }

    #[test]
    fn only_held_plans_collide_and_the_same_plan_is_already_up() {
        let t = tempfile::tempdir().unwrap();
        let a = plan("a", &[("!web", "1")], &["br0"]);
        let dir = PlanDir::new(t.path(), "a");
        std::fs::create_dir_all(&dir.dir).unwrap();
        dir.write_plan(&a).unwrap();
        dir.write_state(&PlanState {
            plan: "a".into(),
            holder: 42,
            oci_runtime: None,
            oci_root: None,
            partitions: vec![],
            bridges: vec![],
            netns: vec![],
        })
        .unwrap();
        let b = plan("b", &[("web2", "1")], &[]);
        // Not held: a leftover state folder claims nothing.
        check_collisions(t.path(), &b).unwrap();
        let lock = Lock::take(&dir.lock_file(), false).unwrap().unwrap();
        // flock is per open file: this process sees its own lock as held through another fd.
        assert!(dir.is_held());
        let e = check_collisions(t.path(), &b).unwrap_err();
        assert!(e.to_string().contains("core 1"), "{e}");
        let e = check_collisions(t.path(), &a).unwrap_err();
        assert!(matches!(e, StateError::AlreadyUp(_, 42)), "{e}");
        check_collisions(t.path(), &plan("c", &[("z", "0")], &["br1"])).unwrap();
        assert!(Lock::take(&dir.lock_file(), false).unwrap().is_none());
        drop(lock);
        assert!(!dir.is_held());
        check_collisions(t.path(), &b).unwrap();
    }
}
