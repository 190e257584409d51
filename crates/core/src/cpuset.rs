//! CPU sets in the kernel's list format ("0-3,8,10-11") and mask format ("f,00000f00").

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A set of CPU numbers, printed and parsed in the kernel's list format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuSet(BTreeSet<usize>);

/// A CPU list or mask that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CPU {kind} {text:?}: {why}")]
pub struct CpuSetError {
    /// "list" or "mask".
    pub kind: &'static str,
    /// The text that failed.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

/// CPU numbers above this are rejected as typos rather than allocated (the kernel's NR_CPUS max).
pub const MAX_CPU: usize = 8191;

impl CpuSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the list format: "0-3,8", "" (empty), with optional whitespace/newline.
    pub fn parse_list(s: &str) -> Result<Self, CpuSetError> {
        let err = |why: String| CpuSetError {
            kind: "list",
            text: s.to_string(),
            why,
        };
        let mut set = BTreeSet::new();
        for part in s.trim().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let a: usize = a
                .trim()
                .parse()
                .map_err(|_| err(format!("{part:?} is not a CPU or range")))?;
            let b: usize = b
                .trim()
                .parse()
                .map_err(|_| err(format!("{part:?} is not a CPU or range")))?;
            if a > b {
                return Err(err(format!("range {part:?} runs backwards")));
            }
            if b > MAX_CPU {
                return Err(err(format!("CPU {b} is above {MAX_CPU}")));
            }
            set.extend(a..=b);
        }
        Ok(CpuSet(set))
    }

    /// Parses the list format for an affinity mask of `limit` bits (`CPU_SETSIZE` for
    /// sched_setaffinity's `cpu_set_t`): every member must be below `limit`, so setting its bit
    /// stays inside the mask.
    pub fn parse_list_below(s: &str, limit: usize) -> Result<Self, CpuSetError> {
        let set = Self::parse_list(s)?;
        let beyond = set.iter().find(|&c| c >= limit);
        match beyond {
            Some(c) => Err(CpuSetError {
                kind: "list",
                text: s.to_string(),
                why: format!("CPU {c} is beyond the affinity mask's {limit} CPUs"),
            }),
            None => Ok(set),
        }
    }

    /// Parses the hex mask format of /proc/irq/N/smp_affinity: comma-separated 32-bit words,
    /// most significant first.
    pub fn parse_mask(s: &str) -> Result<Self, CpuSetError> {
        let mut set = BTreeSet::new();
        let words: Vec<&str> = s.trim().split(',').collect();
        for (i, w) in words.iter().rev().enumerate() {
            let v = u32::from_str_radix(w, 16).map_err(|_| CpuSetError {
                kind: "mask",
                text: s.to_string(),
                why: format!("{w:?} is not a hex word"),
            })?;
            for bit in 0..32 {
                if v & (1 << bit) != 0 {
                    set.insert(i * 32 + bit);
                }
            }
        }
        Ok(CpuSet(set))
    }

    /// Formats as a hex mask in the kernel's word layout, covering at least `ncpus` CPUs.
    pub fn to_mask(&self, ncpus: usize) -> String {
        let top = self
            .0
            .iter()
            .next_back()
            .map_or(0, |c| c + 1)
            .max(ncpus)
            .max(1);
        let nwords = top.div_ceil(32);
        let mut words = vec![0u32; nwords];
        for &c in &self.0 {
            words[c / 32] |= 1 << (c % 32);
        }
        let mut out: Vec<String> = Vec::new();
        for (i, w) in words.iter().enumerate().rev() {
            // The kernel pads the top word to the digits its CPU count needs, the rest to 8.
            if i == nwords - 1 {
                let digits = (top - 32 * (nwords - 1)).div_ceil(4).max(1);
                out.push(format!("{w:0digits$x}"));
            } else {
                out.push(format!("{w:08x}"));
            }
        }
        out.join(",")
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        self.0.contains(&cpu)
    }

    /// Adds `cpu`.
    pub fn insert(&mut self, cpu: usize) -> bool {
        self.0.insert(cpu)
    }

    /// Removes `cpu`.
    pub fn remove(&mut self, cpu: usize) -> bool {
        self.0.remove(&cpu)
    }

    /// Number of CPUs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }

    /// CPUs in both sets.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&other.0).copied().collect())
    }

    /// CPUs in either set.
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&other.0).copied().collect())
    }

    /// CPUs of `self` not in `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&other.0).copied().collect())
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.0.is_subset(&other.0)
    }
}

impl FromIterator<usize> for CpuSet {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        CpuSet(iter.into_iter().collect())
    }
}

impl fmt::Display for CpuSet {
    /// The list format, with ranges collapsed: "0-3,8".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut it = self.0.iter().copied().peekable();
        while let Some(start) = it.next() {
            let mut end = start;
            while it.peek() == Some(&(end + 1)) {
                end = it.next().unwrap_or(end);
            }
            parts.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
        }
        f.write_str(&parts.join(","))
    }
}

impl FromStr for CpuSet {
    type Err = CpuSetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CpuSet::parse_list(s)
    }
}

impl Serialize for CpuSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CpuSet::parse_list(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_lists_stay_inside_their_mask() {
        assert_eq!(CpuSet::parse_list_below("0-2,1023", 1024).unwrap().len(), 4);
        let e = CpuSet::parse_list_below("0,1024", 1024).unwrap_err();
        assert!(e.to_string().contains("CPU 1024 is beyond"), "{e}");
        assert!(CpuSet::parse_list_below("3-1", 1024).is_err());
    }

    #[test]
    fn list_round_trips() {
        let s = CpuSet::parse_list("0-3,8,10-11\n").unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!(s.to_string(), "0-3,8,10-11");
        assert_eq!(CpuSet::parse_list("").unwrap().len(), 0);
    }

    #[test]
    fn bad_lists_are_rejected() {
        assert!(CpuSet::parse_list("3-1").is_err());
        assert!(CpuSet::parse_list("a").is_err());
        assert!(CpuSet::parse_list("9000").is_err());
    }

    #[test]
    fn masks_round_trip_in_kernel_layout() {
        assert_eq!(CpuSet::parse_mask("3").unwrap().to_string(), "0-1");
        let s = CpuSet::parse_mask("1,00000002").unwrap();
        assert_eq!(s.to_string(), "1,32");
        assert_eq!(s.to_mask(64), "00000001,00000002");
        assert_eq!(CpuSet::parse_list("0").unwrap().to_mask(2), "1");
        assert_eq!(CpuSet::parse_list("0-1").unwrap().to_mask(2), "3");
    }
}
