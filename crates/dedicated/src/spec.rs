//! What a dedicated partition asks for: [`DedicatedSpec`] and its parsed parts.

use carve_core::units::DurationForm;
use carve_core::CpuSet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A value on the command line or in a plan that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {text:?}: {why}")]
pub struct ParseError {
    /// What was being parsed ("sched policy", "huge pages", "rlimit").
    pub what: &'static str,
    /// The text.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

fn perr(what: &'static str, text: &str, why: impl Into<String>) -> ParseError {
    ParseError {
        what,
        text: text.to_string(),
        why: why.into(),
    }
}

/// The scheduling policy of the dedicated process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedPolicy {
    /// SCHED_OTHER (the default).
    #[default]
    Other,
    /// SCHED_FIFO at a priority 1..=99.
    Fifo(u8),
    /// SCHED_RR at a priority 1..=99.
    Rr(u8),
    /// SCHED_DEADLINE with runtime, deadline and period in nanoseconds (set with sched_setattr).
    Deadline {
        /// Guaranteed CPU time per period.
        runtime_ns: u64,
        /// Relative deadline (equal to the period when not given).
        deadline_ns: u64,
        /// Period.
        period_ns: u64,
    },
}

impl SchedPolicy {
    /// Whether this is a real-time class (FIFO/RR) subject to RT throttling.
    pub fn is_rt(&self) -> bool {
        matches!(self, SchedPolicy::Fifo(_) | SchedPolicy::Rr(_))
    }
}

impl FromStr for SchedPolicy {
    type Err = ParseError;
    /// core's policy grammar ([`carve_core::plan::Sched::parse_with`]) with bare numbers as
    /// nanoseconds, so [`Display`](fmt::Display)'s "deadline:R/D/P" reads back: "other" (or
    /// "normal"), "fifo:80", "rr:10", "deadline:RUNTIME/PERIOD" or
    /// "deadline:RUNTIME/DEADLINE/PERIOD" ("deadline:200us/1ms", "deadline:200000/1000000").
    /// batch and idle are not offered here: a dedicated core runs one real-time or normal task.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        use carve_core::plan::Sched;
        let what = "sched policy";
        let text = if s == "normal" { "other" } else { s };
        match Sched::parse_with(text, DurationForm::BareNanos)
            .map_err(|why| perr(what, s, why.to_string()))?
        {
            Sched::Other => Ok(SchedPolicy::Other),
            Sched::Fifo(p) => Ok(SchedPolicy::Fifo(p)),
            Sched::Rr(p) => Ok(SchedPolicy::Rr(p)),
            Sched::Deadline {
                runtime,
                deadline,
                period,
            } => Ok(SchedPolicy::Deadline {
                runtime_ns: runtime,
                deadline_ns: deadline,
                period_ns: period,
            }),
            Sched::Batch | Sched::Idle => Err(perr(
                what,
                s,
                "expected other, fifo:PRIO, rr:PRIO or deadline:RUNTIME/PERIOD",
            )),
        }
    }
}

impl fmt::Display for SchedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedPolicy::Other => f.write_str("other"),
            SchedPolicy::Fifo(p) => write!(f, "fifo:{p}"),
            SchedPolicy::Rr(p) => write!(f, "rr:{p}"),
            SchedPolicy::Deadline {
                runtime_ns,
                deadline_ns,
                period_ns,
            } => write!(f, "deadline:{runtime_ns}/{deadline_ns}/{period_ns}"),
        }
    }
}

/// Huge pages to reserve for the partition: `count` pages of `size_kib`, optionally on one NUMA node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugePagesSpec {
    /// Page size in KiB (2048 or 1048576 on x86_64).
    pub size_kib: u64,
    /// How many pages.
    pub count: u64,
    /// The NUMA node to reserve them on; `None` lets the kernel spread them.
    pub node: Option<u32>,
}

impl HugePagesSpec {
    /// The size as the kernel's directory suffix: "2048kB".
    pub fn dir_name(&self) -> String {
        format!("hugepages-{}kB", self.size_kib)
    }
}

fn parse_size_kib(s: &str) -> Option<u64> {
    let s = s.trim();
    let units: [(&str, u64); 8] = [
        ("KiB", 1),
        ("kB", 1),
        ("K", 1),
        ("MiB", 1024),
        ("M", 1024),
        ("GiB", 1024 * 1024),
        ("G", 1024 * 1024),
        ("kiB", 1),
    ];
    for (u, m) in units {
        if let Some(n) = s.strip_suffix(u) {
            return n.trim().parse::<u64>().ok()?.checked_mul(m);
        }
    }
    None
}

