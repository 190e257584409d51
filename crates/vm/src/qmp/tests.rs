//! The protocol against a scripted peer on a socketpair.

use super::*;
use std::io::Read;
use std::thread::JoinHandle;

/// One step of the peer's script.
enum Step {
    /// Write this line.
    Say(&'static str),
    /// Read one command, check its name (and that an fd came with it if `fd`), answer
    /// `{"return": ret, "id": <its id>}` or an error when `ret` is None.
    Answer {
        command: &'static str,
        ret: Option<Value>,
        fd: bool,
    },
    /// Close the connection.
    Hangup,
}

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#;

fn ok(command: &'static str, ret: Value) -> Step {
    Step::Answer {
        command,
        ret: Some(ret),
        fd: false,
    }
}

/// A client connected to a peer that greets, accepts `qmp_capabilities` and then plays `script`.
fn peer(script: Vec<Step>) -> (QmpClient, JoinHandle<()>) {
    let (a, b) = UnixStream::pair().unwrap();
    let handshake = [Step::Say(GREETING), ok("qmp_capabilities", json!({}))];
    let h = std::thread::spawn(move || {
        let mut b = b;
        let mut pending = Vec::new();
        for step in handshake.into_iter().chain(script) {
            match step {
                Step::Say(line) => {
                    b.write_all(line.as_bytes()).unwrap();
                    b.write_all(b"\r\n").unwrap();
                }
                Step::Answer { command, ret, fd } => {
                    let (msg, got_fd) = read_line_with_fd(&mut b, &mut pending);
                    let v: Value = serde_json::from_str(&msg).unwrap();
                    assert_eq!(v["execute"], command, "peer expected {command}, got {v}");
                    assert_eq!(got_fd.is_some(), fd, "fd presence for {command}");
                    drop(got_fd); // closes the received fd
                    let id = v["id"].clone();
                    let reply = match ret {
                        Some(r) => json!({"return": r, "id": id}),
                        None => {
                            json!({"error": {"class": "GenericError", "desc": "nope"}, "id": id})
                        }
                    };
                    b.write_all(format!("{reply}\r\n").as_bytes()).unwrap();
                }
                Step::Hangup => return,
            }
        }
        // Keep the socket open until the client is done.
        let mut rest = Vec::new();
        let _ = b.read_to_end(&mut rest);
    });
    let c = QmpClient::handshake(a, Duration::from_secs(5)).unwrap();
    (c, h)
}

/// Closes the client and checks the peer played its whole script (its asserts passed).
fn finish(c: QmpClient, h: JoinHandle<()>) {
    drop(c);
    h.join().unwrap();
}

/// Reads one line, taking any fd that came with its bytes.
fn read_line_with_fd(
    b: &mut UnixStream,
    pending: &mut Vec<u8>,
) -> (String, Option<std::os::fd::OwnedFd>) {
    let mut fd = None;
    loop {
        if let Some(i) = pending.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            return (String::from_utf8(line).unwrap(), fd);
        }
        let mut buf = [0u8; 4096];
        let (n, fds) = carve_unix::recv_with_fds(b.as_fd(), &mut buf, 1).unwrap();
        assert!(n > 0, "client hung up");
        if let Some(f) = fds.into_iter().next() {
            fd = Some(f);
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn negotiates_and_runs_typed_commands() {
    let (mut c, h) = peer(vec![
        ok(
            "query-status",
            json!({"status": "running", "singlestep": false, "running": true}),
        ),
        ok(
            "query-cpus-fast",
            json!([
                {"thread-id": 101, "props": {"core-id": 0}, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"},
                {"thread-id": 102, "props": {"core-id": 1}, "qom-path": "/machine/unattached/device[1]", "cpu-index": 1, "target": "x86_64"}
            ]),
        ),
        ok("stop", json!({})),
        ok("cont", json!({})),
        ok("human-monitor-command", json!("QEMU 7.2.0 monitor\r\n")),
        ok("migrate", json!({})),
        ok("query-migrate", json!({"status": "active"})),
        ok(
            "query-migrate",
            json!({"status": "completed", "total-time": 12}),
        ),
    ]);
    assert_eq!(c.version["qemu"]["major"], 7);
    let s = c.query_status().unwrap();
    assert!(s.running);
    assert_eq!(s.status, "running");
    let cpus = c.query_cpus_fast().unwrap();
    assert_eq!(
        cpus.iter()
            .map(|x| (x.cpu_index, x.thread_id))
            .collect::<Vec<_>>(),
        vec![(0, 101), (1, 102)]
    );
    c.stop().unwrap();
    c.cont().unwrap();
    assert!(c
        .human_monitor_command("info version")
        .unwrap()
        .contains("7.2"));
    c.migrate("unix:/tmp/x.sock").unwrap();
    c.wait_migration(Duration::from_secs(5)).unwrap();
    finish(c, h);
}

#[test]
fn events_between_answers_are_queued() {
    let (mut c, h) = peer(vec![
        Step::Say(r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#),
        ok("stop", json!({})),
        Step::Say(r#"{"timestamp": {"seconds": 1, "microseconds": 3}, "event": "RESUME"}"#),
        Step::Say(
            r#"{"timestamp": {"seconds": 1, "microseconds": 4}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#,
        ),
    ]);
    c.stop().unwrap();
    assert_eq!(
        c.next_event(Duration::from_secs(1)).unwrap().unwrap().event,
        "STOP"
    );
    let e = c.wait_event("SHUTDOWN", Duration::from_secs(5)).unwrap();
    assert_eq!(e.data["reason"], "guest-shutdown");
    assert!(c.next_event(Duration::from_millis(50)).unwrap().is_none());
    finish(c, h);
}

#[test]
fn command_errors_carry_class_and_description() {
    let (mut c, h) = peer(vec![
        Step::Answer {
            command: "cont",
            ret: None,
            fd: false,
        },
        ok(
            "query-migrate",
            json!({"status": "failed", "error-desc": "disk full"}),
        ),
    ]);
    let e = c.cont().unwrap_err();
    assert_eq!(e.to_string(), "QMP command cont failed: GenericError: nope");
    let e = c.wait_migration(Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("disk full"), "{e}");
    finish(c, h);
}

#[test]
fn fds_travel_with_getfd() {
    let (mut c, h) = peer(vec![
        Step::Answer {
            command: "getfd",
            ret: Some(json!({})),
            fd: true,
        },
        ok("migrate", json!({})),
    ]);
    let f = tempfile::tempfile().unwrap();
    c.getfd("snap", std::os::fd::AsRawFd::as_raw_fd(&f))
        .unwrap();
    c.migrate("fd:snap").unwrap();
    finish(c, h);
}

#[test]
fn hangup_and_garbage_are_reported() {
    let (mut c, h) = peer(vec![Step::Hangup]);
    h.join().unwrap();
    assert!(matches!(c.query_status(), Err(QmpError::Closed)));
    // quit tolerates QEMU closing the socket first.
    c.quit().unwrap();

    let (a, mut b) = UnixStream::pair().unwrap();
    b.write_all(b"{\"hello\": 1}\r\n").unwrap();
    let e = QmpClient::handshake(a, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, QmpError::Protocol(_)), "{e}");

    let (a, _b) = UnixStream::pair().unwrap();
    let e = QmpClient::handshake(a, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e, QmpError::Timeout(_)), "{e}");
}

#[test]
fn mismatched_ids_are_protocol_errors() {
    let (mut c, h) = peer(vec![Step::Say(r#"{"return": {}, "id": 999}"#)]);
    let e = c.stop().unwrap_err();
    assert!(matches!(e, QmpError::Protocol(_)), "{e}");
    finish(c, h);
}
