//! The allocator against four fixture hosts: this 2-core hybrid machine, a 64-core 2-socket SMT
//! host with 2 NUMA nodes, a host booted with isolcpus/nohz_full, and a pure cgroup v2 host.

use super::*;

fn this_host() -> Host {
    Host::from_json(include_str!("../../fixtures/hosts/this-2core-hybrid.json")).unwrap()
}
fn epyc() -> Host {
    Host::from_json(include_str!(
        "../../fixtures/hosts/epyc-2socket-64core-smt.json"
    ))
    .unwrap()
}
fn isolated() -> Host {
    Host::from_json(include_str!("../../fixtures/hosts/isolated-nohz-full.json")).unwrap()
}
fn pure_v2() -> Host {
    Host::from_json(include_str!("../../fixtures/hosts/pure-cgroup-v2.json")).unwrap()
}

fn ok(text: &str, host: &Host) -> Allocation {
    let plan = Plan::parse(text).unwrap_or_else(|p| panic!("parse: {p:#?}"));
    allocate(&plan, host).unwrap_or_else(|p| {
        panic!(
            "allocate: {}",
            p.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Parses and allocates, expecting problems; returns them as display strings.
fn problems(text: &str, host: &Host) -> Vec<String> {
    let ps = match Plan::parse(text) {
        Err(ps) => ps,
        Ok(plan) => match allocate(&plan, host) {
            Err(ps) => ps,
            Ok(a) => panic!("the plan should be rejected, got {a:#?}"),
        },
    };
    ps.iter().map(|p| p.to_string()).collect()
}

fn placed<'a>(a: &'a Allocation, name: &str) -> &'a Placed {
    a.partitions.iter().find(|p| p.name == name).unwrap()
}

const DEDICATED: &str = r#"
[[partition]]
name = "fastpath"
kind = "dedicated"
cpus = [1]
memory = "64MiB"
command = ["spin"]
"#;

#[test]
fn fixtures_load_and_describe_their_hosts() {
    let h = this_host();
    assert_eq!(h.online_cpus().len(), 2);
    assert_eq!(h.cgroup_layout(), crate::host::CgroupLayout::Hybrid);
    assert!(!h.kvm_usable());
    let e = epyc();
    assert_eq!(e.online_cpus().len(), 128);
    assert_eq!(e.cores().len(), 64);
    assert_eq!(e.nodes.len(), 2);
    assert_eq!(e.siblings(1).to_string(), "1,65");
    assert_eq!(e.numa_of(100), Some(1));
    assert!(e.kvm_usable());
    let i = isolated();
    assert_eq!(i.isolated_cpus().to_string(), "2-3,6-7");
    assert_eq!(default_housekeeping(&i).to_string(), "0,4");
    let v = pure_v2();
    assert_eq!(v.cgroup_layout(), crate::host::CgroupLayout::V2);
    assert!(v.virt.qemu.is_none());
}

#[test]
fn every_example_fits_this_host() {
    for (name, text) in [
        (
            "dedicated",
            include_str!("../../../../examples/dedicated.toml"),
        ),
        (
            "container",
            include_str!("../../../../examples/container.toml"),
        ),
        (
            "system-container",
            include_str!("../../../../examples/system-container.toml"),
        ),
        ("vm", include_str!("../../../../examples/vm.toml")),
        ("gateway", include_str!("../../../../examples/gateway.toml")),
    ] {
        let plan = Plan::parse(text).unwrap_or_else(|p| panic!("{name}: {p:#?}"));
        for host in [this_host(), epyc(), isolated(), pure_v2()] {
            if let Err(ps) = allocate(&plan, &host) {
                // Dedicated CPU 1 is a housekeeping sibling on no fixture; everything fits.
                panic!("{name}: {ps:#?}");
            }
        }
    }
}

#[test]
fn the_gateway_resolves_as_designed() {
    let a = ok(
        include_str!("../../../../examples/gateway.toml"),
        &this_host(),
    );
    assert_eq!(a.housekeeping.to_string(), "0");
    assert_eq!(placed(&a, "fastpath").cpus.to_string(), "1");
    assert_eq!(placed(&a, "fastpath").hugepages, Some((2 << 20, 32)));
    assert_eq!(placed(&a, "control").cpus.to_string(), "0");
    assert_eq!(placed(&a, "legacy").vcpus, Some(1));
    let net = placed(&a, "legacy").network.as_ref().unwrap();
    assert_eq!(net.address.to_string(), "10.77.0.3");
    assert_eq!(net.namespace.as_deref(), Some("carve-demo"));
    assert_eq!(a.cpus[0].partitions, ["control", "legacy"]);
    assert!(a.cpus[0].housekeeping);
    assert_eq!(a.cpus[1].partitions, ["fastpath"]);
    assert_eq!(a.memory.planned, 576 << 20);
    assert_eq!(a.hugepages[0].to_reserve, 32);
    // Warnings: TCG for the VM, the managed virtio-blk IRQ that may fire on CPU 1.
    let w: Vec<String> = a.warnings.iter().map(|w| w.to_string()).collect();
    assert!(w.iter().any(|w| w.contains("TCG fallback")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("IRQ 36")), "{w:?}");
}

#[test]
fn auto_placement_takes_whole_cores_on_one_node_never_housekeeping() {
    let a = ok(
        r#"
[[partition]]
name = "fp"
kind = "dedicated"
cpus = 4
memory = "1GiB"
command = ["x"]

[[partition]]
name = "web"
kind = "container"
cpus = 8
memory = "1GiB"
rootfs = "r"
command = ["x"]
"#,
        &epyc(),
    );
    assert_eq!(a.housekeeping.to_string(), "0,64");
    let fp = placed(&a, "fp");
    assert!(fp.auto_placed);
    // Two whole cores, both threads of each, on one node (node 1: node 0 holds housekeeping).
    assert_eq!(fp.cpus.len(), 4);
    assert_eq!(fp.nodes.len(), 1);
    for c in fp.cpus.iter() {
        assert!(epyc().siblings(c).is_subset(&fp.cpus), "{}", fp.cpus);
        assert!(!a.housekeeping.contains(c));
    }
    let web = placed(&a, "web");
    assert_eq!(web.cpus.len(), 8);
    assert_eq!(web.nodes.len(), 1);
    assert!(web.cpus.intersection(&fp.cpus).is_empty());
    assert!(web.cpus.intersection(&a.housekeeping).is_empty());
}

#[test]
fn dedicated_counts_keep_the_sibling_idle_and_prefer_isolated_cores() {
    let a = ok(
        r#"
[[partition]]
name = "fp"
kind = "dedicated"
cpus = 1
memory = "64MiB"
command = ["x"]

[[partition]]
name = "web"
kind = "container"
cpus = 2
memory = "64MiB"
rootfs = "r"
command = ["x"]
"#,
        &isolated(),
    );
    let fp = placed(&a, "fp");
    assert_eq!(fp.cpus.to_string(), "2", "first isolated core");
    let idle: Vec<_> = a.cpus.iter().filter(|r| r.sibling_of.is_some()).collect();
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0].cpu, 6, "CPU 2's sibling stays idle");
    let web = placed(&a, "web");
    assert!(
        !web.cpus.contains(6) && !web.cpus.contains(2),
        "{}",
        web.cpus
    );
    assert!(web.cpus.intersection(&a.housekeeping).is_empty());
}

