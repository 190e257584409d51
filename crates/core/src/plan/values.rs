//! Value types of the plan that are written as strings or in several shapes ("64MiB", "fifo:80",
//! `cpus = 2` or `cpus = [1, 2]`), each with its own parser, error message and schema.

use crate::units::{
    format_bytes_exact, parse_bytes, parse_duration, parse_duration_ns, DurationForm, UnitError,
};
use crate::CpuSet;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

/// A plan value that does not parse; the message names the text and what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A size or duration.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// A size or duration inside a longer value (`deadline:RUNTIME/PERIOD`).
    #[error("{text:?}: {source}")]
    In {
        /// The whole value.
        text: String,
        /// Why its part does not parse.
        source: UnitError,
    },
    /// Anything else, with the message the user sees.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for ValueError {
    fn from(why: String) -> Self {
        ValueError::Invalid(why)
    }
}

impl From<&str> for ValueError {
    fn from(why: &str) -> Self {
        ValueError::Invalid(why.into())
    }
}

/// Implements Serialize via Display, Deserialize via FromStr (with the parser's message), and a
/// string JSON Schema with a description and examples.
macro_rules! string_value {
    ($ty:ty, $name:literal, $desc:literal, [$($ex:literal),*]) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($desc)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": $desc,
                    "examples": [$($ex),*]
                })
            }
        }
    };
}

/// A byte size written with a unit: "64MiB", "1GiB".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

impl Size {
    /// Bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let n = parse_bytes(s)?;
        if n == 0 {
            return Err(ValueError::Invalid(format!(
                "{s:?}: a size must be above zero"
            )));
        }
        if !s.trim().ends_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(ValueError::Invalid(format!(
                "{s:?} has no unit: write it as \"{}\" or with B for bytes",
                format_bytes_exact(n.max(1) << 20)
            )));
        }
        Ok(Size(n))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes_exact(self.0))
    }
}

string_value!(
    Size,
    "Size",
    "a size with a binary unit: B, KiB, MiB, GiB, TiB (K/M/G also mean KiB/MiB/GiB)",
    ["64MiB", "1GiB"]
);

/// A duration written with a unit: "500us", "1ms", "2s".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    /// Nanoseconds.
    pub fn nanos(self) -> u64 {
        self.0
    }
}

impl FromStr for Duration {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Ok(Duration(parse_duration_ns(s)?))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (div, unit) in [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")] {
            if n >= div && n % div == 0 {
                return write!(f, "{}{unit}", n / div);
            }
        }
        write!(f, "{n}ns")
    }
}

string_value!(
    Duration,
    "Duration",
    "a duration with a unit: ns, us, ms or s",
    ["500us", "1s"]
);

/// `cpus`: a count to place automatically, or the CPUs themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuRequest {
    /// `cpus = 2`: carve picks the CPUs (whole cores first, one NUMA node, never housekeeping).
    Count(usize),
    /// `cpus = [1, 3]`, in the order written (so problems point at the element).
    List(Vec<usize>),
    /// `cpus = "2-5"`: the kernel's list format.
    Text(CpuSet),
}

impl CpuRequest {
    /// The CPUs named explicitly (`None` for a count).
    pub fn explicit(&self) -> Option<CpuSet> {
        match self {
            CpuRequest::Count(_) => None,
            CpuRequest::List(l) => Some(l.iter().copied().collect()),
            CpuRequest::Text(s) => Some(s.clone()),
        }
    }

    /// Where `cpu` was written in a list, for locating problems.
    pub fn position(&self, cpu: usize) -> Option<usize> {
        match self {
            CpuRequest::List(l) => l.iter().position(|&c| c == cpu),
            _ => None,
        }
    }
}

