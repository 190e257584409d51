//! Links, addresses and routes over a synchronous rtnetlink socket.
//!
//! A [`Netlink`] socket acts on the network namespace it was opened in: [`Netlink::open`] is the
//! caller's, [`Netlink::open_in`] a named namespace's (opened on a helper thread; the socket
//! keeps acting there afterwards).

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Errors of link, address and route operations.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The netlink socket could not be opened.
    #[error("could not open a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The socket could not be opened inside a named namespace.
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    /// No link of that name in the socket's namespace.
    #[error("no network link named {0}")]
    NotFound(String),
    /// An interface name longer than 15 bytes or otherwise invalid.
    #[error("invalid interface name {0:?} (1 to 15 bytes, no '/', ':' or whitespace)")]
    InvalidName(String),
    /// The kernel refused a request.
    #[error("could not {action} {link}: {source}")]
    Netlink {
        /// What was being done ("create bridge", "set master of"...).
        action: &'static str,
        /// The link (or address/route description) concerned.
        link: String,
        /// The kernel's answer (an errno).
        source: std::io::Error,
    },
}

impl LinkError {
    /// The errno of a kernel refusal, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Netlink { source, .. } => source.raw_os_error(),
            LinkError::NotFound(_) => Some(libc::ENODEV),
            _ => None,
        }
    }
}

/// Checks an interface name the way the kernel does (`dev_valid_name`).
pub fn check_ifname(name: &str) -> Result<(), LinkError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(LinkError::InvalidName(name.to_string()))
    }
}

/// Where [`Netlink::move_to_netns`] sends a link.
#[derive(Debug, Clone, Copy)]
pub enum NetnsTarget<'a> {
    /// The network namespace of an open nsfs file (`/run/netns/NAME`, `/proc/PID/ns/net`).
    Fd(BorrowedFd<'a>),
    /// The network namespace of a process.
    Pid(u32),
}

/// A route to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network and prefix length; `None` is the default route.
    pub destination: Option<(IpAddr, u8)>,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Outgoing link, if any (required when there is no gateway).
    pub device: Option<String>,
}

/// A link as listed by [`Netlink::links`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfoSummary {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Whether it is administratively up.
    pub up: bool,
    /// MTU, if reported.
    pub mtu: Option<u32>,
    /// Index of its master (bridge), if any.
    pub master: Option<u32>,
}

