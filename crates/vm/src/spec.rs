//! What to run: the VM spec, its builder, and the checks made before QEMU starts.

use carve_core::CpuSet;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The smallest guest memory carve accepts: below this the Debian kernel cannot unpack an initramfs.
pub const MIN_MEMORY: u64 = 64 << 20;
/// The largest vCPU count accepted (QEMU's q35 limit is higher, but no plan here needs more).
pub const MAX_VCPUS: usize = 255;

/// A spec value that is rejected before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The VM name is empty, too long or has characters other than letters, digits, '-', '_', '.'.
    #[error("invalid VM name {0:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    Name(String),
    /// A size that does not parse.
    #[error("invalid size {0:?}: use a number with an optional unit (KiB, MiB, GiB, K, M, G)")]
    Size(String),
    /// Guest memory below [`MIN_MEMORY`].
    #[error("memory {got} MiB is too small: a guest needs at least {} MiB", MIN_MEMORY >> 20)]
    MemoryTooSmall {
        /// What was asked for, in MiB.
        got: u64,
    },
    /// Huge-page backed memory must be a whole number of 2 MiB pages.
    #[error("memory {0} bytes is not a multiple of the 2 MiB huge page size")]
    MemoryNotHugeAligned(u64),
    /// No vCPUs, or too many.
    #[error("vcpus {0} is out of range 1..={MAX_VCPUS}")]
    Vcpus(usize),
    /// More vCPUs than planned cores: every vCPU thread is pinned to its own core.
    #[error("{vcpus} vCPU(s) but only {cores} core(s) in cpus {cpus:?}: give each vCPU a core")]
    VcpusWithoutCores {
        /// vCPU count.
        vcpus: usize,
        /// Cores planned.
        cores: usize,
        /// The planned cores as a list.
        cpus: String,
    },
    /// A planned core that this host does not have online.
    #[error("cpus {cpus:?} include cores that are not online (online: {online:?})")]
    CpusOffline {
        /// The planned cores.
        cpus: String,
        /// Online cores.
        online: String,
    },
    /// Neither a kernel nor a disk to boot from.
    #[error("nothing to boot: give a kernel (--kernel) or a disk (--disk)")]
    NothingToBoot,
    /// initrd or append given without a kernel.
    #[error("{0} needs a kernel (--kernel)")]
    NeedsKernel(&'static str),
    /// A file the VM needs does not exist.
    #[error("{what} {path} does not exist")]
    MissingFile {
        /// "kernel", "initrd", "disk".
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// A disk format other than raw or qcow2.
    #[error("unknown disk format {0:?}: use raw or qcow2")]
    DiskFormat(String),
    /// A disk without a format whose extension does not tell one.
    #[error("cannot tell the format of disk {0}: add format=raw or format=qcow2")]
    DiskFormatUnknown(PathBuf),
    /// A cache mode QEMU does not know.
    #[error("unknown cache mode {0:?}: use none, writeback, writethrough, directsync or unsafe")]
    CacheMode(String),
    /// A disk option that is not known.
    #[error("unknown disk option {0:?}: use format=, readonly, cache=")]
    DiskOption(String),
    /// A machine type other than q35 and microvm.
    #[error("unknown machine {0:?}: use q35 or microvm")]
    Machine(String),
    /// A network option that is not understood.
    #[error("invalid network {0:?}: use BRIDGE[,netns=NS][,mac=MAC][,ip=ADDR/LEN][,gw=ADDR]")]
    Net(String),
    /// A MAC address that is not six hex bytes, or is multicast.
    #[error("invalid MAC address {0:?}")]
    Mac(String),
    /// A PCI address that is not DDDD:BB:DD.F.
    #[error("invalid PCI address {0:?}: use DDDD:BB:DD.F, e.g. 0000:03:00.0")]
    PciAddress(String),
    /// SCHED_FIFO priority outside 1..=99.
    #[error("real-time priority {0} is out of range 1..=99")]
    RtPriority(u32),
    /// Hugepages requested but the host cannot back the memory.
    #[error("hugepages: {0}")]
    Hugepages(String),
}

/// The machine model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// The PC with PCIe (ACPI powerdown, virtio-pci).
    #[default]
    Q35,
    /// QEMU's minimal machine (virtio-mmio devices, ACPI power button through GED). Its boots of
    /// the Debian cloud kernel under TCG hang in early boot in some runs here (QEMU 7.2): q35 is
    /// the default and the tested machine.
    Microvm,
}

