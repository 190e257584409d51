//! `--preserve-fds N` (issue 12 item 3): with fewer than N extra fds open carve-oci refuses at
//! once, as runc 1.1 does (`unable to stat preserved-fd 0 (of 100)`), leaving nothing; with
//! them open the program sees exactly stdio and those fds — never the runtime's own channel,
//! listener, lock or log fds, neither through `run` nor `create` + `start` nor `exec`.

mod common;

use common::*;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Spawns carve-oci (or `prog`) with only stdio open plus `fds` dup'ed to 3, 4, … and `leak`
/// dup'ed to fd 9 (not preserved: it must not show up).
fn spawn(
    prog: &str,
    args: &[&str],
    fds: Vec<i32>,
    leak: Option<i32>,
    out: &std::path::Path,
) -> Child {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap());
    // SAFETY: between fork and exec only dup2/close_range on the fd table.
    unsafe {
        cmd.pre_exec(move || {
            // Move the fds out of the way first, then into place; everything else above stdio
            // (the test harness's own fds) is closed.
            for (i, fd) in fds.iter().enumerate() {
                libc::dup2(*fd, 100 + i as i32);
            }
            if let Some(l) = leak {
                libc::dup2(l, 200);
            }
            libc::syscall(libc::SYS_close_range, 3, 99, 0);
            for i in 0..fds.len() as i32 {
                libc::dup2(100 + i, 3 + i);
            }
            if leak.is_some() {
                libc::dup2(200, 9);
            }
            libc::syscall(libc::SYS_close_range, 100, u32::MAX, 0);
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// Waits for `c` with a deadline; kills it and fails naming `what` when it does not end.
fn wait_bounded(c: &mut Child, what: &str, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("{what} did not return within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `prog --root ROOT ARGS…` through [`spawn`] (stdout to `out`), waits up to `limit`
/// seconds; returns its exit code and stderr.
fn run_with_fds(
    prog: &str,
    root: &str,
    args: &[&str],
    fds: Vec<i32>,
    leak: Option<i32>,
    out: &std::path::Path,
    limit: u64,
) -> (i32, String) {
    let mut all = vec!["--root", root];
    all.extend_from_slice(args);
    let mut c = spawn(prog, &all, fds, leak, out);
    let what = format!("{prog} {}", args.join(" "));
    let code = wait_bounded(&mut c, &what, Duration::from_secs(limit));
    (
        code,
        std::fs::read_to_string(out.with_extension("err")).unwrap(),
    )
}

#[test]
fn preserve_fds_beyond_the_open_ones_is_refused_at_once_as_runc_does() {
    if !require_root() {
        return;
    }
    let e = Env::new("pfdno", &["true"]);
    let b = e.bundle.to_str().unwrap().to_string();
    let root = e.root.to_str().unwrap().to_string();
    // (--preserve-fds N, extra fds open, the first missing one the error names): one fd short,
    // the error names the first missing one.
    for (n, open, missing) in [("100", 0, 0), ("2", 0, 0), ("2", 1, 1)] {
        let null = std::fs::File::open("/dev/null").unwrap();
        let out = e.dir.path().join(format!("refused-{n}-{open}"));
        let args = ["run", "--preserve-fds", n, "--bundle", &b, &e.id];
        let fds = vec![null.as_raw_fd(); open];
        let (code, err) = run_with_fds(BIN, &root, &args, fds, None, &out, 10);
        assert_eq!(code, 1, "{err}");
        let want = format!("unable to stat preserved-fd {missing} (of {n})");
        assert!(err.contains(&want), "{err}");
        e.assert_gone();
    }
    // runc refuses the same, in the same words.
    let out = e.dir.path().join("runc");
    let runc_root = e.dir.path().join("runc-state");
    let args = ["run", "--preserve-fds", "100", "--bundle", &b, &e.id];
    let (code, err) = run_with_fds(
        "runc",
        runc_root.to_str().unwrap(),
        &args,
        vec![],
        None,
        &out,
        20,
    );
    assert_ne!(code, 0, "{err}");
    // (runc's own Go runtime holds a few fds from 3 on, so its first missing one is later)
    assert!(
        err.contains("unable to stat preserved-fd") && err.contains("(of 100)"),
        "runc: {err}"
    );
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["delete", "--force", &e.id])
        .output();
}

/// Runs carve-oci `args` (a `--preserve-fds 3` command) with a pipe's write end, a file holding
/// "four" and /dev/null preserved as fds 3-5 and `/` leaked at fd 9; asserts it succeeds and
/// returns the pipe's read end (the write end is closed here, so it reads to the program's end).
fn with_three_fds(root: &str, args: &[&str], out: &std::path::Path) -> std::fs::File {
    let mut p = [0; 2];
    // SAFETY: p is a valid array of two ints for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just made both fds; each gets exactly one owner here.
    let (r, w) = unsafe {
        (
            std::fs::File::from_raw_fd(p[0]),
            std::fs::File::from_raw_fd(p[1]),
        )
    };
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(b"four\n").unwrap();
    f.rewind().unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let leak = std::fs::File::open("/").unwrap();
    let fds = vec![w.as_raw_fd(), f.as_raw_fd(), null.as_raw_fd()];
    let (code, err) = run_with_fds(BIN, root, args, fds, Some(leak.as_raw_fd()), out, 30);
    assert_eq!(code, 0, "{err}");
    r
}

/// The program sees exactly 0-2 and the preserved fds: a pipe it writes to, a file it reads,
/// /dev/null; not fd 9 that the caller leaked, not a runtime fd.
#[test]
fn preserved_fds_pass_exactly_and_the_runtimes_own_never_leak() {
    if !require_root() {
        return;
    }
    let script = "ls /proc/self/fd | tr '\\n' ' '; echo; echo hello >&3; cat <&4";
    let e = Env::new("pfdyes", &["sh", "-c", script]);
    let b = e.bundle.to_str().unwrap().to_string();
    let root = e.root.to_str().unwrap().to_string();
    let check = |out: &std::path::Path, mut pipe_r: std::fs::File| {
        let out = std::fs::read_to_string(out).unwrap();
        let mut lines = out.lines();
        let fds: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        // ls's own directory fd is the next free one: 6
        assert_eq!(
            fds,
            ["0", "1", "2", "3", "4", "5", "6"],
            "fds inside: {out}"
        );
        assert_eq!(lines.next(), Some("four"), "{out}");
        let mut got = String::new();
        pipe_r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello\n");
    };

    // run
    let out = e.dir.path().join("run");
    let r = with_three_fds(
        &root,
        &["run", "--preserve-fds", "3", "--bundle", &b, &e.id],
        &out,
    );
    check(&out, r);
    e.assert_gone();

    // create (the fds given to create) + start: init waits with them across the commands.
    let out = e.dir.path().join("create");
    let g = Guard { env: &e };
    let r = with_three_fds(
        &root,
        &["create", "--preserve-fds", "3", "--bundle", &b, &e.id],
        &out,
    );
    e.ok(&["start", &e.id]);
    e.wait_status("stopped");
    check(&out, r);
    e.ok(&["delete", &e.id]);
    drop(g);
    e.assert_gone();

    // exec --preserve-fds 3 into a running container.
    let e = Env::new("pfdexec", &["sleep", "60"]);
    let root = e.root.to_str().unwrap().to_string();
    let _g = e.create_started();
    let out = e.dir.path().join("exec");
    let exec = ["exec", "--preserve-fds", "3", &e.id, "sh", "-c", script];
    let r = with_three_fds(&root, &exec, &out);
    check(&out, r);
    // exec with too few: refused with runc's words and exec's status 255.
    let out = e.dir.path().join("exec-short");
    let args = ["exec", "--preserve-fds", "100", &e.id, "true"];
    let (code, err) = run_with_fds(BIN, &root, &args, vec![], None, &out, 10);
    assert_eq!(code, 255, "{err}");
    assert!(
        err.contains("unable to stat preserved-fd 0 (of 100)"),
        "{err}"
    );
}
