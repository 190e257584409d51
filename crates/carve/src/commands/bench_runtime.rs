//! `carve bench runtime`: carve-oci side by side with runc and youki (when installed) on one
//! busybox bundle, interleaved run by run so load drift hits every runtime alike.
//!
//! Measured per runtime, `--runs` times each: create + start + delete --force of a running
//! `sleep` container; run `/bin/true` + delete; each phase alone (create, start, state, kill,
//! delete of the stopped container); the peak RSS of every CLI call (the runtime process's
//! `ru_maxrss`, in separate rounds through `busybox time`, see [`rss_wrapper`]). Medians with p10/p90, ratios against runc and youki, and the targets of
//! issue 4. `--churn N` instead runs N create/start/delete cycles of carve-oci and checks that
//! state dirs, cgroups, mounts, processes, the container process's fds and free memory stay flat.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `carve bench runtime`.
#[derive(clap::Args)]
pub struct Args {
    /// Measurements of each kind per runtime.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// The carve-oci binary (default: next to this carve binary, else on PATH).
    #[arg(long = "carve-oci")]
    pub carve_oci: Option<PathBuf>,
    /// The runc binary (default: on PATH).
    #[arg(long)]
    pub runc: Option<PathBuf>,
    /// The youki binary (default: on PATH or in ~/.cargo/bin; skipped when absent — see
    /// scripts/bench-setup.sh).
    #[arg(long)]
    pub youki: Option<PathBuf>,
    /// Instead of the comparison: N create/start/delete cycles of carve-oci, checking for leaks.
    #[arg(long)]
    pub churn: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// create+start+delete --force ≤ this × youki's.
pub const TARGET_CYCLE_VS_YOUKI: f64 = 0.35;
/// create+start+delete --force ≤ this × runc's.
pub const TARGET_CYCLE_VS_RUNC: f64 = 0.1;
/// run /bin/true + delete ≤ this × runc's.
pub const TARGET_RUN_VS_RUNC: f64 = 0.3;
/// Peak RSS of any carve-oci CLI call, KiB.
pub const TARGET_RSS_KIB: u64 = 3 * 1024;

const METRICS: [&str; 7] = [
    "cycle", "run_true", "create", "start", "state", "kill", "delete",
];

/// One runtime under test.
struct Rt {
    name: &'static str,
    bin: PathBuf,
    root: PathBuf,
    /// Wall times per metric, seconds.
    times: Vec<Vec<f64>>,
    /// Peak RSS per CLI call, KiB (from the RSS rounds).
    rss: Vec<u64>,
    /// Failed rounds (retried), with the runtime's message.
    failures: Vec<String>,
    /// During the RSS rounds: calls go through `busybox time -f %M` (see [`rss_wrapper`]).
    rss_via: Option<PathBuf>,
}

/// A finished runtime call.
struct Call {
    ok: bool,
    secs: f64,
    stderr: String,
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
fn call(bin: &Path, args: &[&str], errfile: &Path) -> Result<Call> {
    let err = std::fs::File::create(errfile).with_context(|| errfile.display().to_string())?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    // Put the runtime in its own process group so a stray signal to ours never reaches it.
    cmd.process_group(0);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let pid = child.id() as libc::pid_t;
    // A hung runtime must not hang the benchmark (youki's `run` was seen to miss its child's
    // exit): wait on a pidfd with a deadline — no polling interval added to the figures.
    if !exited_within(pid, CALL_LIMIT) {
        // SAFETY: kill has no memory effects; pid is our unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut st = 0;
        // SAFETY: st is a valid out-pointer; pid is our child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        bail!(
            "{} {} did not finish within {CALL_LIMIT:?} (killed)",
            bin.display(),
            args.join(" ")
        );
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
            return Err(e).context("wait4");
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
    fn new(name: &'static str, bin: PathBuf, work: &Path) -> Rt {
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
    fn run(&mut self, work: &Path, args: &[&str]) -> Result<f64> {
        let c = self.try_run(work, args)?;
        if !c.ok {
            bail!("{} {}: {}", self.name, args.join(" "), c.stderr.trim_end());
        }
        Ok(c.secs)
    }

    fn try_run(&mut self, work: &Path, args: &[&str]) -> Result<Call> {
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
            .with_context(|| format!("busybox time printed {last:?}"))?;
        self.rss.push(busybox_kib(v));
        c.stderr = rest.to_string();
        Ok(c)
    }

    fn record(&mut self, metric: &str, secs: f64) {
        let i = METRICS.iter().position(|m| *m == metric).unwrap();
        self.times[i].push(secs);
    }

    fn state(&mut self, work: &Path, id: &str) -> Result<Value> {
        let root = self.root.to_string_lossy().into_owned();
        let errf = work.join(format!("stderr-{}", self.name));
        let out = Command::new(&self.bin)
            .args(["--root", &root, "state", id])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&errf)?)
            .output()
            .with_context(|| format!("{} state {id}", self.name))?;
        if !out.status.success() {
            bail!(
                "{} state {id}: {}",
                self.name,
                std::fs::read_to_string(&errf)
                    .unwrap_or_default()
                    .trim_end()
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Whether `id` still exists (`state` succeeds).
    fn exists(&mut self, work: &Path, id: &str) -> bool {
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
fn wait_exit(pid: i32, limit: Duration) -> Result<()> {
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
        bail!("pid {pid} did not exit within {limit:?} after SIGKILL");
    }
    Ok(())
}

/// The work directory, bundle and cgroup parent of one benchmark; removes them on drop, with
/// every container any runtime still lists.
struct Work {
    dir: PathBuf,
    cgroup_parent: String,
    bins: Vec<(PathBuf, PathBuf)>,
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
fn host_quiet_lock() -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    const PATH: &str = "/run/carve-test-host.lock";
    let f = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PATH)
        .with_context(|| PATH.to_string())?;
    // SAFETY: the fd is valid for the life of `f`; flock has no memory effects.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        eprintln!("carve bench runtime: waiting for host-tuning work to finish ({PATH})");
        // SAFETY: as above.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).context(PATH);
        }
    }
    Ok(f)
}

/// Every mounted cgroup hierarchy.
fn hierarchies() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let t = l.split(" - ").nth(1).unwrap_or("");
            t.starts_with("cgroup ") || t.starts_with("cgroup2 ")
        })
        .filter_map(|l| l.split_whitespace().nth(4).map(PathBuf::from))
        .collect()
}

