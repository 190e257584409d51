//! Concurrency: 20 containers created, started, inspected and deleted in parallel — each step a
//! separate runtime process — against one state root, with `list` running alongside; plus many
//! processes racing to create the same id. No state is lost or corrupted; nothing is left.

mod clients_support;
use clients_support::*;
use serde_json::Value;
use std::sync::{Arc, Barrier};

const N: usize = 20;

#[test]
fn twenty_containers_in_parallel_keep_their_state() {
    if !require_root() {
        return;
    }
    let _lock = host_lock();
    let b = Arc::new(Bundle::new("conc", &["sleep", "1000"]));
    let ids: Vec<String> = (0..N).map(|i| format!("{}-{i}", b.cgroup_parent)).collect();
    let bundles: Vec<_> = ids
        .iter()
        .map(|id| b.bundle_for(id, &["sleep", "1000"]))
        .collect();
    let started = Arc::new(Barrier::new(N + 1));
    let checked = Arc::new(Barrier::new(N + 1));
    let stop_listing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A lister racing with every create and delete: whatever it sees must parse.
    let lister = {
        let b = b.clone();
        let stop = stop_listing.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = ok(
                    b.cmd().args(["list", "--format", "json"]),
                    std::time::Duration::from_secs(60),
                );
                let v: Value = serde_json::from_str(&out)
                    .unwrap_or_else(|e| panic!("list --format json is not JSON ({e}): {out}"));
                for c in v.as_array().map(Vec::as_slice).unwrap_or_default() {
                    let st = c["status"].as_str().unwrap_or("");
                    assert!(
                        ["creating", "created", "running", "stopped", "paused"].contains(&st),
                        "bad status in {c}"
                    );
                }
                seen += 1;
            }
            seen
        })
    };
    let workers: Vec<_> = ids
        .iter()
        .cloned()
        .zip(bundles)
        .map(|(id, bundle)| {
            let (b, started, checked) = (b.clone(), started.clone(), checked.clone());
            std::thread::spawn(move || {
                let bs = bundle.to_str().unwrap();
                b.ok(&["create", "--bundle", bs, &id]);
                b.ok(&["start", &id]);
                let st: Value = serde_json::from_str(&b.ok(&["state", &id])).unwrap();
                started.wait();
                checked.wait();
                b.ok(&["delete", "--force", &id]);
                st
            })
        })
        .collect();
    started.wait();
    // All 20 are up at once: each is listed as running, with its own pid, bundle and cgroup.
    let listed: Value = serde_json::from_str(&b.ok(&["list", "--format", "json"])).unwrap();
    let mut pids = std::collections::HashSet::new();
    for id in &ids {
        let c = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == *id)
            .unwrap_or_else(|| panic!("{id} lost from list: {listed}"));
        assert_eq!(c["status"], "running", "{c}");
        let pid = c["pid"].as_i64().unwrap() as i32;
        assert!(pids.insert(pid), "pid {pid} listed twice");
        let cg = cgroup_of(pid, "pids").unwrap();
        assert_eq!(cg, b.cgroups_path(id), "pid {pid} of {id}");
    }
    checked.wait();
    let mut states = Vec::new();
    for w in workers {
        states.push(w.join().expect("a worker failed"));
    }
    stop_listing.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = lister.join().expect("the lister saw corrupt state");
    assert!(rounds > 0);
    for (st, id) in states.iter().zip(&ids) {
        assert_eq!(st["id"], *id);
        assert_eq!(st["status"], "running");
    }
    assert_eq!(b.state_entries(), Vec::<String>::new(), "state dirs left");
    assert_eq!(b.cgroups_left(), Vec::<String>::new(), "cgroups left");
    // Cgroup-scoped (every container process lives in one below the parent): an orphan check on
    // this process's children would also see the other test of this file under `cargo test`.
    assert_eq!(b.procs_left(), Vec::<i32>::new(), "processes left");
}

#[test]
fn racing_creates_of_one_id_make_exactly_one_container() {
    if !require_root() {
        return;
    }
    let _lock = host_lock();
    let b = Arc::new(Bundle::new("race", &["sleep", "1000"]));
    let id = format!("{}-same", b.cgroup_parent);
    b.write_config(&["sleep", "1000"], &id);
    let go = Arc::new(Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (b, go, id) = (b.clone(), go.clone(), id.clone());
            std::thread::spawn(move || {
                go.wait();
                run_limited(
                    b.cmd().args(["create", "--bundle"]).arg(&b.bundle).arg(&id),
                    std::time::Duration::from_secs(60),
                )
            })
        })
        .collect();
    let outs: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let winners = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        winners,
        1,
        "{winners} creates of one id succeeded: {:?}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
    );
    let st: Value = serde_json::from_str(&b.ok(&["state", &id])).unwrap();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(b.list(), vec![id.clone()]);
    b.ok(&["delete", "--force", &id]);
    assert_eq!(b.state_entries(), Vec::<String>::new());
    assert_eq!(b.cgroups_left(), Vec::<String>::new());
}
