//! OCI seccomp profiles (`linux.seccomp`, runtime-spec 1.2) → one classic BPF program, compiled
//! here rather than by libseccomp or seccompiler (which only knows one architecture per filter).
//!
//! The program, for an x86_64 kernel:
//! 1. loads `seccomp_data.arch` and dispatches: `AUDIT_ARCH_X86_64` to the native section,
//!    `AUDIT_ARCH_I386` (32-bit syscalls, `int $0x80`) to the i386 section when `SCMP_ARCH_X86`
//!    is listed; anything else gets the bad-architecture action, `SECCOMP_RET_KILL_THREAD` as in
//!    libseccomp (`SCMP_ACT_KILL`, which runc keeps);
//! 2. in the native section, a number with `__X32_SYSCALL_BIT` (other than -1, which tracers use
//!    to skip a syscall) goes to the x32 section when `SCMP_ARCH_X32` is listed, else gets the
//!    bad-architecture action;
//! 3. each section: when the default action denies (not ALLOW, LOG or TRACE, as runc's patchbpf),
//!    numbers above the largest syscall the profile names for that architecture return `ENOSYS`
//!    (runc's patchbpf), so a libc probing a syscall newer than the profile falls back instead of
//!    seeing EPERM; then the rules, ordered
//!    by the kernel's action precedence (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF >
//!    TRACE > LOG > ALLOW), the first match returning — so when several rules match, the most
//!    restrictive wins, as the kernel does between filters; then the default action.
//!
//! The native architecture is always filtered (runc adds it to every filter); architectures that
//! cannot occur on an x86_64 kernel (ARM, MIPS…) are accepted and ignored. Syscall names unknown
//! to an architecture are skipped for that architecture: profiles list the names of every
//! architecture. Argument conditions compare 64-bit values (high word, then low word) on x86_64 and
//! x32; on i386 arguments are 32-bit and only the low 32 bits of `value`/`valueTwo` are used, as
//! libseccomp does (so `0xffffffffffffff9c` written for AT_FDCWD matches the 32-bit -100).
//! Several conditions on one argument index make every condition of the rule an alternative
//! (runc's behaviour); otherwise conditions are all required.

mod asm;
pub mod moby;
mod tables;
#[cfg(test)]
mod tests;

use asm::{Asm, Label, Target, JEQ, JGE, JGT};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompFilterFlag as Flag,
    LinuxSeccompOperator as Op,
};
/// A classic BPF program, as `seccomp(SECCOMP_SET_MODE_FILTER)` takes it.
pub type BpfProgram = Vec<libc::sock_filter>;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// `AUDIT_ARCH_X86_64` (also the arch of x32 syscalls).
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: 32-bit syscalls of an x86_64 kernel with IA32 emulation.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: set in the syscall number of x32 syscalls.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `BPF_MAXINSNS`: the kernel's limit on a classic BPF program.
pub const MAX_INSNS: usize = 4096;

/// `SECCOMP_RET_KILL_PROCESS`.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_KILL_THREAD`.
pub const RET_KILL_THREAD: u32 = 0;
/// `SECCOMP_RET_TRAP`.
pub const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ERRNO` (errno in the low 16 bits).
pub const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_USER_NOTIF`.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `SECCOMP_RET_TRACE` (data in the low 16 bits).
pub const RET_TRACE: u32 = 0x7ff0_0000;
/// `SECCOMP_RET_LOG`.
pub const RET_LOG: u32 = 0x7ffc_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// What a syscall of an unlisted architecture gets (libseccomp's default `SCMP_ACT_KILL`).
pub const RET_BAD_ARCH: u32 = RET_KILL_THREAD;

/// A compiled profile.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// Programs to install, with whether each needs `SECCOMP_FILTER_FLAG_NEW_LISTENER` (the
    /// profile has `SCMP_ACT_NOTIFY` rules). There is one program.
    pub programs: Vec<(BpfProgram, bool)>,
    /// SECCOMP_FILTER_FLAG_* bits from `flags`.
    pub flags: u64,
    /// Where to send the notify fd (`listenerPath`).
    pub listener_path: Option<std::path::PathBuf>,
    /// `listenerMetadata`.
    pub listener_metadata: String,
}

