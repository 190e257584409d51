//! carve-bench: the seeds' own tables, measured on this host.
//!
//! The seeds make measurable promises; this crate measures them here:
//! - [`overhead`]: one static probe ([`probe`]) runs lmbench-like rows natively, in a carve-oci
//!   container, on a dedicated core and in a carve VM; the table is each tier's ratio to native,
//!   with seed 004's rows beside it.
//! - [`interference`]: seed 004's real-time experiment: a periodic probe counts fixed work units
//!   per period on one core, quiet, untuned under load and dedicated under the same load; the
//!   load ([`load`]) is a plan of partitions carve itself brings up (stress container, flood over
//!   a bridge in the plan's own netns, a looping VM). The platform floor is reported apart.
//! - [`packet`]: seed 000's packet arithmetic with this machine's measured cycles, overhead and
//!   available share, beside measured packets/s.
//! - [`report`]: one self-contained HTML page with SVG plots of all of the above.
//! - [`cri`]: pod start and teardown through containerd's CRI, carve-oci against runc.
//! - [`fastpath`]: the example fast path bare against through the shared-memory ring.
//! - [`runtime`]: carve-oci beside runc and youki, phase by phase, peak RSS, and a churn check.
//! - [`vmboot`]: `carve vm run --wait-for` against the same QEMU line started by hand.
//!
//! Everything that changes the host goes through the `carve` binary itself (`carve run
//! --dedicated`, `carve up`/`carve down`), whose journal restores it; [`Tools`] says where the
//! binaries are.
//!
//! ```no_run
//! let tools = carve_bench::Tools::find().unwrap();
//! let work = std::path::Path::new("/tmp/carve-bench");
//! let probe = carve_bench::probe::build(work).unwrap();
//! let opts = carve_bench::overhead::Options { quick: true, ..Default::default() };
//! let table = carve_bench::overhead::run(&tools, &probe, work, &opts).unwrap();
//! println!("{}", carve_bench::overhead::render(&table));
//! ```

pub mod cri;
pub mod fastpath;
pub mod interference;
pub mod load;
pub mod overhead;
pub mod packet;
pub mod probe;
pub mod report;
pub mod runtime;
pub mod stats;
pub mod vmboot;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Errors of the benchmarks.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A program the benchmark runs failed or is missing.
    #[error("{what}: {detail}")]
    Tool {
        /// The program and what it was asked.
        what: String,
        /// Its error output or exit status.
        detail: String,
    },
    /// A program did not finish in time.
    #[error("{what} did not finish within {seconds} s")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The deadline.
        seconds: u64,
    },
    /// Output that could not be understood.
    #[error("could not parse {0}")]
    Parse(String),
    /// Bad input.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The option or field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The noise meter failed.
    #[error(transparent)]
    Noise(#[from] carve_dedicated::noise::NoiseError),
    /// The fast-path ring failed.
    #[error(transparent)]
    Ring(#[from] carve_fastpath::ring::RingError),
}

impl BenchError {
    /// A mapper for `std::io::Error` naming the action and file.
    pub fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> BenchError + 'a {
        move |source| BenchError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where the programs the benchmarks drive are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The `carve` binary (runs dedicated cores, plans and VMs).
    pub carve: PathBuf,
    /// The `carve-oci` runtime, if found.
    pub carve_oci: Option<PathBuf>,
    /// Guest assets (kernel + initramfs) for the VM rows and load, if prepared.
    pub guest: Option<carve_vm::assets::GuestAssets>,
}

impl Tools {
    /// `carve` is this process when it is carve, else `CARVE_BIN` or a `carve` beside it;
    /// `carve-oci` beside it or on PATH; guest assets from `CARVE_BENCH_GUEST` or `cache/guest`.
    pub fn find() -> Result<Tools, BenchError> {
        let exe =
            std::env::current_exe().map_err(BenchError::io("find", Path::new("/proc/self/exe")))?;
        let carve = match std::env::var_os("CARVE_BIN") {
            Some(p) => PathBuf::from(p),
            None if exe.file_name().is_some_and(|n| n == "carve") => exe.clone(),
            None => beside_or_up(&exe, "carve").ok_or_else(|| BenchError::Tool {
                what: "carve".into(),
                detail: "not found beside this program: build it or set CARVE_BIN".into(),
            })?,
        };
        let carve_oci = beside_or_up(&carve, "carve-oci").or_else(|| on_path("carve-oci"));
        let guest_dir = std::env::var_os("CARVE_BENCH_GUEST")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("cache/guest"));
        Ok(Tools {
            carve,
            carve_oci,
            guest: carve_vm::assets::cached_guest(&guest_dir),
        })
    }
}

