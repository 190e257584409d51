//! runtime-spec conformance, `mounts` (config.md) and the default filesystems (config-linux.md):
//! order, relative destinations and sources, every mount(8) option, propagation, the recursive
//! `mount_setattr` options (`rro` … `rnosymfollow`), filesystem data, `tmpcopyup`, and the refusal
//! of idmapped mounts. Each mount is read back from /proc/self/mountinfo inside the container.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A tmpfs the test mounts on the host (under its temp dir) and unmounts on drop.
struct HostMount(PathBuf);

impl HostMount {
    fn tmpfs(at: &Path, opts: &str) -> HostMount {
        std::fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                opts,
                "carve-test",
                at.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs at {}", at.display());
        HostMount(at.to_path_buf())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A mountinfo line: (per-mount options, optional fields, super options).
type Line = (String, String, String);

/// Splits a mountinfo line into its [`Line`] fields.
fn parse_line(l: &str) -> Line {
    let f: Vec<&str> = l.split(' ').collect();
    let sep = f.iter().position(|x| *x == "-").unwrap();
    (
        f[5].to_string(),
        f[6..sep].join(" "),
        f[sep + 3].to_string(),
    )
}

/// Runs the container with `mounts` appended and prints the mountinfo lines of `dests` (in that
/// order) plus whatever `extra` prints; returns (lines per dest, extra output).
fn mountinfo_of(
    prefix: &str,
    mounts: Value,
    dests: &[&str],
    extra: &str,
) -> (Vec<Option<Line>>, String) {
    let mut script = String::new();
    for d in dests {
        script.push_str(&format!(
            "echo \"M $(awk '$5 == \"{d}\"' /proc/self/mountinfo | tail -1)\"; "
        ));
    }
    script.push_str(extra);
    let mut e = Env::new(prefix, &["sh", "-c", &script]);
    let list = e.config["mounts"].as_array_mut().unwrap();
    list.extend(mounts.as_array().unwrap().iter().cloned());
    e.write_config();
    let out = e.run_ok();
    let mut lines = Vec::new();
    let mut rest = String::new();
    for l in out.lines() {
        match l.strip_prefix("M ") {
            Some(m) if !m.trim().is_empty() => lines.push(Some(parse_line(m))),
            Some(_) => lines.push(None),
            None if l == "M" => lines.push(None),
            None => {
                rest.push_str(l);
                rest.push('\n');
            }
        }
    }
    (lines, rest)
}

fn tmpfs(dest: &str, opts: &[&str]) -> Value {
    json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts})
}

/// The per-mount flags that restrict a mount; `nosymfollow` last (not every test sets it).
const RESTRICTING: [&str; 7] = [
    "ro",
    "nosuid",
    "nodev",
    "noexec",
    "noatime",
    "nodiratime",
    "nosymfollow",
];

fn has(opts: &str, o: &str) -> bool {
    opts.split(',').any(|x| x == o)
}

#[test]
fn mounts_are_made_in_the_listed_order() {
    if !require_root() {
        return;
    }
    let probe = "test -d /m/n && echo visible || echo hidden";
    let (l, out) = mountinfo_of(
        "order",
        json!([tmpfs("/m", &[]), tmpfs("/m/n", &["size=1m"])]),
        &["/m/n"],
        probe,
    );
    assert!(l[0].is_some(), "/m/n made after /m is mounted");
    assert_eq!(out.trim(), "visible");
    // reversed, the later /m hides /m/n (still in the mount table, under /m)
    let (_, out) = mountinfo_of(
        "order2",
        json!([tmpfs("/m/n", &["size=1m"]), tmpfs("/m", &[])]),
        &["/m/n"],
        probe,
    );
    assert_eq!(out.trim(), "hidden", "/m made after /m/n hides it");
}

#[test]
fn relative_destination_is_under_root_and_bind_source_under_the_bundle() {
    if !require_root() {
        return;
    }
    let mut e = Env::new(
        "rel",
        &[
            "sh",
            "-c",
            "grep -c ' /rel ' /proc/self/mountinfo; cat /data/f",
        ],
    );
    std::fs::create_dir_all(e.bundle.join("data")).unwrap();
    std::fs::write(e.bundle.join("data/f"), "from-the-bundle\n").unwrap();
    let list = e.config["mounts"].as_array_mut().unwrap();
    list.push(json!({"destination": "rel", "type": "tmpfs", "source": "tmpfs"}));
    list.push(
        json!({"destination": "/data", "type": "none", "source": "data", "options": ["bind"]}),
    );
    e.write_config();
    assert_eq!(
        e.run_ok().lines().collect::<Vec<_>>(),
        ["1", "from-the-bundle"]
    );
}

