//! runtime-spec conformance, config-linux.md and the shape rules of config.md: namespaces,
//! devices, the device allow-list order, cgroup paths and limits, refused features, seccomp
//! shape rules, and the MUST (NOT)s on single fields. Each error test checks that the message
//! names the JSON path and that nothing is left behind.

mod common;
use common::*;
use serde_json::{json, Value};

/// create fails; the error names `field`; nothing is left.
fn refused(e: &Env, field: &str, also: &str) {
    e.write_config();
    e.create_refused(&[field, also]);
}

/// For each (JSON pointer, value, field, message): the config with that one value set is refused
/// naming the field.
fn refused_each(e: &mut Env, cases: Vec<(&str, Value, &str, &str)>) {
    for (at, v, field, msg) in cases {
        let saved = e.config.clone();
        set(e, at, v);
        refused(e, field, msg);
        e.config = saved;
    }
}

fn set(e: &mut Env, pointer: &str, v: Value) {
    let mut cur = &mut e.config;
    for k in pointer.trim_start_matches('/').split('/') {
        cur = &mut cur[k];
    }
    *cur = v;
}

#[test]
fn namespace_paths_must_be_absolute_and_of_the_entrys_type() {
    if !require_root() {
        return;
    }
    let ns = NetNs::new();
    let mut e = Env::new("nspath", &["true"]);
    let list = e.config["linux"]["namespaces"].as_array_mut().unwrap();
    let net = list.iter().position(|n| n["type"] == "network").unwrap();
    list[net]["path"] = json!("/proc/self/ns/uts");
    refused(
        &e,
        &format!("linux.namespaces[{net}].path"),
        "is not a net namespace",
    );
    e.config["linux"]["namespaces"][net]["path"] = json!(&ns.path()[1..]);
    refused(
        &e,
        &format!("linux.namespaces[{net}].path"),
        "not an absolute path",
    );
    // a path of the right type is joined
    e.config["linux"]["namespaces"][net]["path"] = json!(ns.path());
    e.config["process"]["args"] = json!(["readlink", "/proc/self/ns/net"]);
    e.write_config();
    let want = std::fs::metadata(ns.path()).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(e.run_ok().trim(), format!("net:[{}]", want.ino()));
}

#[test]
fn an_omitted_namespace_type_is_inherited_from_the_runtime() {
    if !require_root() {
        return;
    }
    let mut e = Env::new(
        "nsinh",
        &[
            "sh",
            "-c",
            "for n in net ipc uts cgroup pid; do readlink /proc/self/ns/$n; done",
        ],
    );
    e.config["linux"]["namespaces"] = json!([{"type": "mount"}]);
    // a hostname needs a uts namespace of the container's own (it would rename the host)
    e.config.as_object_mut().unwrap().remove("hostname");
    e.write_config();
    let out = e.run_ok();
    let want: Vec<String> = ["net", "ipc", "uts", "cgroup", "pid"]
        .iter()
        .map(|n| host_ns(n))
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
}

#[test]
fn duplicate_namespace_types_are_an_error() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("nsdup", &["true"]);
    let list = e.config["linux"]["namespaces"].as_array_mut().unwrap();
    list.push(json!({"type": "ipc"}));
    let n = list.len() - 1;
    refused(
        &e,
        &format!("linux.namespaces[{n}].type"),
        "duplicate namespace ipc",
    );
}

#[test]
fn a_user_namespace_does_not_chown_the_rootfs() {
    if !require_root() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let mut e = Env::new("usrown", &["sh", "-c", "id -u; touch /tmp/made"]);
    e.map_user_ns(0);
    e.write_config();
    let before: Vec<(u32, u32)> = ["", "bin", "bin/busybox", "etc/passwd"]
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(e.rootfs().join(p)).unwrap();
            (m.uid(), m.gid())
        })
        .collect();
    assert_eq!(e.run_ok().trim(), "0");
    let after: Vec<(u32, u32)> = ["", "bin", "bin/busybox", "etc/passwd"]
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(e.rootfs().join(p)).unwrap();
            (m.uid(), m.gid())
        })
        .collect();
    assert_eq!(before, after);
}

