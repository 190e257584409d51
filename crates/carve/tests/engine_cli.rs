//! `carve up -d / ps / exec / logs / stop / start / down` and crash recovery, through the
//! binary, as root. Containers run under carve-oci when it is built (else runc, which takes the
//! same arguments); the plan's bridge lives in a network namespace the test makes.

use carve_net::NetnsGuard;
use carve_testkit::{short_name, unique_name};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{carve_oci as carve, ok, CARVE};

/// The OCI runtime the tests drive: `CARVE_TEST_OCI_RUNTIME`, else the workspace's `carve-oci`
/// built beside `carve`.
fn test_runtime() -> PathBuf {
    carve_testkit::oci_runtime()
}

/// A scratch folder with a busybox rootfs and a plan; takes the plan down and removes itself
/// on drop, also when the test fails.
struct World {
    dir: PathBuf,
    plan: String,
    part: String,
    _ns: NetnsGuard,
}

impl World {
    fn new(restart: &str) -> World {
        let dir = std::env::temp_dir().join(unique_name("engine-cli"));
        std::fs::create_dir_all(&dir).unwrap();
        let rootfs = dir.join("rootfs");
        ok(&["image", "busybox", rootfs.to_str().unwrap()]);
        let ns = NetnsGuard::create(&unique_name("ns")).unwrap();
        let plan = unique_name("plan");
        let part = short_name("w");
        let bridge = short_name("br");
        let toml = format!(
            r#"
[host]
housekeeping = [0]

[network.{bridge}]
namespace = "{ns}"
subnet = "10.78.0.0/24"
{part_toml}"#,
            ns = ns.name(),
            part_toml = common::container_toml(
                &part,
                &format!(
                    r#"command = ["/bin/sh", "-c", "echo started $CARVE_PARTITION; mkdir -p /tmp/www; echo carve-page > /tmp/www/index.html; trap 'kill $p; exit 0' TERM; httpd -f -p 8080 -h /tmp/www & p=$!; wait"]
network = {{ bridge = "{bridge}", address = "10.78.0.2/24" }}
restart = "{restart}""#
                )
            )
        );
        std::fs::write(dir.join(format!("{plan}.toml")), toml).unwrap();
        World {
            dir,
            plan,
            part,
            _ns: ns,
        }
    }

    fn plan_file(&self) -> String {
        self.dir
            .join(format!("{}.toml", self.plan))
            .to_string_lossy()
            .to_string()
    }

