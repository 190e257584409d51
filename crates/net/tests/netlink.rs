//! Privileged tests against the real kernel. Everything happens inside network namespaces the test
//! creates (NetnsGuard deletes them, also on failure); no traffic leaves them.

use carve_net::link::NetnsTarget;
use carve_net::{
    create_netns, create_tap, in_netns, journal_undo, netns_exists, open_netns, LinkError, Netlink,
    NetnsGuard, TapOptions,
};
use carve_testkit::{short_name, unique_name};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::process::Command;

fn root() -> bool {
    if !carve_testkit::require_root() {
        return false;
    }
    true
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// busybox ping from inside a namespace: one echo request, one second to answer.
fn ping_once(netns: &str, target: &str) -> bool {
    in_netns(netns, || {
        Command::new("busybox")
            .args(["ping", "-c1", "-W1", target])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
    .unwrap()
}

/// Whether `target` answers from inside `netns`: up to three tries, so a loaded host (ARP
/// resolution, scheduling) does not make a working path look broken.
fn ping_from(netns: &str, target: &str) -> bool {
    (0..3).any(|_| ping_once(netns, target))
}

/// A netns with a bridge and two veths whose peers sit in two other namespaces.
struct World {
    a: NetnsGuard,
    b: NetnsGuard,
    c: NetnsGuard,
    bridge: String,
    host_b: String,
    host_c: String,
}

fn build_world() -> World {
    let a = NetnsGuard::create(&unique_name("nsa")).unwrap();
    let b = NetnsGuard::create(&unique_name("nsb")).unwrap();
    let c = NetnsGuard::create(&unique_name("nsc")).unwrap();
    let bridge = short_name("br");
    let (host_b, host_c) = (short_name("hb"), short_name("hc"));
    let mut na = Netlink::open_in(a.name()).unwrap();
    na.add_bridge(&bridge).unwrap();
    na.set_up(&bridge).unwrap();
    for (host, ns) in [(&host_b, &b), (&host_c, &c)] {
        let fd = open_netns(ns.name()).unwrap();
        // The peer is born inside its namespace, directly as eth0.
        na.add_veth(host, "eth0", Some(fd.as_fd())).unwrap();
        na.set_master(host, &bridge).unwrap();
        na.set_up(host).unwrap();
    }
    for (ns, addr) in [(&b, "10.231.0.1"), (&c, "10.231.0.2")] {
        let mut n = Netlink::open_in(ns.name()).unwrap();
        n.add_address("eth0", ip(addr), 24).unwrap();
        n.set_up("lo").unwrap();
        n.set_up("eth0").unwrap();
    }
    World {
        a,
        b,
        c,
        bridge,
        host_b,
        host_c,
    }
}

#[test]
fn veths_on_a_bridge_carry_traffic_between_namespaces() {
    if !root() {
        return;
    }
    let w = build_world();
    let mut na = Netlink::open_in(w.a.name()).unwrap();
    let br = na.link(&w.bridge).unwrap();
    for host in [&w.host_b, &w.host_c] {
        let l = na.link(host).unwrap();
        assert_eq!(l.master, Some(br.index), "{host} is on the bridge");
        assert!(l.up);
    }
    // The peers never appeared in A.
    assert!(!na.link_exists("eth0").unwrap());
    let mut nb = Netlink::open_in(w.b.name()).unwrap();
    // (plus an IPv6 link-local address the kernel adds by itself)
    assert!(nb
        .addresses("eth0")
        .unwrap()
        .contains(&(ip("10.231.0.1"), 24)));
    assert!(ping_from(w.b.name(), "10.231.0.2"), "B reaches C");
    assert!(ping_from(w.c.name(), "10.231.0.1"), "C reaches B");
    // Detached from the bridge, B no longer reaches C.
    na.set_nomaster(&w.host_b).unwrap();
    assert_eq!(na.link(&w.host_b).unwrap().master, None);
    assert!(!ping_once(w.b.name(), "10.231.0.2"), "B is cut off");
}

#[test]
fn routes_and_ipv6_addresses_are_added() {
    if !root() {
        return;
    }
    let w = build_world();
    let mut nb = Netlink::open_in(w.b.name()).unwrap();
    nb.add_default_route(ip("10.231.0.2")).unwrap();
    // A second default route is refused (EEXIST): the first one is really there.
    let e = nb.add_default_route(ip("10.231.0.2")).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    // Through the default route, B reaches an address of C outside the subnet.
    let mut nc = Netlink::open_in(w.c.name()).unwrap();
    nc.add_address("lo", ip("10.232.0.9"), 32).unwrap();
    nc.add_address("lo", ip("10.233.0.5"), 32).unwrap();
    assert!(ping_from(w.b.name(), "10.232.0.9"), "via the default route");
    // An on-link route without a gateway: B asks for 10.233.0.5 on eth0 and C answers.
    let onlink = carve_net::Route {
        destination: Some((ip("10.233.0.0"), 24)),
        gateway: None,
        device: Some("eth0".into()),
    };
    nb.add_route(&onlink).unwrap();
    assert_eq!(
        nb.add_route(&onlink).unwrap_err().errno(),
        Some(libc::EEXIST)
    );
    assert!(ping_from(w.b.name(), "10.233.0.5"), "via the on-link route");
    nb.add_address("eth0", ip("fd00:231::1"), 64).unwrap();
    let addrs = nb.addresses("eth0").unwrap();
    assert!(addrs.contains(&(ip("fd00:231::1"), 64)), "{addrs:?}");
    assert!(nb.add_address("eth0", ip("10.0.0.1"), 33).is_err());
}

#[test]
fn links_move_rename_mtu_and_delete() {
    if !root() {
        return;
    }
    let a = NetnsGuard::create(&unique_name("nsa")).unwrap();
    let b = NetnsGuard::create(&unique_name("nsb")).unwrap();
    let (x, y) = (short_name("x"), short_name("y"));
    let mut na = Netlink::open_in(a.name()).unwrap();
    na.add_veth(&x, &y, None).unwrap();
    assert!(na.link_exists(&y).unwrap());
    let bfd = open_netns(b.name()).unwrap();
    na.move_to_netns(&y, NetnsTarget::Fd(bfd.as_fd())).unwrap();
    assert!(!na.link_exists(&y).unwrap());
    let mut nb = Netlink::open_in(b.name()).unwrap();
    nb.rename(&y, "eth0").unwrap();
    nb.set_mtu("eth0", 1400).unwrap();
    let l = nb.link("eth0").unwrap();
    assert_eq!(l.mtu, Some(1400));
    assert!(!l.up);
    nb.set_up("eth0").unwrap();
    assert!(nb.link("eth0").unwrap().up);
    nb.set_down("eth0").unwrap();
    assert!(!nb.link("eth0").unwrap().up);
    assert!(nb.links().unwrap().iter().any(|l| l.name == "lo"));
    // Deleting one end removes the pair.
    na.delete_link(&x).unwrap();
    assert!(matches!(nb.link("eth0"), Err(LinkError::NotFound(_))));
    let e = na.delete_link(&x).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
    assert!(na.add_bridge("this-name-is-too-long").is_err());
}

#[test]
fn taps_are_made_inside_a_namespace_and_put_on_a_bridge() {
    if !root() {
        return;
    }
    let a = NetnsGuard::create(&unique_name("nsa")).unwrap();
    let (br, tap) = (short_name("br"), short_name("tap"));
    let mut na = Netlink::open_in(a.name()).unwrap();
    na.add_bridge(&br).unwrap();
    let t = in_netns(a.name(), || create_tap(&tap, &TapOptions::default()))
        .unwrap()
        .unwrap();
    assert_eq!(t.name(), tap);
    drop(t); // persistent: the device outlives the fd (QEMU opens it by name)
    na.set_master(&tap, &br).unwrap();
    na.set_up(&tap).unwrap();
    let l = na.link(&tap).unwrap();
    assert_eq!(l.master, Some(na.link_index(&br).unwrap()));
    // QEMU's way in: open it again by name, with vnet headers.
    let again = in_netns(a.name(), || {
        create_tap(
            &tap,
            &TapOptions {
                vnet_hdr: true,
                ..Default::default()
            },
        )
    })
    .unwrap()
    .unwrap();
    drop(again);
    // The tap never appeared in the caller's namespace.
    assert!(!Netlink::open().unwrap().link_exists(&tap).unwrap());
    na.delete_link(&tap).unwrap();
    assert!(!na.link_exists(&tap).unwrap());
    // A non-persistent tap goes with its fd.
    let tap2 = short_name("tap");
    let t2 = in_netns(a.name(), || {
        create_tap(
            &tap2,
            &TapOptions {
                persist: false,
                ..Default::default()
            },
        )
    })
    .unwrap()
    .unwrap();
    assert!(na.link_exists(&tap2).unwrap());
    drop(t2);
    assert!(!na.link_exists(&tap2).unwrap());
}

#[test]
fn netns_create_delete_and_in_netns() {
    if !root() {
        return;
    }
    let name = unique_name("ns");
    create_netns(&name).unwrap();
    let guard = NetnsGuard::create(&name);
    assert!(
        matches!(guard, Err(carve_net::NetnsError::Exists(_))),
        "{guard:?}"
    );
    // A fresh namespace has only a loopback, and the caller's namespace is untouched.
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let inside = in_netns(&name, || {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    })
    .unwrap();
    assert_ne!(before, inside);
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );
    let links = Netlink::open_in(&name).unwrap().links().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].name, "lo");
    carve_net::delete_netns(&name).unwrap();
    assert!(!netns_exists(&name));
    assert!(matches!(
        in_netns(&name, || ()),
        Err(carve_net::NetnsError::NotFound(_))
    ));
}