fn dirs_below(d: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                dirs_below(&e.path(), out);
            }
        }
    }
}

/// Cgroup directories below `/<parent>` on every hierarchy (the parent excluded).
fn cgroups_below(parent: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for h in hierarchies() {
        dirs_below(&h.join(parent), &mut v);
    }
    v
}

fn remove_cgroup_tree(parent: &str) {
    for h in hierarchies() {
        let top = h.join(parent);
        if !top.exists() {
            continue;
        }
        let mut v = vec![top.clone()];
        dirs_below(&top, &mut v);
        v.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in v {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

fn busybox_bundle(bundle: &Path) -> Result<()> {
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(bundle.join("rootfs").join(d))?;
    }
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .context("/bin/busybox: install busybox-static (scripts/setup.sh)")?;
    for a in ["sh", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", bin.join(a))?;
    }
    Ok(())
}

/// Writes the bundle's config.json: the default spec (runc's), no terminal, `args`, and a
/// cgroupsPath under this benchmark's parent.
fn write_config(bundle: &Path, args: &[&str], cgroups_path: &str) -> Result<()> {
    let mut c = carve_container::config::default_spec_json();
    c["process"]["terminal"] = json!(false);
    c["process"]["args"] = json!(args);
    c["linux"]["cgroupsPath"] = json!(cgroups_path);
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&c)?)?;
    Ok(())
}

