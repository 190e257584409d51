//! The compiler checked by running its programs in a small classic-BPF interpreter (the subset the
//! kernel's seccomp checker accepts and we emit) over many `seccomp_data` inputs.

use super::*;
use serde_json::{json, Value};

/// Runs `prog` on (arch, nr, args) like the kernel would; panics on anything the kernel would
/// reject (jump out of the program, falling off its end, unknown opcode).
fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, v) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let ins = prog.get(pc).expect("ran off the end of the program");
        pc += 1;
        let k = ins.k;
        match ins.code {
            asm::LD_ABS => {
                let o = k as usize;
                assert!(o % 4 == 0 && o + 4 <= 64, "bad load offset {o}");
                a = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
            }
            asm::AND_K => a &= k,
            asm::RET_K => return k,
            asm::JA => pc += k as usize,
            code @ (asm::JEQ | asm::JGT | asm::JGE) => {
                let taken = match code {
                    asm::JEQ => a == k,
                    asm::JGT => a > k,
                    _ => a >= k,
                };
                pc += usize::from(if taken { ins.jt } else { ins.jf });
            }
            c => panic!("unexpected opcode {c:#x}"),
        }
        assert!(pc < prog.len(), "jump out of the program");
    }
}

fn profile(j: Value) -> LinuxSeccomp {
    serde_json::from_value(j).unwrap()
}

fn prog(j: Value) -> BpfProgram {
    let c = compile(&profile(j)).unwrap();
    assert_eq!(c.programs.len(), 1);
    c.programs[0].0.clone()
}

const X64: u32 = AUDIT_ARCH_X86_64;
const I386: u32 = AUDIT_ARCH_I386;
const AARCH64: u32 = 0xc000_00b7;
const NONE: [u64; 6] = [0; 6];
const EPERM: u32 = RET_ERRNO | 1;
const ENOSYS: u32 = RET_ERRNO | 38;

fn nr(abi: Abi, name: &str) -> u32 {
    abi.number(name).unwrap()
}

/// Parses a unistd header the way the script does, independently of it.
fn parse_header(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("#define __NR_")?;
            let (name, val) = rest.split_once(char::is_whitespace)?;
            let val = val.trim();
            let n = val
                .strip_prefix("(__X32_SYSCALL_BIT + ")
                .and_then(|v| v.strip_suffix(')'))
                .unwrap_or(val);
            Some((name.to_string(), n.parse().ok()?))
        })
        .collect()
}

#[test]
fn tables_match_the_headers() {
    let dir = std::path::Path::new("/usr/include/x86_64-linux-gnu/asm");
    if !dir.join("unistd_64.h").exists() {
        carve_testkit::skip(
            carve_testkit::SkipKind::ToolMissing,
            "no linux-libc-dev headers",
        );
        return;
    }
    for (file, table) in [
        ("unistd_64.h", tables::X86_64),
        ("unistd_32.h", tables::I386),
        ("unistd_x32.h", tables::X32),
    ] {
        let want = parse_header(&std::fs::read_to_string(dir.join(file)).unwrap());
        let have: Vec<(String, u32)> = table.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert!(want.len() > 300, "{file}: parsed only {}", want.len());
        assert_eq!(
            have, want,
            "{file} changed: rerun scripts/gen-syscall-tables.sh"
        );
    }
    // Spot checks against well-known numbers.
    assert_eq!(nr(Abi::X86_64, "getpid"), 39);
    assert_eq!(nr(Abi::I386, "getpid"), 20);
    assert_eq!(nr(Abi::I386, "mkdir"), 39);
    assert_eq!(nr(Abi::X32, "getpid"), X32_SYSCALL_BIT | 39);
    assert_eq!(nr(Abi::X32, "rt_sigaction"), X32_SYSCALL_BIT | 512);
}

