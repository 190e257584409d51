//! v2 devices: cgroup2 has no devices files; access is decided by a BPF_PROG_TYPE_CGROUP_DEVICE
//! program attached to the cgroup. We emit the program from the OCI rules (as runc, crun and youki
//! do) and load and attach it with the bpf(2) syscall.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }` where
//! `access_type = access << 16 | type`, tests the rules last to first (later OCI rules override
//! earlier ones, so the last matching rule decides) and returns 1 (allow) or 0 (deny).

use crate::Error;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A bpf(2) step that failed.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// loading the device program for {path}: {source}; verifier log: {log}
    #[error("loading the device program for {}: {source}; verifier log: {log}", path.display())]
    Load {
        /// The cgroup.
        path: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
        /// The verifier's log.
        log: String,
    },
    /// {op} the device program on {path}: {source}
    #[error("{op} the device program on {}: {source}", path.display())]
    Cgroup {
        /// What was done ("attaching", "querying", "detaching", "opening").
        op: &'static str,
        /// The cgroup.
        path: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
}

// bpf(2) commands, program and attach types (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

// The device context's type and access bits.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction, as the kernel lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

// Opcodes: class | op | source.
const LDX_W_MEM: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JNE_K: u8 = 0x55;
const JMP_JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

fn access_bits(access: Option<&str>) -> i32 {
    let a = access.unwrap_or("rwm");
    let a = if a.is_empty() { "rwm" } else { a };
    a.chars().fold(0, |m, c| {
        m | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    })
}

/// The instructions for `rules` (in OCI order; the last matching rule decides, no match denies).
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    // Prelude: r2 = type, r3 = access, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_W_MEM, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W_MEM, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_W_MEM, 4, 1, 4, 0),
        insn(LDX_W_MEM, 5, 1, 8, 0),
    ];
    let mut unconditional = false;
    for r in rules.iter().rev() {
        let ty = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(DEV_BLOCK),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
            // FIFOs are not device nodes the cgroup checks.
            LinuxDeviceType::P => continue,
        };
        let acc = access_bits(r.access().as_deref());
        // Each check jumps past the rest of the block when it does not match.
        let mut checks: Vec<Vec<Insn>> = Vec::new();
        if let Some(t) = ty {
            checks.push(vec![insn(JMP_JNE_K, 2, 0, 0, t)]);
        }
        if acc != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // Requested access must be a subset of the rule's: (req & acc) == req.
            checks.push(vec![
                insn(ALU32_MOV_X, 1, 3, 0, 0),
                insn(ALU32_AND_K, 1, 0, 0, acc),
                insn(JMP_JNE_X, 1, 3, 0, 0),
            ]);
        }
        if let Some(m) = r.major().filter(|m| *m >= 0) {
            checks.push(vec![insn(JMP_JNE_K, 4, 0, 0, m as i32)]);
        }
        if let Some(m) = r.minor().filter(|m| *m >= 0) {
            checks.push(vec![insn(JMP_JNE_K, 5, 0, 0, m as i32)]);
        }
        let is_unconditional = checks.is_empty();
        let block_len: usize = checks.iter().map(Vec::len).sum::<usize>() + 2;
        let mut emitted = 0usize;
        for c in checks {
            for mut i in c {
                emitted += 1;
                if i.code == JMP_JNE_K || i.code == JMP_JNE_X {
                    // Skip to the instruction after this block.
                    i.off = (block_len - emitted) as i16;
                }
                p.push(i);
            }
        }
        p.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(r.allow())));
        p.push(insn(EXIT, 0, 0, 0, 0));
        if is_unconditional {
            // Rules before an unconditional one can never decide anything.
            unconditional = true;
            break;
        }
    }
    if !unconditional {
        p.push(insn(ALU32_MOV_K, 0, 0, 0, 0));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p
}

fn bpf(cmd: libc::c_int, attr: &mut [u64; 16]) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, zero-padded 128-byte union bpf_attr for `cmd`; every pointer in
    // it refers to memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Two u32 fields packed into one u64 word of bpf_attr (little endian: first in the low half).
fn pair(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

fn load(prog: &[Insn], path: &Path) -> Result<OwnedFd, BpfError> {
    let license = c"Apache";
    let try_load = |log: Option<&mut Vec<u8>>| {
        let mut a = [0u64; 16];
        a[0] = pair(BPF_PROG_TYPE_CGROUP_DEVICE, prog.len() as u32);
        a[1] = prog.as_ptr() as u64;
        a[2] = license.as_ptr() as u64;
        if let Some(buf) = log {
            a[3] = pair(1, buf.len() as u32);
            a[4] = buf.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut a)
    };
    match try_load(None) {
        // SAFETY: a successful PROG_LOAD returns a new fd that we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(source) => {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = try_load(Some(&mut buf));
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            Err(BpfError::Load {
                path: path.to_path_buf(),
                source,
                log: String::from_utf8_lossy(&buf[..end]).trim().to_string(),
            })
        }
    }
}

