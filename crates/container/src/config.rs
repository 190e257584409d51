//! Loading and validating `config.json`: parse with the JSON path of any error, then check
//! everything the runtime relies on before anything touches the host.

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A config.json (or process.json) that cannot be used; the path is a JSON path like
/// `linux.namespaces[2].type`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// {file}: cannot read: {source}
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// {file}: at `{path}`: {msg}
    #[error("{file}: at `{path}`: {msg}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// JSON path of the offending value (`.` for the whole document).
        path: String,
        /// What is wrong and what was expected.
        msg: String,
    },
}

fn invalid(file: &Path, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        path: path.into(),
        msg: msg.into(),
    }
}

/// Parses JSON bytes into `T`, naming the JSON path of the first error.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    file: &Path,
    bytes: &[u8],
) -> Result<T, ConfigError> {
    // oci-spec 0.10 spells two scheduler flags unlike the runtime-spec (SCHED_RESET_ON_FORK,
    // SCHED_FLAG_D_L_OVERRUN); the spec's names, which runc and podman write, are mapped.
    let fixed;
    let bytes = if bytes.windows(11).any(|w| w == b"SCHED_FLAG_") {
        let mut t = String::from_utf8_lossy(bytes).into_owned();
        t = t.replace("\"SCHED_FLAG_RESET_ON_FORK\"", "\"SCHED_RESET_ON_FORK\"");
        t = t.replace("\"SCHED_FLAG_DL_OVERRUN\"", "\"SCHED_FLAG_D_L_OVERRUN\"");
        fixed = t;
        fixed.as_bytes()
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        invalid(file, path, inner.to_string())
    })
}

/// Reads and validates `BUNDLE/config.json`.
pub fn load(bundle: &Path) -> Result<(Spec, Vec<u8>), ConfigError> {
    let file = bundle.join("config.json");
    let bytes = std::fs::read(&file).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    // Only a document that does not parse is normalized (and parsed again): the common case
    // pays for one parse.
    let (spec, bytes): (Spec, Vec<u8>) = match parse_json(&file, &bytes) {
        Ok(s) => (s, bytes),
        Err(first) => {
            let fixed = crate::checks::normalize(&bytes);
            if fixed == bytes {
                return Err(first);
            }
            (parse_json(&file, &fixed)?, fixed)
        }
    };
    validate(&file, bundle, &spec)?;
    Ok((spec, bytes))
}

/// The rootfs as an absolute path (relative `root.path` is relative to the bundle).
pub fn rootfs_of(bundle: &Path, spec: &Spec) -> PathBuf {
    let p = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    if p.is_absolute() {
        p
    } else {
        bundle.join(p)
    }
}

const KNOWN_NS: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Time,
];

