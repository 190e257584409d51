//! `carve noise --json`: the structure scripts rely on (no timing assertions on the figures).

use carve_testkit::{HostLock, Snapshot};
use serde_json::Value;
use std::process::Command;

fn check_run(r: &Value) {
    for k in [
        "stolen_percent",
        "interruptions_per_sec",
        "max_gap_us",
        "seconds",
        "tsc_hz",
    ] {
        assert!(r[k].is_number(), "{k} missing in {r}");
    }
    for k in ["p50", "p90", "p99", "p99_9"] {
        assert!(
            r["percentiles"][k].is_number(),
            "percentiles.{k} missing in {r}"
        );
    }
    assert!(r["histogram"].is_array());
    let s = r["stolen_percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&s));
}

#[test]
fn host_tuning_noise_compare_json_has_untuned_dedicated_and_ratio() {
    if !carve_testkit::require_root() {
        return;
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let online = carve_core::CpuSet::parse_list(&online).unwrap();
    if online.len() < 2 {
        return;
    }
    let cpu = online.iter().last().unwrap().to_string();
    let _lock = HostLock::exclusive();
    let before = Snapshot::take();
    let svg = std::env::temp_dir().join(format!("{}.svg", carve_testkit::unique_name("noise")));
    let out = Command::new(env!("CARGO_BIN_EXE_carve"))
        .args([
            "noise",
            "--cpus",
            &cpu,
            "--seconds",
            "1",
            "--compare",
            "--json",
            "--svg",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let core = &v["cores"][0];
    assert_eq!(core["cpu"].as_u64().unwrap().to_string(), cpu);
    check_run(&core["untuned"]);
    check_run(&core["dedicated"]);
    assert_eq!(core["dedicated"]["sched"], "fifo:99");
    for k in ["stolen_percent", "interruptions_per_sec", "max_gap_us"] {
        assert!(core["ratio"][k].is_number(), "ratio.{k} missing");
    }
    // tracefs is mountable here, so the runs are attributed.
    assert!(
        core["dedicated"]["attribution"]["events"].is_object(),
        "{stderr}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.trim_end().ends_with("</svg>"));
    std::fs::remove_file(&svg).unwrap();
    let d: Vec<String> = before
        .diff(&Snapshot::take())
        .into_iter()
        .filter(|l| {
            l.starts_with('/')
                || ["carve-ded-", "carve-hk-", "dedicated-", "noise-", "tracefs"]
                    .iter()
                    .any(|k| l.contains(k))
        })
        .collect();
    assert!(d.is_empty(), "host changed:\n  {}", d.join("\n  "));
}

#[test]
fn noise_untuned_json_is_per_core() {
    // Untuned probing changes no tuning; the tracefs instance it makes is its own and journaled.
    let out = Command::new(env!("CARGO_BIN_EXE_carve"))
        .args([
            "noise",
            "--cpus",
            "0",
            "--seconds",
            "0.3",
            "--json",
            "--no-trace",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_run(&v["cores"][0]["untuned"]);
    assert!(v["cores"][0].get("dedicated").is_none());
    assert!(v["cores"][0].get("ratio").is_none());
}
