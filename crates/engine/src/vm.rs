//! The VM tier as the engine drives it: `carve_vm` launches QEMU with the partition's cores
//! (vCPU threads pinned), memory and a tap on the plan's bridge (the guest's address on its
//! kernel command line), under its own journal `vm-NAME`.

use crate::spec::KindSpec;
use crate::state::PartitionState;
use crate::tier::{Launched, PlanRef, Tier, TierCtx, TierError, TierResult};
use carve_journal::Journal;
use carve_vm::spec::NetSpec;
use carve_vm::{Boot, Context, Vm};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The VMs this process launched.
#[derive(Debug, Default)]
pub struct VmTier {
    live: Mutex<HashMap<String, Vm>>,
    /// Where the VM tier keeps its state and journals.
    pub ctx: Context,
}

/// Makes the VM's v1 cpuset cgroup with its cores before the VM tier does: a new cpuset that
/// inherits the root's cores is refused while another cpuset holds a core exclusively (a
/// dedicated partition), and the VM tier only fills cpusets that are empty.
fn prepare_cpuset(
    journal: &mut Journal,
    ctx: &TierCtx<'_>,
    cpus: &carve_core::CpuSet,
) -> TierResult<()> {
    let path = carve_vm::cgroup::cgroup_path(&ctx.part.name);
    for h in ctx.hierarchies {
        if h.v2 || !h.controllers.iter().any(|c| c == "cpuset") {
            continue;
        }
        let dir = crate::cgroup::dir_in(h, &path);
        journal.create_dir(&dir)?;
        for (file, value) in [
            ("cpuset.cpus", cpus.to_string()),
            ("cpuset.mems", crate::bundle::host_mems()),
        ] {
            let f = dir.join(file);
            std::fs::write(&f, &value).map_err(|source| TierError::Write {
                value,
                path: f.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

impl VmTier {
    /// Checks the partition and makes what the plan's journal records for it (its cpuset
    /// cgroup); returns the VM spec for [`VmTier::launch`], which needs no journal and so can
    /// run on another thread while containers start.
    pub fn prepare(
        &self,
        ctx: &TierCtx<'_>,
        journal: &mut Journal,
    ) -> TierResult<carve_vm::VmSpec> {
        let KindSpec::Vm(v) = &ctx.part.kind else {
            return Err(TierError::WrongKind("vm"));
        };
        let name = &ctx.part.name;
        let online = crate::dedicated::online_cpus()?;
        // QEMU's own threads stay off every dedicated core on the host (this plan's included:
        // dedicated partitions are set up before VMs).
        let dedicated = carve_dedicated::partition::registered_runs(
            &carve_dedicated::HostPaths::default().state_root(),
        )
        .into_iter()
        .fold(carve_core::CpuSet::new(), |acc, r| acc.union(&r.cpus));
        let mut housekeeping = online.difference(&dedicated);
        if housekeeping.is_empty() {
            housekeeping = ctx.part.cpus.clone();
        }
        let mut b = carve_vm::VmSpec::builder(name)?
            .vcpus(v.vcpus as usize)?
            .cpus(ctx.part.cpus.clone())
            .housekeeping(housekeeping.clone())
            .memory(&ctx.part.memory.to_string())?;
        if let Some(k) = &v.kernel {
            b = b.kernel(k)?;
        }
        if let Some(i) = &v.initrd {
            b = b.initrd(i)?;
        }
        if let Some(a) = &v.append {
            b = b.append(a);
        }
        // Each entry is a path (already made absolute against the plan file's folder) with
        // carve-vm's optional drive options: `PATH[,format=raw|qcow2][,readonly][,cache=MODE]`.
        for d in &v.disks {
            let disk: carve_vm::spec::Disk =
                d.to_string_lossy()
                    .parse()
                    .map_err(|source| TierError::Disk {
                        path: d.clone(),
                        source,
                    })?;
            b = b.disk(disk)?;
        }
        if let Some(att) = &v.network {
            let net = ctx
                .plan
                .network(&att.bridge)
                .ok_or_else(|| TierError::NoNetwork(att.bridge.clone()))?;
            b = b.net(NetSpec {
                bridge: att.bridge.clone(),
                netns: net.namespace.clone(),
                mac: None,
                ip: Some(format!("{}/{}", att.address, att.prefix)),
                gw: att.gateway.or(net.gateway).map(|g| g.to_string()),
            });
        }
        let spec = b.build(&online)?;
        if self.ctx.cgroup_root.is_some() {
            prepare_cpuset(journal, ctx, &ctx.part.cpus.union(&housekeeping))?;
        }
        Ok(spec)
    }

    /// Starts QEMU for a prepared partition (under the VM tier's own journal) and keeps it.
    pub fn launch(&self, ctx: &TierCtx<'_>, spec: carve_vm::VmSpec) -> TierResult<Launched> {
        let name = &ctx.part.name;
        let hk = spec
            .housekeeping
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let vm = match Vm::launch(&self.ctx, spec, Boot::Fresh) {
            Ok(vm) => vm,
            Err(e) => {
                // A launch that failed half-way may leave the VM's state folder: clear it.
                let _ = carve_vm::vm::stop(&self.ctx, name, true, Duration::ZERO);
                return Err(TierError::VmLaunch {
                    source: Box::new(e),
                    housekeeping: hk,
                });
            }
        };
        let launched = Launched {
            pid: vm.pid(),
            cgroup: self
                .ctx
                .cgroup_root
                .as_ref()
                .map(|_| carve_vm::cgroup::cgroup_path(name)),
            id: name.clone(),
            log: vm.paths().console_log(),
        };
        self.live
            .lock()
            .expect("vm tier lock")
            .insert(name.clone(), vm);
        Ok(launched)
    }
}

impl Tier for VmTier {
    fn kind(&self) -> &'static str {
        "vm"
    }

    fn start(&self, ctx: &TierCtx<'_>, journal: &mut Journal) -> TierResult<Launched> {
        let spec = self.prepare(ctx, journal)?;
        self.launch(ctx, spec)
    }

    fn poll(&self, part: &PartitionState) -> Option<crate::restart::Exit> {
        let mut live = self.live.lock().expect("vm tier lock");
        let vm = live.get_mut(&part.name)?;
        let r = vm.try_exit()?;
        Some(match (r.code, r.signal) {
            (Some(c), _) => crate::restart::Exit::Code(c),
            (None, Some(s)) => crate::restart::Exit::Signal(s),
            _ => crate::restart::Exit::Unknown,
        })
    }

    fn stop(&self, _plan: &PlanRef<'_>, part: &PartitionState, grace: Duration) -> TierResult<()> {
        let vm = self.live.lock().expect("vm tier lock").remove(&part.name);
        if let Some(mut vm) = vm {
            vm.stop(grace.is_zero(), grace);
            return Ok(vm.remove_state()?);
        }
        // Not ours (the holder crashed, or it already ended): stop it by name.
        match carve_vm::vm::stop(&self.ctx, &part.name, grace.is_zero(), grace) {
            Ok(_) => Ok(()),
            Err(carve_vm::VmError::State(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
