use super::*;

const SKETCH: &str = r#"
[host]
housekeeping = [0]                 # cores left to Linux itself

[network.carve0]
namespace = "carve-demo"
subnet = "10.77.0.0/24"

[[partition]]
name = "fastpath"
kind = "dedicated"
cpus = [1]
memory = "64MiB"
hugepages = "2MiB"
sched = "fifo:80"
command = ["carve-pktcrypt", "--ring", "gw"]

[[partition]]
name = "control"
kind = "container"
cpus = [0]
memory = "256MiB"
rootfs = "images/busybox"
command = ["/bin/httpd", "-f", "-p", "8080"]
network = { bridge = "carve0", address = "10.77.0.2/24" }

[[partition]]
name = "legacy"
kind = "vm"
vcpus = 1
cpus = [0]
memory = "256MiB"
kernel = "images/vmlinuz"
initrd = "images/initrd.img"
network = { bridge = "carve0", address = "10.77.0.3/24" }
"#;

fn problems(text: &str) -> Vec<Problem> {
    Plan::parse(text).expect_err("the plan should be rejected")
}

#[test]
fn the_design_sketch_parses() {
    let plan = Plan::parse(SKETCH).unwrap();
    assert_eq!(
        plan.host.housekeeping.as_ref().unwrap().set().to_string(),
        "0"
    );
    assert_eq!(plan.network["carve0"].subnet.to_string(), "10.77.0.0/24");
    assert_eq!(plan.partitions.len(), 3);
    let f = &plan.partitions[0];
    assert_eq!(f.kind, Kind::Dedicated);
    assert_eq!(f.cpus, Some(CpuRequest::List(vec![1])));
    assert_eq!(f.memory, Some(Size(64 << 20)));
    assert_eq!(f.sched, Some(Sched::Fifo(80)));
    assert_eq!(f.hugepages.unwrap().count, None);
    let c = &plan.partitions[1];
    assert_eq!(
        c.network.as_ref().unwrap().address.unwrap().to_string(),
        "10.77.0.2/24"
    );
    assert_eq!(plan.partitions[2].vcpus, Some(1));
    // Locations of keys and list elements.
    let loc = plan.source.locate("partition[0].cpus[0]").unwrap();
    assert_eq!((loc.line, loc.column), (12, 9));
    let loc = plan.source.locate("partition[2]").unwrap();
    assert_eq!(loc.line, 27);
    let p = plan.problem_at(1, "network.address", "x");
    assert_eq!(p.location.unwrap().line, 25);
    assert_eq!(p.partition.as_deref(), Some("control"));
}

#[test]
fn plans_round_trip_through_serde() {
    let plan = Plan::parse(SKETCH).unwrap();
    let text = toml::to_string(&plan).unwrap();
    let mut back = Plan::parse(&text).unwrap();
    back.source = plan.source.clone();
    assert_eq!(back, plan, "{text}");
}

#[test]
fn the_schema_describes_every_partition_key() {
    let schema = serde_json::to_value(Plan::json_schema()).unwrap();
    let props = &schema["$defs"]["Partition"]["properties"];
    for key in [
        "name",
        "kind",
        "cpus",
        "memory",
        "hugepages",
        "sched",
        "irqs",
        "command",
        "env",
        "rlimits",
        "rootfs",
        "bundle",
        "init",
        "kernel",
        "initrd",
        "disks",
        "append",
        "vcpus",
        "devices",
        "network",
        "restart",
        "allow_smt_sharing",
        "oversubscribe",
    ] {
        assert!(props.get(key).is_some(), "schema lacks partition.{key}");
    }
    assert_eq!(schema["$defs"]["Partition"]["additionalProperties"], false);
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn every_failing_section_is_reported() {
    let ps = problems(
        "[host]\nhousekeeping = 1\n\n[[partition]]\nname = \"a\"\nkind = \"vm\"\nmemry = \"1GiB\"\n\n\
         [[partition]]\nname = \"b\"\nkind = \"container\"\nmemory = 64\n",
    );
    assert_eq!(ps.len(), 3, "{ps:#?}");
    let text: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    assert!(
        text[0].starts_with("2:16: field `host.housekeeping`"),
        "{text:?}"
    );
    assert!(
        text[1].starts_with(
            "7:1: partition \"a\", field `memry`: unknown field `memry` (did you mean `memory`?)"
        ),
        "{text:?}"
    );
    assert!(
        text[2].starts_with("12:10: partition \"b\", field `memory`"),
        "{text:?}"
    );
}

#[test]
fn observe_listen_must_be_loopback_unless_allowed() {
    let base = "[[partition]]\nname = \"a\"\nkind = \"container\"\ncpus = [0]\nmemory = \"64MiB\"\nrootfs = \"r\"\n";
    let ok = Plan::parse(&format!("[observe]\nlisten = \"127.0.0.1:9464\"\n{base}")).unwrap();
    assert_eq!(ok.observe.listen, Some("127.0.0.1:9464".parse().unwrap()));
    let bad = Plan::parse(&format!("[observe]\nlisten = \"0.0.0.0:9464\"\n{base}")).unwrap_err();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].field, "observe.listen");
    assert_eq!(bad[0].location.map(|l| l.line), Some(2), "{}", bad[0]);
    assert!(bad[0].message.contains("allow_remote"), "{}", bad[0]);
    let allowed = Plan::parse(&format!(
        "[observe]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n{base}"
    ))
    .unwrap();
    assert!(allowed.observe.allow_remote);
    let typo = Plan::parse(&format!("[observe]\nlisen = \"127.0.0.1:1\"\n{base}")).unwrap_err();
    assert!(typo[0].message.contains("listen"), "{}", typo[0]);
}