#[test]
fn a_placement_across_nodes_is_a_warning() {
    let a = ok(
        r#"
[[partition]]
name = "big"
kind = "container"
cpus = 100
memory = "8GiB"
rootfs = "r"
command = ["x"]
"#,
        &epyc(),
    );
    assert_eq!(placed(&a, "big").nodes, [0, 1]);
    assert!(a.warnings[0].to_string().contains("across nodes"));
}

#[test]
fn vms_default_to_vcpus_placed_automatically() {
    let a = ok(
        r#"
[[partition]]
name = "vm1"
kind = "vm"
vcpus = 2
memory = "1GiB"
kernel = "k"
"#,
        &pure_v2(),
    );
    let vm = placed(&a, "vm1");
    assert_eq!(vm.cpus.to_string(), "1-2");
    assert_eq!(vm.vcpus, Some(2));
    assert!(a.warnings.iter().any(|w| w.message.contains("TCG")));
}

#[test]
fn allow_smt_sharing_lets_a_sibling_be_used() {
    let text = r#"
[host]
housekeeping = [0, 64]

[[partition]]
name = "fp"
kind = "dedicated"
cpus = [1]
memory = "64MiB"
command = ["x"]
allow_smt_sharing = true

[[partition]]
name = "web"
kind = "container"
cpus = [65]
memory = "64MiB"
rootfs = "r"
command = ["x"]
"#;
    ok(text, &epyc());
    let ps = problems(&text.replace("allow_smt_sharing = true\n", ""), &epyc());
    assert_eq!(ps.len(), 1, "{ps:#?}");
    assert!(
        ps[0].starts_with(
            "15:9: partition \"web\", field `cpus[0]`: CPU 65 is an SMT sibling of CPU 1"
        ),
        "{ps:#?}"
    );
}

