//! Reading the host model from /proc, /sys, /dev and /boot. Read-only: nothing is written, not
//! even as a probe.
//!
//! Only the online CPU list and /proc/meminfo are required; everything else degrades to "not
//! known" (`None`, empty, [`Known::Unknown`]) so the reader works in containers and on odd
//! kernels.

use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Reads the whole host model. Fails only when the online CPU list or /proc/meminfo is
/// unreadable.
pub fn read_host(roots: &Roots) -> Result<Host, HostError> {
    let cpu_dir = roots.sys.join("devices/system/cpu");
    let online = cpu_list_file(&cpu_dir.join("online"))?;
    let present = match fs::read_to_string(cpu_dir.join("present")) {
        Ok(t) => CpuSet::parse_list(&t).unwrap_or_else(|_| online.clone()),
        Err(_) => online.clone(),
    }
    .union(&online);

    let nodes_raw = read_nodes(roots);
    let mut cpus = Vec::new();
    let mut caches: Vec<Cache> = Vec::new();
    for id in present.iter() {
        let dir = cpu_dir.join(format!("cpu{id}"));
        let topo = dir.join("topology");
        let is_online = online.contains(id);
        let num = |f: &str| -> Option<usize> { read_trim(&topo.join(f))?.parse().ok() };
        let siblings = read_trim(&topo.join("thread_siblings_list"))
            .and_then(|t| CpuSet::parse_list(&t).ok())
            .unwrap_or_default();
        let node = nodes_raw
            .iter()
            .find(|(n, _)| n.cpus.contains(id))
            .map(|(n, _)| n.id);
        cpus.push(Cpu {
            id,
            online: is_online,
            core: num("core_id"),
            package: num("physical_package_id"),
            node,
            siblings,
        });
        read_caches(&dir.join("cache"), &mut caches);
    }
    caches.sort_by(|a, b| {
        (a.level, &a.kind, a.cpus.iter().next()).cmp(&(b.level, &b.kind, b.cpus.iter().next()))
    });

    let memory = read_meminfo(&roots.proc.join("meminfo"))?;
    let mut nodes: Vec<NumaNode> = nodes_raw.iter().map(|(n, _)| n.clone()).collect();
    if nodes.is_empty() {
        // A kernel without NUMA: one node holding everything.
        nodes.push(NumaNode {
            id: 0,
            cpus: present.clone(),
            memory_total: memory.total,
            memory_free: memory.available,
        });
        for c in &mut cpus {
            c.node = Some(0);
        }
    }
    let hugepages = read_hugepages(roots, &nodes_raw);
    let release = read_trim(&roots.proc.join("sys/kernel/osrelease")).unwrap_or_default();
    let kernel = read_kernel(roots, &release, &present);

    Ok(Host {
        cpus,
        caches,
        smt_active: read_trim(&cpu_dir.join("smt/active")).map(|s| s == "1"),
        nodes,
        memory,
        hugepages,
        irqs: read_irqs(roots),
        kernel,
        cgroups: read_cgroups(roots),
        virt: read_virt(roots),
    })
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn cpu_list_file(path: &Path) -> Result<CpuSet, HostError> {
    let text = fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    CpuSet::parse_list(&text).map_err(|e| HostError::Parse {
        path: path.to_path_buf(),
        text: text.clone(),
        why: e.why,
    })
}

/// Caches of one CPU: every level ≥ 2, and level 1 only when shared (SMT).
fn read_caches(dir: &Path, caches: &mut Vec<Cache>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("index") {
            continue;
        }
        let p = e.path();
        let Some(level) = read_trim(&p.join("level")).and_then(|l| l.parse::<u8>().ok()) else {
            continue;
        };
        let Some(cpus) =
            read_trim(&p.join("shared_cpu_list")).and_then(|t| CpuSet::parse_list(&t).ok())
        else {
            continue;
        };
        if level < 2 && cpus.len() < 2 {
            continue;
        }
        let kind = read_trim(&p.join("type")).unwrap_or_else(|| "Unified".into());
        let size_kib = read_trim(&p.join("size")).and_then(|s| parse_size_kib(&s));
        if !caches
            .iter()
            .any(|c| c.level == level && c.kind == kind && c.cpus == cpus)
        {
            caches.push(Cache {
                level,
                kind,
                size_kib,
                cpus,
            });
        }
    }
}

fn parse_size_kib(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(k) = s.strip_suffix('K') {
        k.parse().ok()
    } else if let Some(m) = s.strip_suffix('M') {
        m.parse::<u64>().ok().map(|m| m * 1024)
    } else {
        s.parse::<u64>().ok().map(|b| b / 1024)
    }
}

