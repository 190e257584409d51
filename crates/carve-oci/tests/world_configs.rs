//! Configs carve-oci did not write (tests/fixtures/world, each with its source in the README):
//! `runc spec`, `ctr oci spec`, podman's generated config, Docker 20.10's default seccomp
//! profile and the OCI runtime-tools generator's default spec. Each runs `true` and a static
//! glibc program that creates a thread; where a profile decides what a syscall returns, the same
//! bundle runs under runc too and both must answer alike. Also: a profile that leaves the
//! runtime nothing but `execve` after the filter (issue 12 item 1), a config without a mount
//! namespace and a hostname in a uts namespace joined by path (item 5).

mod common;
#[path = "common/probe.rs"]
mod probe;
#[path = "common/world.rs"]
mod world;

use common::*;
use probe::{sys, Call};
use serde_json::{json, Value};
use world::*;

const ENOSYS: i64 = -(libc::ENOSYS as i64);
const EPERM: i64 = -(libc::EPERM as i64);
const AT_FDCWD: u64 = -100i64 as u64;
const BAD_FD: u64 = u64::MAX;

/// Syscalls newer than many profiles (x86_64 numbers), with arguments that fail harmlessly when
/// the syscall is allowed: clone3, close_range, openat2, pidfd_getfd, faccessat2,
/// process_madvise, epoll_pwait2, mount_setattr, landlock_create_ruleset, futex_waitv,
/// cachestat, fchmodat2, and one above every table.
fn new_syscalls() -> Vec<Call> {
    vec![
        sys(435, &[0, 0]),
        sys(436, &[1000, 999, 0]),
        sys(437, &[AT_FDCWD, 0, 0, 0]),
        sys(438, &[BAD_FD, 0, 0]),
        sys(439, &[AT_FDCWD, 0, 0, 0]),
        sys(440, &[BAD_FD, 0, 0, 0, 0]),
        sys(441, &[BAD_FD, 0, 0, 0, 0, 0]),
        sys(442, &[BAD_FD, 0, 0, 0, 0]),
        sys(444, &[0, 0, 0]),
        sys(449, &[0, 0, 0, 0, 0]),
        sys(451, &[BAD_FD, 0, 0, 0]),
        sys(452, &[AT_FDCWD, 0, 0, 0]),
        sys(1000, &[]),
    ]
}

/// A fixture in a bundle of the test's own, running `args`.
fn world(prefix: &str, cfg: Value, args: &[&str]) -> Env {
    let mut e = Env::new(prefix, args);
    adopt(&mut e, cfg, args);
    install_thread_program(&e);
    e
}

fn set_args(e: &mut Env, args: &[&str]) {
    e.config["process"]["args"] = json!(args);
    e.write_config();
}

/// Runs `true` and the thread program with carve-oci.
fn runs_true_and_a_thread(e: &mut Env) {
    set_args(e, &["true"]);
    let (code, out, err) = e.run();
    assert_eq!(code, 0, "true: {out}{err}");
    set_args(e, &["/world"]);
    let (code, out, err) = e.run();
    assert_eq!(code, 0, "thread program: {out}{err}");
    assert_eq!(out.trim(), "thread-ok 42", "{err}");
    e.assert_gone();
}

