//! Parsing a plan: TOML → spanned tree → typed sections, one problem per failing section.

use super::{HostSection, Network, ObserveSection, Partition, Plan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// A line and column in the plan file, both from 1 (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One thing wrong with a plan: which partition, which field, where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The partition's name (or "#N" when it has none), `None` outside partitions.
    pub partition: Option<String>,
    /// The field: relative to the partition ("cpus[1]", "network.address") or absolute outside
    /// one ("host.housekeeping", "network.carve0.subnet").
    pub field: String,
    /// Where in the file, when the plan came from a file.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    /// `12:8: partition "fastpath", field `cpus[0]`: CPU 7 does not exist (...)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = self.location {
            write!(f, "{l}: ")?;
        }
        match (&self.partition, self.field.is_empty()) {
            (Some(p), false) => write!(f, "partition {p:?}, field `{}`: ", self.field)?,
            (Some(p), true) => write!(f, "partition {p:?}: ")?,
            (None, false) => write!(f, "field `{}`: ", self.field)?,
            (None, true) => {}
        }
        f.write_str(&self.message)
    }
}

/// Where each key and value of a plan sits in its text, by path: "host.housekeeping",
/// "network.carve0.subnet", "partition[2]", "partition[2].cpus[1]".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceMap {
    /// Path → byte span of the value (of the `[[partition]]` header for a partition table).
    values: BTreeMap<String, Range<usize>>,
    /// Path → byte span of the key.
    keys: BTreeMap<String, Range<usize>>,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// The text, kept for character-accurate columns.
    text: String,
}

impl SourceMap {
    fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap {
            values: BTreeMap::new(),
            keys: BTreeMap::new(),
            line_starts,
            text: text.to_string(),
        }
    }

    /// Line and column of a byte offset.
    pub fn location_of(&self, offset: usize) -> Location {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let end = offset.min(self.text.len());
        let column = self
            .text
            .get(start..end)
            .map_or(end - start, |s| s.chars().count())
            + 1;
        Location {
            line: line + 1,
            column,
        }
    }

    /// Where `path` is written: its value, else its key, else its nearest written ancestor.
    pub fn locate(&self, path: &str) -> Option<Location> {
        if self.line_starts.is_empty() {
            return None;
        }
        let mut p = path.to_string();
        loop {
            if let Some(span) = self.values.get(&p).or_else(|| self.keys.get(&p)) {
                return Some(self.location_of(span.start));
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }

    /// Where the key of `path` is written (for "unknown"/"duplicate" problems).
    pub fn locate_key(&self, path: &str) -> Option<Location> {
        self.keys
            .get(path)
            .map(|s| self.location_of(s.start))
            .or_else(|| self.locate(path))
    }

    /// The deepest path whose key or value contains the byte offset.
    fn path_at(&self, offset: usize) -> Option<String> {
        self.values
            .iter()
            .chain(self.keys.iter())
            .filter(|(_, s)| s.start <= offset && (offset < s.end || s.start == offset))
            .max_by_key(|(p, s)| (p.len(), std::cmp::Reverse(s.len())))
            .map(|(p, _)| p.clone())
    }

    fn record(&mut self, path: &str, value: &Spanned<DeValue<'_>>) {
        self.values.insert(path.to_string(), value.span());
        match value.get_ref() {
            DeValue::Table(t) => {
                for (k, v) in t.iter() {
                    let child = format!("{path}.{}", k.get_ref());
                    self.keys.insert(child.clone(), k.span());
                    self.record(&child, v);
                }
            }
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    self.record(&format!("{path}[{i}]"), v);
                }
            }
            _ => {}
        }
    }
}

/// The top-level keys of a plan.
const TOP_KEYS: [&str; 4] = ["host", "network", "partition", "observe"];