/// Nodes with their sysfs directories, sorted by id; empty on a kernel without NUMA.
fn read_nodes(roots: &Roots) -> Vec<(NumaNode, PathBuf)> {
    let dir = roots.sys.join("devices/system/node");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut nodes = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("node").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let p = e.path();
        let cpus = read_trim(&p.join("cpulist"))
            .and_then(|t| CpuSet::parse_list(&t).ok())
            .unwrap_or_default();
        let info = fs::read_to_string(p.join("meminfo")).unwrap_or_default();
        // "Node 0 MemTotal:        5335272 kB"
        let field = |key: &str| -> u64 {
            info.lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace().skip(2);
                    (w.next()? == key).then(|| w.next()?.parse::<u64>().ok())?
                })
                .unwrap_or(0)
                * 1024
        };
        nodes.push((
            NumaNode {
                id,
                cpus,
                memory_total: field("MemTotal:"),
                memory_free: field("MemFree:"),
            },
            p,
        ));
    }
    nodes.sort_by_key(|(n, _)| n.id);
    nodes
}

fn read_meminfo(path: &Path) -> Result<Memory, HostError> {
    let text = fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let field = |key: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == key).then(|| w.next()?.parse::<u64>().ok())?
        })
    };
    let total = field("MemTotal:").ok_or_else(|| HostError::Parse {
        path: path.to_path_buf(),
        text: text.lines().next().unwrap_or("").to_string(),
        why: "no MemTotal line".into(),
    })?;
    let available = field("MemAvailable:")
        .or_else(|| field("MemFree:"))
        .unwrap_or(0);
    Ok(Memory {
        total: total * 1024,
        available: available * 1024,
    })
}

fn read_hugepages(roots: &Roots, nodes: &[(NumaNode, PathBuf)]) -> Vec<HugePages> {
    let dir = roots.sys.join("kernel/mm/hugepages");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let num = |p: &Path| {
        read_trim(p)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // "hugepages-2048kB"
        let Some(size_kib) = name
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let p = e.path();
        let per_node = nodes
            .iter()
            .map(|(n, ndir)| {
                let hp = ndir.join("hugepages").join(&name);
                NodeHugePages {
                    node: n.id,
                    total: num(&hp.join("nr_hugepages")),
                    free: num(&hp.join("free_hugepages")),
                }
            })
            .collect();
        out.push(HugePages {
            size_kib,
            total: num(&p.join("nr_hugepages")),
            free: num(&p.join("free_hugepages")),
            reserved: num(&p.join("resv_hugepages")),
            surplus: num(&p.join("surplus_hugepages")),
            per_node,
        });
    }
    out.sort_by_key(|h| h.size_kib);
    out
}

/// Device IRQs: the numbered rows of /proc/interrupts, with /proc/irq/N and /sys/kernel/irq/N.
///
/// Whether the affinity can be changed is decided without writing anything:
/// 1. The kernel creates /proc/irq/N/smp_affinity with mode 0644 only when
///    `irq_can_set_affinity_usr()` holds, and 0444 for managed IRQs (kernel-spread MSI-X queue
///    vectors, e.g. virtio-blk "virtio1-req.0", nvme "nvme0q1"), per-CPU IRQs and IRQs marked
///    no-balancing. So a missing owner-write bit means "fixed"; a PCI-MSI chip then means
///    "managed", anything else "per-CPU or not balanceable".
/// 2. Kernels too old to encode this in the mode show 0644 for everything; there, queue
///    vectors of drivers known to allocate managed affinity (nvme I/O queues, virtio-blk and
///    virtio-scsi request queues) are reported as managed by their action names.
///
/// IRQ 0 (timer) and 2 (cascade) are never movable.
fn read_irqs(roots: &Roots) -> Vec<Irq> {
    let text = fs::read_to_string(roots.proc.join("interrupts")).unwrap_or_default();
    let mut irqs = Vec::new();
    for line in crate::interrupts::parse(&text) {
        let Ok(number) = line.irq.parse::<u32>() else {
            continue; // NMI, LOC, RES...: per-CPU, not routable
        };
        let count = line.per_cpu.iter().sum();
        // After the counts: "CHIP HWIRQ-TYPE ACTIONS" (the chip may contain spaces); prefer
        // /sys/kernel/irq/N which states each separately.
        let tail = &line.tail;
        let sys = roots.sys.join(format!("kernel/irq/{number}"));
        let chip = read_trim(&sys.join("chip_name"))
            .unwrap_or_else(|| tail.first().cloned().unwrap_or_default());
        let actions = read_trim(&sys.join("actions"))
            .unwrap_or_else(|| tail.get(2..).unwrap_or_default().join(" "));
        let pdir = roots.proc.join(format!("irq/{number}"));
        let affinity = read_trim(&pdir.join("smp_affinity_list"))
            .and_then(|t| CpuSet::parse_list(&t).ok())
            .unwrap_or_default();
        let effective = read_trim(&pdir.join("effective_affinity_list"))
            .and_then(|t| CpuSet::parse_list(&t).ok());
        let writable = fs::metadata(pdir.join("smp_affinity"))
            .map(|m| m.permissions().mode() & 0o200 != 0)
            .unwrap_or(false);
        let fixed_because = if number == 0 || number == 2 {
            Some("system timer or cascade".to_string())
        } else if !writable {
            if chip.contains("MSI") {
                Some("managed by the kernel".to_string())
            } else {
                Some("per-CPU or not balanceable".to_string())
            }
        } else if looks_managed(&actions) {
            Some("managed by the kernel (by driver name)".to_string())
        } else {
            None
        };
        irqs.push(Irq {
            number,
            chip,
            actions,
            affinity,
            effective,
            count,
            changeable: fixed_because.is_none(),
            fixed_because,
        });
    }
    irqs
}

