//! podman (Debian's) drives the runtime: `podman --runtime <carve-oci>` runs a busybox image
//! imported from a rootfs tar — `run --rm`, `-it` with a terminal, `--memory`/`--pids-limit`/
//! `--cpus` (read back from the container's cgroups on the host), `-d` + `exec`, `pause`/
//! `unpause`, `stop`, `ps` statuses and `rm -f`.
//!
//! Every test has its own podman store (`--root`, `--runroot`, tmp dir, events log, a test
//! containers.conf and storage.conf through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF, the vfs
//! driver so no overlay mount is left behind) and its own cgroup parent, all removed on drop.
//! This host lacks CAP_SYS_RESOURCE, so every run passes `--ulimit nofile=1024:1024 --ulimit
//! nproc=4096:4096` (podman's defaults are above the hard limits it could raise).

mod clients_support;
use clients_support::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// An isolated podman world: store, run root, config files and a cgroup parent.
struct Podman {
    _lock: carve_testkit::HostLock,
    dir: tempfile::TempDir,
    podman: PathBuf,
    runtime: PathBuf,
    cgroup_parent: String,
    image: String,
}

impl Podman {
    fn new() -> Podman {
        let podman = need("podman", "podman");
        need("conmon", "conmon");
        let dir = tempfile::Builder::new()
            .prefix("carve-podman-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{0}/events.log\"\ntmp_dir = \"{0}/tmp\"\n\
                 volume_path = \"{0}/volumes\"\nstatic_dir = \"{0}/static\"\n\
                 [network]\nnetwork_config_dir = \"{0}/net\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/runroot\"\ngraphroot = \"{0}/root\"\n",
                d.display()
            ),
        )
        .unwrap();
        let p = Podman {
            _lock: host_lock(),
            podman,
            runtime: runtime(),
            cgroup_parent: carve_testkit::unique_name("podman"),
            image: format!(
                "localhost/carve-busybox:{}",
                carve_testkit::short_name("img")
            ),
            dir,
        };
        let out = run_limited(p.cmd().arg("version"), LIMIT);
        assert!(
            out.status.success(),
            "podman cannot start here ({}): {}",
            describe(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        let rootfs = p.dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        let tar = p.dir.path().join("rootfs.tar");
        tar_dir(&rootfs, &tar);
        ok(p.cmd().arg("import").arg(&tar).arg(&p.image), LIMIT);
        p
    }

    /// `podman` with this world's globals and environment.
    fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(&self.podman);
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .arg("--runtime")
            .arg(&self.runtime);
        c
    }

    /// `podman run` with the flags every run here needs, then `args`.
    fn run(&self, args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.args(["run", "--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
            ])
            .arg("--cgroup-parent")
            .arg(format!("/{}", self.cgroup_parent))
            .args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.cmd().args(args), LIMIT)
    }

    /// `podman ps -a` as (name, status) pairs.
    fn ps(&self) -> Vec<(String, String)> {
        self.ok(&["ps", "-a", "--format", "{{.Names}}\t{{.Status}}"])
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    }

    fn status(&self, name: &str) -> String {
        self.ps()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .unwrap_or_else(|| panic!("{name} is not in podman ps -a: {:?}", self.ps()))
    }

    /// Starts a detached container named `name` running `args` and checks podman used our runtime.
    fn detached(&self, name: &str, extra: &[&str], args: &[&str]) -> i32 {
        let mut a = vec!["-d", "--name", name];
        a.extend_from_slice(extra);
        a.push(&self.image);
        a.extend_from_slice(args);
        ok(&mut self.run(&a), LIMIT);
        let rt = self.ok(&["inspect", "-f", "{{.OCIRuntime}}", name]);
        assert_eq!(
            rt.trim(),
            self.runtime.to_str().unwrap(),
            "podman's runtime"
        );
        self.ok(&["inspect", "-f", "{{.State.Pid}}", name])
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = run_limited(self.cmd().args(["rm", "-a", "-f", "-t", "0"]), LIMIT);
        let _ = run_limited(self.cmd().args(["rmi", "-a", "-f"]), LIMIT);
        let left = remove_cgroup_tree(&self.cgroup_parent);
        unmount_under(self.dir.path());
        if !left.is_empty() && !std::thread::panicking() {
            panic!("cgroups left behind: {left:?}");
        }
    }
}

