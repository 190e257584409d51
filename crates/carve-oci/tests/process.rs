//! Process properties, seccomp actions, hooks and the console socket, through the real binary.

mod common;
use common::*;
use serde_json::{json, Value};

#[test]
fn user_groups_umask_cwd_env_rlimits_caps_nnp_oom_sysctl() {
    if !require_root() {
        return;
    }
    let script = "id -u; id -g; id -G; umask; pwd; echo $FOO; echo $HOME; ulimit -n; \
        grep CapEff /proc/self/status; grep CapBnd /proc/self/status; grep CapAmb /proc/self/status; \
        grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj; \
        cat /proc/sys/kernel/shmmni; grep Cpus_allowed_list /proc/self/status";
    let mut e = Env::new("proc", &["sh", "-c", script]);
    let p = &mut e.config["process"];
    p["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [2000, 2001], "umask": 63});
    p["cwd"] = json!("/tmp");
    p["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    p["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]);
    p["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    p["noNewPrivileges"] = json!(true);
    p["oomScoreAdj"] = json!(500);
    p["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    p["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    e.config["linux"]["sysctl"] = json!({"kernel.shmmni": "1234"});
    e.write_config();
    let out = e.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1000");
    assert_eq!(l[1], "1001");
    let groups: Vec<&str> = l[2].split_whitespace().collect();
    assert!(
        groups.contains(&"2000") && groups.contains(&"2001"),
        "{}",
        l[2]
    );
    assert_eq!(l[3], "0077");
    assert_eq!(l[4], "/tmp");
    assert_eq!(l[5], "bar baz");
    assert_eq!(l[6], "/", "HOME for a uid without passwd entry");
    assert_eq!(l[7], "321");
    // CAP_KILL = 5, CAP_NET_BIND_SERVICE = 10, CAP_CHOWN = 0
    // a non-root exec keeps only the ambient capabilities in its effective set
    assert!(l[8].ends_with(&format!("{:016x}", 1u64 << 10)), "{}", l[8]);
    assert!(
        l[9].ends_with(&format!("{:016x}", 1u64 | (1 << 5) | (1 << 10))),
        "{}",
        l[9]
    );
    assert!(
        l[10].ends_with(&format!("{:016x}", 1u64 << 10)),
        "{}",
        l[10]
    );
    assert!(l[11].ends_with('1'), "{}", l[11]);
    assert_eq!(l[12], "500");
    assert_eq!(l[13], "1234");
    assert!(l[14].contains("Cpus_allowed_list"));
}

#[test]
fn rlimit_and_oom_errors_name_the_missing_capability() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("rlim", &["true"]);
    e.config["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": 1u64 << 30, "hard": 1u64 << 30}]);
    e.write_config();
    let (code, _, err) = e.run();
    if caps_has_sys_resource() {
        // With CAP_SYS_RESOURCE (e.g. in the v2 guest) 2^30 can still exceed fs.nr_open: then the
        // error names the rlimit and does not blame the capability.
        assert!(
            code == 0 || (err.contains("RLIMIT_NOFILE") && !err.contains("CAP_SYS_RESOURCE")),
            "{err}"
        );
        e.assert_gone();
        return;
    }
    assert_ne!(
        code, 0,
        "raising RLIMIT_NOFILE to 2^30 succeeded without CAP_SYS_RESOURCE"
    );
    assert!(
        err.contains("RLIMIT_NOFILE") && err.contains("CAP_SYS_RESOURCE"),
        "{err}"
    );
    e.assert_gone();
}

fn caps_has_sys_resource() -> bool {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = s.lines().find(|l| l.starts_with("CapEff")).unwrap();
    u64::from_str_radix(eff.split_whitespace().nth(1).unwrap(), 16).unwrap() & (1 << 24) != 0
}

fn seccomp_env(profile: Value, script: &str) -> Env {
    let mut e = Env::new("secc", &["sh", "-c", script]);
    e.config["linux"]["seccomp"] = profile;
    e.write_config();
    e
}

