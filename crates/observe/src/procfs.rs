//! Readers of the kernel's counters the observer samples: /proc/interrupts (parsed by carve-core), /proc/stat,
//! /proc/PID/task/TID/schedstat, /proc/net/dev, and a memory cgroup's OOM-kill count. Parsing is
//! pure (text in, numbers out) so it is tested on fixtures; reading sits in small functions.

use std::collections::BTreeMap;
use std::path::Path;

pub use carve_core::interrupts::{parse as parse_interrupts, IrqLine};

/// One CPU's times from /proc/stat, in USER_HZ ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user + nice.
    pub user: u64,
    /// system.
    pub system: u64,
    /// idle + iowait.
    pub idle: u64,
    /// Hard IRQ time.
    pub irq: u64,
    /// Softirq time.
    pub softirq: u64,
    /// Time the hypervisor ran something else while this vCPU wanted to run.
    pub steal: u64,
}

impl CpuTimes {
    /// Every tick counted.
    pub fn total(&self) -> u64 {
        self.user + self.system + self.idle + self.irq + self.softirq + self.steal
    }
}

/// Parses the `cpuN` lines of /proc/stat.
pub fn parse_stat(text: &str) -> BTreeMap<usize, CpuTimes> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(cpu) = f
            .next()
            .and_then(|c| c.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        out.insert(
            cpu,
            CpuTimes {
                user: at(0) + at(1),
                system: at(2),
                idle: at(3) + at(4),
                irq: at(5),
                softirq: at(6),
                steal: at(7),
            },
        );
    }
    out
}

/// Byte and packet counters of one network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct LinkCounters {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// Parses /proc/net/dev.
pub fn parse_net_dev(text: &str) -> Vec<LinkCounters> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            Some(LinkCounters {
                name: name.trim().to_string(),
                rx_bytes: *v.first()?,
                rx_packets: *v.get(1)?,
                tx_bytes: *v.get(8)?,
                tx_packets: *v.get(9)?,
            })
        })
        .collect()
}

/// (time on a CPU, time waiting on a run queue) of one thread, in ns, from its schedstat.
pub fn thread_schedstat(pid: i32, tid: i32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

/// The sum of [`thread_schedstat`] over every thread of `pid`.
pub fn process_schedstat(pid: i32) -> Option<(u64, u64)> {
    let mut sum = (0, 0);
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let tid: i32 = t.file_name().to_string_lossy().parse().ok()?;
        if let Some((run, wait)) = thread_schedstat(pid, tid) {
            sum.0 += run;
            sum.1 += wait;
        }
    }
    Some(sum)
}

/// The OOM kills a memory cgroup has seen: v1 `memory.oom_control` or v2 `memory.events`, both
/// with an `oom_kill N` line.
pub fn oom_kills(memory_dir: &Path) -> Option<u64> {
    ["memory.oom_control", "memory.events"]
        .iter()
        .find_map(|f| std::fs::read_to_string(memory_dir.join(f)).ok())
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_net_dev_parse() {
        let s = parse_stat("cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 10 1 20 300 4 5 6 7 0 0\ncpu1 1 0 1 1 0 0 0 0\nintr 5\n");
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[&0],
            CpuTimes {
                user: 11,
                system: 20,
                idle: 304,
                irq: 5,
                softirq: 6,
                steal: 7
            }
        );
        assert_eq!(s[&0].total(), 353);
        let n = parse_net_dev("Inter-|   Receive |  Transmit\n face |bytes packets\n  lo: 100 2 0 0 0 0 0 0 300 4 0 0 0 0 0 0\ncarve0: 5 1 0 0 0 0 0 0 6 1 0 0 0 0 0 0\n");
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].name, "lo");
        assert_eq!((n[0].rx_bytes, n[0].rx_packets), (100, 2));
        assert_eq!((n[0].tx_bytes, n[0].tx_packets), (300, 4));
        assert_eq!(n[1].name, "carve0");
    }

    #[test]
    fn oom_kill_counts_from_v1_or_v2_files() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(oom_kills(t.path()), None);
        std::fs::write(
            t.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        assert_eq!(oom_kills(t.path()), Some(3));
    }
}
