//! VFIO PCI pass-through checks: the device exists, has an IOMMU group, and every device of
//! that group is bound to vfio-pci (QEMU needs the whole group), and /dev/vfio/GROUP exists.

use std::path::{Path, PathBuf};

/// Why a device cannot be passed through.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VfioError {
    /// No such PCI device.
    #[error("PCI device {0} does not exist ({1} is missing)")]
    NoDevice(String, PathBuf),
    /// The device has no IOMMU group: the IOMMU is off or absent.
    #[error("PCI device {0} has no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu=on) to pass it through")]
    NoIommuGroup(String),
    /// A device of the group is bound to another driver.
    #[error("PCI device {device} (IOMMU group {group} of {wanted}) is bound to {driver}, not vfio-pci: unbind it and bind it to vfio-pci first")]
    NotVfio {
        /// The device that was asked for.
        wanted: String,
        /// The group member that is not ready.
        device: String,
        /// Its IOMMU group.
        group: String,
        /// Its current driver ("no driver" when unbound).
        driver: String,
    },
    /// /dev/vfio/GROUP is missing.
    #[error("{0} is missing: is the vfio-pci module loaded?")]
    NoGroupDevice(PathBuf),
}

fn link_name(p: &Path) -> Option<String> {
    std::fs::read_link(p)
        .ok()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Checks PCI device `addr` under `sys` (normally /sys) and `dev` (normally /dev); returns its
/// IOMMU group.
pub fn check_device(sys: &Path, dev: &Path, addr: &str) -> Result<String, VfioError> {
    let d = sys.join("bus/pci/devices").join(addr);
    if !d.exists() {
        return Err(VfioError::NoDevice(addr.into(), d));
    }
    let group =
        link_name(&d.join("iommu_group")).ok_or_else(|| VfioError::NoIommuGroup(addr.into()))?;
    let members = sys.join("kernel/iommu_groups").join(&group).join("devices");
    let mut devices: Vec<String> = std::fs::read_dir(&members)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_else(|_| vec![addr.to_string()]);
    devices.sort();
    for m in devices {
        let driver = link_name(&sys.join("bus/pci/devices").join(&m).join("driver"));
        match driver.as_deref() {
            Some("vfio-pci") => {}
            // PCIe bridges in a group stay with their own driver; QEMU accepts that.
            Some("pcieport") if m != addr => {}
            other => {
                return Err(VfioError::NotVfio {
                    wanted: addr.into(),
                    device: m,
                    group,
                    driver: other.unwrap_or("no driver").into(),
                })
            }
        }
    }
    let node = dev.join("vfio").join(&group);
    if !node.exists() {
        return Err(VfioError::NoGroupDevice(node));
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fake {
        _d: tempfile::TempDir,
        sys: PathBuf,
        dev: PathBuf,
    }

    fn fake() -> Fake {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join("sys");
        let dev = d.path().join("dev");
        std::fs::create_dir_all(sys.join("bus/pci/drivers/vfio-pci")).unwrap();
        std::fs::create_dir_all(sys.join("bus/pci/drivers/e1000e")).unwrap();
        std::fs::create_dir_all(dev.join("vfio")).unwrap();
        Fake { _d: d, sys, dev }
    }

    fn device(f: &Fake, addr: &str, group: Option<&str>, driver: Option<&str>) {
        let dir = f.sys.join("devices/pci0000:00").join(addr);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(f.sys.join("bus/pci/devices")).unwrap();
        symlink(&dir, f.sys.join("bus/pci/devices").join(addr)).unwrap();
        if let Some(g) = group {
            let gd = f.sys.join("kernel/iommu_groups").join(g);
            std::fs::create_dir_all(gd.join("devices")).unwrap();
            symlink(&gd, dir.join("iommu_group")).unwrap();
            symlink(&dir, gd.join("devices").join(addr)).unwrap();
        }
        if let Some(drv) = driver {
            symlink(f.sys.join("bus/pci/drivers").join(drv), dir.join("driver")).unwrap();
        }
    }

    #[test]
    fn a_ready_device_passes() {
        let f = fake();
        device(&f, "0000:03:00.0", Some("7"), Some("vfio-pci"));
        std::fs::write(f.dev.join("vfio/7"), "").unwrap();
        assert_eq!(check_device(&f.sys, &f.dev, "0000:03:00.0").unwrap(), "7");
    }

    #[test]
    fn missing_device_group_driver_and_node_are_reported() {
        let f = fake();
        assert!(matches!(
            check_device(&f.sys, &f.dev, "0000:09:00.0"),
            Err(VfioError::NoDevice(..))
        ));
        device(&f, "0000:04:00.0", None, Some("e1000e"));
        let e = check_device(&f.sys, &f.dev, "0000:04:00.0").unwrap_err();
        assert!(e.to_string().contains("no IOMMU group"), "{e}");
        device(&f, "0000:05:00.0", Some("9"), Some("e1000e"));
        let e = check_device(&f.sys, &f.dev, "0000:05:00.0").unwrap_err();
        assert!(
            e.to_string().contains("bound to e1000e, not vfio-pci"),
            "{e}"
        );
        // A group sibling that is not bound to vfio-pci blocks the whole group.
        device(&f, "0000:06:00.0", Some("11"), Some("vfio-pci"));
        device(&f, "0000:06:00.1", Some("11"), None);
        let e = check_device(&f.sys, &f.dev, "0000:06:00.0").unwrap_err();
        assert!(
            matches!(&e, VfioError::NotVfio { device, driver, .. } if device == "0000:06:00.1" && driver == "no driver"),
            "{e}"
        );
        device(&f, "0000:07:00.0", Some("12"), Some("vfio-pci"));
        assert!(matches!(
            check_device(&f.sys, &f.dev, "0000:07:00.0"),
            Err(VfioError::NoGroupDevice(_))
        ));
    }

    #[test]
    fn this_host_has_no_vfio_and_says_so() {
        // The real /sys: there is no such device here, and the message names it.
        let e = check_device(Path::new("/sys"), Path::new("/dev"), "0000:7f:1f.7").unwrap_err();
        assert!(e.to_string().contains("0000:7f:1f.7"), "{e}");
    }
}
