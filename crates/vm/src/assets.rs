//! Guest assets from Debian packages: the cloud kernel, a busybox initramfs with the virtio
//! modules from the same kernel package, and a qcow2 scratch disk.
//!
//! `prepare_guest(DIR)` is idempotent: it records what it built in `DIR/assets.json` and does
//! nothing when that matches. It takes an flock on `DIR/.lock`, so parallel tests share one build.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian meta-package whose kernel the guest runs.
pub const KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";
/// Modules the initramfs loads (their dependencies are added): virtio transports, block and
/// net, and the ACPI power button with evdev so `system_powerdown` reaches acpid.
pub const WANTED_MODULES: [&str; 6] = [
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "button",
    "evdev",
];
/// Bumped whenever the initramfs recipe changes, so cached assets are rebuilt.
pub const RECIPE: u32 = 5;
/// The marker the guest prints on its console once up.
pub const READY_MARKER: &str = "carve-guest-ready";

/// Errors building guest assets.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// A helper program failed.
    #[error("{program} failed: {detail}")]
    Tool {
        /// The command line.
        program: String,
        /// Its exit status and stderr.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The package does not hold what we need.
    #[error("kernel package {package}: {what}")]
    Package {
        /// The package.
        package: String,
        /// What is missing.
        what: String,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AssetError + 'a {
    move |source| AssetError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What `prepare_guest` built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestAssets {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs (gzip'd newc cpio).
    pub initrd: PathBuf,
    /// A qcow2 scratch disk.
    pub disk: PathBuf,
    /// The versioned kernel package the kernel came from.
    pub package: String,
    /// Its version.
    pub version: String,
    /// The modules in the initramfs, in load order.
    pub modules: Vec<String>,
    /// The recipe number (see [`RECIPE`]).
    pub recipe: u32,
}

fn run(cmd: &mut Command) -> Result<String, AssetError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| AssetError::Tool {
            program: format!("{cmd:?}"),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(AssetError::Tool {
            program: format!("{cmd:?}"),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The existing assets in `dir`, if they are complete and of the current recipe.
pub fn cached_guest(dir: &Path) -> Option<GuestAssets> {
    let a: GuestAssets =
        serde_json::from_slice(&std::fs::read(dir.join("assets.json")).ok()?).ok()?;
    (a.recipe == RECIPE && a.kernel.exists() && a.initrd.exists() && a.disk.exists()).then_some(a)
}

/// Prepares kernel, initramfs and disk in `dir` (created if needed), or returns the cached ones.
pub fn prepare_guest(dir: &Path) -> Result<GuestAssets, AssetError> {
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let dir = dir.canonicalize().map_err(io("resolve", dir))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::File::create(&lock_path).map_err(io("create", &lock_path))?;
    // SAFETY: the fd is valid while `lock` lives; flock has no memory effects.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    if let Some(a) = cached_guest(&dir) {
        return Ok(a);
    }
    let work = dir.join(".work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io("create", &work))?;
    let result = build(&dir, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The versioned package the meta-package depends on (`linux-image-6.1.0-NN-cloud-amd64`).
fn resolve_package() -> Result<String, AssetError> {
    let deps = run(Command::new("apt-cache").args(["depends", KERNEL_PACKAGE]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|p| p.trim().trim_matches(|c| c == '<' || c == '>').to_string())
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| AssetError::Package {
            package: KERNEL_PACKAGE.into(),
            what: format!("no linux-image dependency in `apt-cache depends`: {deps}"),
        })
}

fn build(dir: &Path, work: &Path) -> Result<GuestAssets, AssetError> {
    let package = resolve_package()?;
    run(Command::new("apt-get")
        .args(["download", "-q", &package])
        .current_dir(work))?;
    let deb = std::fs::read_dir(work)
        .map_err(io("list", work))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| AssetError::Package {
            package: package.clone(),
            what: "apt-get download produced no .deb".into(),
        })?;
    let version = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Version"))?
    .trim()
    .to_string();
    let x = work.join("x");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x))?;
    let kernel_src = std::fs::read_dir(x.join("boot"))
        .map_err(io("list", &x.join("boot")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| AssetError::Package {
            package: package.clone(),
            what: "no boot/vmlinuz-*".into(),
        })?;
    let kernel = dir.join("vmlinuz");
    std::fs::copy(&kernel_src, &kernel).map_err(io("copy", &kernel_src))?;

    let moddir = std::fs::read_dir(x.join("lib/modules"))
        .map_err(io("list", &x.join("lib/modules")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .next()
        .ok_or_else(|| AssetError::Package {
            package: package.clone(),
            what: "no lib/modules/VERSION".into(),
        })?;
    let modules = resolve_modules(&moddir, &WANTED_MODULES)?;

    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "etc",
        "etc/acpi",
        "etc/acpi/PWRF",
        "lib",
        "lib/modules",
        "usr",
        "usr/bin",
        "usr/sbin",
        "root",
    ] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 5, 1);
    let busybox = std::fs::read("/bin/busybox").map_err(io("read", Path::new("/bin/busybox")))?;
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.symlink("bin/sh", "busybox");
    cpio.file("init", 0o755, INIT.as_bytes());
    cpio.file("etc/acpi/PWRF/00000080", 0o755, POWER_BUTTON.as_bytes());
    let mut order = String::new();
    for (name, path) in &modules {
        let data = std::fs::read(path).map_err(io("read", path))?;
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &data);
        order.push_str(name);
        order.push('\n');
    }
    cpio.file("lib/modules/order", 0o644, order.as_bytes());
    let initrd = dir.join("initrd.img");
    gzip_to(&cpio.finish(), &initrd)?;

    let disk = dir.join("disk.qcow2");
    if !disk.exists() {
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("64M"))?;
    }
    let assets = GuestAssets {
        kernel,
        initrd,
        disk,
        package,
        version,
        modules: modules.into_iter().map(|(n, _)| n).collect(),
        recipe: RECIPE,
    };
    let meta = dir.join("assets.json");
    std::fs::write(
        &meta,
        serde_json::to_vec_pretty(&assets).expect("serializes"),
    )
    .map_err(io("write", &meta))?;
    Ok(assets)
}

/// The wanted modules and their dependencies (from `modinfo -F depends`), dependencies first,
/// leaving out what the kernel has built in (modules.builtin).
fn resolve_modules(moddir: &Path, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>, AssetError> {
    let builtin: BTreeSet<String> = std::fs::read_to_string(moddir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            Path::new(l)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    let mut files = std::collections::BTreeMap::new();
    index_modules(&moddir.join("kernel"), &mut files);
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    fn visit(
        name: &str,
        files: &std::collections::BTreeMap<String, PathBuf>,
        builtin: &BTreeSet<String>,
        out: &mut Vec<(String, PathBuf)>,
        depth: usize,
    ) -> Result<(), AssetError> {
        let name = name.replace('-', "_");
        if builtin.contains(&name) || out.iter().any(|(n, _)| *n == name) || depth > 16 {
            return Ok(());
        }
        let Some(path) = files.get(&name) else {
            return Err(AssetError::Package {
                package: KERNEL_PACKAGE.into(),
                what: format!("module {name} is neither built in nor in the package"),
            });
        };
        let deps = run(Command::new("modinfo").args(["-F", "depends"]).arg(path))?;
        for d in deps.trim().split(',').filter(|d| !d.is_empty()) {
            visit(d, files, builtin, out, depth + 1)?;
        }
        out.push((name, path.clone()));
        Ok(())
    }
    for w in wanted {
        visit(w, &files, &builtin, &mut out, 0)?;
    }
    Ok(out)
}

fn index_modules(dir: &Path, out: &mut std::collections::BTreeMap<String, PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            index_modules(&p, out);
        } else if p.extension().is_some_and(|x| x == "ko") {
            let stem = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .replace('-', "_");
            out.insert(stem, p);
        }
    }
}

fn gzip_to(data: &[u8], path: &Path) -> Result<(), AssetError> {
    let out = std::fs::File::create(path).map_err(io("create", path))?;
    let mut child = Command::new("gzip")
        .arg("-6")
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .map_err(io("run gzip for", path))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(data)
        .map_err(io("compress", path))?;
    let st = child.wait().map_err(io("compress", path))?;
    if !st.success() {
        return Err(AssetError::Tool {
            program: "gzip".into(),
            detail: st.to_string(),
        });
    }
    Ok(())
}

/// A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs.
#[derive(Default)]
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }
    /// Adds a directory.
    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }
    /// Adds a regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data, (0, 0));
    }
    /// Adds a symlink.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes(), (0, 0));
    }
    /// Adds a character device node.
    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, &[], (major, minor));
    }
    /// Ends the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}

