//! The supervisor API, metrics, `carve top` and the dashboard of a plan brought up with
//! `carve up -d`, through the binary, as root: every test brings up its own small plan (unique
//! names, core 0 only unless it holds the host lock) and takes it down on drop.

use carve_testkit::{short_name, unique_name};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use carve_testkit::wait_for;
use common::{carve_oci as carve, chromium, ok, CARVE};

/// A plan of its own, up under a supervisor; down and removed on drop.
struct Up {
    dir: PathBuf,
    plan: String,
    parts: Vec<String>,
}

impl Up {
    /// `extra` goes before the partitions (an `[observe]` section); `dedicated` adds a spinning
    /// dedicated partition on core 1.
    fn new(extra: &str, containers: usize, dedicated: bool) -> Up {
        let dir = std::env::temp_dir().join(unique_name("observe"));
        std::fs::create_dir_all(&dir).unwrap();
        ok(&["image", "busybox", dir.join("rootfs").to_str().unwrap()]);
        let plan = unique_name("obs");
        let mut toml = format!("[host]\nhousekeeping = [0]\n{extra}\n");
        let mut parts = Vec::new();
        for _ in 0..containers {
            let p = short_name("c");
            toml += &common::container_toml(
                &p,
                r#"command = ["/bin/sh", "-c", "echo hello-from-$CARVE_PARTITION; trap 'exit 0' TERM; while :; do sleep 1 & wait; done"]"#,
            );
            parts.push(p);
        }
        if dedicated {
            let p = short_name("d");
            toml += &format!(
                r#"
[[partition]]
name = "{p}"
kind = "dedicated"
cpus = [1]
memory = "16MiB"
sched = "fifo:80"
command = ["/bin/sh", "-c", "while :; do :; done"]
"#
            );
            parts.push(p);
        }
        let file = dir.join(format!("{plan}.toml"));
        std::fs::write(&file, toml).unwrap();
        let up = Up { dir, plan, parts };
        ok(&["up", "-d", file.to_str().unwrap()]);
        up
    }

    fn state(&self) -> PathBuf {
        Path::new("/run/carve").join(&self.plan)
    }

    fn socket(&self) -> PathBuf {
        self.state().join("api.sock")
    }

    fn tcp(&self) -> String {
        std::fs::read_to_string(self.state().join("metrics.addr")).expect("metrics.addr")
    }