#[test]
fn the_default_devices_and_configured_ones_with_mode_and_owner() {
    if !require_root() {
        return;
    }
    let mut e = Env::new(
        "devs",
        &[
            "sh",
            "-c",
            "for d in null zero full random urandom tty fuse; do \
            stat -c \"%n %F %t:%T %a %u:%g\" /dev/$d; done; readlink /dev/ptmx; \
            head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok",
        ],
    );
    e.config["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10,
        "minor": 229, "fileMode": 416, "uid": 1000, "gid": 1001}]);
    e.config["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}));
    e.write_config();
    let out = e.run_ok();
    // The spec's default devices (config-linux.md "Default Devices"), as stat prints them (major
    // and minor in hex), then the configured one: fileMode is decimal in JSON, 416 = 0640.
    let char_dev = "character special file";
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!("/dev/null {char_dev} 1:3 666 0:0"),
            format!("/dev/zero {char_dev} 1:5 666 0:0"),
            format!("/dev/full {char_dev} 1:7 666 0:0"),
            format!("/dev/random {char_dev} 1:8 666 0:0"),
            format!("/dev/urandom {char_dev} 1:9 666 0:0"),
            format!("/dev/tty {char_dev} 5:0 666 0:0"),
            format!("/dev/fuse {char_dev} a:e5 640 1000:1001"),
            "pts/ptmx".into(),
            "4".into(),
            "null-ok".into(),
        ]
    );
}

#[test]
fn a_file_at_a_device_path_that_is_not_that_device_is_an_error() {
    if !require_root() {
        return;
    }
    // without a /dev tmpfs the image's /dev is used as it is
    let mut e = Env::new("devx", &["true"]);
    let mounts: Vec<Value> = e.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["destination"].as_str().unwrap().starts_with("/dev"))
        .cloned()
        .collect();
    e.config["mounts"] = json!(mounts);
    e.config["linux"]["maskedPaths"] = json!([]);
    std::fs::write(e.rootfs().join("dev/mydev"), "a file\n").unwrap();
    e.config["linux"]["devices"] =
        json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3}]);
    refused(&e, "/dev/mydev", "a regular file");
    // and a path listed twice is refused before anything runs
    e.config["linux"]["devices"] = json!([
        {"path": "/dev/mydev2", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev/mydev2", "type": "c", "major": 1, "minor": 5}
    ]);
    refused(&e, "linux.devices[1].path", "listed twice");
}