#[test]
fn arch_dispatch_x86_i386_x32_and_bad_arch() {
    let rules = json!([{"names": ["mkdir", "getpid", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]);
    let e13 = RET_ERRNO | 13;
    // Native only (missing list): i386 and x32 syscalls get the bad-arch action.
    let p = prog(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    assert_eq!(run(&p, X64, 39, NONE), e13);
    assert_eq!(run(&p, X64, 83, NONE), e13);
    assert_eq!(run(&p, X64, 40, NONE), RET_ALLOW);
    assert_eq!(run(&p, I386, 20, NONE), RET_BAD_ARCH);
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 39, NONE), RET_BAD_ARCH);
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 40, NONE), RET_BAD_ARCH);
    assert_eq!(run(&p, AARCH64, 39, NONE), RET_BAD_ARCH);
    // -1 (a tracer's "skip") is a native number, not an x32 one.
    assert_eq!(run(&p, X64, u32::MAX, NONE), RET_ALLOW);
    // All three; ARM/aarch64 accepted and ignored; NATIVE is x86_64.
    let p = prog(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules,
        "architectures": ["SCMP_ARCH_NATIVE", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}));
    assert_eq!(run(&p, X64, 39, NONE), e13);
    assert_eq!(run(&p, I386, 20, NONE), e13, "i386 getpid");
    assert_eq!(run(&p, I386, 39, NONE), e13, "i386 mkdir");
    assert_eq!(run(&p, I386, 83, NONE), RET_ALLOW, "i386 83 is not mkdir");
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 39, NONE), e13, "x32 getpid");
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 40, NONE), RET_ALLOW);
    assert_eq!(run(&p, AARCH64, 39, NONE), RET_BAD_ARCH);
    // A list without the native architecture still filters it (runc adds it).
    let p = prog(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules, "architectures": ["SCMP_ARCH_X86"]}),
    );
    assert_eq!(run(&p, X64, 39, NONE), e13);
    assert_eq!(run(&p, I386, 20, NONE), e13);
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 39, NONE), RET_BAD_ARCH);
}

