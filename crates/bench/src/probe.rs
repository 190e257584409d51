//! The probe: one static C program (`probe/carve-probe.c`, compiled into carve as text) built
//! with `gcc -static -O2` on first use, so natively, in a container, on a dedicated core and in a
//! VM the very same machine code runs. Its reports sit between two marker lines, so they survive
//! a VM console's other output.

use crate::BenchError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The probe's source.
pub const SOURCE: &str = include_str!("../probe/carve-probe.c");
/// The line before a report.
pub const BEGIN: &str = "CARVE-PROBE-BEGIN";
/// The line after a report.
pub const END: &str = "CARVE-PROBE-END";

/// Builds the probe into `dir` (reused when the same source was built there before) and returns
/// the binary's path.
pub fn build(dir: &Path) -> Result<PathBuf, BenchError> {
    std::fs::create_dir_all(dir).map_err(BenchError::io("create", dir))?;
    // A hash of the source names the binary: an edited probe is rebuilt, never mixed up.
    let hash = SOURCE.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let bin = dir.join(format!("carve-probe-{hash:016x}"));
    if bin.is_file() {
        return Ok(bin);
    }
    let src = dir.join(format!("carve-probe-{hash:016x}.c"));
    std::fs::write(&src, SOURCE).map_err(BenchError::io("write", &src))?;
    let tmp = bin.with_extension("tmp");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| BenchError::Tool {
            what: "gcc (the probe is built with gcc -static)".into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(BenchError::Tool {
            what: "gcc -static carve-probe.c".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    std::fs::rename(&tmp, &bin).map_err(BenchError::io("rename", &tmp))?;
    Ok(bin)
}

/// The JSON report between the markers of a probe's output.
pub fn parse(output: &str) -> Result<serde_json::Value, BenchError> {
    let start = output.find(BEGIN).map(|i| i + BEGIN.len());
    let end = start.and_then(|s| output[s..].find(END).map(|e| s + e));
    match (start, end) {
        (Some(s), Some(e)) => {
            // A VM console turns \n into \r\n.
            let text = output[s..e].replace('\r', "");
            serde_json::from_str(&text).map_err(|e| BenchError::Parse(format!("probe report: {e}")))
        }
        _ => Err(BenchError::Parse(format!(
            "no {BEGIN}..{END} report in the probe's output: {}",
            tail(output, 600)
        ))),
    }
}

/// The last `n` bytes of a text (for error messages).
pub fn tail(s: &str, n: usize) -> String {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    s[i..].trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_found_between_markers() {
        let out =
            "boot noise\r\nCARVE-PROBE-BEGIN\r\n{\"a\": [1,\r\n2]}\r\nCARVE-PROBE-END\r\nmore";
        assert_eq!(parse(out).unwrap(), serde_json::json!({"a": [1, 2]}));
        assert!(parse("nothing here").is_err());
        assert!(parse("CARVE-PROBE-BEGIN {").is_err());
    }

    #[test]
    fn the_probe_builds_static_and_reports_every_row() {
        let d = tempfile::tempdir().unwrap();
        let bin = build(d.path()).unwrap();
        assert_eq!(build(d.path()).unwrap(), bin, "cached by source hash");
        let out = Command::new(&bin)
            .args(["periodic", "1000", "0.05"])
            .output()
            .unwrap();
        let v = parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(v["counts"].as_array().unwrap().len(), 50);
        assert!(v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_u64().unwrap() > 0));
        let file = Command::new("file").arg(&bin).output();
        if let Ok(f) = file {
            let f = String::from_utf8_lossy(&f.stdout).to_string();
            assert!(f.contains("statically linked"), "{f}");
        }
    }

    #[test]
    fn the_probe_takes_the_batch_count_and_length_it_is_given() {
        let d = tempfile::tempdir().unwrap();
        let bin = build(d.path()).unwrap();
        let out = Command::new(&bin)
            .args(["overhead", "--batches", "3", "--batch-us", "200"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let v = parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(v["batches"], 3);
        assert_eq!(v["batch_ns"], 200_000);
        assert_eq!(v["rows"].as_array().unwrap().len(), 14);
        for bad in [
            &["--batches", "0"][..],
            &["--batches", "5000"],
            &["--bogus"],
        ] {
            let out = Command::new(&bin)
                .arg("overhead")
                .args(bad)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        }
    }
}