#[test]
fn mount8_options_take_effect_and_the_later_of_a_pair_wins() {
    if !require_root() {
        return;
    }
    let (l, _) = mountinfo_of(
        "opts",
        json!([
            tmpfs("/a", &RESTRICTING[..6]),
            tmpfs(
                "/b",
                &["sync", "dirsync", "lazytime", "silent", "iversion", "mand", "defaults"]
            ),
            tmpfs(
                "/c",
                &[
                    "ro",
                    "rw",
                    "nosuid",
                    "suid",
                    "nodev",
                    "dev",
                    "noexec",
                    "exec",
                    "noatime",
                    "atime",
                    "nodiratime",
                    "diratime",
                    "sync",
                    "async",
                    "lazytime",
                    "nolazytime",
                    "loud",
                    "noiversion",
                    "nomand"
                ]
            ),
            tmpfs("/d", &["strictatime"]),
            tmpfs(
                "/e",
                &["relatime", "norelatime", "strictatime", "nostrictatime"]
            ),
            tmpfs("/f", &["nosymfollow"]),
            tmpfs("/g", &["nosymfollow", "symfollow"]),
        ]),
        &["/a", "/b", "/c", "/d", "/e", "/f", "/g"],
        "",
    );
    let get = |i: usize| l[i].clone().expect("mount missing");
    let (a, _, _) = get(0);
    for o in &RESTRICTING[..6] {
        assert!(has(&a, o), "/a lacks {o}: {a}");
    }
    let (_, _, b_sb) = get(1);
    for o in ["sync", "dirsync", "lazytime"] {
        assert!(has(&b_sb, o), "/b superblock lacks {o}: {b_sb}");
    }
    let (c, _, c_sb) = get(2);
    assert!(has(&c, "rw"), "{c}");
    for o in &RESTRICTING[..6] {
        assert!(!has(&c, o), "/c keeps {o}: {c}");
    }
    for o in ["sync", "lazytime"] {
        assert!(!has(&c_sb, o), "/c superblock keeps {o}: {c_sb}");
    }
    let (d, _, _) = get(3);
    assert!(
        !has(&d, "relatime") && !has(&d, "noatime"),
        "strictatime: {d}"
    );
    let (e, _, _) = get(4);
    assert!(has(&e, "relatime"), "nostrictatime after strictatime: {e}");
    let (f, _, _) = get(5);
    assert!(has(&f, "nosymfollow"), "{f}");
    let (g, _, _) = get(6);
    assert!(!has(&g, "nosymfollow"), "{g}");
}

#[test]
fn unknown_options_go_to_the_filesystem_as_data() {
    if !require_root() {
        return;
    }
    let (l, _) = mountinfo_of(
        "data",
        json!([tmpfs("/t", &["size=1m", "mode=700", "nr_inodes=77"])]),
        &["/t"],
        "stat -c %a /t",
    );
    let (_, _, sb) = l[0].clone().unwrap();
    for o in ["size=1024k", "mode=700", "nr_inodes=77"] {
        assert!(has(&sb, o), "{o} not passed as data: {sb}");
    }
}

/// A tmpfs mounted on the host at `rel` below a fresh test dir; unmounted before the dir goes.
struct HostTmpfs {
    _mount: HostMount,
    probe: Env,
}

impl HostTmpfs {
    fn new(prefix: &str, rel: &str, opts: &str) -> HostTmpfs {
        let probe = Env::new(prefix, &["true"]);
        let _mount = HostMount::tmpfs(&probe.dir.path().join(rel), opts);
        HostTmpfs { _mount, probe }
    }

    /// `rel` below the test dir.
    fn path(&self, rel: &str) -> String {
        self.probe
            .dir
            .path()
            .join(rel)
            .to_str()
            .unwrap()
            .to_string()
    }
}