#[test]
fn seccomp_errno_kill_trap_log_trace_and_argument_conditions() {
    if !require_root() {
        return;
    }
    // errno with a custom value; default allow
    let e = seccomp_env(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                            {"names": ["no_such_syscall_name"], "action": "SCMP_ACT_ERRNO"}]}),
        "mkdir /tmp/d 2>&1; echo rc=$?",
    );
    let out = e.run_ok();
    assert!(
        out.contains("Permission denied") && out.contains("rc=1"),
        "{out}"
    );
    // kill_process: the shell dies of SIGSYS (exit 128+31)
    let e = seccomp_env(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_KILL_PROCESS"}]}),
        "echo before; exec chroot / true; echo after",
    );
    let (code, out, _) = e.run();
    assert!(out.contains("before") && !out.contains("after"), "{out}");
    assert_eq!(code, 128 + libc::SIGSYS, "{out}");
    // trap: SIGSYS delivered (default action kills too)
    let e = seccomp_env(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_TRAP"}]}),
        "exec chroot / true",
    );
    let (code, _, _) = e.run();
    assert_eq!(code, 128 + libc::SIGSYS);
    // kill (thread) of a single-threaded process
    let e = seccomp_env(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_KILL"}]}),
        "exec chroot / true",
    );
    let (code, _, _) = e.run();
    assert_eq!(code, 128 + libc::SIGSYS);
    // log and trace (no tracer: ENOSYS) are allowed to run / fail softly
    let e = seccomp_env(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_LOG"},
            {"names": ["rmdir"], "action": "SCMP_ACT_TRACE", "errnoRet": 1}]}),
        "pwd; rmdir /tmp 2>&1; echo rc=$?",
    );
    let out = e.run_ok();
    assert!(out.starts_with("/\n"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    // default errno with an allow list, and an argument condition: personality(0xffffffff) is
    // allowed (a query), personality(8) is refused
    let allow: Vec<&str> = ALLOW.split_whitespace().collect();
    let e = seccomp_env(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": [
            {"names": allow, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]}]}),
        "echo allowed; setarch linux32 true 2>&1; echo rc=$?; uname -m",
    );
    let out = e.run_ok();
    assert!(out.contains("allowed"), "{out}");
    assert!(
        out.contains("rc=1") || out.contains("Operation not permitted"),
        "{out}"
    );
}

/// Syscalls busybox sh and a few applets need (the rest get the default errno).
const ALLOW: &str = "read write openat open close fstat newfstatat stat lstat statx mmap munmap mprotect brk \
    rt_sigaction rt_sigprocmask rt_sigreturn ioctl access execve exit exit_group getpid getppid getuid \
    geteuid getgid getegid wait4 clone clone3 fork vfork fcntl dup dup2 dup3 pipe pipe2 getcwd chdir \
    uname arch_prctl set_tid_address set_robust_list prlimit64 getrandom readlink readlinkat lseek \
    getdents64 sysinfo setpgid getpgid getpgrp sigaltstack futex poll ppoll pselect6 select \
    sched_getaffinity rseq faccessat faccessat2 getrlimit kill tgkill gettid writev readv";

#[test]
fn hooks_run_in_order_with_state_and_time_out() {
    if !require_root() {
        return;
    }
    let e = Env::new(
        "hooks",
        &[
            "sh",
            "-c",
            "cat /hookout/startContainer >/dev/null 2>&1; sleep 1000",
        ],
    );
    let out = e.dir.path().join("hookout");
    std::fs::create_dir_all(&out).unwrap();
    let mut e = e;
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}; echo {name} >> {}/order", out.display(), out.display())]});
    // startContainer runs in the container: /bin/sh is the container's busybox, writing into a
    // bind mount of the host dir.
    let in_ct = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > /hookout/{name}; echo {name} >> /hookout/order")]});
    e.config["hooks"] = json!({
        "prestart": [hook("prestart")],
        "createRuntime": [hook("createRuntime")],
        "createContainer": [hook("createContainer")],
        "startContainer": [in_ct("startContainer")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")]
    });
    e.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/hookout", "type": "bind", "source": out, "options": ["rbind"]}),
    );
    e.config["annotations"] = json!({"org.example.k": "v"});
    e.write_config();
    let g = e.create_started();
    e.ok(&["delete", "--force", &e.id]);
    drop(g);
    let order = std::fs::read_to_string(out.join("order")).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    for (name, status) in [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let st: Value = serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap();
        assert_eq!(st["id"], json!(e.id), "{name}: {st}");
        assert_eq!(st["status"], status, "{name}: {st}");
        assert_eq!(st["bundle"], json!(e.bundle), "{name}");
        assert_eq!(st["annotations"]["org.example.k"], "v", "{name}");
    }
    e.assert_gone();

    // a hook that times out fails create and leaves nothing
    let mut e = Env::new("hookto", &["true"]);
    e.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    e.write_config();
    let t = std::time::Instant::now();
    e.fails_with(
        &["create", "--bundle", e.bundle.to_str().unwrap(), &e.id],
        &["timed out"],
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
    e.assert_gone();
    // a failing prestart hook names itself
    let mut e = Env::new("hookfail", &["true"]);
    e.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]});
    e.write_config();
    e.create_refused(&["prestart", "nope", "3"]);
}