    /// One raw HTTP exchange on the API socket; returns (status, body).
    fn raw(&self, request: &[u8]) -> (u16, String) {
        raw_exchange(UnixStream::connect(self.socket()).unwrap(), request)
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.raw(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
    }

    fn ps_state(&self, part: &str) -> String {
        let rows: serde_json::Value = serde_json::from_str(&ok(&["ps", "--json"])).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == part)
            .map(|r| r["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let out = carve(&["down", &self.plan]);
        if !out.status.success() {
            eprintln!(
                "down {}: {}",
                self.plan,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn raw_exchange<S: Read + Write>(mut s: S, request: &[u8]) -> (u16, String) {
    // The server may answer and close before it has read everything we send (oversized
    // requests): a failed write is part of the test, the answer is what counts.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn skip() -> bool {
    !carve_testkit::require_root()
}

#[test]
fn observe_api_serves_partitions_logs_exec_actions_and_events() {
    if skip() {
        return;
    }
    let up = Up::new("", 1, false);
    let p = up.parts[0].clone();
    // Root only: the socket 0600 in a 0700 folder.
    let mode = |f: &Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&up.socket()), 0o600);
    assert_eq!(mode(&up.state()), 0o700);
    let (st, body) = up.get("/v1/partitions");
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(&p), "{body}");
    assert_eq!(up.ps_state(&p), "running");
    wait_for(
        "the partition's greeting in its log",
        Duration::from_secs(10),
        || ok(&["logs", &p]).contains(&format!("hello-from-{p}")),
    );
    let out = carve(&[
        "exec",
        &p,
        "--",
        "sh",
        "-c",
        "echo out-$CARVE_PARTITION; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("out-{p}")
    );
    // stop and start go through the API: the supervisor logs them.
    ok(&["stop", &p]);
    assert_eq!(up.ps_state(&p), "stopped");
    ok(&["start", &p]);
    assert_eq!(up.ps_state(&p), "running");
    let log = std::fs::read_to_string(up.state().join("supervisor.log")).unwrap();
    let actions: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("supervisor.log is JSON lines"))
        .filter(|v: &serde_json::Value| v["fields"]["message"] == "api action")
        .collect();
    assert_eq!(actions.len(), 2, "{log}");
    // The event stream replays what happened.
    wait_for("stopped and started events", Duration::from_secs(5), || {
        let s = UnixStream::connect(up.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let (_, body) = raw_exchange(s, b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n");
        body.contains("\"kind\":\"stopped\"") && body.contains("\"kind\":\"started\"")
    });
    // `carve top --once --json`: one frame's data.
    let frame: serde_json::Value =
        serde_json::from_str(&ok(&["top", "--plan", &up.plan, "--once", "--json"])).unwrap();
    assert_eq!(frame["plan"], up.plan.as_str());
    assert_eq!(frame["partitions"][0]["name"], p.as_str());
    assert!(frame["cores"].as_array().unwrap().len() >= 2, "{frame}");
}

#[test]
fn observe_api_refuses_non_root_clients() {
    if skip() {
        return;
    }
    let up = Up::new("", 1, false);
    let path = std::ffi::CString::new(up.socket().to_str().unwrap()).unwrap();
    // SAFETY: the child only calls async-signal-safe functions (setgid, setuid, socket,
    // connect, _exit) before exiting.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: see above; every pointer is valid for the call.
        unsafe {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(2);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (i, b) in path.as_bytes().iter().enumerate() {
                addr.sun_path[i] = *b as libc::c_char;
            }
            let r = libc::connect(
                fd,
                &addr as *const libc::sockaddr_un as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_un>() as u32,
            );
            let e = *libc::__errno_location();
            libc::_exit(if r != 0 && e == libc::EACCES { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child status {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "uid 65534 was not refused with EACCES (2: could not drop to 65534)"
    );
    // Root still gets in.
    assert_eq!(up.get("/v1/plan").0, 200);
}

#[test]
fn observe_api_survives_malformed_and_oversized_requests() {
    if skip() {
        return;
    }
    let up = Up::new("", 1, false);
    let p = &up.parts[0];
    let (st, _) = up.raw(b"THIS IS NOT HTTP\r\n\r\n");
    assert_eq!(st, 400);
    let (st, _) = up.raw(b"\x00\xff\x13garbage");
    assert!(st == 400 || st == 0, "binary garbage got {st}");
    let huge = format!(
        "GET /v1/plan HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let (st, _) = up.raw(huge.as_bytes());
    assert!(
        st == 431 || st == 400 || st == 0,
        "oversized headers got {st}"
    );
    let body = "x".repeat(1 << 20);
    let big = format!(
        "POST /v1/partitions/{p}/exec HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (st, msg) = up.raw(big.as_bytes());
    assert_eq!(st, 413, "{msg}");
    assert!(msg.contains("at most"), "{msg}");
    let bad = "{\"command\": 5}";
    let req = format!(
        "POST /v1/partitions/{p}/exec HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
        bad.len()
    );
    let (st, msg) = up.raw(req.as_bytes());
    assert_eq!(st, 400, "{msg}");
    assert!(
        msg.contains("\"error\"") && msg.contains("command"),
        "{msg}"
    );
    let (st, msg) = up.get("/v1/partitions/nosuch/logs");
    assert_eq!(st, 404, "{msg}");
    assert!(msg.contains("nosuch"), "{msg}");
    let (st, _) = up.raw(b"DELETE /v1/plan HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(st, 405);
    let (st, msg) = up.get("/v1/partitions/x/logs?tail=lots");
    assert!(st == 400 || st == 404, "{st} {msg}");
    // Half a request, then the client goes away.
    drop(
        UnixStream::connect(up.socket())
            .unwrap()
            .write_all(b"GET /v1/pl"),
    );
    // Still alive and serving.
    let (st, body) = up.get("/v1/plan");
    assert_eq!(st, 200, "{body}");
    assert_eq!(up.ps_state(p), "running");
}

/// Checks Prometheus text exposition: HELP and TYPE once per family before its samples, valid
/// names and labels, units in names, `_total` exactly on counters, numeric values, no
/// duplicate series. Returns the samples (series → value).
fn parse_exposition(text: &str) -> std::collections::BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        let mut c = n.chars();
        c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    };
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut helped = std::collections::HashSet::new();
    let mut samples = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_string()), "second HELP for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            assert!(["counter", "gauge"].contains(&kind), "{name}: type {kind}");
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "second TYPE for {name}"
            );
            assert!(
                name_ok(name) && name.starts_with("carve_"),
                "bad name {name}"
            );
            assert_eq!(
                name.ends_with("_total"),
                kind == "counter",
                "{name} is a {kind}"
            );
            let units = [
                "_seconds",
                "_bytes",
                "_ratio",
                "_packets",
                "_per_second",
                "_info",
                "_state",
                "_status",
            ];
            let base = name.trim_end_matches("_total");
            let unitless_counts = ["restarts", "oom_kills", "interrupts", "interruptions"];
            assert!(
                units.iter().any(|u| base.ends_with(u))
                    || unitless_counts.iter().any(|u| base.ends_with(u)),
                "{name}: no unit suffix"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line}");
        if line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let name = series.split('{').next().unwrap();
        assert!(types.contains_key(name), "sample {name} before its TYPE");
        if let Some(labels) = series.strip_prefix(name) {
            let labels = labels.trim_start_matches('{').trim_end_matches('}');
            // label="value" pairs; values may hold escaped quotes but no raw newline.
            let mut rest = labels;
            while !rest.is_empty() {
                let (k, v) = rest
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("bad labels in {line}"));
                assert!(name_ok(k), "bad label name {k} in {line}");
                let mut end = 0;
                let b = v.as_bytes();
                while end < b.len() && !(b[end] == b'"' && (end == 0 || b[end - 1] != b'\\')) {
                    end += 1;
                }
                assert!(end < b.len(), "unterminated label in {line}");
                rest = v[end + 1..].trim_start_matches(',');
            }
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        assert!(
            samples.insert(series.to_string(), v).is_none(),
            "duplicate series {series}"
        );
    }
    samples
}

#[test]
fn observe_metrics_follow_prometheus_conventions_on_the_socket_and_tcp() {
    if skip() {
        return;
    }
    let up = Up::new("[observe]\nlisten = \"127.0.0.1:0\"\n", 2, false);
    std::thread::sleep(Duration::from_millis(2500));
    let (st, text) = up.get("/metrics");
    assert_eq!(st, 200);
    let m = parse_exposition(&text);
    for p in &up.parts {
        let key = format!(
            "carve_partition_memory_limit_bytes{{plan=\"{}\",partition=\"{p}\"}}",
            up.plan
        );
        assert_eq!(
            m.get(&key),
            Some(&(64.0 * 1024.0 * 1024.0)),
            "{key} in\n{text}"
        );
        let key = format!(
            "carve_partition_cpu_seconds_total{{plan=\"{}\",partition=\"{p}\"}}",
            up.plan
        );
        assert!(m.contains_key(&key), "{key}");
    }
    assert!(
        m.keys()
            .any(|k| k.starts_with("carve_core_interrupts_total{")),
        "no IRQ counts"
    );
    assert!(m.keys().any(|k| k.starts_with("carve_core_busy_ratio{")));
    // The TCP listener serves the same metrics, and no control.
    let addr = up.tcp();
    let ip: std::net::SocketAddr = addr.parse().unwrap();
    assert!(ip.ip().is_loopback());
    let tcp = || std::net::TcpStream::connect(&addr).unwrap();
    let (st, text) = raw_exchange(
        tcp(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 200);
    parse_exposition(&text);
    let stop = format!("POST /v1/partitions/{}/stop HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", up.parts[0]);
    let (st, msg) = raw_exchange(tcp(), stop.as_bytes());
    assert_eq!(st, 403, "{msg}");
    assert_eq!(up.ps_state(&up.parts[0]), "running");
}

#[test]
fn observe_plan_refuses_a_non_loopback_listener() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join(format!("{}.toml", unique_name("obs")));
    std::fs::write(
        &plan,
        "[observe]\nlisten = \"0.0.0.0:9464\"\n\n[[partition]]\nname = \"a\"\nkind = \"container\"\ncpus = [0]\nmemory = \"64MiB\"\nrootfs = \"r\"\n",
    )
    .unwrap();
    let out = carve(&["up", "-d", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("observe.listen") && err.contains("allow_remote"),
        "{err}"
    );
}

/// A tmux session running a command; killed on drop.
struct Tmux(String);

impl Tmux {
    fn new(cmd: &str) -> Tmux {
        let name = unique_name("tmux");
        let st = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "150",
                "-y",
                "40",
                cmd,
            ])
            .status()
            .expect("tmux is installed by scripts/setup.sh");
        assert!(st.success());
        Tmux(name)
    }
    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    fn keys(&self, k: &str) {
        assert!(Command::new("tmux")
            .args(["send-keys", "-t", &self.0, k])
            .status()
            .unwrap()
            .success());
    }
    fn wait(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            last = self.capture();
            if f(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {what}; pane:\n{last}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

fn row<'a>(pane: &'a str, part: &str) -> &'a str {
    pane.lines()
        .find(|l| l.contains(part) && l.contains("container"))
        .unwrap_or("")
}

#[test]
fn observe_top_in_tmux_stops_and_starts_a_partition() {
    if skip() || !carve_testkit::require_tool("tmux") {
        return;
    }
    let up = Up::new("", 2, false);
    let (a, b) = (up.parts[0].clone(), up.parts[1].clone());
    let tmux = Tmux::new(&format!("{CARVE} top --plan {}", up.plan));
    let pane = tmux.wait("both partitions running", |p| {
        row(p, &a).contains("running") && row(p, &b).contains("running")
    });
    assert!(pane.contains("CPU 0") && pane.contains("CPU 1"), "{pane}");
    // The first row is selected: `s` stops it.
    tmux.keys("s");
    tmux.wait("the first partition stopped", |p| {
        row(p, &a).contains("stopped")
    });
    assert_eq!(up.ps_state(&a), "stopped");
    assert_eq!(up.ps_state(&b), "running");
    // Down to the second row and follow its log.
    tmux.keys("Down");
    tmux.keys("l");
    let pane = tmux.wait("the second partition's log", |p| {
        p.contains(&format!("hello-from-{b}"))
    });
    if let Ok(dir) = std::env::var("CARVE_TOP_CAPTURE") {
        std::fs::write(Path::new(&dir).join("top.txt"), &pane).unwrap();
    }
    tmux.keys("Up");
    tmux.keys("S");
    tmux.wait("the first partition running again", |p| {
        row(p, &a).contains("running")
    });
    assert_eq!(up.ps_state(&a), "running");
    tmux.keys("q");
    wait_for("carve top to quit", Duration::from_secs(5), || {
        !Command::new("tmux")
            .args(["has-session", "-t", &tmux.0])
            .status()
            .unwrap()
            .success()
    });
}

#[test]
fn observe_dashboard_in_chromium_shows_every_partition() {
    if skip() || !carve_testkit::require_tool("/usr/bin/chromium") {
        return;
    }
    let up = Up::new("[observe]\nlisten = \"127.0.0.1:0\"\n", 2, false);
    let url = format!("http://{}/", up.tcp());
    let profile = tempfile::tempdir().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let out = chromium(
        &["--virtual-time-budget=4000", "--dump-dom", &url],
        profile.path(),
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    for p in &up.parts {
        assert!(
            dom.contains(&format!("data-name=\"{p}\"")),
            "{p} not in the DOM:\n{dom}"
        );
    }
    assert!(dom.contains(&up.plan), "plan name not shown");
    assert!(dom.contains("data-cpu=\"1\""), "cores not drawn");
    let shot = std::env::var("CARVE_DASHBOARD_SHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| profile.path().join("shot.png"));
    let out = chromium(
        &[
            "--window-size=1300,1000",
            "--virtual-time-budget=4000",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
        profile.path(),
    );
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not blank: the page paints many distinct colours.
    let px = common::pixels(&shot);
    assert!(
        px.width >= 1000 && px.colours > 20,
        "{}x{} with {} colours",
        px.width,
        px.height,
        px.colours
    );
}

#[test]
fn observe_host_tuning_probes_the_dedicated_core() {
    if skip() {
        return;
    }
    let _lock = carve_testkit::HostLock::exclusive();
    let up = Up::new("", 1, true);
    let d = up.parts[1].clone();
    let key = |n: &str| format!("{n}{{plan=\"{}\",cpu=\"1\",partition=\"{d}\"}}", up.plan);
    let mut first = None;
    wait_for(
        "two probe windows on core 1",
        Duration::from_secs(10),
        || {
            let m = parse_exposition(&up.get("/metrics").1);
            let Some(s) = m.get(&key("carve_dedicated_probe_seconds_total")).copied() else {
                return false;
            };
            let first = *first.get_or_insert(s);
            s > first
        },
    );
    let m = parse_exposition(&up.get("/metrics").1);
    let stolen = m[&key("carve_dedicated_core_stolen_ratio")];
    assert!((0.0..1.0).contains(&stolen), "stolen {stolen}");
    assert!(m[&key("carve_dedicated_core_longest_gap_seconds")] >= 0.0);
    // The spinner owns its core: it was on it most of the interval.
    let off = m[&format!(
        "carve_partition_offcpu_ratio{{plan=\"{}\",partition=\"{d}\"}}",
        up.plan
    )];
    assert!(off < 0.5, "the spinner was off its core {off}");
}
