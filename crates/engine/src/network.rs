//! Partition networking: a bridge per plan network (optionally in its own namespace), and for
//! each attached container a namespace of its own holding `eth0`, the peer of a veth whose other
//! end sits on the bridge. Every link and namespace is recorded in the journal before it is made.

use crate::spec::{Attachment, NetworkSpec, PlanSpec};
use carve_journal::{Change, Journal};
use carve_net::{create_netns, netns_exists, open_netns, Netlink};
use std::net::IpAddr;
use std::os::fd::AsFd;

/// A network step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request failed.
    #[error("network {network}: {source}")]
    Link {
        /// The bridge or link concerned.
        network: String,
        /// The cause.
        source: carve_net::LinkError,
    },
    /// A namespace could not be made or opened.
    #[error("network {network}: {source}")]
    Netns {
        /// The bridge or link concerned.
        network: String,
        /// The cause.
        source: carve_net::NetnsError,
    },
    /// The journal refused the record.
    #[error("network {network}: {source}")]
    Journal {
        /// The bridge or link concerned.
        network: String,
        /// The cause.
        source: carve_journal::Error,
    },
    /// The partition names a bridge the plan does not have.
    #[error("partition {partition}: no network {bridge} in the plan")]
    NoBridge {
        /// The partition.
        partition: String,
        /// The bridge it names.
        bridge: String,
    },
}

/// The named network namespace of a container partition (`carve-PLAN-PART`).
pub fn container_netns(plan: &str, part: &str) -> String {
    format!("carve-{plan}-{part}")
}

/// The host-side veth name of a container partition: `cv` and a hash of plan and partition,
/// always a valid interface name (≤ 15 bytes), stable for the plan.
pub fn veth_name(plan: &str, part: &str) -> String {
    // FNV-1a: small, stable across runs and builds.
    let mut h: u32 = 0x811c_9dc5;
    for b in plan.bytes().chain([b'/']).chain(part.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("cv{h:08x}")
}

fn open(ns: Option<&str>, network: &str) -> Result<Netlink, NetError> {
    match ns {
        Some(ns) => Netlink::open_in(ns),
        None => Netlink::open(),
    }
    .map_err(|source| NetError::Link {
        network: network.to_string(),
        source,
    })
}

fn link_err(network: &str) -> impl FnOnce(carve_net::LinkError) -> NetError + '_ {
    move |source| NetError::Link {
        network: network.to_string(),
        source,
    }
}

fn journal_err(network: &str) -> impl FnOnce(carve_journal::Error) -> NetError + '_ {
    move |source| NetError::Journal {
        network: network.to_string(),
        source,
    }
}

/// Makes a network namespace unless it exists (a namespace the user made stays theirs).
fn ensure_netns(journal: &mut Journal, name: &str, network: &str) -> Result<bool, NetError> {
    if netns_exists(name) {
        return Ok(false);
    }
    journal
        .record(Change::Netns {
            name: name.to_string(),
        })
        .map_err(journal_err(network))?;
    create_netns(name).map_err(|source| NetError::Netns {
        network: network.to_string(),
        source,
    })?;
    Ok(true)
}

/// Makes the bridge of `net` (and its namespace when missing), up, with its gateway address.
/// Returns the namespaces carve created.
pub fn create_bridge(journal: &mut Journal, net: &NetworkSpec) -> Result<Vec<String>, NetError> {
    let mut made = Vec::new();
    if let Some(ns) = &net.namespace {
        if ensure_netns(journal, ns, &net.name)? {
            made.push(ns.clone());
        }
    }
    let mut nl = open(net.namespace.as_deref(), &net.name)?;
    journal
        .record(Change::Link {
            name: net.name.clone(),
            netns: net.namespace.clone(),
        })
        .map_err(journal_err(&net.name))?;
    nl.add_bridge(&net.name).map_err(link_err(&net.name))?;
    if let Some(gw) = net.gateway {
        nl.add_address(&net.name, IpAddr::V4(gw), net.prefix)
            .map_err(link_err(&net.name))?;
    }
    nl.set_up(&net.name).map_err(link_err(&net.name))?;
    Ok(made)
}

/// Gives container partition `part` of `plan` its network: its own namespace (returned), a veth
/// whose host end is on the bridge and whose peer is `eth0` in that namespace, with the
/// partition's address, loopback up and a default route through the gateway when there is one.
pub fn attach_container(
    journal: &mut Journal,
    plan: &PlanSpec,
    part: &str,
    att: &Attachment,
) -> Result<String, NetError> {
    let net = plan
        .network(&att.bridge)
        .ok_or_else(|| NetError::NoBridge {
            partition: part.to_string(),
            bridge: att.bridge.clone(),
        })?;
    let ns = container_netns(&plan.name, part);
    ensure_netns(journal, &ns, part)?;
    let host_end = veth_name(&plan.name, part);
    let mut nl = open(net.namespace.as_deref(), &net.name)?;
    let nsfile = open_netns(&ns).map_err(|source| NetError::Netns {
        network: part.to_string(),
        source,
    })?;
    journal
        .record(Change::Link {
            name: host_end.clone(),
            netns: net.namespace.clone(),
        })
        .map_err(journal_err(part))?;
    nl.add_veth(&host_end, "eth0", Some(nsfile.as_fd()))
        .map_err(link_err(part))?;
    nl.set_master(&host_end, &net.name)
        .map_err(link_err(part))?;
    nl.set_up(&host_end).map_err(link_err(part))?;
    let mut inner = open(Some(&ns), part)?;
    inner.set_up("lo").map_err(link_err(part))?;
    inner
        .add_address("eth0", IpAddr::V4(att.address), att.prefix)
        .map_err(link_err(part))?;
    inner.set_up("eth0").map_err(link_err(part))?;
    if let Some(gw) = att.gateway.or(net.gateway) {
        inner
            .add_default_route(IpAddr::V4(gw))
            .map_err(link_err(part))?;
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_valid_stable_and_distinct() {
        let a = veth_name("demo", "control");
        assert_eq!(a, veth_name("demo", "control"));
        assert!(a.len() <= 15 && a.starts_with("cv"));
        carve_net::link::check_ifname(&a).unwrap();
        assert_ne!(a, veth_name("demo", "control2"));
        assert_ne!(veth_name("de", "mo/x"), veth_name("demo", "x"));
    }
}
