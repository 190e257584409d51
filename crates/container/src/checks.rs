//! Rules of the runtime-spec that are about the shape of config.json alone (docs/oci-conformance.md
//! lists each with its test): values the spec says MUST (NOT) be so, checked before anything
//! touches the host, each error naming the JSON path.

use oci_spec::runtime::{LinuxSeccompAction, Spec};

/// The JSON path and message of the first rule broken.
pub type Broken = crate::config::FieldError;

/// Every rule of this module, in document order.
pub fn check(spec: &Spec) -> Result<(), Broken> {
    semver(spec.version())?;
    annotations(spec)?;
    if let Some(l) = spec.linux() {
        for (field, list) in [
            ("maskedPaths", l.masked_paths()),
            ("readonlyPaths", l.readonly_paths()),
        ] {
            for (i, p) in list.iter().flatten().enumerate() {
                if !p.starts_with('/') {
                    return Err((
                        format!("linux.{field}[{i}]"),
                        format!("{p:?} is not an absolute path"),
                    )
                        .into());
                }
            }
        }
        if let Some(p) = l.personality() {
            if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
                return Err((
                    "linux.personality.flags",
                    "not supported: the runtime-spec defines no personality flags",
                )
                    .into());
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, d) in l.devices().iter().flatten().enumerate() {
            if !seen.insert(d.path()) {
                return Err((
                    format!("linux.devices[{i}].path"),
                    format!("{} is listed twice", d.path().display()),
                )
                    .into());
            }
        }
    }
    ns_paths(spec)?;
    seccomp(spec)
}

/// A namespace `path` MUST be absolute, and MUST name a namespace of the entry's type (checked
/// with NS_GET_NSTYPE, so the error names the entry instead of a later setns EINVAL).
fn ns_paths(spec: &Spec) -> Result<(), Broken> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    use std::os::fd::AsRawFd;
    let list = spec.linux().as_ref().and_then(|l| l.namespaces().clone());
    for (i, n) in list.iter().flatten().enumerate() {
        let Some(p) = n.path() else { continue };
        let at = format!("linux.namespaces[{i}].path");
        if !p.is_absolute() {
            return Err((at, format!("{} is not an absolute path", p.display())).into());
        }
        let want = match n.typ() {
            T::Mount => libc::CLONE_NEWNS,
            T::Cgroup => libc::CLONE_NEWCGROUP,
            T::Uts => libc::CLONE_NEWUTS,
            T::Ipc => libc::CLONE_NEWIPC,
            T::User => libc::CLONE_NEWUSER,
            T::Pid => libc::CLONE_NEWPID,
            T::Network => libc::CLONE_NEWNET,
            T::Time => 0x80,
        };
        // Unopenable paths are reported by the existence check that follows.
        let Ok(f) = std::fs::File::open(p) else {
            continue;
        };
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
        // SAFETY: an ioctl without arguments on an fd we own.
        let got = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
        if got != want {
            return Err((
                at,
                format!("{} is not a {} namespace", p.display(), n.typ()),
            )
                .into());
        }
    }
    Ok(())
}

/// `ociVersion` MUST be SemVer 2.0.0: MAJOR.MINOR.PATCH, numbers without leading zeros, then an
/// optional `-pre-release` and `+build`.
fn semver(v: &str) -> Result<(), Broken> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let nums: Vec<&str> = core.split('.').collect();
    let ok = nums.len() == 3
        && nums.iter().all(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n.len() == 1 || !n.starts_with('0'))
        })
        && v[core.len()..]
            .split(['-', '+', '.'])
            .skip(1)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(())
    } else {
        Err((
            "ociVersion",
            format!("{v:?} is not a SemVer 2.0.0 version like \"1.2.0\""),
        )
            .into())
    }
}

/// Annotation keys MUST NOT be empty.
fn annotations(spec: &Spec) -> Result<(), Broken> {
    if spec
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(""))
    {
        return Err((
            "annotations",
            "a key is empty: keys must be non-empty strings",
        )
            .into());
    }
    Ok(())
}