impl FromStr for HugePagesSpec {
    type Err = ParseError;
    /// "2MiB:32", "1GiB:1", "2MiB:32@0" (on node 0).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let what = "huge pages";
        let (body, node) = match s.split_once('@') {
            Some((b, n)) => (
                b,
                Some(
                    n.parse::<u32>()
                        .map_err(|_| perr(what, s, "the node after @ must be a number"))?,
                ),
            ),
            None => (s, None),
        };
        let (size, count) = body
            .split_once(':')
            .ok_or_else(|| perr(what, s, "expected SIZE:COUNT, e.g. 2MiB:32"))?;
        let size_kib = parse_size_kib(size)
            .ok_or_else(|| perr(what, s, "the size must be like 2MiB or 1GiB"))?;
        let count: u64 = count
            .parse()
            .map_err(|_| perr(what, s, "the count must be a number"))?;
        if count == 0 {
            return Err(perr(what, s, "the count must be at least 1"));
        }
        Ok(HugePagesSpec {
            size_kib,
            count,
            node,
        })
    }
}

impl fmt::Display for HugePagesSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.size_kib % (1024 * 1024) == 0 {
            write!(f, "{}GiB:{}", self.size_kib / (1024 * 1024), self.count)?;
        } else if self.size_kib % 1024 == 0 {
            write!(f, "{}MiB:{}", self.size_kib / 1024, self.count)?;
        } else {
            write!(f, "{}KiB:{}", self.size_kib, self.count)?;
        }
        match self.node {
            Some(n) => write!(f, "@{n}"),
            None => Ok(()),
        }
    }
}

/// One resource limit for the launched process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlimitSpec {
    /// The resource (libc::RLIMIT_*).
    pub resource: i32,
    /// Soft limit (`u64::MAX` is unlimited).
    pub soft: u64,
    /// Hard limit (`u64::MAX` is unlimited).
    pub hard: u64,
}

const RLIMIT_NAMES: &[(&str, i32)] = &[
    ("memlock", libc::RLIMIT_MEMLOCK as i32),
    ("nofile", libc::RLIMIT_NOFILE as i32),
    ("nproc", libc::RLIMIT_NPROC as i32),
    ("rtprio", libc::RLIMIT_RTPRIO as i32),
    ("rttime", libc::RLIMIT_RTTIME as i32),
    ("stack", libc::RLIMIT_STACK as i32),
    ("core", libc::RLIMIT_CORE as i32),
    ("as", libc::RLIMIT_AS as i32),
    ("data", libc::RLIMIT_DATA as i32),
    ("fsize", libc::RLIMIT_FSIZE as i32),
    ("cpu", libc::RLIMIT_CPU as i32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as i32),
    ("nice", libc::RLIMIT_NICE as i32),
    ("sigpending", libc::RLIMIT_SIGPENDING as i32),
];

impl FromStr for RlimitSpec {
    type Err = ParseError;
    /// `NAME=SOFT[:HARD]` with "unlimited" allowed: `memlock=unlimited`, `nofile=1024:4096`.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let what = "rlimit";
        let (name, val) = s
            .split_once('=')
            .ok_or_else(|| perr(what, s, "expected NAME=SOFT[:HARD]"))?;
        let resource = RLIMIT_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
            .ok_or_else(|| perr(what, s, format!("unknown resource {name:?}")))?;
        let num = |v: &str| -> Result<u64, ParseError> {
            if v == "unlimited" || v == "infinity" {
                Ok(u64::MAX)
            } else {
                v.parse()
                    .map_err(|_| perr(what, s, "limits are numbers or \"unlimited\""))
            }
        };
        let (soft, hard) = match val.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(val)?, num(val)?),
        };
        if soft > hard {
            return Err(perr(what, s, "the soft limit is above the hard limit"));
        }
        Ok(RlimitSpec {
            resource,
            soft,
            hard,
        })
    }
}

