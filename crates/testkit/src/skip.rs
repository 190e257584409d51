//! Skipped tests that the suite counts.
//!
//! A test that cannot run returns early; before it does it calls [`skip`], which prints the reason,
//! appends a record to the suite's skip log (`$CARVE_SKIP_LOG`, set by scripts/test.sh), and — in
//! CI (`CI=true`) — panics when the reason is one CI must never have: CI runs as root with every
//! tool scripts/setup.sh installs and the whole workspace built, so a skip for "not root", "tool
//! missing" or "not built" there means a broken machine or script, not a host that lacks a feature.
//! scripts/test.sh prints the log as a summary after the run.

use std::io::Write;

/// Why a test did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// The test needs root.
    NotRoot,
    /// A command or file that scripts/setup.sh installs is missing.
    ToolMissing,
    /// A binary of the workspace (or a guest image) is not built.
    NotBuilt,
    /// The host lacks a feature the test needs (one CPU, a pure-v2 host for v1 tests, no movable
    /// IRQ): legitimate anywhere.
    Host,
}

impl SkipKind {
    /// The word used in the skip log and the summary.
    pub fn word(self) -> &'static str {
        match self {
            SkipKind::NotRoot => "not-root",
            SkipKind::ToolMissing => "tool-missing",
            SkipKind::NotBuilt => "not-built",
            SkipKind::Host => "host",
        }
    }

    /// Whether CI refuses this reason.
    pub fn fails_in_ci(self) -> bool {
        !matches!(self, SkipKind::Host)
    }
}

/// The running test's name: libtest names the thread after the test; the binary's stem (without
/// cargo's hash) says which test file it is.
fn test_name() -> String {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|n| match n.rsplit_once('-') {
            Some((stem, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => stem.to_string(),
            _ => n,
        })
        .unwrap_or_default();
    let thread = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_string)
        .or_else(|| std::env::var("NEXTEST_TEST_NAME").ok())
        .unwrap_or_else(|| "?".into());
    format!("{bin}::{thread}")
}

fn in_ci() -> bool {
    matches!(
        std::env::var("CI").ok().as_deref(),
        Some("true") | Some("1") | Some("yes")
    )
}

/// Records that the running test is skipped for `reason`. The caller returns right after.
///
/// # Panics
/// In CI, when `kind` is one CI refuses ([`SkipKind::fails_in_ci`]): the test then fails with the
/// reason instead of passing silently.
pub fn skip(kind: SkipKind, reason: impl std::fmt::Display) {
    let name = test_name();
    let reason = reason.to_string().replace(['\t', '\n'], " ");
    eprintln!("skipped ({}): {reason}", kind.word());
    if let Some(log) = std::env::var_os("CARVE_SKIP_LOG") {
        // One short line, appended with O_APPEND: lines from parallel test processes never mix.
        let line = format!("{}\t{name}\t{reason}\n", kind.word());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
    if in_ci() && kind.fails_in_ci() {
        panic!(
            "{name} skipped in CI ({}): {reason} — CI runs as root with every tool setup.sh installs and the workspace built",
            kind.word()
        );
    }
}

/// True when this process is root; otherwise records a [`SkipKind::NotRoot`] skip.
pub fn require_root() -> bool {
    if crate::is_root() {
        return true;
    }
    skip(SkipKind::NotRoot, "needs root");
    false
}

/// True when `tool` (a command on PATH, or an absolute path) exists; otherwise records a
/// [`SkipKind::ToolMissing`] skip naming it.
pub fn require_tool(tool: &str) -> bool {
    let found = if tool.starts_with('/') {
        std::path::Path::new(tool).exists()
    } else {
        std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| {
                let f = d.join(tool);
                f.is_file()
            })
        })
    };
    if !found {
        skip(
            SkipKind::ToolMissing,
            format!("{tool} is missing (scripts/setup.sh installs it)"),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_reasons_pass_in_ci() {
        assert!(SkipKind::NotRoot.fails_in_ci());
        assert!(SkipKind::ToolMissing.fails_in_ci());
        assert!(SkipKind::NotBuilt.fails_in_ci());
        assert!(!SkipKind::Host.fails_in_ci());
    }

    #[test]
    fn the_name_names_this_test() {
        let n = test_name();
        assert!(n.ends_with("the_name_names_this_test"), "{n}");
        assert!(n.starts_with("carve_testkit::"), "{n}");
    }
}