/// The probe's results under carve-oci and under runc, for the same bundle.
fn probe_both(e: &mut Env, calls: &[Call]) -> (Vec<i64>, Vec<i64>) {
    probe::install(&e.rootfs().join("probe"), calls);
    set_args(e, &["/probe"]);
    let b = e.bundle.to_str().unwrap().to_string();
    let o = {
        let _g = Guard { env: e };
        e.oci(&["run", "--bundle", &b, &e.id])
    };
    assert!(
        o.status.success(),
        "carve-oci probe: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ours = probe::results(&o.stdout);
    let (code, out, err) = runc_run(e);
    assert_eq!(code, 0, "runc probe: {err}");
    (ours, probe::results(&out))
}

#[test]
fn runc_spec_runs_true_and_a_threaded_glibc_program() {
    if !require_root() {
        return;
    }
    let mut e = world("wrunc", fixture("runc-1.1.5-spec.json"), &["true"]);
    runs_true_and_a_thread(&mut e);
}

#[test]
fn ctr_oci_spec_runs_true_and_a_threaded_glibc_program() {
    if !require_root() {
        return;
    }
    let mut e = world("wctr", fixture("ctr-1.6.20-oci-spec.json"), &["true"]);
    runs_true_and_a_thread(&mut e);
}

#[test]
fn podman_config_runs_true_and_a_threaded_glibc_program() {
    if !require_root() {
        return;
    }
    let cfg = fixture("podman-4.3.1-config.json");
    assert!(cfg["linux"]["seccomp"]["syscalls"].is_array());
    let mut e = world("wpod", cfg, &["true"]);
    runs_true_and_a_thread(&mut e);
}

/// Docker 20.10's profile (evaluated as dockerd does, Docker's default capabilities) on `runc
/// spec`'s config: `true` and a thread run; the new syscalls answer as under runc, clone3 with
/// ENOSYS (so glibc falls back to clone), those above the newest one it names (futex_waitv)
/// with ENOSYS too, and close_range is allowed.
#[test]
fn docker_20_10_profile_runs_and_clone3_gets_enosys_as_with_runc() {
    if !require_root() {
        return;
    }
    let mut cfg = fixture("runc-1.1.5-spec.json");
    let profile = docker_profile(
        &fixture("docker-20.10.27-default-seccomp.json"),
        DOCKER_CAPS,
    );
    cfg["linux"]["seccomp"] = profile;
    for set in ["bounding", "effective", "permitted"] {
        cfg["process"]["capabilities"][set] = json!(DOCKER_CAPS);
    }
    let mut e = world("wdock", cfg, &["true"]);
    runs_true_and_a_thread(&mut e);
    let (ours, runc) = probe_both(&mut e, &new_syscalls());
    assert_eq!(ours, runc, "carve-oci vs runc under Docker 20.10's profile");
    assert_eq!(ours[0], ENOSYS, "clone3: {ours:?}");
    assert_eq!(
        ours[1],
        -(libc::EINVAL as i64),
        "close_range allowed: {ours:?}"
    );
    assert_eq!(
        ours[7], EPERM,
        "mount_setattr needs CAP_SYS_ADMIN: {ours:?}"
    );
    assert_eq!(
        ours[10], ENOSYS,
        "cachestat is newer than the profile: {ours:?}"
    );
    assert_eq!(ours[12], ENOSYS, "{ours:?}");
}

/// The runtime-tools generator's default spec: `true` runs. Its profile names syscalls up to
/// landlock (446) but not clone3 (435), so under runc's rule clone3 gets EPERM and glibc cannot
/// create a thread — with runc exactly as with carve-oci; syscalls above 446 get ENOSYS.
#[test]
fn runtime_tools_generator_spec_runs_and_agrees_with_runc() {
    if !require_root() {
        return;
    }
    let mut e = world(
        "wgen",
        fixture("runtime-tools-generate-linux-amd64.json"),
        &["true"],
    );
    let (code, out, err) = e.run();
    assert_eq!(code, 0, "true: {out}{err}");
    set_args(&mut e, &["/world"]);
    let ours = e.run();
    let theirs = runc_run(&mut e);
    let theirs = (
        theirs.0,
        String::from_utf8_lossy(&theirs.1).into_owned(),
        theirs.2,
    );
    assert_eq!(
        (ours.0, ours.1.trim()),
        (theirs.0, theirs.1.trim()),
        "thread program: carve-oci {ours:?}, runc {theirs:?}"
    );
    let (ours, runc) = probe_both(&mut e, &new_syscalls());
    assert_eq!(ours, runc, "carve-oci vs runc under runtime-tools' profile");
    assert_eq!(ours[0], EPERM, "clone3 is older than landlock: {ours:?}");
    assert_eq!(ours[9], ENOSYS, "futex_waitv is newer: {ours:?}");
    e.assert_gone();
}

/// Issue 12 item 1: after the filter the runtime makes no syscall but the program's `execve`.
/// A profile allowing only execve, write and exit runs the probe — as another user with
/// capabilities (so the user switch and capset happen before the filter), with and without
/// noNewPrivileges. (runc needs far more after its filter: it cannot run this profile.)
#[test]
fn a_profile_allowing_only_execve_write_and_exit_runs() {
    if !require_root() {
        return;
    }
    for nnp in [false, true] {
        let mut e = Env::new("wmin", &["/probe"]);
        probe::install(
            &e.rootfs().join("probe"),
            &[sys(39, &[]), sys(1, &[1, 0, 0])],
        );
        e.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["execve", "write", "exit", "exit_group"], "action": "SCMP_ACT_ALLOW"}]});
        e.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10]});
        e.config["process"]["noNewPrivileges"] = json!(nnp);
        e.write_config();
        let b = e.bundle.to_str().unwrap().to_string();
        let o = {
            let _g = Guard { env: &e };
            e.oci(&["run", "--bundle", &b, &e.id])
        };
        assert!(
            o.status.success(),
            "nnp {nnp}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // getpid is denied (EPERM: older than execve, the newest named), write(1, NULL, 0) is 0.
        assert_eq!(probe::results(&o.stdout), vec![EPERM, 0], "nnp {nnp}");
        e.assert_gone();
    }
}

