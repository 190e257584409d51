//! Reading the serial console log: waiting for a marker, reading lines since an offset.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

/// How a wait for console text ended without finding it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WaitError {
    /// The time ran out.
    #[error("{text:?} did not appear on the console within {secs:.1} s; its last output: {last}")]
    Timeout {
        /// The awaited text.
        text: String,
        /// The time allowed.
        secs: f64,
        /// The console's last lines since the wait began (where a stuck guest stopped), or
        /// "(nothing)".
        last: String,
    },
    /// QEMU exited first.
    #[error("QEMU exited before {text:?} appeared on the console: {why}")]
    Exited {
        /// The awaited text.
        text: String,
        /// How QEMU ended.
        why: String,
    },
}

/// The console log's current length (new output starts here).
pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// Waits until `text` appears in `log` after byte `from`, polling every few milliseconds.
/// `exited` is asked between polls and ends the wait with its reason when QEMU is gone. Returns
/// the offset just past the match.
pub fn wait_for(
    log: &Path,
    from: u64,
    text: &str,
    timeout: Duration,
    mut exited: impl FnMut() -> Option<String>,
) -> Result<u64, WaitError> {
    let deadline = Instant::now() + timeout;
    let needle = text.as_bytes();
    let mut pos = from;
    let mut window: Vec<u8> = Vec::new();
    let mut window_start = from;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Ok(mut f) = std::fs::File::open(log) {
            if f.seek(SeekFrom::Start(pos)).is_ok() {
                loop {
                    let n = f.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    window.extend_from_slice(&buf[..n]);
                    pos += n as u64;
                    if let Some(i) = find(&window, needle) {
                        return Ok(window_start + (i + needle.len()) as u64);
                    }
                    // Keep only what could start a match that continues in the next read.
                    let keep = needle.len().saturating_sub(1).min(window.len());
                    let drop = window.len() - keep;
                    window.drain(..drop);
                    window_start += drop as u64;
                }
            }
        }
        // A last read after QEMU is gone catches output written just before it exited.
        if let Some(why) = exited() {
            if let Some(i) = read_from(log, window_start).and_then(|d| find(&d, needle)) {
                return Ok(window_start + (i + needle.len()) as u64);
            }
            return Err(WaitError::Exited {
                text: text.into(),
                why,
            });
        }
        if Instant::now() >= deadline {
            return Err(WaitError::Timeout {
                text: text.into(),
                secs: timeout.as_secs_f64(),
                last: last_lines(&read_from_str(log, from), 5),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `n` non-empty lines of `text`, joined with " | " (at most 600 bytes), or "(nothing)".
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return "(nothing)".into();
    }
    let s = lines[lines.len().saturating_sub(n)..].join(" | ");
    match s.char_indices().nth_back(599) {
        Some((i, _)) => format!("...{}", &s[i..]),
        None => s,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The log's bytes from `from` on (lossy UTF-8).
pub fn read_from_str(log: &Path, from: u64) -> String {
    String::from_utf8_lossy(&read_from(log, from).unwrap_or_default()).into_owned()
}

fn read_from(log: &Path, from: u64) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(log).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).ok()?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_text_split_across_writes() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        std::fs::write(&log, "old carve-guest-ready\n").unwrap();
        let from = log_len(&log);
        let l2 = log.clone();
        let h = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&l2).unwrap();
            f.write_all(b"boot... carve-gue").unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            f.write_all(b"st-ready\nmore").unwrap();
        });
        let end = wait_for(
            &log,
            from,
            "carve-guest-ready",
            Duration::from_secs(5),
            || None,
        )
        .unwrap();
        h.join().unwrap();
        let all = std::fs::read(&log).unwrap();
        assert_eq!(&all[end as usize - 17..end as usize], b"carve-guest-ready");
        assert!(end > from);
    }

    #[test]
    fn timeout_and_exit_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        std::fs::write(&log, "nothing\n").unwrap();
        let e = wait_for(&log, 0, "x-marker", Duration::from_millis(30), || None).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("within 0.0 s; its last output: nothing"),
            "{e}"
        );
        let e = wait_for(&log, 8, "x-marker", Duration::from_millis(30), || None).unwrap_err();
        assert!(e.to_string().ends_with("its last output: (nothing)"), "{e}");
        let e = wait_for(&log, 0, "x-marker", Duration::from_secs(5), || {
            Some("killed by signal 9".into())
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "QEMU exited before \"x-marker\" appeared on the console: killed by signal 9"
        );
    }
}
