//! OCI seccomp → BPF with seccompiler.
//!
//! seccompiler gives each filter one "match" and one "mismatch" action, while OCI gives each
//! syscall group its own action. The kernel runs every installed filter and keeps the most
//! restrictive verdict, so one OCI profile becomes:
//! - filter 0: every syscall named by any rule (with its conditions) → ALLOW, others → the
//!   default action (skipped when the default is ALLOW);
//! - one filter per distinct rule action A ≠ ALLOW: the syscalls of that action → A, others → ALLOW.
//!
//! A syscall matched by a rule gets min(ALLOW, A) = A; an unmatched one gets the default.
//! `SCMP_ACT_NOTIFY` is compiled as TRACE with a marker and its return instructions are patched to
//! `SECCOMP_RET_USER_NOTIF`; that filter is installed with `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
//! Only the native architecture (x86_64) is filtered: other listed architectures are accepted and
//! their syscalls are killed by seccompiler's architecture check.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use seccompiler::{sock_filter, BpfProgram};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const RET_TRACE: u32 = 0x7ff0_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const NOTIFY_MARK: u32 = 0xCA7E;

/// A compiled profile.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// Programs to install, with whether each is the notify filter.
    pub programs: Vec<(BpfProgram, bool)>,
    /// SECCOMP_FILTER_FLAG_* bits from `flags`.
    pub flags: u64,
    /// Where to send the notify fd (`listenerPath`).
    pub listener_path: Option<std::path::PathBuf>,
    /// `listenerMetadata`.
    pub listener_metadata: String,
}

fn action_json(a: LinuxSeccompAction, errno: Option<u32>, default_errno: u32) -> Value {
    match a {
        LinuxSeccompAction::ScmpActAllow => json!("allow"),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            json!("kill_thread")
        }
        LinuxSeccompAction::ScmpActKillProcess => json!("kill_process"),
        LinuxSeccompAction::ScmpActTrap => json!("trap"),
        LinuxSeccompAction::ScmpActErrno => json!({"errno": errno.unwrap_or(default_errno)}),
        LinuxSeccompAction::ScmpActTrace => json!({"trace": errno.unwrap_or(default_errno)}),
        LinuxSeccompAction::ScmpActLog => json!("log"),
        LinuxSeccompAction::ScmpActNotify => json!({"trace": NOTIFY_MARK}),
    }
}

type Err = (String, String);

