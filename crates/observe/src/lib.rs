//! carve's observer: the supervisor API, Prometheus metrics, the dedicated-core noise probe and
//! the web dashboard of a running plan.
//!
//! # Tour
//! - [`Observer::start`] (called by the detached supervisor once the plan is up) binds the API
//!   socket `/run/carve/PLAN/api.sock` (0600, in the plan's 0700 folder; non-root peers are
//!   also refused by their credentials), optionally a TCP listener (`[observe] listen`), and
//!   starts the [`sample::Sampler`] thread: once a second it reads the plan's state and the
//!   kernel's counters ([`procfs`]), probes each dedicated core for 4 ms ([`probe`]), and
//!   publishes an [`model::Overview`] and [`model::ApiEvent`]s.
//! - [`api`] routes requests (hyper 1 over tokio listeners, one runtime thread): plan,
//!   partitions, start/stop/restart, logs (follow), exec, an NDJSON event stream, `/metrics`
//!   ([`metrics`]) and the dashboard page (embedded in the binary).
//! - [`client`] is the blocking client the `carve` commands use (`ps`, `stop`, `start`, `logs`,
//!   `exec`, `top`), falling back to the state files when no supervisor answers.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let c = carve_observe::client::Client::for_plan("/run/carve".as_ref(), "gateway");
//! let ov = c.overview()?;
//! for p in &ov.partitions {
//!     println!("{} {} {:?}", p.name, p.state, p.cpu_ratio);
//! }
//! # Ok(()) }
//! ```

pub mod api;
pub mod client;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod procfs;
pub mod sample;

use api::Shared;
use carve_engine::spec::PlanSpec;
use carve_engine::state::PlanDir;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The API socket's file name in the plan's state folder.
pub const SOCKET: &str = "api.sock";

/// The file in the plan's state folder holding the TCP listener's address.
pub const LISTEN_FILE: &str = "metrics.addr";

/// Events kept for new clients.
const RECENT_EVENTS: usize = 200;

/// The API socket of plan `plan` under state root `root`.
pub fn socket_path(root: &Path, plan: &str) -> PathBuf {
    PlanDir::new(root, plan).dir.join(SOCKET)
}