/// Queue vectors of drivers that allocate managed affinity (see [`read_irqs`]).
fn looks_managed(actions: &str) -> bool {
    actions.split(',').map(str::trim).any(|a| {
        let nvme_io = a.starts_with("nvme")
            && a.rsplit_once('q')
                .is_some_and(|(_, n)| n.parse::<u32>().is_ok_and(|n| n > 0));
        let virtio_queue = a.starts_with("virtio")
            && (a.contains("-req.") || a.contains("-request."))
            && a.rsplit_once('.')
                .is_some_and(|(_, n)| n.parse::<u32>().is_ok());
        nvme_io || virtio_queue
    })
}

fn read_kernel(roots: &Roots, release: &str, present: &CpuSet) -> Kernel {
    let cmdline = read_trim(&roots.proc.join("cmdline")).unwrap_or_default();
    let mut k = Kernel {
        release: release.to_string(),
        cmdline: cmdline.clone(),
        isolcpus: None,
        nohz_full: None,
        rcu_nocbs: None,
        irqaffinity: None,
        no_hz_full: Known::Unknown,
        hz: None,
        config_source: None,
        sched_rt_runtime_us: read_trim(&roots.proc.join("sys/kernel/sched_rt_runtime_us"))
            .and_then(|s| s.parse().ok()),
        sched_rt_period_us: read_trim(&roots.proc.join("sys/kernel/sched_rt_period_us"))
            .and_then(|s| s.parse().ok()),
    };
    // Parameters after a bare "--" go to init, not the kernel.
    for word in cmdline.split_whitespace().take_while(|w| *w != "--") {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        match key {
            "isolcpus" => k.isolcpus = Some(parse_isolcpus(value, present)),
            "nohz_full" => k.nohz_full = Some(cpu_param(value, present)),
            "rcu_nocbs" => k.rcu_nocbs = Some(cpu_param(value, present)),
            "irqaffinity" => k.irqaffinity = Some(cpu_param(value, present)),
            _ => {}
        }
    }
    let config = read_config(roots, release);
    if let Some((source, text)) = config {
        k.config_source = Some(source);
        k.no_hz_full = if text.lines().any(|l| l.trim() == "CONFIG_NO_HZ_FULL=y") {
            Known::Yes
        } else {
            Known::No
        };
        k.hz = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("CONFIG_HZ="))
            .and_then(|v| v.parse().ok());
    }
    // /sys/devices/system/cpu/nohz_full exists only in kernels built with NO_HZ_FULL.
    if k.no_hz_full == Known::Unknown && roots.sys.join("devices/system/cpu/nohz_full").exists() {
        k.no_hz_full = Known::Yes;
    }
    k
}

/// The kernel config text and where it came from: /proc/config.gz, else /boot/config-RELEASE.
fn read_config(roots: &Roots, release: &str) -> Option<(String, String)> {
    let gz = roots.proc.join("config.gz");
    if let Ok(bytes) = fs::read(&gz) {
        if let Some(text) = gunzip::gunzip(&bytes).and_then(|b| String::from_utf8(b).ok()) {
            return Some(("/proc/config.gz".into(), text));
        }
    }
    if !release.is_empty() {
        let p = roots.boot.join(format!("config-{release}"));
        if let Ok(text) = fs::read_to_string(&p) {
            return Some((format!("/boot/config-{release}"), text));
        }
    }
    None
}

/// A CPU list parameter; "all" (and an empty value, as for `rcu_nocbs`) means every CPU.
fn cpu_param(raw: &str, present: &CpuSet) -> CpuList {
    let cpus = if raw.is_empty() || raw == "all" {
        present.clone()
    } else {
        parse_kernel_cpus(raw, present).unwrap_or_default()
    };
    CpuList {
        raw: raw.to_string(),
        cpus,
    }
}

