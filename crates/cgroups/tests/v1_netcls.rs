//! net_cls and net_prio against a real kernel, on a hybrid layout with `net_cls,net_prio`
//! co-mounted as systemd does.
//!
//! Mounting net_cls or net_prio on a host changes how its kernel tags sockets, so these tests are
//! `#[ignore]`d here: `tests/v1_guest.rs` builds this file as a static binary, boots a QEMU TCG
//! guest without `cgroup_no_v1`, mounts a v1 layout and runs them there
//! (scripts/v1-guest-test.sh): first `net_cls_and_net_prio_mounted`, then, after the guest has
//! unmounted that hierarchy, `net_cls_and_net_prio_not_mounted`.
//! Each check prints "CARVE-V1: ok NAME" or "CARVE-V1: FAIL NAME: why"; a test fails at its end
//! if any of its checks failed.

mod common;

use carve_cgroups::{Layout, Mode};
use common::{read, Cg, Proc};
use oci_spec::runtime::LinuxResources;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

/// Checks that print one line each and are counted.
#[derive(Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, seen: impl Debug) {
        if ok {
            println!("CARVE-V1: ok {name}");
        } else {
            println!("CARVE-V1: FAIL {name}: saw {seen:?}");
            self.failed.push(name.to_string());
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, name: &str, seen: T, want: T) {
        let ok = seen == want;
        self.check(&format!("{name} ({want:?})"), ok, seen);
    }

    fn done(self) {
        assert!(self.failed.is_empty(), "failed checks: {:?}", self.failed);
    }
}

/// net_prio.ifpriomap as interface → priority.
fn ifpriomap(dir: &Path) -> BTreeMap<String, u32> {
    read(dir, "net_prio.ifpriomap")
        .lines()
        .filter_map(|l| {
            let (n, p) = l.split_once(' ')?;
            Some((n.to_string(), p.trim().parse().ok()?))
        })
        .collect()
}

/// Checks net_prio.ifpriomap in `dir` gives each (interface, priority); a check is named
/// "net_prio.ifpriomap IFACE" + its `suffix`.
fn check_ifpriomap(c: &mut Checks, dir: &Path, want: &[(&str, u32, &str)]) {
    let map = ifpriomap(dir);
    for (iface, prio, suffix) in want {
        c.eq(
            &format!("net_prio.ifpriomap {iface}{suffix}"),
            map.get(*iface).copied(),
            Some(*prio),
        );
    }
}

/// The net_cls classid the kernel gives the TCP listening sockets on `port` (IPv4 and IPv6), as
/// sock_diag reports it (INET_DIAG_CLASS_ID; 0 for an untagged socket whose priority is 0).
fn listener_classids(port: u16) -> Vec<u32> {
    let mut out = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        // SAFETY: plain socket calls on a netlink socket this function owns and closes; the
        // buffers outlive the calls that use them.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            );
            assert!(fd >= 0, "netlink: {}", std::io::Error::last_os_error());
            // nlmsghdr (16) + inet_diag_req_v2 (56)
            let mut req = [0u8; 72];
            req[0..4].copy_from_slice(&72u32.to_ne_bytes());
            req[4..6].copy_from_slice(&20u16.to_ne_bytes()); // SOCK_DIAG_BY_FAMILY
            req[6..8].copy_from_slice(&(0x1u16 | 0x300).to_ne_bytes()); // REQUEST | DUMP
            req[8..12].copy_from_slice(&1u32.to_ne_bytes());
            req[16] = family as u8;
            req[17] = libc::IPPROTO_TCP as u8;
            // INET_DIAG_TCLASS: the kernel answers it with INET_DIAG_CLASS_ID too (CLASS_ID's
            // own bit does not fit the 8-bit extension mask).
            req[18] = 1 << (6 - 1);
            req[20..24].copy_from_slice(&(1u32 << 10).to_ne_bytes()); // TCP_LISTEN
            let n = libc::send(fd, req.as_ptr().cast(), req.len(), 0);
            assert_eq!(n, 72, "send: {}", std::io::Error::last_os_error());
            let mut buf = vec![0u8; 65536];
            'recv: loop {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                assert!(n > 0, "recv: {}", std::io::Error::last_os_error());
                let mut off = 0usize;
                while off + 16 <= n as usize {
                    let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                    let typ = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
                    if len < 16 || typ == 3 {
                        break 'recv; // NLMSG_DONE
                    }
                    assert_ne!(
                        typ, 2,
                        "sock_diag answered an error (inet_diag not loaded?)"
                    );
                    let msg = &buf[off + 16..off + len];
                    let sport = u16::from_be_bytes([msg[4], msg[5]]);
                    if sport == port {
                        let mut a = 72; // after inet_diag_msg
                        let mut classid = None;
                        while a + 4 <= msg.len() {
                            let alen = u16::from_ne_bytes([msg[a], msg[a + 1]]) as usize;
                            let atyp = u16::from_ne_bytes([msg[a + 2], msg[a + 3]]);
                            if alen < 4 {
                                break;
                            }
                            if atyp == 17 {
                                // INET_DIAG_CLASS_ID
                                classid =
                                    Some(u32::from_ne_bytes(msg[a + 4..a + 8].try_into().unwrap()));
                            }
                            a += (alen + 3) & !3;
                        }
                        out.push(classid.expect("no INET_DIAG_CLASS_ID in the answer"));
                    }
                    off += (len + 3) & !3;
                }
            }
            libc::close(fd);
        }
    }
    out
}