impl FromStr for Machine {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s {
            "q35" => Ok(Machine::Q35),
            "microvm" => Ok(Machine::Microvm),
            _ => Err(SpecError::Machine(s.into())),
        }
    }
}

/// A disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// A raw image.
    Raw,
    /// A qcow2 image.
    Qcow2,
}

impl FromStr for DiskFormat {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            _ => Err(SpecError::DiskFormat(s.into())),
        }
    }
}

impl DiskFormat {
    /// QEMU's name of the format.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// QEMU's host cache mode of a drive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// O_DIRECT, no flush emulation.
    None,
    /// Host page cache, guest flushes honoured (QEMU's default).
    #[default]
    Writeback,
    /// Host page cache, every write synced.
    Writethrough,
    /// O_DIRECT and every write synced.
    Directsync,
    /// Host page cache, guest flushes ignored.
    Unsafe,
}

impl FromStr for CacheMode {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Ok(match s {
            "none" => CacheMode::None,
            "writeback" => CacheMode::Writeback,
            "writethrough" => CacheMode::Writethrough,
            "directsync" => CacheMode::Directsync,
            "unsafe" => CacheMode::Unsafe,
            _ => return Err(SpecError::CacheMode(s.into())),
        })
    }
}

impl CacheMode {
    /// QEMU's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::None => "none",
            CacheMode::Writeback => "writeback",
            CacheMode::Writethrough => "writethrough",
            CacheMode::Directsync => "directsync",
            CacheMode::Unsafe => "unsafe",
        }
    }
}

/// A virtio-blk drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// The image file.
    pub path: PathBuf,
    /// Its format.
    pub format: DiskFormat,
    /// Attach read-only.
    #[serde(default)]
    pub readonly: bool,
    /// Host cache mode.
    #[serde(default)]
    pub cache: CacheMode,
}

impl FromStr for Disk {
    type Err = SpecError;
    /// Parses `PATH[,format=raw|qcow2][,readonly][,cache=MODE]`; without `format=` the extension
    /// (.qcow2, .raw, .img) decides.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let mut parts = s.split(',');
        let path = PathBuf::from(parts.next().unwrap_or_default());
        let mut format = None;
        let mut readonly = false;
        let mut cache = CacheMode::default();
        for p in parts {
            match p.split_once('=') {
                Some(("format", f)) => format = Some(f.parse()?),
                Some(("cache", c)) => cache = c.parse()?,
                None if p == "readonly" => readonly = true,
                _ => return Err(SpecError::DiskOption(p.into())),
            }
        }
        let format = match format {
            Some(f) => f,
            None => match path.extension().and_then(|e| e.to_str()) {
                Some("qcow2") => DiskFormat::Qcow2,
                Some("raw") | Some("img") => DiskFormat::Raw,
                _ => return Err(SpecError::DiskFormatUnknown(path)),
            },
        };
        Ok(Disk {
            path,
            format,
            readonly,
            cache,
        })
    }
}

/// A virtio-net NIC on a tap that carve creates and attaches to a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetSpec {
    /// The bridge the tap joins.
    pub bridge: String,
    /// The named network namespace holding the bridge (the tap is created there).
    #[serde(default)]
    pub netns: Option<String>,
    /// The guest MAC; derived from the VM name when absent.
    #[serde(default)]
    pub mac: Option<String>,
    /// The guest address with prefix length, passed as `carve.ip=` on the kernel command line.
    #[serde(default)]
    pub ip: Option<String>,
    /// The guest's default gateway, passed as `carve.gw=`.
    #[serde(default)]
    pub gw: Option<String>,
}