/// Ids of the device programs attached to the cgroup open as `cg`.
fn query(cg: &OwnedFd, path: &Path) -> Result<Vec<u32>, BpfError> {
    let mut ids = [0u32; 64];
    let mut a = [0u64; 16];
    a[0] = pair(cg.as_raw_fd() as u32, BPF_CGROUP_DEVICE);
    a[2] = ids.as_mut_ptr() as u64;
    a[3] = pair(ids.len() as u32, 0);
    bpf(BPF_PROG_QUERY, &mut a).map_err(|source| BpfError::Cgroup {
        op: "querying",
        path: path.to_path_buf(),
        source,
    })?;
    let n = (a[3] & 0xffff_ffff) as usize;
    Ok(ids[..n.min(ids.len())].to_vec())
}

/// Loads the program for `rules` and attaches it to the cgroup at `dir`, replacing any device
/// program attached there before (the new one is attached first, so there is no open window).
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), BpfError> {
    let prog = load(&program(rules), dir)?;
    // A freshly loaded program has an id no old one has: nothing attached before is kept.
    replace_programs(dir, &[prog], &[])
}

/// Attaches to the cgroup `to` the very device programs attached to `from` (by id, not rebuilt
/// from rules: what `from` enforces now, `update`s included), replacing those `to` had. Used for
/// a container's exec sibling on cgroup2 ([`crate::v2::V2::make_exec_sibling`]): a sibling is
/// not below the container's cgroup, so the container's program does not reach it by itself.
pub fn copy(from: &Path, to: &Path) -> Result<(), BpfError> {
    let ids = query(&open_cgroup(from)?, from)?;
    // The kernel refuses to attach a program twice to one cgroup (EINVAL): those `to` has
    // already stay as they are.
    let there = query(&open_cgroup(to)?, to)?;
    let mut progs = Vec::new();
    for &id in ids.iter().filter(|id| !there.contains(id)) {
        let mut g = [0u64; 16];
        g[0] = pair(id, 0);
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut g) else {
            continue; // detached meanwhile
        };
        // SAFETY: a successful GET_FD_BY_ID returns a new fd that we own.
        progs.push(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    replace_programs(to, &progs, &ids)
}

fn open_cgroup(dir: &Path) -> Result<OwnedFd, BpfError> {
    let cg = std::fs::File::open(dir).map_err(|source| BpfError::Cgroup {
        op: "opening",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(OwnedFd::from(cg))
}

/// Attaches `progs` (none attached there yet) to the cgroup at `dir` first, so no moment goes
/// unfiltered, then detaches every program attached there before whose id is not in `keep`.
fn replace_programs(dir: &Path, progs: &[OwnedFd], keep: &[u32]) -> Result<(), BpfError> {
    let cg = open_cgroup(dir)?;
    let old = query(&cg, dir)?;
    for prog in progs {
        let mut a = [0u64; 16];
        a[0] = pair(cg.as_raw_fd() as u32, prog.as_raw_fd() as u32);
        a[1] = pair(BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI);
        bpf(BPF_PROG_ATTACH, &mut a).map_err(|source| BpfError::Cgroup {
            op: "attaching",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    for id in old.into_iter().filter(|id| !keep.contains(id)) {
        let mut g = [0u64; 16];
        g[0] = pair(id, 0);
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut g) else {
            continue; // already gone
        };
        // SAFETY: a successful GET_FD_BY_ID returns a new fd that we own.
        let old_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut d = [0u64; 16];
        d[0] = pair(cg.as_raw_fd() as u32, old_fd.as_raw_fd() as u32);
        d[1] = pair(BPF_CGROUP_DEVICE, 0);
        bpf(BPF_PROG_DETACH, &mut d).map_err(|source| BpfError::Cgroup {
            op: "detaching",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// How many device programs are attached to the cgroup at `dir`.
pub fn attached_count(dir: &Path) -> Result<usize, BpfError> {
    Ok(query(&open_cgroup(dir)?, dir)?.len())
}

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    if let Some(rules) = res.devices() {
        attach(dir, rules)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        t: LinuxDeviceType,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access(acc);
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    /// Runs the program on one device access, as the kernel would.
    fn run(p: &[Insn], ty: i32, acc: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((acc as u32) << 16) | ty as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W_MEM => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                ALU32_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
                ALU32_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
                ALU32_MOV_K => r[dst] = i.imm as u32 as u64,
                ALU32_MOV_X => r[dst] = r[src] as u32 as u64,
                JMP_JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn last_matching_rule_decides() {
        use LinuxDeviceType::*;
        let rules = vec![
            rule(false, A, None, None, "rwm"),
            rule(true, C, Some(1), Some(3), "rwm"), // /dev/null
            rule(true, C, Some(1), Some(5), "r"),   // /dev/zero, read only
            rule(true, B, Some(254), None, "rw"),
            rule(false, C, Some(1), Some(3), "w"), // no writes to /dev/null after all
        ];
        let p = program(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 5), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 254, 7), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 254, 7), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 9), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 254, 7), 0);
    }

    #[test]
    fn wildcard_allow_short_circuits_and_empty_denies() {
        use LinuxDeviceType::*;
        let p = program(&[
            rule(false, C, Some(1), Some(3), "rwm"),
            rule(true, A, None, None, "rwm"),
        ]);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(p.len(), 8);
        let p = program(&[]);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
    }
}
