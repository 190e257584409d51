use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn reads_this_machine_without_failing() {
    // Whatever the machine, reading must succeed and give a consistent model.
    let host = read_host(&Roots::default()).unwrap();
    assert!(!host.online_cpus().is_empty());
    assert!(host.memory_total() > 0);
    for cpu in host.online_cpus().iter() {
        assert!(host.siblings(cpu).contains(cpu));
        assert!(host.numa_of(cpu).is_some());
    }
    let json = serde_json::to_string(&host).unwrap();
    assert_eq!(Host::from_json(&json).unwrap(), host);
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn chmod(root: &Path, rel: &str, mode: u32) {
    fs::set_permissions(root.join(rel), fs::Permissions::from_mode(mode)).unwrap();
}

/// A fake host: 2 packages × 1 core × 2 threads, one NUMA node per package, CPU 3 offline,
/// booted with isolcpus/nohz_full, pure cgroup v2, kvm_intel, QEMU installed.
fn fake_tree(root: &Path) {
    let cpu = "sys/devices/system/cpu";
    put(root, &format!("{cpu}/online"), "0-2\n");
    put(root, &format!("{cpu}/present"), "0-3\n");
    put(root, &format!("{cpu}/smt/active"), "1\n");
    put(root, &format!("{cpu}/nohz_full"), "2-3\n");
    for (id, core, pkg, sib, node) in [
        (0, 0, 0, "0,2", 0),
        (1, 1, 1, "1,3", 1),
        (2, 0, 0, "0,2", 0),
    ] {
        let t = format!("{cpu}/cpu{id}/topology");
        for (file, value) in [
            ("core_id", core.to_string()),
            ("physical_package_id", pkg.to_string()),
            ("thread_siblings_list", sib.to_string()),
        ] {
            put(root, &format!("{t}/{file}"), &format!("{value}\n"));
        }
        let l3 = if node == 0 { "0,2" } else { "1,3" };
        for (index, level, kind, shared, size) in [
            ("index0", 1, "Data", sib, "32K"),
            ("index2", 2, "Unified", sib, "1024K"),
            ("index3", 3, "Unified", l3, "32M"),
        ] {
            let c = format!("{cpu}/cpu{id}/cache/{index}");
            put(root, &format!("{c}/level"), &format!("{level}\n"));
            put(root, &format!("{c}/type"), &format!("{kind}\n"));
            put(
                root,
                &format!("{c}/shared_cpu_list"),
                &format!("{shared}\n"),
            );
            put(root, &format!("{c}/size"), &format!("{size}\n"));
        }
    }
    for (node, list) in [(0, "0,2"), (1, "1,3")] {
        let n = format!("sys/devices/system/node/node{node}");
        put(root, &format!("{n}/cpulist"), &format!("{list}\n"));
        put(
            root,
            &format!("{n}/meminfo"),
            &format!(
                "Node {node} MemTotal:        8000000 kB\nNode {node} MemFree:         6000000 kB\n"
            ),
        );
        let h = format!("{n}/hugepages/hugepages-2048kB");
        put(
            root,
            &format!("{h}/nr_hugepages"),
            &format!("{}\n", 16 * node),
        );
        put(
            root,
            &format!("{h}/free_hugepages"),
            &format!("{}\n", 8 * node),
        );
    }
    let h = "sys/kernel/mm/hugepages/hugepages-2048kB";
    put(root, &format!("{h}/nr_hugepages"), "16\n");
    put(root, &format!("{h}/free_hugepages"), "8\n");
    put(root, &format!("{h}/resv_hugepages"), "2\n");
    put(root, &format!("{h}/surplus_hugepages"), "0\n");
    put(
        root,
        "proc/meminfo",
        "MemTotal:       16000000 kB\nMemFree:        12000000 kB\nMemAvailable:   13000000 kB\n",
    );
    put(root, "proc/sys/kernel/osrelease", "6.1.0-rt\n");
    put(root, "proc/sys/kernel/sched_rt_runtime_us", "-1\n");
    put(root, "proc/sys/kernel/sched_rt_period_us", "1000000\n");
    put(
        root,
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz isolcpus=nohz,domain,managed_irq,2-N nohz_full=2-3 rcu_nocbs \
         quiet -- irqaffinity=1\n",
    );
    put(
        root,
        "boot/config-6.1.0-rt",
        "CONFIG_NO_HZ_COMMON=y\nCONFIG_NO_HZ_FULL=y\nCONFIG_HZ_1000=y\nCONFIG_HZ=1000\n",
    );
    put(
        root,
        "proc/interrupts",
        "           CPU0       CPU1       CPU2\n\
         \x20 0:         10          0          0   IO-APIC   2-edge      timer\n\
         \x20 9:          0          3          0   IO-APIC   9-fasteoi   acpi\n\
         \x2024:          5          5          5   IR-PCI-MSI 524288-edge      nvme0q0\n\
         \x2025:          1          2          3   IR-PCI-MSI 524289-edge      nvme0q1\n\
         \x2026:          7          0          0   PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
         \x2027:          0          0          9   LAPIC-thing   4-edge      percpu-dev\n\
         NMI:          0          0          0   Non-maskable interrupts\n",
    );
    for (n, aff, mode) in [
        (0, "0", 0o444),
        (9, "0-2", 0o644),
        (24, "0-3", 0o644),
        (25, "2", 0o644),
        (26, "0-1", 0o444),
        (27, "2", 0o444),
    ] {
        put(
            root,
            &format!("proc/irq/{n}/smp_affinity_list"),
            &format!("{aff}\n"),
        );
        put(root, &format!("proc/irq/{n}/smp_affinity"), "f\n");
        chmod(root, &format!("proc/irq/{n}/smp_affinity"), mode);
    }
    put(root, "proc/irq/9/effective_affinity_list", "1\n");
    put(root, "sys/kernel/irq/24/chip_name", "IR-PCI-MSI\n");
    put(root, "sys/kernel/irq/24/actions", "nvme0q0\n");
    put(
        root,
        "proc/self/mountinfo",
        "25 1 0:22 / /sys rw - sysfs sysfs rw\n\
         30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n\
         31 40 0:26 / /mnt/again rw - cgroup2 cgroup2 rw,nsdelegate\n",
    );
    put(
        root,
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory hugetlb pids\n",
    );
    put(
        root,
        "proc/cgroups",
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t1\t1\ncpu\t0\t1\t1\n\
         memory\t0\t1\t1\nnet_cls\t0\t1\t0\nperf_event\t0\t1\t1\n",
    );
    put(root, "dev/kvm", "");
    put(root, "sys/module/kvm_intel/parameters/nested", "Y\n");
    put(root, "sys/module/kvm/parameters/x", "1\n");
    put(root, "bin/qemu-system-x86_64", "#!/bin/sh\n");
    chmod(root, "bin/qemu-system-x86_64", 0o755);
}

#[test]
fn reads_a_fake_tree() {
    let dir = tempfile::tempdir().unwrap();
    fake_tree(dir.path());
    let mut roots = Roots::under(dir.path());
    roots.path = Some(format!("/nonexistent:{}", dir.path().join("bin").display()));
    let h = read_host(&roots).unwrap();

    assert_eq!(h.online_cpus().to_string(), "0-2");
    assert_eq!(h.present_cpus().to_string(), "0-3");
    assert_eq!(h.siblings(0).to_string(), "0,2");
    assert_eq!(h.siblings(3).to_string(), "3", "offline: topology unknown");
    assert_eq!(h.numa_of(1), Some(1));
    assert_eq!(h.numa_of(3), Some(1), "from the node's cpulist");
    assert_eq!(h.cpu(1).unwrap().package, Some(1));
    assert_eq!(h.cores().len(), 2, "{:?}", h.cores());
    assert_eq!(h.smt_active, Some(true));
    // L1 shared by SMT siblings is kept; L2 per core; L3 per node.
    assert_eq!(h.cache_group(2, 3).unwrap().cpus.to_string(), "0,2");
    assert_eq!(h.cache_group(2, 3).unwrap().size_kib, Some(32 * 1024));
    assert_eq!(h.cache_group(1, 2).unwrap().cpus.to_string(), "1,3");
    assert!(h.caches.iter().any(|c| c.level == 1));

    assert_eq!(h.memory_total(), 16_000_000 * 1024);
    assert_eq!(h.memory.available, 13_000_000 * 1024);
    assert_eq!(h.nodes.len(), 2);
    assert_eq!(h.nodes[1].memory_free, 6_000_000 * 1024);
    let hp = h.hugepages(2048).unwrap();
    assert_eq!((hp.total, hp.free, hp.reserved), (16, 8, 2));
    assert_eq!(hp.per_node[1].total, 16);

    let irq = |n: u32| h.irqs.iter().find(|i| i.number == n).unwrap();
    assert_eq!(h.irqs.len(), 6);
    assert!(!irq(0).changeable, "timer");
    assert!(irq(9).changeable);
    assert_eq!(irq(9).effective.as_ref().unwrap().to_string(), "1");
    assert_eq!(irq(9).count, 3);
    assert_eq!(irq(9).actions, "acpi");
    assert!(irq(24).changeable, "the nvme admin queue is not managed");
    assert_eq!(irq(24).chip, "IR-PCI-MSI");
    assert!(!irq(25).changeable, "nvme I/O queue: managed by name");
    assert_eq!(
        irq(26).fixed_because.as_deref(),
        Some("managed by the kernel")
    );
    assert_eq!(
        irq(27).fixed_because.as_deref(),
        Some("per-CPU or not balanceable")
    );
    assert_eq!(h.fixed_irqs_on(&"2".parse().unwrap()).len(), 2);

    let k = &h.kernel;
    assert_eq!(k.release, "6.1.0-rt");
    let iso = k.isolcpus.as_ref().unwrap();
    assert_eq!(iso.flags, ["nohz", "domain", "managed_irq"]);
    assert_eq!(iso.cpus.to_string(), "2-3", "N is the last CPU");
    assert_eq!(k.nohz_full.as_ref().unwrap().cpus.to_string(), "2-3");
    assert_eq!(k.rcu_nocbs.as_ref().unwrap().cpus.to_string(), "0-3");
    assert!(k.irqaffinity.is_none(), "after -- it belongs to init");
    assert_eq!(k.no_hz_full, Known::Yes);
    assert_eq!(k.hz, Some(1000));
    assert_eq!(k.config_source.as_deref(), Some("/boot/config-6.1.0-rt"));
    assert_eq!(k.sched_rt_runtime_us, Some(-1));
    assert_eq!(h.isolated_cpus().to_string(), "2-3");

    assert_eq!(h.cgroup_layout(), CgroupLayout::V2);
    assert_eq!(
        h.cgroups.hierarchies.len(),
        1,
        "the bind mount is the same hierarchy"
    );
    assert_eq!(h.cgroup_hierarchy("hugetlb").unwrap().version, 2);
    assert_eq!(h.cgroups.unmounted, ["perf_event"], "net_cls is disabled");

    assert!(h.virt.kvm_device);
    assert_eq!(h.virt.kvm_module.as_deref(), Some("kvm_intel"));
    assert!(h.kvm_usable());
    assert_eq!(h.virt.qemu, Some(dir.path().join("bin/qemu-system-x86_64")));

    let json = serde_json::to_string(&h).unwrap();
    assert_eq!(Host::from_json(&json).unwrap(), h);
}

#[test]
fn minimal_tree_degrades_to_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "sys/devices/system/cpu/online", "0\n");
    put(root, "proc/meminfo", "MemTotal: 1000 kB\nMemFree: 500 kB\n");
    let h = read_host(&Roots::under(root)).unwrap();
    assert_eq!(h.online_cpus().to_string(), "0");
    assert_eq!(h.nodes.len(), 1, "non-NUMA: one node 0");
    assert_eq!(h.numa_of(0), Some(0));
    assert_eq!(h.memory.available, 500 * 1024);
    assert_eq!(h.kernel.no_hz_full, Known::Unknown);
    assert_eq!(h.kernel.hz, None);
    assert_eq!(h.cgroup_layout(), CgroupLayout::None);
    assert!(!h.kvm_usable());
    assert!(h.virt.qemu.is_none());
}