impl FromStr for NetSpec {
    type Err = SpecError;
    /// Parses `BRIDGE[,netns=NS][,mac=MAC][,ip=ADDR/LEN][,gw=ADDR]`.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let mut parts = s.split(',');
        let bridge = parts.next().unwrap_or_default().to_string();
        if bridge.is_empty() || bridge.len() > 15 {
            return Err(SpecError::Net(s.into()));
        }
        let mut n = NetSpec {
            bridge,
            netns: None,
            mac: None,
            ip: None,
            gw: None,
        };
        for p in parts {
            match p.split_once('=') {
                Some(("netns", v)) if !v.is_empty() => n.netns = Some(v.into()),
                Some(("mac", v)) => n.mac = Some(parse_mac(v)?),
                Some(("ip", v)) if v.contains('/') => n.ip = Some(v.into()),
                Some(("gw", v)) if !v.is_empty() => n.gw = Some(v.into()),
                _ => return Err(SpecError::Net(s.into())),
            }
        }
        Ok(n)
    }
}

fn parse_mac(s: &str) -> Result<String, SpecError> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| SpecError::Mac(s.into()))?;
    if bytes.len() != 6 || bytes[0] & 1 == 1 {
        return Err(SpecError::Mac(s.into()));
    }
    Ok(s.to_ascii_lowercase())
}

/// A locally administered unicast MAC derived from the VM name (stable across restarts).
pub fn mac_for(name: &str) -> String {
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let b = h.to_be_bytes();
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// Checks a PCI address `DDDD:BB:DD.F`.
pub fn parse_pci_address(s: &str) -> Result<String, SpecError> {
    let err = || SpecError::PciAddress(s.into());
    let (dom, rest) = s.split_once(':').ok_or_else(err)?;
    let (bus, rest) = rest.split_once(':').ok_or_else(err)?;
    let (dev, func) = rest.split_once('.').ok_or_else(err)?;
    let hex = |x: &str, n: usize| x.len() == n && x.chars().all(|c| c.is_ascii_hexdigit());
    if !(hex(dom, 4) && hex(bus, 2) && hex(dev, 2) && hex(func, 1)) {
        return Err(err());
    }
    Ok(s.to_ascii_lowercase())
}

/// Parses a size: "256MiB", "1GiB", "512M", "1048576" (bytes), as plans write them.
pub fn parse_size(s: &str) -> Result<u64, SpecError> {
    carve_core::units::parse_bytes(s).map_err(|_| SpecError::Size(s.into()))
}

/// A VM partition: what QEMU runs, on which cores, with what memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Unique name; state lives in `/run/carve/vm/NAME/`.
    pub name: String,
    /// Machine model.
    #[serde(default)]
    pub machine: Machine,
    /// vCPU count.
    pub vcpus: usize,
    /// The partition's cores: vCPU i is pinned to the i-th core.
    pub cpus: CpuSet,
    /// Cores for QEMU's other threads (I/O, RCU, main loop); all online cores outside `cpus`
    /// when absent (or `cpus` itself when nothing is left).
    #[serde(default)]
    pub housekeeping: Option<CpuSet>,
    /// Guest memory in bytes.
    pub memory: u64,
    /// Back guest memory with 2 MiB huge pages from a hugetlbfs mount.
    #[serde(default)]
    pub hugepages: bool,
    /// Touch all guest memory at start (no page faults later).
    #[serde(default = "yes")]
    pub prealloc: bool,
    /// mlock guest and QEMU memory.
    #[serde(default)]
    pub mem_lock: bool,
    /// The guest kernel (direct boot).
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// The initramfs.
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// The kernel command line; `console=ttyS0` is added unless a console is given.
    #[serde(default)]
    pub append: Option<String>,
    /// virtio-blk drives; the first is the boot disk when there is no kernel.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// A virtio-net NIC.
    #[serde(default)]
    pub net: Option<NetSpec>,
    /// VFIO PCI devices passed through (DDDD:BB:DD.F).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Expose a gdb stub on `gdb.sock` in the state directory.
    #[serde(default)]
    pub gdb: bool,
    /// SCHED_FIFO priority for vCPU threads.
    #[serde(default)]
    pub rt_priority: Option<u32>,
    /// The QEMU binary.
    #[serde(default = "default_qemu")]
    pub qemu: PathBuf,
}

fn yes() -> bool {
    true
}

fn default_qemu() -> PathBuf {
    PathBuf::from("qemu-system-x86_64")
}

