//! The allocator and validator: a [`Plan`] and a [`Host`] model in, a resolved [`Allocation`]
//! out, or the list of *all* problems (each naming the partition, the field and the line).
//!
//! Rules, in the order they are checked:
//! - names: unique, 1-12 of `a-z0-9-` starting with a letter (partitions name cgroups and
//!   interfaces); networks: valid interface names; namespaces: valid file names;
//! - fields fit the kind (no `kernel` on a container...) and required fields are there;
//! - housekeeping CPUs exist and are online, and at least one remains;
//! - listed CPUs exist and are online, none twice;
//! - a dedicated partition's CPUs are shared with nothing: no other partition, no housekeeping;
//!   their SMT siblings likewise stay out of other partitions and housekeeping unless the
//!   dedicated partition sets `allow_smt_sharing`;
//! - counts are placed automatically: whole free cores first, on one NUMA node, never on
//!   housekeeping CPUs or CPUs of dedicated partitions (and their protected siblings);
//! - vm vcpus ≤ its CPUs unless `oversubscribe`;
//! - the sum of memory budgets ≤ host memory − reserve; huge pages fit in their partition's
//!   budget and are free or reservable on the host;
//! - IRQs named by a dedicated partition exist and can be moved;
//! - networks: subnets valid and not overlapping, gateways inside; attachments name a defined
//!   network; addresses inside its subnet, not its network/broadcast/gateway address, unique.
//!
//! Problems are errors. Things that work but cost something (TCG instead of KVM, an immovable
//! IRQ on a dedicated CPU, a placement across NUMA nodes) are [`Allocation::warnings`].
//!
//! ```
//! use carve_core::{alloc::allocate, Host, Plan};
//! let host = Host::from_json(&std::fs::read_to_string("fixtures/hosts/this-2core-hybrid.json")?)?;
//! let plan = Plan::parse(r#"
//! [[partition]]
//! name = "fastpath"
//! kind = "dedicated"
//! cpus = 1                # placed automatically: CPU 0 is the default housekeeping core
//! memory = "64MiB"
//! command = ["spin"]
//! "#).unwrap();
//! let alloc = allocate(&plan, &host).unwrap();
//! assert_eq!(alloc.partitions[0].cpus.to_string(), "1");
//! assert_eq!(alloc.housekeeping.to_string(), "0");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(test)]
mod tests;

use crate::host::Host;
use crate::plan::{Cidr, CpuRequest, IrqRef, Kind, Partition, Plan, Problem, Sched};
use crate::units::{format_bytes, format_bytes_exact};
use crate::CpuSet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The smallest default host memory reserve.
pub const MIN_RESERVE: u64 = 256 << 20;

/// A plan resolved against a host: who gets which CPUs, memory, pages and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// CPUs left to Linux.
    pub housekeeping: CpuSet,
    /// One entry per partition, in plan order.
    pub partitions: Vec<Placed>,
    /// One row per online CPU: who uses it.
    pub cpus: Vec<CpuUse>,
    /// Memory accounting.
    pub memory: MemoryBudget,
    /// Huge pages needed per page size.
    pub hugepages: Vec<HugePageNeed>,
    /// Networks with their resolved gateway.
    pub networks: Vec<PlacedNetwork>,
    /// Things that work but cost something.
    pub warnings: Vec<Problem>,
}

/// A partition with its resources resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// Partition name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Its CPUs.
    pub cpus: CpuSet,
    /// Whether carve chose them (the plan gave a count).
    pub auto_placed: bool,
    /// NUMA nodes of its CPUs.
    pub nodes: Vec<usize>,
    /// Memory budget in bytes.
    pub memory: u64,
    /// Huge pages: (page size in bytes, count).
    pub hugepages: Option<(u64, u64)>,
    /// Scheduling policy ("other" when not given).
    pub sched: String,
    /// VM only: vCPUs.
    pub vcpus: Option<u32>,
    /// IRQ numbers routed to its CPUs.
    pub irqs: Vec<u32>,
    /// Network attachment with the resolved address.
    pub network: Option<PlacedAttachment>,
}

/// A network attachment with its address resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedAttachment {
    /// The bridge (network name).
    pub bridge: String,
    /// The partition's address.
    pub address: Ipv4Addr,
    /// Its prefix length (the subnet's).
    pub prefix: u8,
    /// The bridge's address (the partition's default route).
    pub gateway: Ipv4Addr,
    /// The network namespace holding the bridge, if any.
    pub namespace: Option<String>,
}

/// A network with its gateway resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedNetwork {
    /// Name (the bridge's interface name).
    pub name: String,
    /// The subnet's network address.
    pub subnet: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The bridge's address.
    pub gateway: Ipv4Addr,
    /// Namespace holding the bridge, if any.
    pub namespace: Option<String>,
}

/// What one CPU is used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUse {
    /// CPU number.
    pub cpu: usize,
    /// Its core id, when known.
    pub core: Option<usize>,
    /// Its NUMA node, when known.
    pub node: Option<usize>,
    /// Housekeeping CPU.
    pub housekeeping: bool,
    /// Partitions on it, by name.
    pub partitions: Vec<String>,
    /// Kept idle as the SMT sibling of this dedicated partition's CPU.
    pub sibling_of: Option<String>,
}

/// Memory accounting of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBudget {
    /// Host memory.
    pub total: u64,
    /// Kept for the host.
    pub reserve: u64,
    /// Sum of partition budgets.
    pub planned: u64,
}

/// Huge pages of one size the plan needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugePageNeed {
    /// Page size in bytes.
    pub size: u64,
    /// Pages the plan uses.
    pub needed: u64,
    /// Free now on the host.
    pub free: u64,
    /// Pages carve must add to the pool.
    pub to_reserve: u64,
}

