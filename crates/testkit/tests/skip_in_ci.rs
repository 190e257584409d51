//! A skip CI must not have fails the test in CI and is logged for the suite's summary; a host skip
//! passes. The checks run this test binary again as a child with `CI=true`.

use std::process::Command;

const CHILD: &str = "CARVE_SKIP_TEST_CHILD";

/// The child: skips for the reason named in the environment. Run directly, it does nothing.
#[test]
fn child_skips_as_told() {
    match std::env::var(CHILD).as_deref() {
        Ok("tool") => carve_testkit::skip(
            carve_testkit::SkipKind::ToolMissing,
            "frobnicate is missing",
        ),
        Ok("host") => carve_testkit::skip(carve_testkit::SkipKind::Host, "needs two CPUs"),
        _ => {}
    }
}

fn run_child(kind: &str, log: &std::path::Path) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_skips_as_told",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, kind)
        .env("CI", "true")
        .env("CARVE_SKIP_LOG", log)
        .output()
        .unwrap()
}

#[test]
fn in_ci_a_tool_missing_skip_fails_and_a_host_skip_passes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skips");
    let out = run_child("tool", &log);
    let err =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a tool-missing skip passed in CI: {err}"
    );
    assert!(
        err.contains("skipped in CI (tool-missing): frobnicate is missing"),
        "{err}"
    );
    let out = run_child("host", &log);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("tool-missing\tskip_in_ci::child_skips_as_told\t"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("host\tskip_in_ci::child_skips_as_told\tneeds two CPUs"),
        "{text}"
    );

    // The suite's summary fails CI on the first line and lists both.
    let sum = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/skip-summary.sh"
        ))
        .arg(&log)
        .env("CI", "true")
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&sum.stdout);
    assert!(!sum.status.success(), "{so}");
    assert!(
        so.contains("skipped tests: 2") && so.contains("frobnicate is missing"),
        "{so}"
    );
    let sum = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/skip-summary.sh"
        ))
        .arg(&log)
        .env_remove("CI")
        .output()
        .unwrap();
    assert!(sum.status.success(), "outside CI the summary only reports");
}
