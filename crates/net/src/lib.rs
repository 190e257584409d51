//! carve: netlink — bridges, veths, taps, addresses, routes and named network namespaces, without
//! running `ip`.
//!
//! # Tour
//! - [`netns`]: named network namespaces as iproute2 keeps them (`/run/netns/NAME`):
//!   [`create_netns`], [`delete_netns`], [`open_netns`], and [`in_netns`], which runs a closure on
//!   a dedicated thread inside a namespace so the caller's own namespace never changes.
//! - [`link`]: [`Netlink`], a synchronous rtnetlink socket bound to the namespace it was opened
//!   in ([`Netlink::open`] here, [`Netlink::open_in`] inside a named namespace): bridges, veth
//!   pairs (peer made directly in another namespace), master, up/down, MTU, rename, move to a
//!   namespace, delete; IPv4/IPv6 addresses; routes.
//! - [`tap`]: TAP devices through /dev/net/tun, persistent (QEMU opens them by name) or handed
//!   over as an fd.
//! - [`journal_undo`]: what the host change journal calls to undo a recorded link or namespace.
//!
//! Callers record a `carve_journal::Change::Link` / `Change::Netns` *before* creating it.
//!
//! ```no_run
//! use carve_net::{create_netns, in_netns, tap, Netlink};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! create_netns("carve-demo")?;
//! let mut nl = Netlink::open_in("carve-demo")?;
//! nl.add_bridge("carve0")?;
//! nl.set_up("carve0")?;
//! in_netns("carve-demo", || tap::create_tap("tap-vm0", &Default::default()))??;
//! nl.set_master("tap-vm0", "carve0")?;
//! nl.set_up("tap-vm0")?;
//! # Ok(()) }
//! ```

pub mod link;
pub mod netns;
pub mod tap;

pub use link::{LinkError, Netlink, NetnsTarget, Route};
pub use netns::{
    create_netns, delete_netns, in_netns, in_netns_path, netns_exists, open_netns, NetnsError,
    NetnsGuard,
};
pub use tap::{create_tap, Tap, TapError, TapOptions};

/// Undoes a journal's `Link` or `Netns` change (given to `carve_journal::Journal::with_link_undo`).
///
/// A link that is already gone (ENODEV), or whose namespace is gone, counts as undone; so does a
/// namespace that no longer exists.
pub fn journal_undo(change: &carve_journal::Change) -> Result<(), carve_journal::ChangeError> {
    use carve_journal::{Change, ChangeError};
    match change {
        Change::Link { name, netns } => {
            let nl = match netns {
                Some(ns) => match Netlink::open_in(ns) {
                    Err(LinkError::Netns(NetnsError::NotFound(_))) => return Ok(()),
                    r => r,
                },
                None => Netlink::open(),
            };
            let mut nl = nl.map_err(|e| ChangeError::Link(e.into()))?;
            match nl.delete_link(name) {
                Ok(()) => Ok(()),
                Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
                Err(e) => Err(ChangeError::Link(e.into())),
            }
        }
        Change::Netns { name } => match delete_netns(name) {
            Ok(()) | Err(NetnsError::NotFound(_)) => Ok(()),
            Err(e) => Err(ChangeError::Link(e.into())),
        },
        other => Err(ChangeError::NotNetwork(Box::new(other.clone()))),
    }
}