/// A synchronous rtnetlink socket bound to the network namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Netlink(fd {})", self.socket.as_raw_fd())
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Netlink {
    /// Opens a socket in the caller's network namespace.
    pub fn open() -> Result<Self, LinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(LinkError::Socket)?;
        socket.bind_auto().map_err(LinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(LinkError::Socket)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Opens a socket inside the named network namespace (on a helper thread; the caller's
    /// namespace does not change). Every request on it then acts in that namespace.
    pub fn open_in(netns: &str) -> Result<Self, LinkError> {
        crate::netns::in_netns(netns, Netlink::open)?
    }

    /// Opens a socket inside the network namespace of an nsfs path (`/proc/PID/ns/net`).
    pub fn open_at(netns_path: &std::path::Path) -> Result<Self, LinkError> {
        crate::netns::in_netns_path(netns_path, Netlink::open)?
    }

    /// Sends one request and collects the answers until the ack, the error or the end of a dump.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> std::io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut off = 0;
            while off < data.len() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[off..])
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                let len = m.header.length as usize;
                if len == 0 {
                    break;
                }
                off += align4(len);
                if m.header.sequence_number != seq {
                    continue; // a stale answer to an earlier request
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::InnerMessage(r) => out.push(r),
                    _ => {}
                }
            }
        }
    }

    fn act(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        action: &'static str,
        link: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        self.request(msg, flags).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENODEV) && action == "find" {
                LinkError::NotFound(link.to_string())
            } else {
                LinkError::Netlink {
                    action,
                    link: link.to_string(),
                    source,
                }
            }
        })
    }

    /// The interface index of a link.
    pub fn link_index(&mut self, name: &str) -> Result<u32, LinkError> {
        Ok(self.get_link(name)?.header.index)
    }

    /// The kernel's answer to `RTM_GETLINK` for one link by name.
    fn get_link(&mut self, name: &str) -> Result<LinkMessage, LinkError> {
        check_ifname(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answers = self.act(RouteNetlinkMessage::GetLink(m), 0, "find", name)?;
        answers
            .into_iter()
            .find_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .ok_or_else(|| LinkError::NotFound(name.to_string()))
    }

    /// Whether a link of that name exists.
    pub fn link_exists(&mut self, name: &str) -> Result<bool, LinkError> {
        match self.link_index(name) {
            Ok(_) => Ok(true),
            Err(LinkError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<LinkInfoSummary>, LinkError> {
        let answers = self.act(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "list",
            "links",
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => Some(summarize(l)),
                _ => None,
            })
            .collect())
    }

    /// One link's summary.
    pub fn link(&mut self, name: &str) -> Result<LinkInfoSummary, LinkError> {
        Ok(summarize(self.get_link(name)?))
    }

    fn new_link(
        &mut self,
        name: &str,
        info: Vec<LinkInfo>,
        action: &'static str,
    ) -> Result<(), LinkError> {
        check_ifname(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(info));
        self.act(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
            action,
            name,
        )?;
        Ok(())
    }

    /// Creates a Linux bridge (down; call [`Netlink::set_up`]).
    pub fn add_bridge(&mut self, name: &str) -> Result<(), LinkError> {
        self.new_link(
            name,
            vec![LinkInfo::Kind(InfoKind::Bridge)],
            "create bridge",
        )
    }

    /// Creates a veth pair `name` <-> `peer`. With `peer_netns`, the peer is created directly in
    /// that namespace (an nsfs fd, e.g. from [`crate::netns::open_netns`]), so it never appears
    /// in this one.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> Result<(), LinkError> {
        check_ifname(peer)?;
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        if let Some(fd) = peer_netns {
            p.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
        }
        self.new_link(
            name,
            vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
            ],
            "create veth pair",
        )
    }

    fn set_link(
        &mut self,
        name: &str,
        action: &'static str,
        edit: impl FnOnce(&mut LinkMessage),
    ) -> Result<(), LinkError> {
        let index = self.link_index(name)?;
        let mut m = LinkMessage::default();
        m.header.index = index;
        edit(&mut m);
        self.act(RouteNetlinkMessage::SetLink(m), 0, action, name)?;
        Ok(())
    }

    /// Attaches a link to a bridge (sets its master).
    pub fn set_master(&mut self, name: &str, bridge: &str) -> Result<(), LinkError> {
        let master = self.link_index(bridge)?;
        self.set_link(name, "attach to bridge", |m| {
            m.attributes.push(LinkAttribute::Controller(master))
        })
    }

    /// Detaches a link from its bridge.
    pub fn set_nomaster(&mut self, name: &str) -> Result<(), LinkError> {
        self.set_link(name, "detach from bridge", |m| {
            m.attributes.push(LinkAttribute::Controller(0))
        })
    }

    /// Sets a link administratively up.
    pub fn set_up(&mut self, name: &str) -> Result<(), LinkError> {
        self.set_link(name, "set up", |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets a link administratively down.
    pub fn set_down(&mut self, name: &str) -> Result<(), LinkError> {
        self.set_link(name, "set down", |m| {
            m.header.flags = LinkFlags::empty();
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), LinkError> {
        self.set_link(name, "set MTU of", |m| {
            m.attributes.push(LinkAttribute::Mtu(mtu))
        })
    }

    /// Renames a link (it must be down).
    pub fn rename(&mut self, name: &str, new_name: &str) -> Result<(), LinkError> {
        check_ifname(new_name)?;
        self.set_link(name, "rename", |m| {
            m.attributes
                .push(LinkAttribute::IfName(new_name.to_string()))
        })
    }

    /// Moves a link into another network namespace (it goes down there).
    pub fn move_to_netns(&mut self, name: &str, target: NetnsTarget<'_>) -> Result<(), LinkError> {
        self.set_link(name, "move to another netns", |m| {
            m.attributes.push(match target {
                NetnsTarget::Fd(fd) => LinkAttribute::NetNsFd(fd.as_raw_fd()),
                NetnsTarget::Pid(pid) => LinkAttribute::NetNsPid(pid),
            })
        })
    }

    /// Deletes a link (a veth's peer goes with it). A missing link is [`LinkError::Netlink`]
    /// with ENODEV (see [`LinkError::errno`]).
    pub fn delete_link(&mut self, name: &str) -> Result<(), LinkError> {
        check_ifname(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.act(RouteNetlinkMessage::DelLink(m), 0, "delete link", name)?;
        Ok(())
    }

    /// Adds an IPv4 or IPv6 address with its prefix length to a link.
    pub fn add_address(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), LinkError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let what = format!("{addr}/{prefix} on {name}");
        if prefix > max {
            return Err(LinkError::Netlink {
                action: "add address",
                link: what,
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        let index = self.link_index(name)?;
        let mut m = AddressMessage::default();
        m.header.family = family(addr);
        m.header.prefix_len = prefix;
        m.header.index = index;
        if addr.is_ipv4() {
            m.attributes.push(AddressAttribute::Local(addr));
        }
        m.attributes.push(AddressAttribute::Address(addr));
        self.act(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
            "add address",
            &what,
        )?;
        Ok(())
    }

    /// The addresses of a link, with their prefix lengths.
    pub fn addresses(&mut self, name: &str) -> Result<Vec<(IpAddr, u8)>, LinkError> {
        let index = self.link_index(name)?;
        let answers = self.act(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            "list addresses of",
            name,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewAddress(m) if m.header.index == index => {
                    m.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Adds a route in the main table.
    pub fn add_route(&mut self, route: &Route) -> Result<(), LinkError> {
        let what = describe_route(route);
        let probe = route
            .destination
            .map(|(a, _)| a)
            .or(route.gateway)
            .ok_or_else(|| LinkError::Netlink {
                action: "add route",
                link: what.clone(),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        let mut m = RouteMessage::default();
        m.header.address_family = family(probe);
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = if route.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        m.header.kind = RouteType::Unicast;
        if let Some((dst, len)) = route.destination {
            m.header.destination_prefix_length = len;
            m.attributes
                .push(RouteAttribute::Destination(route_address(dst)));
        }
        if let Some(gw) = route.gateway {
            m.attributes
                .push(RouteAttribute::Gateway(route_address(gw)));
        }
        if let Some(dev) = &route.device {
            let index = self.link_index(dev)?;
            m.attributes.push(RouteAttribute::Oif(index));
        }
        self.act(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
            "add route",
            &what,
        )?;
        Ok(())
    }

    /// Adds the default route via a gateway.
    pub fn add_default_route(&mut self, gateway: IpAddr) -> Result<(), LinkError> {
        self.add_route(&Route {
            destination: None,
            gateway: Some(gateway),
            device: None,
        })
    }
}

fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn route_address(addr: IpAddr) -> RouteAddress {
    match addr {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn describe_route(r: &Route) -> String {
    let mut s = match r.destination {
        Some((a, l)) => format!("route {a}/{l}"),
        None => "default route".to_string(),
    };
    if let Some(g) = r.gateway {
        s.push_str(&format!(" via {g}"));
    }
    if let Some(d) = &r.device {
        s.push_str(&format!(" dev {d}"));
    }
    s
}

fn summarize(l: LinkMessage) -> LinkInfoSummary {
    let mut s = LinkInfoSummary {
        index: l.header.index,
        name: String::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        mtu: None,
        master: None,
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => s.name = n,
            LinkAttribute::Mtu(m) => s.mtu = Some(m),
            LinkAttribute::Controller(c) if c != 0 => s.master = Some(c),
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok()); // 15 bytes
        for bad in ["", ".", "..", "abcdefghijklmnop", "a/b", "a:b", "a b"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routes_are_described_for_errors() {
        let r = Route {
            destination: Some(("10.1.0.0".parse().unwrap(), 16)),
            gateway: Some("10.0.0.1".parse().unwrap()),
            device: Some("eth0".into()),
        };
        assert_eq!(
            describe_route(&r),
            "route 10.1.0.0/16 via 10.0.0.1 dev eth0"
        );
    }

    #[test]
    fn loopback_is_found_in_the_callers_netns() {
        let mut nl = Netlink::open().unwrap();
        assert_eq!(nl.link_index("lo").unwrap(), 1);
        assert!(matches!(
            nl.link_index("cvnosuchlink"),
            Err(LinkError::NotFound(_))
        ));
    }
}