/// Whether a partition name is valid: 1-12 of a-z, 0-9, '-', starting with a letter, not
/// ending with '-'. Twelve leaves room for carve's interface prefixes within the 15-byte limit.
pub fn valid_partition_name(name: &str) -> bool {
    (1..=12).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether a network name can be a bridge interface name (1-15 bytes, no '/', ':', spaces).
pub fn valid_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The default housekeeping CPUs: the first online core the kernel did not isolate.
pub fn default_housekeeping(host: &Host) -> CpuSet {
    let isolated = host.isolated_cpus();
    let online = host.online_cpus();
    let first = online
        .iter()
        .find(|c| !isolated.contains(*c))
        .or_else(|| online.iter().next());
    first
        .map(|c| host.siblings(c).intersection(&online))
        .unwrap_or_default()
}

/// The default host memory reserve: 1/16 of the host's memory, at least [`MIN_RESERVE`].
pub fn default_reserve(host: &Host) -> u64 {
    (host.memory_total() / 16).max(MIN_RESERVE)
}

/// Resolves `plan` against `host`: the allocation, or every problem found.
pub fn allocate(plan: &Plan, host: &Host) -> Result<Allocation, Vec<Problem>> {
    let mut a = Allocator {
        plan,
        host,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let result = a.run();
    if a.problems.is_empty() {
        let mut alloc = result;
        alloc.warnings = a.warnings;
        Ok(alloc)
    } else {
        let mut ps = a.problems;
        ps.sort_by_key(|p| p.location);
        ps.dedup();
        Err(ps)
    }
}

struct Allocator<'a> {
    plan: &'a Plan,
    host: &'a Host,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

/// Fields that only some kinds take: (field, kinds, is it set on this partition).
fn kind_fields(p: &Partition) -> Vec<(&'static str, &'static [Kind], bool)> {
    use Kind::*;
    vec![
        ("irqs", &[Dedicated], !p.irqs.is_empty()),
        ("allow_smt_sharing", &[Dedicated], p.allow_smt_sharing),
        ("command", &[Dedicated, Container], p.command.is_some()),
        ("env", &[Dedicated, Container], !p.env.is_empty()),
        ("rlimits", &[Dedicated, Container], !p.rlimits.is_empty()),
        ("rootfs", &[Container], p.rootfs.is_some()),
        ("bundle", &[Container], p.bundle.is_some()),
        ("init", &[Container], p.init),
        ("kernel", &[Vm], p.kernel.is_some()),
        ("initrd", &[Vm], p.initrd.is_some()),
        ("disks", &[Vm], !p.disks.0.is_empty()),
        ("append", &[Vm], p.append.is_some()),
        ("vcpus", &[Vm], p.vcpus.is_some()),
        ("devices", &[Vm], !p.devices.is_empty()),
        ("oversubscribe", &[Vm], p.oversubscribe),
        ("network", &[Container, Vm], p.network.is_some()),
    ]
}

impl Allocator<'_> {
    fn at(&mut self, i: usize, field: &str, msg: impl Into<String>) {
        let p = self.plan.problem_at(i, field, msg);
        self.problems.push(p);
    }

    fn warn_at(&mut self, i: usize, field: &str, msg: impl Into<String>) {
        let p = self.plan.problem_at(i, field, msg);
        self.warnings.push(p);
    }

    fn at_path(&mut self, path: &str, msg: impl Into<String>) {
        let p = self.plan.problem_at_path(path, msg);
        self.problems.push(p);
    }

    fn line_of(&self, i: usize) -> String {
        self.plan
            .source
            .locate(&format!("partition[{i}]"))
            .map(|l| format!(" (line {})", l.line))
            .unwrap_or_default()
    }

    fn run(&mut self) -> Allocation {
        self.check_names();
        self.check_fields();
        let housekeeping = self.housekeeping();
        let mut cpus = self.explicit_cpus();
        // Dedicated exclusivity and the SMT rule, on explicit CPUs.
        self.check_exclusive(&cpus, &housekeeping);
        let auto = self.auto_place(&mut cpus, &housekeeping);
        self.check_vcpus(&cpus);
        let (memory, hugepages, page_plan) = self.check_memory();
        self.check_irqs();
        let (networks, attachments) = self.check_networks();
        self.warn_non_blocking(&cpus, &housekeeping);
        let rows = self.cpu_table(&cpus, &housekeeping);
        let partitions = self.placed(&cpus, &auto, &page_plan, &attachments);
        Allocation {
            housekeeping,
            partitions,
            cpus: rows,
            memory,
            hugepages,
            networks,
            warnings: Vec::new(),
        }
    }

    /// The housekeeping CPUs: the plan's list (each checked) or the host's default.
    fn housekeeping(&mut self) -> CpuSet {
        let plan = self.plan;
        let host = self.host;
        let online = host.online_cpus();
        let present = host.present_cpus();
        let housekeeping = match &plan.host.housekeeping {
            Some(list) => {
                let mut seen = BTreeSet::new();
                for (j, &c) in list.cpus.iter().enumerate() {
                    let field = if list.written_as_list {
                        format!("host.housekeeping[{j}]")
                    } else {
                        "host.housekeeping".to_string()
                    };
                    if !seen.insert(c) {
                        self.at_path(&field, format!("CPU {c} is listed twice"));
                    } else if let Some(why) = cpu_unusable(c, &present, &online) {
                        self.at_path(&field, why);
                    }
                }
                list.set().intersection(&online)
            }
            None => default_housekeeping(host),
        };
        if housekeeping.is_empty() {
            self.at_path(
                "host.housekeeping",
                "no housekeeping CPU remains: at least one online CPU must stay with Linux",
            );
        }

        housekeeping
    }

    /// Each partition's explicitly listed CPUs (the usable ones; the rest are reported).
    fn explicit_cpus(&mut self) -> Vec<Option<CpuSet>> {
        let plan = self.plan;
        let host = self.host;
        let online = host.online_cpus();
        let present = host.present_cpus();
        let n = plan.partitions.len();
        let mut cpus: Vec<Option<CpuSet>> = vec![None; n];
        for (i, p) in plan.partitions.iter().enumerate() {
            let Some(req) = &p.cpus else { continue };
            let Some(set) = req.explicit() else { continue };
            if let CpuRequest::List(l) = req {
                let mut seen = BTreeSet::new();
                for (j, c) in l.iter().enumerate() {
                    if !seen.insert(*c) {
                        self.at(i, &format!("cpus[{j}]"), format!("CPU {c} is listed twice"));
                    }
                }
            }
            let mut ok = CpuSet::new();
            for c in set.iter() {
                if let Some(why) = cpu_unusable(c, &present, &online) {
                    let field = cpu_field(req, c);
                    self.at(i, &field, why);
                } else {
                    ok.insert(c);
                }
            }
            cpus[i] = Some(ok);
        }

        cpus
    }

    /// Automatic placement of partitions given as counts: dedicated ones first, then shared ones.
    /// Returns which partitions were placed automatically.
    fn auto_place(&mut self, cpus: &mut [Option<CpuSet>], housekeeping: &CpuSet) -> Vec<bool> {
        let plan = self.plan;
        let n = plan.partitions.len();
        let mut auto = vec![false; n];
        for pass in [true, false] {
            for (i, p) in plan.partitions.iter().enumerate() {
                if (p.kind == Kind::Dedicated) != pass || cpus[i].is_some() {
                    continue;
                }
                let count = match (&p.cpus, p.kind, p.vcpus) {
                    (Some(CpuRequest::Count(c)), _, _) => *c,
                    (None, Kind::Vm, Some(v)) => v as usize,
                    (None, Kind::Vm, None) => 1,
                    _ => continue, // missing cpus: reported by check_fields
                };
                auto[i] = true;
                match self.place(i, count, cpus, housekeeping) {
                    Some(set) => cpus[i] = Some(set),
                    None => cpus[i] = Some(CpuSet::new()),
                }
            }
        }

        auto
    }

    /// A VM's vCPU count against its CPUs.
    fn check_vcpus(&mut self, cpus: &[Option<CpuSet>]) {
        let plan = self.plan;
        for (i, p) in plan.partitions.iter().enumerate() {
            if p.kind != Kind::Vm {
                continue;
            }
            let have = cpus[i].as_ref().map_or(0, CpuSet::len);
            if let Some(v) = p.vcpus {
                if v == 0 {
                    self.at(i, "vcpus", "a vm needs at least 1 vCPU");
                } else if v as usize > have && have > 0 && !p.oversubscribe {
                    self.at(
                        i,
                        "vcpus",
                        format!(
                            "{v} vCPUs on {have} CPU(s): each vCPU needs its own CPU unless the partition sets oversubscribe = true"
                        ),
                    );
                }
            }
        }
    }

    /// Warnings that do not block: TCG fallback, fixed IRQs on dedicated CPUs, RT on housekeeping.
    fn warn_non_blocking(&mut self, cpus: &[Option<CpuSet>], housekeeping: &CpuSet) {
        let plan = self.plan;
        let host = self.host;
        for (i, p) in plan.partitions.iter().enumerate() {
            let set = cpus[i].clone().unwrap_or_default();
            if p.kind == Kind::Vm && !host.kvm_usable() {
                self.warn_at(
                    i,
                    "kind",
                    format!(
                        "KVM is not usable on this host ({}): this VM runs with TCG fallback, much slower",
                        host.virt.kvm_module.as_deref().unwrap_or("no /dev/kvm")
                    ),
                );
            }
            if p.kind == Kind::Dedicated {
                for irq in host.fixed_irqs_on(&set) {
                    let on = irq.effective.as_ref().unwrap_or(&irq.affinity).clone();
                    self.warn_at(
                        i,
                        "cpus",
                        format!(
                            "IRQ {} ({}) cannot be moved ({}) and may fire on CPU {}",
                            irq.number,
                            irq.actions,
                            irq.fixed_because.as_deref().unwrap_or("fixed"),
                            on.intersection(&set)
                        ),
                    );
                }
            }
            if p.sched.is_some_and(|s| s.is_realtime())
                && p.kind != Kind::Dedicated
                && !set.intersection(housekeeping).is_empty()
            {
                self.warn_at(
                    i,
                    "sched",
                    format!(
                        "a real-time policy on housekeeping CPUs ({}) can starve the kernel threads there",
                        set.intersection(housekeeping)
                    ),
                );
            }
        }
    }

    /// Who uses each online CPU.
    fn cpu_table(&self, cpus: &[Option<CpuSet>], housekeeping: &CpuSet) -> Vec<CpuUse> {
        let plan = self.plan;
        let host = self.host;
        let mut rows = Vec::new();
        for c in host.online_cpus().iter() {
            let cpu = host.cpu(c);
            let users: Vec<String> = plan
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, _)| cpus[*i].as_ref().is_some_and(|s| s.contains(c)))
                .map(|(_, p)| p.name.clone())
                .collect();
            let sibling_of = if users.is_empty() {
                plan.partitions
                    .iter()
                    .enumerate()
                    .find(|(i, p)| {
                        p.kind == Kind::Dedicated
                            && !p.allow_smt_sharing
                            && cpus[*i].as_ref().is_some_and(|s| {
                                s.iter().any(|d| d != c && host.siblings(d).contains(c))
                            })
                    })
                    .map(|(_, p)| p.name.clone())
            } else {
                None
            };
            rows.push(CpuUse {
                cpu: c,
                core: cpu.and_then(|x| x.core),
                node: host.numa_of(c),
                housekeeping: housekeeping.contains(c),
                partitions: users,
                sibling_of,
            });
        }

        rows
    }

    /// The placed partitions, as the allocation reports them.
    fn placed(
        &self,
        cpus: &[Option<CpuSet>],
        auto: &[bool],
        page_plan: &BTreeMap<usize, (u64, u64)>,
        attachments: &BTreeMap<usize, PlacedAttachment>,
    ) -> Vec<Placed> {
        let plan = self.plan;
        let host = self.host;
        plan.partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let set = cpus[i].clone().unwrap_or_default();
                let nodes: BTreeSet<usize> = set.iter().filter_map(|c| host.numa_of(c)).collect();
                Placed {
                    name: p.name.clone(),
                    kind: p.kind,
                    auto_placed: auto[i],
                    nodes: nodes.into_iter().collect(),
                    memory: p.memory.map_or(0, |m| m.0),
                    hugepages: page_plan.get(&i).copied(),
                    sched: p.sched.unwrap_or(Sched::Other).to_string(),
                    vcpus: (p.kind == Kind::Vm).then(|| p.vcpus.unwrap_or(set.len() as u32)),
                    irqs: p
                        .irqs
                        .iter()
                        .filter_map(|r| resolve_irq(host, r).map(|q| q.number))
                        .collect(),
                    network: attachments.get(&i).cloned(),
                    cpus: set,
                }
            })
            .collect()
    }

    fn check_names(&mut self) {
        let plan = self.plan;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, p) in plan.partitions.iter().enumerate() {
            if !valid_partition_name(&p.name) {
                self.at(
                    i,
                    "name",
                    format!(
                        "{:?} is not a valid name: use 1-12 characters a-z, 0-9 and '-', starting with a letter (it names cgroups and interfaces)",
                        p.name
                    ),
                );
            } else if let Some(&first) = seen.get(p.name.as_str()) {
                let line = self.line_of(first);
                self.at(
                    i,
                    "name",
                    format!(
                        "{:?} is already the name of partition #{}{line}",
                        p.name,
                        first + 1
                    ),
                );
            } else {
                seen.insert(&p.name, i);
            }
        }
        for (name, net) in &plan.network {
            if !valid_interface_name(name) {
                self.at_path(
                    &format!("network.{name}"),
                    format!(
                        "{name:?} cannot name a bridge: use 1-15 characters a-z, A-Z, 0-9, '-', '_' or '.'"
                    ),
                );
            }
            if let Some(ns) = &net.namespace {
                if ns.is_empty()
                    || ns.len() > 64
                    || ns == "."
                    || ns == ".."
                    || !ns
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    self.at_path(
                        &format!("network.{name}.namespace"),
                        format!(
                            "{ns:?} cannot name a network namespace: use 1-64 characters a-z, A-Z, 0-9, '-', '_' or '.'"
                        ),
                    );
                }
            }
        }
    }

    fn check_fields(&mut self) {
        let plan = self.plan;
        for (i, p) in plan.partitions.iter().enumerate() {
            for (field, kinds, set) in kind_fields(p) {
                if set && !kinds.contains(&p.kind) {
                    let names: Vec<String> = kinds
                        .iter()
                        .map(|k| format!("{k:?}").to_lowercase())
                        .collect();
                    self.at(
                        i,
                        field,
                        format!(
                            "`{field}` does not apply to kind = \"{}\" (only to {})",
                            p.kind,
                            names.join(" and ")
                        ),
                    );
                }
            }
            if p.memory.is_none() {
                self.at(
                    i,
                    "memory",
                    "memory is required: every partition has a budget, e.g. memory = \"256MiB\"",
                );
            }
            if p.cpus.is_none() && p.kind != Kind::Vm {
                self.at(
                    i,
                    "cpus",
                    "cpus is required: a list such as [1] or a count such as 1",
                );
            }
            if let Some(cmd) = &p.command {
                if cmd.is_empty() || cmd[0].is_empty() {
                    self.at(
                        i,
                        "command",
                        "the command is empty: give the program and its arguments",
                    );
                }
            }
            for key in p.env.keys() {
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    self.at(
                        i,
                        &format!("env.{key}"),
                        format!("{key:?} is not an environment variable name"),
                    );
                }
            }
            self.check_kind(i, p);
        }
        self.check_devices();
    }

    /// What each kind needs: a dedicated partition's command, a container's rootfs or bundle, a
    /// VM's kernel or disk.
    fn check_kind(&mut self, i: usize, p: &Partition) {
        match p.kind {
            Kind::Dedicated => {
                if p.command.is_none() {
                    self.at(i, "command", "a dedicated partition needs a command to run");
                }
            }
            Kind::Container => {
                match (&p.rootfs, &p.bundle) {
                    (Some(_), Some(_)) => self.at(i, "bundle", "give rootfs or bundle, not both"),
                    (None, None) => self.at(
                        i,
                        "rootfs",
                        "a container needs rootfs (a directory) or bundle (an OCI bundle)",
                    ),
                    _ => {}
                }
                if p.command.is_none() && !p.init && p.bundle.is_none() {
                    self.at(
                        i,
                        "command",
                        "a container needs a command (or init = true for a system container, or a bundle)",
                    );
                }
            }
            Kind::Vm => {
                if p.kernel.is_none() && p.disks.0.is_empty() {
                    self.at(
                        i,
                        "kernel",
                        "a vm needs a kernel (with optional initrd) or a bootable disk",
                    );
                }
                if p.initrd.is_some() && p.kernel.is_none() {
                    self.at(i, "initrd", "initrd needs a kernel");
                }
                if p.append.is_some() && p.kernel.is_none() {
                    self.at(
                        i,
                        "append",
                        "append (the kernel command line) needs a kernel",
                    );
                }
            }
        }
    }

    /// PCI devices go to one VM only.
    fn check_devices(&mut self) {
        let plan = self.plan;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, p) in plan.partitions.iter().enumerate() {
            for (j, d) in p.devices.iter().enumerate() {
                if let Some(&first) = seen.get(d.0.as_str()) {
                    let other = plan.partitions[first].name.clone();
                    self.at(
                        i,
                        &format!("devices[{j}]"),
                        format!("PCI device {d} is already passed to {other:?}"),
                    );
                } else {
                    seen.insert(&d.0, i);
                }
            }
        }
    }

    /// A dedicated partition's CPUs are shared with nothing; their SMT siblings neither unless
    /// allowed.
    fn check_exclusive(&mut self, cpus: &[Option<CpuSet>], housekeeping: &CpuSet) {
        let plan = self.plan;
        let host = self.host;
        for (d, dp) in plan.partitions.iter().enumerate() {
            if dp.kind != Kind::Dedicated {
                continue;
            }
            let Some(dset) = &cpus[d] else { continue };
            let Some(req) = &dp.cpus else { continue };
            // Housekeeping.
            for c in dset.intersection(housekeeping).iter() {
                let why = if plan.host.housekeeping.is_some() {
                    "host.housekeeping"
                } else {
                    "the default housekeeping core; set host.housekeeping to choose others"
                };
                self.at(
                    d,
                    &cpu_field(req, c),
                    format!("CPU {c} is a housekeeping CPU ({why}): a dedicated partition cannot use it"),
                );
            }
            // Siblings.
            let siblings: CpuSet = dset
                .iter()
                .flat_map(|c| host.siblings(c).iter().collect::<Vec<_>>())
                .collect::<CpuSet>()
                .difference(dset);
            if !dp.allow_smt_sharing {
                for s in siblings.intersection(housekeeping).iter() {
                    let of = dset
                        .iter()
                        .find(|c| host.siblings(*c).contains(s))
                        .unwrap_or(s);
                    self.at(
                        d,
                        &cpu_field(req, of),
                        format!(
                            "CPU {of} is an SMT sibling of housekeeping CPU {s}: kernel work there shares the core; choose another core or set allow_smt_sharing = true"
                        ),
                    );
                }
            }
            // Other partitions. A CPU shared by two dedicated partitions is reported once, on
            // the later one.
            for (o, op) in plan.partitions.iter().enumerate() {
                if o == d {
                    continue;
                }
                let Some(oset) = &cpus[o] else { continue };
                let Some(oreq) = &op.cpus else { continue };
                if !(op.kind == Kind::Dedicated && o < d) {
                    let line = self.line_of(d);
                    for c in oset.intersection(dset).iter() {
                        self.at(
                            o,
                            &cpu_field(oreq, c),
                            format!(
                                "CPU {c} is dedicated to partition {:?}{line} and cannot be shared",
                                dp.name
                            ),
                        );
                    }
                }
                if !dp.allow_smt_sharing {
                    for s in oset.intersection(&siblings).iter() {
                        let of = dset
                            .iter()
                            .find(|c| host.siblings(*c).contains(s))
                            .unwrap_or(s);
                        self.at(
                            o,
                            &cpu_field(oreq, s),
                            format!(
                                "CPU {s} is an SMT sibling of CPU {of}, dedicated to partition {:?}: set allow_smt_sharing = true there to share the core",
                                dp.name
                            ),
                        );
                    }
                }
            }
        }
    }

    /// CPUs a new automatic placement may not take.
    fn taken(&self, cpus: &[Option<CpuSet>], housekeeping: &CpuSet, dedicated: bool) -> CpuSet {
        let mut taken = housekeeping.clone();
        for (i, p) in self.plan.partitions.iter().enumerate() {
            let Some(set) = &cpus[i] else { continue };
            if p.kind == Kind::Dedicated {
                taken = taken.union(set);
                if !p.allow_smt_sharing {
                    for c in set.iter() {
                        taken = taken.union(&self.host.siblings(c));
                    }
                }
            } else if dedicated {
                // A dedicated placement shares with nothing.
                taken = taken.union(set);
            }
        }
        taken
    }

    /// Places `count` CPUs for partition `i`: whole free cores first, one NUMA node, never
    /// housekeeping; a dedicated partition also keeps off cores whose siblings are in use.
    /// The cores partition `i` may take CPUs from, by NUMA node, best first: their free CPUs
    /// (whole cores only for a dedicated partition whose SMT siblings are protected).
    fn candidate_cores(
        &self,
        i: usize,
        cpus: &[Option<CpuSet>],
        housekeeping: &CpuSet,
    ) -> BTreeMap<usize, Vec<CpuSet>> {
        let host = self.host;
        let p = &self.plan.partitions[i];
        let dedicated = p.kind == Kind::Dedicated;
        let taken = self.taken(cpus, housekeeping, dedicated);
        // CPUs used by shared partitions (to spread shared partitions over idle cores first).
        let mut busy = CpuSet::new();
        for set in cpus.iter().flatten() {
            busy = busy.union(set);
        }
        let isolated = host.isolated_cpus();
        // Candidate cores: their free CPUs, grouped by node.
        let mut by_node: BTreeMap<usize, Vec<CpuSet>> = BTreeMap::new();
        for core in host.cores() {
            let free = core.difference(&taken);
            if free.is_empty() {
                continue;
            }
            // A dedicated partition with siblings protected needs the whole core free.
            if dedicated && !p.allow_smt_sharing && free.len() < core.len() {
                continue;
            }
            let node = core
                .iter()
                .next()
                .and_then(|c| host.numa_of(c))
                .unwrap_or(0);
            by_node.entry(node).or_default().push(free);
        }
        // Within a node: idle whole cores first, cores the kernel isolated first for dedicated
        // partitions, then lower CPU numbers.
        for cores in by_node.values_mut() {
            cores.sort_by_key(|c| {
                let idle = c.intersection(&busy).is_empty();
                let iso = c.is_subset(&isolated);
                (
                    !idle,
                    !(dedicated && iso),
                    std::cmp::Reverse(c.len()),
                    c.iter().next(),
                )
            });
        }
        by_node
    }

    fn place(
        &mut self,
        i: usize,
        count: usize,
        cpus: &[Option<CpuSet>],
        housekeeping: &CpuSet,
    ) -> Option<CpuSet> {
        let host = self.host;
        let p = &self.plan.partitions[i];
        let dedicated = p.kind == Kind::Dedicated;
        let by_node = self.candidate_cores(i, cpus, housekeeping);
        let capacity = |cores: &[CpuSet]| -> usize { cores.iter().map(CpuSet::len).sum() };
        // One node that fits, preferring the one with the most free CPUs.
        let best = by_node
            .iter()
            .filter(|(_, c)| capacity(c) >= count)
            .min_by_key(|(n, c)| (std::cmp::Reverse(capacity(c)), **n));
        if let Some((_, cores)) = best {
            return Some(take_cpus(cores, count));
        }
        let total: usize = by_node.values().map(|c| capacity(c)).sum();
        if total >= count {
            let all: Vec<CpuSet> = by_node.values().flatten().cloned().collect();
            let got = take_cpus(&all, count);
            let nodes: BTreeSet<usize> = got.iter().filter_map(|c| host.numa_of(c)).collect();
            self.warn_at(
                i,
                "cpus",
                format!(
                    "no single NUMA node has {count} free CPUs: placed on {got} across nodes {nodes:?}"
                ),
            );
            return Some(got);
        }
        let what = if dedicated {
            "free of housekeeping, other partitions and their SMT siblings"
        } else {
            "free of housekeeping and dedicated partitions"
        };
        let hint = if dedicated {
            ""
        } else {
            "; list cpus explicitly to share housekeeping CPUs"
        };
        self.at(
            i,
            "cpus",
            format!("cannot place {count} CPU(s): only {total} online CPU(s) are {what}{hint}"),
        );
        None
    }

    /// Memory and huge pages. Returns the budget, per-size needs, and each partition's pages.
    fn check_memory(&mut self) -> (MemoryBudget, Vec<HugePageNeed>, BTreeMap<usize, (u64, u64)>) {
        let plan = self.plan;
        let host = self.host;
        let total = host.memory_total();
        let reserve = plan
            .host
            .reserve_memory
            .map_or_else(|| default_reserve(host), |s| s.0);
        let usable = total.saturating_sub(reserve);
        let mut planned: u64 = 0;
        let mut over_reported = false;
        let mut pages: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
        for (i, p) in plan.partitions.iter().enumerate() {
            let mem = p.memory.map_or(0, |m| m.0);
            planned = planned.saturating_add(mem);
            if planned > usable && !over_reported && mem > 0 {
                over_reported = true;
                self.at(
                    i,
                    "memory",
                    format!(
                        "the partitions up to here need {} but the host has {} minus a {} reserve = {}",
                        format_bytes(planned),
                        format_bytes(total),
                        format_bytes(reserve),
                        format_bytes(usable)
                    ),
                );
            }
            if let Some(h) = p.hugepages {
                if let Some(need) = self.partition_pages(i, &h, mem) {
                    pages.insert(i, need);
                }
            }
        }
        if reserve >= total {
            self.at_path(
                "host.reserve_memory",
                format!(
                    "the reserve {} leaves nothing of the host's {}",
                    format_bytes(reserve),
                    format_bytes(total)
                ),
            );
        }
        let out = self.hugepage_needs(&pages, reserve);
        (
            MemoryBudget {
                total,
                reserve,
                planned,
            },
            out,
            pages,
        )
    }

    /// Partition `i`'s huge pages (size, count), its count from its memory when not given;
    /// `None` when the host has no pages of that size or the memory is missing (reported).
    fn partition_pages(
        &mut self,
        i: usize,
        h: &crate::plan::HugePagesRequest,
        mem: u64,
    ) -> Option<(u64, u64)> {
        let host = self.host;
        let size = h.size.0;
        let count = match h.count {
            Some(c) => c,
            None if mem > 0 => mem.div_ceil(size),
            None => return None, // memory missing: reported already
        };
        if mem > 0 && count.saturating_mul(size) > mem {
            self.at(
                i,
                "hugepages",
                format!(
                    "{count} × {} = {} of huge pages exceed the memory budget of {}",
                    format_bytes_exact(size),
                    format_bytes(count.saturating_mul(size)),
                    format_bytes(mem)
                ),
            );
        }
        if host.hugepages(size / 1024).is_none() {
            let sizes: Vec<String> = host
                .hugepages
                .iter()
                .map(|h| format_bytes_exact(h.size_kib * 1024))
                .collect();
            self.at(
                i,
                "hugepages",
                format!(
                    "the host has no {} huge pages (it supports: {})",
                    format_bytes_exact(size),
                    if sizes.is_empty() {
                        "none".to_string()
                    } else {
                        sizes.join(", ")
                    }
                ),
            );
            return None;
        }
        Some((size, count))
    }

    /// Per page size: what the plan needs, what is free, and what must be reserved (free now,
    /// or reservable from available memory above the reserve).
    fn hugepage_needs(
        &mut self,
        pages: &BTreeMap<usize, (u64, u64)>,
        reserve: u64,
    ) -> Vec<HugePageNeed> {
        let host = self.host;
        let mut needs: BTreeMap<u64, (u64, Vec<usize>)> = BTreeMap::new();
        for (&i, &(size, count)) in pages {
            let e = needs.entry(size).or_default();
            e.0 += count;
            e.1.push(i);
        }
        let mut out = Vec::new();
        for (size, (needed, users)) in needs {
            let free = host.hugepages(size / 1024).map_or(0, |h| h.free);
            let to_reserve = needed.saturating_sub(free);
            let reservable = host.memory.available.saturating_sub(reserve) / size;
            if to_reserve > reservable {
                let last = *users.last().unwrap_or(&0);
                self.at(
                    last,
                    "hugepages",
                    format!(
                        "the plan needs {needed} huge pages of {}: {free} are free and about {reservable} more can be reserved from {} available memory",
                        format_bytes_exact(size),
                        format_bytes(host.memory.available)
                    ),
                );
            } else if to_reserve > 0 && size >= 1 << 30 {
                let last = *users.last().unwrap_or(&0);
                self.warn_at(
                    last,
                    "hugepages",
                    format!(
                        "{to_reserve} pages of {} must be reserved at run time, which can fail when memory is fragmented; reserving them at boot (hugepages= on the kernel command line) is safer",
                        format_bytes_exact(size)
                    ),
                );
            }
            out.push(HugePageNeed {
                size,
                needed,
                free,
                to_reserve,
            });
        }
        out
    }

    fn check_irqs(&mut self) {
        let plan = self.plan;
        let host = self.host;
        let mut owner: BTreeMap<u32, usize> = BTreeMap::new();
        for (i, p) in plan.partitions.iter().enumerate() {
            for (j, r) in p.irqs.iter().enumerate() {
                let field = format!("irqs[{j}]");
                match resolve_irq(host, r) {
                    None => {
                        let known: Vec<String> = host
                            .irqs
                            .iter()
                            .filter(|q| q.changeable)
                            .take(8)
                            .map(|q| format!("{} {}", q.number, q.actions))
                            .collect();
                        self.at(
                            i,
                            &field,
                            format!(
                                "{r} is not a device IRQ of this host (movable ones: {})",
                                if known.is_empty() {
                                    "none".into()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        );
                    }
                    Some(q) if !q.changeable => self.at(
                        i,
                        &field,
                        format!(
                            "IRQ {} ({}) cannot be routed: its affinity is fixed ({})",
                            q.number,
                            q.actions,
                            q.fixed_because.as_deref().unwrap_or("not changeable")
                        ),
                    ),
                    Some(q) => {
                        if let Some(&first) = owner.get(&q.number) {
                            let other = plan.partitions[first].name.clone();
                            self.at(
                                i,
                                &field,
                                format!(
                                    "IRQ {} is already routed to partition {other:?}",
                                    q.number
                                ),
                            );
                        } else {
                            owner.insert(q.number, i);
                        }
                    }
                }
            }
        }
    }

    fn check_networks(&mut self) -> (Vec<PlacedNetwork>, BTreeMap<usize, PlacedAttachment>) {
        let (nets, gateways) = self.check_subnets();
        // Explicit addresses first, then automatic ones.
        let mut used = BTreeMap::new();
        let mut out = BTreeMap::new();
        let pending = self.explicit_addresses(&gateways, &mut used, &mut out);
        self.auto_addresses(pending, &gateways, &mut used, &mut out);
        (nets, out)
    }

    /// Each network's subnet (host bits, size, overlaps) and gateway.
    fn check_subnets(&mut self) -> (Vec<PlacedNetwork>, BTreeMap<String, Ipv4Addr>) {
        let plan = self.plan;
        let mut nets = Vec::new();
        let mut gateways = BTreeMap::new();
        let mut subnets: Vec<(&str, Cidr)> = Vec::new();
        for (name, net) in &plan.network {
            let path = format!("network.{name}.subnet");
            let s = net.subnet;
            let mut ok = true;
            if s.addr != s.network() {
                ok = false;
                self.at_path(
                    &path,
                    format!(
                        "{s} has host bits set: the subnet is {}/{}",
                        s.network(),
                        s.prefix
                    ),
                );
            } else if s.prefix > 30 {
                ok = false;
                self.at_path(
                    &path,
                    format!(
                        "/{} leaves no room for a bridge and partitions: use /30 or shorter",
                        s.prefix
                    ),
                );
            }
            for (other, o) in &subnets {
                if o.contains(s.network()) || s.contains(o.network()) {
                    self.at_path(&path, format!("{s} overlaps network {other:?} ({o})"));
                }
            }
            subnets.push((name, s));
            let gateway = net
                .gateway
                .unwrap_or_else(|| Ipv4Addr::from(u32::from(s.network()) + 1));
            if ok && net.gateway.is_some() && !host_address(&s, gateway) {
                self.at_path(
                    &format!("network.{name}.gateway"),
                    format!("{gateway} is not a host address of {s}"),
                );
            }
            gateways.insert(name.clone(), gateway);
            nets.push(PlacedNetwork {
                name: name.clone(),
                subnet: s.network(),
                prefix: s.prefix,
                gateway,
                namespace: net.namespace.clone(),
            });
        }
        (nets, gateways)
    }

    /// Places the partitions with an explicit address; returns those that want one chosen.
    fn explicit_addresses(
        &mut self,
        gateways: &BTreeMap<String, Ipv4Addr>,
        used: &mut BTreeMap<(String, Ipv4Addr), usize>,
        out: &mut BTreeMap<usize, PlacedAttachment>,
    ) -> Vec<usize> {
        let plan = self.plan;
        let mut pending = Vec::new();
        for (i, p) in plan.partitions.iter().enumerate() {
            let Some(att) = &p.network else { continue };
            let Some(net) = plan.network.get(&att.bridge) else {
                let defined: Vec<&str> = plan.network.keys().map(String::as_str).collect();
                self.at(
                    i,
                    "network.bridge",
                    format!(
                        "network {:?} is not defined{} (defined: {})",
                        att.bridge,
                        crate::plan::parse_suggest(&att.bridge, &defined),
                        if defined.is_empty() {
                            "none; add a [network.NAME] table".to_string()
                        } else {
                            defined.join(", ")
                        }
                    ),
                );
                continue;
            };
            let s = net.subnet;
            let gateway = gateways[&att.bridge];
            match att.address {
                Some(addr) => {
                    let problem = address_problem(addr, s, gateway, &att.bridge);
                    if let Some(msg) = problem {
                        self.at(i, "network.address", msg);
                        continue;
                    }
                    let key = (att.bridge.clone(), addr.addr);
                    if let Some(&first) = used.get(&key) {
                        let other = plan.partitions[first].name.clone();
                        self.at(
                            i,
                            "network.address",
                            format!(
                                "{} is already the address of partition {other:?}",
                                addr.addr
                            ),
                        );
                        continue;
                    }
                    used.insert(key, i);
                    out.insert(
                        i,
                        PlacedAttachment {
                            bridge: att.bridge.clone(),
                            address: addr.addr,
                            prefix: s.prefix,
                            gateway,
                            namespace: net.namespace.clone(),
                        },
                    );
                }
                None => pending.push(i),
            }
        }
        pending
    }

    /// Gives each of `pending` the first free host address of its network.
    fn auto_addresses(
        &mut self,
        pending: Vec<usize>,
        gateways: &BTreeMap<String, Ipv4Addr>,
        used: &mut BTreeMap<(String, Ipv4Addr), usize>,
        out: &mut BTreeMap<usize, PlacedAttachment>,
    ) {
        let plan = self.plan;
        for i in pending {
            let Some(att) = &plan.partitions[i].network else {
                continue;
            };
            let net = &plan.network[&att.bridge];
            let s = net.subnet;
            let gateway = gateways[&att.bridge];
            let first = u32::from(s.network()) + 1;
            let last = u32::from(s.broadcast()).saturating_sub(1);
            let free = (first..=last)
                .map(Ipv4Addr::from)
                .find(|a| *a != gateway && !used.contains_key(&(att.bridge.clone(), *a)));
            match free {
                Some(a) => {
                    used.insert((att.bridge.clone(), a), i);
                    out.insert(
                        i,
                        PlacedAttachment {
                            bridge: att.bridge.clone(),
                            address: a,
                            prefix: s.prefix,
                            gateway,
                            namespace: net.namespace.clone(),
                        },
                    );
                }
                None => self.at(
                    i,
                    "network",
                    format!("network {:?} ({s}) has no free address left", att.bridge),
                ),
            }
        }
    }
}

/// The first `count` CPUs of `cores`, in order.
fn take_cpus(cores: &[CpuSet], count: usize) -> CpuSet {
    let mut got = CpuSet::new();
    for core in cores {
        for c in core.iter() {
            if got.len() == count {
                return got;
            }
            got.insert(c);
        }
        if got.len() == count {
            break;
        }
    }
    got
}

/// Why `addr` cannot be a partition's address on `bridge` (subnet `s`, bridge address `gateway`).
fn address_problem(addr: Cidr, s: Cidr, gateway: Ipv4Addr, bridge: &str) -> Option<String> {
    if !s.contains(addr.addr) {
        Some(format!(
            "{} is outside network {:?} ({s})",
            addr.addr, bridge
        ))
    } else if addr.prefix != s.prefix {
        Some(format!(
            "the prefix /{} differs from the network's /{}",
            addr.prefix, s.prefix
        ))
    } else if addr.addr == s.network() || addr.addr == s.broadcast() {
        Some(format!(
            "{} is the network's own network or broadcast address",
            addr.addr
        ))
    } else if addr.addr == gateway {
        Some(format!(
            "{} is the bridge's address (gateway) of {:?}",
            addr.addr, bridge
        ))
    } else {
        None
    }
}

/// Why a CPU cannot be used, if it cannot.
fn cpu_unusable(c: usize, present: &CpuSet, online: &CpuSet) -> Option<String> {
    if !present.contains(c) {
        Some(format!(
            "CPU {c} does not exist (the host has CPUs {present})"
        ))
    } else if !online.contains(c) {
        Some(format!("CPU {c} is offline (online: {online})"))
    } else {
        None
    }
}

/// "cpus[j]" for a CPU written in a list, else "cpus".
fn cpu_field(req: &CpuRequest, cpu: usize) -> String {
    match req.position(cpu) {
        Some(j) => format!("cpus[{j}]"),
        None => "cpus".to_string(),
    }
}

fn resolve_irq<'h>(host: &'h Host, r: &IrqRef) -> Option<&'h crate::host::Irq> {
    host.irqs.iter().find(|q| match r {
        IrqRef::Number(n) => q.number == *n,
        IrqRef::Name(s) => q.actions.split(',').any(|a| a.trim() == s),
    })
}

fn host_address(s: &Cidr, a: Ipv4Addr) -> bool {
    s.contains(a) && a != s.network() && a != s.broadcast()
}
