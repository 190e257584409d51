//! Readiness advice: what this host can and cannot give each tier, derived from the model.

use super::{CgroupLayout, Host, Known};
use crate::units::format_bytes;
use serde::{Deserialize, Serialize};

/// How much an advice item matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The host gives this fully.
    Ok,
    /// Worth knowing; nothing is lost.
    Info,
    /// A promise is weaker on this host (more noise, slower VMs...).
    Warn,
    /// A tier cannot work as is.
    Block,
}

/// One piece of readiness advice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advice {
    /// How much it matters.
    pub level: Level,
    /// Which tier or topic: "dedicated", "vm", "container", "host".
    pub topic: String,
    /// The advice, one sentence.
    pub text: String,
}

impl Host {
    /// What this host can and cannot give each tier, most important first.
    pub fn advice(&self) -> Vec<Advice> {
        let mut out = Vec::new();
        self.advise_cores(&mut out);
        self.advise_tick(&mut out);
        self.advise_rt_throttling(&mut out);
        self.advise_fixed_irqs(&mut out);
        self.advise_hugepages(&mut out);
        self.advise_cgroups(&mut out);
        self.advise_virtualization(&mut out);
        self.advise_memory(&mut out);
        out.sort_by_key(|a| std::cmp::Reverse(a.level));
        out
    }

    /// Advice on cores and SMT.
    fn advise_cores(&self, out: &mut Vec<Advice>) {
        let online = self.online_cpus();
        let cores = self.cores();
        match cores.len() {
            0 | 1 => push(
                out,
                Level::Block,
                "dedicated",
                format!(
                    "only {} core online: no core can be dedicated, one must stay for housekeeping",
                    cores.len()
                ),
            ),
            n => push(
                out,
                Level::Ok,
                "dedicated",
                format!(
                    "{n} cores ({} CPUs online): up to {} can be dedicated, at least one stays for housekeeping",
                    online.len(),
                    n - 1
                ),
            ),
        }
        if cores.iter().any(|c| c.len() > 1) {
            push(
                out,
                Level::Info,
                "dedicated",
                "SMT is on: a dedicated CPU's sibling shares its core and caches; carve keeps siblings \
                 out of other partitions unless a plan sets allow_smt_sharing"
                    .into(),
            );
        }
    }

    /// Advice on the scheduler tick.
    fn advise_tick(&self, out: &mut Vec<Advice>) {
        let hz = self.kernel.hz;
        let hz_text = hz.map_or("periodic".to_string(), |h| format!("{h} Hz"));
        let per_s = hz.map_or("one per tick".to_string(), |h| format!("about {h}"));
        match self.kernel.no_hz_full {
            Known::No => push(
                out,
                Level::Warn,
                "dedicated",
                format!(
                    "kernel lacks NO_HZ_FULL: the {hz_text} tick stays: expect {per_s} interruptions/s on a dedicated core"
                ),
            ),
            Known::Unknown => push(
                out,
                Level::Warn,
                "dedicated",
                format!(
                    "kernel config not found (no /proc/config.gz or /boot/config-{}): cannot tell whether NO_HZ_FULL exists; assume the {hz_text} tick stays",
                    self.kernel.release
                ),
            ),
            Known::Yes => match &self.kernel.nohz_full {
                Some(n) if !n.cpus.is_empty() => push(
                out,
                    Level::Ok,
                    "dedicated",
                    format!(
                        "nohz_full={}: the tick stops on CPUs {} while they run a single task",
                        n.raw, n.cpus
                    ),
                ),
                _ => push(
                out,
                    Level::Info,
                    "dedicated",
                    format!(
                        "kernel has NO_HZ_FULL but nohz_full= is not on the command line: boot with nohz_full=<dedicated CPUs> to stop the tick there; until then expect {per_s} interruptions/s"
                    ),
                ),
            },
        }
        if let Some(iso) = &self.kernel.isolcpus {
            push(
                out,
                Level::Ok,
                "dedicated",
                format!(
                    "isolcpus={}: CPUs {} are kept out of scheduler load balancing; plan dedicated partitions there",
                    iso.raw, iso.cpus
                ),
            );
        }
    }

    /// Advice on RT throttling.
    fn advise_rt_throttling(&self, out: &mut Vec<Advice>) {
        match (
            self.kernel.sched_rt_runtime_us,
            self.kernel.sched_rt_period_us,
        ) {
            (Some(-1), _) => push(
                out,
                Level::Ok,
                "dedicated",
                "sched_rt_runtime_us=-1: RT throttling is off, SCHED_FIFO tasks keep their CPU"
                    .into(),
            ),
            (Some(rt), period) => {
                let period = period.unwrap_or(1_000_000);
                let lost_ms = (period - rt).max(0) as f64 / 1000.0;
                let per = if period == 1_000_000 {
                    "every second".to_string()
                } else {
                    format!("every {} ms", period as f64 / 1000.0)
                };
                push(
                out,
                    Level::Warn,
                    "dedicated",
                    format!(
                        "sched_rt_runtime_us={rt}: SCHED_FIFO tasks lose {lost_ms} ms {per} unless carve lifts it"
                    ),
                );
            }
            (None, _) => {}
        }
    }