/// The 802.1Q priority (PCP) of the first ARP request for `target` seen leaving dummy0 when
/// `arping` asks for it on dummy0.5 from a process in `m` (or outside, if `None`). The guest's
/// VLAN dummy0.5 on dummy0 has an egress map that turns skb priority 5 into PCP 3 and 6 into 4
/// (anything else into 0): net_prio's priority for dummy0.5 becomes visible in the frame.
/// Also the first frames seen (hex), for the failure message.
fn arp_pcp(target: [u8; 4], m: Option<&carve_cgroups::Manager>) -> (Option<u8>, Vec<String>) {
    let ifname = std::ffi::CString::new("dummy0").unwrap();
    // SAFETY: plain socket calls on a packet socket this function owns and closes; the buffers
    // outlive the calls that use them.
    unsafe {
        let ifindex = libc::if_nametoindex(ifname.as_ptr());
        assert!(ifindex > 0, "no dummy0");
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as i32,
        );
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        let r = libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let ip = target.map(|b| b.to_string()).join(".");
        let mut p = Proc::gated(&format!("exec arping -c 1 -w 1 -I dummy0.5 {ip}"));
        if let Some(m) = m {
            m.add_task(p.pid()).expect("add arping");
        }
        p.open_gate();
        let one = 1i32;
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&one as *const i32).cast(),
            4,
        );
        let t = Instant::now();
        let mut found = None;
        let mut seen = Vec::new();
        let mut buf = [0u8; 2048];
        let mut cbuf = [0u64; 64];
        while found.is_none() && t.elapsed() < Duration::from_secs(5) {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut mh: libc::msghdr = std::mem::zeroed();
            mh.msg_iov = &mut iov;
            mh.msg_iovlen = 1;
            mh.msg_control = cbuf.as_mut_ptr().cast();
            mh.msg_controllen = std::mem::size_of_val(&cbuf);
            let n = libc::recvmsg(fd, &mut mh, 0);
            if n < 14 {
                continue;
            }
            let mut f = buf[..n as usize].to_vec();
            // The tag is either in the frame, after the MAC addresses, or (offloaded) in the
            // packet's auxdata: put it in the frame then.
            let mut cm = libc::CMSG_FIRSTHDR(&mh);
            while !cm.is_null() {
                if (*cm).cmsg_level == libc::SOL_PACKET && (*cm).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: libc::tpacket_auxdata =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast());
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        let tci = aux.tp_vlan_tci.to_be_bytes();
                        f.splice(12..12, [0x81, 0x00, tci[0], tci[1]]);
                    }
                }
                cm = libc::CMSG_NXTHDR(&mh, cm);
            }
            if seen.len() < 8 {
                seen.push(
                    f.iter()
                        .take(22)
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                );
            }
            if f.len() >= 46
                && f[12..14] == [0x81, 0x00]
                && f[16..18] == [0x08, 0x06]
                && f[18 + 24..18 + 28] == target
            {
                found = Some(f[14] >> 5);
            }
        }
        libc::close(fd);
        if found.is_none() {
            let _ = p.child.kill();
            let (st, out, err) = p.finish();
            seen.push(format!("arping: {st} {out} {err}"));
        }
        (found, seen)
    }
}