impl Serialize for CpuRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CpuRequest::Count(n) => s.serialize_u64(*n as u64),
            CpuRequest::List(l) => l.serialize(s),
            CpuRequest::Text(t) => s.collect_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for CpuRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CpuRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a CPU count (2), a list of CPUs ([1, 3]) or a CPU list string (\"1-3\")",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CpuRequest, E> {
                if v < 1 {
                    return Err(E::custom(format!(
                        "a CPU count must be at least 1, not {v}"
                    )));
                }
                if v as usize > crate::cpuset::MAX_CPU {
                    return Err(E::custom(format!("{v} CPUs is more than any host has")));
                }
                Ok(CpuRequest::Count(v as usize))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CpuRequest, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CpuRequest, E> {
                let set = CpuSet::parse_list(v).map_err(E::custom)?;
                if set.is_empty() {
                    return Err(E::custom("the CPU list is empty"));
                }
                Ok(CpuRequest::Text(set))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CpuRequest, A::Error> {
                let mut l = Vec::new();
                while let Some(c) = seq.next_element::<CpuNumber>()? {
                    l.push(c.0);
                }
                if l.is_empty() {
                    return Err(de::Error::custom("the CPU list is empty"));
                }
                Ok(CpuRequest::List(l))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for CpuRequest {
    fn schema_name() -> Cow<'static, str> {
        "CpuRequest".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A CPU count to place automatically, a list of CPU numbers, or a CPU list string.",
            "oneOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "array", "items": { "type": "integer", "minimum": 0 }, "minItems": 1 },
                { "type": "string", "examples": ["1-3", "0,2"] }
            ]
        })
    }
}

/// One CPU number in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuNumber(pub usize);

impl<'de> Deserialize<'de> for CpuNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if v < 0 || v as usize > crate::cpuset::MAX_CPU {
            return Err(de::Error::custom(format!("{v} is not a CPU number")));
        }
        Ok(CpuNumber(v as usize))
    }
}

/// A list of CPUs: `[0, 1]` or `"0-1"` (used by `host.housekeeping`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList {
    /// The CPUs in the order written.
    pub cpus: Vec<usize>,
    /// Whether it was a list (so positions point at elements).
    pub written_as_list: bool,
}

impl CpuList {
    /// As a set.
    pub fn set(&self) -> CpuSet {
        self.cpus.iter().copied().collect()
    }

    /// Where `cpu` was written, for locating problems.
    pub fn position(&self, cpu: usize) -> Option<usize> {
        self.written_as_list
            .then(|| self.cpus.iter().position(|&c| c == cpu))
            .flatten()
    }
}

impl Serialize for CpuList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.cpus.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CpuList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match CpuRequest::deserialize(d)? {
            CpuRequest::Count(n) => Err(de::Error::custom(format!(
                "expected a list of CPUs such as [0] or \"0-1\", not a count ({n})"
            ))),
            CpuRequest::List(cpus) => Ok(CpuList {
                cpus,
                written_as_list: true,
            }),
            CpuRequest::Text(set) => Ok(CpuList {
                cpus: set.iter().collect(),
                written_as_list: false,
            }),
        }
    }
}

impl JsonSchema for CpuList {
    fn schema_name() -> Cow<'static, str> {
        "CpuList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A list of CPU numbers, or a CPU list string.",
            "oneOf": [
                { "type": "array", "items": { "type": "integer", "minimum": 0 }, "minItems": 1 },
                { "type": "string", "examples": ["0", "0-1"] }
            ]
        })
    }
}

/// `hugepages`: page size, and either a count or "as many as `memory` needs".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HugePagesRequest {
    /// Page size: "2MiB" or "1GiB".
    pub size: Size,
    /// Number of pages; omitted: enough pages for the partition's `memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl FromStr for HugePagesRequest {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (size, count) = match s.split_once(':') {
            Some((size, count)) => {
                let n: u64 = count.trim().parse().map_err(|_| {
                    format!("{s:?}: the count after ':' must be a whole number of pages")
                })?;
                (size, Some(n))
            }
            None => (s, None),
        };
        let size: Size = size.parse()?;
        HugePagesRequest { size, count }.checked()
    }
}

