//! Moving tasks off the dedicated cores, once at setup and then by a watcher while the partition
//! runs.
//!
//! Every task (thread) whose allowed CPUs touch a dedicated core gets them minus the dedicated
//! cores (or the housekeeping cores when nothing would be left), after its old affinity is recorded
//! in the journal. Per-CPU kernel threads (PF_NO_SETAFFINITY: migration/N, ksoftirqd/N, cpuhp/N,
//! kworker/N:M) cannot move; they are listed. Tasks in the partition's own cpuset are the
//! dedicated process and its threads, and are left alone.
//!
//! New processes in the partition's cpuset (the command's descendants) are recorded in the
//! journal as processes to stop, so undo stops them before it removes the cpuset.
//!
//! Tasks forked during the run inherit the narrowed affinity. So that teardown gives them back
//! what their parent had, the watcher records for a new task whose parent (or thread group) was
//! moved the parent's old affinity, without changing anything now.

use carve_core::CpuSet;
use carve_journal::{Change, Journal, ProcessId};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cpuset::CpusetPartition;
use crate::sys::{get_affinity, list_tasks, read_task, set_affinity, PF_NO_SETAFFINITY};

/// A task that stays on a dedicated core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Immovable {
    /// The thread id.
    pub tid: i32,
    /// Its name.
    pub comm: String,
    /// Why it stays ("per-CPU kernel thread", or the error).
    pub why: String,
}

/// The task mover's state across passes.
#[derive(Debug)]
pub struct TaskMover {
    proc: PathBuf,
    dedicated: CpuSet,
    housekeeping: CpuSet,
    partition: Option<CpusetPartition>,
    seen: HashSet<i32>,
    moved_old: HashMap<i32, String>,
    /// Tasks moved so far (setup and watcher).
    pub moved: usize,
    /// Tasks the watcher moved after setup.
    pub moved_later: usize,
    /// New tasks whose restore-to affinity was inherited from a moved parent.
    pub inherited: usize,
    /// Tasks that stay on the dedicated cores, by thread id.
    pub immovable: BTreeMap<i32, Immovable>,
    /// Processes in the partition already recorded in the journal.
    pub recorded: HashSet<i32>,
    own_pid: i32,
    exempt: HashSet<i32>,
}

impl TaskMover {
    /// A mover for `dedicated` that leaves members of `partition` alone.
    pub fn new(
        proc: impl Into<PathBuf>,
        dedicated: CpuSet,
        housekeeping: CpuSet,
        partition: Option<CpusetPartition>,
    ) -> Self {
        TaskMover {
            proc: proc.into(),
            dedicated,
            housekeeping,
            partition,
            seen: HashSet::new(),
            moved_old: HashMap::new(),
            moved: 0,
            moved_later: 0,
            inherited: 0,
            immovable: BTreeMap::new(),
            recorded: HashSet::new(),
            own_pid: std::process::id() as i32,
            exempt: HashSet::new(),
        }
    }

    /// Marks a process or thread as the partition's own (needed where membership cannot be read
    /// from /proc/PID/cgroup: no cpuset hierarchy, or a v2 thread placed by affinity).
    pub fn exempt(&mut self, id: i32) {
        self.exempt.insert(id);
    }

    fn in_partition(&mut self, tgid: i32, tid: i32) -> bool {
        if self.exempt.contains(&tgid) || self.exempt.contains(&tid) {
            return true;
        }
        let Some(p) = &self.partition else {
            // No cpuset: the partition is what was exempted and the processes it forks.
            let parent = read_task(&self.proc, tgid, tgid).map(|t| t.ppid);
            if parent.is_some_and(|pp| self.exempt.contains(&pp)) {
                self.exempt.insert(tgid);
                return true;
            }
            return false;
        };
        std::fs::read_to_string(self.proc.join(format!("{tgid}/task/{tid}/cgroup")))
            .is_ok_and(|c| p.holds(&c))
    }

