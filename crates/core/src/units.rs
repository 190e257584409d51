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
    /// Not a Go duration (carve-oci's runc flags).
    #[error("{0:?} is not a duration such as \"5s\", \"500ms\" or \"1m30s\"")]
    NotGoDuration(String),
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

/// Which spellings of a duration a caller accepts. One grammar, three dialects:
///
/// | form | accepts | used by |
/// |---|---|---|
/// | [`DurationForm::Plan`] | a whole number and a unit: `500us`, `1ms`, `2 s` (ns, us/µs, ms, s) | plan values (`Duration`, `deadline:`) |
/// | [`DurationForm::BareNanos`] | as `Plan`, and a bare whole number meaning ns: `200000` | `carve run --sched deadline:…`, dedicated pod annotations |
/// | [`DurationForm::Go`] | Go's `time.ParseDuration`: decimals, several parts, up to hours: `1m30s`, `1.5s`, `0` | carve-oci `events --interval` (runc's flag) |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationForm {
    /// A whole number with a required unit.
    Plan,
    /// A whole number with an optional unit; none means nanoseconds.
    BareNanos,
    /// A Go duration.
    Go,
}

/// Nanoseconds per unit, shared by every form (`m` and `h` only in Go's).
fn unit_ns(unit: &str, form: DurationForm) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" if form == DurationForm::Go => 60_000_000_000,
        "h" if form == DurationForm::Go => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a duration into nanoseconds: a whole number with ns, us (or µs), ms or s.
pub fn parse_duration_ns(text: &str) -> Result<u64, UnitError> {
    parse_duration(text, DurationForm::Plan)
}

/// Parses a duration in the given form into nanoseconds; the error names the text and what was
/// expected.
pub fn parse_duration(text: &str, form: DurationForm) -> Result<u64, UnitError> {
    if form == DurationForm::Go {
        return parse_go_duration(text).ok_or_else(|| UnitError::NotGoDuration(text.into()));
    }
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(UnitError::NotDuration(text.into()));
    }
    let n: u64 = num.parse().map_err(|_| UnitError::TooLarge(text.into()))?;
    let mult = match (unit.trim(), form) {
        ("", DurationForm::BareNanos) => 1,
        ("", _) => return Err(UnitError::NoDurationUnit(text.into())),
        (u, _) => unit_ns(u, form).ok_or_else(|| UnitError::DurationUnit {
            text: text.into(),
            unit: u.into(),
        })?,
    };
    n.checked_mul(mult)
        .ok_or_else(|| UnitError::TooLarge(text.into()))
}

/// Go's grammar: `[0-9]*(\.[0-9]*)?UNIT` repeated, or a bare `0`; no sign, no spaces.
fn parse_go_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, r) = rest.split_at(n_end);
        let u_end = r
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(r.len());
        let (unit, r) = r.split_at(u_end);
        let mult = unit_ns(unit, DurationForm::Go)?;
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        let mut part = whole.checked_mul(mult)?;
        // The fraction in whole nanoseconds, digit by digit (Go truncates below 1 ns too).
        let mut scale = mult;
        for d in frac.bytes() {
            scale /= 10;
            part = part.checked_add(u64::from(d - b'0') * scale)?;
        }
        total = total.checked_add(part)?;
        rest = r;
    }
    Some(total)
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
        assert!(parse_duration_ns("1m").is_err(), "minutes are Go's only");
    }

    #[test]
    fn duration_dialects() {
        use DurationForm::*;
        assert_eq!(parse_duration("200000", BareNanos), Ok(200_000));
        assert_eq!(parse_duration("200us", BareNanos), Ok(200_000));
        assert_eq!(parse_duration("2 ms", BareNanos), Ok(2_000_000));
        assert!(parse_duration("5", Plan).is_err());
        assert!(parse_duration("x", BareNanos).is_err());
        let s = 1_000_000_000u64;
        for (t, want) in [
            ("5s", Some(5 * s)),
            ("500ms", Some(s / 2)),
            ("1m30s", Some(90 * s)),
            ("1.5s", Some(3 * s / 2)),
            (".5s", Some(s / 2)),
            ("2h", Some(7200 * s)),
            ("1µs", Some(1_000)),
            ("0", Some(0)),
            ("5", None),
            ("3x", None),
            ("", None),
            ("s", None),
            (".s", None),
            ("1.2.3s", None),
            ("-1s", None),
        ] {
            assert_eq!(parse_duration(t, Go).ok(), want, "{t:?}");
        }
    }
}