#[test]
fn every_action_and_its_data() {
    let p = prog(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5, "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 99},
        {"names": ["open"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["close"], "action": "SCMP_ACT_KILL"},
        {"names": ["stat"], "action": "SCMP_ACT_KILL_THREAD"},
        {"names": ["fstat"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["lstat"], "action": "SCMP_ACT_TRAP"},
        {"names": ["poll"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
        {"names": ["lseek"], "action": "SCMP_ACT_LOG"},
        {"names": ["mmap"], "action": "SCMP_ACT_NOTIFY"},
        {"names": ["brk"], "action": "SCMP_ACT_ALLOW"}],
        "listenerPath": "/run/x.sock"}),
    );
    let want = [
        (0, RET_ALLOW),
        (1, RET_ERRNO | 99),
        (2, EPERM), // a rule without errnoRet: EPERM (the spec), not defaultErrnoRet
        (3, RET_KILL_THREAD),
        (4, RET_KILL_THREAD),
        (5, RET_KILL_PROCESS),
        (6, RET_TRAP),
        (7, RET_TRACE | 7),
        (8, RET_LOG),
        (9, RET_USER_NOTIF),
        (10, RET_ERRNO | 5),
        (12, RET_ALLOW),
        // above the newest syscall named (brk)
        (13, ENOSYS),
    ];
    for (n, r) in want {
        assert_eq!(run(&p, X64, n, NONE), r, "syscall {n}");
    }
}

#[test]
fn most_restrictive_matching_rule_wins() {
    let p = prog(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3},
        {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS",
         "args": [{"index": 0, "value": 9, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getpid"], "action": "SCMP_ACT_TRAP",
         "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["getppid"], "action": "SCMP_ACT_TRACE"}]}));
    assert_eq!(run(&p, X64, 39, NONE), RET_ERRNO | 3);
    assert_eq!(run(&p, X64, 39, [9, 0, 0, 0, 0, 0]), RET_KILL_PROCESS);
    assert_eq!(run(&p, X64, 39, [0, 9, 0, 0, 0, 0]), RET_TRAP);
    assert_eq!(run(&p, X64, 39, [9, 9, 0, 0, 0, 0]), RET_KILL_PROCESS);
    assert_eq!(run(&p, X64, 110, NONE), RET_TRACE | 1);
}

/// What libseccomp's comparison means, on the argument as the ABI passes it.
fn reference(op: Op, arg: u64, value: u64, two: u64) -> bool {
    match op {
        Op::ScmpCmpEq => arg == value,
        Op::ScmpCmpNe => arg != value,
        Op::ScmpCmpLt => arg < value,
        Op::ScmpCmpLe => arg <= value,
        Op::ScmpCmpGt => arg > value,
        Op::ScmpCmpGe => arg >= value,
        Op::ScmpCmpMaskedEq => arg & value == two & value,
    }
}

#[test]
fn argument_conditions_have_64_bit_semantics() {
    let ops = [
        ("SCMP_CMP_EQ", Op::ScmpCmpEq),
        ("SCMP_CMP_NE", Op::ScmpCmpNe),
        ("SCMP_CMP_LT", Op::ScmpCmpLt),
        ("SCMP_CMP_LE", Op::ScmpCmpLe),
        ("SCMP_CMP_GT", Op::ScmpCmpGt),
        ("SCMP_CMP_GE", Op::ScmpCmpGe),
        ("SCMP_CMP_MASKED_EQ", Op::ScmpCmpMaskedEq),
    ];
    // Values around the word boundaries, where a low-word-only or high-word-only compare errs.
    let vals: [u64; 12] = [
        0,
        1,
        5,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x1_ffff_ffff,
        0x2_0000_0004,
        0x8000_0000_0000_0000,
        0xffff_ffff_0000_0005,
        0xffff_ffff_ffff_ff9c,
        u64::MAX,
    ];
    for (name, op) in ops {
        for &value in &vals {
            for two in [0u64, 5, 0x1_0000_0000, 0xffff_ffff_0000_0005] {
                for index in [0usize, 3, 5] {
                    let p = prog(json!({"defaultAction": "SCMP_ACT_ALLOW",
                        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                        "args": [{"index": index, "value": value, "valueTwo": two, "op": name}]}]}));
                    for &arg in &vals {
                        let mut args = NONE;
                        args[index] = arg;
                        let want = |m: bool| if m { EPERM } else { RET_ALLOW };
                        let m = reference(op, arg, value, two);
                        assert_eq!(
                            run(&p, X64, 39, args),
                            want(m),
                            "x86_64 {name} arg{index}={arg:#x} value={value:#x} two={two:#x}"
                        );
                        assert_eq!(
                            run(&p, X64, X32_SYSCALL_BIT | 39, args),
                            want(m),
                            "x32 {name} arg{index}={arg:#x} value={value:#x}"
                        );
                        // i386: 32-bit arguments against the low words of value/valueTwo. The
                        // high word of seccomp_data's argument is ignored whatever it holds.
                        let m32 = reference(
                            op,
                            arg & 0xffff_ffff,
                            value & 0xffff_ffff,
                            two & 0xffff_ffff,
                        );
                        assert_eq!(
                            run(&p, I386, 20, args),
                            want(m32),
                            "i386 {name} arg{index}={arg:#x} value={value:#x} two={two:#x}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn conditions_on_one_index_are_alternatives_otherwise_all_needed() {
    let p = prog(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [
            {"index": 0, "value": 100, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 200, "op": "SCMP_CMP_EQ"}]},
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2, "args": [
            {"index": 0, "value": 7, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 9, "op": "SCMP_CMP_NE"}]}]}));
    let a = |x: u64, y: u64| [x, y, 0, 0, 0, 0];
    assert_eq!(run(&p, X64, 39, a(100, 0)), EPERM);
    assert_eq!(run(&p, X64, 39, a(200, 0)), EPERM);
    assert_eq!(run(&p, X64, 39, a(150, 0)), RET_ALLOW);
    assert_eq!(run(&p, X64, 110, a(7, 10)), RET_ERRNO | 2);
    assert_eq!(run(&p, X64, 110, a(7, 9)), RET_ALLOW);
    assert_eq!(run(&p, X64, 110, a(8, 10)), RET_ALLOW);
    // A rule after a failed conditional rule still sees the syscall number.
    assert_eq!(run(&p, X64, 39, a(7, 10)), RET_ALLOW);
}

#[test]
fn unknown_new_syscalls_get_enosys_when_the_default_denies() {
    // A profile naming nothing of an ABI: ENOSYS above the kernel's table only.
    let j = |default: &str| {
        json!({"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
               "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ALLOW"}]})
    };
    let p = prog(j("SCMP_ACT_ERRNO"));
    let max = |abi: Abi| abi.table().iter().map(|e| e.1).max().unwrap();
    assert_eq!(run(&p, X64, 40, NONE), EPERM);
    // a hole inside the table is not "beyond every syscall"
    assert_eq!(run(&p, X64, 400, NONE), EPERM);
    assert_eq!(run(&p, X64, max(Abi::X86_64), NONE), EPERM);
    assert_eq!(run(&p, X64, max(Abi::X86_64) + 1, NONE), ENOSYS);
    assert_eq!(run(&p, X64, 1000, NONE), ENOSYS);
    assert_eq!(run(&p, X64, u32::MAX, NONE), ENOSYS);
    assert_eq!(run(&p, I386, max(Abi::I386), NONE), EPERM);
    assert_eq!(run(&p, I386, max(Abi::I386) + 1, NONE), ENOSYS);
    // x32: above the common block and below its own 512.., and above everything
    let common = Abi::X32
        .table()
        .iter()
        .map(|e| e.1)
        .filter(|n| *n < 512)
        .max()
        .unwrap();
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | common, NONE), EPERM);
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | (common + 1), NONE), ENOSYS);
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 511, NONE), ENOSYS);
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 512, NONE), EPERM);
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 1000, NONE), ENOSYS);
    // Kill default: same stub.
    let p = prog(j("SCMP_ACT_KILL_PROCESS"));
    assert_eq!(run(&p, X64, 1000, NONE), ENOSYS);
    assert_eq!(run(&p, X64, 40, NONE), RET_KILL_PROCESS);
    // Permissive defaults (allow, log, trace) keep their action.
    for (d, r) in [
        ("SCMP_ACT_ALLOW", RET_ALLOW),
        ("SCMP_ACT_LOG", RET_LOG),
        ("SCMP_ACT_TRACE", RET_TRACE | 1),
    ] {
        let p = prog(j(d));
        assert_eq!(run(&p, X64, 1000, NONE), r, "{d}");
    }
}