#[test]
fn device_allow_list_entries_apply_in_order() {
    if !require_root() || pure_v2() {
        return;
    }
    // The host's /dev/fuse is bound in (not a linux.devices entry, which the runtime always
    // allows, as runc); only the order of the rules differs.
    let probe = "(exec 3</fuse) 2>/dev/null && echo open || echo denied";
    let bind = json!({"destination": "/fuse", "type": "none", "source": "/dev/fuse",
        "options": ["bind"]});
    let mut results = Vec::new();
    for rules in [
        json!([{"allow": false, "access": "rwm"},
               {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]),
        json!([{"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
               {"allow": false, "access": "rwm"}]),
    ] {
        let mut e = Env::new("devord", &["sh", "-c", probe]);
        e.config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(bind.clone());
        e.config["linux"]["resources"]["devices"] = rules;
        e.write_config();
        results.push(e.run_ok().trim().to_string());
    }
    assert_eq!(results, ["open", "denied"]);
}

#[test]
fn cgroups_path_is_relative_to_the_mount_point_and_always_the_same_place() {
    if !require_root() || pure_v2() {
        return;
    }
    let mut e = Env::new("cgp", &["sleep", "1000"]);
    let path = format!("/carve-cgp/{}", e.id);
    e.config["linux"]["cgroupsPath"] = json!(path);
    e.write_config();
    struct Rm;
    impl Drop for Rm {
        fn drop(&mut self) {
            for (mp, _) in cgroup_hierarchies() {
                let _ = std::fs::remove_dir(mp.join("carve-cgp"));
            }
        }
    }
    let _rm = Rm;
    for _ in 0..2 {
        let _g = e.create();
        let pid = e.init_pid();
        let procs = read(format!("/sys/fs/cgroup/pids{path}/cgroup.procs"));
        assert_eq!(procs, pid.to_string());
        let line = read(format!("/proc/{pid}/cgroup"));
        assert!(line.contains(&format!(":pids:{path}")), "{line}");
        e.ok(&["delete", "--force", &e.id]);
        e.assert_gone();
    }
}

#[test]
fn a_pids_limit_of_zero_means_no_limit_as_runc() {
    if !require_root() || pure_v2() {
        return;
    }
    // runtime-spec 1.3 says 0 SHOULD be a limit; runc (and so docker/containerd clients that
    // send 0 for "unset") treat it as none: carve-oci follows runc (docs/oci-conformance.md).
    let mut e = Env::new("pids0", &["sleep", "1000"]);
    e.config["linux"]["resources"]["pids"] = json!({"limit": 0});
    e.write_config();
    let _g = e.create();
    assert_eq!(
        read(format!("/sys/fs/cgroup/pids/{}/pids.max", e.id)),
        "max"
    );
    let out = e.ok(&["exec", &e.id, "sh", "-c", "true & wait; echo forked"]);
    assert_eq!(out.trim(), "forked");
}

#[test]
fn check_before_update_refuses_a_limit_below_the_usage() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("cbu", &["sleep", "1000"]);
    e.config["linux"]["resources"]["memory"] =
        json!({"limit": 268435456, "checkBeforeUpdate": true});
    e.write_config();
    let _g = e.create_started();
    // with checkBeforeUpdate in the update the runtime refuses itself (cgroup v2 would OOM-kill)
    let r = e.dir.path().join("res.json");
    std::fs::write(
        &r,
        r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
    )
    .unwrap();
    e.fails_with(
        &["update", "-r", r.to_str().unwrap(), &e.id],
        &["checkBeforeUpdate"],
    );
    let lim = read(cg_file(
        &format!("memory/{}/memory.limit_in_bytes", e.id),
        &format!("{}/memory.max", e.id),
    ));
    assert_eq!(lim, "268435456", "the limit stayed");
}

#[test]
fn unsupported_features_are_refused_naming_the_field() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("unsup", &["true"]);
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "/linux/netDevices",
            json!({"eth0": {"name": "eth1"}}),
            "linux.netDevices",
            "not supported",
        ),
        (
            "/linux/intelRdt",
            json!({"closID": "x", "l3CacheSchema": "L3:0=f"}),
            "linux.intelRdt",
            "not supported",
        ),
        (
            "/linux/resources/rdma",
            json!({"mlx5_0": {"hcaHandles": 3}}),
            "rdma",
            "not mounted",
        ),
        (
            "/windows",
            json!({"layerFolders": ["C:\\l"]}),
            "windows",
            "not supported",
        ),
        (
            "/solaris",
            json!({"milestone": "x"}),
            "solaris",
            "not supported",
        ),
    ];
    refused_each(&mut e, cases);
}

#[test]
fn field_rules_of_config_json_are_enforced() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("rules", &["true"]);
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("/ociVersion", json!("1.2"), "ociVersion", "SemVer"),
        ("/annotations", json!({"": "x"}), "annotations", "empty"),
        (
            "/linux/maskedPaths",
            json!(["proc/kcore"]),
            "linux.maskedPaths[0]",
            "absolute",
        ),
        (
            "/linux/readonlyPaths",
            json!(["proc/sys"]),
            "linux.readonlyPaths[0]",
            "absolute",
        ),
        (
            "/linux/personality",
            json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}),
            "linux.personality.flags",
            "not supported",
        ),
        ("/process/cwd", json!("tmp"), "process.cwd", "absolute"),
        ("/process/args", json!([]), "process.args", "non-empty"),
        (
            "/hooks",
            json!({"poststop": [{"path": "bin/true"}]}),
            "hooks.poststop[0].path",
            "absolute",
        ),
        (
            "/hooks",
            json!({"prestart": [{"path": "/bin/true", "timeout": 0}]}),
            "hooks.prestart[0].timeout",
            "positive",
        ),
        (
            "/root/path",
            json!("no-such-rootfs"),
            "root.path",
            "not a directory",
        ),
        (
            "/linux/sysctl",
            json!({"kernel.panic": "1"}),
            "linux.sysctl",
            "namespace",
        ),
        ("/root", Value::Null, "root", "missing"),
        // a hostname without a uts namespace of the container's own would rename the host
        (
            "/linux/namespaces",
            json!([{"type": "mount"}, {"type": "pid"}]),
            "hostname",
            "namespace",
        ),
        (
            "/annotations",
            json!({"k": 1}),
            "annotations.k",
            "expected a string",
        ),
        (
            "/linux/devices",
            json!([{"path": "/mydev", "type": "c", "major": 1, "minor": 3}]),
            "linux.devices[0].path",
            "under /dev",
        ),
        (
            "/linux/resources/cpu",
            json!({"quota": 1000, "burst": 5000, "period": 100000}),
            "cpu.cfs_burst_us",
            "Invalid argument",
        ),
        (
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/nonexistent-carve.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "/nonexistent-carve.sock",
            "No such file",
        ),
    ];
    refused_each(&mut e, cases);
}

