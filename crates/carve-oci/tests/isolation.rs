//! Isolation through the real binary: each namespace (new and joined by path, user with maps,
//! time with offsets), mounts of each kind and option, devices, masked and read-only paths,
//! read-only root, --no-pivot, and symlinks in the rootfs that try to escape it.

mod common;
use common::*;
use serde_json::json;

#[test]
fn every_namespace_is_new_and_pid_1_is_the_process() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("ns", &["sh", "-c", "echo $$; hostname; cat /proc/sys/kernel/domainname; for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done"]);
    e.config["hostname"] = json!("carve-box");
    e.config["domainname"] = json!("carve.test");
    e.write_config();
    let out = e.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "carve-box");
    assert_eq!(lines[2], "carve.test");
    for (i, n) in ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
        .iter()
        .enumerate()
    {
        assert_ne!(lines[3 + i], host_ns(n), "{n} namespace is the host's");
        assert!(lines[3 + i].starts_with(n), "{}", lines[3 + i]);
    }
    // the cgroup namespace is rooted at the container's cgroup
    let e = Env::new("ns", &["cat", "/proc/self/cgroup"]);
    e.write_config();
    let out = e.run_ok();
    assert!(out.lines().all(|l| l.ends_with(":/")), "{out}");
}

#[test]
fn namespaces_joined_by_path_and_user_and_time_namespaces() {
    if !require_root() {
        return;
    }
    // join the host's network and uts namespaces by path
    let mut e = Env::new(
        "join",
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; echo $$",
        ],
    );
    let ns = e.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "network" && n["type"] != "uts");
    let me = std::process::id();
    ns.push(json!({"type": "network", "path": format!("/proc/{me}/ns/net")}));
    ns.push(json!({"type": "uts", "path": format!("/proc/{me}/ns/uts")}));
    e.config.as_object_mut().unwrap().remove("hostname");
    e.write_config();
    let out = e.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], host_ns("net"));
    assert_eq!(l[1], host_ns("uts"));
    assert_eq!(l[2], "1", "still pid 1 of a new pid namespace");

    // a user namespace with uid/gid maps: root inside is 100000 outside
    let mut e = Env::new(
        "user",
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; touch /tmp/x && echo wrote",
        ],
    );
    e.map_user_ns(100000);
    e.write_config();
    std::fs::set_permissions(
        e.rootfs().join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    let out = e.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "0");
    assert_eq!(
        l[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(l[2], "wrote");
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(e.rootfs().join("tmp/x")).unwrap());
    assert_eq!(owner, 100000);

    // a time namespace with offsets
    let mut e = Env::new(
        "time",
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/time; cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime",
        ],
    );
    e.add_namespace("time");
    e.config["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 86400, "nanosecs": 0}, "boottime": {"secs": 172800, "nanosecs": 0}});
    e.write_config();
    let out = e.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_ne!(l[0], host_ns("time"));
    assert!(out.contains("monotonic") && out.contains("86400"), "{out}");
    let up: u64 = l.last().unwrap().parse().unwrap();
    assert!(up >= 172800, "uptime {up} lacks the boottime offset");
}