impl VmSpec {
    /// Starts a spec with defaults: 1 vCPU on core 0, 256 MiB, q35.
    pub fn builder(name: &str) -> Result<VmBuilder, SpecError> {
        check_name(name)?;
        Ok(VmBuilder {
            spec: VmSpec {
                name: name.into(),
                machine: Machine::Q35,
                vcpus: 1,
                cpus: CpuSet::from_iter([0]),
                housekeeping: None,
                memory: 256 << 20,
                hugepages: false,
                prealloc: true,
                mem_lock: false,
                kernel: None,
                initrd: None,
                append: None,
                disks: Vec::new(),
                net: None,
                devices: Vec::new(),
                gdb: false,
                rt_priority: None,
                qemu: default_qemu(),
            },
        })
    }

    /// Checks everything that can be checked without starting QEMU: values, files, cores
    /// (against `online`, the host's online cores).
    pub fn validate(&self, online: &CpuSet) -> Result<(), SpecError> {
        check_name(&self.name)?;
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(SpecError::Vcpus(self.vcpus));
        }
        if self.vcpus > self.cpus.len() {
            return Err(SpecError::VcpusWithoutCores {
                vcpus: self.vcpus,
                cores: self.cpus.len(),
                cpus: self.cpus.to_string(),
            });
        }
        let all = self
            .cpus
            .union(self.housekeeping.as_ref().unwrap_or(&CpuSet::new()));
        if !all.is_subset(online) {
            return Err(SpecError::CpusOffline {
                cpus: all.to_string(),
                online: online.to_string(),
            });
        }
        if self.memory < MIN_MEMORY {
            return Err(SpecError::MemoryTooSmall {
                got: self.memory >> 20,
            });
        }
        if self.hugepages && self.memory % (2 << 20) != 0 {
            return Err(SpecError::MemoryNotHugeAligned(self.memory));
        }
        if let Some(p) = self.rt_priority {
            if !(1..=99).contains(&p) {
                return Err(SpecError::RtPriority(p));
            }
        }
        match &self.kernel {
            Some(k) => must_exist("kernel", k)?,
            None if self.disks.is_empty() => return Err(SpecError::NothingToBoot),
            None if self.initrd.is_some() => return Err(SpecError::NeedsKernel("an initrd")),
            None if self.append.is_some() => {
                return Err(SpecError::NeedsKernel("a kernel command line"))
            }
            None => {}
        }
        if let Some(i) = &self.initrd {
            must_exist("initrd", i)?;
        }
        for d in &self.disks {
            must_exist("disk", &d.path)?;
        }
        for d in &self.devices {
            parse_pci_address(d)?;
        }
        Ok(())
    }

    /// The cores for QEMU's non-vCPU threads, given the host's online cores.
    pub fn housekeeping_cores(&self, online: &CpuSet) -> CpuSet {
        if let Some(h) = &self.housekeeping {
            if !h.is_empty() {
                return h.clone();
            }
        }
        let rest = online.difference(&self.cpus);
        if rest.is_empty() {
            self.cpus.clone()
        } else {
            rest
        }
    }

    /// The planned core of each vCPU, in vCPU order.
    pub fn vcpu_cores(&self) -> Vec<usize> {
        self.cpus.iter().take(self.vcpus).collect()
    }
}

fn must_exist(what: &'static str, p: &Path) -> Result<(), SpecError> {
    if p.exists() {
        Ok(())
    } else {
        Err(SpecError::MissingFile {
            what,
            path: p.to_path_buf(),
        })
    }
}

fn check_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::Name(name.into()))
    }
}

/// Builds a [`VmSpec`] with checked setters.
#[derive(Debug, Clone)]
pub struct VmBuilder {
    spec: VmSpec,
}

impl VmBuilder {
    /// Sets the machine model.
    pub fn machine(mut self, m: Machine) -> Self {
        self.spec.machine = m;
        self
    }

    /// Sets the vCPU count.
    pub fn vcpus(mut self, n: usize) -> Result<Self, SpecError> {
        if n == 0 || n > MAX_VCPUS {
            return Err(SpecError::Vcpus(n));
        }
        self.spec.vcpus = n;
        Ok(self)
    }

