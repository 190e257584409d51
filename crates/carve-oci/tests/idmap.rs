//! Idmapped bind mounts (runtime-spec 1.2 `mounts[].uidMappings`/`gidMappings`): a container in a
//! user namespace writes through an idmapped bind, and the file appears on the host with the
//! mount's mapped owner; a host file shows up inside with the mapped owner too.

mod common;
use common::*;
use serde_json::json;
use std::os::unix::fs::MetadataExt;

/// The container's user namespace maps its root to host 100000. The bind maps on-disk 1000-1999
/// to host 100000-100999, i.e. to the container's 0-999: its root owns the host's uid 1000 files
/// and what it creates there is uid 1000 (gid 2000) on disk, not 100000 as without the idmap.
#[test]
fn idmapped_bind_in_user_namespace_maps_owners() {
    if !require_root() {
        return;
    }
    let mut e = Env::new(
        "idmap",
        &[
            "sh",
            "-c",
            "id -u; stat -c '%u:%g' /data/host-file; echo hi >/data/from-container && echo wrote; \
             stat -c '%u:%g' /data/from-container; stat -c '%u:%g' /plain/host-file",
        ],
    );
    let shared = e.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(1000), Some(2000)).unwrap();
    std::fs::write(shared.join("host-file"), "x").unwrap();
    std::os::unix::fs::chown(shared.join("host-file"), Some(1000), Some(2000)).unwrap();
    std::fs::create_dir_all(e.rootfs().join("data")).unwrap();
    std::fs::create_dir_all(e.rootfs().join("plain")).unwrap();
    e.map_user_ns(100000);
    let mounts = e.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({
        "destination": "/data", "type": "bind", "source": shared, "options": ["bind"],
        "uidMappings": [{"containerID": 1000, "hostID": 100000, "size": 1000}],
        "gidMappings": [{"containerID": 2000, "hostID": 100000, "size": 1000}]
    }));
    // The same directory without an idmap: the host's 1000 is not mapped in the container.
    mounts.push(
        json!({"destination": "/plain", "type": "bind", "source": shared, "options": ["bind"]}),
    );
    e.write_config();
    let out = e.run_ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l, ["0", "0:0", "wrote", "0:0", "65534:65534"], "{out}");
    let md = std::fs::metadata(shared.join("from-container")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (1000, 2000),
        "the file written through the idmapped bind has the mapped owner on the host"
    );
    e.assert_gone();
}

/// An idmapped mount that is not a bind, or has only uid mappings, is refused naming the field,
/// and nothing is left behind.
#[test]
fn idmapped_mount_bad_input_names_the_field() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("idmapbad", &["true"]);
    let base = e.config.clone();
    e.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "tmpfs", "source": "tmpfs",
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 1}]
    }));
    e.write_config();
    e.fails_with(
        &["create", "--bundle", e.bundle.to_str().unwrap(), &e.id],
        &["uidMappings", "bind"],
    );
    e.config = base;
    e.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "bind", "source": "/tmp", "options": ["bind"],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 1}]
    }));
    e.write_config();
    e.fails_with(
        &["create", "--bundle", e.bundle.to_str().unwrap(), &e.id],
        &["gidMappings"],
    );
    e.assert_gone();
}

/// `features` says idmapped mounts are supported.
#[test]
fn features_report_idmap() {
    let out = std::process::Command::new(BIN)
        .arg("features")
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        f["linux"]["mountExtensions"]["idmap"]["enabled"],
        json!(true)
    );
}