/// A syscall ABI seen by seccomp on an x86_64 kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// 64-bit syscalls.
    X86_64,
    /// 32-bit syscalls (`AUDIT_ARCH_I386`).
    I386,
    /// x32 syscalls (`AUDIT_ARCH_X86_64`, number | `__X32_SYSCALL_BIT`).
    X32,
}

impl Abi {
    /// This ABI's syscall table (numbers without the x32 bit).
    pub fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => tables::X86_64,
            Abi::I386 => tables::I386,
            Abi::X32 => tables::X32,
        }
    }

    /// The number seccomp sees for `name`, if this ABI has that syscall.
    pub fn number(self, name: &str) -> Option<u32> {
        type Index = OnceLock<HashMap<&'static str, u32>>;
        // Built once per process: a profile like podman's names ~450 syscalls for 3 ABIs.
        static INDEX: [Index; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let (slot, base) = match self {
            Abi::X86_64 => (0, 0),
            Abi::I386 => (1, 0),
            Abi::X32 => (2, X32_SYSCALL_BIT),
        };
        let index = INDEX[slot].get_or_init(|| self.table().iter().copied().collect());
        index.get(name).map(|nr| base | nr)
    }

    /// Inclusive ranges of numbers (as seccomp sees them) that get ENOSYS when the default
    /// action denies. As runc's patchbpf: every number above the largest syscall the profile
    /// names for this ABI (`newest`), so a libc probing a syscall newer than the profile
    /// (`clone3`, `close_range`, `openat2`, `faccessat2` under a pre-5.9 profile) falls back
    /// instead of failing with the default errno. A profile naming nothing of this ABI falls
    /// back to the kernel's table: numbers above all of it. x32 has two blocks (the common
    /// numbers, and its own compat numbers from 512), so the gap above the common block of the
    /// table counts too (the kernel has nothing there either).
    fn enosys_ranges(self, newest: Option<u32>) -> Vec<(u32, u32)> {
        let max = |f: &dyn Fn(u32) -> bool| {
            self.table()
                .iter()
                .map(|e| e.1)
                .filter(|n| f(*n))
                .max()
                .unwrap_or(0)
        };
        let base = if self == Abi::X32 { X32_SYSCALL_BIT } else { 0 };
        let from = newest.map_or(base | (max(&|_| true) + 1), |n| n + 1);
        let mut v = Vec::new();
        if self == Abi::X32 {
            let common = max(&|n| n < 512);
            let gap = (X32_SYSCALL_BIT | (common + 1), X32_SYSCALL_BIT | 511);
            if common < 511 && gap.1 < from {
                v.push(gap);
            }
        }
        // Numbers with the x32 bit never reach the native section (but -1 does).
        v.push((from, u32::MAX));
        v
    }
}

/// One argument condition.
#[derive(Debug, Clone, Copy)]
struct Cond {
    index: u32,
    op: Op,
    value: u64,
    value_two: u64,
}

/// One compiled rule of one ABI: syscall number, `SECCOMP_RET_*` value, conditions (all needed).
#[derive(Debug, Clone)]
struct Rule {
    nr: u32,
    action: u32,
    conds: Vec<Cond>,
}

type Err = crate::config::FieldError;

/// The kernel's precedence of an action: lower is more restrictive (it compares the action bits
/// as a signed number).
fn precedence(ret: u32) -> i32 {
    (ret & 0xffff_0000) as i32
}

/// The `SECCOMP_RET_*` value of an action; `errno` is the data of ERRNO and TRACE.
fn ret_value(a: Act, errno: u32) -> u32 {
    match a {
        Act::ScmpActAllow => RET_ALLOW,
        Act::ScmpActKill | Act::ScmpActKillThread => RET_KILL_THREAD,
        Act::ScmpActKillProcess => RET_KILL_PROCESS,
        Act::ScmpActTrap => RET_TRAP,
        Act::ScmpActErrno => RET_ERRNO | errno,
        Act::ScmpActTrace => RET_TRACE | errno,
        Act::ScmpActLog => RET_LOG,
        Act::ScmpActNotify => RET_USER_NOTIF,
    }
}

/// errno values ride in the 16 data bits of the return value.
fn check_errno(path: String, v: u32) -> Result<u32, Err> {
    if v > 0xffff {
        return Err((
            path,
            format!("{v} does not fit the 16-bit seccomp return data"),
        )
            .into());
    }
    Ok(v)
}

