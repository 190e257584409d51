//! `carve host`: the host model as a table or JSON, ending with readiness advice.

use anyhow::Context;
use carve_core::host::{read_host, Host, Known, Level, Roots};
use carve_core::units::format_bytes;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `carve host`.
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Describe the host model in this JSON file instead of this machine (for tests).
    #[arg(long, hide = true, value_name = "FILE")]
    pub host_fixture: Option<PathBuf>,
}

/// Runs `carve host`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let host = load_host(args.host_fixture.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&host.report())?);
    } else {
        print!("{}", table(&host));
    }
    Ok(())
}

/// This machine's host model, or the one in a JSON fixture file.
pub fn load_host(fixture: Option<&Path>) -> anyhow::Result<Host> {
    match fixture {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read host fixture {}", path.display()))?;
            Host::from_json(&text)
                .with_context(|| format!("host fixture {} is not a host model", path.display()))
        }
        None => Ok(read_host(&Roots::default())?),
    }
}

fn or_dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".into())
}

/// The readable report.
pub fn table(h: &Host) -> String {
    let mut o = String::new();
    cpus(&mut o, h);
    memory(&mut o, h);
    irqs(&mut o, h);
    kernel(&mut o, h);
    cgroups(&mut o, h);
    virt(&mut o, h);
    readiness(&mut o, h);
    o
}

/// The CPUs: topology, siblings and caches.
fn cpus(o: &mut String, h: &Host) {
    let online = h.online_cpus();
    let packages: std::collections::BTreeSet<_> = h.cpus.iter().filter_map(|c| c.package).collect();
    let smt = match h.smt_active {
        Some(true) => "SMT on",
        Some(false) => "SMT off",
        None => "SMT unknown",
    };
    let _ = writeln!(
        o,
        "CPUs: {} online ({online}) of {} present, {} core(s), {} package(s), {smt}",
        online.len(),
        h.cpus.len(),
        h.cores().len(),
        packages.len().max(1)
    );
    let _ = writeln!(
        o,
        "  {:<5} {:<7} {:<5} {:<5} {:<5} {:<9} {:<9} L3",
        "cpu", "online", "core", "pkg", "node", "siblings", "L2"
    );
    for c in &h.cpus {
        let cache = |l| or_dash(h.cache_group(c.id, l).map(|g| g.cpus.to_string()));
        let _ = writeln!(
            o,
            "  {:<5} {:<7} {:<5} {:<5} {:<5} {:<9} {:<9} {}",
            c.id,
            if c.online { "yes" } else { "no" },
            or_dash(c.core.map(|v| v.to_string())),
            or_dash(c.package.map(|v| v.to_string())),
            or_dash(c.node.map(|v| v.to_string())),
            c.siblings.to_string(),
            cache(2),
            cache(3)
        );
    }
}

/// Memory per node and huge pages.
fn memory(o: &mut String, h: &Host) {
    let _ = writeln!(
        o,
        "\nMemory: {} total, {} available",
        format_bytes(h.memory.total),
        format_bytes(h.memory.available)
    );
    for n in &h.nodes {
        let _ = writeln!(
            o,
            "  node {}: CPUs {}, {} total, {} free",
            n.id,
            n.cpus,
            format_bytes(n.memory_total),
            format_bytes(n.memory_free)
        );
    }
    let _ = writeln!(o, "Huge pages:");
    if h.hugepages.is_empty() {
        let _ = writeln!(o, "  none supported");
    }
    for p in &h.hugepages {
        let nodes: Vec<String> = p
            .per_node
            .iter()
            .map(|n| format!("node {}: {}/{}", n.node, n.free, n.total))
            .collect();
        let _ = writeln!(
            o,
            "  {:>8}: {} total, {} free, {} reserved ({} free/total)",
            format_bytes(p.size_kib * 1024),
            p.total,
            p.free,
            p.reserved,
            if nodes.is_empty() {
                "no per-node counts".to_string()
            } else {
                nodes.join(", ")
            }
        );
    }
}

