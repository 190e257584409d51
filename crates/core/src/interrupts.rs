//! /proc/interrupts, parsed once: the host model reads routable IRQs from it, the observer
//! reads counts per CPU.

/// One line of /proc/interrupts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqLine {
    /// The first column without its colon: an IRQ number ("24") or a kind ("LOC", "RES").
    pub irq: String,
    /// What it is: the handler names for a device IRQ ("virtio0-input.0"), the kernel's
    /// description for the others ("Local timer interrupts").
    pub name: String,
    /// Count per CPU column.
    pub per_cpu: Vec<u64>,
    /// The fields after the counts: for a device IRQ "CHIP HWIRQ-TYPE ACTIONS" (the chip's
    /// name may itself hold spaces).
    pub tail: Vec<String>,
}

impl IrqLine {
    /// Whether this is a device IRQ (a number), as opposed to an architecture counter.
    pub fn is_device(&self) -> bool {
        self.irq.chars().all(|c| c.is_ascii_digit())
    }

    /// The label carve shows: "24 virtio0-input.0", "LOC Local timer interrupts".
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            self.irq.clone()
        } else {
            format!("{} {}", self.irq, self.name)
        }
    }
}

/// Parses /proc/interrupts: a header of CPU names, then one line per IRQ with a count per CPU.
pub fn parse(text: &str) -> Vec<IrqLine> {
    let mut lines = text.lines();
    let ncpu = lines
        .next()
        .map(|h| h.split_whitespace().count())
        .unwrap_or(0);
    let mut out = Vec::new();
    for line in lines {
        let Some((irq, rest)) = line.split_once(':') else {
            continue;
        };
        let mut fields = rest.split_whitespace().peekable();
        let mut per_cpu = Vec::with_capacity(ncpu);
        while per_cpu.len() < ncpu {
            match fields.peek().and_then(|f| f.parse::<u64>().ok()) {
                Some(n) => {
                    per_cpu.push(n);
                    fields.next();
                }
                None => break,
            }
        }
        let rest: Vec<&str> = fields.collect();
        let irq = irq.trim().to_string();
        // Device lines: "IO-APIC 1-edge i8042" or "PCI-MSIX-0000:00:04.0 0-edge virtio0-config":
        // the handler names are the last field; arch lines are all description.
        let name = if irq.chars().all(|c| c.is_ascii_digit()) {
            rest.last().map(|s| s.to_string()).unwrap_or_default()
        } else {
            rest.join(" ")
        };
        let tail = rest.iter().map(|s| s.to_string()).collect();
        out.push(IrqLine {
            irq,
            name,
            per_cpu,
            tail,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERRUPTS: &str = "           CPU0       CPU1       
  0:         35          0   IO-APIC   2-edge      timer
 24:          0        120  PCI-MSIX-0000:00:04.0   1-edge      virtio0-input.0
NMI:          0          0   Non-maskable interrupts
LOC:    1234567     765432   Local timer interrupts
ERR:          0
";

    #[test]
    fn interrupts_give_counts_per_cpu_and_names() {
        let l = parse(INTERRUPTS);
        assert_eq!(l.len(), 5);
        assert_eq!(l[1].irq, "24");
        assert_eq!(l[1].name, "virtio0-input.0");
        assert_eq!(l[1].per_cpu, vec![0, 120]);
        assert!(l[1].is_device());
        assert_eq!(l[3].label(), "LOC Local timer interrupts");
        assert_eq!(l[3].per_cpu, vec![1234567, 765432]);
        assert!(!l[3].is_device());
        assert_eq!(l[4].per_cpu, vec![0]);
    }
}