/// Waits up to 5 s for a listener on `port`; its classids.
fn wait_listener(port: u16) -> Vec<u32> {
    let t = Instant::now();
    loop {
        let v = listener_classids(port);
        if !v.is_empty() || t.elapsed() > Duration::from_secs(5) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn own_cgroup_lines(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "net_cls/net_prio mounted: runs in the QEMU guest (tests/v1_guest.rs)"]
fn net_cls_and_net_prio_mounted() {
    let mut c = Checks::default();
    let l = Layout::detect(Path::new(ROOT)).unwrap();
    c.eq("layout is hybrid", l.mode, Mode::Hybrid);
    let h = l.v1_with("net_cls").cloned();
    c.eq(
        "net_cls hierarchy at /sys/fs/cgroup/net_cls,net_prio",
        h.as_ref().map(|h| h.mount.clone()),
        Some(Path::new(ROOT).join("net_cls,net_prio")),
    );
    c.check(
        "net_prio on the same hierarchy",
        h.as_ref().is_some_and(|h| h.has("net_prio")),
        &h,
    );
    c.check(
        "systemd-like hierarchies (name=systemd, cpu,cpuacct, memory, pids) found",
        [
            "name=systemd",
            "cpuacct",
            "memory",
            "pids",
            "devices",
            "freezer",
        ]
        .iter()
        .all(|x| l.v1_with(x).is_some()),
        &l.v1,
    );

    let cg = Cg::new("/carve-v1/net1");
    let m = &cg.0;
    let d = m.path_on("net_cls").expect("net_cls dir");
    c.eq(
        "net_cls dir",
        d.clone(),
        Path::new(ROOT).join("net_cls,net_prio/carve-v1/net1"),
    );
    c.eq(
        "net_prio dir is the net_cls dir",
        m.path_on("net_prio"),
        Some(d.clone()),
    );
    c.eq(
        "created on every hierarchy",
        m.dirs().iter().all(|d| d.is_dir()),
        true,
    );
    c.eq(
        "a new cgroup has classid 0",
        read(&d, "net_cls.classid"),
        "0".into(),
    );

    let r = m.apply(&res(
        r#"{"network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 5},
            {"name": "dummy0", "priority": 7}, {"name": "dummy0.5", "priority": 5}]},
            "pids": {"limit": 32}}"#,
    ));
    c.check("apply network + pids", r.is_ok(), &r);
    c.eq(
        "net_cls.classid read back",
        read(&d, "net_cls.classid"),
        "1048577".into(),
    );
    check_ifpriomap(
        &mut c,
        &d,
        &[("lo", 5, ""), ("dummy0", 7, ""), ("dummy0.5", 5, "")],
    );
    let pd = m.path_on("pids").unwrap();
    c.eq("pids.max beside it", read(&pd, "pids.max"), "32".into());

    // A real process: membership on every hierarchy, and the sockets it opens carry the classid.
    let mut p = Proc::gated("exec nc -l -p 7071");
    let pid = p.pid();
    let r = m.add_task(pid);
    c.check("add_task", r.is_ok(), &r);
    let lines = own_cgroup_lines(pid);
    c.check(
        "/proc/PID/cgroup: net_cls,net_prio:/carve-v1/net1",
        lines
            .iter()
            .any(|l| l.ends_with(":net_cls,net_prio:/carve-v1/net1")),
        &lines,
    );
    c.check(
        "/proc/PID/cgroup: /carve-v1/net1 on every hierarchy",
        lines.len() >= 8 && lines.iter().all(|l| l.ends_with(":/carve-v1/net1")),
        &lines,
    );
    c.check(
        "pid in net_cls cgroup.procs",
        read(&d, "cgroup.procs")
            .lines()
            .any(|l| l == pid.to_string()),
        read(&d, "cgroup.procs"),
    );
    let pids = m.pids().unwrap();
    c.eq("Manager::pids", pids, vec![pid]);
    let outside = std::net::TcpListener::bind("127.0.0.1:7072").unwrap();
    c.eq(
        "a socket of a process outside: classid 0",
        wait_listener(7072),
        vec![0],
    );
    p.open_gate();
    c.eq(
        "a socket the process opens is tagged with the classid (sock_diag)",
        wait_listener(7071),
        vec![1048577],
    );
    // net_prio's effect: the frames a process in the cgroup sends on dummy0.5 get priority 5
    // (PCP 3 through the VLAN's egress map); from outside they keep priority 0.
    let (pcp, seen) = arp_pcp([10, 9, 0, 2], Some(m));
    c.check(
        "net_prio: a frame sent from inside has priority 5 (PCP 3)",
        pcp == Some(3),
        (pcp, seen),
    );
    let (pcp, seen) = arp_pcp([10, 9, 0, 3], None);
    c.check(
        "net_prio: a frame sent from outside has priority 0 (PCP 0)",
        pcp == Some(0),
        (pcp, seen),
    );

    // Update: the kernel retags the sockets of the cgroup's tasks.
    let r = m.apply(&res(
        r#"{"network": {"classID": 2097153, "priorities": [{"name": "lo", "priority": 9},
            {"name": "dummy0.5", "priority": 6}]}}"#,
    ));
    c.check("update network", r.is_ok(), &r);
    c.eq(
        "net_cls.classid updated",
        read(&d, "net_cls.classid"),
        "2097153".into(),
    );
    check_ifpriomap(
        &mut c,
        &d,
        &[
            ("lo", 9, " updated"),
            ("dummy0", 7, " kept"),
            ("dummy0.5", 6, " updated"),
        ],
    );
    c.eq(
        "the existing socket retagged with the new classid",
        wait_listener(7071),
        vec![2097153],
    );
    c.eq("the outside socket still 0", wait_listener(7072), vec![0]);
    let (pcp, seen) = arp_pcp([10, 9, 0, 4], Some(m));
    c.check(
        "net_prio: after the update, priority 6 (PCP 4)",
        pcp == Some(4),
        (pcp, seen),
    );
    drop(outside);

    // An interface that does not exist: an error naming the file, nothing changed.
    let r = m.apply(&res(
        r#"{"network": {"priorities": [{"name": "nosuch0", "priority": 1}]}}"#,
    ));
    let msg = r.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
    c.check(
        "unknown interface: error names net_prio.ifpriomap and the value",
        msg.contains("net_prio.ifpriomap") && msg.contains("nosuch0"),
        &r,
    );
    c.eq(
        "unknown interface: classid unchanged",
        read(&d, "net_cls.classid"),
        "2097153".into(),
    );

    // Removal: the process killed, nothing left on any hierarchy.
    drop(p);
    let dirs = m.dirs();
    let r = m.remove();
    c.check("remove", r.is_ok(), &r);
    let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
    c.check("no cgroup dir left", left.is_empty(), &left);
    let parents: Vec<_> = dirs
        .iter()
        .filter_map(|d| d.parent())
        .filter(|d| d.exists())
        .collect();
    c.check(
        "the parents create() made are gone",
        parents.is_empty(),
        &parents,
    );
    c.done();
}

