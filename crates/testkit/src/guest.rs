//! QEMU guest tests: a script in scripts/ boots a guest, runs checks there and prints a verdict
//! on the guest's console, one line per check behind a marker ("CARVE-V2: ok NAME",
//! "CARVE-V2: FAIL NAME", "CARVE-V2: PASS"). The test on the host runs the script and reads
//! those lines.

use std::path::Path;
use std::process::Command;

/// One run of a guest script: its console (stdout) and how it ended.
pub struct GuestRun {
    /// The guest's console as the script printed it.
    pub console: String,
    /// Whether the script exited 0.
    pub success: bool,
    marker: String,
}

/// Runs the workspace's `scripts/SCRIPT` with bash and prints its console and stderr (the test
/// harness shows them when the test fails). `marker` starts the guest's verdict lines
/// ("CARVE-V2").
pub fn run_guest_script(script: &str, marker: &str) -> GuestRun {
    run_guest_script_with(script, &[], marker)
}

/// [`run_guest_script`] with arguments for the script (a mode such as `--dedicated`).
pub fn run_guest_script_with(script: &str, args: &[&str], marker: &str) -> GuestRun {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts")
        .join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{console}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    GuestRun {
        console,
        success: out.status.success(),
        marker: marker.to_string(),
    }
}

impl GuestRun {
    /// What follows "MARKER: ok " on each passed check's line.
    pub fn oks(&self) -> Vec<&str> {
        self.after(": ok ")
    }

    /// What follows "MARKER: FAIL " on each failed check's line.
    pub fn failures(&self) -> Vec<&str> {
        self.after(": FAIL ")
    }

    /// Whether a line starts with "MARKER: " + `text`.
    pub fn has_line_starting(&self, text: &str) -> bool {
        !self.after(&format!(": {text}")).is_empty()
    }

    /// Asserts the guest printed "MARKER: PASS" and the script exited 0; `what` says what failed.
    pub fn assert_passed(&self, what: &str) {
        let pass = format!("{}: PASS", self.marker);
        assert!(
            self.console.lines().any(|l| l == pass) && self.success,
            "{what} (console above)"
        );
    }

    /// Asserts no check failed, the guest passed ([`GuestRun::assert_passed`] with `what`) and at
    /// least `checks` checks passed: a check that silently stops running fails the test.
    pub fn assert_checks_passed(&self, what: &str, checks: usize) {
        let failed = self.failures();
        assert!(failed.is_empty(), "checks failed in the guest: {failed:#?}");
        self.assert_passed(what);
        let ok = self.oks().len();
        assert!(
            ok >= checks,
            "only {ok} of {checks} checks passed in the guest"
        );
    }

    fn after(&self, tag: &str) -> Vec<&str> {
        let start = format!("{}{tag}", self.marker);
        self.console
            .lines()
            .filter_map(|l| l.strip_prefix(start.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(console: &str, success: bool) -> GuestRun {
        GuestRun {
            console: console.to_string(),
            success,
            marker: "CARVE-X".into(),
        }
    }

    #[test]
    fn verdict_lines_are_read_behind_the_marker_only() {
        let r = run(
            "\x1b[2Jboot\nCARVE-X: ok one\nCARVE-X: FAIL two\nCARVE-Y: ok other\n\
             CARVE-X: ok three\nCARVE-X: SKIP part\nCARVE-X: PASS\n",
            true,
        );
        assert_eq!(r.oks(), ["one", "three"]);
        assert_eq!(r.failures(), ["two"]);
        assert!(r.has_line_starting("SKIP"));
        assert!(!r.has_line_starting("skip"));
        r.assert_passed("passes");
        let r = run("CARVE-X: ok one\nCARVE-X: ok two\nCARVE-X: PASS\n", true);
        r.assert_checks_passed("passes", 2);
    }

    #[test]
    #[should_panic(expected = "only 2 of 3 checks passed")]
    fn fewer_checks_than_expected_fail() {
        run("CARVE-X: ok one\nCARVE-X: ok two\nCARVE-X: PASS\n", true)
            .assert_checks_passed("passes", 3);
    }

    #[test]
    #[should_panic(expected = "checks failed in the guest")]
    fn a_failed_check_fails_even_with_a_pass_line() {
        run("CARVE-X: ok one\nCARVE-X: FAIL two\nCARVE-X: PASS\n", true)
            .assert_checks_passed("passes", 1);
    }

    #[test]
    #[should_panic(expected = "no pass (console above)")]
    fn a_pass_line_without_exit_0_fails() {
        run("CARVE-X: PASS\n", false).assert_passed("no pass");
    }

    #[test]
    #[should_panic(expected = "no pass line")]
    fn exit_0_without_a_pass_line_fails() {
        run("CARVE-X: PASSED\nCARVE-Y: PASS\n", true).assert_passed("no pass line");
    }
}