    /// One pass over every task. The first pass is setup; later ones are the watcher's.
    pub fn pass(&mut self, j: &Mutex<Journal>) -> Result<usize, carve_journal::Error> {
        let first = self.seen.is_empty();
        let mut moved = 0;
        let mut live = HashSet::new();
        for (tgid, tid) in list_tasks(&self.proc) {
            live.insert(tid);
            let new_task = self.seen.insert(tid) && !first;
            let Ok(aff) = get_affinity(tid) else {
                continue; // exited
            };
            if aff.intersection(&self.dedicated).is_empty() {
                if new_task {
                    self.inherit(j, tgid, tid)?;
                }
                continue;
            }
            if self.immovable.contains_key(&tid) {
                continue;
            }
            if self.in_partition(tgid, tid) {
                // The dedicated process and its descendants. Each new process is recorded, so
                // undo (also `carve restore` after a crash) stops it before removing the cpuset.
                if tid == tgid && tgid != self.own_pid && self.recorded.insert(tgid) {
                    if let Some(id) = ProcessId::of(tgid) {
                        j.lock()
                            .expect("journal lock")
                            .record(Change::Process { id, grace_ms: 2000 })?;
                    }
                }
                continue;
            }
            let Some(info) = read_task(&self.proc, tgid, tid) else {
                continue;
            };
            if info.flags & PF_NO_SETAFFINITY != 0 {
                self.immovable.insert(
                    tid,
                    Immovable {
                        tid,
                        comm: info.comm,
                        why: "per-CPU kernel thread (PF_NO_SETAFFINITY)".into(),
                    },
                );
                continue;
            }
            let mut target = aff.difference(&self.dedicated);
            if target.is_empty() {
                target = self.housekeeping.clone();
            }
            let Some(id) = ProcessId::of(tid) else {
                continue;
            };
            // Record first, then change: a crash in between leaves a harmless rewrite on undo.
            j.lock().expect("journal lock").record(Change::Affinity {
                id,
                old: aff.to_string(),
            })?;
            match set_affinity(tid, &target) {
                Ok(()) => {
                    moved += 1;
                    self.moved_old.insert(tid, aff.to_string());
                }
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    self.immovable.insert(
                        tid,
                        Immovable {
                            tid,
                            comm: info.comm,
                            why: e.to_string(),
                        },
                    );
                }
            }
        }
        self.seen.retain(|t| live.contains(t));
        self.immovable.retain(|t, _| live.contains(t));
        self.moved += moved;
        if !first {
            self.moved_later += moved;
        }
        Ok(moved)
    }

    /// A new task off the dedicated cores: when its thread group or parent was moved, record the
    /// old affinity it would have had, so teardown widens it again.
    fn inherit(
        &mut self,
        j: &Mutex<Journal>,
        tgid: i32,
        tid: i32,
    ) -> Result<(), carve_journal::Error> {
        let Some(info) = read_task(&self.proc, tgid, tid) else {
            return Ok(());
        };
        // Kernel threads take their affinity from the kernel (kthreadd, workqueue masks), not
        // from a parent, and many refuse affinity changes: nothing to inherit.
        if info.is_kthread() {
            return Ok(());
        }
        let from = if tid != tgid {
            self.moved_old.get(&tgid).cloned()
        } else {
            self.moved_old.get(&info.ppid).cloned()
        };
        let (Some(old), Some(id)) = (from, ProcessId::of(tid)) else {
            return Ok(());
        };
        j.lock().expect("journal lock").record(Change::Affinity {
            id,
            old: old.clone(),
        })?;
        self.moved_old.insert(tid, old);
        self.inherited += 1;
        Ok(())
    }

    /// The per-CPU kernel threads and other tasks left on the dedicated cores.
    pub fn immovable(&self) -> Vec<Immovable> {
        self.immovable.values().cloned().collect()
    }
}

/// The watcher thread: runs [`TaskMover::pass`] every `interval` until stopped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Option<carve_journal::Error>>>,
}

impl Watcher {
    /// Starts watching.
    pub fn start(
        mover: Arc<Mutex<TaskMover>>,
        journal: Arc<Mutex<Journal>>,
        interval: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("carve-watcher".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Err(e) = mover.lock().expect("mover lock").pass(&journal) {
                        return Some(e);
                    }
                }
                None
            })
            .expect("spawn watcher thread");
        Watcher {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the watcher and returns the error that stopped it early, if any.
    pub fn stop(mut self) -> Option<carve_journal::Error> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok().flatten())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