/// Device IRQs and whether they can be moved.
fn irqs(o: &mut String, h: &Host) {
    let fixed = h.irqs.iter().filter(|i| !i.changeable).count();
    let _ = writeln!(
        o,
        "\nIRQs: {} device IRQs, {fixed} cannot be moved",
        h.irqs.len()
    );
    let _ = writeln!(
        o,
        "  {:<5} {:<22} {:<22} {:<9} {:<9} {:<9} movable",
        "irq", "chip", "actions", "affinity", "effective", "count"
    );
    for i in &h.irqs {
        let movable = match &i.fixed_because {
            None => "yes".to_string(),
            Some(why) => format!("no: {why}"),
        };
        let _ = writeln!(
            o,
            "  {:<5} {:<22} {:<22} {:<9} {:<9} {:<9} {movable}",
            i.number,
            i.chip,
            i.actions,
            i.affinity.to_string(),
            or_dash(i.effective.as_ref().map(|e| e.to_string())),
            i.count
        );
    }
}

/// The kernel's isolation and real-time settings.
fn kernel(o: &mut String, h: &Host) {
    let k = &h.kernel;
    let no_hz = match k.no_hz_full {
        Known::Yes => "yes",
        Known::No => "no",
        Known::Unknown => "unknown",
    };
    let _ = writeln!(
        o,
        "\nKernel: {}, HZ {}, NO_HZ_FULL {no_hz} (config: {})",
        k.release,
        or_dash(k.hz.map(|v| v.to_string())),
        k.config_source.as_deref().unwrap_or("not found")
    );
    let _ = writeln!(
        o,
        "  isolcpus {}, nohz_full {}, rcu_nocbs {}, irqaffinity {}",
        or_dash(k.isolcpus.as_ref().map(|v| v.raw.clone())),
        or_dash(k.nohz_full.as_ref().map(|v| v.raw.clone())),
        or_dash(k.rcu_nocbs.as_ref().map(|v| if v.raw.is_empty() {
            "all".into()
        } else {
            v.raw.clone()
        })),
        or_dash(k.irqaffinity.as_ref().map(|v| v.raw.clone())),
    );
    let _ = writeln!(
        o,
        "  sched_rt_runtime_us {} of sched_rt_period_us {}",
        or_dash(k.sched_rt_runtime_us.map(|v| v.to_string())),
        or_dash(k.sched_rt_period_us.map(|v| v.to_string()))
    );
}

/// The cgroup layout and hierarchies.
fn cgroups(o: &mut String, h: &Host) {
    let _ = writeln!(o, "\ncgroups: {}", h.cgroups.layout);
    for hi in &h.cgroups.hierarchies {
        let _ = writeln!(
            o,
            "  v{} {:<28} {}",
            hi.version,
            hi.mount.display(),
            if hi.controllers.is_empty() {
                "(no controllers)".to_string()
            } else {
                hi.controllers.join(" ")
            }
        );
    }
    if !h.cgroups.unmounted.is_empty() {
        let _ = writeln!(o, "  not mounted: {}", h.cgroups.unmounted.join(" "));
    }
}

/// KVM and QEMU.
fn virt(o: &mut String, h: &Host) {
    let v = &h.virt;
    let _ = writeln!(o, "\nVirtualization:");
    let _ = writeln!(
        o,
        "  /dev/kvm {}, backed by {} -> {}",
        if v.kvm_device { "present" } else { "absent" },
        v.kvm_module.as_deref().unwrap_or("no KVM module"),
        if h.kvm_usable() {
            "KVM usable"
        } else {
            "KVM unusable for Linux guests: TCG fallback"
        }
    );
    let _ = writeln!(
        o,
        "  qemu-system-x86_64 {}",
        v.qemu
            .as_ref()
            .map_or("not installed".to_string(), |p| p.display().to_string())
    );
}

/// The readiness advice.
fn readiness(o: &mut String, h: &Host) {
    let _ = writeln!(o, "\nReadiness:");
    for a in h.advice() {
        let mark = match a.level {
            Level::Ok => "ok   ",
            Level::Info => "info ",
            Level::Warn => "warn ",
            Level::Block => "BLOCK",
        };
        let _ = writeln!(o, "  {mark} [{}] {}", a.topic, a.text);
    }
}
