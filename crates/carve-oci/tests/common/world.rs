//! Configs written by other tools (tests/fixtures/world, see its README): load one into an
//! [`Env`], run it with carve-oci and with runc side by side, and the programs they run — a
//! static glibc program that creates a thread, built here with gcc.
#![allow(dead_code)]

use crate::common::Env;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A fixture's JSON.
pub fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/world")
        .join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Docker's default capabilities (moby oci/caps/defaults.go), the set its profile is
/// evaluated for.
pub const DOCKER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's seccomp template (archMap, includes/excludes) → the `linux.seccomp` dockerd 20.10
/// puts into config.json on an x86_64 host for a container with `caps` (moby
/// profiles/seccomp/seccomp_linux.go: the native arch's archMap entry gives the architectures; a
/// rule is kept when its includes match — arches, caps, minKernel — and its excludes do not).
pub fn docker_profile(t: &Value, caps: &[&str]) -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    carve_container::seccomp::moby::to_oci(t, caps, kernel.trim()).expect("a docker template")
}

/// Puts a fixture into `e`'s bundle: its own rootfs, `args`, a unique cgroup; bind sources
/// that do not exist here (podman's temporary storage) become empty files of the test's own,
/// namespace paths that do not exist here new namespaces.
pub fn adopt(e: &mut Env, mut cfg: Value, args: &[&str]) {
    cfg["root"] = json!({"path": "rootfs", "readonly": false});
    cfg["process"]["args"] = json!(args);
    cfg["process"]["terminal"] = json!(false);
    cfg["linux"]["cgroupsPath"] = json!(format!("/{}", e.id));
    if let Some(ms) = cfg["mounts"].as_array_mut() {
        for (i, m) in ms.iter_mut().enumerate() {
            let bind = m["type"] == "bind"
                || m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
            let src = m["source"].as_str().unwrap_or("").to_string();
            if bind && src.starts_with('/') && !Path::new(&src).exists() {
                let f = e.dir.path().join(format!("bind-source-{i}"));
                std::fs::write(&f, "").unwrap();
                m["source"] = json!(f);
            }
        }
    }
    // A namespace path of the producing host (podman's /run/netns/netns-…) becomes a new one.
    if let Some(ns) = cfg["linux"]["namespaces"].as_array_mut() {
        for n in ns {
            if n["path"].as_str().is_some_and(|p| !Path::new(p).exists()) {
                n.as_object_mut().unwrap().remove("path");
            }
        }
    }
    e.config = cfg;
    e.write_config();
}

/// A static glibc program: `/world thread` creates a thread, joins it and prints `thread-ok`
/// (or `pthread_create: ERROR`, exit 1). glibc 2.36 creates threads with clone3 and falls
/// back to clone only on ENOSYS. Built once per test process.
pub fn thread_program() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("carve-oci-world-{}", std::process::id()));
            // Lives as long as the test process: the reaper removes it once the process is gone.
            carve_testkit::reaper().remove(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let src = dir.join("world.c");
            std::fs::write(
                &src,
                r#"#include <pthread.h>
#include <stdio.h>
#include <string.h>
static void *run(void *a) { return a; }
int main(void) {
    pthread_t t;
    void *v;
    int r = pthread_create(&t, 0, run, (void *)42);
    if (r) { printf("pthread_create: %s\n", strerror(r)); return 1; }
    pthread_join(t, &v);
    printf("thread-ok %ld\n", (long)v);
    return 0;
}
"#,
            )
            .unwrap();
            let bin = dir.join("world");
            let o = Command::new("gcc")
                .args(["-static", "-O1", "-pthread", "-o"])
                .arg(&bin)
                .arg(&src)
                .output()
                .expect("gcc (build-essential) is needed for the world tests");
            assert!(
                o.status.success(),
                "gcc: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let _ = std::fs::remove_file(&src);
            bin
        })
        .clone()
}

/// Copies the thread program into the rootfs as `/world`.
pub fn install_thread_program(e: &Env) {
    std::fs::copy(thread_program(), e.rootfs().join("world")).unwrap();
}

/// The same bundle under runc (a cgroup and id of its own, its own state root), deleted after:
/// (exit code, stdout, stderr).
pub fn runc_run(e: &mut Env) -> (i32, Vec<u8>, String) {
    let id = format!("{}-runc", e.id);
    let saved = e.config.clone();
    e.config["linux"]["cgroupsPath"] = json!(format!("/{id}"));
    e.write_config();
    let root = e.dir.path().join("runc-state");
    let out = e.dir.path().join("runc.out");
    let err = e.dir.path().join("runc.err");
    let status = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&e.bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .expect("runc is installed");
    let _ = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force", &id])
        .output();
    e.config = saved;
    e.write_config();
    (
        status.code().unwrap_or(-1),
        std::fs::read(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    )
}