impl Plan {
    /// Parses a plan strictly. On failure returns every problem found: the first TOML syntax
    /// error, or one problem per section (`[host]`, each `[network.X]`, each `[[partition]]`)
    /// that does not match the format.
    pub fn parse(text: &str) -> Result<Plan, Vec<Problem>> {
        let mut map = SourceMap::new(text);
        let (root, syntax) = DeTable::parse_recoverable(text);
        if let Some(e) = syntax.into_iter().next() {
            // Later syntax errors are mostly echoes of the first; report the first only.
            return Err(vec![Problem {
                partition: None,
                field: String::new(),
                location: e.span().map(|s| map.location_of(s.start)),
                message: format!("TOML syntax: {}", e.message()),
            }]);
        }
        let root = root.into_inner();
        for (k, v) in root.iter() {
            map.keys.insert(k.get_ref().to_string(), k.span());
            map.record(k.get_ref(), v);
        }
        // Names of partitions, for problems inside partitions that failed to parse.
        let names: Vec<Option<String>> = match root.get("partition").map(|v| v.get_ref()) {
            Some(DeValue::Array(a)) => a
                .iter()
                .map(|t| {
                    t.get_ref()
                        .as_table()
                        .and_then(|t| t.get("name"))
                        .and_then(|n| n.get_ref().as_str())
                        .map(String::from)
                })
                .collect(),
            _ => Vec::new(),
        };

        let mut problems = Vec::new();
        let mut plan = Plan::default();
        for (key, value) in root {
            let key_name = key.get_ref().to_string();
            match key_name.as_str() {
                "host" => match HostSection::deserialize(ValueDeserializer::from(value)) {
                    Ok(h) => plan.host = h,
                    Err(e) => problems.push(map.serde_problem(&e, &names)),
                },
                "observe" => match ObserveSection::deserialize(ValueDeserializer::from(value)) {
                    Ok(o) => match o.check() {
                        Ok(()) => plan.observe = o,
                        Err(e) => problems.push(Problem {
                            partition: None,
                            field: "observe.listen".into(),
                            location: map.locate("observe.listen"),
                            message: e.to_string(),
                        }),
                    },
                    Err(e) => problems.push(map.serde_problem(&e, &names)),
                },
                "network" => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::Table(t) => {
                            for (name, net) in t {
                                match Network::deserialize(ValueDeserializer::from(net)) {
                                    Ok(n) => {
                                        plan.network.insert(name.get_ref().to_string(), n);
                                    }
                                    Err(e) => problems.push(map.serde_problem(&e, &names)),
                                }
                            }
                        }
                        _ => problems.push(Problem {
                            partition: None,
                            field: "network".into(),
                            location: Some(map.location_of(span.start)),
                            message: "expected tables [network.NAME]".into(),
                        }),
                    }
                }
                "partition" => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::Array(a) => {
                            for el in a {
                                match Partition::deserialize(ValueDeserializer::from(el)) {
                                    Ok(p) => plan.partitions.push(p),
                                    Err(e) => problems.push(map.serde_problem(&e, &names)),
                                }
                            }
                        }
                        _ => problems.push(Problem {
                            partition: None,
                            field: "partition".into(),
                            location: Some(map.location_of(span.start)),
                            message: "expected [[partition]] tables".into(),
                        }),
                    }
                }
                other => problems.push(Problem {
                    partition: None,
                    field: other.to_string(),
                    location: Some(map.location_of(key.span().start)),
                    message: format!(
                        "unknown top-level key `{other}`{}, expected one of `host`, `network`, `partition`, `observe`",
                        suggest(other, &TOP_KEYS)
                    ),
                }),
            }
        }
        if problems.is_empty() {
            plan.source = map;
            Ok(plan)
        } else {
            problems.sort_by_key(|p| p.location);
            Err(problems)
        }
    }
}

impl SourceMap {
    /// Turns a serde error from a section into a problem naming the partition and field.
    fn serde_problem(&self, e: &toml::de::Error, names: &[Option<String>]) -> Problem {
        let mut message = e.message().to_string();
        let offset = e.span().map(|s| s.start);
        let path = offset.and_then(|o| self.path_at(o)).unwrap_or_default();
        // "missing field `x`" points at the enclosing table: the field is the missing one.
        let missing = backticked(&message, "missing field `");
        let unknown = backticked(&message, "unknown field `");
        let mut field_path = path.clone();
        if let Some(m) = &missing {
            if !field_path.is_empty() {
                field_path.push('.');
            }
            field_path.push_str(m);
        }
        if let Some(u) = &unknown {
            let expected: Vec<&str> = message
                .split_once("expected")
                .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect::<Vec<&str>>())
                .unwrap_or_default();
            let hint = suggest(u, &expected);
            if !hint.is_empty() {
                message = format!("unknown field `{u}`{hint}");
            }
        }
        let (partition, field) = split_partition(&field_path, names);
        Problem {
            partition,
            field,
            location: offset.map(|o| self.location_of(o)),
            message,
        }
    }
}

/// "partition[2].cpus[1]" → (Some(name of partition 2), "cpus[1]").
fn split_partition(path: &str, names: &[Option<String>]) -> (Option<String>, String) {
    if let Some(rest) = path.strip_prefix("partition[") {
        if let Some((idx, tail)) = rest.split_once(']') {
            if let Ok(i) = idx.parse::<usize>() {
                let name = names
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| format!("#{}", i + 1));
                return (
                    Some(name),
                    tail.strip_prefix('.').unwrap_or(tail).to_string(),
                );
            }
        }
    }
    (None, path.to_string())
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(f, _)| f.to_string())
}

/// ", did you mean `x`?" for a close candidate, else "".
pub(crate) fn suggest(word: &str, candidates: &[&str]) -> String {
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
