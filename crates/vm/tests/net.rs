//! The guest reaches an address inside the test's own network namespace through a tap (made by
//! carve, in that namespace) and a bridge. No traffic leaves the namespace.

mod common;

use carve_testkit::{short_name, unique_name};
use carve_vm::vm::{Boot, Vm};
use common::*;
use std::net::{IpAddr, Ipv4Addr};

#[test]
fn guest_pings_through_tap_and_bridge_in_a_test_netns() {
    let t = context();
    let ns = carve_net::NetnsGuard::create(&unique_name("vmnet")).unwrap();
    let bridge = short_name("vbr");
    let mut nl = carve_net::Netlink::open_in(ns.name()).unwrap();
    nl.add_bridge(&bridge).unwrap();
    nl.set_up(&bridge).unwrap();
    // A subnet derived from the pid keeps parallel runs apart (they are in different netns
    // anyway).
    let x = (std::process::id() % 200) as u8 + 20;
    nl.add_address(&bridge, IpAddr::V4(Ipv4Addr::new(10, 213, x, 1)), 24)
        .unwrap();

    let name = unique_name("vm-net");
    let cmd =
        format!("quiet carve.cmd=\"ping -c 2 -W 3 10.213.{x}.1 && echo PING-OK; ip addr show\"");
    let mut s = spec(&name, &cmd);
    s.net = Some(
        format!(
            "{bridge},netns={},ip=10.213.{x}.2/24,gw=10.213.{x}.1",
            ns.name()
        )
        .parse()
        .unwrap(),
    );
    let mut vm = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap();
    let tap = vm.runtime().tap.clone().unwrap();
    // The tap is in the test's namespace, on the bridge.
    let link = nl.link(&tap).unwrap();
    assert!(link.up);
    assert_eq!(link.master, Some(nl.link_index(&bridge).unwrap()));
    vm.wait_for_console("carve-guest-exit=", 0, BOOT).unwrap();
    let log = carve_vm::console::read_from_str(&vm.paths().console_log(), 0);
    assert!(log.contains("PING-OK"), "guest console:\n{log}");
    // The command's end powers the guest off; the tap goes with QEMU.
    let r = vm.wait_timeout(BOOT).unwrap();
    assert!(r.clean, "{r:?}");
    assert!(!nl.link_exists(&tap).unwrap());
    drop(vm);
    drop(nl);
    drop(ns);
}