/// Everything one dedicated partition asks for. Build with [`DedicatedSpec::new`] and set fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DedicatedSpec {
    /// The partition's name (unique among live runs; names the cpuset, journal and hugetlbfs mount).
    pub name: String,
    /// The dedicated cores.
    pub cpus: CpuSet,
    /// The cores left to Linux: IRQs, workqueues and every other task go here.
    pub housekeeping: CpuSet,
    /// The launched process's scheduling policy.
    pub sched: SchedPolicy,
    /// Huge pages reserved and handed to the process.
    pub hugepages: Vec<HugePagesSpec>,
    /// IRQs routed to the dedicated cores (every other IRQ goes to housekeeping).
    pub irqs: Vec<u32>,
    /// Resource limits of the launched process.
    pub rlimits: Vec<RlimitSpec>,
    /// Extra environment of the launched process.
    pub env: Vec<(String, String)>,
    /// The command (empty when the caller runs its own threads on the cores, as `carve noise` does).
    pub command: Vec<String>,
    /// Hold /dev/cpu_dma_latency at 0 while the partition runs (keeps cores out of deep C-states).
    pub dma_latency: bool,
    /// Lock the process's memory (mlockall MCL_CURRENT|MCL_FUTURE, see [`crate::launch`]).
    pub mlock: bool,
    /// Disable transparent huge pages for the process (PR_SET_THP_DISABLE).
    pub thp_disable: bool,
    /// vm.stat_interval while the partition runs (seconds; the per-CPU vmstat work runs this often).
    pub stat_interval: u32,
}

impl DedicatedSpec {
    /// A spec for `cpus`, leaving every other online CPU to housekeeping, with the defaults:
    /// SCHED_OTHER, mlock and THP off on, vm.stat_interval 10.
    pub fn new(name: &str, cpus: CpuSet, online: &CpuSet) -> Self {
        DedicatedSpec {
            name: name.to_string(),
            housekeeping: online.difference(&cpus),
            cpus,
            sched: SchedPolicy::Other,
            hugepages: Vec::new(),
            irqs: Vec::new(),
            rlimits: Vec::new(),
            env: Vec::new(),
            command: Vec::new(),
            dma_latency: false,
            mlock: true,
            thp_disable: true,
            stat_interval: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_policies_parse() {
        assert_eq!("fifo:80".parse(), Ok(SchedPolicy::Fifo(80)));
        assert_eq!("rr:1".parse(), Ok(SchedPolicy::Rr(1)));
        assert_eq!("other".parse(), Ok(SchedPolicy::Other));
        assert_eq!(
            "deadline:200us/1ms".parse(),
            Ok(SchedPolicy::Deadline {
                runtime_ns: 200_000,
                deadline_ns: 1_000_000,
                period_ns: 1_000_000
            })
        );
        assert!("fifo:0".parse::<SchedPolicy>().is_err());
        assert!("fifo:100".parse::<SchedPolicy>().is_err());
        assert!("deadline:2ms/1ms".parse::<SchedPolicy>().is_err());
        assert!("batch".parse::<SchedPolicy>().is_err());
        // Bare numbers are nanoseconds, so Display reads back.
        let d: SchedPolicy = "deadline:200000/500000/1000000".parse().unwrap();
        assert_eq!(d.to_string().parse(), Ok(d));
        assert_eq!("normal".parse(), Ok(SchedPolicy::Other));
        let e = "fifo:0".parse::<SchedPolicy>().unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid sched policy \"fifo:0\": the priority must be 1 to 99"
        );
        assert_eq!(SchedPolicy::Fifo(80).to_string(), "fifo:80");
        assert!(SchedPolicy::Rr(3).is_rt());
    }

    #[test]
    fn hugepages_parse() {
        let h: HugePagesSpec = "2MiB:32".parse().unwrap();
        assert_eq!((h.size_kib, h.count, h.node), (2048, 32, None));
        let h: HugePagesSpec = "1GiB:1@0".parse().unwrap();
        assert_eq!((h.size_kib, h.count, h.node), (1048576, 1, Some(0)));
        assert_eq!(h.to_string(), "1GiB:1@0");
        assert_eq!(h.dir_name(), "hugepages-1048576kB");
        assert!("2MiB".parse::<HugePagesSpec>().is_err());
        assert!("2MiB:0".parse::<HugePagesSpec>().is_err());
        assert!("2XB:1".parse::<HugePagesSpec>().is_err());
    }

    #[test]
    fn rlimits_parse() {
        let r: RlimitSpec = "nofile=1024:4096".parse().unwrap();
        assert_eq!(r.resource, libc::RLIMIT_NOFILE as i32);
        assert_eq!((r.soft, r.hard), (1024, 4096));
        let r: RlimitSpec = "memlock=unlimited".parse().unwrap();
        assert_eq!(r.soft, u64::MAX);
        assert!("nofile=9:1".parse::<RlimitSpec>().is_err());
        assert!("bogus=1".parse::<RlimitSpec>().is_err());
    }

    #[test]
    fn new_spec_leaves_the_rest_to_housekeeping() {
        let online = CpuSet::parse_list("0-3").unwrap();
        let s = DedicatedSpec::new("x", CpuSet::parse_list("2-3").unwrap(), &online);
        assert_eq!(s.housekeeping.to_string(), "0-1");
        assert!(s.mlock && s.thp_disable);
    }
}