    /// Sets the partition's cores.
    pub fn cpus(mut self, cpus: CpuSet) -> Self {
        self.spec.cpus = cpus;
        self
    }

    /// Sets the housekeeping cores for QEMU's other threads.
    pub fn housekeeping(mut self, cpus: CpuSet) -> Self {
        self.spec.housekeeping = Some(cpus);
        self
    }

    /// Sets guest memory from a size string ("256MiB").
    pub fn memory(mut self, size: &str) -> Result<Self, SpecError> {
        let m = parse_size(size)?;
        if m < MIN_MEMORY {
            return Err(SpecError::MemoryTooSmall { got: m >> 20 });
        }
        self.spec.memory = m;
        Ok(self)
    }

    /// Backs memory with huge pages.
    pub fn hugepages(mut self, on: bool) -> Self {
        self.spec.hugepages = on;
        self
    }

    /// Preallocates guest memory (default on).
    pub fn prealloc(mut self, on: bool) -> Self {
        self.spec.prealloc = on;
        self
    }

    /// Locks memory.
    pub fn mem_lock(mut self, on: bool) -> Self {
        self.spec.mem_lock = on;
        self
    }

    /// Sets the kernel; the file must exist.
    pub fn kernel(mut self, p: impl Into<PathBuf>) -> Result<Self, SpecError> {
        let p = p.into();
        must_exist("kernel", &p)?;
        self.spec.kernel = Some(p);
        Ok(self)
    }

    /// Sets the initrd; the file must exist.
    pub fn initrd(mut self, p: impl Into<PathBuf>) -> Result<Self, SpecError> {
        let p = p.into();
        must_exist("initrd", &p)?;
        self.spec.initrd = Some(p);
        Ok(self)
    }

    /// Sets the kernel command line.
    pub fn append(mut self, a: &str) -> Self {
        self.spec.append = Some(a.into());
        self
    }

    /// Adds a disk; the file must exist.
    pub fn disk(mut self, d: Disk) -> Result<Self, SpecError> {
        must_exist("disk", &d.path)?;
        self.spec.disks.push(d);
        Ok(self)
    }

    /// Adds a NIC.
    pub fn net(mut self, n: NetSpec) -> Self {
        self.spec.net = Some(n);
        self
    }

    /// Adds a VFIO PCI device.
    pub fn device(mut self, addr: &str) -> Result<Self, SpecError> {
        self.spec.devices.push(parse_pci_address(addr)?);
        Ok(self)
    }

    /// Exposes a gdb stub.
    pub fn gdb(mut self, on: bool) -> Self {
        self.spec.gdb = on;
        self
    }

    /// Runs vCPU threads SCHED_FIFO at `prio`.
    pub fn rt_priority(mut self, prio: u32) -> Result<Self, SpecError> {
        if !(1..=99).contains(&prio) {
            return Err(SpecError::RtPriority(prio));
        }
        self.spec.rt_priority = Some(prio);
        Ok(self)
    }

    /// Sets the QEMU binary.
    pub fn qemu(mut self, p: impl Into<PathBuf>) -> Self {
        self.spec.qemu = p.into();
        self
    }

    /// Checks the whole spec against the host's online cores and returns it.
    pub fn build(self, online: &CpuSet) -> Result<VmSpec, SpecError> {
        self.spec.validate(online)?;
        Ok(self.spec)
    }