#[test]
fn automatic_addresses_skip_gateway_and_explicit_ones() {
    let a = ok(
        r#"
[host]
housekeeping = [0]

[network.br]
subnet = "10.9.0.0/29"

[[partition]]
name = "a"
kind = "container"
cpus = [0]
memory = "64MiB"
rootfs = "r"
command = ["x"]
network = { bridge = "br" }

[[partition]]
name = "b"
kind = "container"
cpus = [0]
memory = "64MiB"
rootfs = "r"
command = ["x"]
network = { bridge = "br", address = "10.9.0.2/29" }
"#,
        &this_host(),
    );
    let addr = |n: &str| placed(&a, n).network.as_ref().unwrap().address.to_string();
    assert_eq!(addr("b"), "10.9.0.2");
    assert_eq!(addr("a"), "10.9.0.3");
    assert_eq!(a.networks[0].gateway.to_string(), "10.9.0.1");
}

/// One bad plan: its text, the line the problem must be on, and text the message must contain
/// (the field name among them).
struct Bad {
    what: &'static str,
    text: String,
    host: Host,
    line: usize,
    must: Vec<&'static str>,
}

fn bad(what: &'static str, text: &str, line: usize, must: &[&'static str]) -> Bad {
    Bad {
        what,
        text: text.to_string(),
        host: this_host(),
        line,
        must: must.to_vec(),
    }
}

fn container(extra: &str) -> String {
    format!(
        "[host]\nhousekeeping = [0]\n\n[[partition]]\nname = \"web\"\nkind = \"container\"\ncpus = [0]\nmemory = \"64MiB\"\nrootfs = \"r\"\ncommand = [\"x\"]\n{extra}"
    )
}

