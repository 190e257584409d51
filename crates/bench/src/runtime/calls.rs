//! One runtime under test and its CLI calls; the benchmark's work directory, bundle and cgroup
//! parent, removed with every leftover container when dropped.

use crate::BenchError;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The figures kept per runtime, in this order.
pub const METRICS: [&str; 7] = [
    "cycle", "run_true", "create", "start", "state", "kill", "delete",
];

fn tool(what: impl Into<String>, detail: impl Into<String>) -> BenchError {
    BenchError::Tool {
        what: what.into(),
        detail: detail.into(),
    }
}

/// One runtime under test.
pub(super) struct Rt {
    pub name: &'static str,
    pub bin: PathBuf,
    pub root: PathBuf,
    /// Wall times per metric, seconds.
    pub times: Vec<Vec<f64>>,
    /// Peak RSS per CLI call, KiB (from the RSS rounds).
    pub rss: Vec<u64>,
    /// Failed rounds (retried), with the runtime's message.
    pub failures: Vec<String>,
    /// During the RSS rounds: calls go through `busybox time -f %M` (see [`rss_wrapper`]).
    pub rss_via: Option<PathBuf>,
}

/// A finished runtime call.
pub(super) struct Call {
    pub ok: bool,
    pub secs: f64,
    pub stderr: String,
}

/// The longest a single runtime call may take.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// Whether `pid` exits within `limit` (pidfd readable); true also when no pidfd can be had.
fn exited_within(pid: i32, limit: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return true;
    }
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let r = loop {
        // SAFETY: p is one valid pollfd for the call's duration.
        let r = unsafe { libc::poll(&mut p, 1, limit.as_millis() as i32) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    r != 0
}

/// Spawns `bin args` with stdout on /dev/null and stderr in `errfile` (a runtime's `create`
/// hands its stdio to the container, so no pipe) and reaps it.
fn call(bin: &Path, args: &[&str], errfile: &Path) -> Result<Call, BenchError> {
    let err = std::fs::File::create(errfile).map_err(BenchError::io("create", errfile))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    // Put the runtime in its own process group so a stray signal to ours never reaches it.
    cmd.process_group(0);
    let start = Instant::now();
    let child = cmd.spawn().map_err(BenchError::io("run", bin))?;
    let pid = child.id() as libc::pid_t;
    // A hung runtime must not hang the benchmark (youki's `run` was seen to miss its child's
    // exit): wait on a pidfd with a deadline — no polling interval added to the figures.
    if !exited_within(pid, CALL_LIMIT) {
        // SAFETY: kill has no memory effects; pid is our unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut st = 0;
        // SAFETY: st is a valid out-pointer; pid is our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        return Err(BenchError::Timeout {
            what: format!("{} {} (killed)", bin.display(), args.join(" ")),
            seconds: CALL_LIMIT.as_secs(),
        });
    }
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer (rusage may be null); pid is our child, reaped
        // here (std's Child is dropped without waiting).
        let r = unsafe { libc::wait4(pid, &mut status, 0, std::ptr::null_mut()) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(BenchError::io("wait4 for", bin)(e));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(child);
    Ok(Call {
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        secs,
        stderr: std::fs::read_to_string(errfile).unwrap_or_default(),
    })
}

impl Rt {
    pub fn new(name: &'static str, bin: PathBuf, work: &Path) -> Rt {
        Rt {
            name,
            bin,
            root: work.join(format!("root-{name}")),
            times: vec![Vec::new(); METRICS.len()],
            rss: Vec::new(),
            rss_via: None,
            failures: Vec::new(),
        }
    }

    /// Runs one CLI call with `--root`; fails with the runtime's own stderr.
    pub fn run(&mut self, work: &Path, args: &[&str]) -> Result<f64, BenchError> {
        let c = self.try_run(work, args)?;
        if !c.ok {
            return Err(tool(
                format!("{} {}", self.name, args.join(" ")),
                c.stderr.trim_end(),
            ));
        }
        Ok(c.secs)
    }

