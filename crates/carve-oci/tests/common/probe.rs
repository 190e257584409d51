//! A syscall probe for seccomp tests: a tiny static x86_64 ELF, assembled here, that makes a
//! fixed list of raw syscalls — through `syscall` (x86_64, or x32 with the number's x32 bit) or
//! `int $0x80` (i386) — writes each raw return value (8 bytes, little-endian) to stdout and exits
//! 0. No libc, no loader: it runs in the busybox rootfs, and between the calls under test it
//! makes only `write` and finally `exit_group`, so a profile sees exactly the listed calls.
#![allow(dead_code)]

use std::path::Path;

/// How a call enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `syscall`: x86_64, or x32 when the number has bit 30 set.
    Syscall,
    /// `int $0x80` from 64-bit code: an i386 syscall (AUDIT_ARCH_I386).
    Int80,
}

/// One call: entry, number, six arguments (full 64-bit registers for both entries).
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub entry: Entry,
    pub nr: u64,
    pub args: [u64; 6],
}

/// An x86_64 `syscall` with arguments (the rest 0).
pub fn sys(nr: u64, args: &[u64]) -> Call {
    call(Entry::Syscall, nr, args)
}

/// An i386 `int $0x80` with arguments (the rest 0).
pub fn i386(nr: u64, args: &[u64]) -> Call {
    call(Entry::Int80, nr, args)
}

/// An x32 syscall: `syscall` with `__X32_SYSCALL_BIT` in the number.
pub fn x32(nr: u64, args: &[u64]) -> Call {
    call(Entry::Syscall, 0x4000_0000 | nr, args)
}

fn call(entry: Entry, nr: u64, args: &[u64]) -> Call {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    Call { entry, nr, args: a }
}

/// `mov r64, imm64` (REX.W B8+r; `rex_b` selects r8..r15).
fn mov(code: &mut Vec<u8>, rex_b: bool, reg: u8, v: u64) {
    code.push(if rex_b { 0x49 } else { 0x48 });
    code.push(0xb8 + reg);
    code.extend_from_slice(&v.to_le_bytes());
}

// Register numbers in the B8+r encoding.
const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
const RBX: u8 = 3;
const RBP: u8 = 5;
const RSI: u8 = 6;
const RDI: u8 = 7;
const R8: u8 = 0;
const R9: u8 = 1;
const R10: u8 = 2;

/// The ELF image making `calls`.
pub fn elf(calls: &[Call]) -> Vec<u8> {
    let mut code = Vec::new();
    for c in calls {
        mov(&mut code, false, RAX, c.nr);
        let a = c.args;
        match c.entry {
            Entry::Syscall => {
                for (i, (rex_b, reg)) in [
                    (false, RDI),
                    (false, RSI),
                    (false, RDX),
                    (true, R10),
                    (true, R8),
                    (true, R9),
                ]
                .into_iter()
                .enumerate()
                {
                    mov(&mut code, rex_b, reg, a[i]);
                }
                code.extend_from_slice(&[0x0f, 0x05]); // syscall
            }
            Entry::Int80 => {
                for (i, reg) in [RBX, RCX, RDX, RSI, RDI, RBP].into_iter().enumerate() {
                    mov(&mut code, false, reg, a[i]);
                }
                code.extend_from_slice(&[0xcd, 0x80]); // int $0x80
                code.extend_from_slice(&[0x48, 0x63, 0xc0]); // movsxd rax, eax: the i386 result
            }
        }
        // push rax; write(1, rsp, 8); pop rax
        code.push(0x50);
        code.extend_from_slice(&[0xb8, 1, 0, 0, 0]); // mov eax, 1 (write)
        code.extend_from_slice(&[0xbf, 1, 0, 0, 0]); // mov edi, 1
        code.extend_from_slice(&[0x48, 0x89, 0xe6]); // mov rsi, rsp
        code.extend_from_slice(&[0xba, 8, 0, 0, 0]); // mov edx, 8
        code.extend_from_slice(&[0x0f, 0x05]);
        code.push(0x58);
    }
    code.extend_from_slice(&[0xb8, 231, 0, 0, 0]); // mov eax, 231 (exit_group)
    code.extend_from_slice(&[0x31, 0xff]); // xor edi, edi
    code.extend_from_slice(&[0x0f, 0x05]);

    const BASE: u64 = 0x40_0000;
    let hdr = 64 + 56;
    let total = (hdr + code.len()) as u64;
    let mut f = Vec::new();
    // ELF header: 64-bit, little-endian, SysV, ET_EXEC, x86-64, one program header.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(BASE + hdr as u64).to_le_bytes()); // e_entry
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        f.extend_from_slice(&v.to_le_bytes());
    }
    // PT_LOAD of the whole file, read + execute.
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&5u32.to_le_bytes());
    for v in [0, BASE, BASE, total, total, 0x1000u64] {
        // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        f.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(f.len(), hdr);
    f.extend_from_slice(&code);
    f
}

/// Writes the probe to `path` (mode 0755).
pub fn install(path: &Path, calls: &[Call]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, elf(calls)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The return values the probe printed (as many as calls completed).
pub fn results(stdout: &[u8]) -> Vec<i64> {
    stdout
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
