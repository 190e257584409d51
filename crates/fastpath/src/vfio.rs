//! VFIO devices, against the kernel's documented ABI (include/uapi/linux/vfio.h,
//! Documentation/driver-api/vfio.rst): a container (/dev/vfio/vfio) holds an IOMMU context; a
//! group (/dev/vfio/N) is attached to it; devices of the group are opened by name
//! (`VFIO_GROUP_GET_DEVICE_FD`, e.g. "0000:06:0d.0"), their regions mapped at the offsets
//! `VFIO_DEVICE_GET_REGION_INFO` gives, and interrupts delivered to eventfds
//! (`VFIO_DEVICE_SET_IRQS`).
//!
//! The ioctl numbers and `#[repr(C)]` structs are checked against the header's layout by unit
//! tests; the /dev root is a parameter.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// `VFIO_TYPE` (`';'`).
pub const VFIO_TYPE: u32 = b';' as u32;
/// `VFIO_BASE`.
pub const VFIO_BASE: u32 = 100;

/// `_IO(VFIO_TYPE, VFIO_BASE + n)`: VFIO ioctls carry no size or direction bits.
pub const fn vfio_io(n: u32) -> libc::c_ulong {
    ((VFIO_TYPE << 8) | (VFIO_BASE + n)) as libc::c_ulong
}

/// `VFIO_GET_API_VERSION`.
pub const VFIO_GET_API_VERSION: libc::c_ulong = vfio_io(0);
/// `VFIO_CHECK_EXTENSION`.
pub const VFIO_CHECK_EXTENSION: libc::c_ulong = vfio_io(1);
/// `VFIO_SET_IOMMU`.
pub const VFIO_SET_IOMMU: libc::c_ulong = vfio_io(2);
/// `VFIO_GROUP_GET_STATUS`.
pub const VFIO_GROUP_GET_STATUS: libc::c_ulong = vfio_io(3);
/// `VFIO_GROUP_SET_CONTAINER`.
pub const VFIO_GROUP_SET_CONTAINER: libc::c_ulong = vfio_io(4);
/// `VFIO_GROUP_UNSET_CONTAINER`.
pub const VFIO_GROUP_UNSET_CONTAINER: libc::c_ulong = vfio_io(5);
/// `VFIO_GROUP_GET_DEVICE_FD`.
pub const VFIO_GROUP_GET_DEVICE_FD: libc::c_ulong = vfio_io(6);
/// `VFIO_DEVICE_GET_INFO`.
pub const VFIO_DEVICE_GET_INFO: libc::c_ulong = vfio_io(7);
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const VFIO_DEVICE_GET_REGION_INFO: libc::c_ulong = vfio_io(8);
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub const VFIO_DEVICE_GET_IRQ_INFO: libc::c_ulong = vfio_io(9);
/// `VFIO_DEVICE_SET_IRQS`.
pub const VFIO_DEVICE_SET_IRQS: libc::c_ulong = vfio_io(10);
/// `VFIO_DEVICE_RESET`.
pub const VFIO_DEVICE_RESET: libc::c_ulong = vfio_io(11);
/// `VFIO_IOMMU_MAP_DMA` (type 1 IOMMU).
pub const VFIO_IOMMU_MAP_DMA: libc::c_ulong = vfio_io(13);

