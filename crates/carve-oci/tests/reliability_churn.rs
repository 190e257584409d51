//! Churn: many create/start/delete --force cycles of a running container leave nothing behind —
//! no state directory, cgroup, mount or process — and neither the container's process nor this
//! driver gains file descriptors from cycle to cycle. (`carve bench runtime --churn 1000` runs the
//! long version and also watches free memory, which a shared test machine is too noisy to assert.)

mod clients_support;
use clients_support::*;

const CYCLES: usize = 50;

#[test]
fn churn_create_start_delete_leaks_nothing() {
    if !require_root() {
        return;
    }
    let _lock = host_lock();
    become_subreaper();
    let b = Bundle::new("churn", &["sleep", "1000"]);
    let bundle = b.bundle.to_str().unwrap().to_string();
    let self_fds = fd_count(std::process::id() as i32).unwrap();
    let mut container_fds = None;
    for i in 0..CYCLES {
        let id = format!("{}-{i}", b.cgroup_parent);
        b.write_config(&["sleep", "1000"], &id);
        b.ok(&["create", "--bundle", &bundle, &id]);
        b.ok(&["start", &id]);
        let st: serde_json::Value = serde_json::from_str(&b.ok(&["state", &id])).unwrap();
        assert_eq!(st["status"], "running", "cycle {i}: {st}");
        let pid = st["pid"].as_i64().unwrap() as i32;
        // What the runtime leaves open in the container's process must not grow with churn.
        let n = fd_count(pid).unwrap();
        match container_fds {
            None => container_fds = Some(n),
            Some(first) => assert_eq!(n, first, "cycle {i}: container process fds"),
        }
        b.ok(&["delete", "--force", &id]);
        reap_zombies();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "cycle {i}: pid {pid} outlived delete --force"
        );
    }
    assert_eq!(b.list(), Vec::<String>::new(), "containers still listed");
    b.assert_clean("after the churn");
    assert_eq!(
        fd_count(std::process::id() as i32).unwrap(),
        self_fds,
        "the driver gained fds (a runtime fd leaked into its parent?)"
    );
}