/// What acpid runs on the ACPI power button (`system_powerdown`): a clean poweroff.
const POWER_BUTTON: &str =
    "#!/bin/sh\necho carve-guest-poweroff >/dev/console\nsync\npoweroff -f\n";

/// The guest's /init: mounts, modules, network from `carve.ip=`/`carve.gw=`, the ready marker,
/// then `carve.cmd=` (or a console shell).
pub const INIT: &str = r#"#!/bin/sh
# carve guest init (busybox). Kernel command line: carve.ip=ADDR/LEN carve.gw=ADDR carve.cmd="..."
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
# A kernel that disabled its only timer (microvm: "APIC frequency too slow", after a vCPU stall
# during the LAPIC timer calibration) boots, but never wakes from a timed sleep: it would hang
# at the first sleep or at power-off. Say so and reset at once (sysrq: no shutdown path, which
# sleeps); on microvm carve runs QEMU with -no-reboot, so QEMU ends.
if dmesg | grep -q "APIC frequency too slow"; then
  echo "carve-guest-error=no-timer (the kernel disabled its APIC timer: APIC frequency too slow)"
  echo b > /proc/sysrq-trigger
fi
while read m; do insmod /lib/modules/$m.ko 2>/dev/null; done < /lib/modules/order
arg() {
  awk -v key="$1=" '{
    s = $0; n = length(s); tok = ""; q = 0
    for (i = 1; i <= n + 1; i++) {
      c = (i <= n) ? substr(s, i, 1) : " "
      if (c == "\"") { q = !q; continue }
      if (c == " " && !q) { if (index(tok, key) == 1) { print substr(tok, length(key) + 1); exit } tok = ""; continue }
      tok = tok c
    }
  }' /proc/cmdline
}
ip link set lo up
ipaddr=$(arg carve.ip)
if [ -n "$ipaddr" ]; then
  dev=""
  for i in 1 2 3 4 5 6 7 8 9 10; do
    for d in /sys/class/net/*; do
      n=${d##*/}
      [ "$n" != lo ] && dev=$n && break
    done
    [ -n "$dev" ] && break
    sleep 0.1
  done
  ip link set "$dev" up
  ip addr add "$ipaddr" dev "$dev"
  gw=$(arg carve.gw)
  [ -n "$gw" ] && ip route add default via "$gw"