/// The kernel's cpulist, which also allows "N" for the last CPU.
fn parse_kernel_cpus(raw: &str, present: &CpuSet) -> Option<CpuSet> {
    let last = present.iter().last().unwrap_or(0).to_string();
    let text = raw
        .split(',')
        .map(|p| {
            p.split('-')
                .map(|x| if x == "N" { last.as_str() } else { x })
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect::<Vec<_>>()
        .join(",");
    CpuSet::parse_list(&text).ok()
}

fn parse_isolcpus(raw: &str, present: &CpuSet) -> Isolcpus {
    // "isolcpus=nohz,domain,managed_irq,2-3": flags are words before the first list item.
    let mut flags = Vec::new();
    let mut rest = Vec::new();
    for part in raw.split(',') {
        let is_flag = part.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && part != "N";
        if rest.is_empty() && is_flag {
            flags.push(part.to_string());
        } else {
            rest.push(part);
        }
    }
    if flags.is_empty() {
        flags.push("domain".into());
    }
    Isolcpus {
        raw: raw.to_string(),
        flags,
        cpus: parse_kernel_cpus(&rest.join(","), present).unwrap_or_default(),
    }
}

/// cgroup hierarchies from /proc/self/mountinfo, controllers of cgroup2 mounts from their
/// cgroup.controllers, and enabled controllers from /proc/cgroups.
fn read_cgroups(roots: &Roots) -> Cgroups {
    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    let mut seen_devices: Vec<String> = Vec::new();
    for m in crate::mountinfo::read(&roots.proc) {
        if !m.is_cgroup_v1() && !m.is_cgroup_v2() {
            continue;
        }
        if seen_devices.contains(&m.device) {
            continue; // the same hierarchy bind-mounted again
        }
        seen_devices.push(m.device.clone());
        let (version, controllers) = if m.is_cgroup_v2() {
            let file = resolve_mount(roots, &m.mount_point).join("cgroup.controllers");
            let list = read_trim(&file).unwrap_or_default();
            (2, list.split_whitespace().map(String::from).collect())
        } else {
            (1, m.cgroup_controllers())
        };
        hierarchies.push(Hierarchy {
            version,
            mount: m.mount_point,
            controllers,
        });
    }
    let v1 = hierarchies.iter().any(|h| h.version == 1);
    let v2 = hierarchies.iter().any(|h| h.version == 2);
    let layout = match (v1, v2) {
        (true, true) => CgroupLayout::Hybrid,
        (true, false) => CgroupLayout::V1,
        (false, true) => CgroupLayout::V2,
        (false, false) => CgroupLayout::None,
    };
    // /proc/cgroups: "#subsys_name hierarchy num_cgroups enabled"
    let known = fs::read_to_string(roots.proc.join("cgroups")).unwrap_or_default();
    let mut unmounted = Vec::new();
    for line in known.lines().filter(|l| !l.starts_with('#')) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 4 && w[3] == "1" {
            let name = w[0];
            if !hierarchies
                .iter()
                .any(|h| h.controllers.iter().any(|c| c == name))
            {
                unmounted.push(name.to_string());
            }
        }
    }
    Cgroups {
        layout,
        hierarchies,
        unmounted,
    }
}

/// A host mount point under /sys maps into `roots.sys` (so fake trees work).
fn resolve_mount(roots: &Roots, mount: &Path) -> PathBuf {
    match mount.strip_prefix("/sys") {
        Ok(rest) => roots.sys.join(rest),
        Err(_) => mount.to_path_buf(),
    }
}

fn read_virt(roots: &Roots) -> Virt {
    let kvm_device = roots.dev.join("kvm").exists();
    let mut kvm_modules: Vec<String> = fs::read_dir(roots.sys.join("module"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("kvm_"))
                .collect()
        })
        .unwrap_or_default();
    kvm_modules.sort();
    // Which module backs /dev/kvm: if one vendor module is present it is that one. If several
    // are (say kvm_intel beside kvm_pvm), the kernel exposes only one /dev/kvm and we cannot tell
    // which without opening it, so the non-hardware one is reported: the cautious answer makes
    // carve fall back to TCG rather than launch a guest that dies on an emulation failure.
    let kvm_module = kvm_modules
        .iter()
        .find(|m| !HARDWARE_KVM_MODULES.contains(&m.as_str()))
        .or_else(|| kvm_modules.first())
        .cloned();
    let path = roots
        .path
        .clone()
        .unwrap_or_else(|| std::env::var("PATH").unwrap_or_default());
    let qemu = path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join("qemu-system-x86_64"))
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    Virt {
        kvm_device,
        kvm_modules,
        kvm_module,
        qemu,
    }
}