/// `VFIO_API_VERSION`.
pub const VFIO_API_VERSION: i32 = 0;
/// `VFIO_TYPE1_IOMMU`.
pub const VFIO_TYPE1_IOMMU: libc::c_ulong = 1;
/// `VFIO_TYPE1v2_IOMMU`.
pub const VFIO_TYPE1V2_IOMMU: libc::c_ulong = 3;
/// `VFIO_GROUP_FLAGS_VIABLE`: every device of the group is bound to a VFIO driver.
pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
/// `VFIO_GROUP_FLAGS_CONTAINER_SET`.
pub const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;
/// `VFIO_REGION_INFO_FLAG_READ`.
pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
/// `VFIO_REGION_INFO_FLAG_WRITE`.
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
/// `VFIO_REGION_INFO_FLAG_MMAP`.
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
/// `VFIO_IRQ_SET_DATA_NONE`.
pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
/// `VFIO_IRQ_SET_DATA_EVENTFD`.
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
/// `VFIO_IRQ_SET_ACTION_TRIGGER`.
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
/// `VFIO_PCI_MSIX_IRQ_INDEX`.
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VfioGroupStatus {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_GROUP_FLAGS_*`.
    pub flags: u32,
}

/// `struct vfio_device_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VfioDeviceInfo {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_DEVICE_FLAGS_*` (PCI, platform, reset...).
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
    /// Offset of the first capability.
    pub cap_offset: u32,
    /// Padding.
    pub pad: u32,
}

/// `struct vfio_region_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VfioRegionInfo {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Region index (in).
    pub index: u32,
    /// Offset of the first capability.
    pub cap_offset: u32,
    /// Region size in bytes.
    pub size: u64,
    /// Offset of the region in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
}

impl VfioRegionInfo {
    /// The page-aligned `mmap` offset and length that cover `[at, at + len)` of this region,
    /// and where `at` lands inside that mapping; `None` if out of the region or not mappable.
    pub fn mmap_range(&self, at: u64, len: u64, page: u64) -> Option<(u64, usize, usize)> {
        if self.flags & VFIO_REGION_INFO_FLAG_MMAP == 0
            || len == 0
            || at.checked_add(len)? > self.size
        {
            return None;
        }
        let start = self.offset + at;
        let aligned = start / page * page;
        let end = (start + len).div_ceil(page) * page;
        Some((
            aligned,
            (end - aligned) as usize,
            (start - aligned) as usize,
        ))
    }
}

/// `struct vfio_irq_set` header; the data (here: eventfds as i32) follows it.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VfioIrqSet {
    /// Size of header + data.
    pub argsz: u32,
    /// `VFIO_IRQ_SET_DATA_*` | `VFIO_IRQ_SET_ACTION_*`.
    pub flags: u32,
    /// IRQ index (INTx, MSI, MSI-X...).
    pub index: u32,
    /// First vector.
    pub start: u32,
    /// Number of vectors.
    pub count: u32,
}

/// Builds the byte buffer of a `VFIO_DEVICE_SET_IRQS` that routes vectors
/// `start..start + fds.len()` of IRQ `index` to eventfds (-1 unroutes one).
pub fn irq_set_eventfds(index: u32, start: u32, fds: &[RawFd]) -> Vec<u8> {
    let hdr = std::mem::size_of::<VfioIrqSet>();
    let argsz = hdr + 4 * fds.len();
    let set = VfioIrqSet {
        argsz: argsz as u32,
        flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        index,
        start,
        count: fds.len() as u32,
    };
    let mut buf = Vec::with_capacity(argsz);
    for v in [set.argsz, set.flags, set.index, set.start, set.count] {
        buf.extend_from_slice(&v.to_ne_bytes());
    }
    for fd in fds {
        buf.extend_from_slice(&fd.to_ne_bytes());
    }
    buf
}

/// Errors of VFIO.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// The kernel has no VFIO.
    #[error("no VFIO: this kernel has no VFIO support ({0} missing)")]
    NoVfioSupport(PathBuf),
    /// No such IOMMU group.
    #[error("no VFIO group {group} ({path} missing: is a device of that IOMMU group bound to vfio-pci?)")]
    NoGroup {
        /// The group number.
        group: u32,
        /// Its device node.
        path: PathBuf,
    },
    /// The kernel speaks another VFIO API version.
    #[error("VFIO API version {0}, expected {VFIO_API_VERSION}")]
    ApiVersion(i32),
    /// The group has a device not bound to a VFIO driver.
    #[error("VFIO group {0} is not viable: bind every device of the group to vfio-pci")]
    NotViable(u32),
    /// An ioctl or open failed.
    #[error("VFIO {what}: {action} failed: {source}")]
    Io {
        /// The container, group or device.
        what: String,
        /// The operation.
        action: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

fn ioctl_ret(r: libc::c_int, what: &str, action: &'static str) -> Result<libc::c_int, VfioError> {
    if r < 0 {
        Err(VfioError::Io {
            what: what.to_string(),
            action,
            source: std::io::Error::last_os_error(),
        })
    } else {
        Ok(r)
    }
}

/// A VFIO container (/dev/vfio/vfio).
#[derive(Debug)]
pub struct VfioContainer {
    file: File,
}

impl VfioContainer {
    /// Opens the container under /dev and checks the API version.
    pub fn open() -> Result<Self, VfioError> {
        Self::open_at(Path::new("/dev"))
    }

    /// Like [`VfioContainer::open`] with another /dev root (tests).
    pub fn open_at(dev_root: &Path) -> Result<Self, VfioError> {
        let path = dev_root.join("vfio/vfio");
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    VfioError::NoVfioSupport(path.clone())
                } else {
                    VfioError::Io {
                        what: path.display().to_string(),
                        action: "open",
                        source,
                    }
                }
            })?;
        // SAFETY: VFIO_GET_API_VERSION takes no argument.
        let v = unsafe { libc::ioctl(file.as_raw_fd(), VFIO_GET_API_VERSION as _) };
        let v = ioctl_ret(v, "container", "VFIO_GET_API_VERSION")?;
        if v != VFIO_API_VERSION {
            return Err(VfioError::ApiVersion(v));
        }
        Ok(VfioContainer { file })
    }

    /// Whether the container supports an extension (an IOMMU type).
    pub fn check_extension(&self, ext: libc::c_ulong) -> Result<bool, VfioError> {
        // SAFETY: VFIO_CHECK_EXTENSION takes the extension number by value.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), VFIO_CHECK_EXTENSION as _, ext) };
        Ok(ioctl_ret(r, "container", "VFIO_CHECK_EXTENSION")? > 0)
    }

    /// Sets the IOMMU model (after a group is attached).
    pub fn set_iommu(&self, kind: libc::c_ulong) -> Result<(), VfioError> {
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), VFIO_SET_IOMMU as _, kind) };
        ioctl_ret(r, "container", "VFIO_SET_IOMMU").map(drop)
    }
}

