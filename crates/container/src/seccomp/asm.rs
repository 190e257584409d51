//! A tiny classic-BPF assembler with labels.
//!
//! Conditional jumps of classic BPF have 8-bit forward offsets (at most 255 instructions), while
//! `ja` has a 32-bit one. Code is written against labels; [`Asm::finish`] lays it out and turns
//! every conditional branch whose target is too far into a branch to a `ja` trampoline placed
//! right after it. Trampolines only grow the program, so the layout converges.

use libc::sock_filter;

/// `BPF_LD | BPF_W | BPF_ABS`: A = 32-bit word of `seccomp_data` at offset k.
pub const LD_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`: A &= k.
pub const AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`: unconditional jump by k.
pub const JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub const JEQ: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K` (unsigned).
pub const JGT: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K` (unsigned).
pub const JGE: u16 = 0x35;
/// `BPF_RET | BPF_K`.
pub const RET_K: u16 = 0x06;

/// A jump target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The instruction right after this jump.
    Next,
    /// A label bound with [`Asm::bind`].
    L(Label),
}

/// A position in the program, bound once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, Clone)]
enum Item {
    /// Anything that does not jump.
    Plain(sock_filter),
    /// A conditional jump: `code` with constant `k`.
    Cond {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
    /// `ja`.
    Ja(Label),
    /// A label binding (no instruction).
    Bind(Label),
}

/// The program under construction.
#[derive(Debug, Default)]
pub struct Asm {
    items: Vec<Item>,
    labels: usize,
    /// Instructions emitted, trampolines not counted.
    count: usize,
}

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

impl Asm {
    /// A fresh, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Binds `l` to the next instruction.
    pub fn bind(&mut self, l: Label) {
        self.push(Item::Bind(l));
    }

    /// A = 32-bit word at `off` in `seccomp_data`.
    pub fn load(&mut self, off: u32) {
        self.push(Item::Plain(ins(LD_ABS, 0, 0, off)));
    }

    /// A &= k.
    pub fn and(&mut self, k: u32) {
        self.push(Item::Plain(ins(AND_K, 0, 0, k)));
    }

    /// Returns `k` (a `SECCOMP_RET_*` value).
    pub fn ret(&mut self, k: u32) {
        self.push(Item::Plain(ins(RET_K, 0, 0, k)));
    }

    /// Conditional jump: `code` (JEQ/JGT/JGE) against `k`.
    pub fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        if jt == jf {
            // Both ways lead to the same place: no test needed.
            if let Target::L(l) = jt {
                self.ja(l);
            }
            return;
        }
        self.push(Item::Cond { code, k, jt, jf });
    }

    /// Unconditional jump.
    pub fn ja(&mut self, l: Label) {
        self.push(Item::Ja(l));
    }

    /// Number of instructions emitted so far, without trampolines (a lower bound of the final
    /// size; used to decide where to place shared return instructions).
    pub fn len_hint(&self) -> usize {
        self.count
    }

    fn push(&mut self, item: Item) {
        if !matches!(item, Item::Bind(_)) {
            self.count += 1;
        }
        self.items.push(item);
    }

    /// Lays the program out with trampolines where an 8-bit offset does not reach.
    ///
    /// # Panics
    /// When a label is used but never bound, or bound twice (a code generator bug).
    pub fn finish(self) -> Vec<sock_filter> {
        // For each item: (true branch goes through a trampoline, false branch does).
        let mut far = vec![(false, false); self.items.len()];
        loop {
            let (pos, at) = self.layout(&far);
            let mut changed = false;
            for (i, item) in self.items.iter().enumerate() {
                if let Item::Cond { jt, jf, .. } = item {
                    let base = pos[i] + 1;
                    let end = pos[i] + size(item, far[i]);
                    let dist = |t: &Target| match t {
                        Target::Next => end - base,
                        Target::L(l) => at[l.0]
                            .expect("unbound label")
                            .checked_sub(base)
                            .expect("backward jump"),
                    };
                    if !far[i].0 && dist(jt) > 255 {
                        far[i].0 = true;
                        changed = true;
                    }
                    if !far[i].1 && dist(jf) > 255 {
                        far[i].1 = true;
                        changed = true;
                    }
                }
            }
            if changed {
                continue;
            }
            let mut out = Vec::with_capacity(pos.last().copied().unwrap_or(0) + 2);
            for (i, item) in self.items.iter().enumerate() {
                let here = out.len();
                debug_assert_eq!(here, pos[i]);
                let end = here + size(item, far[i]);
                let addr = |t: &Target| match t {
                    Target::Next => end,
                    Target::L(l) => at[l.0].expect("unbound label"),
                };
                match item {
                    Item::Plain(f) => out.push(*f),
                    Item::Bind(_) => {}
                    Item::Ja(l) => {
                        let to = at[l.0].expect("unbound label");
                        out.push(ins(JA, 0, 0, (to - here - 1) as u32));
                    }
                    Item::Cond { code, k, jt, jf } => {
                        let (ft, ff) = far[i];
                        // Trampolines follow the jump: [jcond][ja true?][ja false?].
                        let t_at = if ft { here + 1 } else { addr(jt) };
                        let f_at = if ff {
                            here + 1 + usize::from(ft)
                        } else {
                            addr(jf)
                        };
                        out.push(ins(
                            *code,
                            (t_at - here - 1) as u8,
                            (f_at - here - 1) as u8,
                            *k,
                        ));
                        if ft {
                            let p = out.len();
                            out.push(ins(JA, 0, 0, (addr(jt) - p - 1) as u32));
                        }
                        if ff {
                            let p = out.len();
                            out.push(ins(JA, 0, 0, (addr(jf) - p - 1) as u32));
                        }
                    }
                }
            }
            return out;
        }
    }

    /// Start position of each item and the address of each label.
    fn layout(&self, far: &[(bool, bool)]) -> (Vec<usize>, Vec<Option<usize>>) {
        let mut pos = Vec::with_capacity(self.items.len());
        let mut at = vec![None; self.labels];
        let mut p = 0;
        for (i, item) in self.items.iter().enumerate() {
            pos.push(p);
            if let Item::Bind(l) = item {
                assert!(at[l.0].is_none(), "label bound twice");
                at[l.0] = Some(p);
            }
            p += size(item, far[i]);
        }
        (pos, at)
    }
}

fn size(item: &Item, far: (bool, bool)) -> usize {
    match item {
        Item::Bind(_) => 0,
        Item::Cond { .. } => 1 + usize::from(far.0) + usize::from(far.1),
        _ => 1,
    }
}
