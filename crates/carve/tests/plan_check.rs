//! `carve plan check` and `carve plan schema` as a user runs them: every example is accepted on
//! every fixture host (host-independent through the hidden --host-fixture), bad plans are
//! rejected with located messages and exit 1.

use std::path::{Path, PathBuf};
mod common;

use common::run as carve;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("crates/core/fixtures/hosts").join(name)
}

const FIXTURES: [&str; 4] = [
    "this-2core-hybrid.json",
    "epyc-2socket-64core-smt.json",
    "isolated-nohz-full.json",
    "pure-cgroup-v2.json",
];

/// `carve plan check [FLAGS] PLAN --host-fixture FIXTURE` (a file of crates/core/fixtures/hosts).
fn plan_check(flags: &[&str], plan: &Path, fixture_name: &str) -> (i32, String, String) {
    let mut args = vec!["plan", "check"];
    args.extend(flags);
    let plan = plan.to_str().unwrap();
    let fx = fixture(fixture_name);
    args.extend([plan, "--host-fixture", fx.to_str().unwrap()]);
    carve(&args)
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn plan_check_accepts_every_example_on_every_fixture_host() {
    let examples = examples();
    assert!(examples.len() >= 4, "{examples:?}");
    assert!(examples.iter().any(|p| p.ends_with("gateway.toml")));
    for ex in &examples {
        for fx in FIXTURES {
            let (code, out, err) = plan_check(&[], ex, fx);
            assert_eq!(code, 0, "{} on {fx}:\n{err}", ex.display());
            assert!(out.contains(": OK,"), "{out}");
            assert!(out.contains("cpu   core  node  use"), "{out}");
        }
    }
}

#[test]
fn plan_check_prints_the_core_table_for_the_gateway() {
    let gw = root().join("examples/gateway.toml");
    let (code, out, err) = plan_check(&[], &gw, "this-2core-hybrid.json");
    assert_eq!(code, 0, "{err}");
    let row = |cpu: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{cpu} ")))
            .unwrap_or_else(|| panic!("no row for CPU {cpu}:\n{out}"))
            .to_string()
    };
    assert!(
        row("0").contains("housekeeping, control (container), legacy (vm)"),
        "{out}"
    );
    assert!(row("1").contains("fastpath (dedicated)"), "{out}");
    assert!(out.contains("TCG fallback"), "{out}");
}

#[test]
fn plan_check_json_is_the_allocation() {
    let gw = root().join("examples/gateway.toml");
    let (code, out, err) = plan_check(&["--json"], &gw, "epyc-2socket-64core-smt.json");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["housekeeping"], "0");
    assert_eq!(v["partitions"][0]["name"], "fastpath");
    assert_eq!(v["partitions"][0]["cpus"], "1");
    assert_eq!(v["partitions"][2]["network"]["address"], "10.77.0.3");
}

#[test]
fn plan_check_rejects_a_bad_plan_with_every_problem_located() {
    let dir = std::env::temp_dir().join(format!("carve-plan-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = dir.join("bad.toml");
    std::fs::write(
        &plan,
        r#"[host]
housekeeping = [0]

[[partition]]
name = "fastpath"
kind = "dedicated"
cpus = [1, 7]
memory = "64MiB"
command = ["spin"]

[[partition]]
name = "web"
kind = "container"
cpus = [1]
memory = "64MiB"
rootfs = "r"
command = ["x"]
"#,
    )
    .unwrap();
    let (code, out, err) = plan_check(&[], &plan, "this-2core-hybrid.json");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1, "{out}{err}");
    let p = plan.display().to_string();
    assert!(
        err.contains(&format!(
            "{p}:7:12: partition \"fastpath\", field `cpus[1]`: CPU 7 does not exist"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{p}:14:9: partition \"web\", field `cpus[0]`: CPU 1 is dedicated"
        )),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");
}

#[test]
fn an_unreadable_plan_exits_2() {
    let (code, _, err) = carve(&["plan", "check", "/nonexistent/carve-plan.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/carve-plan.toml"), "{err}");
}

#[test]
fn plan_schema_is_json_schema_of_the_format() {
    let (code, out, err) = carve(&["plan", "schema"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["title"], "carve plan");
    assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"));
    assert_eq!(v["additionalProperties"], false);
    let part = &v["$defs"]["Partition"];
    assert_eq!(part["additionalProperties"], false);
    // The command prints the library's schema unchanged, whose every key the tests of
    // carve_core::plan check (the_schema_describes_every_partition_key).
    let lib = serde_json::to_value(carve_core::plan::Plan::json_schema()).unwrap();
    assert_eq!(v, lib);
}