#[test]
fn mounts_options_devices_masked_and_readonly_paths() {
    if !require_root() {
        return;
    }
    let host = tempfile::Builder::new()
        .prefix("carve-oci-host")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(host.path().join("sub")).unwrap();
    std::fs::write(host.path().join("file"), "hostfile").unwrap();
    let script = r#"
        grep ' /t ' /proc/self/mountinfo | grep -q 'nosuid,nodev,noexec' && echo tmpfs-flags
        grep ' /t ' /proc/mounts | grep -q 'size=1024k' && echo tmpfs-data
        cat /ro/file; touch /ro/new 2>/dev/null || echo ro-bind
        touch /rw/new && echo rw-bind
        touch /rro/sub/x 2>/dev/null || echo rro-recursive
        cat /onefile
        ls -l /dev/null | grep -q '^c' && echo dev-null
        echo x > /dev/null && echo dev-null-writable
        head -c 4 /dev/zero | wc -c
        test -c /dev/fuse && echo dev-fuse
        test -L /dev/ptmx && test -d /dev/pts && echo pts
        test -d /dev/shm && test -d /dev/mqueue && echo shm-mqueue
        test "$(wc -c < /proc/timer_list)" = 0 && echo masked-file
        test -z "$(ls /sys/firmware)" && echo masked-dir
        echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo readonly-path
        grep -q sysfs /proc/mounts && touch /sys/x 2>/dev/null || echo sys-ro
        ls /sys/fs/cgroup | grep -q memory && echo cgroup-mount
        touch /root-ro 2>/dev/null || echo root-ro
    "#;
    let mut e = Env::new("mnt", &["sh", "-c", script]);
    let m = e.config["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec", "size=1024k"]}));
    m.push(json!({"destination": "/ro", "type": "bind", "source": host.path(), "options": ["bind", "ro"]}));
    m.push(json!({"destination": "/rw", "type": "bind", "source": host.path(), "options": ["rbind", "rw"]}));
    m.push(json!({"destination": "/rro", "type": "bind", "source": host.path(), "options": ["rbind", "rro"]}));
    m.push(json!({"destination": "/onefile", "type": "bind", "source": host.path().join("file"), "options": ["bind"]}));
    e.config["linux"]["devices"] =
        json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}]);
    e.config["root"]["readonly"] = json!(true);
    e.write_config();
    // a submount under /rro to prove the read-only flag is recursive
    let out = e.run_ok();
    for want in [
        "tmpfs-flags",
        "tmpfs-data",
        "hostfile",
        "ro-bind",
        "rw-bind",
        "rro-recursive",
        "dev-null",
        "dev-null-writable",
        "4",
        "dev-fuse",
        "pts",
        "shm-mqueue",
        "masked-file",
        "masked-dir",
        "readonly-path",
        "sys-ro",
        "cgroup-mount",
        "root-ro",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == want || l.contains(want)),
            "missing {want} in:\n{out}"
        );
    }
    assert!(host.path().join("new").exists(), "rw bind wrote through");
    e.assert_gone();
}

#[test]
fn symlinks_in_the_rootfs_cannot_point_mounts_outside_it() {
    if !require_root() {
        return;
    }
    let outside = tempfile::Builder::new()
        .prefix("carve-oci-outside")
        .tempdir()
        .unwrap();
    let mut e = Env::new("escape", &["sh", "-c", "ls /evil/; true"]);
    // /evil → the outside dir (absolute) and /evil2 → ../../../outside (relative)
    std::os::unix::fs::symlink(outside.path(), e.rootfs().join("evil")).unwrap();
    let m = e.config["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/evil/mnt", "type": "tmpfs", "source": "tmpfs"}));
    e.write_config();
    let _ = e.run_ok();
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "a mount point was created outside the rootfs"
    );
    // the target was made inside the rootfs instead
    assert!(e
        .rootfs()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("mnt")
        .is_dir());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(outside.path().to_str().unwrap()));
}