/// Compiles a profile; errors carry a JSON sub-path below `linux.seccomp` and a message.
pub fn compile(s: &LinuxSeccomp) -> Result<Compiled, Err> {
    let default = default_ret(s)?;
    let abis = abis_of(s);
    let plan = rules_of(s, &abis)?;
    if plan.has_notify && s.listener_path().is_none() {
        return Err((".listenerPath", "SCMP_ACT_NOTIFY needs a listenerPath").into());
    }
    // runc's patchbpf: permissive defaults (a tracer handles ENOSYS itself) get no ENOSYS stub.
    let enosys = !matches!(
        s.default_action(),
        Act::ScmpActAllow | Act::ScmpActLog | Act::ScmpActTrace
    );
    let prog = generate(&plan.rules, &plan.newest, default, enosys);
    if prog.len() > MAX_INSNS {
        return Err((
            String::new(),
            format!(
                "the profile compiles to {} BPF instructions, more than the kernel's limit of {MAX_INSNS}",
                prog.len()
            ),
        ).into());
    }
    Ok(Compiled {
        programs: vec![(prog, plan.has_notify)],
        flags: filter_flags(s),
        listener_path: s.listener_path().clone(),
        listener_metadata: s.listener_metadata().clone().unwrap_or_default(),
    })
}

/// The default action's return value (`defaultErrnoRet` checked; NOTIFY refused).
fn default_ret(s: &LinuxSeccomp) -> Result<u32, Err> {
    let default_errno = check_errno(
        ".defaultErrnoRet".into(),
        s.default_errno_ret().unwrap_or(libc::EPERM as u32),
    )?;
    if s.default_action() == Act::ScmpActNotify {
        return Err((
            ".defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action",
        )
            .into());
    }
    Ok(ret_value(s.default_action(), default_errno))
}

/// The ABIs filtered: the native one first, then i386 and x32 when listed.
fn abis_of(s: &LinuxSeccomp) -> Vec<Abi> {
    let mut abis = vec![Abi::X86_64];
    for a in s.architectures().iter().flatten() {
        let abi = match a {
            Arch::ScmpArchX86 => Abi::I386,
            Arch::ScmpArchX32 => Abi::X32,
            // The native architecture is always there; the others cannot occur on this kernel.
            _ => continue,
        };
        if !abis.contains(&abi) {
            abis.push(abi);
        }
    }
    abis
}

/// `SECCOMP_FILTER_FLAG_*` bits of `flags`.
fn filter_flags(s: &LinuxSeccomp) -> u64 {
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            Flag::SeccompFilterFlagTsync => 1,
            Flag::SeccompFilterFlagLog => 2,
            Flag::SeccompFilterFlagSpecAllow => 4,
            Flag::SeccompFilterFlagWaitKillableRecv => 32,
        };
    }
    flags
}

/// The rules of a profile per ABI, before ordering.
struct RulePlan {
    rules: Vec<(Abi, Vec<Rule>)>,
    /// The largest number the profile names per ABI, whatever the rule's action (runc's
    /// findLastSyscalls).
    newest: Vec<Option<u32>>,
    /// Some rule is `SCMP_ACT_NOTIFY`.
    has_notify: bool,
}

/// Every `syscalls[i]` entry as rules of each ABI that has its names.
fn rules_of(s: &LinuxSeccomp, abis: &[Abi]) -> Result<RulePlan, Err> {
    let mut plan = RulePlan {
        rules: abis.iter().map(|a| (*a, Vec::new())).collect(),
        newest: vec![None; abis.len()],
        has_notify: false,
    };
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let action = ret_value(sc.action(), rule_errno(i, sc)?);
        plan.has_notify |= sc.action() == Act::ScmpActNotify;
        let cond_sets = cond_sets(i, sc)?;
        for name in sc.names() {
            for (k, (abi, list)) in plan.rules.iter_mut().enumerate() {
                let Some(nr) = abi.number(name) else { continue };
                plan.newest[k] = plan.newest[k].max(Some(nr));
                for cs in &cond_sets {
                    list.push(Rule {
                        nr,
                        action,
                        conds: cs.clone(),
                    });
                }
            }
        }
    }
    Ok(plan)
}