/// Single-quotes `s` for `sh -c`.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn podman_run_rm_echo_hi() {
    if !require_root() {
        return;
    }
    let p = Podman::new();
    let out = ok(&mut p.run(&["--rm", &p.image, "echo", "hi"]), LIMIT);
    assert_eq!(out, "hi\n");
    // a failing program's exit code reaches the user
    let o = run_limited(&mut p.run(&["--rm", &p.image, "sh", "-c", "exit 7"]), LIMIT);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(p.ps().is_empty(), "--rm left {:?}", p.ps());
}

#[test]
fn podman_run_it_with_a_terminal() {
    if !require_root() {
        return;
    }
    let script = need("script", "bsdutils");
    let p = Podman::new();
    // `script` gives podman a pty as its terminal, as a user's shell would.
    let c = p.run(&["--rm", "-it", &p.image, "sh", "-c", "tty; echo term-ok"]);
    let line: Vec<String> = std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| sq(&a.to_string_lossy()))
        .collect();
    let mut s = Command::new(script);
    s.args(["-qec", &line.join(" "), "/dev/null"]);
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    let o = run_limited_stdin(&mut s, LIMIT, true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("/dev/pts/"),
        "no terminal in the container: {out:?}"
    );
    assert!(out.contains("term-ok"), "{out:?}");
}

#[test]
fn podman_memory_pids_cpus_reach_the_cgroups() {
    if !require_root() {
        return;
    }
    let p = Podman::new();
    let name = carve_testkit::unique_name("res");
    let pid = p.detached(
        &name,
        &["--memory", "64m", "--pids-limit", "50", "--cpus", "0.5"],
        &["sleep", "1000"],
    );
    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(pid, "pids", "pids.max"), "50");
    let quota: i64 = cgroup_file(pid, "cpu", "cpu.cfs_quota_us").parse().unwrap();
    let period: i64 = cgroup_file(pid, "cpu", "cpu.cfs_period_us")
        .parse()
        .unwrap();
    assert_eq!(
        quota * 2,
        period,
        "--cpus 0.5: quota {quota} period {period}"
    );
    let cg = cgroup_of(pid, "memory").unwrap();
    assert!(
        cg.contains(&p.cgroup_parent),
        "{cg} is not under the cgroup parent"
    );
    p.ok(&["rm", "-f", "-t", "0", &name]);
    assert!(p.ps().is_empty());
    assert!(zombie_or_gone(pid), "pid {pid} survived rm -f");
}

fn zombie_or_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn podman_detached_exec_pause_stop_rm() {
    if !require_root() {
        return;
    }
    let p = Podman::new();
    let name = carve_testkit::unique_name("det");
    // PID 1 ignores SIGTERM unless it traps it: this one exits 0 on TERM, so `stop` is graceful.
    let pid = p.detached(
        &name,
        &[],
        &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
    );
    assert!(p.status(&name).starts_with("Up"), "{}", p.status(&name));

    assert_eq!(p.ok(&["exec", &name, "echo", "from-exec"]), "from-exec\n");
    let o = run_limited(p.cmd().args(["exec", &name, "sh", "-c", "exit 3"]), LIMIT);
    assert_eq!(o.status.code(), Some(3));

    p.ok(&["pause", &name]);
    assert_eq!(p.status(&name), "Paused");
    assert_eq!(
        cgroup_file(pid, "freezer", "freezer.state"),
        "FROZEN",
        "paused but not frozen"
    );
    p.ok(&["unpause", &name]);
    assert!(p.status(&name).starts_with("Up"), "{}", p.status(&name));

    p.ok(&["stop", "-t", "20", &name]);
    let st = p.status(&name);
    assert!(st.starts_with("Exited (0)"), "stop was not graceful: {st}");
    p.ok(&["rm", &name]);

    // rm -f of a running container
    let other = carve_testkit::unique_name("rmf");
    let pid2 = p.detached(&other, &[], &["sleep", "1000"]);
    p.ok(&["rm", "-f", "-t", "0", &other]);
    assert!(p.ps().is_empty(), "{:?}", p.ps());
    assert!(zombie_or_gone(pid2), "pid {pid2} survived rm -f");
}