/// A recursive bind of `source` at `dest` with `opts` after `rbind`.
fn rbind(source: &str, dest: &str, opts: &[&str]) -> Value {
    let mut all = vec!["rbind"];
    all.extend_from_slice(opts);
    json!({"destination": dest, "type": "none", "source": source, "options": all})
}

/// Whether a mountinfo field is as a case wants it.
type Check = fn(&str) -> bool;

/// A mount's optional fields as each propagation must leave them.
fn peer(o: &str) -> bool {
    o.contains("shared:")
}
fn slave(o: &str) -> bool {
    o.contains("master:") && !o.contains("shared:")
}
fn private(o: &str) -> bool {
    o.trim().is_empty()
}
fn unbindable(o: &str) -> bool {
    o.contains("unbindable")
}

#[test]
fn bind_propagation_options_show_in_mountinfo() {
    if !require_root() {
        return;
    }
    // The source is a shared mount on the host, so each bind starts in its peer group.
    let host = HostTmpfs::new("prop0", "src", "mode=755");
    let s = host.path("src");
    let st = std::process::Command::new("mount")
        .args(["--make-shared", &s])
        .status()
        .unwrap();
    assert!(st.success());
    let cases: [(&str, Check); 8] = [
        ("shared", peer),
        ("rslave", slave),
        ("private", private),
        ("unbindable", unbindable),
        ("rshared", peer),
        ("slave", slave),
        ("rprivate", private),
        ("runbindable", unbindable),
    ];
    let dests: Vec<String> = (1..=cases.len()).map(|i| format!("/p{i}")).collect();
    let mounts: Vec<Value> = cases
        .iter()
        .zip(&dests)
        .map(|((p, _), d)| rbind(&s, d, &[p]))
        .collect();
    let dests: Vec<&str> = dests.iter().map(String::as_str).collect();
    let (l, _) = mountinfo_of("prop2", json!(mounts), &dests, "");
    for ((p, ok), line) in cases.iter().zip(&l) {
        let opt = line.clone().unwrap().1;
        assert!(ok(&opt), "{p}: {opt}");
    }
}

#[test]
fn recursive_attributes_reach_submounts_and_rnosymfollow_stops_symlinks() {
    if !require_root() {
        return;
    }
    let host = HostTmpfs::new("rattr0", "top/sub", "mode=755");
    std::fs::write(host.path("top/sub/file"), "data\n").unwrap();
    std::os::unix::fs::symlink("file", host.path("top/sub/link")).unwrap();
    let t = host.path("top");
    let recursive: Vec<String> = RESTRICTING.iter().map(|o| format!("r{o}")).collect();
    let recursive: Vec<&str> = recursive.iter().map(String::as_str).collect();
    let (l, out) = mountinfo_of(
        "rattr",
        json!([
            rbind(&t, "/r", &recursive),
            rbind(&t, "/n", &["nosymfollow"])
        ]),
        &["/r/sub", "/n", "/n/sub"],
        "cat /r/sub/link >/dev/null 2>&1 && echo followed || echo refused; \
         cat /n/sub/link; readlink /r/sub/link",
    );
    let (r, _, _) = l[0]
        .clone()
        .expect("/r/sub missing: rbind lost the submount");
    for o in RESTRICTING {
        assert!(has(&r, o), "submount lacks recursive {o}: {r}");
    }
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["refused", "data", "file"],
        "{out}"
    );
    // nosymfollow without r: only the mount itself
    let (n, _, _) = l[1].clone().unwrap();
    let (nsub, _, _) = l[2].clone().unwrap();
    assert!(
        has(&n, "nosymfollow") && !has(&nsub, "nosymfollow"),
        "{n} / {nsub}"
    );
}

/// Per-mount options as a clearing `r…` attribute must leave a submount that had them all.
fn cleared(o: &str) -> bool {
    has(o, "rw") && has(o, "relatime") && RESTRICTING.iter().all(|r| !has(o, r))
}
fn strict(o: &str) -> bool {
    !has(o, "noatime") && !has(o, "relatime")
}
fn relatime(o: &str) -> bool {
    has(o, "relatime")
}