impl HugePagesRequest {
    fn checked(self) -> Result<Self, ValueError> {
        let kib = self.size.0 / 1024;
        if !self.size.0.is_power_of_two() || kib < 64 {
            return Err(ValueError::Invalid(format!(
                "{} is not a huge page size (2MiB and 1GiB on x86-64)",
                self.size
            )));
        }
        if self.count == Some(0) {
            return Err("a huge page count must be at least 1".into());
        }
        Ok(self)
    }
}

impl<'de> Deserialize<'de> for HugePagesRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            size: Size,
            #[serde(default)]
            count: Option<u64>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HugePagesRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a huge page size (\"2MiB\"), size and count (\"2MiB:32\") or a table { size, count }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HugePagesRequest, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HugePagesRequest, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                HugePagesRequest {
                    size: t.size,
                    count: t.count,
                }
                .checked()
                .map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Scheduling policy of the partition's threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sched {
    /// SCHED_OTHER (the default).
    Other,
    /// SCHED_BATCH.
    Batch,
    /// SCHED_IDLE.
    Idle,
    /// SCHED_FIFO with a priority 1..=99.
    Fifo(u8),
    /// SCHED_RR with a priority 1..=99.
    Rr(u8),
    /// SCHED_DEADLINE.
    Deadline {
        /// Runtime per period, ns.
        runtime: u64,
        /// Relative deadline, ns.
        deadline: u64,
        /// Period, ns.
        period: u64,
    },
}

impl Sched {
    /// Whether it is a real-time policy (FIFO, RR, DEADLINE).
    pub fn is_realtime(&self) -> bool {
        matches!(self, Sched::Fifo(_) | Sched::Rr(_) | Sched::Deadline { .. })
    }
}

impl Sched {
    /// The policy grammar, shared by the plan and the dedicated tier's spec: "other", "batch",
    /// "idle", "fifo:PRIO", "rr:PRIO" (1..=99) or "deadline:RUNTIME/PERIOD" (or
    /// RUNTIME/DEADLINE/PERIOD), the durations written as `durations` says (the plan requires
    /// units; `carve run --sched` also takes bare nanoseconds). The error says why, without
    /// repeating `s` (callers name it their own way).
    pub fn parse_with(s: &str, durations: DurationForm) -> Result<Sched, ValueError> {
        let (policy, arg) = match s.split_once(':') {
            Some((p, a)) => (p.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        let no_arg = |v: Sched| -> Result<Sched, ValueError> {
            match arg {
                None => Ok(v),
                Some(_) => Err(format!("{policy} takes no argument").into()),
            }
        };
        match policy {
            "other" => no_arg(Sched::Other),
            "batch" => no_arg(Sched::Batch),
            "idle" => no_arg(Sched::Idle),
            "fifo" => Ok(Sched::Fifo(sched_priority(policy, arg)?)),
            "rr" => Ok(Sched::Rr(sched_priority(policy, arg)?)),
            "deadline" => sched_deadline(arg, durations),
            _ => Err(format!(
                "unknown policy {policy:?} (use other, batch, idle, fifo:PRIO, rr:PRIO or deadline:RUNTIME/PERIOD)"
            )
            .into()),
        }
    }
}

fn sched_priority(policy: &str, arg: Option<&str>) -> Result<u8, ValueError> {
    let a = arg.ok_or_else(|| format!("give a priority, e.g. \"{policy}:80\""))?;
    match a.parse::<u8>() {
        Ok(p @ 1..=99) => Ok(p),
        _ => Err("the priority must be 1 to 99".into()),
    }
}

fn sched_deadline(arg: Option<&str>, durations: DurationForm) -> Result<Sched, ValueError> {
    let a = arg.ok_or("give runtime/period, e.g. \"deadline:200us/1ms\"")?;
    let parts: Vec<u64> = a
        .split('/')
        .map(|p| parse_duration(p, durations))
        .collect::<Result<_, _>>()?;
    let (runtime, deadline, period) = match parts[..] {
        [r, p] => (r, p, p),
        [r, d, p] => (r, d, p),
        _ => return Err("write runtime/period or runtime/deadline/period".into()),
    };
    // The kernel's own admission rules (sched_dl_overflow aside): 1 µs granularity.
    if runtime < 1024 {
        return Err("the runtime must be at least 1024ns".into());
    }
    if !(runtime <= deadline && deadline <= period) {
        return Err("needs runtime <= deadline <= period".into());
    }
    Ok(Sched::Deadline {
        runtime,
        deadline,
        period,
    })
}

impl FromStr for Sched {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Sched::parse_with(s, DurationForm::Plan)
            .map_err(|why| ValueError::Invalid(format!("{s:?}: {why}")))
    }
}

impl fmt::Display for Sched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sched::Other => f.write_str("other"),
            Sched::Batch => f.write_str("batch"),
            Sched::Idle => f.write_str("idle"),
            Sched::Fifo(p) => write!(f, "fifo:{p}"),
            Sched::Rr(p) => write!(f, "rr:{p}"),
            Sched::Deadline {
                runtime,
                deadline,
                period,
            } => {
                if deadline == period {
                    write!(f, "deadline:{}/{}", Duration(*runtime), Duration(*period))
                } else {
                    write!(
                        f,
                        "deadline:{}/{}/{}",
                        Duration(*runtime),
                        Duration(*deadline),
                        Duration(*period)
                    )
                }
            }
        }
    }
}

