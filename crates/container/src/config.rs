//! Loading and validating `config.json`: parse with the JSON path of any error, then check
//! everything the runtime relies on before anything touches the host.

use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType, Process, Spec};
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

/// A value that breaks a rule, found by a checker of one section (seccomp, memory policy, an
/// idmapped mount, the spec's shape rules): the JSON path of the value, relative to what the
/// checker was given, and what is wrong. [`validate`] turns it into [`ConfigError::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at `{path}`: {msg}")]
pub struct FieldError {
    /// JSON path of the value.
    pub path: String,
    /// What is wrong and what was expected.
    pub msg: String,
}

impl FieldError {
    /// The error of the value at `path`.
    pub fn new(path: impl Into<String>, msg: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

impl<P: Into<String>, M: Into<String>> From<(P, M)> for FieldError {
    fn from((path, msg): (P, M)) -> FieldError {
        FieldError::new(path, msg)
    }
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

/// Checks everything the runtime relies on; the error names the JSON path. The sections are
/// checked in document order, so the first error is the one a reader meets first.
pub fn validate(file: &Path, bundle: &Path, spec: &Spec) -> Result<(), ConfigError> {
    validate_version(file, spec)?;
    crate::checks::check(spec).map_err(|f| invalid(file, f.path, f.msg))?;
    validate_root(file, bundle, spec)?;
    let Some(process) = spec.process() else {
        return Err(invalid(
            file,
            "process",
            "missing: the container process is required",
        ));
    };
    validate_process(file, "process", process)?;
    validate_platform(file, spec)?;
    validate_mounts(file, spec)?;
    validate_hooks(file, spec)?;
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    validate_namespaces(file, linux)?;
    validate_id_maps(file, linux)?;
    validate_sysctl(file, linux)?;
    validate_linux_misc(file, linux)
}

fn validate_version(file: &Path, spec: &Spec) -> Result<(), ConfigError> {
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
    Ok(())
}

/// `root`: present, and its path a directory (relative to the bundle).
fn validate_root(file: &Path, bundle: &Path, spec: &Spec) -> Result<(), ConfigError> {
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
    Ok(())
}

/// The other platforms' sections, which a Linux runtime cannot honour.
fn validate_platform(file: &Path, spec: &Spec) -> Result<(), ConfigError> {
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
    Ok(())
}

/// `mounts`: a destination each, a type or a bind option, a source for binds, idmap rules.
fn validate_mounts(file: &Path, spec: &Spec) -> Result<(), ConfigError> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
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
            .map_err(|f| invalid(file, format!("mounts[{i}].{}", f.path), f.msg))?;
    }
    Ok(())
}

/// `hooks`: absolute paths and positive timeouts.
fn validate_hooks(file: &Path, spec: &Spec) -> Result<(), ConfigError> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
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
    Ok(())
}

fn namespaces(linux: &Linux) -> &[LinuxNamespace] {
    linux.namespaces().as_deref().unwrap_or(&[])
}

fn has_ns(linux: &Linux, t: LinuxNamespaceType) -> bool {
    namespaces(linux).iter().any(|n| n.typ() == t)
}

/// `linux.namespaces`: known types, each once, and joined paths that exist.
fn validate_namespaces(file: &Path, linux: &Linux) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, ns) in namespaces(linux).iter().enumerate() {
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
    Ok(())
}

