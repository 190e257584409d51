//! UIO (userspace I/O) devices, against the kernel's documented ABI
//! (Documentation/driver-api/uio-howto.rst):
//! - `/sys/class/uio/uioN/maps/mapM/{addr,size,offset,name}` describe the device's memory regions;
//! - region M is mapped by `mmap(/dev/uioN, offset = M * page_size)`; the region's own `offset`
//!   is where the device memory starts inside that first page;
//! - `read()` of 4 bytes blocks until an interrupt and returns the total interrupt count (u32);
//! - `write()` of a u32 1 re-enables the interrupt (for drivers with `irqcontrol`).
//!
//! The sysfs and /dev roots are parameters, so the logic is tested against a directory tree.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Errors of UIO devices.
#[derive(Debug, thiserror::Error)]
pub enum UioError {
    /// The kernel has no UIO at all.
    #[error("no UIO device uio{0}: this kernel has no UIO support (/sys/class/uio missing)")]
    NoUioSupport(u32),
    /// UIO exists, but not this device.
    #[error("no UIO device uio{index} (present: {present})")]
    NoDevice {
        /// The device number asked for.
        index: u32,
        /// The devices that exist.
        present: String,
    },
    /// The device has no such memory map.
    #[error("UIO device uio{index} has no map{map}")]
    NoMap {
        /// Device number.
        index: u32,
        /// Map number.
        map: u32,
    },
    /// A sysfs attribute could not be read or parsed.
    #[error("UIO sysfs attribute {path}: {reason}")]
    Sysfs {
        /// The attribute file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A system call on the device failed.
    #[error("UIO device {path}: could not {action}: {source}")]
    Io {
        /// The device node.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// One memory region of a UIO device, from sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UioMapInfo {
    /// Map number M (mapM).
    pub index: u32,
    /// Its name, if the driver gave one.
    pub name: String,
    /// Physical (or logical) address of the region.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region inside its first page (sysfs `offset`).
    pub offset: u64,
}

impl UioMapInfo {
    /// The `mmap` offset that selects this map on /dev/uioN: M pages.
    pub fn mmap_offset(&self, page_size: usize) -> u64 {
        u64::from(self.index) * page_size as u64
    }

    /// How many bytes to map so that `offset + size` is covered, rounded up to whole pages.
    pub fn mmap_len(&self, page_size: usize) -> usize {
        let need = (self.offset + self.size) as usize;
        need.div_ceil(page_size) * page_size
    }
}

/// Parses a sysfs number: `0x`-prefixed hex (addr, size, offset) or decimal.
pub fn parse_sysfs_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// An open UIO device.
#[derive(Debug)]
pub struct UioDevice {
    index: u32,
    dev_path: PathBuf,
    file: File,
    maps: Vec<UioMapInfo>,
}

impl UioDevice {
    /// Opens /dev/uioN, reading its maps from /sys/class/uio/uioN.
    pub fn open(index: u32) -> Result<Self, UioError> {
        Self::open_at(Path::new("/sys"), Path::new("/dev"), index)
    }

    /// Like [`UioDevice::open`] with other sysfs and /dev roots (tests).
    pub fn open_at(sys_root: &Path, dev_root: &Path, index: u32) -> Result<Self, UioError> {
        let class = sys_root.join("class/uio");
        if !class.is_dir() {
            return Err(UioError::NoUioSupport(index));
        }
        let dir = class.join(format!("uio{index}"));
        if !dir.is_dir() {
            let mut present: Vec<String> = std::fs::read_dir(&class)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            present.sort();
            return Err(UioError::NoDevice {
                index,
                present: if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
            });
        }
        let maps = read_maps(&dir.join("maps"))?;
        let dev_path = dev_root.join(format!("uio{index}"));
        let file = File::options()
            .read(true)
            .write(true)
            .open(&dev_path)
            .map_err(|source| UioError::Io {
                path: dev_path.clone(),
                action: "open",
                source,
            })?;
        Ok(UioDevice {
            index,
            dev_path,
            file,
            maps,
        })
    }

    /// The device's memory regions.
    pub fn maps(&self) -> &[UioMapInfo] {
        &self.maps
    }

    /// Maps region `map` (read/write, shared). The returned [`UioMapping`] points at the start
    /// of the device memory (the sysfs offset is applied).
    pub fn map(&self, map: u32) -> Result<UioMapping, UioError> {
        let info = self
            .maps
            .iter()
            .find(|m| m.index == map)
            .ok_or(UioError::NoMap {
                index: self.index,
                map,
            })?
            .clone();
        let page = crate::memory::page_size();
        let len = info.mmap_len(page);
        // The documented offset selects the map.
        let p = crate::memory::map_shared(self.file.as_fd(), len, info.mmap_offset(page), 0)
            .map_err(|source| UioError::Io {
                path: self.dev_path.clone(),
                action: "mmap",
                source,
            })?;
        Ok(UioMapping { base: p, len, info })
    }

    /// Blocks until the next interrupt; returns the device's total interrupt count.
    pub fn wait_interrupt(&mut self) -> Result<u32, UioError> {
        let mut b = [0u8; 4];
        self.file
            .read_exact(&mut b)
            .map_err(|source| UioError::Io {
                path: self.dev_path.clone(),
                action: "wait for an interrupt (read)",
                source,
            })?;
        Ok(u32::from_ne_bytes(b))
    }

    /// Re-enables the interrupt (writes a u32 1; needs a driver with irqcontrol).
    pub fn enable_interrupt(&mut self) -> Result<(), UioError> {
        self.file
            .write_all(&1u32.to_ne_bytes())
            .map_err(|source| UioError::Io {
                path: self.dev_path.clone(),
                action: "re-enable the interrupt (write)",
                source,
            })
    }
}

fn read_maps(maps_dir: &Path) -> Result<Vec<UioMapInfo>, UioError> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(maps_dir) else {
        return Ok(out); // a device without memory maps (interrupts only)
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(index) = name.strip_prefix("map").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let num = |attr: &str| -> Result<u64, UioError> {
            let path = e.path().join(attr);
            let s = std::fs::read_to_string(&path).map_err(|err| UioError::Sysfs {
                path: path.clone(),
                reason: err.to_string(),
            })?;
            parse_sysfs_u64(&s).ok_or(UioError::Sysfs {
                path,
                reason: format!("not a number: {:?}", s.trim()),
            })
        };
        out.push(UioMapInfo {
            index,
            name: std::fs::read_to_string(e.path().join("name"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            addr: num("addr")?,
            size: num("size")?,
            // Older kernels have no `offset` attribute: the region is page-aligned.
            offset: if e.path().join("offset").exists() {
                num("offset")?
            } else {
                0
            },
        });
    }
    out.sort_by_key(|m| m.index);
    Ok(out)
}

/// A mapped UIO region, unmapped on drop.
#[derive(Debug)]
pub struct UioMapping {
    base: *mut u8,
    len: usize,
    info: UioMapInfo,
}

impl UioMapping {
    /// The region's description.
    pub fn info(&self) -> &UioMapInfo {
        &self.info
    }

    /// Pointer to the device memory (base of the mapping + sysfs offset). Device registers must
    /// be accessed with volatile reads and writes.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: offset < len by construction of mmap_len.
        unsafe { self.base.add(self.info.offset as usize) }
    }

    /// Reads a u32 register at `off` bytes into the region (volatile).
    pub fn read_u32(&self, off: usize) -> u32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.info.size as usize,
            "register {off:#x} out of range"
        );
        // SAFETY: in bounds and aligned (checked); volatile because it is device memory.
        unsafe { std::ptr::read_volatile(self.as_ptr().add(off).cast::<u32>()) }
    }

