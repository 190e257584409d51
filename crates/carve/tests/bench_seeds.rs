//! `carve bench overhead|interference|packet|report` and `carve noise --compare --load`: each
//! runs briefly with --quick and its JSON has every row. No figure is asserted: benchmarks are
//! commands; these tests check that the commands work and clean up.

mod common;

use carve_testkit::{HostLock, Snapshot};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROWS: [&str; 14] = [
    "getppid",
    "read 1 B /dev/zero",
    "write 1 B /dev/null",
    "open+close",
    "stat",
    "fork+exit",
    "fork+execve",
    "ctx switch (pipe ping-pong)",
    "pipe bandwidth",
    "AF_UNIX round trip",
    "mmap+munmap 1 MiB",
    "page fault (first touch)",
    "memcpy bandwidth",
    "compile-like task",
];

fn guest() -> PathBuf {
    let dir = carve_testkit::guest_dir();
    carve_vm::assets::prepare_guest(&dir).expect("guest assets");
    dir
}

/// One bench run as root: the host lock it needs, a work folder, and what the host looked like
/// before.
struct Bench {
    _lock: HostLock,
    before: Snapshot,
    w: tempfile::TempDir,
}

impl Bench {
    /// `None` when not root; else holds `lock` (HostLock::shared or ::exclusive) until dropped.
    fn start(lock: fn() -> HostLock) -> Option<Bench> {
        if !carve_testkit::is_root() {
            return None;
        }
        let _lock = lock();
        Some(Bench {
            _lock,
            before: Snapshot::take(),
            w: tempfile::tempdir().unwrap(),
        })
    }

    /// Runs `carve ARGS --json` in the work folder (`{work}` in `args` names it; words split on
    /// spaces) and returns its JSON.
    fn carve(&self, args: &str) -> Value {
        let work = self.w.path().to_str().unwrap();
        let args: Vec<String> = args.split(' ').map(|a| a.replace("{work}", work)).collect();
        let out = Command::new(common::CARVE)
            .args(&args)
            .arg("--json")
            .env("CARVE_BENCH_GUEST", guest())
            .current_dir(self.w.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "carve {args:?}: {stderr}");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Checks the bench left nothing on the host (cgroups, mounts, netns, journals) that names it.
    fn assert_host_unchanged(&self) {
        let d: Vec<String> = self
            .before
            .diff(&Snapshot::take())
            .into_iter()
            .filter(|l| l.contains("carve-bench") || l.contains("cbload") || l.starts_with('/'))
            .collect();
        assert!(d.is_empty(), "host changed:\n  {}", d.join("\n  "));
    }
}

fn rows_of(v: &Value) -> Vec<String> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bench_overhead_quick_native_and_container_rows() {
    let Some(b) = Bench::start(HostLock::shared) else {
        return;
    };
    let v = b.carve("bench overhead --quick --no-dedicated --no-vm --work {work}");
    assert_eq!(rows_of(&v), ROWS);
    for r in v["rows"].as_array().unwrap() {
        assert!(
            r["cells"]["native"]["median"].as_f64().unwrap() > 0.0,
            "{r}"
        );
        assert_eq!(r["cells"]["native"]["ratio"].as_f64().unwrap(), 1.0);
        assert!(
            r["cells"]["container"]["ratio"].as_f64().unwrap() > 0.0,
            "{r}"
        );
    }
    assert_eq!(v["targets"].as_array().unwrap().len(), 4);
    let seeds: Vec<&str> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["seed"]["column"].as_str())
        .collect();
    assert_eq!(seeds, ["syscall", "fork", "ctx", "pipe", "tcc"]);
}