string_value!(
    Sched,
    "Sched",
    "a scheduling policy: \"other\", \"batch\", \"idle\", \"fifo:PRIO\", \"rr:PRIO\" (PRIO 1-99) or \"deadline:RUNTIME/PERIOD\" (or RUNTIME/DEADLINE/PERIOD) with units",
    ["fifo:80", "deadline:200us/1ms"]
);

/// An IRQ by number or by its handler name (as in /proc/interrupts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IrqRef {
    /// IRQ number.
    Number(u32),
    /// Handler name ("virtio3-rx").
    Name(String),
}

impl fmt::Display for IrqRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrqRef::Number(n) => write!(f, "IRQ {n}"),
            IrqRef::Name(s) => write!(f, "IRQ {s:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for IrqRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IrqRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IRQ number or handler name")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IrqRef, E> {
                u32::try_from(v)
                    .map(IrqRef::Number)
                    .map_err(|_| E::custom(format!("{v} is not an IRQ number")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IrqRef, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IrqRef, E> {
                if v.trim().is_empty() {
                    return Err(E::custom("an IRQ name cannot be empty"));
                }
                Ok(IrqRef::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for IrqRef {
    fn schema_name() -> Cow<'static, str> {
        "IrqRef".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An IRQ number, or its handler name as /proc/interrupts shows it.",
            "oneOf": [ { "type": "integer", "minimum": 0 }, { "type": "string", "minLength": 1 } ]
        })
    }
}

/// One resource limit value: a number or "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A number (bytes, files, seconds... per resource).
    Value(u64),
    /// RLIM_INFINITY.
    Unlimited,
}

impl FromStr for Limit {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s.trim() {
            "unlimited" | "infinity" => Ok(Limit::Unlimited),
            t => t.parse().map(Limit::Value).map_err(|_| {
                ValueError::Invalid(format!("{s:?} is not a limit (a number or \"unlimited\")"))
            }),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Value(v) => write!(f, "{v}"),
            Limit::Unlimited => f.write_str("unlimited"),
        }
    }
}

impl Limit {
    fn le(self, other: Limit) -> bool {
        match (self, other) {
            (_, Limit::Unlimited) => true,
            (Limit::Unlimited, Limit::Value(_)) => false,
            (Limit::Value(a), Limit::Value(b)) => a <= b,
        }
    }
}

/// A soft and hard resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// Soft limit.
    pub soft: Limit,
    /// Hard limit.
    pub hard: Limit,
}

impl Serialize for Rlimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.soft == self.hard {
            match self.soft {
                Limit::Value(v) => s.serialize_u64(v),
                Limit::Unlimited => s.serialize_str("unlimited"),
            }
        } else {
            s.collect_str(&format_args!("{}:{}", self.soft, self.hard))
        }
    }
}