/// Issue 12 item 5: no mount namespace in the config (runtime-spec: inherited). The container
/// shares the runtime's mount namespace, chrooted into its root; nothing is mounted on the host.
#[test]
fn a_config_without_a_mount_namespace_runs_chrooted() {
    if !require_root() {
        return;
    }
    let mut cfg = fixture("runc-1.1.5-spec.json");
    let ns: Vec<Value> = cfg["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "mount")
        .cloned()
        .collect();
    cfg["linux"]["namespaces"] = json!(ns);
    for k in ["maskedPaths", "readonlyPaths"] {
        cfg["linux"].as_object_mut().unwrap().remove(k);
    }
    cfg["mounts"] = json!([]);
    let mut e = world("wnomnt", cfg, &["true"]);
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    runs_true_and_a_thread(&mut e);
    set_args(
        &mut e,
        &[
            "/bin/sh",
            "-c",
            "ls -a /; readlink /proc/self/ns/mnt || echo no-proc",
        ],
    );
    let (code, out, err) = e.run();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("world") && out.contains("bin"),
        "the root is the rootfs: {out}"
    );
    assert!(out.contains("no-proc"), "nothing mounted inside: {out}");
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !after.contains(e.dir.path().to_str().unwrap()),
        "a mount was left"
    );
    // `/` keeps its propagation (runc would have made it rslave); other tests may mount
    // meanwhile, so only this line is compared.
    let root_line = |mi: &str| {
        mi.lines()
            .find(|l| l.split(' ').nth(4) == Some("/"))
            .map(str::to_string)
    };
    assert_eq!(
        root_line(&before),
        root_line(&after),
        "the host's / changed"
    );

    // Whatever would mount into the shared namespace is refused, naming the field.
    e.config["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    e.write_config();
    e.create_refused(&["mounts", "mount namespace"]);
}

/// Issue 12 item 5: `hostname` with the uts namespace joined by path sets the name in that
/// namespace (as runc: it only refuses when there is no uts namespace at all).
#[test]
fn hostname_in_a_uts_namespace_joined_by_path_is_set_there() {
    if !require_root() {
        return;
    }
    let mut a = world("wutsa", fixture("runc-1.1.5-spec.json"), &["sleep", "60"]);
    a.config["hostname"] = json!("carve-before");
    a.write_config();
    let _ga = a.create_started();
    let pid = a.init_pid();
    let mut b = world("wutsb", fixture("runc-1.1.5-spec.json"), &["hostname"]);
    let ns: Vec<Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            if n["type"] == "uts" {
                json!({"type": "uts", "path": format!("/proc/{pid}/ns/uts")})
            } else {
                n.clone()
            }
        })
        .collect();
    b.config["linux"]["namespaces"] = json!(ns);
    b.config["hostname"] = json!("carve-joined");
    b.write_config();
    let out = b.run_ok();
    assert_eq!(out.trim(), "carve-joined");
    let seen = a.ok(&["exec", &a.id, "hostname"]);
    assert_eq!(seen.trim(), "carve-joined", "set in the joined namespace");

    // No uts namespace at all: runc's refusal.
    let ns: Vec<Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "uts")
        .cloned()
        .collect();
    b.config["linux"]["namespaces"] = json!(ns);
    b.write_config();
    b.fails_with(
        &["create", "--bundle", b.bundle.to_str().unwrap(), &b.id],
        &["unable to set hostname without a private UTS namespace"],
    );
    b.assert_gone();
}
