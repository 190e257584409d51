//! `linux.memoryPolicy` (runtime-spec 1.2.1): the NUMA memory policy of the container's
//! processes, set with set_mempolicy(2) in init (and in each `exec`'d process) before the
//! program runs. A task policy is inherited across fork and kept across execve, so the program
//! and all its children allocate under it.
//!
//! [`check`] validates the object against set_mempolicy's rules before anything touches the host
//! (naming the field at fault); [`apply`] makes the call.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType, Spec};

/// Node numbers accepted: the nodemask passed to the kernel holds this many bits.
const MAX_NODES: usize = 1024;

// uapi/linux/mempolicy.h
const MPOL_F_STATIC_NODES: i32 = 1 << 15;
const MPOL_F_RELATIVE_NODES: i32 = 1 << 14;
const MPOL_F_NUMA_BALANCING: i32 = 1 << 13;

fn mode_number(m: MemoryPolicyModeType) -> i32 {
    match m {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    }
}

/// Parses a node list like "0-3,7" (the `nodes` field).
fn parse_nodes(s: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let bad = || format!("{s:?} is not a node list like \"0-3,7\"");
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        if b >= MAX_NODES {
            return Err(format!(
                "node {b} is beyond the {MAX_NODES} nodes supported"
            ));
        }
        v.extend(a..=b);
    }
    Ok(v)
}

/// The nodes this host has online (`/sys/devices/system/node/online`); None when unreadable
/// (a kernel without NUMA support: then the kernel itself judges the nodes).
fn online_nodes() -> Option<Vec<usize>> {
    let s = std::fs::read_to_string("/sys/devices/system/node/online").ok()?;
    parse_nodes(s.trim()).ok()
}

/// The (mode | flags, nodemask) for set_mempolicy, or the error with the field that is wrong
/// (its path relative to `linux.memoryPolicy`).
fn resolve(p: &LinuxMemoryPolicy) -> Result<(i32, Vec<u64>), crate::config::FieldError> {
    let mode = p.mode();
    let nodes = match p.nodes().as_deref() {
        Some(s) => parse_nodes(s).map_err(|m| ("nodes", m))?,
        None => Vec::new(),
    };
    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFStaticNodes => MPOL_F_STATIC_NODES,
            MemoryPolicyFlagType::MpolFRelativeNodes => MPOL_F_RELATIVE_NODES,
            MemoryPolicyFlagType::MpolFNumaBalancing => MPOL_F_NUMA_BALANCING,
        };
    }
    use MemoryPolicyModeType as M;
    match mode {
        M::MpolDefault | M::MpolLocal if !nodes.is_empty() => {
            return Err(("nodes", format!("{mode} takes no nodes")).into())
        }
        M::MpolBind | M::MpolInterleave | M::MpolWeightedInterleave | M::MpolPreferredMany
            if nodes.is_empty() =>
        {
            return Err(("nodes", format!("{mode} needs at least one node")).into())
        }
        _ => {}
    }
    if flags & MPOL_F_STATIC_NODES != 0 && flags & MPOL_F_RELATIVE_NODES != 0 {
        return Err((
            "flags",
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other",
        )
            .into());
    }
    if flags != 0 && matches!(mode, M::MpolDefault) {
        return Err(("flags", "MPOL_DEFAULT takes no flags").into());
    }
    if flags & MPOL_F_NUMA_BALANCING != 0 && !matches!(mode, M::MpolBind | M::MpolPreferredMany) {
        return Err((
            "flags",
            format!("MPOL_F_NUMA_BALANCING needs MPOL_BIND or MPOL_PREFERRED_MANY, not {mode}"),
        )
            .into());
    }
    // Relative and static node numbers need not exist now; plain ones must.
    if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES) == 0 {
        if let Some(online) = online_nodes() {
            if let Some(n) = nodes.iter().find(|n| !online.contains(n)) {
                return Err((
                    "nodes",
                    format!("node {n} is not online on this host (online: {online:?})"),
                )
                    .into());
            }
        }
    }
    let mut mask = vec![0u64; MAX_NODES / 64];
    for n in nodes {
        mask[n / 64] |= 1 << (n % 64);
    }
    Ok((mode_number(mode) | flags, mask))
}

/// Validates `linux.memoryPolicy`: the error names the JSON path of the value.
pub fn check(p: &LinuxMemoryPolicy) -> Result<(), crate::config::FieldError> {
    resolve(p).map(|_| ()).map_err(|f| {
        crate::config::FieldError::new(format!("linux.memoryPolicy.{}", f.path), f.msg)
    })
}

/// Sets the calling thread's memory policy from `linux.memoryPolicy` (nothing when absent).
pub fn apply(spec: &Spec) -> crate::step::StepResult<()> {
    let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.memory_policy().as_ref())
    else {
        return Ok(());
    };
    let (mode, mask) =
        resolve(p).map_err(|f| format!("linux.memoryPolicy.{}: {}", f.path, f.msg))?;
    // The kernel reads maxnode - 1 bits (get_nodes decrements it first): pass one more than the
    // mask holds so the last node counts too.
    // SAFETY: set_mempolicy with a mask of MAX_NODES bits that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode,
            mask.as_ptr(),
            (MAX_NODES + 1) as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(crate::step::os(format!(
            "linux.memoryPolicy: set_mempolicy({}, nodes {:?}, flags {:?})",
            p.mode(),
            p.nodes().as_deref().unwrap_or(""),
            p.flags().as_deref().unwrap_or(&[]),
        ))(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol(json: &str) -> LinuxMemoryPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn modes_nodes_and_flags_resolve_to_the_kernel_values() {
        let (m, mask) = resolve(&pol(r#"{"mode":"MPOL_BIND","nodes":"0"}"#)).unwrap();
        assert_eq!((m, mask[0]), (2, 1));
        let (m, mask) = resolve(&pol(
            r#"{"mode":"MPOL_INTERLEAVE","nodes":"0-2,65","flags":["MPOL_F_STATIC_NODES"]}"#,
        ))
        .unwrap();
        assert_eq!((m, mask[0], mask[1]), (3 | (1 << 15), 0b111, 0b10));
        let (m, _) = resolve(&pol(r#"{"mode":"MPOL_PREFERRED"}"#)).unwrap();
        assert_eq!(m, 1);
    }

    #[test]
    fn bad_policies_name_the_field() {
        for (j, field) in [
            (r#"{"mode":"MPOL_BIND"}"#, "nodes"),
            (r#"{"mode":"MPOL_DEFAULT","nodes":"0"}"#, "nodes"),
            (r#"{"mode":"MPOL_LOCAL","nodes":"0"}"#, "nodes"),
            (r#"{"mode":"MPOL_BIND","nodes":"a"}"#, "nodes"),
            (r#"{"mode":"MPOL_BIND","nodes":"3-1"}"#, "nodes"),
            (r#"{"mode":"MPOL_BIND","nodes":"5000"}"#, "nodes"),
            (
                r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_STATIC_NODES","MPOL_F_RELATIVE_NODES"]}"#,
                "flags",
            ),
            (
                r#"{"mode":"MPOL_INTERLEAVE","nodes":"0","flags":["MPOL_F_NUMA_BALANCING"]}"#,
                "flags",
            ),
            (
                r#"{"mode":"MPOL_DEFAULT","flags":["MPOL_F_STATIC_NODES"]}"#,
                "flags",
            ),
        ] {
            let e = check(&pol(j)).unwrap_err();
            assert_eq!(e.path, format!("linux.memoryPolicy.{field}"), "{j}: {e:?}");
        }
    }
}
