//! Sizes and durations as people write them in plans: "64MiB", "2M", "1GiB"; "100us", "1ms".

/// A size or duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// No number in front.
    #[error("{0:?} is not a size: expected a number and a unit such as \"64MiB\"")]
    NotSize(String),
    /// No number in front.
    #[error("{0:?} is not a duration: expected a number and a unit such as \"500us\"")]
    NotDuration(String),
    /// Beyond 64 bits.
    #[error("{0:?} is too large")]
    TooLarge(String),
    /// A size unit that is not one of ours.
    #[error("{text:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB or TiB)")]
    SizeUnit {
        /// The text.
        text: String,
        /// Its unit.
        unit: String,
    },
    /// A duration without a unit.
    #[error("{0:?}: a duration needs a unit (ns, us, ms, s)")]
    NoDurationUnit(String),
    /// A duration unit that is not one of ours.
    #[error("{text:?}: unknown unit {unit:?} (use ns, us, ms or s)")]
    DurationUnit {
        /// The text.
        text: String,
        /// Its unit.
        unit: String,
    },
}

/// Parses a byte size: a whole number with an optional binary unit (K/Ki/KiB, M/Mi/MiB, G, T;
/// also "KB"/"MB" meaning the same binary units, as the kernel does; "B" or none for bytes).
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(UnitError::NotSize(text.into()));
    }
    let n: u64 = num.parse().map_err(|_| UnitError::TooLarge(text.into()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" | "kb" => 1 << 10,
        "m" | "mi" | "mib" | "mb" => 1 << 20,
        "g" | "gi" | "gib" | "gb" => 1 << 30,
        "t" | "ti" | "tib" | "tb" => 1 << 40,
        _ => {
            return Err(UnitError::SizeUnit {
                text: text.into(),
                unit: unit.into(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(text.into()))
}

/// Formats bytes with the largest binary unit that keeps it readable: "64 MiB", "23.5 GiB".
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut i = 0;
    let mut v = n as f64;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    let text = if i == 0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    format!("{} {}", text.strip_suffix(".0").unwrap_or(&text), UNITS[i])
}

/// Formats bytes compactly as a plan would write them when exact: "2MiB", "1GiB", else bytes.
pub fn format_bytes_exact(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

/// Parses a duration into nanoseconds: a whole number with ns, us (or µs), ms or s.
pub fn parse_duration_ns(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(UnitError::NotDuration(text.into()));
    }
    let n: u64 = num.parse().map_err(|_| UnitError::TooLarge(text.into()))?;
    let mult: u64 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "" => return Err(UnitError::NoDurationUnit(text.into())),
        u => {
            return Err(UnitError::DurationUnit {
                text: text.into(),
                unit: u.into(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(text.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("2M").unwrap(), 2 << 20);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(25_276_530_688), "23.5 GiB");
        assert_eq!(format_bytes(100), "100 B");
        assert_eq!(format_bytes((22 << 30) + 1000), "22 GiB");
        assert_eq!(format_bytes_exact(2 << 20), "2MiB");
        assert_eq!(format_bytes_exact(1 << 30), "1GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("500us").unwrap(), 500_000);
        assert_eq!(parse_duration_ns("1ms").unwrap(), 1_000_000);
        assert_eq!(parse_duration_ns("2s").unwrap(), 2_000_000_000);
        assert!(parse_duration_ns("5").is_err());
        assert!(parse_duration_ns("5 fortnights").is_err());
    }
}
