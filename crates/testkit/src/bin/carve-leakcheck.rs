//! `carve-leakcheck snapshot FILE` / `carve-leakcheck compare FILE`: the suite-level leak check run
//! around the whole test suite by scripts/test.sh. `carve-leakcheck reap-stale [--dry-run]`, run
//! before the snapshot, cleans what an earlier, killed run of the suite left behind.

use carve_testkit::reaper::{self, Item};
use carve_testkit::Snapshot;
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: carve-leakcheck snapshot|compare FILE | reap-stale [--dry-run]";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("reap-stale") {
        let dry = args.get(2).map(String::as_str) == Some("--dry-run");
        reap_stale(dry);
        return;
    }
    let (Some(cmd), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    match cmd.as_str() {
        "snapshot" => {
            let s = serde_json::to_string_pretty(&Snapshot::take()).expect("serialize");
            std::fs::write(file, s).expect("write snapshot");
        }
        "compare" => {
            let before: Snapshot =
                serde_json::from_str(&std::fs::read_to_string(file).expect("read snapshot"))
                    .expect("parse snapshot");
            let d = before.diff(&Snapshot::take());
            if d.is_empty() {
                println!("leakcheck: host unchanged by the suite");
            } else {
                eprintln!("leakcheck: the suite left the host changed:");
                for l in &d {
                    eprintln!("  {l}");
                }
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

/// Test objects are named `carve-t-...` (`carve_testkit::unique_name`).
const TEST_MARK: &str = "carve-t-";

/// Cleans what killed test runs left: registries whose test and watcher are both gone; QEMU
/// processes of test VMs; orphaned journals; test cgroups on every hierarchy; test VM and
/// container state. Meant for the start of a suite, when no test runs.
fn reap_stale(dry: bool) {
    let mut did = Vec::new();
    for reg in list(Path::new(reaper::REGISTRY_DIR)) {
        let stem = reg.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let Some((pid, start)) = stem
            .split_once('-')
            .and_then(|(p, s)| Some((p.parse().ok()?, s.parse().ok()?)))
        else {
            continue;
        };
        if reaper::alive(pid, start) {
            continue;
        }
        did.push(format!("undo registry {}", reg.display()));
        if !dry {
            reaper::undo_registry(&reg);
        }
    }
    for (pid, cmd) in processes() {
        // Test VMs (`-name guest=carve-t-...`) and test supervisors.
        if cmd.contains(&format!("guest={TEST_MARK}")) {
            did.push(format!(
                "kill {pid}: {}",
                cmd.chars().take(80).collect::<String>()
            ));
            if !dry {
                reaper::undo(&Item::Process {
                    pid,
                    start_time: reaper::start_time(pid),
                });
            }
        }
    }
    for root in ["/run/carve/journal"] {
        for j in list(Path::new(root)) {
            if j.to_string_lossy().contains(TEST_MARK) {
                did.push(format!("restore orphaned journal {}", j.display()));
            }
        }
        if !dry {
            carve_journal::restore_orphans(root, Some(reaper::ip_link_undo));
        }
    }
    let mut cgroups = Vec::new();
    for h in list(Path::new("/sys/fs/cgroup")) {
        find_test_cgroups(&h, 0, &mut cgroups);
    }
    for c in cgroups {
        did.push(format!("remove cgroup {}", c.display()));
        if !dry {
            reaper::remove_cgroup_tree(&c);
        }
    }
    let oci = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.join("carve-oci")))
        .filter(|p| p.is_file());
    for st in list(Path::new("/run/carve-oci")) {
        let id = st.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !id.contains(TEST_MARK) {
            continue;
        }
        did.push(format!("delete container {id}"));
        if !dry {
            if let Some(oci) = &oci {
                reaper::undo(&Item::Command {
                    argv: [oci.to_string_lossy().as_ref(), "delete", "--force", id]
                        .map(String::from)
                        .into(),
                });
            }
            reaper::undo(&Item::Remove { path: st.clone() });
        }
    }
    for vm in list(Path::new("/run/carve/vm")) {
        if vm.to_string_lossy().contains(TEST_MARK) {
            did.push(format!("remove VM state {}", vm.display()));
            if !dry {
                reaper::undo(&Item::Remove { path: vm });
            }
        }
    }
    let verb = if dry { "would" } else { "did" };
    for d in &did {
        println!("reap-stale: {verb} {d}");
    }
    println!(
        "reap-stale: {} leftovers of earlier runs {}",
        did.len(),
        if dry { "found" } else { "cleaned" }
    );
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn processes() -> Vec<(i32, String)> {
    list(Path::new("/proc"))
        .into_iter()
        .filter_map(|p| {
            let pid: i32 = p.file_name()?.to_str()?.parse().ok()?;
            let cmd = std::fs::read(p.join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect()
}

/// Test cgroups (a name holding `carve-t-`), outermost only: removing one removes its subtree.
fn find_test_cgroups(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 5 {
        return;
    }
    for d in list(dir) {
        if !d.is_dir() || d.is_symlink() {
            continue;
        }
        if d.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(TEST_MARK))
        {
            out.push(d);
        } else {
            find_test_cgroups(&d, depth + 1, out);
        }
    }
}
