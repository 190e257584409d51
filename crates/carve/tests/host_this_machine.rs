//! `carve host` on the project's machine (design.md "Machine facts"): 2 CPUs, hybrid cgroups with
//! hugetlb on v2, /dev/kvm backed by kvm_pvm so KVM is unusable and VMs fall back to TCG, a
//! kernel without NO_HZ_FULL at HZ=250.

mod common;

use common::run as carve;

#[test]
fn host_json_reports_this_machine() {
    let (code, out, err) = carve(&["host", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");

    let online: Vec<_> = v["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["online"] == true)
        .collect();
    assert_eq!(online.len(), 2, "2 CPUs online");

    assert_eq!(v["cgroups"]["layout"], "hybrid");
    let hier = v["cgroups"]["hierarchies"].as_array().unwrap();
    let v2: Vec<_> = hier.iter().filter(|h| h["version"] == 2).collect();
    assert_eq!(v2.len(), 1, "one cgroup2 mount");
    assert_eq!(v2[0]["controllers"], serde_json::json!(["hugetlb"]));
    for ctrl in ["cpuset", "cpu", "memory", "pids"] {
        assert!(
            hier.iter().any(|h| h["version"] == 1
                && h["controllers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c == ctrl)),
            "{ctrl} on v1"
        );
    }

    assert_eq!(v["virt"]["kvm_device"], true);
    assert_eq!(v["virt"]["kvm_module"], "kvm_pvm");
    assert_eq!(v["readiness"]["kvm_usable"], false);
    assert_eq!(v["readiness"]["vm_accel"], "tcg");

    assert_eq!(v["kernel"]["no_hz_full"], "no");
    assert_eq!(v["kernel"]["hz"], 250);
    let advice: Vec<&str> = v["readiness"]["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    assert!(
        advice
            .iter()
            .any(|a| a.contains("NO_HZ_FULL") && a.contains("250 interruptions/s")),
        "{advice:#?}"
    );
    assert!(
        advice.iter().any(|a| a.contains("TCG fallback")),
        "{advice:#?}"
    );
}

#[test]
fn host_table_names_the_same_facts() {
    let (code, out, err) = carve(&["host"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CPUs: 2 online"), "{out}");
    assert!(out.contains("cgroups: hybrid"), "{out}");
    assert!(out.contains("v2 /sys/fs/cgroup/unified"), "{out}");
    assert!(out.contains("TCG fallback"), "{out}");
    assert!(out.contains("NO_HZ_FULL no"), "{out}");
    assert!(out.contains("Readiness:"), "{out}");
}

#[test]
fn host_json_round_trips_as_a_fixture() {
    let (code, out, err) = carve(&["host", "--json"]);
    assert_eq!(code, 0, "{err}");
    let dir = std::env::temp_dir().join(format!("carve-host-fixture-{}", std::process::id()));
    std::fs::write(&dir, &out).unwrap();
    let (code2, out2, err2) = carve(&["host", "--json", "--host-fixture", dir.to_str().unwrap()]);
    let _ = std::fs::remove_file(&dir);
    assert_eq!(code2, 0, "{err2}");
    assert_eq!(out, out2);
}

#[test]
fn a_missing_fixture_is_an_error_naming_it() {
    let (code, _, err) = carve(&["host", "--host-fixture", "/nonexistent/carve-host.json"]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent/carve-host.json"), "{err}");
}