/// Checks everything the runtime relies on; the error names the JSON path.
pub fn validate(file: &Path, bundle: &Path, spec: &Spec) -> Result<(), ConfigError> {
    if !spec.version().starts_with("1.") {
        return Err(invalid(
            file,
            "ociVersion",
            format!(
                "unsupported version {:?}: expected 1.x (runtime-spec 1.2)",
                spec.version()
            ),
        ));
    }
    crate::checks::check(spec).map_err(|(at, m)| invalid(file, at, m))?;
    let Some(root) = spec.root() else {
        return Err(invalid(
            file,
            "root",
            "missing: expected {\"path\": ROOTFS}",
        ));
    };
    let rootfs = rootfs_of(bundle, spec);
    if root.path().as_os_str().is_empty() || !rootfs.is_dir() {
        return Err(invalid(
            file,
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let Some(process) = spec.process() else {
        return Err(invalid(
            file,
            "process",
            "missing: the container process is required",
        ));
    };
    validate_process(file, "process", process)?;
    if spec.solaris().is_some() {
        return Err(invalid(file, "solaris", "not supported on Linux"));
    }
    if spec.windows().is_some() {
        return Err(invalid(file, "windows", "not supported on Linux"));
    }
    if spec.vm().is_some() {
        return Err(invalid(
            file,
            "vm",
            "not supported: carve-oci runs containers, not VMs",
        ));
    }
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if m.destination().as_os_str().is_empty() {
                return Err(invalid(
                    file,
                    format!("mounts[{i}].destination"),
                    "empty: expected an absolute path",
                ));
            }
            let ty = m.typ().as_deref().unwrap_or("");
            let opts = m.options().as_deref().unwrap_or(&[]);
            let bind = ty == "bind" || opts.iter().any(|o| o == "bind" || o == "rbind");
            if ty.is_empty() && !bind {
                return Err(invalid(
                    file,
                    format!("mounts[{i}].type"),
                    "missing: expected a filesystem type or a bind option",
                ));
            }
            if bind && m.source().is_none() {
                return Err(invalid(
                    file,
                    format!("mounts[{i}].source"),
                    "missing: a bind mount needs a source",
                ));
            }
            crate::idmap::validate(spec, m, bind)
                .map_err(|(f, msg)| invalid(file, format!("mounts[{i}].{f}"), msg))?;
        }
    }
    if let Some(hooks) = spec.hooks() {
        let lists = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (name, list) in lists {
            for (i, h) in list.iter().flatten().enumerate() {
                if !h.path().is_absolute() {
                    return Err(invalid(
                        file,
                        format!("hooks.{name}[{i}].path"),
                        "expected an absolute path",
                    ));
                }
                if h.timeout().is_some_and(|t| t <= 0) {
                    return Err(invalid(
                        file,
                        format!("hooks.{name}[{i}].timeout"),
                        "expected a positive number of seconds",
                    ));
                }
            }
        }
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().as_deref().unwrap_or(&[]);
    for (i, ns) in namespaces.iter().enumerate() {
        if !KNOWN_NS.contains(&ns.typ()) {
            return Err(invalid(
                file,
                format!("linux.namespaces[{i}].type"),
                "unknown namespace type",
            ));
        }
        if !seen.insert(ns.typ() as i64) {
            return Err(invalid(
                file,
                format!("linux.namespaces[{i}].type"),
                format!("duplicate namespace {}", ns.typ()),
            ));
        }
        if let Some(p) = ns.path() {
            if let Err(e) = std::fs::metadata(p) {
                return Err(invalid(
                    file,
                    format!("linux.namespaces[{i}].path"),
                    format!("{}: {e}", p.display()),
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    let new_userns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_userns && !maps {
        return Err(invalid(
            file,
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if maps && !new_userns {
        return Err(invalid(
            file,
            "linux.uidMappings",
            "uid/gid mappings need a new user namespace in linux.namespaces",
        ));
    }
    if let Some(offsets) = linux.time_offsets() {
        if !has(LinuxNamespaceType::Time) {
            return Err(invalid(
                file,
                "linux.timeOffsets",
                "time offsets need a time namespace in linux.namespaces",
            ));
        }
        for k in offsets.keys() {
            if k != "monotonic" && k != "boottime" {
                return Err(invalid(
                    file,
                    format!("linux.timeOffsets.{k}"),
                    "expected \"monotonic\" or \"boottime\"",
                ));
            }
        }
    }
    if let Some(sysctl) = linux.sysctl() {
        for k in sysctl.keys() {
            let ok = if k.starts_with("net.") {
                has(LinuxNamespaceType::Network)
            } else if k.starts_with("kernel.msg")
                || k.starts_with("kernel.shm")
                || k == "kernel.sem"
                || k.starts_with("fs.mqueue.")
            {
                has(LinuxNamespaceType::Ipc)
            } else if k == "kernel.hostname" || k == "kernel.domainname" {
                has(LinuxNamespaceType::Uts)
            } else {
                false
            };
            if !ok || k.contains('/') || k.contains("..") {
                return Err(invalid(
                    file,
                    format!("linux.sysctl.{k}"),
                    "not a sysctl of a namespace the container owns",
                ));
            }
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        if ![
            "",
            "private",
            "rprivate",
            "slave",
            "rslave",
            "shared",
            "rshared",
            "unbindable",
            "runbindable",
        ]
        .contains(&p.as_str())
        {
            return Err(invalid(
                file,
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?}: expected (r)private, (r)slave, (r)shared or (r)unbindable"),
            ));
        }
    }
    if linux.intel_rdt().is_some() {
        return Err(invalid(
            file,
            "linux.intelRdt",
            "not supported: this host has no resctrl",
        ));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(invalid(file, "linux.netDevices", "not supported"));
    }
    if let Some(p) = linux.memory_policy() {
        crate::mempolicy::check(p).map_err(|(at, m)| invalid(file, at, m))?;
    }
    if let Some(devs) = linux.devices() {
        for (i, d) in devs.iter().enumerate() {
            if !d.path().is_absolute() || !d.path().starts_with("/dev") {
                return Err(invalid(
                    file,
                    format!("linux.devices[{i}].path"),
                    "expected an absolute path under /dev",
                ));
            }
        }
    }
    if let Some(s) = linux.seccomp() {
        crate::seccomp::compile(s)
            .map_err(|(path, msg)| invalid(file, format!("linux.seccomp{path}"), msg))?;
    }
    if let Some(p) = linux.personality() {
        let d = format!("{:?}", p.domain());
        if d != "PerLinux" && d != "PerLinux32" {
            return Err(invalid(
                file,
                "linux.personality.domain",
                "expected LINUX or LINUX32",
            ));
        }
    }
    Ok(())
}

/// Checks a process object (config.json's `process`, or exec's `--process` file).
pub fn validate_process(file: &Path, at: &str, p: &Process) -> Result<(), ConfigError> {
    match p.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => {
            return Err(invalid(
                file,
                format!("{at}.args"),
                "expected a non-empty list whose first element is the program",
            ))
        }
    }
    if !p.cwd().is_absolute() {
        return Err(invalid(
            file,
            format!("{at}.cwd"),
            "expected an absolute path",
        ));
    }
    for (i, e) in p.env().iter().flatten().enumerate() {
        if !e.contains('=') {
            return Err(invalid(
                file,
                format!("{at}.env[{i}]"),
                "expected KEY=VALUE",
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        if !seen.insert(format!("{:?}", r.typ())) {
            return Err(invalid(
                file,
                format!("{at}.rlimits[{i}].type"),
                "duplicate rlimit type",
            ));
        }
        if r.soft() > r.hard() {
            return Err(invalid(
                file,
                format!("{at}.rlimits[{i}].soft"),
                "soft limit exceeds hard limit",
            ));
        }
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(
                file,
                format!("{at}.oomScoreAdj"),
                "expected -1000..=1000",
            ));
        }
    }
    Ok(())
}

/// runc's `spec` default: a busybox-style `sh` on a terminal, with the usual mounts, masked and
/// readonly paths and namespaces.
pub fn default_spec_json() -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}