/// The return data of `syscalls[i]`: its errno for ERRNO and TRACE, else none (and refused).
fn rule_errno(i: usize, sc: &oci_spec::runtime::LinuxSyscall) -> Result<u32, Err> {
    match (sc.action(), sc.errno_ret()) {
        (Act::ScmpActErrno | Act::ScmpActTrace, e) => check_errno(
            format!(".syscalls[{i}].errnoRet"),
            e.unwrap_or(libc::EPERM as u32),
        ),
        (_, None) => Ok(0),
        (a, Some(_)) => Err((
            format!(".syscalls[{i}].errnoRet"),
            format!("errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {a}"),
        )
            .into()),
    }
}

/// The condition sets of `syscalls[i]`, any of which makes the rule match: one set with every
/// condition, or — several conditions on one argument being alternatives (OR), as in runc —
/// one set per condition.
fn cond_sets(i: usize, sc: &oci_spec::runtime::LinuxSyscall) -> Result<Vec<Vec<Cond>>, Err> {
    let mut conds = Vec::new();
    for (j, a) in sc.args().iter().flatten().enumerate() {
        if a.index() > 5 {
            return Err((
                format!(".syscalls[{i}].args[{j}].index"),
                "argument index must be 0..=5",
            )
                .into());
        }
        conds.push(Cond {
            index: a.index() as u32,
            op: a.op(),
            value: a.value(),
            value_two: a.value_two().unwrap_or(0),
        });
    }
    let mut idx: Vec<u32> = conds.iter().map(|c| c.index).collect();
    idx.sort_unstable();
    Ok(if idx.windows(2).any(|w| w[0] == w[1]) {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    })
}

/// Orders one ABI's rules by precedence (stable: profile order among equals) and drops rules
/// that cannot change a verdict: those after an unconditional rule of the same syscall, and
/// trailing ones that return what the default returns anyway.
fn order(mut rules: Vec<Rule>, default: u32) -> Vec<Rule> {
    rules.sort_by_key(|r| precedence(r.action));
    let mut decided = HashSet::new();
    rules.retain(|r| {
        if decided.contains(&r.nr) {
            return false;
        }
        if r.conds.is_empty() {
            decided.insert(r.nr);
        }
        true
    });
    while rules.last().is_some_and(|r| r.action == default) {
        rules.pop();
    }
    rules
}

/// The whole program: arch dispatch, then one section per ABI.
fn generate(
    rules: &[(Abi, Vec<Rule>)],
    newest: &[Option<u32>],
    default: u32,
    enosys: bool,
) -> BpfProgram {
    let mut a = Asm::default();
    let has = |abi| rules.iter().any(|r| r.0 == abi);
    let l64 = a.label();
    let l32 = a.label();
    let lx32 = a.label();
    let bad = a.label();
    let l_enosys = a.label();
    a.load(4);
    a.jump(JEQ, AUDIT_ARCH_X86_64, Target::L(l64), Target::Next);
    if has(Abi::I386) {
        a.jump(JEQ, AUDIT_ARCH_I386, Target::L(l32), Target::Next);
    }
    a.ret(RET_BAD_ARCH);
    for ((abi, list), newest) in rules.iter().zip(newest) {
        let list = order(list.clone(), default);
        match abi {
            Abi::X86_64 => {
                a.bind(l64);
                a.load(0);
                let native = a.label();
                let x32 = Target::L(if has(Abi::X32) { lx32 } else { bad });
                a.jump(JGE, X32_SYSCALL_BIT, Target::Next, Target::L(native));
                a.jump(JEQ, u32::MAX, Target::L(native), x32);
                a.bind(native);
            }
            // Reached from the native section with the number loaded.
            Abi::X32 => a.bind(lx32),
            Abi::I386 => {
                a.bind(l32);
                a.load(0);
            }
        }
        let enosys = enosys.then(|| (l_enosys, abi.enosys_ranges(*newest)));
        section(&mut a, *abi, &list, default, enosys);
    }
    a.bind(bad);
    a.ret(RET_BAD_ARCH);
    a.bind(l_enosys);
    a.ret(RET_ERRNO | libc::ENOSYS as u32);
    a.finish()
}