#[test]
fn journal_undo_removes_links_and_namespaces() {
    if !root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let ns = unique_name("nsj");
    let br = short_name("br");
    let mut j = carve_journal::Journal::create(root.path(), &unique_name("j"))
        .unwrap()
        .with_link_undo(journal_undo);
    j.record(carve_journal::Change::Netns { name: ns.clone() })
        .unwrap();
    // Guard in case the undo under test fails.
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = carve_net::delete_netns(&self.0);
        }
    }
    let _cleanup = Cleanup(ns.clone());
    create_netns(&ns).unwrap();
    j.record(carve_journal::Change::Link {
        name: br.clone(),
        netns: Some(ns.clone()),
    })
    .unwrap();
    let mut nl = Netlink::open_in(&ns).unwrap();
    nl.add_bridge(&br).unwrap();
    // A link recorded but never made (a crash between record and create) is fine to undo too.
    j.record(carve_journal::Change::Link {
        name: short_name("nev"),
        netns: Some(ns.clone()),
    })
    .unwrap();
    j.undo().unwrap();
    // The bridge was deleted before its namespace was (reverse order): the socket still open
    // in that namespace sees it gone.
    assert!(!nl.link_exists(&br).unwrap());
    assert!(!netns_exists(&ns));
    // Undoing again, with everything gone, is still fine.
    journal_undo(&carve_journal::Change::Netns { name: ns.clone() }).unwrap();
    journal_undo(&carve_journal::Change::Link {
        name: br,
        netns: Some(ns),
    })
    .unwrap();
}