    fn ps(&self) -> serde_json::Value {
        let rows: serde_json::Value = serde_json::from_str(&ok(&["ps", "--json"])).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == self.part.as_str())
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    fn assert_gone(&self) {
        common::assert_plan_gone(&self.plan);
        let cns = format!("carve-{}-{}", self.plan, self.part);
        assert!(!carve_net::netns_exists(&cns), "netns {cns} left");
        let mut nl = carve_net::Netlink::open_in(self._ns.name()).unwrap();
        let links: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(links, vec!["lo".to_string()]);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if Path::new("/run/carve").join(&self.plan).exists()
            || Path::new("/run/carve/journal")
                .join(format!("plan-{}.jsonl", self.plan))
                .exists()
        {
            let _ = carve(&["down", &self.plan]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a recovery command for `w`'s orphaned plan and checks nothing is left. Other tests'
/// `carve restore` runs may undo this orphan first (restore takes every orphaned journal), so
/// what is checked is the outcome: the journal undone and the host clean.
fn recover(w: &World, cmd: &[&str]) {
    let out = carve(cmd);
    let journal = Path::new("/run/carve/journal").join(format!("plan-{}.jsonl", w.plan));
    wait_for("the plan's journal to be undone", || !journal.exists());
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains(&format!("plan-{}", w.plan)) {
        assert!(
            text.contains(&format!("restored plan-{}", w.plan)),
            "{text}"
        );
    }
    w.assert_gone();
}

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    carve_testkit::wait_for(what, Duration::from_secs(30), f);
}

#[test]
fn up_detached_ps_exec_logs_stop_start_down() {
    assert!(carve_testkit::is_root(), "the engine suite runs as root");
    let w = World::new("no");
    let out = carve(&["up", "-d", &w.plan_file()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "carve up -d: {err}");
    // Every step was reported.
    assert!(err.contains(&format!("container {}", w.part)), "{err}");
    let row = w.ps();
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(row["kind"], "container");
    assert_eq!(row["cpus"], "0");
    assert_eq!(row["memory_limit"], 64u64 << 20);
    assert!(row["pid"].as_i64().unwrap() > 1);
    assert!(
        row["cpu_percent"].is_number() && row["memory_used"].is_number(),
        "{row}"
    );
    // exec runs in the container: its own hostname and eth0 address.
    let out = ok(&["exec", &w.part, "--", "hostname"]);
    assert_eq!(out.trim(), w.part);
    let out = ok(&["exec", &w.part, "--", "ip", "-4", "addr", "show", "eth0"]);
    assert!(out.contains("10.78.0.2/24"), "{out}");
    // The service answers on its address, from inside the container.
    let out = ok(&[
        "exec",
        &w.part,
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        "http://10.78.0.2:8080/",
    ]);
    assert_eq!(out.trim(), "carve-page");
    let st = carve(&["exec", &w.part, "--", "sh", "-c", "exit 7"]);
    assert_eq!(st.status.code(), Some(7));
    let logs = ok(&["logs", &w.part]);
    assert!(logs.contains(&format!("started {}", w.part)), "{logs}");
    // stop keeps it stopped; start brings it back with a new pid.
    let pid = w.ps()["pid"].as_i64().unwrap();
    ok(&["stop", &w.part]);
    assert_eq!(w.ps()["state"], "stopped");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.contains(") Z")
        }
    );
    ok(&["start", &w.part]);
    let row = w.ps();
    assert_eq!(row["state"], "running");
    assert_ne!(row["pid"].as_i64().unwrap(), pid);
    // A second up of the same plan is refused.
    let again = carve(&["up", "-d", &w.plan_file()]);
    assert!(!again.status.success());
    // `logs -f` follows until the plan goes down.
    let mut follow = Command::new(CARVE)
        .args(["logs", "-f", &w.part])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, format!("started {}", w.part));
    ok(&["down", &w.plan]);
    // It ends by itself once the plan is down.
    for l in lines {
        l.unwrap();
    }
    assert!(follow.wait().unwrap().success());
    w.assert_gone();
}

#[test]
fn kill_9_of_the_supervisor_then_restore_leaves_nothing() {
    let w = World::new("always");
    ok(&["up", "-d", &w.plan_file()]);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new("/run/carve").join(&w.plan).join("state.json")).unwrap(),
    )
    .unwrap();
    let holder = state["holder"].as_i64().unwrap() as i32;
    let pid = state["partitions"][0]["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill takes a pid and a signal.
    assert_eq!(unsafe { libc::kill(holder, libc::SIGKILL) }, 0);
    wait_for("the supervisor to die", || {
        std::fs::read_to_string(format!("/proc/{holder}/stat"))
            .map(|s| s.contains(") Z") || s.contains(") X"))
            .unwrap_or(true)
    });
    // ps shows the plan orphaned; the container still runs.
    assert_eq!(w.ps()["state"], "orphaned");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // `carve restore` undoes the orphaned journal: container, cgroups, veth, netns, state.
    // Only this plan's journal: another test's orphan (a VM whose supervisor a test killed on
    // purpose) is that test's to look after.
    let owner = format!("plan-{}", w.plan);
    recover(&w, &["restore", &owner]);
    wait_for("the container to die", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)
    });
    w.assert_gone();
}

#[test]
fn foreground_up_tears_down_on_ctrl_c() {
    let w = World::new("on-failure");
    let child = Command::new(CARVE)
        .args(["up", &w.plan_file()])
        .env("CARVE_OCI_RUNTIME", test_runtime())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the plan to be up", || w.ps()["state"] == "running");
    // SAFETY: kill takes a pid and a signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {err}", out.status);
    assert!(err.contains(&format!("down {}", w.plan)), "{err}");
    w.assert_gone();
}

#[test]
#[ignore = "debootstrap downloads and unpacks ~206 MB (about 30 s): run with --run-ignored"]
fn debian_image_smoke() {
    let dir = std::env::temp_dir().join(unique_name("debian"));
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(dir.clone());
    ok(&["image", "debian", dir.to_str().unwrap()]);
    let os = std::fs::read_to_string(dir.join("etc/os-release")).unwrap();
    assert!(os.contains("bookworm"), "{os}");
    assert!(dir.join("usr/bin/apt-get").exists());
}