/// One ABI's rules; the syscall number is in A on entry. Rules jump to a return instruction
/// shared by a run of rules with the same action, placed every ~200 instructions so that most
/// jumps stay within the 8-bit offsets (the assembler adds trampolines for the others).
fn section(
    a: &mut Asm,
    abi: Abi,
    rules: &[Rule],
    default: u32,
    enosys: Option<(Label, Vec<(u32, u32)>)>,
) {
    if let Some((l, ranges)) = enosys {
        for (lo, hi) in ranges {
            if hi == u32::MAX {
                a.jump(JGE, lo, Target::L(l), Target::Next);
            } else {
                let skip = a.label();
                a.jump(JGE, lo, Target::Next, Target::L(skip));
                a.jump(JGT, hi, Target::L(skip), Target::L(l));
                a.bind(skip);
            }
        }
    }
    let mut i = 0;
    while i < rules.len() {
        let action = rules[i].action;
        let ret = a.label();
        let start = a.len_hint();
        while i < rules.len() && rules[i].action == action && a.len_hint() - start < 200 {
            rule(a, abi, &rules[i], ret);
            i += 1;
        }
        let after = a.label();
        a.ja(after);
        a.bind(ret);
        a.ret(action);
        a.bind(after);
    }
    a.ret(default);
}

fn rule(a: &mut Asm, abi: Abi, r: &Rule, ret: Label) {
    if r.conds.is_empty() {
        a.jump(JEQ, r.nr, Target::L(ret), Target::Next);
        return;
    }
    let skip = a.label();
    let reload = a.label();
    a.jump(JEQ, r.nr, Target::Next, Target::L(skip));
    for (k, c) in r.conds.iter().enumerate() {
        let pass = if k + 1 == r.conds.len() {
            Target::L(ret)
        } else {
            Target::Next
        };
        cond(a, abi, c, pass, Target::L(reload));
    }
    // The conditions loaded arguments: the next rule needs the number back.
    a.bind(reload);
    a.load(0);
    a.bind(skip);
}

/// One condition (unsigned comparisons, as libseccomp).
fn cond(a: &mut Asm, abi: Abi, c: &Cond, pass: Target, fail: Target) {
    let lo_off = 16 + 8 * c.index;
    let hi_off = lo_off + 4;
    let (vh, vl) = ((c.value >> 32) as u32, c.value as u32);
    // MASKED_EQ compares with the datum masked too, as libseccomp (`_db_node_mask_fixup`):
    // datum bits outside the mask do not make the rule unmatchable.
    let datum = c.value_two & c.value;
    let (dh, dl) = ((datum >> 32) as u32, datum as u32);
    let next = Target::Next;
    if abi == Abi::I386 {
        a.load(lo_off);
        match c.op {
            Op::ScmpCmpEq => a.jump(JEQ, vl, pass, fail),
            Op::ScmpCmpNe => a.jump(JEQ, vl, fail, pass),
            Op::ScmpCmpGt => a.jump(JGT, vl, pass, fail),
            Op::ScmpCmpGe => a.jump(JGE, vl, pass, fail),
            Op::ScmpCmpLt => a.jump(JGE, vl, fail, pass),
            Op::ScmpCmpLe => a.jump(JGT, vl, fail, pass),
            Op::ScmpCmpMaskedEq => {
                a.and(vl);
                a.jump(JEQ, dl, pass, fail);
            }
        }
        return;
    }
    // 64-bit: the high words decide unless they are equal; then the low words do.
    a.load(hi_off);
    match c.op {
        Op::ScmpCmpEq => {
            a.jump(JEQ, vh, next, fail);
            a.load(lo_off);
            a.jump(JEQ, vl, pass, fail);
        }
        Op::ScmpCmpNe => {
            a.jump(JEQ, vh, next, pass);
            a.load(lo_off);
            a.jump(JEQ, vl, fail, pass);
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            a.jump(JGT, vh, pass, next);
            a.jump(JEQ, vh, next, fail);
            a.load(lo_off);
            let code = if c.op == Op::ScmpCmpGt { JGT } else { JGE };
            a.jump(code, vl, pass, fail);
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            a.jump(JGT, vh, fail, next);
            a.jump(JEQ, vh, next, pass);
            a.load(lo_off);
            // a < v ⇔ !(a >= v); a <= v ⇔ !(a > v)
            let code = if c.op == Op::ScmpCmpLt { JGE } else { JGT };
            a.jump(code, vl, fail, pass);
        }
        Op::ScmpCmpMaskedEq => {
            // `value` is the mask, `valueTwo` the datum (libseccomp's SCMP_CMP_MASKED_EQ).
            a.and(vh);
            a.jump(JEQ, dh, next, fail);
            a.load(lo_off);
            a.and(vl);
            a.jump(JEQ, dl, pass, fail);
        }
    }
}
