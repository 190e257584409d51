use super::*;

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

#[test]
#[ignore]
fn dump_this_machine() {
    let host = read_host(&Roots::default()).unwrap();
    println!("{}", serde_json::to_string_pretty(&host).unwrap());
}