#[test]
fn missing_essentials_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = read_host(&Roots::under(dir.path())).unwrap_err();
    assert!(e.to_string().contains("devices/system/cpu/online"), "{e}");
    put(dir.path(), "sys/devices/system/cpu/online", "0\n");
    let e = read_host(&Roots::under(dir.path())).unwrap_err();
    assert!(e.to_string().contains("meminfo"), "{e}");
}

#[test]
fn pvm_beside_hardware_kvm_is_not_usable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "sys/devices/system/cpu/online", "0\n");
    put(root, "proc/meminfo", "MemTotal: 1000 kB\n");
    put(root, "dev/kvm", "");
    put(root, "sys/module/kvm_pvm/parameters/x", "");
    let h = read_host(&Roots::under(root)).unwrap();
    assert_eq!(h.virt.kvm_module.as_deref(), Some("kvm_pvm"));
    assert!(!h.kvm_usable());
    put(root, "sys/module/kvm_intel/parameters/x", "");
    let h = read_host(&Roots::under(root)).unwrap();
    assert_eq!(h.virt.kvm_modules, ["kvm_intel", "kvm_pvm"]);
    assert!(!h.kvm_usable(), "ambiguous: cautious");
}

#[test]
#[ignore = "prints this machine's model"]
fn dump_this_machine() {
    let host = read_host(&Roots::default()).unwrap();
    println!("{}", serde_json::to_string_pretty(&host).unwrap());
}

#[test]
fn report_json_loads_back_as_the_model() {
    let host = read_host(&Roots::default()).unwrap();
    let json = serde_json::to_string(&host.report()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["readiness"]["kvm_usable"], host.kvm_usable());
    assert_eq!(Host::from_json(&json).unwrap(), host);
}
