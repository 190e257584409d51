//! Operations on running plans from any process: `carve ps`, `stop`, `start`, `down`, `logs`,
//! `exec`. They read the state the holder writes and ask the holder to act; only `down` of a
//! plan whose holder is gone acts itself (through the journal).

use crate::cgroup::{hierarchies, usage};
use crate::engine::{request, DownError, Engine};
use crate::state::{find_partition, list_plans, Desired, PartState, PlanDir, StateError};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// One row of `carve ps`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PsRow {
    /// The plan.
    pub plan: String,
    /// The partition.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its cores.
    pub cpus: String,
    /// Its state ("running", "restarting", ...; "orphaned" when the plan's holder is gone).
    pub state: String,
    /// Its main process.
    pub pid: Option<i32>,
    /// CPU use over the sampling interval, in % of one core.
    pub cpu_percent: Option<f64>,
    /// Memory in use, bytes.
    pub memory_used: Option<u64>,
    /// Memory limit, bytes.
    pub memory_limit: Option<u64>,
    /// Dedicated partitions: the share of their cores their process did not get over the
    /// sampling interval, in % (schedstat on-CPU time against wall time). It is the live stolen
    /// share for a fast path that spins; a process that sleeps shows its idle time here too.
    pub stolen_percent: Option<f64>,
    /// Restarts by the supervisor.
    pub restarts: u32,
    /// How it last ended.
    pub last_exit: Option<String>,
}

/// Every partition of every plan under `root`, with CPU % sampled over `interval`.
pub fn ps(root: &Path, interval: Duration) -> Vec<PsRow> {
    let hs = hierarchies();
    let mut rows = Vec::new();
    for (plan, dir, held) in list_plans(root) {
        let Ok(st) = dir.read_state() else { continue };
        for p in st.partitions {
            rows.push((
                PsRow {
                    plan: plan.clone(),
                    name: p.name.clone(),
                    kind: p.kind.clone(),
                    cpus: p.cpus.to_string(),
                    state: if held {
                        p.state.to_string()
                    } else {
                        "orphaned".into()
                    },
                    pid: p.pid,
                    cpu_percent: None,
                    memory_used: None,
                    memory_limit: Some(p.memory),
                    stolen_percent: None,
                    restarts: p.restarts,
                    last_exit: p.last_exit.clone(),
                },
                p.cgroup.clone().filter(|_| p.state == PartState::Running),
            ));
        }
    }
    let before: Vec<Option<u64>> = rows
        .iter()
        .map(|(_, cg)| cg.as_ref().and_then(|c| usage(&hs, c).cpu_ns))
        .collect();
    let on_cpu_before: Vec<Option<u64>> = rows
        .iter()
        .map(|(r, _)| dedicated_pid(r).and_then(on_cpu_ns))
        .collect();
    let t0 = Instant::now();
    if rows.iter().any(|(_, cg)| cg.is_some()) {
        std::thread::sleep(interval);
    }
    let dt = t0.elapsed().as_nanos().max(1) as f64;
    for ((row, _), b) in rows.iter_mut().zip(&on_cpu_before) {
        let (Some(pid), Some(b)) = (dedicated_pid(row), b) else {
            continue;
        };
        let cores = carve_core::CpuSet::parse_list(&row.cpus)
            .map(|c| c.len())
            .unwrap_or(1)
            .max(1);
        if let Some(a) = on_cpu_ns(pid) {
            let got = a.saturating_sub(*b) as f64 / (dt * cores as f64);
            row.stolen_percent = Some(((1.0 - got) * 100.0).clamp(0.0, 100.0));
        }
    }
    for ((row, cg), b) in rows.iter_mut().zip(before) {
        let Some(cg) = cg else { continue };
        let u = usage(&hs, cg);
        row.memory_used = u.memory;
        if u.memory_limit.is_some() {
            row.memory_limit = u.memory_limit;
        }
        if let (Some(a), Some(b)) = (u.cpu_ns, b) {
            row.cpu_percent = Some(a.saturating_sub(b) as f64 * 100.0 / dt);
        }
    }
    rows.into_iter().map(|(r, _)| r).collect()
}

fn dedicated_pid(r: &PsRow) -> Option<i32> {
    (r.kind == "dedicated" && r.state == "running")
        .then_some(r.pid)
        .flatten()
}

/// Time the process's threads have spent on a CPU, in ns (/proc/PID/task/*/schedstat, first
/// field). For a fast path that spins on its cores, what it did not get of them over an interval
/// is the share the OS stole (interrupts, the tick, kernel threads); IRQ time is not counted as
/// the task's when the kernel accounts IRQ time separately.
fn on_cpu_ns(pid: i32) -> Option<u64> {
    let mut sum = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        sum += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// Errors of the operations.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Plan state problem.
    #[error(transparent)]
    State(#[from] StateError),
    /// Down could not restore everything.
    #[error(transparent)]
    Down(#[from] DownError),
    /// The holder did not act in time.
    #[error("{0}")]
    Timeout(String),
}

/// Asks the holder to stop or start partition `name` and waits until it has.
pub fn set_partition(
    root: &Path,
    name: &str,
    want: Desired,
    timeout: Duration,
) -> Result<(), OpError> {
    let (dir, _) = find_partition(root, name)?;
    request(&dir, name, want)?;
    let deadline = Instant::now() + timeout;
    loop {
        let st = dir.read_state()?;
        let p = st
            .partitions
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| StateError::NoPartition(name.into()))?;
        let done = match want {
            Desired::Stopped => matches!(p.state, PartState::Stopped | PartState::Exited),
            Desired::Running => p.state == PartState::Running,
        };
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(OpError::Timeout(format!(
                "{name} is still {} after {} s",
                p.state,
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes plan `name` down: asks its holder (SIGTERM) and waits for it to release the plan, or,
/// when no live process holds it, restores it from its state and journal.
pub fn down(engine: &Engine, name: &str, timeout: Duration) -> Result<(), OpError> {
    let dir = PlanDir::new(&engine.root, name);
    let journal = carve_journal::journal_path(&engine.journal_root, &Engine::journal_owner(name));
    if dir.is_held() {
        let st = dir.read_state()?;
        // SAFETY: kill takes a pid and a signal and touches no memory.
        unsafe { libc::kill(st.holder, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        // Done when the holder has released the plan and removed its journal; a holder that
        // is gone but left its journal is finished below.
        while dir.is_held() || (journal.exists() && Instant::now() < deadline) {
            if Instant::now() >= deadline {
                return Err(OpError::Timeout(format!(
                    "plan {name}: its holder (pid {}) did not finish within {} s",
                    st.holder,
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if journal.exists() {
            // The holder died half-way: finish from the journal.
            engine.restore_plan(name)?;
        }
        return Ok(());
    }
    if !dir.dir.exists() && !journal.exists() {
        return Err(StateError::NotUp(name.into()).into());
    }
    engine.restore_plan(name)?;
    Ok(())
}

/// The plans that are up (held) under `root`.
pub fn running_plans(root: &Path) -> Vec<String> {
    list_plans(root)
        .into_iter()
        .filter(|(_, _, held)| *held)
        .map(|(n, _, _)| n)
        .collect()
}