#[test]
fn no_pivot_and_rootfs_propagation() {
    if !require_root() {
        return;
    }
    let mut e = Env::new(
        "nopivot",
        &[
            "sh",
            "-c",
            "ls /bin/busybox && awk '$5==\"/\"' /proc/self/mountinfo",
        ],
    );
    e.config["linux"]["rootfsPropagation"] = json!("rshared");
    e.write_config();
    let b = e.bundle.to_str().unwrap().to_string();
    let _g = Guard { env: &e };
    let o = e.oci(&["run", "--no-pivot", "--bundle", &b, &e.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("/bin/busybox") && out.contains("shared:"),
        "{out}"
    );
    drop(_g);
    e.assert_gone();
}

/// The namespace links of a live process, as the host sees them.
fn ns_of(pid: i64, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_second_container_joins_the_first_ones_namespaces_by_path_as_a_pod_does() {
    if !require_root() {
        return;
    }
    // A pod's sandbox: new pid, ipc, uts, net, mount and cgroup namespaces, a hostname, and an
    // ipc-namespaced sysctl as a witness of its ipc namespace.
    let mut a = Env::new("pod", &["sleep", "1000"]);
    a.config["hostname"] = json!("pod-a");
    a.config["linux"]["sysctl"] = json!({"kernel.msgmax": "12345"});
    a.write_config();
    let _ga = a.create_started();
    let apid = a.init_pid();

    // A sidecar joins all of them but the mount namespace by path.
    let mut b = Env::new(
        "side",
        &[
            "sh",
            "-c",
            "for n in pid ipc uts net cgroup; do readlink /proc/self/ns/$n; done; \
             hostname; echo $$; ps -o comm | grep -c sleep; \
             cat /proc/sys/kernel/msgmax",
        ],
    );
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] == "mount");
    for (kind, link) in [
        ("pid", "pid"),
        ("ipc", "ipc"),
        ("uts", "uts"),
        ("network", "net"),
        ("cgroup", "cgroup"),
    ] {
        ns.push(json!({"type": kind, "path": format!("/proc/{apid}/ns/{link}")}));
    }
    b.config.as_object_mut().unwrap().remove("hostname");
    b.write_config();
    let out = b.run_ok();
    let l: Vec<&str> = out.lines().collect();
    for (i, kind) in ["pid", "ipc", "uts", "net", "cgroup"].iter().enumerate() {
        assert_eq!(
            l[i],
            ns_of(apid, kind),
            "{kind} namespace not joined: {out}"
        );
        assert_ne!(l[i], host_ns(kind), "{kind} namespace is the host's");
    }
    assert_eq!(l[5], "pod-a", "uts namespace shares the sandbox's hostname");
    assert_ne!(
        l[6], "1",
        "in a joined pid namespace the sidecar is not pid 1"
    );
    assert_eq!(
        l[7], "1",
        "the sandbox's sleep is visible in the shared pid namespace"
    );
    assert_eq!(
        l[8], "12345",
        "the sandbox's ipc sysctl holds in the shared ipc namespace"
    );
}

#[test]
fn a_container_joins_another_ones_user_and_time_namespaces_by_path() {
    if !require_root() {
        return;
    }
    let mut a = Env::new("usera", &["sleep", "1000"]);
    let ns = a.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    ns.push(json!({"type": "time"}));
    a.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    a.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    a.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 259200, "nanosecs": 0}});
    a.write_config();
    let _ga = a.create_started();
    let apid = a.init_pid();

    // The second container joins both by path and asks for no maps or offsets of its own (the
    // user namespace it joins has them); its other namespaces are new, owned by that user ns.
    let mut b = Env::new(
        "userb",
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/user; readlink /proc/self/ns/time; id -u; \
             cat /proc/self/uid_map; cut -d. -f1 /proc/uptime",
        ],
    );
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user", "path": format!("/proc/{apid}/ns/user")}));
    ns.push(json!({"type": "time", "path": format!("/proc/{apid}/ns/time")}));
    b.write_config();
    let out = b.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], ns_of(apid, "user"), "{out}");
    assert_ne!(l[0], host_ns("user"));
    assert_eq!(l[1], ns_of(apid, "time"), "{out}");
    assert_eq!(l[2], "0", "root inside the joined user namespace");
    assert_eq!(
        l[3].split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"]
    );
    let up: u64 = l[4].parse().unwrap();
    assert!(up >= 259200, "uptime {up} lacks the joined boottime offset");

    // Maps beside a joined user namespace are a config error that names the field.
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 1}]);
    b.write_config();
    let bundle = b.bundle.to_str().unwrap().to_string();
    let err = b.fails(&["create", "--bundle", &bundle, &b.id]);
    assert!(
        err.contains("uidMappings") || err.contains("linux.namespaces"),
        "{err}"
    );
    b.assert_gone();
}