fn seccomp(spec: &Spec) -> Result<(), Broken> {
    let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(());
    };
    if s.listener_metadata().is_some() && s.listener_path().is_none() {
        return Err((
            "linux.seccomp.listenerMetadata",
            "must not be set without linux.seccomp.listenerPath",
        )
            .into());
    }
    let takes_errno = |a: LinuxSeccompAction| {
        matches!(
            a,
            LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
        )
    };
    if s.default_errno_ret().is_some() && !takes_errno(s.default_action()) {
        return Err((
            "linux.seccomp.defaultErrnoRet",
            format!(
                "only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {:?}",
                s.default_action()
            ),
        )
            .into());
    }
    for (i, r) in s.syscalls().iter().flatten().enumerate() {
        if r.names().is_empty() {
            return Err((
                format!("linux.seccomp.syscalls[{i}].names"),
                "empty: at least one syscall name is required",
            )
                .into());
        }
    }
    Ok(())
}

/// config.json as the parser needs it: capability names this runtime does not know removed, each
/// logged as a warning (the runtime-spec says a capability that cannot be mapped MUST be logged as
/// a warning and SHOULD NOT fail the container; runc 1.2 does the same), and the spec's
/// scheduler flag names `SCHED_FLAG_RESET_ON_FORK` / `SCHED_FLAG_DL_OVERRUN` mapped to the
/// spellings oci-spec-rs 0.10 parses. Bytes that are not a JSON object come back unchanged, for
/// the parser to report.
pub fn normalize(bytes: &[u8]) -> Vec<u8> {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return bytes.to_vec();
    };
    let changed = drop_unknown_caps(&mut doc) | sched_flag_names(&mut doc);
    if !changed {
        return bytes.to_vec();
    }
    serde_json::to_vec(&doc).unwrap_or_else(|_| bytes.to_vec())
}

fn drop_unknown_caps(doc: &mut serde_json::Value) -> bool {
    let Some(caps) = doc
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return false;
    };
    let mut dropped = false;
    for (set, list) in caps.iter_mut() {
        let Some(list) = list.as_array_mut() else {
            continue;
        };
        list.retain(|c| {
            let known = serde_json::from_value::<oci_spec::runtime::Capability>(c.clone()).is_ok();
            if !known && c.is_string() {
                tracing::warn!("process.capabilities.{set}: ignoring unknown capability {c}");
                dropped = true;
                return false;
            }
            true
        });
    }
    dropped
}

fn sched_flag_names(doc: &mut serde_json::Value) -> bool {
    let Some(flags) = doc
        .pointer_mut("/process/scheduler/flags")
        .and_then(|f| f.as_array_mut())
    else {
        return false;
    };
    let mut changed = false;
    for f in flags {
        let alias = match f.as_str() {
            Some("SCHED_FLAG_RESET_ON_FORK") => "SCHED_RESET_ON_FORK",
            Some("SCHED_FLAG_DL_OVERRUN") => "SCHED_FLAG_D_L_OVERRUN",
            _ => continue,
        };
        *f = serde_json::Value::from(alias);
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_versions() {
        for good in [
            "1.0.0",
            "1.2.0",
            "1.0.2-dev",
            "1.0.0-rc.1+build.5",
            "10.20.30",
        ] {
            assert!(semver(good).is_ok(), "{good}");
        }
        for bad in [
            "1", "1.2", "1.02.0", "banana", "1.2.0-", "1.2.0+", "1.x.0", "",
        ] {
            assert!(semver(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_capabilities_are_dropped_and_known_ones_kept() {
        let doc =
            br#"{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_BOGUS"],"ambient":[]}}}"#;
        let out: serde_json::Value = serde_json::from_slice(&normalize(doc)).unwrap();
        assert_eq!(
            out["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_CHOWN"])
        );
        assert_eq!(normalize(b"not json"), b"not json");
    }

    #[test]
    fn the_specs_scheduler_flag_names_parse() {
        let doc = br#"{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":0},
            "scheduler":{"policy":"SCHED_OTHER",
            "flags":["SCHED_FLAG_RESET_ON_FORK","SCHED_FLAG_DL_OVERRUN","SCHED_FLAG_RECLAIM"]}}}"#;
        let s: Spec = serde_json::from_slice(&normalize(doc)).unwrap();
        let p = s.process().clone().unwrap();
        assert_eq!(
            p.scheduler()
                .as_ref()
                .unwrap()
                .flags()
                .as_ref()
                .unwrap()
                .len(),
            3
        );
    }
}