/// A VFIO group (/dev/vfio/N) attached to a container.
#[derive(Debug)]
pub struct VfioGroup {
    group: u32,
    file: File,
}

impl VfioGroup {
    /// Opens group `group`, checks it is viable, attaches it to `container` and, if the
    /// container has no IOMMU model yet, sets type 1 (v2 when offered).
    pub fn open(container: &VfioContainer, group: u32) -> Result<Self, VfioError> {
        Self::open_at(Path::new("/dev"), container, group)
    }

    /// Like [`VfioGroup::open`] with another /dev root (tests).
    pub fn open_at(
        dev_root: &Path,
        container: &VfioContainer,
        group: u32,
    ) -> Result<Self, VfioError> {
        let path = dev_root.join(format!("vfio/{group}"));
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    VfioError::NoGroup {
                        group,
                        path: path.clone(),
                    }
                } else {
                    VfioError::Io {
                        what: path.display().to_string(),
                        action: "open",
                        source,
                    }
                }
            })?;
        let what = format!("group {group}");
        let mut st = VfioGroupStatus {
            argsz: std::mem::size_of::<VfioGroupStatus>() as u32,
            flags: 0,
        };
        // SAFETY: st is a valid vfio_group_status with argsz set.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), VFIO_GROUP_GET_STATUS as _, &mut st) };
        ioctl_ret(r, &what, "VFIO_GROUP_GET_STATUS")?;
        if st.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioError::NotViable(group));
        }
        if st.flags & VFIO_GROUP_FLAGS_CONTAINER_SET == 0 {
            let cfd: RawFd = container.file.as_raw_fd();
            // SAFETY: VFIO_GROUP_SET_CONTAINER takes a pointer to the container fd.
            let r = unsafe { libc::ioctl(file.as_raw_fd(), VFIO_GROUP_SET_CONTAINER as _, &cfd) };
            ioctl_ret(r, &what, "VFIO_GROUP_SET_CONTAINER")?;
            let kind = if container.check_extension(VFIO_TYPE1V2_IOMMU)? {
                VFIO_TYPE1V2_IOMMU
            } else {
                VFIO_TYPE1_IOMMU
            };
            container.set_iommu(kind)?;
        }
        Ok(VfioGroup { group, file })
    }

    /// Opens a device of the group by name (a PCI address such as "0000:06:0d.0").
    pub fn device(&self, name: &str) -> Result<VfioDevice, VfioError> {
        let what = format!("device {name} in group {}", self.group);
        let c = std::ffi::CString::new(name).map_err(|_| VfioError::Io {
            what: what.clone(),
            action: "name",
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD takes a NUL-terminated device name.
        let fd = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                VFIO_GROUP_GET_DEVICE_FD as _,
                c.as_ptr(),
            )
        };
        let fd = ioctl_ret(fd, &what, "VFIO_GROUP_GET_DEVICE_FD")?;
        // SAFETY: the ioctl returned a new fd that we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = File::from(fd);
        let mut info = VfioDeviceInfo {
            argsz: std::mem::size_of::<VfioDeviceInfo>() as u32,
            ..Default::default()
        };
        // SAFETY: info is a valid vfio_device_info with argsz set.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), VFIO_DEVICE_GET_INFO as _, &mut info) };
        ioctl_ret(r, &what, "VFIO_DEVICE_GET_INFO")?;
        Ok(VfioDevice { what, file, info })
    }
}

