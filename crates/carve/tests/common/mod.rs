//! Helpers shared by the tests of the `carve` binary: running it, the plan's host footprint,
//! and headless Chromium for the pages it serves or writes. Each test file uses some of them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The `carve` binary under test.
pub const CARVE: &str = env!("CARGO_BIN_EXE_carve");

/// Runs `carve ARGS` with stdin closed.
pub fn carve(args: &[&str]) -> Output {
    Command::new(CARVE)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run carve")
}

/// Runs `carve ARGS` with containers under the workspace's carve-oci (see
/// [`carve_testkit::oci_runtime`]), stdin closed.
pub fn carve_oci(args: &[&str]) -> Output {
    Command::new(CARVE)
        .args(args)
        .env("CARVE_OCI_RUNTIME", carve_testkit::oci_runtime())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run carve")
}

/// [`carve_oci`] that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = carve_oci(args);
    assert!(
        out.status.success(),
        "carve {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// [`carve`] as (exit code, -1 on a signal; stdout; stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = carve(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A plan's `[[partition]]` table for container `name` on core 0 with 64 MiB and the busybox
/// rootfs in folder "rootfs" beside the plan; `more` (TOML lines) ends the table.
pub fn container_toml(name: &str, more: &str) -> String {
    format!(
        "\n[[partition]]\nname = \"{name}\"\nkind = \"container\"\ncpus = [0]\nmemory = \"64MiB\"\nrootfs = \"rootfs\"\n{more}\n"
    )
}

/// Checks that plan `plan` left nothing on the host: no state folder, no journal, no cgroup.
pub fn assert_plan_gone(plan: &str) {
    let state = Path::new("/run/carve").join(plan);
    assert!(!state.exists(), "{} left", state.display());
    let j = Path::new("/run/carve/journal").join(format!("plan-{plan}.jsonl"));
    assert!(!j.exists(), "{} left", j.display());
    for h in ["cpuset", "memory", "pids"] {
        let cg = Path::new("/sys/fs/cgroup")
            .join(h)
            .join(format!("carve-{plan}"));
        assert!(!cg.exists(), "{} left", cg.display());
    }
}

/// Headless Chromium (installed by scripts/setup.sh) with a throwaway `profile` and nothing
/// that reaches the network on its own, running `args`.
pub fn chromium(args: &[&str], profile: &Path) -> Output {
    Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium is installed by scripts/setup.sh")
}

/// What a PNG screenshot shows, to tell a page from a blank one.
pub struct Pixels {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Distinct RGB colours.
    pub colours: usize,
    /// Pixels with a channel below 200 (not white or near it).
    pub non_white: usize,
    /// All pixels.
    pub total: usize,
}

/// Decodes the PNG at `png` and counts its colours.
pub fn pixels(png: &Path) -> Pixels {
    let dec = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    let mut non_white = 0usize;
    for p in buf[..info.buffer_size()].chunks(step) {
        let rgb = &p[..3.min(p.len())];
        colours.insert(rgb.to_vec());
        if rgb.iter().any(|&c| c < 200) {
            non_white += 1;
        }
    }
    Pixels {
        width: info.width,
        height: info.height,
        colours: colours.len(),
        non_white,
        total: info.buffer_size() / step,
    }
}
