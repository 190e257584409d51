//! Crashes at named points: carve-oci SIGKILLs itself at each of its fault points
//! (`CARVE_OCI_FAULT`, listed in `carve_container::fault::POINTS`) inside create, start and
//! delete --force; afterwards `delete --force ID`, or `list` + `delete --force`, must leave no
//! state, cgroup, mount, process or orphan. (A file of its own: the orphan check makes this
//! process a child subreaper, which must not see another test's children.)

mod clients_support;
use clients_support::*;
use std::time::Duration;

/// The same recovery after a SIGKILL at each of carve-oci's named fault points
/// (`CARVE_OCI_FAULT`, `carve_container::fault::POINTS`): deterministic, one trial per point.
/// Only carve-oci has them; another runtime under test is told so and the test returns.
#[test]
fn kill_at_every_fault_point_then_delete_force_cleans_up() {
    if !require_root() {
        return;
    }
    if !runtime_is_carve() {
        eprintln!("CARVE_OCI_FAULT fault points exist only in carve-oci; nothing to do here");
        return;
    }
    let _lock = host_lock();
    become_subreaper();
    let b = Bundle::new("fault", &["sleep", "1000"]);
    let bundle = b.bundle.to_str().unwrap().to_string();
    assert!(!carve_container::fault::POINTS.is_empty());
    for (n, point) in carve_container::fault::POINTS.iter().enumerate() {
        let id = format!("{}-{n}", b.cgroup_parent);
        b.write_config(&["sleep", "1000"], &id);
        let phase = point.split(':').next().unwrap();
        if phase != "create" {
            b.ok(&["create", "--bundle", &bundle, &id]);
        }
        if phase == "delete" {
            b.ok(&["start", &id]);
        }
        let args = match phase {
            "create" => vec!["create", "--bundle", &bundle, &id],
            "start" => vec!["start", &id],
            "delete" => vec!["delete", "--force", &id],
            other => panic!("fault point {point} of an unknown phase {other}"),
        };
        let out = run_limited(
            b.cmd().env("CARVE_OCI_FAULT", point).args(&args),
            Duration::from_secs(30),
        );
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(libc::SIGKILL),
            "{point}: the runtime did not die at its fault point ({})",
            describe(&out)
        );
        b.recover(&id);
        b.assert_clean(point);
    }
}
