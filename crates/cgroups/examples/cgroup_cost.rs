//! What a container's cgroup costs on the create path: detect + create + apply + add_task, and
//! remove, on the real hierarchies (as root). Prints medians over N rounds.
//!
//! `cargo run --release -p carve-cgroups --example cgroup_cost [N]`

use carve_cgroups::Manager;
use oci_spec::runtime::LinuxResources;
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let res: LinuxResources = serde_json::from_str(
        r#"{"cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "memory": {"limit": 268435456}, "pids": {"limit": 256},
            "devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#,
    )
    .expect("resources");
    let (mut new, mut create, mut apply, mut add, mut remove) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let path = format!("/carve-bench-{}-{i}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .expect("sleep");
        let t = Instant::now();
        let mut m = Manager::new(Path::new("/sys/fs/cgroup"), &path).expect("new");
        new.push(t.elapsed());
        let t = Instant::now();
        m.create().expect("create");
        create.push(t.elapsed());
        let t = Instant::now();
        m.apply(&res).expect("apply");
        apply.push(t.elapsed());
        let t = Instant::now();
        m.add_task(child.id() as i32).expect("add_task");
        add.push(t.elapsed());
        child.kill().expect("kill");
        child.wait().expect("wait");
        let t = Instant::now();
        m.remove().expect("remove");
        remove.push(t.elapsed());
    }
    println!("mode {:?}, {n} rounds, medians:", {
        let m = Manager::new(Path::new("/sys/fs/cgroup"), "/x").expect("new");
        m.mode()
    });
    println!("  new (layout detection) {:>8.1?}", median(new));
    println!("  create                 {:>8.1?}", median(create));
    println!(
        "  apply (cpu, memory, pids, devices) {:>8.1?}",
        median(apply)
    );
    println!("  add_task               {:>8.1?}", median(add));
    println!("  remove                 {:>8.1?}", median(remove));
}