#[test]
fn kill_9_of_the_supervisor_during_up_then_restore_leaves_nothing() {
    for point in [
        "journal",
        "state",
        "network:BR:after",
        "container:PART",
        "container:PART:created",
        "container:PART:after",
    ] {
        let w = World::new("no");
        let toml = std::fs::read_to_string(w.plan_file()).unwrap();
        let bridge = toml
            .lines()
            .find_map(|l| l.strip_prefix("[network.")?.strip_suffix(']'))
            .unwrap()
            .to_string();
        let point = point.replace("BR", &bridge).replace("PART", &w.part);
        // The supervisor SIGKILLs itself at that point of `up`.
        let out = Command::new(CARVE)
            .args(["up", "-d", &w.plan_file()])
            .env("CARVE_OCI_RUNTIME", test_runtime())
            .env("CARVE_FAULT", format!("crash:{point}"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: up -d succeeded");
        // `carve down` of a plan whose holder is dead restores it from its state and journal.
        recover(&w, &["down", &w.plan]);
    }
}

#[test]
fn kill_9_of_the_supervisor_of_all_three_kinds_then_down_restores_the_host_tuning() {
    let _lock = carve_testkit::HostLock::exclusive();
    let before = carve_testkit::Snapshot::take().files;
    let g = carve_vm::assets::prepare_guest(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../cache/guest"
    )))
    .expect("guest assets");
    let w = World::new("no");
    let (fast, guest) = (short_name("f"), short_name("v"));
    let mut toml = std::fs::read_to_string(w.plan_file()).unwrap();
    let bridge = toml
        .lines()
        .find_map(|l| l.strip_prefix("[network.")?.strip_suffix(']'))
        .unwrap()
        .to_string();
    toml.push_str(&format!(
        r#"
[[partition]]
name = "{fast}"
kind = "dedicated"
cpus = [1]
memory = "16MiB"
command = ["sleep", "1000"]

[[partition]]
name = "{guest}"
kind = "vm"
cpus = [0]
vcpus = 1
memory = "256MiB"
kernel = "{kernel}"
initrd = "{initrd}"
network = {{ bridge = "{bridge}", address = "10.78.0.3/24" }}
"#,
        kernel = g.kernel.display(),
        initrd = g.initrd.display(),
    ));
    std::fs::write(w.plan_file(), toml).unwrap();
    // The supervisor SIGKILLs itself once the VM is up: all three kinds are running.
    let out = Command::new(CARVE)
        .args(["up", "-d", &w.plan_file()])
        .env("CARVE_OCI_RUNTIME", test_runtime())
        .env("CARVE_FAULT", format!("crash:vm:{guest}:after"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let rows: serde_json::Value = serde_json::from_str(&ok(&["ps", "--json"])).unwrap();
    let mine: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["plan"] == w.plan.as_str())
        .collect();
    assert_eq!(mine.len(), 3, "{rows}");
    assert!(mine.iter().all(|r| r["state"] == "orphaned"), "{rows}");
    recover(&w, &["down", &w.plan]);
    for owner in [format!("dedicated-{fast}"), format!("vm-{guest}")] {
        let j = Path::new("/run/carve/journal").join(format!("{owner}.jsonl"));
        wait_for("the tier journal to be undone", || !j.exists());
    }
    assert!(!Path::new("/run/carve/vm").join(&guest).exists());
    // No QEMU of ours is left.
    wait_for("QEMU to be gone", || {
        std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            !(cmd.contains("qemu-system") && cmd.contains(&guest))
        })
    });
    assert_eq!(
        carve_testkit::Snapshot::take().files,
        before,
        "host tuning not restored"
    );
}

#[test]
fn a_system_container_console_runs_the_init_shell_and_down_leaves_nothing() {
    struct Sys {
        dir: PathBuf,
        plan: String,
    }
    impl Drop for Sys {
        fn drop(&mut self) {
            if Path::new("/run/carve").join(&self.plan).exists() {
                let _ = carve(&["down", &self.plan]);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
    let s = Sys {
        dir: std::env::temp_dir().join(unique_name("console")),
        plan: unique_name("plan"),
    };
    std::fs::create_dir_all(&s.dir).unwrap();
    ok(&["image", "busybox", s.dir.join("rootfs").to_str().unwrap()]);
    let part = short_name("sys");
    let plan_file = s.dir.join(format!("{}.toml", s.plan));
    std::fs::write(&plan_file, common::container_toml(&part, "init = true")).unwrap();
    ok(&["up", "-d", plan_file.to_str().unwrap()]);
    // A shell on the init's console answers what is typed into `carve console`.
    let mut child = Command::new(CARVE)
        .args(["console", &part])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"echo hello-console\n").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("carve console did not end after its stdin did");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The command's output, not just the terminal's echo of it.
    assert!(
        text.lines()
            .any(|l| l.trim_end_matches('\r') == "hello-console"),
        "{text:?}"
    );
    // The console's output also goes to the partition's log.
    let logs = ok(&["logs", &part]);
    assert!(logs.contains("carve-init: up"), "{logs}");
    assert!(logs.contains("hello-console"), "{logs}");
    ok(&["down", &s.plan]);
    common::assert_plan_gone(&s.plan);
    let out = carve(&["console", &part]);
    assert!(!out.status.success());
}