impl Tools {
    /// `carve run --dedicated CPU --sched fifo:99 --`: the caller adds the program (and its
    /// arguments) that then runs alone on `cpu`, at the highest FIFO priority.
    pub fn dedicated_fifo(&self, cpu: usize) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.carve);
        cmd.args([
            "run",
            "--dedicated",
            &cpu.to_string(),
            "--sched",
            "fifo:99",
            "--",
        ]);
        cmd
    }
}

/// `name` in the folder of `exe` or its parent (a test binary lives in target/debug/deps).
fn beside_or_up(exe: &Path, name: &str) -> Option<PathBuf> {
    let dir = exe.parent()?;
    [dir.join(name), dir.parent()?.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// What a finished program printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `cmd` to completion within `limit`, killing it (and failing) past the deadline; a
/// non-zero exit is an error carrying its stderr.
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Result<Output, BenchError> {
    let what = format!("{cmd:?}");
    unblock_signals(cmd);
    let dir = std::env::temp_dir();
    let tag = format!("carve-bench-{}-{}", std::process::id(), unique());
    let (out_p, err_p) = (
        dir.join(format!("{tag}.out")),
        dir.join(format!("{tag}.err")),
    );
    // Files, not pipes: a chatty child never blocks on a full pipe while we poll its exit.
    let out_f = std::fs::File::create(&out_p).map_err(BenchError::io("create", &out_p))?;
    let err_f = std::fs::File::create(&err_p).map_err(BenchError::io("create", &err_p))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out_f)
        .stderr(err_f)
        .spawn()
        .map_err(|e| BenchError::Tool {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let output = Output {
        stdout: read(&out_p),
        stderr: read(&err_p),
    };
    let _ = std::fs::remove_file(&out_p);
    let _ = std::fs::remove_file(&err_p);
    match status {
        None => {
            // SIGTERM first: carve restores the host on it; then make sure.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let grace = Instant::now() + Duration::from_secs(20);
            while Instant::now() < grace {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            Err(BenchError::Timeout {
                what,
                seconds: limit.as_secs(),
            })
        }
        Some(s) if !s.success() => Err(BenchError::Tool {
            what,
            detail: format!("{s}: {}", probe::tail(&output.stderr, 1500)),
        }),
        Some(_) => Ok(output),
    }
}

/// Lets the child start with no signal blocked. A caller such as `carve noise` blocks
/// SIGINT/SIGTERM/SIGHUP to restore the host before it exits, and a mask survives fork and
/// exec: a `carve up -d` started from it would leave a plan holder that never sees the SIGTERM
/// of `carve down` (seen: the load plan hung until killed).
fn unblock_signals(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls: sigemptyset and sigprocmask
    // on a stack-allocated set.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

/// A process-wide counter for unique file and object names.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Online CPUs of this host.
pub fn online_cpus() -> Result<carve_core::CpuSet, BenchError> {
    carve_dedicated::sys::online_cpus(Path::new("/sys")).ok_or_else(|| BenchError::Tool {
        what: "read /sys/devices/system/cpu/online".into(),
        detail: "unreadable".into(),
    })
}

/// The default probed core: the last online CPU (CPU 0 keeps housekeeping).
pub fn default_cpu() -> Result<usize, BenchError> {
    let online = online_cpus()?;
    let last = online.iter().last();
    match last {
        Some(c) if c > 0 => Ok(c),
        _ => Err(BenchError::Invalid {
            field: "cpu",
            why: format!("need two online CPUs (online: {online})"),
        }),
    }
}

/// A command pinned to `cpu` before it executes (sched_setaffinity in the child).
pub fn pinned(program: &Path, cpu: usize) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    // SAFETY: between fork and exec only async-signal-safe calls: sched_setaffinity on a
    // stack-allocated set.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    cmd
}

/// The time now as seconds since the epoch (report metadata).
pub fn timestamp() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{s}")
}