fi
mkdir -p /var/log /var/run
acpid -l /tmp/acpid.log -p /tmp/acpid.pid
echo carve-guest-ready
cmd=$(arg carve.cmd)
if [ -n "$cmd" ]; then
  sh -c "$cmd"
  echo "carve-guest-exit=$?"
  sync
  poweroff -f
fi
while true; do setsid cttyhack sh; done
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let mut c = Cpio::default();
        c.dir("bin");
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.symlink("bin/sh", "busybox");
        let b = c.finish();
        assert_eq!(&b[..6], b"070701");
        assert_eq!(b.len() % 4, 0);
        let s = String::from_utf8_lossy(&b);
        assert!(s.contains("init\0"));
        assert!(s.contains("TRAILER!!!\0"));
        // The second header starts right after the first entry: a 110-byte header and "bin\0",
        // padded to 4 bytes.
        assert_eq!(&b[116..122], b"070701");
    }

    #[test]
    fn init_parses_quoted_command_lines() {
        // Run the init's `arg` function with busybox awk against a fake /proc/cmdline.
        let d = tempfile::tempdir().unwrap();
        let cmdline = d.path().join("cmdline");
        std::fs::write(
            &cmdline,
            "console=ttyS0 carve.ip=10.0.0.2/24 carve.cmd=\"i=0; while true; do echo $i; done\" quiet\n",
        )
        .unwrap();
        let f = INIT
            .split_once("arg() {")
            .unwrap()
            .1
            .split_once("\n}\n")
            .unwrap()
            .0
            .replace("/proc/cmdline", &cmdline.display().to_string());
        let script = format!("arg() {{{f}\n}}\narg carve.cmd; arg carve.ip; arg carve.gw");
        let out = Command::new("busybox")
            .args(["sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "i=0; while true; do echo $i; done\n10.0.0.2/24\n"
        );
    }
}