fn on_path(name: &str) -> Option<PathBuf> {
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

fn find_carve_oci(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let beside = std::env::current_exe()?.with_file_name("carve-oci");
    if beside.is_file() {
        return Ok(beside);
    }
    on_path("carve-oci").context(
        "carve-oci not found next to carve nor on PATH: build it (cargo build --release -p \
         carve-oci) or pass --carve-oci PATH",
    )
}

/// Sorted-copy percentile (nearest rank).
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Runs `carve bench runtime`.
pub fn run(args: Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("carve bench runtime needs root (runtimes create namespaces and cgroups)");
    }
    let carve = find_carve_oci(args.carve_oci.clone())?;
    let _quiet = host_quiet_lock()?;
    let tag = format!("carve-bench-runtime-{}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir)?;
    let mut work = Work {
        dir: dir.clone(),
        cgroup_parent: tag.clone(),
        bins: Vec::new(),
    };
    let bundle = dir.join("bundle");
    busybox_bundle(&bundle)?;
    if let Some(n) = args.churn {
        let rt = Rt::new("carve-oci", carve, &dir);
        work.bins.push((rt.bin.clone(), rt.root.clone()));
        return churn(rt, &work, &bundle, n, args.json);
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut rts = vec![Rt::new("carve-oci", carve, &dir)];
    match args.runc.clone().or_else(|| on_path("runc")) {
        Some(p) => rts.push(Rt::new("runc", p, &dir)),
        None => eprintln!("carve bench runtime: runc not found (scripts/setup.sh installs it)"),
    }
    match args.youki.clone().or_else(|| on_path("youki")) {
        Some(p) => rts.push(Rt::new("youki", p, &dir)),
        None => eprintln!(
            "carve bench runtime: youki not found, compared with runc only \
             (scripts/bench-setup.sh installs it)"
        ),
    }
    work.bins = rts
        .iter()
        .map(|r| (r.bin.clone(), r.root.clone()))
        .collect();
    let b = bundle.to_string_lossy().into_owned();
    if !args.json {
        println!(
            "carve bench runtime: {} runs each, interleaved; busybox bundle, default spec; {}",
            args.runs,
            rts.iter()
                .map(|r| format!("{} = {}", r.name, r.bin.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // One unrecorded round first: page cache, binaries, cgroup parents.
    for round in 0..=args.runs {
        for rt in rts.iter_mut() {
            let times_before: Vec<usize> = rt.times.iter().map(Vec::len).collect();
            robust_round(rt, &dir, &b, &work.cgroup_parent, round)?;
            if round == 0 {
                for (t, n) in rt.times.iter_mut().zip(times_before) {
                    t.truncate(n);
                }
            }
        }
        if !args.json && round > 0 && round % 10 == 0 {
            eprintln!("  {round}/{} runs", args.runs);
        }
    }
    // Peak RSS: separate rounds of the same calls through busybox time (timings discarded).
    let bb = rss_wrapper().context("busybox-static is needed to measure peak RSS")?;
    for round in 0..args.runs.min(10) {
        for rt in rts.iter_mut() {
            let times_before: Vec<usize> = rt.times.iter().map(Vec::len).collect();
            rt.rss_via = Some(bb.clone());
            let r = robust_round(rt, &dir, &b, &work.cgroup_parent, args.runs + 1 + round);
            rt.rss_via = None;
            r?;
            for (t, n) in rt.times.iter_mut().zip(times_before) {
                t.truncate(n);
            }
        }
    }
    report(&rts, args.json)
}

/// Failed calls tolerated per runtime before the benchmark gives up (youki now and then fails
/// `create` with "failed to seal /proc/self/exe: EBUSY" under load).
const MAX_FAILURES: usize = 3;

/// `one_round`, retried after a failure: the round's containers are force-deleted, the failure is
/// printed and counted, and its partial timings are dropped.
fn robust_round(rt: &mut Rt, work: &Path, bundle: &str, parent: &str, round: usize) -> Result<()> {
    loop {
        let before: Vec<usize> = rt.times.iter().map(Vec::len).collect();
        let rss_before = rt.rss.len();
        let attempt = round * 10 + rt.failures.len();
        match one_round(rt, work, bundle, parent, attempt) {
            Ok(()) => return Ok(()),
            Err(e) => {
                for (t, n) in rt.times.iter_mut().zip(before) {
                    t.truncate(n);
                }
                rt.rss.truncate(rss_before);
                let id = format!("carve-bench-{}-{attempt}", rt.name);
                for i in [id.clone(), format!("{id}-p"), format!("{id}-p-r")] {
                    let _ = rt.try_run(work, &["delete", "--force", &i]);
                }
                // The first line says what failed; the rest is often a backtrace.
                let msg = format!("{e:#}");
                let msg = msg.lines().next().unwrap_or("").to_string();
                eprintln!("carve bench runtime: {msg} (retrying the round)");
                rt.failures.push(msg);
                if rt.failures.len() >= MAX_FAILURES {
                    bail!("{} failed {MAX_FAILURES} times: {:?}", rt.name, rt.failures);
                }
            }
        }
    }
}

/// One measurement of every kind for one runtime.
fn one_round(rt: &mut Rt, work: &Path, bundle: &str, parent: &str, round: usize) -> Result<()> {
    let id = format!("carve-bench-{}-{round}", rt.name);
    let bpath = Path::new(bundle);
    // create + start + delete --force of a running sleep.
    write_config(bpath, &["sleep", "1000"], &format!("/{parent}/{id}"))?;
    let c = rt.run(work, &["create", "--bundle", bundle, &id])?;
    let s = rt.run(work, &["start", &id])?;
    let d = rt.run(work, &["delete", "--force", &id])?;
    rt.record("cycle", c + s + d);

    // Each phase alone: create, start, state, kill, (wait for the exit, untimed), delete.
    let id = format!("{id}-p");
    write_config(bpath, &["sleep", "1000"], &format!("/{parent}/{id}"))?;
    let t = rt.run(work, &["create", "--bundle", bundle, &id])?;
    rt.record("create", t);
    let t = rt.run(work, &["start", &id])?;
    rt.record("start", t);
    let t = rt.run(work, &["state", &id])?;
    rt.record("state", t);
    let pid = rt.state(work, &id)?["pid"].as_i64().unwrap_or(0) as i32;
    let t = rt.run(work, &["kill", &id, "KILL"])?;
    rt.record("kill", t);
    if pid > 0 {
        wait_exit(pid, Duration::from_secs(10))?;
    }
    let t = rt.run(work, &["delete", &id])?;
    rt.record("delete", t);

    // run /bin/true in the foreground, then delete (runc's and youki's `run` may already have
    // deleted it; then only `run` counts).
    let id = format!("{id}-r");
    write_config(bpath, &["/bin/true"], &format!("/{parent}/{id}"))?;
    let mut t = rt.run(work, &["run", "--bundle", bundle, &id])?;
    if rt.exists(work, &id) {
        t += rt.run(work, &["delete", "--force", &id])?;
    }
    rt.record("run_true", t);
    Ok(())
}

fn summary(v: &[f64]) -> Value {
    json!({"median_ms": median(v) * 1e3, "p10_ms": pct(v, 10.0) * 1e3, "p90_ms": pct(v, 90.0) * 1e3, "n": v.len()})
}

fn report(rts: &[Rt], as_json: bool) -> Result<()> {
    let med = |name: &str, metric: &str| -> Option<f64> {
        let i = METRICS.iter().position(|m| *m == metric)?;
        rts.iter()
            .find(|r| r.name == name)
            .map(|r| median(&r.times[i]))
    };
    let ratio = |metric: &str, peer: &str| -> Option<f64> {
        Some(med("carve-oci", metric)? / med(peer, metric)?)
    };
    let carve_rss_max = rts
        .iter()
        .find(|r| r.name == "carve-oci")
        .and_then(|r| r.rss.iter().max().copied())
        .unwrap_or(0);
    let targets = [
        ("cycle", "youki", TARGET_CYCLE_VS_YOUKI),
        ("cycle", "runc", TARGET_CYCLE_VS_RUNC),
        ("run_true", "runc", TARGET_RUN_VS_RUNC),
    ];
    let mut checks = Vec::new();
    for (metric, peer, target) in targets {
        if let Some(r) = ratio(metric, peer) {
            checks.push(json!({
                "metric": metric, "vs": peer, "ratio": r, "target": target, "met": r <= target,
                "miss_factor": r / target,
            }));
        }
    }
    checks.push(json!({
        "metric": "peak_rss_kib", "value": carve_rss_max, "target": TARGET_RSS_KIB,
        "met": carve_rss_max <= TARGET_RSS_KIB,
    }));
    if as_json {
        let mut runtimes = serde_json::Map::new();
        for r in rts {
            let mut m = serde_json::Map::new();
            for (i, name) in METRICS.iter().enumerate() {
                m.insert(name.to_string(), summary(&r.times[i]));
            }
            let rss: Vec<f64> = r.rss.iter().map(|&k| k as f64).collect();
            m.insert(
                "peak_rss_kib".into(),
                json!({"median": median(&rss), "p90": pct(&rss, 90.0),
                       "max": r.rss.iter().max(), "calls": r.rss.len()}),
            );
            m.insert("binary".into(), json!(r.bin));
            m.insert("failed_rounds".into(), json!(r.failures));
            runtimes.insert(r.name.to_string(), Value::Object(m));
        }
        let mut ratios = serde_json::Map::new();
        for peer in ["runc", "youki"] {
            let mut m = serde_json::Map::new();
            for metric in METRICS {
                if let Some(x) = ratio(metric, peer) {
                    m.insert(metric.to_string(), json!(x));
                }
            }
            if !m.is_empty() {
                ratios.insert(format!("carve-oci/{peer}"), Value::Object(m));
            }
        }
        let doc = json!({"runtimes": runtimes, "ratios": ratios, "targets": checks});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("\nmilliseconds: median [p10 .. p90]");
    print!("{:<10}", "");
    for r in rts {
        print!("{:>26}", r.name);
    }
    for peer in ["runc", "youki"] {
        if rts.iter().any(|r| r.name == peer) {
            print!("{:>12}", format!("/ {peer}"));
        }
    }
    println!();
    for (i, metric) in METRICS.iter().enumerate() {
        print!("{metric:<10}");
        for r in rts {
            let v = &r.times[i];
            print!(
                "{:>26}",
                format!(
                    "{:.2} [{:.2} .. {:.2}]",
                    median(v) * 1e3,
                    pct(v, 10.0) * 1e3,
                    pct(v, 90.0) * 1e3
                )
            );
        }
        for peer in ["runc", "youki"] {
            if let Some(x) = ratio(metric, peer) {
                print!("{:>12}", format!("{x:.3}x"));
            }
        }
        println!();
    }
    print!("{:<10}", "rss KiB");
    for r in rts {
        let rss: Vec<f64> = r.rss.iter().map(|&k| k as f64).collect();
        print!(
            "{:>26}",
            format!(
                "{:.0} [max {}]",
                median(&rss),
                r.rss.iter().max().copied().unwrap_or(0)
            )
        );
    }
    println!("\n(cycle = create + start + delete --force of a running sleep; run_true = run /bin/true + delete;\n create/start/state/kill/delete = each phase alone; rss = peak RSS of each CLI call, median [max])");
    for r in rts.iter().filter(|r| !r.failures.is_empty()) {
        println!(
            "{}: {} failed round(s), retried: {:?}",
            r.name,
            r.failures.len(),
            r.failures
        );
    }
    println!("\ntargets:");
    for c in &checks {
        let met = c["met"].as_bool().unwrap_or(false);
        if c["metric"] == "peak_rss_kib" {
            println!(
                "  carve-oci peak RSS of any call {} KiB <= {} KiB: {}",
                c["value"],
                TARGET_RSS_KIB,
                if met { "met" } else { "NOT met" }
            );
        } else {
            let r = c["ratio"].as_f64().unwrap_or(f64::NAN);
            let t = c["target"].as_f64().unwrap_or(f64::NAN);
            println!(
                "  {} vs {}: {r:.3}x (target <= {t}x): {}",
                c["metric"].as_str().unwrap_or(""),
                c["vs"].as_str().unwrap_or(""),
                if met {
                    "met".to_string()
                } else {
                    format!("NOT met, {:.2}x over", r / t)
                }
            );
        }
    }
    Ok(())
}

/// One churn sample: what must stay flat.
#[derive(Debug, Clone, serde::Serialize)]
struct Sample {
    cycle: usize,
    state_dirs: usize,
    cgroups: usize,
    mounts: usize,
    processes: usize,
    container_fds: usize,
    own_fds: usize,
    mem_available_kib: u64,
    slab_unreclaimable_kib: u64,
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn count_dir(p: &Path) -> usize {
    std::fs::read_dir(p).map(|r| r.count()).unwrap_or(0)
}

fn churn(mut rt: Rt, work: &Work, bundle: &Path, n: usize, as_json: bool) -> Result<()> {
    if n == 0 {
        bail!("--churn needs at least 1 cycle");
    }
    let dir = &work.dir;
    let b = bundle.to_string_lossy().into_owned();
    let dir_s = dir.to_string_lossy().into_owned();
    let every = (n / 10).max(1);
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut durations = Vec::new();
    for i in 0..n {
        let id = format!("carve-churn-{i}");
        write_config(
            bundle,
            &["sleep", "1000"],
            &format!("/{}/{id}", work.cgroup_parent),
        )?;
        let t0 = Instant::now();
        rt.run(dir, &["create", "--bundle", &b, &id])?;
        rt.run(dir, &["start", &id])?;
        let mut container_fds = 0;
        if i % every == 0 || i + 1 == n {
            let pid = rt.state(dir, &id)?["pid"].as_i64().unwrap_or(0);
            container_fds = count_dir(Path::new(&format!("/proc/{pid}/fd")));
        }
        rt.run(dir, &["delete", "--force", &id])?;
        durations.push(t0.elapsed().as_secs_f64());
        if i % every == 0 || i + 1 == n {
            let cgs = cgroups_below(&work.cgroup_parent);
            let procs: usize = cgs
                .iter()
                .map(|d| {
                    std::fs::read_to_string(d.join("cgroup.procs"))
                        .map(|s| s.lines().count())
                        .unwrap_or(0)
                })
                .sum();
            let mounts = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(&dir_s))
                .count();
            samples.push(Sample {
                cycle: i + 1,
                state_dirs: count_dir(&rt.root),
                cgroups: cgs.len(),
                mounts,
                processes: procs,
                container_fds,
                own_fds: count_dir(Path::new("/proc/self/fd")),
                mem_available_kib: meminfo("MemAvailable"),
                slab_unreclaimable_kib: meminfo("SUnreclaim"),
            });
        }
    }
    let total = start.elapsed();
    let first = samples.first().cloned().context("no sample")?;
    let last = samples.last().cloned().context("no sample")?;
    let leaks: Vec<String> = samples
        .iter()
        .filter(|s| s.state_dirs + s.cgroups + s.mounts + s.processes > 0)
        .map(|s| format!("{s:?}"))
        .collect();
    let fds_flat = samples
        .iter()
        .all(|s| s.container_fds == first.container_fds && s.own_fds == first.own_fds);
    // The first tenth of the cycles warms caches (slab pages, page cache of the binaries):
    // memory is compared from the second sample on.
    let base = samples.get(1).unwrap_or(&first).clone();
    let mem_delta = last.mem_available_kib as i64 - base.mem_available_kib as i64;
    let slab_delta = last.slab_unreclaimable_kib as i64 - base.slab_unreclaimable_kib as i64;
    // MemAvailable on a shared host moves with everyone's builds; what churn itself could leak is
    // kernel memory per container (namespaces, cgroups, mounts): 1 KiB per cycle is the bar.
    let slab_flat = slab_delta < (last.cycle - base.cycle) as i64;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "cycles": n, "seconds": total.as_secs_f64(),
                "cycle_ms": summary(&durations),
                "samples": samples, "leaks": leaks, "fds_flat": fds_flat,
                "baseline_cycle": base.cycle,
                "mem_available_delta_kib": mem_delta, "slab_unreclaimable_delta_kib": slab_delta,
                "slab_flat": slab_flat,
            }))?
        );
    } else {
        println!(
            "carve bench runtime --churn {n}: {} create/start/delete --force cycles in {:.1} s \
             (median {:.2} ms)",
            n,
            total.as_secs_f64(),
            median(&durations) * 1e3
        );
        println!(
            "{:>7} {:>6} {:>7} {:>6} {:>6} {:>8} {:>7} {:>14} {:>12}",
            "cycle",
            "state",
            "cgroups",
            "mounts",
            "procs",
            "ctr-fds",
            "own-fds",
            "MemAvail KiB",
            "SUnreclaim"
        );
        for s in &samples {
            println!(
                "{:>7} {:>6} {:>7} {:>6} {:>6} {:>8} {:>7} {:>14} {:>12}",
                s.cycle,
                s.state_dirs,
                s.cgroups,
                s.mounts,
                s.processes,
                s.container_fds,
                s.own_fds,
                s.mem_available_kib,
                s.slab_unreclaimable_kib
            );
        }
        println!(
            "leftover state/cgroups/mounts/processes: {}; fds flat: {}; from cycle {} to {}: \
             MemAvailable {:+} KiB, SUnreclaim {:+} KiB ({})",
            if leaks.is_empty() { "none" } else { "FOUND" },
            if fds_flat { "yes" } else { "NO" },
            base.cycle,
            last.cycle,
            mem_delta,
            slab_delta,
            if slab_flat {
                "flat"
            } else {
                "GREW more than 1 KiB/cycle"
            }
        );
    }
    // Memory is reported, not judged here: other work on a shared host moves it too.
    if !leaks.is_empty() || !fds_flat {
        bail!("churn leaked: {leaks:?} (fds flat: {fds_flat})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{median, pct};

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let v: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(pct(&v, 10.0), 2.0);
        assert_eq!(pct(&v, 90.0), 10.0);
        assert_eq!(pct(&v, 50.0), 6.0);
        assert!(median(&[]).is_nan());
    }
}
