//! A killed test leaks nothing. A test-like process (this test binary re-run on its ignored
//! `holder_child`) starts what VM and container tests start — a q35 TCG guest with a tap on a
//! bridge in a test netns, and a carve-oci container — registering each with the test reaper
//! first; then it is SIGKILLed, as nextest does on a timeout. Afterwards no process, cgroup (on
//! any hierarchy), netns, tap, journal or state of it may remain. Root only.

use carve_testkit::{reaper, unique_name, Snapshot};
use carve_vm::spec::NetSpec;
use carve_vm::vm::{Boot, Context, Vm};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// The VM tier's test helpers (the cached guest, the test VM's spec), shared by path.
#[path = "../../vm/tests/common/mod.rs"]
mod vm_common;

const ENV: &str = "CARVE_KILLTEST";
/// Boot under TCG with other tests sharing 2 cores.
const BOOT: Duration = Duration::from_secs(150);

/// What the parent hands the holder: a work dir and the names to use, one a line.
struct Names {
    dir: PathBuf,
    vm: String,
    ct: String,
    ns: String,
    br: String,
}

impl Names {
    fn encode(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            self.dir.display(),
            self.vm,
            self.ct,
            self.ns,
            self.br
        )
    }
    fn decode(s: &str) -> Names {
        let v: Vec<&str> = s.lines().collect();
        Names {
            dir: v[0].into(),
            vm: v[1].into(),
            ct: v[2].into(),
            ns: v[3].into(),
            br: v[4].into(),
        }
    }
}

fn sh(argv: &[&str]) {
    let o = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The test-like process: starts a VM and a container, reports, then waits to be killed.
#[test]
#[ignore = "run by a_killed_test_leaves_nothing_behind as its victim"]
fn holder_child() {
    let Some(n) = std::env::var(ENV).ok().map(|s| Names::decode(&s)) else {
        return;
    };
    let r = reaper();
    r.netns(&n.ns);
    sh(&["ip", "netns", "add", &n.ns]);
    sh(&["ip", "-n", &n.ns, "link", "add", &n.br, "type", "bridge"]);
    sh(&["ip", "-n", &n.ns, "link", "set", &n.br, "up"]);

    let ctx = Context {
        state_root: n.dir.join("vm"),
        journal_root: n.dir.join("journal"),
        die_with_launcher: true,
        ..Context::default()
    };
    r.journals(&ctx.journal_root);
    let mut spec = vm_common::spec(&n.vm, "quiet");
    spec.net = Some(NetSpec {
        bridge: n.br.clone(),
        netns: Some(n.ns.clone()),
        mac: None,
        ip: None,
        gw: None,
    });
    let mut vm = Vm::launch(&ctx, spec, Boot::Fresh).unwrap();
    vm.wait_for_console(carve_vm::assets::READY_MARKER, 0, BOOT)
        .unwrap();

    let oci = carve_testkit::oci_runtime();
    let root = n.dir.join("oci");
    let bundle = n.dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    carve_testkit::busybox_rootfs(&bundle.join("rootfs"));
    let o = Command::new(&oci)
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    cfg["root"]["readonly"] = false.into();
    cfg["linux"]["cgroupsPath"] = format!("/{}", n.ct).into();
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let oci_s = oci.display().to_string();
    let root_s = root.display().to_string();
    r.command(&[&oci_s, "--root", &root_s, "delete", "--force", &n.ct]);
    r.cgroup(&n.ct);
    // Files, not pipes: the container's init inherits the runtime's stdio.
    let log = std::fs::File::create(n.dir.join("oci.log")).unwrap();
    let st = Command::new(&oci)
        .args(["--root", &root_s, "run", "--detach", "--bundle"])
        .arg(&bundle)
        .arg(&n.ct)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(n.dir.join("oci.log")).unwrap()
    );
    let state = Command::new(&oci)
        .args(["--root", &root_s, "state", &n.ct])
        .output()
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    let ready = serde_json::json!({
        "qemu": vm.pid(),
        "container": state["pid"],
        "tap": vm.runtime().tap,
    });
    std::fs::write(n.dir.join("ready.json"), ready.to_string()).unwrap();
    // Hold everything until killed (bounded, should the parent die first).
    std::thread::sleep(Duration::from_secs(600));
}

fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next()),
            Some(Some('Z'))
        )
    })
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match ok() {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                panic!("{what} within {} s: {e}", limit.as_secs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn a_killed_test_leaves_nothing_behind() {
    assert!(carve_testkit::is_root(), "this test runs as root");
    let _lock = carve_testkit::HostLock::shared();
    let dir = tempfile::Builder::new()
        .prefix("carve-kt")
        .tempdir()
        .unwrap();
    let n = Names {
        dir: dir.path().to_path_buf(),
        vm: unique_name("kill-vm"),
        ct: unique_name("kill-ct"),
        ns: unique_name("kill-ns"),
        br: carve_testkit::short_name("kbr"),
    };
    let before = Snapshot::take();
    let log = dir.path().join("holder.log");
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "holder_child", "--ignored", "--nocapture"])
        .env(ENV, n.encode())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("holder.err")).unwrap())
        .spawn()
        .unwrap();
    // Should this test fail half-way, its own reaper kills the holder (whose reaper then cleans).
    reaper().process(holder.id() as i32);
    let ready = dir.path().join("ready.json");
    // Within nextest's 300 s (then it kills this test, and the reapers clean up).
    wait_until(
        "the holder has a VM and a container",
        Duration::from_secs(200),
        || {
            if let Ok(Some(st)) = holder.try_wait() {
                panic!(
                    "the holder ended ({st}): {}{}",
                    std::fs::read_to_string(&log).unwrap_or_default(),
                    std::fs::read_to_string(dir.path().join("holder.err")).unwrap_or_default()
                );
            }
            ready
                .exists()
                .then_some(())
                .ok_or_else(|| "no ready.json".into())
        },
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let qemu = r["qemu"].as_i64().unwrap();
    let ct = r["container"].as_i64().unwrap();
    assert!(alive(qemu) && alive(ct), "{r}");
    let during = Snapshot::take();
    let names = [n.vm.as_str(), n.ct.as_str(), n.ns.as_str()];
    let made = before.diff_touching(&during, &names);
    for want in [format!("carve-vm-{}", n.vm), n.ct.clone(), n.ns.clone()] {
        assert!(
            made.iter().any(|l| l.contains(&want)),
            "{want} not in {made:?}"
        );
    }

    holder.kill().unwrap();
    holder.wait().unwrap();
    wait_until(
        "everything the killed holder made is gone",
        Duration::from_secs(60),
        || {
            let left: Vec<String> = before
                .diff_touching(&Snapshot::take(), &names)
                .into_iter()
                .filter(|l| !l.starts_with('/'))
                .collect();
            if alive(qemu) || alive(ct) {
                return Err(format!("QEMU {qemu} or container {ct} still runs"));
            }
            if Path::new("/run/netns").join(&n.ns).exists() {
                return Err(format!("netns {} still there", n.ns));
            }
            let journals = std::fs::read_dir(dir.path().join("journal"))
                .map(|d| d.count())
                .unwrap_or(0);
            if journals > 0 {
                return Err(format!("{journals} journals left"));
            }
            if dir.path().join("oci").join(&n.ct).exists() {
                return Err("container state left".into());
            }
            left.is_empty().then_some(()).ok_or_else(|| left.join("; "))
        },
    );
}