/// runc's patchbpf: every number above the newest syscall the profile names (per ABI, whatever
/// the rule's action) returns ENOSYS, so glibc falls back from clone3/close_range/openat2 under
/// a profile written before them (moby#42680).
#[test]
fn syscalls_newer_than_the_profile_get_enosys_per_abi() {
    let j = json!({"defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            // The newest name may be denied: it still counts (runc's findLastSyscalls).
            {"names": ["statx"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    let p = prog(j);
    let statx64 = nr(Abi::X86_64, "statx");
    let clone3 = nr(Abi::X86_64, "clone3");
    let close_range = nr(Abi::X86_64, "close_range");
    assert!(statx64 < clone3 && statx64 < close_range);
    assert_eq!(run(&p, X64, 39, NONE), RET_ALLOW);
    assert_eq!(run(&p, X64, statx64, NONE), RET_ERRNO | 1);
    // Older and unnamed: the default errno.
    assert_eq!(run(&p, X64, 40, NONE), EPERM);
    assert_eq!(run(&p, X64, statx64 - 1, NONE), EPERM);
    // Newer than the newest named: ENOSYS.
    assert_eq!(run(&p, X64, statx64 + 1, NONE), ENOSYS);
    assert_eq!(run(&p, X64, clone3, NONE), ENOSYS);
    assert_eq!(run(&p, X64, close_range, NONE), ENOSYS);
    assert_eq!(run(&p, X64, u32::MAX, NONE), ENOSYS);
    // i386 has its own numbers.
    let statx32 = nr(Abi::I386, "statx");
    assert_eq!(run(&p, I386, 20, NONE), RET_ALLOW);
    assert_eq!(run(&p, I386, statx32 - 1, NONE), EPERM);
    assert_eq!(run(&p, I386, statx32 + 1, NONE), ENOSYS);
    assert_eq!(run(&p, I386, nr(Abi::I386, "clone3"), NONE), ENOSYS);
    // x32: the numbers with the x32 bit, its compat block (512..) being above statx too.
    let statx_x32 = nr(Abi::X32, "statx");
    assert_eq!(run(&p, X64, statx_x32, NONE), RET_ERRNO | 1);
    assert_eq!(run(&p, X64, statx_x32 - 1, NONE), EPERM);
    assert_eq!(run(&p, X64, statx_x32 + 1, NONE), ENOSYS);
    assert_eq!(run(&p, X64, X32_SYSCALL_BIT | 512, NONE), ENOSYS);
    // A profile whose newest x86_64 name is above the i386 one keeps them apart.
    let j = json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{"names": ["tuxcall", "getpid"], "action": "SCMP_ACT_ALLOW"}]});
    let p = prog(j);
    // tuxcall (184) exists on x86_64 only; getpid is 20 on i386.
    assert!(Abi::I386.number("tuxcall").is_none());
    assert_eq!(run(&p, X64, 183, NONE), EPERM);
    assert_eq!(run(&p, X64, 185, NONE), ENOSYS);
    assert_eq!(run(&p, I386, 21, NONE), ENOSYS);
    // defaultErrnoRet ENOSYS: everything unnamed is ENOSYS anyway.
    let j = json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]});
    let p = prog(j);
    assert_eq!(run(&p, X64, 1, NONE), ENOSYS);
    assert_eq!(run(&p, X64, 40, NONE), ENOSYS);
}