#[test]
#[ignore = "net_cls/net_prio unmounted: runs in the QEMU guest (tests/v1_guest.rs)"]
fn net_cls_and_net_prio_not_mounted() {
    let mut c = Checks::default();
    let cgroups = std::fs::read_to_string("/proc/cgroups").unwrap();
    c.check(
        "the kernel has net_cls and net_prio",
        ["net_cls", "net_prio"]
            .iter()
            .all(|n| cgroups.lines().any(|l| l.starts_with(&format!("{n}\t")))),
        &cgroups,
    );
    let l = Layout::detect(Path::new(ROOT)).unwrap();
    c.eq("unmounted: layout still hybrid", l.mode, Mode::Hybrid);
    c.check(
        "unmounted: no hierarchy has net_cls or net_prio",
        l.v1_with("net_cls").is_none() && l.v1_with("net_prio").is_none(),
        &l.v1,
    );
    let cg = Cg::new("/carve-v1/net2");
    let m = &cg.0;
    let r = m.apply(&res(
        r#"{"network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 5}]},
            "pids": {"limit": 16}}"#,
    ));
    c.check("unmounted: apply network + pids succeeds", r.is_ok(), &r);
    c.eq(
        "unmounted: pids.max still applied",
        read(&m.path_on("pids").unwrap(), "pids.max"),
        "16".into(),
    );
    c.eq("unmounted: no net_cls dir", m.path_on("net_cls"), None);
    c.eq("unmounted: no net_prio dir", m.path_on("net_prio"), None);
    let only_network = m.apply(&res(r#"{"network": {"classID": 3}}"#));
    c.check(
        "unmounted: network alone is a no-op",
        only_network.is_ok(),
        &only_network,
    );
    let stray: Vec<_> = std::fs::read_dir(ROOT)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) // not the cpu -> cpu,cpuacct links
        .map(|e| e.path().join("carve-v1/net2"))
        .filter(|p| p.exists())
        .collect();
    c.check(
        "unmounted: the cgroup exists only on the mounted hierarchies",
        stray.len() == m.dirs().len(),
        (&stray, m.dirs()),
    );
    let p = Proc::sleeper();
    let r = m.add_task(p.pid());
    c.check("unmounted: add_task", r.is_ok(), &r);
    let lines = own_cgroup_lines(p.pid());
    c.check(
        "unmounted: /proc/PID/cgroup: in the cgroup, but in no net_cls cgroup",
        // (An unmounted hierarchy lives on, listed here, until its last cgroup is released.)
        !lines
            .iter()
            .any(|l| l.contains(":net_cls,net_prio:") && !l.ends_with(":/"))
            && lines.iter().any(|l| l.ends_with(":/carve-v1/net2")),
        &lines,
    );
    drop(p);
    let dirs = m.dirs();
    let r = m.remove();
    c.check("unmounted: remove", r.is_ok(), &r);
    let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
    c.check("unmounted: no cgroup dir left", left.is_empty(), &left);
    c.done();
}
