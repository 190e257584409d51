//! Runs net_cls/net_prio for real (tests/v1_netcls.rs, and carve-oci with
//! `linux.resources.network`) in a QEMU TCG guest booted without `cgroup_no_v1` that mounts a
//! systemd-like hybrid layout with `net_cls,net_prio` co-mounted, through scripts/v1-guest-test.sh,
//! and reads the verdict from the guest's console. (Mounting net_cls/net_prio on this host would
//! change how its kernel tags sockets host-wide.)

#[test]
fn net_cls_and_net_prio_pass_in_a_v1_qemu_guest() {
    if !carve_testkit::require_root() {
        return;
    }
    let run = carve_testkit::run_guest_script("v1-guest-test.sh", "CARVE-V1");
    let console = &run.console;
    run.assert_passed("the net_cls/net_prio checks failed in the guest");
    // (The first line of the console may start with the firmware's terminal escapes.)
    let cmdline = console
        .lines()
        .find_map(|l| l.split_once("CARVE-V1: cmdline: ").map(|(_, c)| c))
        .expect("the guest printed its command line");
    assert!(
        !cmdline.contains("cgroup_no_v1"),
        "v1 controllers were disabled: {cmdline}"
    );
    assert!(
        console.contains("/sys/fs/cgroup/net_cls,net_prio cgroup;")
            && console.contains("/sys/fs/cgroup/unified cgroup2;"),
        "the guest did not mount the hybrid layout with net_cls,net_prio"
    );
    let oks = run.oks();
    for must in [
        "net_cls.classid read back",
        "a socket the process opens is tagged with the classid (sock_diag)",
        "the existing socket retagged with the new classid",
        "net_prio.ifpriomap dummy0",
        "test net_cls_and_net_prio_mounted passed",
        "unmounted: apply network + pids succeeds",
        "test net_cls_and_net_prio_not_mounted passed",
        "carve-oci: net_cls.classid outside",
        "no cgroup left",
    ] {
        assert!(
            oks.iter().any(|l| l.starts_with(must)),
            "no passed check {must:?} in {oks:?}"
        );
    }
    assert!(oks.len() >= 60, "only {} checks passed: {oks:?}", oks.len());
}
