//! `carve vm ...` end to end, as root, with real QEMU (TCG here): detached supervisor, status,
//! pause/resume, kill -9 of carve then `carve vm stop` / `carve restore`, snapshot/restore,
//! live migration, bad values, and QEMU exit while waiting.

use carve_testkit::unique_name;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const CARVE: &str = env!("CARGO_BIN_EXE_carve");

use carve_testkit::guest_dir;

fn carve(args: &[&str]) -> Output {
    Command::new(CARVE).args(args).output().expect("run carve")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A shared hold of the host-tuning lock (see crates/vm/tests/common).
fn host_shared_lock() -> carve_testkit::HostLock {
    carve_testkit::HostLock::shared()
}

/// Stops (force) the VM on drop, whatever happened.
struct VmGuard {
    name: String,
    _lock: carve_testkit::HostLock,
}

impl VmGuard {
    fn new(prefix: &str) -> Self {
        assert!(carve_testkit::is_root(), "the VM CLI tests run as root");
        let out = carve(&["image", "guest", guest_dir().to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let name = unique_name(prefix);
        // A test killed by nextest's timeout skips its Drop: its reaper stops the VM then.
        carve_testkit::reaper().command(&[CARVE, "vm", "stop", &name, "--force"]);
        VmGuard {
            name,
            _lock: host_shared_lock(),
        }
    }
}

impl Drop for VmGuard {
    fn drop(&mut self) {
        let _ = carve(&["vm", "stop", &self.name, "--force"]);
    }
}

fn run_args(name: &str, append: &str) -> Vec<String> {
    let g = guest_dir();
    vec![
        "vm".into(),
        "run".into(),
        "--name".into(),
        name.into(),
        "--kernel".into(),
        g.join("vmlinuz").display().to_string(),
        "--initrd".into(),
        g.join("initrd.img").display().to_string(),
        "--append".into(),
        append.into(),
    ]
}

fn run_vm(name: &str, append: &str, extra: &[&str]) -> Output {
    let mut a = run_args(name, append);
    a.extend(extra.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    carve(&a)
}

fn status(name: &str) -> Value {
    let o = carve(&["vm", "status", name, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s[s.rfind(')').unwrap() + 2..].chars().next().unwrap();
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}

fn wait_dead(pid: i64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !alive(pid)
}

fn runtime(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(format!("/run/carve/vm/{name}/runtime.json")).unwrap())
        .unwrap()
}

fn journal(name: &str) -> PathBuf {
    Path::new("/run/carve/journal").join(format!("vm-{name}.jsonl"))
}

const COUNTER: &str =
    "quiet carve.cmd=\"i=0; while true; do echo count=$i; i=$((i+1)); sleep 0.2; done\"";

/// What an operator would look at when VM `name` misbehaves: `carve vm status`, the tail of
/// its console log and its supervisor's log.
fn diagnose(name: &str) -> String {
    let st = carve(&["vm", "status", name, "--json"]);
    let tail = |file: &str| {
        let t = std::fs::read_to_string(format!("/run/carve/vm/{name}/{file}"))
            .unwrap_or_else(|e| format!("({e})"));
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    format!(
        "{name}: {}\nconsole.log tail:\n{}\nsupervisor.log tail:\n{}",
        text(&st),
        tail("console.log"),
        tail("supervisor.log")
    )
}

fn counts(name: &str) -> Vec<u64> {
    std::fs::read_to_string(format!("/run/carve/vm/{name}/console.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("count=")?.parse().ok())
        .collect()
}

#[test]
fn vm_cli_detached_status_pause_then_kill9_of_carve_then_stop_cleans_everything() {
    let g = VmGuard::new("cli-stop");
    let o = run_vm(
        &g.name,
        "quiet",
        &["--wait-for", "carve-guest-ready", "--timeout", "90"],
    );
    assert!(o.status.success(), "{}", text(&o));

    let st = status(&g.name);
    assert_eq!(st["state"], "running");
    assert_eq!(st["accel"], "tcg", "this host's KVM cannot run guests");
    let qemu = st["qemu_pid"].as_i64().unwrap();
    let vcpu = &st["vcpus"][0];
    assert!(vcpu["thread_id"].as_i64().unwrap() > 0);
    assert_eq!(vcpu["allowed_cores"], carve_testkit::vm_core().to_string());

    let o = carve(&["vm", "pause", &g.name]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status(&g.name)["state"], "paused");
    let o = carve(&["vm", "resume", &g.name]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status(&g.name)["state"], "running");

    // The console: a shell on the serial line answers; Ctrl-] detaches.
    {
        use std::io::{Read, Write};
        let mut c = Command::new(CARVE)
            .args(["vm", "console", &g.name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        let mut stdout = c.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains("console-works-42") {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            String::from_utf8_lossy(&got).into_owned()
        });
        std::thread::sleep(Duration::from_millis(300));
        stdin
            .write_all(b"\necho console-works-$((40+2))\n")
            .unwrap();
        let got = reader.join().unwrap();
        assert!(got.contains("console-works-42"), "{got:?}");
        stdin.write_all(&[0x1d]).unwrap();
        let st = c.wait().unwrap();
        assert!(st.success());
    }

    // kill -9 of the carve that supervises the VM: QEMU, tap, cgroup and sockets remain...
    let rt = runtime(&g.name);
    let sup = rt["supervisor_pid"].as_i64().unwrap();
    let cgroups: Vec<PathBuf> = rt["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| PathBuf::from(c.as_str().unwrap()))
        .collect();
    assert!(!cgroups.is_empty());
    // SAFETY: kill with the pid of the supervisor this test started.
    unsafe { libc::kill(sup as i32, libc::SIGKILL) };
    assert!(wait_dead(sup));
    assert!(alive(qemu));
    assert!(status(&g.name)["state"]
        .as_str()
        .unwrap()
        .starts_with("orphaned"));

    // ...until `carve vm stop` removes them all.
    let o = carve(&["vm", "stop", &g.name, "--timeout", "30"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(wait_dead(qemu));
    for c in &cgroups {
        assert!(!c.exists(), "{} left behind", c.display());
    }
    assert!(!journal(&g.name).exists());
    assert!(!Path::new("/run/carve/vm").join(&g.name).exists());
}

#[test]
fn vm_cli_kill9_of_carve_then_carve_restore_removes_qemu_cgroup_and_journal() {
    let g = VmGuard::new("cli-restore");
    let o = run_vm(&g.name, "quiet", &["--detach"]);
    assert!(o.status.success(), "{}", text(&o));
    let rt = runtime(&g.name);
    let qemu = rt["qemu_pid"].as_i64().unwrap();
    let sup = rt["supervisor_pid"].as_i64().unwrap();
    // SAFETY: kill with the pid of the supervisor this test started.
    unsafe { libc::kill(sup as i32, libc::SIGKILL) };
    assert!(wait_dead(sup));
    // Other orphaned journals on the host may fail to restore (and make the exit status 1):
    // what matters here is this VM's line.
    // Another test's `carve restore` may have restored this orphan first (restorers take turns
    // on a journal); then the journal is already gone and the checks below still hold.
    // Only this VM's journal: a bare `carve restore` would also undo the orphan of a test
    // running beside this one (the halting test kills its supervisor on purpose) and end its QEMU.
    let owner = format!("vm-{}", g.name);
    let o = carve(&["restore", &owner]);
    let want = format!("restored vm-{}: ", g.name);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&want) || !journal(&g.name).exists(),
        "{}",
        text(&o)
    );
    assert!(wait_dead(qemu));
    for c in rt["cgroups"].as_array().unwrap() {
        assert!(!Path::new(c.as_str().unwrap()).exists(), "{c} left behind");
    }
    assert!(!journal(&g.name).exists());
    for s in ["qmp.sock", "console.sock"] {
        assert!(!Path::new("/run/carve/vm").join(&g.name).join(s).exists());
    }
    // What is left is the state directory (console log, spec) until `carve vm stop`.
    let o = carve(&["vm", "stop", &g.name]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!Path::new("/run/carve/vm").join(&g.name).exists());
}

#[test]
fn vm_cli_bad_values_are_rejected_before_qemu_starts() {
    let g = VmGuard::new("cli-bad");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--memory", "16MiB"], "memory 16 MiB is too small"),
        (
            vec!["--vcpus", "2", "--cpus", "0"],
            "2 vCPU(s) but only 1 core(s)",
        ),
        (
            vec!["--disk", "/tmp/x.vmdk"],
            "cannot tell the format of disk /tmp/x.vmdk",
        ),
        (
            vec!["--disk", "/tmp/x.img,format=vmdk"],
            "unknown disk format \"vmdk\"",
        ),
        (
            vec!["--device", "0000:7f:1f.7"],
            "PCI device 0000:7f:1f.7 does not exist",
        ),
    ];
    for (extra, want) in cases {
        let o = run_vm(&g.name, "quiet", &extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(want),
            "{extra:?}: {}",
            text(&o)
        );
    }
    let o = carve(&[
        "vm",
        "run",
        "--name",
        &g.name,
        "--kernel",
        "/nonexistent/vmlinuz",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("kernel /nonexistent/vmlinuz does not exist")
    );
    assert!(!Path::new("/run/carve/vm").join(&g.name).exists());
    assert!(!journal(&g.name).exists());
}

/// `carve vm run NAME --wait-for never-printed --timeout SECONDS` with `append`: it must fail
/// with exit 1 (not 124, the timeout) and say `why`.
fn wait_for_fails(name: &str, append: &str, seconds: &str, why: &str) {
    let o = run_vm(
        name,
        append,
        &["--wait-for", "never-printed", "--timeout", seconds],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(why),
        "{}",
        text(&o)
    );
}

#[test]
fn vm_cli_wait_for_fails_when_qemu_exits_first() {
    let g = VmGuard::new("cli-exit");
    // The guest's command ends at once and the guest powers off: the marker never comes.
    wait_for_fails(
        &g.name,
        "quiet carve.cmd=\"echo bye\"",
        "90",
        "QEMU exited before \"never-printed\"",
    );
    let st = status(&g.name);
    assert_eq!(st["state"], "exited");
    assert_eq!(st["exit"]["code"], 0);
}

#[test]
fn vm_cli_snapshot_restore_and_live_migration_keep_the_counter() {
    let g = VmGuard::new("cli-snap");
    let g2_name = format!("{}-moved", g.name);
    carve_testkit::reaper().command(&[CARVE, "vm", "stop", &g2_name, "--force"]);
    let g2 = VmGuard {
        name: g2_name,
        _lock: host_shared_lock(),
    };
    let o = run_vm(
        &g.name,
        COUNTER,
        &["--wait-for", "count=3", "--timeout", "90"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap.bin");
    let o = carve(&["vm", "pause", &g.name]);
    assert!(o.status.success(), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(300));
    let at = *counts(&g.name).last().unwrap();
    let o = carve(&["vm", "snapshot", &g.name, snap.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = carve(&["vm", "stop", &g.name, "--force"]);
    assert!(o.status.success(), "{}", text(&o));

    let want = format!("count={}", at + 3);
    let o = carve(&[
        "vm",
        "restore",
        &g.name,
        snap.to_str().unwrap(),
        "--wait-for",
        &want,
        "--timeout",
        "90",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let c = counts(&g.name);
    assert!(
        c[0] > at && c[0] <= at + 2,
        "snapshot at {at}, restored {c:?}"
    );

    let o = carve(&["vm", "migrate", &g.name, "--to", &g2.name]);
    assert!(o.status.success(), "{}", text(&o));
    let src_last = *counts(&g.name).last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts(&g2.name).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let c2 = counts(&g2.name);
    assert!(
        c2.len() >= 3,
        "{c2:?}\n{}\n{}",
        diagnose(&g2.name),
        diagnose(&g.name)
    );
    assert!(
        c2[0] > src_last && c2[0] <= src_last + 2,
        "source ended at {src_last}, moved {c2:?}"
    );
    assert_eq!(status(&g2.name)["state"], "running");
}

#[test]
fn vm_cli_foreground_run_shows_the_console_and_ends_with_the_guest() {
    let g = VmGuard::new("cli-fg");
    let o = run_vm(&g.name, "quiet carve.cmd=\"echo hello-from-$((6*7))\"", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("carve-guest-ready"), "{}", text(&o));
    assert!(out.contains("hello-from-42"), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("QEMU exited cleanly"));
    // The foreground supervisor cleaned up after the guest powered off.
    assert!(!Path::new("/run/carve/vm").join(&g.name).exists());
    assert!(!journal(&g.name).exists());
}

/// A guest that halts instead of powering off (`halt -f`: QEMU keeps running, every vCPU halted
/// with interrupts off): `carve vm run --wait-for` and `carve vm stop` end within their deadlines
/// with a message that says so, and nothing of either VM is left.
#[test]
fn vm_cli_a_halting_guest_ends_wait_for_and_stop_within_their_deadlines() {
    let a = VmGuard::new("cli-halt");
    let b = VmGuard::new("cli-halt-stop");
    let before = carve_testkit::Snapshot::take();

    // --wait-for text that never comes: the supervisor sees the halted guest and ends QEMU.
    let t0 = Instant::now();
    wait_for_fails(
        &a.name,
        "quiet carve.cmd=\"halt -f\"",
        "150",
        "halted without powering off",
    );
    // Exit status 1 with that message, not 124 (the timeout): the halt was seen, not waited out.
    eprintln!("--wait-for returned after {:?}", t0.elapsed());
    assert_eq!(status(&a.name)["state"], "halted");
    let o = carve(&["vm", "stop", &a.name]);
    assert!(o.status.success(), "{}", text(&o));

    // `stop` itself, with no supervisor left (kill -9): the guest ignores the power button (no
    // acpid, waited until it is really gone: killall only sends SIGTERM, and on a loaded host a
    // still-running acpid took the button and powered off) and halts when the button's input
    // event arrives, so only after stop pressed it; stop sees the halt ("halted", not "killed"
    // after its 150 s).
    let o = run_vm(
        &b.name,
        "quiet carve.cmd=\"killall acpid; while pidof acpid >/dev/null; do sleep 0.1; done; for e in /dev/input/event*; do (head -c 1 $e >/dev/null; halt -f) & done; echo acpid-gone; wait\"",
        &["--wait-for", "acpid-gone", "--timeout", "300"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let sup = runtime(&b.name)["supervisor_pid"].as_i64().unwrap();
    // SAFETY: kill with the supervisor pid carve recorded for this test's VM.
    unsafe { libc::kill(sup as i32, libc::SIGKILL) };
    assert!(wait_dead(sup));
    let t0 = Instant::now();
    let o = carve(&["vm", "stop", &b.name, "--timeout", "150"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("halted without powering off"),
        "{}",
        text(&o)
    );
    eprintln!("stop returned after {:?}", t0.elapsed());

    let d = before.diff_touching(&carve_testkit::Snapshot::take(), &[&a.name, &b.name]);
    let d: Vec<&String> = d.iter().filter(|l| !l.starts_with('/')).collect();
    assert!(d.is_empty(), "left behind: {d:?}");
    assert!(!Path::new("/run/carve/vm").join(&a.name).exists());
    assert!(!Path::new("/run/carve/vm").join(&b.name).exists());
}