/// uid/gid mappings exactly with a new user namespace; time offsets only with a time namespace.
fn validate_id_maps(file: &Path, linux: &Linux) -> Result<(), ConfigError> {
    let new_userns = namespaces(linux)
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
        if !has_ns(linux, LinuxNamespaceType::Time) {
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
    Ok(())
}

/// `linux.sysctl`: only keys of a namespace the container owns.
fn validate_sysctl(file: &Path, linux: &Linux) -> Result<(), ConfigError> {
    let has = |t| has_ns(linux, t);
    for k in linux.sysctl().iter().flat_map(|s| s.keys()) {
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
    Ok(())
}

/// The rest of `linux`: propagation, unsupported features, memory policy, device paths,
/// seccomp (compiled once to find errors) and personality.
fn validate_linux_misc(file: &Path, linux: &Linux) -> Result<(), ConfigError> {
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
        crate::mempolicy::check(p).map_err(|f| invalid(file, f.path, f.msg))?;
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() || !d.path().starts_with("/dev") {
            return Err(invalid(
                file,
                format!("linux.devices[{i}].path"),
                "expected an absolute path under /dev",
            ));
        }
    }
    if let Some(s) = linux.seccomp() {
        crate::seccomp::compile(s)
            .map_err(|f| invalid(file, format!("linux.seccomp{}", f.path), f.msg))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A valid document with a rootfs directory in a fresh bundle.
    fn base() -> serde_json::Value {
        json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
        })
    }

    /// The JSON path `validate` names for `doc` (None when it passes).
    fn failing_path(doc: serde_json::Value) -> Option<String> {
        let bundle = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(bundle.path().join("rootfs")).expect("rootfs");
        let file = bundle.path().join("config.json");
        let spec: Spec = parse_json(&file, doc.to_string().as_bytes()).expect("parses");
        match validate(&file, bundle.path(), &spec) {
            Ok(()) => None,
            Err(ConfigError::Invalid { path, .. }) => Some(path),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    fn with(path: &[&str], v: serde_json::Value) -> serde_json::Value {
        let mut doc = base();
        let mut at = &mut doc;
        for p in &path[..path.len() - 1] {
            at = at
                .as_object_mut()
                .expect("object")
                .entry(*p)
                .or_insert(json!({}));
        }
        at[path[path.len() - 1]] = v;
        doc
    }

    #[test]
    fn a_minimal_document_passes() {
        assert_eq!(failing_path(base()), None);
    }

    #[test]
    fn version_and_root_are_named() {
        assert_eq!(
            failing_path(with(&["ociVersion"], json!("2.0.0"))).as_deref(),
            Some("ociVersion")
        );
        assert_eq!(
            failing_path(with(&["root", "path"], json!("nope"))).as_deref(),
            Some("root.path")
        );
    }

    #[test]
    fn process_fields_are_named() {
        assert_eq!(
            failing_path(with(&["process", "cwd"], json!("rel"))).as_deref(),
            Some("process.cwd")
        );
        assert_eq!(
            failing_path(with(&["process", "env"], json!(["A=1", "B"]))).as_deref(),
            Some("process.env[1]")
        );
        assert_eq!(
            failing_path(with(&["process", "oomScoreAdj"], json!(1001))).as_deref(),
            Some("process.oomScoreAdj")
        );
        let rl = json!([{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]);
        assert_eq!(
            failing_path(with(&["process", "rlimits"], rl)).as_deref(),
            Some("process.rlimits[0].soft")
        );
    }

    #[test]
    fn mounts_need_a_type_or_bind_and_binds_a_source() {
        let m = json!([{"destination": "/x", "type": "tmpfs"}, {"destination": "/y"}]);
        assert_eq!(
            failing_path(with(&["mounts"], m)).as_deref(),
            Some("mounts[1].type")
        );
        let m = json!([{"destination": "/y", "options": ["rbind"]}]);
        assert_eq!(
            failing_path(with(&["mounts"], m)).as_deref(),
            Some("mounts[0].source")
        );
    }

    #[test]
    fn hooks_need_absolute_paths_and_positive_timeouts() {
        let h = json!({"poststart": [{"path": "/bin/true"}, {"path": "true"}]});
        assert_eq!(
            failing_path(with(&["hooks"], h)).as_deref(),
            Some("hooks.poststart[1].path")
        );
        let h = json!({"prestart": [{"path": "/bin/true", "timeout": 0}]});
        assert_eq!(
            failing_path(with(&["hooks"], h)).as_deref(),
            Some("hooks.prestart[0].timeout")
        );
    }

    #[test]
    fn namespaces_are_unique_and_joined_paths_exist() {
        let ns = json!([{"type": "pid"}, {"type": "pid"}]);
        assert_eq!(
            failing_path(with(&["linux", "namespaces"], ns)).as_deref(),
            Some("linux.namespaces[1].type")
        );
        let ns = json!([{"type": "network", "path": "/nonexistent/carve/ns"}]);
        assert_eq!(
            failing_path(with(&["linux", "namespaces"], ns)).as_deref(),
            Some("linux.namespaces[0].path")
        );
    }

    #[test]
    fn id_maps_go_with_a_new_user_namespace() {
        let ns = json!([{"type": "user"}, {"type": "mount"}]);
        assert_eq!(
            failing_path(with(&["linux", "namespaces"], ns)).as_deref(),
            Some("linux.uidMappings")
        );
        let maps = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        assert_eq!(
            failing_path(with(&["linux", "uidMappings"], maps)).as_deref(),
            Some("linux.uidMappings")
        );
        let off = json!({"monotonic": {"secs": 1}});
        assert_eq!(
            failing_path(with(&["linux", "timeOffsets"], off)).as_deref(),
            Some("linux.timeOffsets")
        );
    }

    #[test]
    fn sysctls_belong_to_an_owned_namespace() {
        let s = json!({"net.ipv4.ip_forward": "1"});
        assert_eq!(
            failing_path(with(&["linux", "sysctl"], s)).as_deref(),
            Some("linux.sysctl.net.ipv4.ip_forward")
        );
        let s = json!({"kernel.shmmax": "1"});
        let mut doc = with(&["linux", "sysctl"], s);
        doc["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "ipc"}]);
        assert_eq!(failing_path(doc), None);
    }

    #[test]
    fn the_rest_of_linux_is_named() {
        assert_eq!(
            failing_path(with(&["linux", "rootfsPropagation"], json!("sideways"))).as_deref(),
            Some("linux.rootfsPropagation")
        );
        let d = json!([{"path": "/tmp/x", "type": "c", "major": 1, "minor": 3}]);
        assert_eq!(
            failing_path(with(&["linux", "devices"], d)).as_deref(),
            Some("linux.devices[0].path")
        );
        let sc = json!({"defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_LOG", "errnoRet": 1}]});
        assert_eq!(
            failing_path(with(&["linux", "seccomp"], sc)).as_deref(),
            Some("linux.seccomp.syscalls[0].errnoRet")
        );
    }
}