impl Rlimit {
    fn checked(self) -> Result<Self, ValueError> {
        if self.soft.le(self.hard) {
            Ok(self)
        } else {
            Err(ValueError::Invalid(format!(
                "the soft limit {} is above the hard limit {}",
                self.soft, self.hard
            )))
        }
    }
}

impl<'de> Deserialize<'de> for Rlimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            soft: LimitValue,
            hard: LimitValue,
        }
        struct LimitValue(Limit);
        impl<'de> Deserialize<'de> for LimitValue {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                match Rlimit::deserialize(d)? {
                    r if r.soft == r.hard => Ok(LimitValue(r.soft)),
                    _ => Err(de::Error::custom("expected one number or \"unlimited\"")),
                }
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rlimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a limit (1024, \"unlimited\"), \"SOFT:HARD\" or a table { soft, hard }",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rlimit, E> {
                let v = u64::try_from(v)
                    .map_err(|_| E::custom(format!("{v}: a limit cannot be negative")))?;
                Ok(Rlimit {
                    soft: Limit::Value(v),
                    hard: Limit::Value(v),
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rlimit, E> {
                Ok(Rlimit {
                    soft: Limit::Value(v),
                    hard: Limit::Value(v),
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rlimit, E> {
                let r = match v.split_once(':') {
                    Some((s, h)) => Rlimit {
                        soft: s.parse().map_err(E::custom)?,
                        hard: h.parse().map_err(E::custom)?,
                    },
                    None => {
                        let l: Limit = v.parse().map_err(E::custom)?;
                        Rlimit { soft: l, hard: l }
                    }
                };
                r.checked().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Rlimit, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Rlimit {
                    soft: t.soft.0,
                    hard: t.hard.0,
                }
                .checked()
                .map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Rlimit {
    fn schema_name() -> Cow<'static, str> {
        "Rlimit".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let limit = json_schema!({
            "oneOf": [ { "type": "integer", "minimum": 0 }, { "const": "unlimited" } ]
        });
        json_schema!({
            "description": "A limit for soft and hard (1024 or \"unlimited\"), \"SOFT:HARD\", or { soft, hard }.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "examples": ["unlimited", "1024:4096"] },
                {
                    "type": "object",
                    "properties": { "soft": limit, "hard": limit },
                    "required": ["soft", "hard"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// When a partition is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// After a non-zero exit or a crash.
    OnFailure,
    /// Whenever it exits.
    Always,
}

/// `restart`: a policy, optionally with a retry limit and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// no, on-failure or always.
    pub policy: RestartPolicy,
    /// Give up after this many restarts in a row (default: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Delay before the first restart, doubled after each failure up to 64× (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            policy: RestartPolicy,
            #[serde(default)]
            max_retries: Option<u32>,
            #[serde(default)]
            backoff: Option<Duration>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Restart;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"no\", \"on-failure\", \"always\" or a table { policy, max_retries, backoff }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Restart, E> {
                let policy = RestartPolicy::deserialize(de::value::StrDeserializer::<E>::new(v))?;
                Ok(Restart {
                    policy,
                    ..Restart::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Restart, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Restart {
                    policy: t.policy,
                    max_retries: t.max_retries,
                    backoff: t.backoff,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// An IPv4 address with a prefix length: "10.77.0.0/24", "10.77.0.2/24".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length 0..=32.
    pub prefix: u8,
}

impl Cidr {
    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
}

impl FromStr for Cidr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (a, p) = s.split_once('/').ok_or_else(|| {
            format!("{s:?}: write an address with its prefix, e.g. \"10.77.0.2/24\"")
        })?;
        let addr: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IPv4 address"))?;
        let prefix = match p.trim().parse::<u8>() {
            Ok(p @ 0..=32) => p,
            _ => {
                return Err(ValueError::Invalid(format!(
                    "{s:?}: the prefix length must be 0 to 32"
                )))
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

string_value!(
    Cidr,
    "Cidr",
    "an IPv4 address with prefix length",
    ["10.77.0.0/24", "10.77.0.2/24"]
);

/// A PCI address for VFIO passthrough: "0000:01:00.0" (the domain may be omitted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress(pub String);

impl FromStr for PciAddress {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let full = if s.matches(':').count() == 1 {
            format!("0000:{s}")
        } else {
            s.to_string()
        };
        let bad = || format!("{s:?} is not a PCI address like \"0000:01:00.0\"");
        let (dbs, func) = full.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = dbs.split(':').collect();
        let hex = |t: &str, n: usize| t.len() == n && t.chars().all(|c| c.is_ascii_hexdigit());
        if parts.len() != 3
            || !hex(parts[0], 4)
            || !hex(parts[1], 2)
            || !hex(parts[2], 2)
            || !matches!(func, "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7")
        {
            return Err(bad().into());
        }
        Ok(PciAddress(full.to_ascii_lowercase()))
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_value!(
    PciAddress,
    "PciAddress",
    "a PCI address DOMAIN:BUS:DEVICE.FUNCTION for VFIO passthrough",
    ["0000:01:00.0"]
);

/// One path or a list of paths (`disks = "a.img"` or `disks = ["a.img", "b.img"]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paths(pub Vec<PathBuf>);

impl Serialize for Paths {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Paths;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Paths, E> {
                Ok(Paths(vec![v.into()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Paths, A::Error> {
                let mut v = Vec::new();
                while let Some(p) = seq.next_element::<PathBuf>()? {
                    v.push(p);
                }
                Ok(Paths(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Paths {
    fn schema_name() -> Cow<'static, str> {
        "Paths".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [ { "type": "string" }, { "type": "array", "items": { "type": "string" } } ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_forms() {
        assert_eq!("fifo:80".parse::<Sched>().unwrap(), Sched::Fifo(80));
        assert_eq!("rr:10".parse::<Sched>().unwrap(), Sched::Rr(10));
        assert_eq!("other".parse::<Sched>().unwrap(), Sched::Other);
        let d: Sched = "deadline:200us/1ms".parse().unwrap();
        assert_eq!(d.to_string(), "deadline:200us/1ms");
        let d: Sched = "deadline:200us/500us/1ms".parse().unwrap();
        assert_eq!(d.to_string(), "deadline:200us/500us/1ms");
        for bad in [
            "fifo",
            "fifo:0",
            "fifo:100",
            "rt:5",
            "other:3",
            "deadline:1ms/200us",
            "deadline:5",
            "deadline:100ns/1ms",
        ] {
            assert!(bad.parse::<Sched>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hugepage_forms() {
        let h: HugePagesRequest = "2MiB:32".parse().unwrap();
        assert_eq!((h.size.0, h.count), (2 << 20, Some(32)));
        let h: HugePagesRequest = "1GiB".parse().unwrap();
        assert_eq!((h.size.0, h.count), (1 << 30, None));
        assert!("3MiB".parse::<HugePagesRequest>().is_err());
        assert!("2MiB:x".parse::<HugePagesRequest>().is_err());
        assert!("2MiB:0".parse::<HugePagesRequest>().is_err());
    }

    #[test]
    fn cidr_math() {
        let c: Cidr = "10.77.0.9/24".parse().unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(10, 77, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
        assert!(c.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 78, 0, 1)));
        assert!("10.77.0.0".parse::<Cidr>().is_err());
        assert!("10.77.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn pci_addresses() {
        assert_eq!(
            "01:00.0".parse::<PciAddress>().unwrap().to_string(),
            "0000:01:00.0"
        );
        assert!("0000:01:00.9".parse::<PciAddress>().is_err());
        assert!("eth0".parse::<PciAddress>().is_err());
    }

    #[test]
    fn sizes_need_units() {
        assert_eq!("64MiB".parse::<Size>().unwrap().0, 64 << 20);
        assert!("64".parse::<Size>().is_err());
        assert!("0MiB".parse::<Size>().is_err());
    }
}
