//! The dedicated-core tier as the engine drives it: `carve_dedicated` sets the partition up
//! (exclusive cpuset, IRQs, workqueues, sysctls, huge pages — under its own journal
//! `dedicated-NAME`) and launches the command pinned, with its sched policy and locked memory.

use crate::spec::KindSpec;
use crate::state::PartitionState;
use crate::tier::{Launched, PlanRef, Tier, TierCtx, TierError, TierResult};
use carve_dedicated::{ActivePartition, DedicatedSpec, HugePagesSpec, Partition};
use carve_journal::{Journal, ProcessId};
use std::collections::HashMap;
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

/// The live dedicated partitions of this process.
#[derive(Default)]
pub struct DedicatedTier {
    live: Mutex<HashMap<String, (ActivePartition, Child)>>,
}

impl std::fmt::Debug for DedicatedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DedicatedTier")
    }
}

/// The host's online CPUs.
pub(crate) fn online_cpus() -> TierResult<carve_core::CpuSet> {
    const ONLINE: &str = "/sys/devices/system/cpu/online";
    let t = std::fs::read_to_string(ONLINE).map_err(TierError::io(ONLINE))?;
    Ok(carve_core::CpuSet::parse_list(t.trim())?)
}

impl DedicatedTier {
    /// Puts thread `tid` of this process on `cpu` inside running dedicated partition `name`
    /// (its cpuset, pinned, and exempt from the tier's task mover) — for the observer's
    /// low-duty noise probe.
    pub fn join_thread(&self, name: &str, tid: i32, cpu: usize) -> TierResult<()> {
        let live = self.live.lock().expect("dedicated tier lock");
        let (active, _) = live
            .get(name)
            .ok_or_else(|| TierError::NotRunningHere(name.to_string()))?;
        Ok(active.join_thread(tid, cpu)?)
    }
}

impl Tier for DedicatedTier {
    fn kind(&self) -> &'static str {
        "dedicated"
    }

    fn start(&self, ctx: &TierCtx<'_>, _journal: &mut Journal) -> TierResult<Launched> {
        let KindSpec::Dedicated(d) = &ctx.part.kind else {
            return Err(TierError::WrongKind("dedicated"));
        };
        let name = &ctx.part.name;
        let online = online_cpus()?;
        let mut spec = DedicatedSpec::new(name, ctx.part.cpus.clone(), &online);
        if let Some(s) = &d.sched {
            spec.sched = s.parse().map_err(|source| TierError::Sched {
                text: s.clone(),
                source,
            })?;
        }
        if let Some((size, count)) = d.hugepages {
            spec.hugepages = vec![HugePagesSpec {
                size_kib: size / 1024,
                count,
                node: None,
            }];
        }
        spec.irqs = d.irqs.clone();
        spec.env = d.env.clone();
        spec.command = d.command.clone();
        let mut active = Partition::new(spec).setup()?;
        let log = ctx.dir.partition_dir(name).join("log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(TierError::io(&log))?;
        // On failure `active` is dropped here, which tears the partition down.
        let child = active.launch_logged(Some(&file))?;
        let pid = child.id() as i32;
        let cgroup = active.cpuset().map(|c| {
            format!(
                "/{}",
                c.dir.file_name().unwrap_or_default().to_string_lossy()
            )
        });
        self.live
            .lock()
            .expect("dedicated tier lock")
            .insert(name.clone(), (active, child));
        Ok(Launched {
            pid,
            cgroup,
            id: name.clone(),
            log,
        })
    }

    fn poll(&self, part: &PartitionState) -> Option<crate::restart::Exit> {
        let mut live = self.live.lock().expect("dedicated tier lock");
        let (_, child) = live.get_mut(&part.name)?;
        match child.try_wait() {
            Ok(Some(st)) => Some(
                match (
                    st.code(),
                    std::os::unix::process::ExitStatusExt::signal(&st),
                ) {
                    (Some(c), _) => crate::restart::Exit::Code(c),
                    (None, Some(s)) => crate::restart::Exit::Signal(s),
                    _ => crate::restart::Exit::Unknown,
                },
            ),
            Ok(None) => None,
            Err(_) => Some(crate::restart::Exit::Unknown),
        }
    }

    fn stop(&self, _plan: &PlanRef<'_>, part: &PartitionState, grace: Duration) -> TierResult<()> {
        let entry = self
            .live
            .lock()
            .expect("dedicated tier lock")
            .remove(&part.name);
        match entry {
            Some((active, mut child)) => {
                if let (Ok(None), Some(id)) = (child.try_wait(), ProcessId::of(child.id() as i32)) {
                    crate::process::signal(id, libc::SIGTERM);
                    let deadline = std::time::Instant::now() + grace;
                    while matches!(child.try_wait(), Ok(None))
                        && std::time::Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if matches!(child.try_wait(), Ok(None)) {
                        let _ = child.kill();
                    }
                }
                let _ = child.wait();
                Ok(active.teardown().map(|_| ())?)
            }
            // Not ours (the holder crashed): undo the tier's orphaned journal.
            None => restore_journal(&Partition::journal_owner(&part.name)),
        }
    }
}

/// Undoes the journal `owner` under the default root if its holder is gone.
pub(crate) fn restore_journal(owner: &str) -> TierResult<()> {
    let path = carve_journal::journal_path(carve_journal::DEFAULT_ROOT.as_ref(), owner);
    let Some(j) = Journal::load_if_present(&path)? else {
        return Ok(()); // never made, or another undoer finished it
    };
    Ok(j.with_link_undo(carve_net::journal_undo).undo()?)
}