/// Kills and reaps a child on drop.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_containers_netns_is_reached_by_pid_and_path() {
    if !root() {
        return;
    }
    // A process in its own network namespace, as a container's init would be.
    let a = NetnsGuard::create(&unique_name("nsa")).unwrap();
    let child = in_netns(a.name(), || {
        Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .spawn()
            .unwrap()
    })
    .unwrap();
    let child = Child(child);
    let pid = child.0.id();
    let nspath = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    // Wait until unshare has switched namespaces (its ns differs from A's).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let inside = in_netns_path_id(&nspath);
        let a_id = in_netns(a.name(), || {
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .unwrap();
        if inside != a_id {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "unshare did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (host, peer) = (short_name("h"), short_name("p"));
    let mut na = Netlink::open_in(a.name()).unwrap();
    na.add_veth(&host, &peer, None).unwrap();
    na.move_to_netns(&peer, NetnsTarget::Pid(pid)).unwrap();
    let mut nc = Netlink::open_at(&nspath).unwrap();
    nc.rename(&peer, "eth0").unwrap();
    nc.add_address("eth0", ip("10.234.0.2"), 24).unwrap();
    nc.set_up("eth0").unwrap();
    nc.add_default_route(ip("10.234.0.1")).unwrap();
    assert!(nc.link_exists("eth0").unwrap());
    na.add_address(&host, ip("10.234.0.1"), 24).unwrap();
    na.set_up(&host).unwrap();
    assert!(ping_from(a.name(), "10.234.0.2"), "A reaches the container");
    assert!(matches!(
        Netlink::open_at(std::path::Path::new("/proc/999999999/ns/net")),
        Err(LinkError::Netns(carve_net::NetnsError::NotFound(_)))
    ));
}

fn in_netns_path_id(p: &std::path::Path) -> std::path::PathBuf {
    carve_net::in_netns_path(p, || {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    })
    .unwrap()
}