    /// Advice on IRQs that cannot be moved.
    fn advise_fixed_irqs(&self, out: &mut Vec<Advice>) {
        let fixed: Vec<_> = self.irqs.iter().filter(|i| !i.changeable).collect();
        if !fixed.is_empty() {
            let list: Vec<String> = fixed
                .iter()
                .take(4)
                .map(|i| {
                    let on = i.effective.as_ref().unwrap_or(&i.affinity);
                    format!("{} {} on {on}", i.number, i.actions)
                })
                .collect();
            let more = if fixed.len() > 4 { ", ..." } else { "" };
            let managed_irq = self
                .kernel
                .isolcpus
                .as_ref()
                .is_some_and(|i| i.flags.iter().any(|f| f == "managed_irq"));
            let tail = if managed_irq {
                "isolcpus=managed_irq keeps managed ones off isolated CPUs"
            } else {
                "they may fire on a dedicated core unless it is outside their affinity (isolcpus=managed_irq helps)"
            };
            push(
                out,
                Level::Info,
                "dedicated",
                format!(
                    "{} IRQ(s) cannot be moved ({}{more}): {tail}",
                    fixed.len(),
                    list.join(", ")
                ),
            );
        }
    }

    /// Advice on huge pages.
    fn advise_hugepages(&self, out: &mut Vec<Advice>) {
        let sizes: Vec<String> = self
            .hugepages
            .iter()
            .map(|h| format_bytes(h.size_kib * 1024).replace(' ', ""))
            .collect();
        if sizes.is_empty() {
            push(
                out,
                Level::Warn,
                "dedicated",
                "no huge page support (no /sys/kernel/mm/hugepages): plans cannot ask for huge pages"
                    .into(),
            );
        } else if self.hugepages.iter().all(|h| h.free == 0) {
            push(
                out,
                Level::Info,
                "dedicated",
                format!(
                    "no huge pages reserved now ({} supported): carve reserves what a plan asks for",
                    sizes.join(", ")
                ),
            );
        }
    }

    /// Advice on cgroup controllers.
    fn advise_cgroups(&self, out: &mut Vec<Advice>) {
        let where_is = |c: &str| self.cgroup_hierarchy(c).map(|h| h.version);
        match self.cgroups.layout {
            CgroupLayout::None => push(
                out,
                Level::Block,
                "container",
                "no cgroup hierarchy mounted: no partition can be limited".into(),
            ),
            layout => {
                let mut placed = Vec::new();
                let mut missing = Vec::new();
                for c in ["cpuset", "cpu", "memory", "pids", "hugetlb"] {
                    match where_is(c) {
                        Some(v) => placed.push(format!("{c} v{v}")),
                        None => missing.push(c),
                    }
                }
                push(
                    out,
                    Level::Ok,
                    "container",
                    format!("cgroups {layout}: {}", placed.join(", ")),
                );
                if !missing.is_empty() {
                    let level = if missing.contains(&"cpuset") || missing.contains(&"memory") {
                        Level::Block
                    } else {
                        Level::Warn
                    };
                    push(
                        out,
                        level,
                        "container",
                        format!("cgroup controllers not available: {}", missing.join(", ")),
                    );
                }
            }
        }
    }

    /// Advice on KVM or TCG, and QEMU.
    fn advise_virtualization(&self, out: &mut Vec<Advice>) {
        if self.kvm_usable() {
            push(
                out,
                Level::Ok,
                "vm",
                format!(
                    "KVM via {}: VMs run at hardware speed",
                    self.virt.kvm_module.as_deref().unwrap_or("?")
                ),
            );
        } else if self.virt.kvm_device {
            push(
                out,
                Level::Warn,
                "vm",
                format!(
                    "/dev/kvm is backed by {}, which cannot run unmodified guests: VMs use TCG fallback (software emulation, much slower)",
                    self.virt.kvm_module.as_deref().unwrap_or("an unknown module")
                ),
            );
        } else {
            push(
                out,
                Level::Warn,
                "vm",
                "no /dev/kvm: VMs use TCG fallback (software emulation, much slower)".into(),
            );
        }
        if self.virt.qemu.is_none() {
            push(
                out,
                Level::Block,
                "vm",
                "qemu-system-x86_64 not found on PATH: vm partitions cannot start (Debian: apt-get install qemu-system-x86)"
                    .into(),
            );
        }
    }

    /// Advice on memory and NUMA nodes.
    fn advise_memory(&self, out: &mut Vec<Advice>) {
        push(
            out,
            Level::Info,
            "host",
            format!(
                "{} of memory ({} available) on {} NUMA node(s)",
                format_bytes(self.memory.total),
                format_bytes(self.memory.available),
                self.nodes.len()
            ),
        );
    }
}

fn push(out: &mut Vec<Advice>, level: Level, topic: &str, text: String) {
    out.push(Advice {
        level,
        topic: topic.to_string(),
        text,
    });
}