#[test]
fn long_programs_use_trampolines_and_too_long_ones_are_refused() {
    // 200 syscalls, each with a two-word condition: every section is far longer than 255.
    let names: Vec<&str> = tables::X86_64.iter().map(|e| e.0).take(200).collect();
    let rules: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": i + 1,
                   "args": [{"index": 1, "value": 0x1_0000_0000u64 + i as u64, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let p = prog(json!({"defaultAction": "SCMP_ACT_KILL_PROCESS",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": rules}));
    assert!(p.len() > 2000 && p.len() <= MAX_INSNS, "{}", p.len());
    for (i, n) in names.iter().enumerate() {
        let x = nr(Abi::X86_64, n);
        let mut args = NONE;
        args[1] = 0x1_0000_0000 + i as u64;
        assert_eq!(run(&p, X64, x, args), RET_ERRNO | (i as u32 + 1), "{n}");
        args[1] = i as u64;
        assert_eq!(run(&p, X64, x, args), RET_KILL_PROCESS, "{n}");
        if let Some(y) = Abi::I386.number(n) {
            // i386 compares the low word only
            assert_eq!(run(&p, I386, y, args), RET_ERRNO | (i as u32 + 1), "{n}");
        }
    }
    assert_eq!(run(&p, I386, 0x7fff, NONE), ENOSYS);
    // Three times as many conditions: refused, naming the limit.
    let rules: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"names": [n], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 1, "value": 1, "op": "SCMP_CMP_EQ"},
                {"index": 2, "value": 2, "op": "SCMP_CMP_LT"},
                {"index": 3, "value": 3, "op": "SCMP_CMP_GE"}]})
        })
        .collect();
    let e = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules})))
    .unwrap_err();
    assert_eq!(e.path, "");
    assert!(e.msg.contains("4096"), "{}", e.msg);
}