#[test]
fn host_tuning_bench_overhead_quick_dedicated_and_vm_rows() {
    let Some(b) = Bench::start(HostLock::exclusive) else {
        return;
    };
    let v = b.carve("bench overhead --quick --no-container --work {work}");
    let tiers: Vec<(&str, bool)> = v["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tier"].as_str().unwrap(),
                t["measured"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tiers,
        [("native", true), ("dedicated", true), ("vm", true)],
        "{v}"
    );
    let vm = v["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tier"] == "vm")
        .unwrap();
    assert!(vm["label"].as_str().unwrap().starts_with("VM ("), "{vm}");
    for r in v["rows"].as_array().unwrap() {
        assert!(
            r["cells"]["dedicated"]["ratio"].as_f64().unwrap() > 0.0,
            "{r}"
        );
        assert!(r["cells"]["vm"]["ratio"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(rows_of(&v), ROWS);
}

#[test]
fn host_tuning_bench_interference_quick_has_every_scenario_and_period() {
    let Some(b) = Bench::start(HostLock::exclusive) else {
        return;
    };
    let v = b.carve("bench interference --quick --periods-us 1000,10000 --work {work}");
    let load: Vec<&str> = v["load"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(load.len(), 3, "stress, flood and vm partitions: {v}");
    assert!(
        load[0].starts_with("cbs") && load[2].starts_with("cbv"),
        "{v}"
    );
    let mut got: Vec<(String, u64)> = v["summaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["scenario"].as_str().unwrap().to_string(),
                s["period_us"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want = Vec::new();
    for s in ["dedicated", "floor", "quiet", "untuned"] {
        for p in [1000, 10000] {
            want.push((s.to_string(), p));
        }
    }
    assert_eq!(got, want);
    for s in v["summaries"].as_array().unwrap() {
        for k in [
            "avg_dev_pct",
            "p99_dev_pct",
            "max_dev_pct",
            "throughput",
            "steal_pct",
        ] {
            assert!(s[k].is_number(), "{k} in {s}");
        }
    }
    assert_eq!(v["verdicts"].as_array().unwrap().len(), 2);
    assert!(v["floor"]["stolen_pct"].is_number(), "{}", v["floor"]);
    assert!(v["floor"]["histogram"]
        .as_array()
        .is_some_and(|h| !h.is_empty()));
    b.assert_host_unchanged();
}

#[test]
fn host_tuning_bench_packet_quick_has_both_cores_and_the_seed_lines() {
    let Some(b) = Bench::start(HostLock::exclusive) else {
        return;
    };
    let v = b.carve("bench packet --quick --packets 50000");
    let lines = v["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{v}");
    for l in lines {
        for k in [
            "share",
            "cycles_per_packet",
            "overhead_cycles",
            "predicted_pps",
            "measured_pps",
        ] {
            assert!(l[k].as_f64().unwrap() >= 0.0, "{k} in {l}");
        }
        assert!(
            l["predicted_pps"].as_f64().unwrap() > 0.0 && l["measured_pps"].as_f64().unwrap() > 0.0
        );
    }
    let seed: Vec<f64> = v["seed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[1].as_f64().unwrap().floor())
        .collect();
    assert_eq!(seed, [9751.0, 9850.0, 15356.0]);
    assert!(v["accel"]["predicted_pps"].as_f64().unwrap() > 0.0);
    assert_eq!(v["accel"]["af_alg"], false, "this host has no AF_ALG");
    assert!(std::fs::read_dir("/dev/shm").unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("carve-bench-ring")));
}

#[test]
fn host_tuning_noise_compare_load_measures_both_under_the_load_plan() {
    let Some(b) = Bench::start(HostLock::exclusive) else {
        return;
    };
    let v = b.carve("noise --cpus 1 --seconds 0.5 --compare --load --no-trace --load-work {work}");
    let core = &v["cores"][0];
    assert!(core["untuned"]["stolen_percent"].is_number(), "{v}");
    assert!(core["dedicated"]["stolen_percent"].is_number(), "{v}");
    assert!(core["ratio"]["stolen_percent"].is_number(), "{v}");
    b.assert_host_unchanged();
}

#[test]
fn noise_load_without_compare_is_refused() {
    let out = common::carve(&["noise", "--cpus", "1", "--load"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--load needs --compare"));
}

/// Renders the page in headless Chromium into `png`.
fn screenshot(html: &Path, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = common::chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1024,2400",
            &format!("file://{}", html.display()),
        ],
        profile.path(),
    );
    assert!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_report_light_renders_plots_in_headless_chromium() {
    let Some(b) = Bench::start(HostLock::shared) else {
        return;
    };
    let w = &b.w;
    let out_dir = w.path().join("report");
    let o = Command::new(common::CARVE)
        .args(["bench", "report", "--quick", "--light", "--out"])
        .arg(&out_dir)
        .arg("--work")
        .arg(w.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "external assets"
    );
    // Overhead bars, interference lines (2 scenarios × 3 periods), packet bars.
    assert!(
        html.matches("<svg").count() >= 5,
        "{}",
        html.matches("<svg").count()
    );
    assert!(html.matches("class=\"bar\"").count() >= 14);
    assert!(html.matches("class=\"series\"").count() >= 6);
    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(rows_of(&j["overhead"]), ROWS);
    assert!(j["packet"]["lines"]
        .as_array()
        .is_some_and(|l| !l.is_empty()));
    let png = w.path().join("shot.png");
    screenshot(&out_dir.join("index.html"), &png);
    let px = common::pixels(&png);
    // The plots' five colours, text and grid: far from a blank page.
    assert!(px.colours > 20, "{} colours", px.colours);
    assert!(
        px.non_white > px.total / 100,
        "{} non-white pixels",
        px.non_white
    );
}