#[test]
fn seccomp_shape_rules_are_enforced() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("scshape", &["true"]);
    for (sc, field, msg) in [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}),
            "linux.seccomp.listenerMetadata",
            "listenerPath",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1}),
            "linux.seccomp.defaultErrnoRet",
            "only valid",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}),
            "linux.seccomp.syscalls[0].errnoRet",
            "only valid",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}),
            "linux.seccomp.syscalls[0].names",
            "at least one",
        ),
    ] {
        e.config["linux"]["seccomp"] = sc;
        refused(&e, field, msg);
    }
}

#[test]
fn unknown_properties_are_ignored() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("unknown", &["true"]);
    e.config["com.example.extension"] = json!({"x": 1});
    e.config["process"]["com.example.field"] = json!(true);
    e.config["linux"]["com.example.field"] = json!([1, 2]);
    e.config["annotations"] = json!({"org.example.unknown-key": "v"});
    e.write_config();
    let (code, out, err) = e.run();
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_terminal_gets_dev_console_bound_to_its_pty_and_the_console_size() {
    if !require_root() {
        return;
    }
    use std::os::fd::AsRawFd;
    let mut e = Env::new(
        "cons",
        &[
            "sh",
            "-c",
            "stat -c '%t:%T' /dev/console; stat -c '%t:%T' $(tty); stty size; echo cons-ok",
        ],
    );
    e.config["process"]["terminal"] = json!(true);
    e.config["process"]["consoleSize"] = json!({"height": 33, "width": 99});
    e.write_config();
    let sock = e.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let _g = e.create_with(&["--console-socket", sock.to_str().unwrap()]);
    let (_, master) = fdpass::accept_with_fd(&listener);
    e.ok(&["start", &e.id]);
    let mut out = Vec::new();
    let mut chunk = [0u8; 256];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !String::from_utf8_lossy(&out).contains("cons-ok") {
        assert!(std::time::Instant::now() < deadline, "no output: {out:?}");
        // SAFETY: read into a live buffer from the master we received.
        let r = unsafe { libc::read(master.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        if r <= 0 {
            break;
        }
        out.extend_from_slice(&chunk[..r as usize]);
    }
    let text = String::from_utf8_lossy(&out);
    let l: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        l.len() >= 3 && l[0] == l[1] && l[0].starts_with("88:"),
        "{text}"
    );
    assert_eq!(l[2], "33 99", "consoleSize applies with a terminal: {text}");
}

#[test]
fn every_v1_resource_field_reaches_its_file() {
    if !require_root() || pure_v2() {
        return;
    }
    // One container with every linux.resources field this hybrid host's v1 controllers hold,
    // each read back from the host side. (io weight per device and leafWeight have no file
    // here: their errors are checked below.)
    let parts = read("/proc/partitions");
    let dev: Vec<u32> = parts
        .lines()
        .nth(2)
        .expect("a block device in /proc/partitions")
        .split_whitespace()
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    let (maj, min) = (dev[0], dev[1]);
    let mut e = Env::new("res", &["sleep", "1000"]);
    e.config["linux"]["resources"] = json!({
        "memory": {"limit": 134217728, "reservation": 67108864, "swap": 268435456,
            "swappiness": 20, "disableOOMKiller": true, "kernelTCP": 33554432,
            "useHierarchy": true, "kernel": 16777216},
        "cpu": {"shares": 300, "quota": 50000, "period": 100000, "burst": 10000, "idle": 0,
            "realtimeRuntime": 0, "realtimePeriod": 1000000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 77},
        "blockIO": {"weight": 300,
            "throttleWriteBpsDevice": [{"major": maj, "minor": min, "rate": 2097152}],
            "throttleReadIOPSDevice": [{"major": maj, "minor": min, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 200}]}
    });
    e.write_config();
    let _g = e.create();
    let f = |ctl: &str, file: &str| read(format!("/sys/fs/cgroup/{ctl}/{}/{file}", e.id));
    for (ctl, file, want) in [
        ("memory", "memory.limit_in_bytes", "134217728"),
        ("memory", "memory.soft_limit_in_bytes", "67108864"),
        ("memory", "memory.memsw.limit_in_bytes", "268435456"),
        ("memory", "memory.swappiness", "20"),
        ("memory", "memory.kmem.tcp.limit_in_bytes", "33554432"),
        ("memory", "memory.use_hierarchy", "1"),
        ("cpu", "cpu.shares", "300"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_burst_us", "10000"),
        ("cpu", "cpu.idle", "0"),
        ("cpu", "cpu.rt_period_us", "1000000"),
        ("cpu", "cpu.rt_runtime_us", "0"),
        ("cpuset", "cpuset.cpus", "0"),
        ("cpuset", "cpuset.mems", "0"),
        ("pids", "pids.max", "77"),
        ("blkio", "blkio.bfq.weight", "300"),
        ("blkio", "blkio.throttle.write_bps_device", "2097152"),
        ("blkio", "blkio.throttle.read_iops_device", "100"),
        ("blkio", "blkio.throttle.write_iops_device", "200"),
    ] {
        let got = f(ctl, file);
        let want = if file.contains("throttle") {
            format!("{maj}:{min} {want}")
        } else {
            want.to_string()
        };
        let want = want.as_str();
        assert!(
            got == want || got.ends_with(&format!(" {want}")),
            "{ctl}/{file}: {got} != {want}"
        );
    }
    assert!(f("memory", "memory.oom_control").starts_with("oom_kill_disable 1"));
    // kernel (NOT RECOMMENDED; kmem limits are gone from cgroup v2 and deprecated in v1) is
    // ignored, as runc >= 1.1 does
    assert_eq!(
        f("memory", "memory.kmem.limit_in_bytes"),
        "9223372036854771712"
    );
    drop(_g);
    // what the kernel here cannot take is an error naming the file, and nothing is left
    for (bio, file) in [
        (json!({"leafWeight": 300}), "blkio.leaf_weight"),
        (
            json!({"weightDevice": [{"major": maj, "minor": min, "weight": 300}]}),
            "weight_device",
        ),
    ] {
        e.config["linux"]["resources"] = json!({"blockIO": bio});
        refused(&e, file, "");
    }
}

#[test]
fn cgroup_ownership_is_never_changed() {
    if !require_root() || pure_v2() {
        return;
    }
    // On cgroup v1 (this host) the spec says a runtime SHOULD NOT chown the container's cgroup,
    // even for a user namespace with its own cgroup namespace and a read-write cgroup mount.
    use std::os::unix::fs::MetadataExt;
    let mut e = Env::new("cgown", &["sleep", "1000"]);
    e.map_user_ns(100000);
    for m in e.config["mounts"].as_array_mut().unwrap() {
        if m["type"] == "cgroup" {
            m["options"] = json!(["nosuid", "noexec", "nodev", "relatime", "rw"]);
        }
    }
    e.write_config();
    let _g = e.create();
    let dir = std::path::PathBuf::from("/sys/fs/cgroup/pids").join(&e.id);
    for p in [dir.clone(), dir.join("cgroup.procs"), dir.join("tasks")] {
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!((md.uid(), md.gid()), (0, 0), "{}", p.display());
    }
}