#[test]
fn podman_default_profile_compiles_and_fits() {
    let path = "/usr/share/containers/seccomp.json";
    let Ok(text) = std::fs::read_to_string(path) else {
        carve_testkit::skip(carve_testkit::SkipKind::ToolMissing, format!("no {path}"));
        return;
    };
    // The moby format is a superset; taken whole (every conditional rule included), it is the
    // largest program this profile can give.
    let mut j: Value = serde_json::from_str(&text).unwrap();
    j["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    let p = prog(j.clone());
    eprintln!("podman profile: {} instructions", p.len());
    assert!(p.len() <= MAX_INSNS, "{}", p.len());
    let enosys38 = RET_ERRNO | 38;
    assert_eq!(run(&p, X64, nr(Abi::X86_64, "read"), NONE), RET_ALLOW);
    assert_eq!(run(&p, I386, nr(Abi::I386, "read"), NONE), RET_ALLOW);
    assert_eq!(
        run(&p, X64, nr(Abi::X32, "read"), NONE),
        RET_ALLOW,
        "x32 read"
    );
    assert_eq!(run(&p, X64, nr(Abi::X86_64, "kexec_load"), NONE), EPERM);
    assert_eq!(run(&p, I386, nr(Abi::I386, "nice"), NONE), EPERM);
    // personality: 0, 8, 0x20000, 0x20008 and 0xffffffff only
    let pers = nr(Abi::X86_64, "personality");
    assert_eq!(run(&p, X64, pers, [8, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(run(&p, X64, pers, [0xffff_ffff, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(run(&p, X64, pers, [9, 0, 0, 0, 0, 0]), enosys38);
    assert_eq!(run(&p, X64, 1000, NONE), ENOSYS);
    assert_eq!(run(&p, AARCH64, 63, NONE), RET_BAD_ARCH);
}

#[test]
fn errors_name_the_json_path() {
    let e = |j: Value| compile(&profile(j)).unwrap_err();
    let r = e(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(r.path, ".syscalls[0].args[0].index");
    let r = e(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert_eq!(r.path, ".defaultAction");
    let r = e(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert_eq!(r.path, ".listenerPath");
    let r = e(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 3}]}));
    assert_eq!(r.path, ".syscalls[1].errnoRet");
    let r = e(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}));
    assert_eq!(r.path, ".defaultErrnoRet");
}

#[test]
fn notify_asks_for_a_listener_and_flags_map_to_kernel_bits() {
    let c = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/tmp/x.sock", "listenerMetadata": "m",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .unwrap();
    assert!(c.programs[0].1);
    assert_eq!(c.flags, 2 | 4);
    assert_eq!(c.listener_metadata, "m");
    assert_eq!(run(&c.programs[0].0, X64, 83, NONE), RET_USER_NOTIF);
    let c = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]})))
    .unwrap();
    assert!(!c.programs[0].1);
}

#[test]
fn assembler_trampolines_reach_far_targets() {
    // A conditional jump over 1000 instructions on both branches.
    let mut a = Asm::default();
    let far_t = a.label();
    let far_f = a.label();
    a.load(0);
    a.jump(JEQ, 1, Target::L(far_t), Target::L(far_f));
    for _ in 0..1000 {
        a.and(0xffff_ffff);
    }
    a.bind(far_t);
    a.ret(11);
    for _ in 0..600 {
        a.and(0xffff_ffff);
    }
    a.bind(far_f);
    a.ret(22);
    let p = a.finish();
    assert_eq!(p.len(), 1 + 3 + 1000 + 1 + 600 + 1);
    assert_eq!(run(&p, X64, 1, NONE), 11);
    assert_eq!(run(&p, X64, 2, NONE), 22);
}

#[test]
fn abis_are_native_first_and_once_each() {
    let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]}));
    assert_eq!(abis_of(&p), vec![Abi::X86_64, Abi::X32, Abi::I386]);
}

#[test]
fn filter_flags_are_the_kernel_bits() {
    let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}));
    assert_eq!(filter_flags(&p), 2 | 4);
}

#[test]
fn conditions_on_one_argument_are_alternatives() {
    let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]}]}));
    let sc = p.syscalls().as_ref().unwrap();
    let or = cond_sets(0, &sc[0]).unwrap();
    assert_eq!(or.len(), 2);
    assert!(or.iter().all(|s| s.len() == 1));
    let and = cond_sets(1, &sc[1]).unwrap();
    assert_eq!(and.len(), 1);
    assert_eq!(and[0].len(), 2);
}