    pub fn try_run(&mut self, work: &Path, args: &[&str]) -> Result<Call, BenchError> {
        let root = self.root.to_string_lossy().into_owned();
        let errf = work.join(format!("stderr-{}", self.name));
        let Some(bb) = self.rss_via.clone() else {
            let mut a = vec!["--root", root.as_str()];
            a.extend_from_slice(args);
            return call(&self.bin, &a, &errf);
        };
        let bin = self.bin.to_string_lossy().into_owned();
        let mut a = vec!["time", "-f", "%M", bin.as_str(), "--root", root.as_str()];
        a.extend_from_slice(args);
        let mut c = call(&bb, &a, &errf)?;
        // busybox prints its figure as the last line of stderr, after the runtime's own output.
        let text = c.stderr.trim_end().to_string();
        let (rest, last) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        let v: u64 = last
            .trim()
            .parse()
            .map_err(|_| BenchError::Parse(format!("busybox time's output {last:?}")))?;
        self.rss.push(busybox_kib(v));
        c.stderr = rest.to_string();
        Ok(c)
    }

    pub fn record(&mut self, metric: &str, secs: f64) {
        let i = METRICS.iter().position(|m| *m == metric).unwrap();
        self.times[i].push(secs);
    }

    pub fn state(&mut self, work: &Path, id: &str) -> Result<Value, BenchError> {
        let root = self.root.to_string_lossy().into_owned();
        let errf = work.join(format!("stderr-{}", self.name));
        let what = format!("{} state {id}", self.name);
        let out = Command::new(&self.bin)
            .args(["--root", &root, "state", id])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&errf).map_err(BenchError::io("create", &errf))?)
            .output()
            .map_err(|e| tool(&what, e.to_string()))?;
        if !out.status.success() {
            let err = std::fs::read_to_string(&errf).unwrap_or_default();
            return Err(tool(what, err.trim_end()));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Parse(format!("{what}: {e}")))
    }

    /// Whether `id` still exists (`state` succeeds).
    pub fn exists(&mut self, work: &Path, id: &str) -> bool {
        self.state(work, id).is_ok()
    }
}

/// How the peak RSS is measured. `ru_maxrss` from our own `wait4` cannot be used: exec keeps the
/// high-water mark of the memory the child had before it (a copy of, or with posix_spawn the very
/// same, memory as this process), so every runtime would read at least this benchmark's own RSS.
/// The call therefore goes through `busybox time`: busybox-static is tiny, and its child's peak is
/// the runtime's. busybox reports `ru_maxrss` as if it counted pages (it multiplies by
/// pagesize / 1024); [`busybox_kib`] undoes that.
pub fn rss_wrapper() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// KiB from busybox `time -f %M`.
fn busybox_kib(v: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1024) as u64;
    v * 1024 / page
}

/// Waits for `pid` to exit through a pidfd (no polling interval), at most `limit`.
pub(super) fn wait_exit(pid: i32, limit: Duration) -> Result<(), BenchError> {
    // SAFETY: pidfd_open takes a pid and flags; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        // Already gone (ESRCH) is what we wait for.
        return Ok(());
    }
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd for the call's duration.
    let r = unsafe { libc::poll(&mut p, 1, limit.as_millis() as i32) };
    // SAFETY: fd is ours and closed once.
    unsafe { libc::close(fd) };
    if r != 1 {
        return Err(BenchError::Timeout {
            what: format!("the exit of pid {pid} after SIGKILL"),
            seconds: limit.as_secs(),
        });
    }
    Ok(())
}

/// The work directory, bundle and cgroup parent of one benchmark; removes them on drop, with
/// every container any runtime still lists.
pub(super) struct Work {
    pub dir: PathBuf,
    pub cgroup_parent: String,
    pub bins: Vec<(PathBuf, PathBuf)>,
    pub bundle: PathBuf,
    /// Held while the benchmark runs (see [`host_quiet_lock`]).
    _quiet: std::fs::File,
}

