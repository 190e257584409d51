//! Docker's seccomp template (moby `profiles/seccomp/default.json`, also podman's
//! `/usr/share/containers/seccomp.json`) → the `linux.seccomp` object dockerd and podman write
//! into config.json on an x86_64 host (moby `seccomp_linux.go`): the architectures of the
//! native arch's `archMap` entry; a rule kept when its `includes` match (arches, caps,
//! minKernel) and its `excludes` do not.

use serde_json::{json, Value};

/// The OCI profile for a container whose bounding set is `caps`, on a kernel `kernel`
/// ("6.1.0-…"); `None` when `t` is not a template of that shape (no `syscalls` list or no
/// x86_64 `archMap` entry).
pub fn to_oci(t: &Value, caps: &[&str], kernel: &str) -> Option<Value> {
    const ARCH: &str = "amd64";
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let has = |v: &Value, x: &str| list(v).iter().any(|e| e.as_str() == Some(x));
    let archs: Vec<Value> = list(&t["archMap"])
        .into_iter()
        .find(|m| m["architecture"] == "SCMP_ARCH_X86_64")
        .map(|m| {
            let mut v = vec![m["architecture"].clone()];
            v.extend(list(&m["subArchitectures"]));
            v
        })?;
    let mut rules = Vec::new();
    for s in t["syscalls"].as_array()? {
        let (inc, exc) = (&s["includes"], &s["excludes"]);
        let keep = (list(&inc["arches"]).is_empty() || has(&inc["arches"], ARCH))
            && list(&inc["caps"])
                .iter()
                .all(|c| c.as_str().is_some_and(|c| caps.contains(&c)))
            && inc["minKernel"]
                .as_str()
                .is_none_or(|k| version(kernel) >= version(k))
            && !has(&exc["arches"], ARCH)
            && !list(&exc["caps"])
                .iter()
                .any(|c| c.as_str().is_some_and(|c| caps.contains(&c)));
        if !keep {
            continue;
        }
        let mut r = json!({"names": s["names"], "action": s["action"]});
        if !list(&s["args"]).is_empty() {
            r["args"] = s["args"].clone();
        }
        if !s["errnoRet"].is_null() {
            r["errnoRet"] = s["errnoRet"].clone();
        }
        rules.push(r);
    }
    let mut p =
        json!({"defaultAction": t["defaultAction"], "architectures": archs, "syscalls": rules});
    if !t["defaultErrnoRet"].is_null() {
        p["defaultErrnoRet"] = t["defaultErrnoRet"].clone();
    }
    Some(p)
}

/// Major and minor of a kernel release ("6.18.44-fc" → [6, 18]).
fn version(s: &str) -> Vec<u32> {
    s.split(['.', '-'])
        .take(2)
        .map(|x| x.parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_caps_arches_and_kernel() {
        let t = json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                        {"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": []},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["breakpoint"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_KILL"]}},
                {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.19"}},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "errnoRet": 3,
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        });
        let p = to_oci(&t, &["CAP_KILL"], "6.18.44-fc").unwrap();
        let names: Vec<&str> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["names"][0].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["read", "arch_prctl", "chroot", "kill", "personality"]
        );
        assert_eq!(p["syscalls"][2]["action"], "SCMP_ACT_ERRNO");
        assert!(p["syscalls"][0].get("args").is_none());
        assert_eq!(p["syscalls"][4]["errnoRet"], 3);
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(p["defaultErrnoRet"], 1);
        let p = to_oci(&t, &[], "7.0").unwrap();
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 5, "{p}");
        assert!(to_oci(&json!({"syscalls": []}), &[], "6.1").is_none());
    }
}