/// Why the observer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A listener could not be set up.
    #[error("{what}: {source}")]
    Listen {
        /// The socket or address.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// How the observer is set up.
#[derive(Clone, Default)]
pub struct Config {
    /// The TCP listener for metrics and the dashboard (read-only), if any.
    pub listen: Option<SocketAddr>,
    /// Places probe threads on dedicated cores (the supervisor's dedicated tier).
    pub join: Option<sample::JoinHook>,
    /// Sampling interval (1 s by default).
    pub interval: Option<Duration>,
    /// Whether to probe dedicated cores (default true).
    pub no_probe: bool,
}

/// A running observer; dropping it stops sampling and removes the socket.
pub struct Observer {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    /// The TCP listener's address (with the port the kernel chose for port 0).
    pub tcp: Option<SocketAddr>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn listen_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ObserveError {
    let what = what.into();
    move |source| ObserveError::Listen { what, source }
}

impl Observer {
    /// Starts serving plan `plan` whose state is in `dir`.
    pub fn start(dir: PlanDir, plan: PlanSpec, cfg: Config) -> Result<Observer, ObserveError> {
        let socket = dir.dir.join(SOCKET);
        // Root only: the folder 0700 and the socket 0600 (bound under a umask that never lets
        // anyone else in, even for the instant before the chmod).
        std::fs::set_permissions(&dir.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(listen_err(dir.dir.display().to_string()))?;
        let _ = std::fs::remove_file(&socket);
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let unix = std::os::unix::net::UnixListener::bind(&socket);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        let unix = unix.map_err(listen_err(socket.display().to_string()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(listen_err(socket.display().to_string()))?;
        unix.set_nonblocking(true)
            .map_err(listen_err(socket.display().to_string()))?;
        let tcp = match cfg.listen {
            Some(a) => {
                let l = std::net::TcpListener::bind(a).map_err(listen_err(a.to_string()))?;
                l.set_nonblocking(true).map_err(listen_err(a.to_string()))?;
                Some(l)
            }
            None => None,
        };
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(a) = tcp_addr {
            // Where the listener ended up (port 0 lets the kernel choose), for scripts and tests.
            let _ = std::fs::write(dir.dir.join(LISTEN_FILE), a.to_string());
        }
        let (tx, _) = tokio::sync::broadcast::channel(256);
        let sh = Arc::new(Shared {
            dir: dir.clone(),
            plan: plan.clone(),
            overview: Mutex::new(model::Overview {
                plan: plan.name.clone(),
                ..Default::default()
            }),
            events: Mutex::new(VecDeque::new()),
            tx,
            observer_cpu: Mutex::new(0.0),
            samples: Mutex::new(0),
            sampled: std::sync::Condvar::new(),
            kick: std::sync::atomic::AtomicBool::new(false),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut sampler = sample::Sampler::new(dir, plan, cfg.join.clone());
        sampler.probe = !cfg.no_probe;
        let interval = cfg.interval.unwrap_or(Duration::from_secs(1));
        // Two samples before the API opens, 250 ms apart (as `carve ps` samples): its first
        // answers already have CPU figures, which need a difference.
        sampler.sample();
        std::thread::sleep(Duration::from_millis(250));
        publish(&sh, sampler.sample());
        {
            let (sh, stop) = (sh.clone(), stop.clone());
            std::thread::Builder::new()
                .name("carve-sampler".into())
                .spawn(move || sample_loop(sampler, sh, stop, interval))
                .map_err(listen_err("sampler thread"))?;
        }
        {
            let sh = sh.clone();
            std::thread::Builder::new()
                .name("carve-api".into())
                .spawn(move || serve(unix, tcp, sh))
                .map_err(listen_err("api thread"))?;
        }
        tracing::info!(socket = %socket.display(), tcp = ?tcp_addr, "observer up");
        Ok(Observer {
            socket,
            stop,
            tcp: tcp_addr,
        })
    }
}

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn publish(sh: &Shared, (ov, events): (model::Overview, Vec<model::ApiEvent>)) {
    *sh.overview.lock().expect("overview") = ov;
    let mut recent = sh.events.lock().expect("events");
    for e in events {
        recent.push_back(e.clone());
        while recent.len() > RECENT_EVENTS {
            recent.pop_front();
        }
        let _ = sh.tx.send(e);
    }
}

fn sample_loop(
    mut sampler: sample::Sampler,
    sh: Arc<Shared>,
    stop: Arc<AtomicBool>,
    interval: Duration,
) {
    while !stop.load(Ordering::SeqCst) {
        let t = std::time::Instant::now();
        publish(&sh, sampler.sample());
        *sh.observer_cpu.lock().expect("cpu") = thread_cpu_seconds();
        let mut n = sh.samples.lock().expect("samples");
        *n += 1;
        sh.sampled.notify_all();
        // Until the interval ends, or an API action asks for a sample now.
        while !sh.kick.swap(false, Ordering::SeqCst) {
            let left = interval.saturating_sub(t.elapsed());
            if left.is_zero() {
                break;
            }
            n = sh.sampled.wait_timeout(n, left).expect("samples").0;
        }
    }
}

fn serve(
    unix: std::os::unix::net::UnixListener,
    tcp: Option<std::net::TcpListener>,
    sh: Arc<Shared>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "api runtime");
            return;
        }
    };
    rt.block_on(async move {
        let unix = match tokio::net::UnixListener::from_std(unix) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "api socket"),
        };
        if let Some(tcp) = tcp.and_then(|t| tokio::net::TcpListener::from_std(t).ok()) {
            let sh = sh.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok((s, peer)) = tcp.accept().await {
                        tracing::debug!(%peer, "tcp connection");
                        connection(s, sh.clone(), false);
                    }
                }
            });
        }
        loop {
            let Ok((s, _)) = unix.accept().await else {
                continue;
            };
            // The socket's mode already keeps others out; the peer's credentials are checked
            // too, so a socket handed over by root to another user does not open the API.
            match s.peer_cred() {
                Ok(c) if c.uid() == 0 => connection(s, sh.clone(), true),
                Ok(c) => tracing::warn!(uid = c.uid(), "refused a non-root API client"),
                Err(e) => tracing::warn!(error = %e, "API client without credentials"),
            }
        }
    });
}

fn connection<S>(s: S, sh: Arc<Shared>, control: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| api::handle(req, sh.clone(), control));
    tokio::spawn(async move {
        let r = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(s), svc)
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "connection ended");
        }
    });
}