impl Work {
    /// Checks for root, takes the host lock, makes the work directory and the busybox bundle.
    pub fn new(note: &mut dyn FnMut(&str)) -> Result<Work, BenchError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(BenchError::Invalid {
                field: "user",
                why: "carve bench runtime needs root (runtimes create namespaces and cgroups)"
                    .into(),
            });
        }
        let quiet = host_quiet_lock(note)?;
        let tag = format!("carve-bench-runtime-{}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).map_err(BenchError::io("create", &dir))?;
        let work = Work {
            bundle: dir.join("bundle"),
            dir,
            cgroup_parent: tag,
            bins: Vec::new(),
            _quiet: quiet,
        };
        busybox_bundle(&work.bundle)?;
        Ok(work)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        for (bin, root) in &self.bins {
            let out = Command::new(bin)
                .arg("--root")
                .arg(root)
                .args(["list", "-q"])
                .stderr(Stdio::null())
                .output();
            if let Ok(o) = out {
                for id in String::from_utf8_lossy(&o.stdout).lines() {
                    let _ = Command::new(bin)
                        .arg("--root")
                        .arg(root)
                        .args(["delete", "--force", id])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        remove_cgroup_tree(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The lock that host-tuning work holds (carve-testkit's `HostLock`, the test suite's dedicated
/// cores among them). While a core sits in an exclusive cpuset no sibling cpuset may include it,
/// so no runtime could create a container cgroup, and the figures would carry that noise anyway:
/// the benchmark waits for it and holds it.
fn host_quiet_lock(note: &mut dyn FnMut(&str)) -> Result<std::fs::File, BenchError> {
    use std::os::fd::AsRawFd;
    const PATH: &str = "/run/carve-test-host.lock";
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PATH)
        .map_err(BenchError::io("open", Path::new(PATH)))?;
    // SAFETY: the fd is valid for the life of `f`; flock has no memory effects.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        note(&format!("waiting for host-tuning work to finish ({PATH})"));
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(BenchError::io("lock", Path::new(PATH))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(f)
}

/// Cgroup directories below `/<parent>` on every hierarchy (the parent excluded).
pub(super) fn cgroups_below(parent: &str) -> Vec<PathBuf> {
    carve_cri::host::cgroup_tree(parent)
        .into_iter()
        .filter(|d| d.file_name().is_some_and(|n| n != parent))
        .collect()
}

fn remove_cgroup_tree(parent: &str) {
    carve_cri::host::remove_cgroup_tree(parent);
}

fn busybox_bundle(bundle: &Path) -> Result<(), BenchError> {
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).map_err(BenchError::io("create", &bin))?;
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        let p = bundle.join("rootfs").join(d);
        std::fs::create_dir_all(&p).map_err(BenchError::io("create", &p))?;
    }
    std::fs::copy("/bin/busybox", bin.join("busybox")).map_err(|e| {
        tool(
            "copying /bin/busybox",
            format!("{e}: install busybox-static (scripts/setup.sh)"),
        )
    })?;
    for a in ["sh", "sleep", "true"] {
        let link = bin.join(a);
        std::os::unix::fs::symlink("busybox", &link).map_err(BenchError::io("link", &link))?;
    }
    Ok(())
}

/// Writes the bundle's config.json: the default spec (runc's), no terminal, `args`, and a
/// cgroupsPath under this benchmark's parent.
pub(super) fn write_config(
    bundle: &Path,
    args: &[&str],
    cgroups_path: &str,
) -> Result<(), BenchError> {
    let mut c = carve_container::config::default_spec_json();
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(args);
    c["linux"]["cgroupsPath"] = json!(cgroups_path);
    let p = bundle.join("config.json");
    let bytes = serde_json::to_vec_pretty(&c).map_err(|e| BenchError::Parse(e.to_string()))?;
    std::fs::write(&p, bytes).map_err(BenchError::io("write", &p))
}

/// `name` on PATH, in /usr/sbin, /usr/bin or ~/.cargo/bin.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let found = path
        .split(':')
        .map(PathBuf::from)
        .chain([
            "/usr/sbin".into(),
            "/usr/bin".into(),
            Path::new(&home).join(".cargo/bin"),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found
}