    /// Returns the spec without the host checks (for command-line generation in tests).
    pub fn build_unchecked(self) -> VmSpec {
        self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online() -> CpuSet {
        CpuSet::parse_list("0-1").unwrap()
    }

    fn kernel_file() -> tempfile::NamedTempFile {
        tempfile::NamedTempFile::new().unwrap()
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(matches!(parse_size("12 parsecs"), Err(SpecError::Size(_))));
        assert!(parse_size("").is_err());
    }

    #[test]
    fn memory_too_small_is_rejected() {
        let e = VmSpec::builder("a").unwrap().memory("16MiB").unwrap_err();
        assert_eq!(
            e.to_string(),
            "memory 16 MiB is too small: a guest needs at least 64 MiB"
        );
    }

    #[test]
    fn missing_kernel_is_rejected() {
        let e = VmSpec::builder("a")
            .unwrap()
            .kernel("/nonexistent/vmlinuz")
            .unwrap_err();
        assert_eq!(e.to_string(), "kernel /nonexistent/vmlinuz does not exist");
        let mut s = VmSpec::builder("a").unwrap().build_unchecked();
        s.kernel = Some("/nonexistent/vmlinuz".into());
        assert!(matches!(
            s.validate(&online()),
            Err(SpecError::MissingFile { what: "kernel", .. })
        ));
    }

    #[test]
    fn unknown_disk_format_is_rejected() {
        let e = "x.img,format=vmdk".parse::<Disk>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown disk format \"vmdk\": use raw or qcow2"
        );
        assert!(matches!(
            "x.vdi".parse::<Disk>(),
            Err(SpecError::DiskFormatUnknown(_))
        ));
        let d: Disk = "a.qcow2,readonly,cache=none".parse().unwrap();
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert!(d.readonly);
        assert_eq!(d.cache, CacheMode::None);
        assert!("a.raw,cache=sometimes".parse::<Disk>().is_err());
    }

    #[test]
    fn vcpus_without_cores_are_rejected() {
        let k = kernel_file();
        let e = VmSpec::builder("a")
            .unwrap()
            .kernel(k.path())
            .unwrap()
            .vcpus(2)
            .unwrap()
            .cpus(CpuSet::parse_list("1").unwrap())
            .build(&online())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "2 vCPU(s) but only 1 core(s) in cpus \"1\": give each vCPU a core"
        );
        let e = VmSpec::builder("a")
            .unwrap()
            .kernel(k.path())
            .unwrap()
            .cpus(CpuSet::new())
            .build(&online())
            .unwrap_err();
        assert!(matches!(e, SpecError::VcpusWithoutCores { cores: 0, .. }));
        let e = VmSpec::builder("a")
            .unwrap()
            .kernel(k.path())
            .unwrap()
            .cpus(CpuSet::parse_list("7").unwrap())
            .build(&online())
            .unwrap_err();
        assert!(matches!(e, SpecError::CpusOffline { .. }));
    }

    #[test]
    fn names_and_boot_sources_are_checked() {
        assert!(VmSpec::builder("../etc").is_err());
        assert!(VmSpec::builder("").is_err());
        let e = VmSpec::builder("ok").unwrap().build(&online()).unwrap_err();
        assert!(matches!(e, SpecError::NothingToBoot));
    }

    #[test]
    fn net_and_mac_parse() {
        let n: NetSpec = "br0,netns=ns1,ip=10.0.0.2/24,gw=10.0.0.1".parse().unwrap();
        assert_eq!(n.bridge, "br0");
        assert_eq!(n.netns.as_deref(), Some("ns1"));
        assert!("br0,mac=01:00:00:00:00:00".parse::<NetSpec>().is_err());
        assert!("br0,color=red".parse::<NetSpec>().is_err());
        let m = mac_for("vm1");
        assert_eq!(m, mac_for("vm1"));
        assert!(parse_mac(&m).is_ok());
    }

    #[test]
    fn pci_addresses_parse() {
        assert_eq!(parse_pci_address("0000:03:00.0").unwrap(), "0000:03:00.0");
        assert!(parse_pci_address("03:00.0").is_err());
        assert!(VmSpec::builder("a").unwrap().device("zz").is_err());
    }

    #[test]
    fn housekeeping_defaults_to_the_other_cores() {
        let s = VmSpec::builder("a")
            .unwrap()
            .cpus(CpuSet::parse_list("1").unwrap())
            .build_unchecked();
        assert_eq!(s.housekeeping_cores(&online()).to_string(), "0");
        let s = VmSpec::builder("a")
            .unwrap()
            .cpus(CpuSet::parse_list("0-1").unwrap())
            .build_unchecked();
        assert_eq!(s.housekeeping_cores(&online()).to_string(), "0-1");
    }

    #[test]
    fn spec_json_rejects_unknown_fields() {
        let s = VmSpec::builder("a").unwrap().build_unchecked();
        let mut v = serde_json::to_value(&s).unwrap();
        let back: VmSpec = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, s);
        v["colour"] = "red".into();
        assert!(serde_json::from_value::<VmSpec>(v).is_err());
    }
}
