//! TAP devices through /dev/net/tun: made persistent so QEMU can open them by name
//! (`-netdev tap,ifname=NAME,script=no,downscript=no`), or kept open so QEMU gets the fd
//! (`-netdev tap,fd=N`).
//!
//! A tap lives in the network namespace of the thread that opened /dev/net/tun: to make one
//! inside a named namespace, call [`create_tap`] inside [`crate::netns::in_netns`].

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
pub const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `TUNSETPERSIST` = `_IOW('T', 203, int)`.
pub const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
/// `TUNSETOWNER` = `_IOW('T', 204, int)`.
pub const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
/// `IFF_TAP`: an Ethernet (layer 2) device.
pub const IFF_TAP: libc::c_short = 0x0002;
/// `IFF_NO_PI`: no packet-information prefix on reads and writes.
pub const IFF_NO_PI: libc::c_short = 0x1000;
/// `IFF_VNET_HDR`: a virtio-net header on each packet (QEMU's vhost/offload path).
pub const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `IFF_MULTI_QUEUE`: several queues (one fd each).
pub const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

/// Errors of tap creation.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// A bad interface name.
    #[error(transparent)]
    Name(#[from] crate::link::LinkError),
    /// /dev/net/tun could not be opened.
    #[error("tap {name}: could not open /dev/net/tun: {source}")]
    Open {
        /// The tap.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An ioctl on the tun device failed.
    #[error("tap {name}: {ioctl} failed: {source}")]
    Ioctl {
        /// The tap.
        name: String,
        /// Which ioctl.
        ioctl: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// How to make a tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOptions {
    /// Ask for virtio-net headers (`IFF_VNET_HDR`); QEMU enables them itself when it opens the
    /// device by name, so this matters only when handing the fd over.
    pub vnet_hdr: bool,
    /// Keep the device when the fd is closed (`TUNSETPERSIST`), so QEMU can open it by name.
    /// A persistent tap is removed with [`crate::link::Netlink::delete_link`].
    pub persist: bool,
    /// Multi-queue device (QEMU's `queues=`); must match what QEMU asks for.
    pub multi_queue: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            vnet_hdr: false,
            persist: true,
            multi_queue: false,
        }
    }
}

/// The `struct ifreq` prefix TUNSETIFF reads (name, flags), padded to the kernel's 40 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open tap device.
#[derive(Debug)]
pub struct Tap {
    name: String,
    file: File,
}

impl Tap {
    /// Its interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tun fd (for QEMU's `fd=`: clear its close-on-exec flag in the child).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Gives up the handle, keeping the fd.
    pub fn into_file(self) -> File {
        self.file
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The TUNSETIFF flags for these options.
pub fn tap_flags(opts: &TapOptions) -> libc::c_short {
    let mut f = IFF_TAP | IFF_NO_PI;
    if opts.vnet_hdr {
        f |= IFF_VNET_HDR;
    }
    if opts.multi_queue {
        f |= IFF_MULTI_QUEUE;
    }
    f
}

/// Creates (or attaches to an existing persistent) tap `name` in the calling thread's network
/// namespace. The device starts down and without a master: use [`crate::link::Netlink`] to put
/// it on a bridge and set it up.
pub fn create_tap(name: &str, opts: &TapOptions) -> Result<Tap, TapError> {
    crate::link::check_ifname(name)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|source| TapError::Open {
            name: name.to_string(),
            source,
        })?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: tap_flags(opts),
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let ioctl_err = |ioctl| {
        let source = std::io::Error::last_os_error();
        move || TapError::Ioctl {
            name: name.to_string(),
            ioctl,
            source,
        }
    };
    // SAFETY: req is a valid, initialized 40-byte ifreq that outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) } != 0 {
        return Err(ioctl_err("TUNSETIFF")());
    }
    if opts.persist {
        // SAFETY: TUNSETPERSIST takes an integer argument by value.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETPERSIST as _, 1 as libc::c_ulong) } != 0 {
            return Err(ioctl_err("TUNSETPERSIST")());
        }
    }
    let len = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(libc::IFNAMSIZ);
    Ok(Tap {
        name: String::from_utf8_lossy(&req.name[..len]).into_owned(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        // _IOW(type, nr, int) = (1 << 30) | (sizeof(int) << 16) | (type << 8) | nr
        let iow = |nr: u64| ((1u64 << 30) | (4 << 16) | ((b'T' as u64) << 8) | nr) as libc::c_ulong;
        assert_eq!(TUNSETIFF, iow(202));
        assert_eq!(TUNSETPERSIST, iow(203));
        assert_eq!(TUNSETOWNER, iow(204));
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(tap_flags(&TapOptions::default()), 0x1002);
        let all = TapOptions {
            vnet_hdr: true,
            persist: true,
            multi_queue: true,
        };
        assert_eq!(tap_flags(&all), 0x5102);
    }
}
