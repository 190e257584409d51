//! Telling a guest that has stopped for good from one that is merely idle, while QEMU still runs.
//!
//! A guest can end without ending QEMU: `halt -f` (or a failed power-off) leaves every vCPU in
//! `hlt` with interrupts disabled, a panic without a panic device spins or halts, and QEMU may
//! stop on an internal error. QEMU then answers QMP (`query-status`: "running") and uses no CPU,
//! so waiting for its exit waits forever. A vCPU halted with interrupts off can only be woken by
//! an NMI or INIT, which nothing sends here: that state is final. An idle guest halts with
//! interrupts *on* (its timer wakes it), so it is never mistaken for a stopped one.

use crate::qmp::{Qmp, QmpClient};
use std::path::Path;
use std::time::Duration;

/// Run states in which QEMU keeps running although the guest will not continue by itself.
const DEAD_STATES: [&str; 3] = ["shutdown", "guest-panicked", "internal-error"];

/// The x86 interrupt flag in RFLAGS.
const RFLAGS_IF: u64 = 1 << 9;

/// Whether HMP `info registers -a` output shows every vCPU halted with interrupts disabled.
/// `None` when the output holds no vCPU state (another architecture, an unexpected format).
pub fn all_vcpus_halted(info_registers: &str) -> Option<bool> {
    let mut seen = 0;
    let mut halted = 0;
    for line in info_registers.lines() {
        let Some(hlt) = field(line, "HLT=") else {
            continue;
        };
        let Some(rflags) = field(line, "RFL=").and_then(|v| u64::from_str_radix(v, 16).ok()) else {
            continue;
        };
        seen += 1;
        if hlt == "1" && rflags & RFLAGS_IF == 0 {
            halted += 1;
        }
    }
    (seen > 0).then_some(seen == halted)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// Why the guest behind the QMP socket `qmp` has stopped for good although QEMU runs, or `None`
/// when it runs (or may: paused, migrating) or QMP does not answer within `timeout`.
pub fn guest_stopped(qmp: &Path, timeout: Duration) -> Option<String> {
    // Not `QmpClient::connect`: its greeting wait is long, and QEMU greets only one client at a
    // time, so a check must give up quickly while `carve vm status` or `stop` holds the monitor.
    let stream = std::os::unix::net::UnixStream::connect(qmp).ok()?;
    let mut q = QmpClient::handshake(stream, timeout).ok()?;
    let status = q.query_status().ok()?.status;
    if DEAD_STATES.contains(&status.as_str()) {
        return Some(format!("QEMU reports the guest {status}"));
    }
    if status != "running" {
        return None;
    }
    let regs = q.human_monitor_command("info registers -a").ok()?;
    all_vcpus_halted(&regs)?.then(|| {
        "the guest halted without powering off (every vCPU halted with interrupts disabled)".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALTED: &str = "CPU#0\nRAX=0 RBX=0\nRIP=ffffffffb723d023 RFL=00000092 [--S-A--] CPL=0 II=0 A20=1 SMM=0 HLT=1\nCPU#1\nRIP=ffffffffb723d023 RFL=00000093 [--S-A-C] CPL=0 II=0 A20=1 SMM=0 HLT=1\n";

    #[test]
    fn halted_with_interrupts_off_is_final() {
        // Captured from QEMU 7.2 after `halt -f` in a 2-vCPU q35 guest.
        assert_eq!(all_vcpus_halted(HALTED), Some(true));
    }

    #[test]
    fn idle_or_running_vcpus_are_not_stopped() {
        // Idle: halted, but IF (0x200) set, so the next timer interrupt wakes it.
        let idle = HALTED.replace("RFL=00000093", "RFL=00000293");
        assert_eq!(all_vcpus_halted(&idle), Some(false));
        let running = HALTED.replace("SMM=0 HLT=1\nCPU#1", "SMM=0 HLT=0\nCPU#1");
        assert_eq!(all_vcpus_halted(&running), Some(false));
        assert_eq!(all_vcpus_halted("no registers here"), None);
    }
}