#[test]
fn recursive_clearing_attributes_undo_a_submounts_flags() {
    if !require_root() {
        return;
    }
    let host = HostTmpfs::new("rclr0", "top/sub", &RESTRICTING.join(","));
    let t = host.path("top");
    let clear_all: &[&str] = &[
        "rrw",
        "rsuid",
        "rdev",
        "rexec",
        "rsymfollow",
        "ratime",
        "rdiratime",
    ];
    let cases: [(&str, &[&str], Check); 5] = [
        ("/a", clear_all, cleared),
        ("/b", &["rstrictatime"], strict),
        ("/c", &["rrelatime"], relatime),
        ("/d", &["rnorelatime"], strict),
        ("/e", &["rnostrictatime"], relatime),
    ];
    let mounts: Vec<Value> = cases.iter().map(|(d, o, _)| rbind(&t, d, o)).collect();
    let subs: Vec<String> = cases.iter().map(|(d, _, _)| format!("{d}/sub")).collect();
    let subs: Vec<&str> = subs.iter().map(String::as_str).collect();
    let (l, _) = mountinfo_of("rclr", json!(mounts), &subs, "");
    for ((d, opts, ok), line) in cases.iter().zip(&l) {
        let (o, _, _) = line.clone().unwrap();
        assert!(ok(&o), "{d} with {opts:?}: {o}");
    }
}

#[test]
fn tmpcopyup_copies_the_image_directory_into_the_tmpfs() {
    if !require_root() {
        return;
    }
    let mut e = Env::new(
        "copyup",
        &[
            "sh",
            "-c",
            "grep -c ' /etc/cu ' /proc/self/mountinfo; cat /etc/cu/sub/f; \
            readlink /etc/cu/l; stat -c '%a %u' /etc/cu/sub/f; stat -c %a /etc/cu; \
            grep -c ' /etc/plain ' /proc/self/mountinfo; ls /etc/plain | wc -l",
        ],
    );
    let r = e.rootfs();
    std::fs::create_dir_all(r.join("etc/cu/sub")).unwrap();
    std::fs::create_dir_all(r.join("etc/plain")).unwrap();
    std::fs::write(r.join("etc/cu/sub/f"), "copied\n").unwrap();
    std::fs::write(r.join("etc/plain/f"), "hidden\n").unwrap();
    std::os::unix::fs::symlink("/nowhere", r.join("etc/cu/l")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        r.join("etc/cu/sub/f"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::chown(r.join("etc/cu/sub/f"), Some(1234), None).unwrap();
    std::fs::set_permissions(r.join("etc/cu"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let list = e.config["mounts"].as_array_mut().unwrap();
    list.push(tmpfs("/etc/cu", &["tmpcopyup"]));
    list.push(tmpfs("/etc/plain", &[]));
    e.write_config();
    assert_eq!(
        e.run_ok().lines().collect::<Vec<_>>(),
        ["1", "copied", "/nowhere", "640 1234", "750", "1", "0"]
    );
    // the image itself is untouched
    assert_eq!(read(r.join("etc/cu/sub/f")), "copied");
}

#[test]
fn idmapped_mounts_that_are_not_binds_are_refused_naming_the_field() {
    if !require_root() {
        return;
    }
    let mut e = Env::new("idmap", &["true"]);
    for (m, field) in [
        (tmpfs("/i", &["idmap"]), "mounts[N].uidMappings"),
        (tmpfs("/i", &["ridmap"]), "mounts[N].uidMappings"),
        (
            json!({"destination": "/i", "type": "tmpfs", "source": "tmpfs",
                "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}),
            "mounts[N].uidMappings",
        ),
    ] {
        let n = e.config["mounts"].as_array().unwrap().len();
        e.config["mounts"].as_array_mut().unwrap().push(m);
        e.write_config();
        let field = field.replace('N', &n.to_string());
        e.create_refused(&[&field, "idmapped mounts are bind mounts"]);
        e.config["mounts"].as_array_mut().unwrap().pop();
    }
}

#[test]
fn the_default_filesystems_are_there() {
    if !require_root() {
        return;
    }
    // carve-oci spec's (runc's) default mounts: /proc, /sys, /dev/pts, /dev/shm (config-linux.md
    // "Default Filesystems"), each with its filesystem type.
    let e = Env::new(
        "deffs",
        &[
            "sh",
            "-c",
            "for m in /proc /sys /dev/pts /dev/shm; do \
            awk -v m=$m '$5 == m' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1; done",
        ],
    );
    assert_eq!(
        e.run_ok().lines().collect::<Vec<_>>(),
        ["proc", "sysfs", "devpts", "tmpfs"]
    );
}
