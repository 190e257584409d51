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
    e.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    e.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    e.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
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
    e.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
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