#[test]
fn bad_plans_name_the_field_and_its_line() {
    let net = "\n[network.carve0]\nsubnet = \"10.77.0.0/24\"\n";
    let cases = vec![
        // 1. Syntax.
        bad("toml syntax", "[[partition]]\nname = \"a\nkind = \"vm\"\n", 2, &["TOML syntax"]),
        // 2. Unknown key, with a suggestion.
        bad(
            "unknown key",
            &container("memry = \"1GiB\"\n"),
            11,
            &["partition \"web\"", "field `memry`", "did you mean `memory`"],
        ),
        // 3. Wrong type.
        bad(
            "size without quotes",
            &container("").replace("memory = \"64MiB\"", "memory = 64"),
            8,
            &["field `memory`"],
        ),
        // 4. Unknown kind.
        bad(
            "unknown kind",
            &container("").replace("\"container\"", "\"vmm\""),
            6,
            &["field `kind`", "vmm"],
        ),
        // 5. Bad scheduling policy.
        bad(
            "fifo priority",
            &container("sched = \"fifo:120\"\n"),
            11,
            &["field `sched`", "1 to 99"],
        ),
        // 6. A CPU that does not exist, located at the list element.
        bad(
            "missing CPU",
            &container("").replace("cpus = [0]", "cpus = [0, 7]"),
            7,
            &["field `cpus[1]`", "CPU 7 does not exist"],
        ),
        // 7. Dedicated on a housekeeping CPU.
        bad(
            "dedicated on housekeeping",
            "[host]\nhousekeeping = [0]\n\n[[partition]]\nname = \"fp\"\nkind = \"dedicated\"\ncpus = [0]\nmemory = \"64MiB\"\ncommand = [\"x\"]\n",
            7,
            &["field `cpus[0]`", "housekeeping"],
        ),
        // 8. A dedicated CPU shared with a container.
        bad(
            "dedicated shared",
            &format!("{DEDICATED}\n[[partition]]\nname = \"web\"\nkind = \"container\"\ncpus = [1]\nmemory = \"64MiB\"\nrootfs = \"r\"\ncommand = [\"x\"]\n"),
            12,
            &["partition \"web\"", "field `cpus[0]`", "dedicated to partition \"fastpath\""],
        ),
        // 9. No housekeeping CPU left.
        bad(
            "no housekeeping",
            "[host]\nhousekeeping = [5]\n",
            2,
            &["field `host.housekeeping[0]`", "CPU 5 does not exist"],
        ),
        // 10. Memory over the host.
        bad(
            "memory sum",
            &format!("{}\n[[partition]]\nname = \"db\"\nkind = \"container\"\ncpus = [0]\nmemory = \"23GiB\"\nrootfs = \"r\"\ncommand = [\"x\"]\n", container("")),
            16,
            &["partition \"db\"", "field `memory`", "reserve"],
        ),
        // 11. Huge pages beyond the budget.
        bad(
            "hugepages over budget",
            &container("hugepages = \"2MiB:64\"\n"),
            11,
            &["field `hugepages`", "exceed the memory budget"],
        ),
        // 12. vCPUs beyond pinned CPUs.
        bad(
            "vcpus",
            "[[partition]]\nname = \"vm1\"\nkind = \"vm\"\ncpus = [1]\nvcpus = 4\nmemory = \"1GiB\"\nkernel = \"k\"\n",
            5,
            &["field `vcpus`", "oversubscribe"],
        ),
        // 13. Duplicate names.
        bad(
            "duplicate name",
            &format!("{}\n[[partition]]\nname = \"web\"\nkind = \"container\"\ncpus = [0]\nmemory = \"64MiB\"\nrootfs = \"r\"\ncommand = [\"x\"]\n", container("")),
            13,
            &["field `name`", "already the name of partition #1 (line 4)"],
        ),
        // 14. Invalid name.
        bad(
            "invalid name",
            &container("").replace("\"web\"", "\"Web_Server\""),
            5,
            &["field `name`", "not a valid name"],
        ),
        // 15. A network that is not defined.
        bad(
            "undefined network",
            &container("network = { bridge = \"carve1\" }\n").replace("[host]", &format!("{net}\n[host]")),
            15,
            &["field `network.bridge`", "\"carve1\" is not defined", "did you mean `carve0`"],
        ),
        // 16. An address outside the subnet.
        bad(
            "address outside",
            &container("network = { bridge = \"carve0\", address = \"10.78.0.2/24\" }\n").replace("[host]", &format!("{net}\n[host]")),
            15,
            &["field `network.address`", "outside network"],
        ),
        // 17. The gateway's address taken.
        bad(
            "address is gateway",
            &container("network = { bridge = \"carve0\", address = \"10.77.0.1/24\" }\n").replace("[host]", &format!("{net}\n[host]")),
            15,
            &["field `network.address`", "gateway"],
        ),
        // 18. A field that does not fit the kind.
        bad(
            "kernel on a container",
            &container("kernel = \"vmlinuz\"\n"),
            11,
            &["field `kernel`", "does not apply to kind = \"container\""],
        ),
        // 19. Missing memory: located at the partition header.
        bad(
            "missing memory",
            &container("").replace("memory = \"64MiB\"\n", ""),
            4,
            &["field `memory`", "required"],
        ),
        // 20. A subnet with host bits.
        bad(
            "subnet host bits",
            "[network.carve0]\nsubnet = \"10.77.0.1/24\"\n",
            2,
            &["field `network.carve0.subnet`", "host bits"],
        ),
        // 21. A managed IRQ cannot be routed.
        bad(
            "managed irq",
            &DEDICATED.replace("command", "irqs = [36]\ncommand"),
            7,
            &["field `irqs[0]`", "cannot be routed", "managed"],
        ),
        // 22. A count that cannot be placed next to a dedicated core.
        bad(
            "cannot place",
            &format!("{DEDICATED}\n[[partition]]\nname = \"web\"\nkind = \"container\"\ncpus = 1\nmemory = \"64MiB\"\nrootfs = \"r\"\ncommand = [\"x\"]\n"),
            12,
            &["field `cpus`", "cannot place 1 CPU"],
        ),
        // 23. Unknown rlimit.
        bad(
            "unknown rlimit",
            &container("rlimits = { nofiles = 10 }\n"),
            11,
            &["field `rlimits.nofiles`", "did you mean `nofile`"],
        ),
        // 24. rootfs and bundle together.
        bad(
            "rootfs and bundle",
            &container("bundle = \"b\"\n"),
            11,
            &["field `bundle`", "not both"],
        ),
    ];
    let mut more = vec![
        // 25. A huge page size the host lacks (pure v2 fixture: 2 MiB only).
        Bad {
            host: pure_v2(),
            ..bad(
                "1GiB pages missing",
                &container("hugepages = \"1GiB:1\"\n").replace("64MiB", "1GiB"),
                11,
                &["field `hugepages`", "no 1GiB huge pages"],
            )
        },
        // 26. SMT sibling of a dedicated CPU given to housekeeping (64-core fixture).
        Bad {
            host: epyc(),
            ..bad(
                "smt sibling housekeeping",
                &format!("[host]\nhousekeeping = [0, 65]\n{DEDICATED}"),
                7,
                &["field `cpus[0]`", "SMT sibling of housekeeping CPU 65"],
            )
        },
    ];
    let mut all = cases;
    all.append(&mut more);
    assert!(all.len() >= 12);
    for case in all {
        let ps = problems(&case.text, &case.host);
        let hit = ps.iter().find(|p| case.must.iter().all(|m| p.contains(m)));
        let Some(p) = hit else {
            panic!(
                "{}: no problem contains {:?}:\n{}\n--- plan:\n{}",
                case.what,
                case.must,
                ps.join("\n"),
                case.text
            );
        };
        assert!(
            p.starts_with(&format!("{}:", case.line)),
            "{}: expected line {}: {p}\n--- plan:\n{}",
            case.what,
            case.line,
            case.text
        );
    }
}

#[test]
fn all_problems_are_reported_not_only_the_first() {
    let ps = problems(
        r#"
[host]
housekeeping = [0]

[[partition]]
name = "a"
kind = "dedicated"
cpus = [0, 9]
memory = "64MiB"
command = ["x"]

[[partition]]
name = "a"
kind = "vm"
cpus = [1]
vcpus = 3
memory = "64GiB"
kernel = "k"
network = { bridge = "nope" }
"#,
        &this_host(),
    );
    // housekeeping CPU 0, CPU 9, duplicate name, vcpus, memory, network: six problems.
    assert_eq!(ps.len(), 6, "{ps:#?}");
    // Sorted by position in the file.
    assert!(ps[0].starts_with("8:"), "{ps:#?}");
}