#[test]
fn rule_plan_counts_each_abi_and_its_newest_syscall() {
    let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86"], "syscalls": [
        {"names": ["read", "openat2"], "action": "SCMP_ACT_ALLOW"}]}));
    let plan = rules_of(&p, &abis_of(&p)).unwrap();
    assert_eq!(plan.rules.len(), 2);
    assert_eq!(plan.rules[0].1.len(), 2);
    assert_eq!(plan.newest[0], Abi::X86_64.number("openat2"));
    assert_eq!(plan.newest[1], Abi::I386.number("openat2"));
    assert!(!plan.has_notify);
    let bad = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_KILL", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(
        rules_of(&bad, &[Abi::X86_64]).err().unwrap().path,
        ".syscalls[0].args[0].index"
    );
}

/// The kernel's `seccomp_is_const_allow` (kernel/seccomp.c, Linux ≥ 5.11): follows `prog` for one
/// (arch, nr) without any argument; `true` when the program is proved to return ALLOW from
/// arch and nr alone, so the kernel caches the verdict and skips the filter for that syscall.
/// A load of anything but nr or arch, or an opcode the emulator does not know, defeats it.
fn kernel_const_allow(prog: &[libc::sock_filter], arch: u32, nr: u32) -> bool {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    while pc < prog.len() {
        let ins = prog[pc];
        match ins.code {
            asm::LD_ABS => match ins.k {
                0 => a = nr,
                4 => a = arch,
                _ => return false,
            },
            asm::RET_K => return ins.k == RET_ALLOW,
            asm::JA => pc += ins.k as usize,
            code @ (asm::JEQ | asm::JGT | asm::JGE) => {
                let taken = match code {
                    asm::JEQ => a == ins.k,
                    asm::JGT => a > ins.k,
                    _ => a >= ins.k,
                };
                pc += usize::from(if taken { ins.jt } else { ins.jf });
            }
            asm::AND_K => a &= ins.k,
            _ => return false,
        }
        pc += 1;
    }
    false
}

/// The moby/podman default profile of the test fixtures (every rule taken, as above).
fn moby_profile() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../carve-oci/tests/fixtures/world/docker-20.10.27-default-seccomp.json"
    );
    let mut j: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    j["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    j
}

/// Every syscall the profile allows whatever its arguments is one the kernel's action cache
/// can prove (so getppid, read, write never run the filter after the first call), on both
/// native and i386 numbers; those with argument rules are not.
#[test]
fn unconditionally_allowed_syscalls_are_cacheable_by_the_kernel() {
    let p = prog(moby_profile());
    for (abi, arch) in [(Abi::X86_64, X64), (Abi::I386, I386)] {
        let (mut cached, mut allowed) = (0, 0);
        for &(name, n) in abi.table() {
            let always = [NONE, [u64::MAX; 6], [1, 2, 3, 4, 5, 6], [0x7e02_0000; 6]]
                .iter()
                .all(|args| run(&p, arch, n, *args) == RET_ALLOW);
            let proved = kernel_const_allow(&p, arch, n);
            // The cache is sound: it only holds syscalls that are always allowed.
            assert!(!proved || always, "{name} cached but not always allowed");
            allowed += usize::from(always);
            cached += usize::from(proved);
        }
        eprintln!("{abi:?}: {cached} of {allowed} always-allowed syscalls cacheable");
        assert_eq!(
            cached, allowed,
            "{abi:?}: some always-allowed syscall runs the filter"
        );
    }
    for name in [
        "getppid",
        "read",
        "write",
        "openat",
        "close",
        "newfstatat",
        "futex",
    ] {
        let n = nr(Abi::X86_64, name);
        assert!(kernel_const_allow(&p, X64, n), "{name} not cacheable");
    }
    // Argument rules must run the filter (personality's argument decides).
    assert!(!kernel_const_allow(&p, X64, nr(Abi::X86_64, "personality")));
}