    /// Writes a u32 register at `off` bytes into the region (volatile).
    pub fn write_u32(&self, off: usize, v: u32) {
        assert!(
            off % 4 == 0 && off + 4 <= self.info.size as usize,
            "register {off:#x} out of range"
        );
        // SAFETY: in bounds and aligned (checked); volatile because it is device memory.
        unsafe { std::ptr::write_volatile(self.as_ptr().add(off).cast::<u32>(), v) }
    }
}

impl Drop for UioMapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in UioDevice::map, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_device(root: &Path, dev: &Path) {
        let m = root.join("class/uio/uio3/maps");
        for (i, (addr, size, off)) in [(0xfe000000u64, 0x1000u64, 0u64), (0xfe101000, 0x80, 0x40)]
            .iter()
            .enumerate()
        {
            let d = m.join(format!("map{i}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("addr"), format!("{addr:#x}\n")).unwrap();
            std::fs::write(d.join("size"), format!("{size:#x}\n")).unwrap();
            std::fs::write(d.join("offset"), format!("{off:#x}\n")).unwrap();
            std::fs::write(d.join("name"), format!("bar{i}\n")).unwrap();
        }
        // The "device": a file whose page M holds map M, as the uio mmap handler lays it out.
        let page = crate::memory::page_size();
        let mut content = vec![0u8; 2 * page];
        content[0..4].copy_from_slice(&0x1234_5678u32.to_ne_bytes());
        content[page + 0x40..page + 0x44].copy_from_slice(&0xcafe_f00du32.to_ne_bytes());
        std::fs::create_dir_all(dev).unwrap();
        std::fs::write(dev.join("uio3"), content).unwrap();
    }

    #[test]
    fn absent_uio_is_reported_plainly() {
        let t = tempfile::tempdir().unwrap();
        let e = UioDevice::open_at(t.path(), t.path(), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no UIO device uio0: this kernel has no UIO support (/sys/class/uio missing)"
        );
        // The real host: this kernel has no UIO.
        if !Path::new("/sys/class/uio").exists() {
            assert!(matches!(UioDevice::open(0), Err(UioError::NoUioSupport(0))));
        }
        std::fs::create_dir_all(t.path().join("class/uio/uio1")).unwrap();
        let e = UioDevice::open_at(t.path(), t.path(), 0).unwrap_err();
        assert_eq!(e.to_string(), "no UIO device uio0 (present: uio1)");
    }

    #[test]
    fn region_math_follows_the_abi() {
        let m = UioMapInfo {
            index: 2,
            name: String::new(),
            addr: 0xfe10_0040,
            size: 0x2000,
            offset: 0x40,
        };
        assert_eq!(m.mmap_offset(4096), 8192);
        assert_eq!(m.mmap_len(4096), 3 * 4096); // 0x40 + 0x2000 spills into a third page
        assert_eq!(parse_sysfs_u64("0x1000\n"), Some(4096));
        assert_eq!(parse_sysfs_u64("17"), Some(17));
        assert_eq!(parse_sysfs_u64("zz"), None);
    }

    #[test]
    fn maps_are_read_and_mapped_at_their_page() {
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("dev");
        fake_device(t.path(), &dev);
        let d = UioDevice::open_at(t.path(), &dev, 3).unwrap();
        assert_eq!(d.maps().len(), 2);
        assert_eq!(d.maps()[1].name, "bar1");
        assert_eq!(
            (d.maps()[1].addr, d.maps()[1].size, d.maps()[1].offset),
            (0xfe101000, 0x80, 0x40)
        );
        let m0 = d.map(0).unwrap();
        assert_eq!(m0.read_u32(0), 0x1234_5678);
        let m1 = d.map(1).unwrap();
        assert_eq!(
            m1.read_u32(0),
            0xcafe_f00d,
            "map1 = page 1, plus its sysfs offset"
        );
        m1.write_u32(4, 7);
        assert_eq!(m1.read_u32(4), 7);
        assert!(matches!(
            d.map(5),
            Err(UioError::NoMap { index: 3, map: 5 })
        ));
    }

    #[test]
    fn interrupts_are_a_u32_count_read_and_a_u32_one_written() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("class/uio/uio0")).unwrap();
        let fifo = t.path().join("uio0");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: c is a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut d = UioDevice::open_at(t.path(), t.path(), 0).unwrap();
        assert!(d.maps().is_empty());
        let mut other = File::options().read(true).write(true).open(&fifo).unwrap();
        other.write_all(&41u32.to_ne_bytes()).unwrap();
        assert_eq!(d.wait_interrupt().unwrap(), 41);
        d.enable_interrupt().unwrap();
        let mut b = [0u8; 4];
        other.read_exact(&mut b).unwrap();
        assert_eq!(u32::from_ne_bytes(b), 1);
    }
}