/// Compiles a profile; errors carry a JSON sub-path below `linux.seccomp` and a message.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled, Err> {
    let default_errno = s.default_errno_ret().unwrap_or(libc::EPERM as u32);
    if let Some(arches) = s.architectures() {
        let native = arches.iter().any(|a| {
            matches!(
                a,
                oci_spec::runtime::Arch::ScmpArchX86_64 | oci_spec::runtime::Arch::ScmpArchNative
            )
        });
        if !arches.is_empty() && !native {
            return Err((
                ".architectures".into(),
                "the native architecture SCMP_ARCH_X86_64 must be listed".into(),
            ));
        }
    }
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match format!("{f:?}").as_str() {
            "SeccompFilterFlagTsync" => 1,
            "SeccompFilterFlagLog" => 2,
            "SeccompFilterFlagSpecAllow" => 4,
            "SeccompFilterFlagWaitKillableRecv" => 32,
            other => {
                return Err((".flags".into(), format!("unsupported flag {other}")));
            }
        };
    }
    // Group rules by action (as JSON, so errno values stay distinct); keep all rules for filter 0.
    let mut groups: BTreeMap<String, (Value, Vec<Value>, bool)> = BTreeMap::new();
    let mut all: Vec<Value> = Vec::new();
    let mut has_notify = false;
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let conds: Vec<Value> = sc
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let (op, val) = match a.op() {
                    LinuxSeccompOperator::ScmpCmpNe => (json!("ne"), a.value()),
                    LinuxSeccompOperator::ScmpCmpLt => (json!("lt"), a.value()),
                    LinuxSeccompOperator::ScmpCmpLe => (json!("le"), a.value()),
                    LinuxSeccompOperator::ScmpCmpEq => (json!("eq"), a.value()),
                    LinuxSeccompOperator::ScmpCmpGe => (json!("ge"), a.value()),
                    LinuxSeccompOperator::ScmpCmpGt => (json!("gt"), a.value()),
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        (json!({"masked_eq": a.value()}), a.value_two().unwrap_or(0))
                    }
                };
                json!({"index": a.index(), "type": "qword", "op": op, "val": val})
            })
            .collect();
        if sc.args().iter().flatten().any(|a| a.index() > 5) {
            return Err((
                format!(".syscalls[{i}].args"),
                "argument index must be 0..=5".into(),
            ));
        }
        // Several conditions on one argument are alternatives (OR), as in runc.
        let mut idx: Vec<usize> = sc.args().iter().flatten().map(|a| a.index()).collect();
        idx.sort();
        let repeated = idx.windows(2).any(|w| w[0] == w[1]);
        let cond_sets: Vec<Option<Vec<Value>>> = if conds.is_empty() {
            vec![None]
        } else if repeated {
            conds.into_iter().map(|c| Some(vec![c])).collect()
        } else {
            vec![Some(conds)]
        };
        let action = sc.action();
        if action == LinuxSeccompAction::ScmpActNotify {
            has_notify = true;
        }
        let aj = action_json(action, sc.errno_ret(), default_errno);
        let key = aj.to_string();
        for name in sc.names() {
            for cs in &cond_sets {
                let rule = match cs {
                    None => json!({"syscall": name}),
                    Some(c) => json!({"syscall": name, "args": c}),
                };
                all.push(rule.clone());
                if action != LinuxSeccompAction::ScmpActAllow {
                    let g = groups
                        .entry(key.clone())
                        .or_insert_with(|| (aj.clone(), Vec::new(), false));
                    g.1.push(rule);
                    g.2 = action == LinuxSeccompAction::ScmpActNotify;
                }
            }
        }
    }
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err((
            ".defaultAction".into(),
            "SCMP_ACT_NOTIFY cannot be the default action".into(),
        ));
    }
    if has_notify && s.listener_path().is_none() {
        return Err((
            ".listenerPath".into(),
            "SCMP_ACT_NOTIFY needs a listenerPath".into(),
        ));
    }
    let default = action_json(s.default_action(), None, default_errno);
    let mut filters = serde_json::Map::new();
    if s.default_action() != LinuxSeccompAction::ScmpActAllow {
        filters.insert(
            "f0".into(),
            json!({"mismatch_action": default, "filter_action": "allow", "filter": all}),
        );
    }
    let mut notify_names = Vec::new();
    for (n, (aj, rules, notify)) in groups.into_values().enumerate() {
        let name = format!("g{n}");
        if notify {
            notify_names.push(name.clone());
        }
        filters.insert(
            name,
            json!({"mismatch_action": "allow", "filter_action": aj, "filter": rules}),
        );
    }
    let mut programs = Vec::new();
    let mut doc = Value::Object(filters);
    // Names unknown to this architecture are skipped (libseccomp profiles list syscalls of every
    // architecture); drop them one by one and recompile.
    for _ in 0..4096 {
        if doc.as_object().is_none_or(|m| m.is_empty()) {
            break;
        }
        match seccompiler::compile_from_json(
            doc.to_string().as_bytes(),
            seccompiler::TargetArch::x86_64,
        ) {
            Ok(map) => {
                let mut names: Vec<&String> = map.keys().collect();
                names.sort();
                for k in names {
                    let mut prog = map[k].clone();
                    let notify = notify_names.contains(k);
                    if notify {
                        patch_notify(&mut prog);
                    }
                    programs.push((prog, notify));
                }
                break;
            }
            Err(e) if unknown_name(&e).is_some() => {
                let name = unknown_name(&e).unwrap_or_default();
                for f in doc.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                    if let Some(rules) = f.get_mut("filter").and_then(|r| r.as_array_mut()) {
                        rules.retain(|r| r["syscall"] != name.as_str());
                    }
                }
                // A group left without rules matches nothing: drop it.
                if let Some(m) = doc.as_object_mut() {
                    m.retain(|k, f| {
                        k == "f0" || f["filter"].as_array().is_some_and(|a| !a.is_empty())
                    });
                }
            }
            Err(e) => return Err((".syscalls".into(), e.to_string())),
        }
    }
    Ok(Compiled {
        programs,
        flags,
        listener_path: s.listener_path().clone(),
        listener_metadata: s.listener_metadata().clone().unwrap_or_default(),
    })
}

/// The syscall name of seccompiler's "Invalid syscall name: NAME for given arch" error (its
/// frontend error type is private, so the message is the interface).
fn unknown_name(e: &seccompiler::Error) -> Option<String> {
    let m = e.to_string();
    let rest = m.split("Invalid syscall name: ").nth(1)?;
    Some(rest.split(" for given arch").next()?.to_string())
}

fn patch_notify(prog: &mut [sock_filter]) {
    const BPF_RET_K: u16 = 0x06;
    for ins in prog.iter_mut() {
        if ins.code == BPF_RET_K && ins.k == RET_TRACE | NOTIFY_MARK {
            ins.k = RET_USER_NOTIF;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(j: Value) -> LinuxSeccomp {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn groups_become_filters_and_unknown_names_are_skipped() {
        let p = profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
            ]
        }));
        let c = compile(&p).unwrap();
        // two groups (errno 1 and kill_process), no default filter
        assert_eq!(c.programs.len(), 2);
    }

    #[test]
    fn notify_is_patched_and_needs_a_listener() {
        let mut j = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        });
        assert!(compile(&profile(j.clone())).is_err());
        j["listenerPath"] = json!("/tmp/x.sock");
        let c = compile(&profile(j)).unwrap();
        let (prog, notify) = c.programs.iter().find(|p| p.1).unwrap();
        assert!(notify);
        assert!(prog.iter().any(|i| i.k == RET_USER_NOTIF));
    }
}