#[test]
fn terminal_master_goes_to_the_console_socket() {
    use std::os::fd::AsRawFd;
    if !require_root() {
        return;
    }
    let mut e = Env::new("tty", &["sh", "-c", "tty; echo term-ok"]);
    e.config["process"]["terminal"] = json!(true);
    e.write_config();
    let sock_path = e.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let b = e.bundle.to_str().unwrap().to_string();
    let _g = e.create_with(&["--console-socket", sock_path.to_str().unwrap()]);
    let (path, master_fd) = fdpass::accept_with_fd(&listener);
    let master = master_fd.as_raw_fd();
    assert!(String::from_utf8_lossy(&path).starts_with("/dev/pts/"));
    e.ok(&["start", &e.id]);
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        // SAFETY: read into a live buffer from the master we received.
        let r = unsafe { libc::read(master, chunk.as_mut_ptr().cast(), chunk.len()) };
        if r <= 0 {
            break;
        }
        out.extend_from_slice(&chunk[..r as usize]);
        if String::from_utf8_lossy(&out).contains("term-ok") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("/dev/pts/0") && text.contains("term-ok"),
        "{text}"
    );
    drop(master_fd);
    let _ = b;
}

#[test]
fn seccomp_notify_fd_goes_to_the_listener_with_the_state() {
    if !require_root() {
        return;
    }
    let mut e = Env::new(
        "notify",
        &[
            "sh",
            "-c",
            "mkdir /tmp/n 2>/tmp/res; echo rc=$? >> /tmp/res",
        ],
    );
    let sock = e.dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    e.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock, "listenerMetadata": "meta-1",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    e.write_config();
    let _g = e.create();
    let (st, fd) = fdpass::recv_listener(&listener);
    assert_eq!(st["fds"], json!(["seccompFd"]));
    assert_eq!(st["metadata"], "meta-1");
    assert_eq!(st["state"]["id"], json!(e.id));
    assert_eq!(st["pid"], e.state()["pid"]);
    // Nobody answers: closing the listener fd makes notified syscalls fail with ENOSYS.
    drop(fd);
    e.ok(&["start", &e.id]);
    e.wait_status("stopped");
    let res = std::fs::read_to_string(e.rootfs().join("tmp/res")).unwrap();
    assert!(
        res.contains("Function not implemented") && res.contains("rc=1"),
        "{res}"
    );
    assert!(!e.rootfs().join("tmp/n").exists());
}

#[test]
fn personality_affinity_and_exec_into_a_user_namespace() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("pers", &["sleep", "1000"]);
    e.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    e.map_user_ns(200000);
    e.write_config();
    let _g = e.create_started();
    // exec joins the user namespace (uid 0 inside, 200000 outside) and every other one
    let p = e.dir.path().join("p.json");
    std::fs::write(&p, serde_json::to_vec(&json!({
        "args": ["sh", "-c", "id -u; uname -m; grep Cpus_allowed_list /proc/self/status; echo $$"],
        "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"],
        "execCPUAffinity": {"initial": "0", "final": "0"}
    })).unwrap()).unwrap();
    let out = e.ok(&["exec", "--process", p.to_str().unwrap(), &e.id]);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "0", "{out}");
    assert_eq!(
        l[1], "i686",
        "exec'd processes get the container's personality too: {out}"
    );
    assert!(l[2].ends_with("\t0") || l[2].ends_with(" 0"), "{out}");
    assert_ne!(l[3], "1");
    let init = e.state()["pid"].as_i64().unwrap();
    let map = std::fs::read_to_string(format!("/proc/{init}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"]
    );
    // init itself runs with the LINUX32 personality
    let pers = std::fs::read_to_string(format!("/proc/{init}/personality")).unwrap();
    assert_eq!(
        u32::from_str_radix(pers.trim(), 16).unwrap() & 0xff,
        0x08,
        "{pers}"
    );
    e.ok(&["delete", "--force", &e.id]);
    e.assert_gone();
}