/// An open VFIO device.
#[derive(Debug)]
pub struct VfioDevice {
    what: String,
    file: File,
    info: VfioDeviceInfo,
}

impl VfioDevice {
    /// What `VFIO_DEVICE_GET_INFO` said.
    pub fn info(&self) -> VfioDeviceInfo {
        self.info
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` of region `index`.
    pub fn region_info(&self, index: u32) -> Result<VfioRegionInfo, VfioError> {
        let mut r = VfioRegionInfo {
            argsz: std::mem::size_of::<VfioRegionInfo>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: r is a valid vfio_region_info with argsz and index set.
        let ret = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                VFIO_DEVICE_GET_REGION_INFO as _,
                &mut r,
            )
        };
        ioctl_ret(ret, &self.what, "VFIO_DEVICE_GET_REGION_INFO")?;
        Ok(r)
    }

    /// Maps a whole mappable region (a BAR), read/write and shared; unmapped on drop.
    pub fn map_region(&self, index: u32) -> Result<VfioMapping, VfioError> {
        let info = self.region_info(index)?;
        let page = crate::memory::page_size() as u64;
        let Some((off, len, _)) = info.mmap_range(0, info.size, page) else {
            return Err(VfioError::Io {
                what: self.what.clone(),
                action: "map a region that is not mappable",
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        };
        // At the offset the kernel gave for the region.
        let p = crate::memory::map_shared(self.file.as_fd(), len, off, 0).map_err(|source| {
            VfioError::Io {
                what: self.what.clone(),
                action: "mmap",
                source,
            }
        })?;
        Ok(VfioMapping {
            base: p,
            len,
            size: info.size as usize,
        })
    }

    /// Routes IRQ vectors to eventfds (`VFIO_DEVICE_SET_IRQS`, DATA_EVENTFD | ACTION_TRIGGER).
    pub fn set_irq_eventfds(&self, index: u32, start: u32, fds: &[RawFd]) -> Result<(), VfioError> {
        let mut buf = irq_set_eventfds(index, start, fds);
        // SAFETY: buf is a complete vfio_irq_set (header + count i32s) of argsz bytes.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                VFIO_DEVICE_SET_IRQS as _,
                buf.as_mut_ptr(),
            )
        };
        ioctl_ret(r, &self.what, "VFIO_DEVICE_SET_IRQS").map(drop)
    }
}

/// A mapped VFIO region, unmapped on drop. Device memory: access it with volatile reads and
/// writes ([`VfioMapping::read_u32`], [`VfioMapping::write_u32`]).
#[derive(Debug)]
pub struct VfioMapping {
    base: *mut u8,
    len: usize,
    size: usize,
}

impl VfioMapping {
    /// The start of the region.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base
    }

    /// The region's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Reads a u32 register `off` bytes into the region.
    pub fn read_u32(&self, off: usize) -> u32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.size,
            "register {off:#x} out of range"
        );
        // SAFETY: in bounds and aligned (checked); volatile because it is device memory.
        unsafe { std::ptr::read_volatile(self.base.add(off).cast::<u32>()) }
    }

    /// Writes a u32 register `off` bytes into the region.
    pub fn write_u32(&self, off: usize, v: u32) {
        assert!(
            off % 4 == 0 && off + 4 <= self.size,
            "register {off:#x} out of range"
        );
        // SAFETY: in bounds and aligned (checked); volatile because it is device memory.
        unsafe { std::ptr::write_volatile(self.base.add(off).cast::<u32>(), v) }
    }
}

impl Drop for VfioMapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made by map_region, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// An eventfd for interrupts: [`EventFd::wait`] blocks until the kernel signals it and returns
/// how many signals arrived since the last wait.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new blocking eventfd.
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd takes plain arguments and returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Its raw fd (for [`VfioDevice::set_irq_eventfds`]).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Blocks until signalled; returns the count (and resets it).
    pub fn wait(&self) -> std::io::Result<u64> {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into v.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        if r != 8 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(v)
    }

    /// Signals it (what the kernel does on an interrupt).
    pub fn signal(&self) -> std::io::Result<()> {
        let v = 1u64;
        // SAFETY: writes 8 bytes from v.
        let r = unsafe { libc::write(self.fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
        if r != 8 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn ioctl_numbers_match_vfio_h() {
        // _IO(';', 100 + n) = 0x3b00 | (100 + n)
        assert_eq!(VFIO_GET_API_VERSION, 0x3b64);
        assert_eq!(VFIO_CHECK_EXTENSION, 0x3b65);
        assert_eq!(VFIO_SET_IOMMU, 0x3b66);
        assert_eq!(VFIO_GROUP_GET_STATUS, 0x3b67);
        assert_eq!(VFIO_GROUP_SET_CONTAINER, 0x3b68);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3b71);
    }

    #[test]
    fn struct_layouts_match_vfio_h() {
        assert_eq!(size_of::<VfioGroupStatus>(), 8);
        assert_eq!(size_of::<VfioDeviceInfo>(), 24);
        assert_eq!(offset_of!(VfioDeviceInfo, num_regions), 8);
        assert_eq!(offset_of!(VfioDeviceInfo, cap_offset), 16);
        assert_eq!(size_of::<VfioRegionInfo>(), 32);
        assert_eq!(offset_of!(VfioRegionInfo, index), 8);
        assert_eq!(offset_of!(VfioRegionInfo, size), 16);
        assert_eq!(offset_of!(VfioRegionInfo, offset), 24);
        assert_eq!(size_of::<VfioIrqSet>(), 20);
        assert_eq!(offset_of!(VfioIrqSet, count), 16);
    }

    #[test]
    fn irq_set_buffer_is_header_then_fds() {
        let b = irq_set_eventfds(VFIO_PCI_MSIX_IRQ_INDEX, 3, &[10, -1]);
        assert_eq!(b.len(), 28);
        let w = |i: usize| u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(w(0), 28); // argsz
        assert_eq!(
            w(1),
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER
        );
        assert_eq!((w(2), w(3), w(4)), (2, 3, 2));
        assert_eq!(w(5) as i32, 10);
        assert_eq!(w(6) as i32, -1);
    }

    #[test]
    fn region_offset_math() {
        // vfio-pci puts region N at N << 40 in the device fd.
        let r = VfioRegionInfo {
            argsz: 32,
            flags: VFIO_REGION_INFO_FLAG_READ
                | VFIO_REGION_INFO_FLAG_WRITE
                | VFIO_REGION_INFO_FLAG_MMAP,
            index: 2,
            cap_offset: 0,
            size: 0x4000,
            offset: 2 << 40,
        };
        assert_eq!(r.mmap_range(0, 0x4000, 4096), Some((2 << 40, 0x4000, 0)));
        // A register window in the middle: aligned down, spills into the next page.
        assert_eq!(
            r.mmap_range(0x1ff8, 0x10, 4096),
            Some(((2 << 40) + 0x1000, 0x2000, 0xff8))
        );
        assert_eq!(r.mmap_range(0x3ff0, 0x20, 4096), None, "past the end");
        let not_mappable = VfioRegionInfo {
            flags: VFIO_REGION_INFO_FLAG_READ,
            ..r
        };
        assert_eq!(not_mappable.mmap_range(0, 16, 4096), None);
    }

    #[test]
    fn absent_vfio_is_reported_plainly() {
        let t = tempfile::tempdir().unwrap();
        let e = VfioContainer::open_at(t.path()).unwrap_err();
        assert!(matches!(e, VfioError::NoVfioSupport(_)));
        assert!(
            e.to_string()
                .starts_with("no VFIO: this kernel has no VFIO support"),
            "{e}"
        );
        if !Path::new("/dev/vfio/vfio").exists() {
            assert!(matches!(
                VfioContainer::open(),
                Err(VfioError::NoVfioSupport(_))
            ));
        }
    }

    #[test]
    fn eventfds_count_signals() {
        let e = EventFd::new().unwrap();
        e.signal().unwrap();
        e.signal().unwrap();
        assert_eq!(e.wait().unwrap(), 2);
    }
}
