//! The HTTP side: routes of the supervisor API (unix socket, control) and of the optional TCP
//! listener (read-only: metrics, dashboard, overview, events), over hyper 1.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/plan` | the resolved plan |
//! | GET | `/v1/overview` | one frame: cores, partitions, VMs, links, latest events |
//! | GET | `/v1/partitions` | the partitions' rows |
//! | POST | `/v1/partitions/NAME/{stop,start,restart}` | act, wait until done, return the row |
//! | GET | `/v1/partitions/NAME/logs?follow=1&tail=BYTES` | the log; with follow, streamed |
//! | POST | `/v1/partitions/NAME/exec` | `{"command": [...]}` → `{"exit_code", "stdout", "stderr"}` |
//! | GET | `/v1/events` | newline-delimited JSON events: the latest, then live |
//! | GET | `/metrics` | Prometheus text exposition |
//! | GET | `/` | the dashboard |

use crate::model::{ApiEvent, Overview, PartView};
use bytes::Bytes;
use carve_engine::state::Desired;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Largest request body accepted (exec commands are small).
pub const MAX_BODY: usize = 64 * 1024;

/// The dashboard page, with its script and style inline: nothing is fetched from elsewhere.
pub const DASHBOARD: &str = include_str!("../assets/dashboard.html");

/// What the sampler publishes and the handlers read.
pub struct Shared {
    /// The plan's state folder.
    pub dir: carve_engine::state::PlanDir,
    /// The resolved plan.
    pub plan: carve_engine::spec::PlanSpec,
    /// The latest frame.
    pub overview: Mutex<Overview>,
    /// The latest events.
    pub events: Mutex<VecDeque<ApiEvent>>,
    /// Live events.
    pub tx: broadcast::Sender<ApiEvent>,
    /// CPU time of the sampler thread, seconds.
    pub observer_cpu: Mutex<f64>,
    /// Samples taken so far; the sampler notifies `sampled` after each.
    pub samples: Mutex<u64>,
    /// Signalled after each sample, and to ask for one now.
    pub sampled: std::sync::Condvar,
    /// Set to ask the sampler for a sample before its interval ends.
    pub kick: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Asks the sampler for a sample now and waits (2 s at most) until it is taken: an API
    /// action's state change becomes its event at once, not a second later, when a short
    /// state (a stop right before a start) would have been missed.
    pub fn sample_now(&self) {
        let mut n = self.samples.lock().expect("samples");
        let before = *n;
        self.kick.store(true, std::sync::atomic::Ordering::SeqCst);
        self.sampled.notify_all();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while *n == before {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            n = self.sampled.wait_timeout(n, left).expect("samples").0;
        }
    }
}

/// A response body: all at once, or chunks from a channel (logs, events).
pub enum ApiBody {
    /// The whole body.
    Full(Option<Bytes>),
    /// Chunks until the sender is dropped.
    Chan(mpsc::Receiver<Bytes>),
}

impl Body for ApiBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ApiBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ApiBody::Chan(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ApiBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ApiBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ApiBody::Full(None) => SizeHint::with_exact(0),
            ApiBody::Chan(_) => SizeHint::default(),
        }
    }
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<ApiBody> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("cache-control", "no-store")
        .body(ApiBody::Full(Some(body.into())))
        .expect("valid response")
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<ApiBody> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// A JSON error: `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<ApiBody> {
    let message = message.into();
    tracing::debug!(%status, %message, "api error");
    json(status, &serde_json::json!({ "error": message }))
}

fn stream(rx: mpsc::Receiver<Bytes>, ctype: &str) -> Response<ApiBody> {
    Response::builder()
        .header("content-type", ctype)
        .header("cache-control", "no-store")
        .body(ApiBody::Chan(rx))
        .expect("valid response")
}

fn query<'a>(req: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

/// Serves one request. `control`: the unix socket (every route); the TCP listener gets the
/// read-only ones.
pub async fn handle(
    req: Request<Incoming>,
    sh: Arc<Shared>,
    control: bool,
) -> Result<Response<ApiBody>, Infallible> {
    tracing::debug!(method = %req.method(), path = %req.uri().path(), control, "request");
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = req.method() == Method::GET;
    let post = req.method() == Method::POST;
    let r = match (segs.as_slice(), get, post) {
        ([""], true, _) | (["dashboard"], true, _) => {
            respond(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD)
        }
        (["metrics"], true, _) => {
            let ov = sh.overview.lock().expect("overview").clone();
            let cpu = *sh.observer_cpu.lock().expect("cpu");
            respond(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                crate::metrics::render(&ov, cpu),
            )
        }
        (["v1", "plan"], true, _) => json(StatusCode::OK, &sh.plan),
        (["v1", "overview"], true, _) => {
            let mut ov = sh.overview.lock().expect("overview").clone();
            ov.events = sh.events.lock().expect("events").iter().cloned().collect();
            fresh(&sh, &mut ov.partitions);
            json(StatusCode::OK, &ov)
        }
        (["v1", "partitions"], true, _) => {
            let mut parts = sh.overview.lock().expect("overview").partitions.clone();
            fresh(&sh, &mut parts);
            json(StatusCode::OK, &parts)
        }
        (["v1", "events"], true, _) => events(&sh),
        (["v1", "partitions", name, "logs"], true, _) => {
            let follow = matches!(query(&req, "follow"), Some("1" | "true" | ""));
            let tail = query(&req, "tail").map(|t| t.parse::<u64>());
            match tail {
                Some(Err(_)) => error(StatusCode::BAD_REQUEST, "tail: expected a number of bytes"),
                t => logs(&sh, name, follow, t.and_then(Result::ok)),
            }
        }
        (["v1", "partitions", _, _], _, true) if !control => error(
            StatusCode::FORBIDDEN,
            "control actions are served on the supervisor's unix socket only",
        ),
        (["v1", "partitions", name, "exec"], _, true) => {
            let name = name.to_string();
            exec(&sh, &name, req).await
        }
        (["v1", "partitions", name, action], _, true) => {
            let (name, action) = (name.to_string(), action.to_string());
            act(&sh, &name, &action).await
        }
        (
            [""]
            | ["dashboard"]
            | ["metrics"]
            | ["v1", "plan" | "overview" | "partitions" | "events"]
            | ["v1", "partitions", _, "logs"],
            _,
            _,
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no route {path}")),
    };
    Ok(r)
}

/// Brings the state columns of the sampled rows up to date with the state file, so a client
/// that just stopped a partition does not see the sample from before (figures stay sampled).
fn fresh(sh: &Shared, parts: &mut [PartView]) {
    let Ok(st) = sh.dir.read_state() else { return };
    for v in parts.iter_mut() {
        if let Some(p) = st.partitions.iter().find(|p| p.name == v.name) {
            if p.state.to_string() != v.state {
                v.cpu_ratio = None;
                v.memory_bytes = None;
            }
            v.state = p.state.to_string();
            v.pid = p.pid;
            v.restarts = p.restarts;
            v.last_exit = p.last_exit.clone();
        }
    }
}

fn part_view(sh: &Shared, name: &str) -> Option<PartView> {
    sh.overview
        .lock()
        .expect("overview")
        .partitions
        .iter()
        .find(|p| p.name == name)
        .cloned()
}

fn known(sh: &Shared, name: &str) -> Result<(), Box<Response<ApiBody>>> {
    if sh.plan.partition(name).is_some() {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("plan {} has no partition {name:?}", sh.plan.name),
        )))
    }
}

async fn act(sh: &Arc<Shared>, name: &str, action: &str) -> Response<ApiBody> {
    if let Err(r) = known(sh, name) {
        return *r;
    }
    let steps: &[Desired] = match action {
        "stop" => &[Desired::Stopped],
        "start" => &[Desired::Running],
        "restart" => &[Desired::Stopped, Desired::Running],
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown action {other:?}: expected stop, start, restart, exec"),
            )
        }
    };
    tracing::info!(partition = name, action, "api action");
    let root = sh.dir.dir.parent().unwrap_or(&sh.dir.dir).to_path_buf();
    let (n, steps, shared) = (name.to_string(), steps.to_vec(), sh.clone());
    let r = tokio::task::spawn_blocking(move || {
        for want in steps {
            carve_engine::ops::set_partition(&root, &n, want, Duration::from_secs(30))?;
            shared.sample_now();
        }
        Ok::<(), carve_engine::ops::OpError>(())
    })
    .await;
    match r {
        Ok(Ok(())) => {
            // The sampler refreshes once a second; answer with what the state file says now.
            let st = sh.dir.read_state().ok();
            let p = st.and_then(|s| s.partitions.into_iter().find(|p| p.name == name));
            let mut v = part_view(sh, name).unwrap_or_default();
            if let Some(p) = p {
                v.state = p.state.to_string();
                v.pid = p.pid;
                v.restarts = p.restarts;
            }
            json(StatusCode::OK, &v)
        }
        Ok(Err(carve_engine::ops::OpError::Timeout(m))) => error(StatusCode::GATEWAY_TIMEOUT, m),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The body of an exec request.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// The answer to an exec request.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExecResponse {
    /// The command's exit status.
    pub exit_code: i32,
    /// What it wrote on stdout (lossy UTF-8).
    pub stdout: String,
    /// What it wrote on stderr (lossy UTF-8).
    pub stderr: String,
}

async fn exec(sh: &Arc<Shared>, name: &str, req: Request<Incoming>) -> Response<ApiBody> {
    if let Err(r) = known(sh, name) {
        return *r;
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: {e} (at most {MAX_BODY} bytes)"),
            )
        }
    };
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let r: ExecRequest = match serde_path_to_error::deserialize(de) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("exec body, field `{}`: {}", e.path(), e.inner()),
            )
        }
    };
    if r.command.is_empty() {
        return error(StatusCode::BAD_REQUEST, "exec body: `command` is empty");
    }
    let st = match sh.dir.read_state() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(part) = st.partitions.iter().find(|p| p.name == name) else {
        return error(StatusCode::NOT_FOUND, format!("no partition {name:?}"));
    };
    if part.kind != "container" {
        return error(
            StatusCode::CONFLICT,
            format!(
                "{name} is a {} partition; exec runs in containers",
                part.kind
            ),
        );
    }
    let (Some(bin), Some(root)) = (st.oci_runtime.clone(), st.oci_root.clone()) else {
        return error(
            StatusCode::CONFLICT,
            "the plan has no container runtime recorded",
        );
    };
    tracing::info!(partition = name, command = ?r.command, "api exec");
    let id = part.id.clone();
    let out = tokio::task::spawn_blocking(move || {
        carve_engine::oci::OciRuntime { binary: bin }.exec_captured(&root, &id, &r.command)
    })
    .await;
    match out {
        Ok(Ok(o)) => json(
            StatusCode::OK,
            &ExecResponse {
                exit_code: o.status.code().unwrap_or(128 + libc::SIGKILL),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            },
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn logs(sh: &Arc<Shared>, name: &str, follow: bool, tail: Option<u64>) -> Response<ApiBody> {
    if let Err(r) = known(sh, name) {
        return *r;
    }
    // The partition's own log path from the plan state (a VM's is its console log in the VM's
    // state folder); the partition folder's `log` only when the state does not say.
    let log = sh
        .dir
        .read_state()
        .ok()
        .and_then(|st| st.partitions.into_iter().find(|p| p.name == name))
        .map(|p| p.log)
        .unwrap_or_else(|| sh.dir.partition_dir(name).join("log"));
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Ok(mut f) = tokio::fs::File::open(&log).await else {
            return;
        };
        let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
        let mut pos = tail.map(|t| len.saturating_sub(t)).unwrap_or(0);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if f.seek(std::io::SeekFrom::Start(pos)).await.is_err() {
                return;
            }
            match f.read(&mut buf).await {
                Ok(0) if !follow => return,
                Ok(0) => {
                    // Nothing new; also notices a client that went away.
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(n) => {
                    pos += n as u64;
                    if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    stream(rx, "application/octet-stream")
}

fn events(sh: &Arc<Shared>) -> Response<ApiBody> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut live = sh.tx.subscribe();
    let recent: Vec<ApiEvent> = sh.events.lock().expect("events").iter().cloned().collect();
    tokio::spawn(async move {
        let line = |e: &ApiEvent| {
            let mut v = serde_json::to_vec(e).unwrap_or_default();
            v.push(b'\n');
            Bytes::from(v)
        };
        for e in &recent {
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        loop {
            tokio::select! {
                e = live.recv() => match e {
                    Ok(e) => if tx.send(line(&e)).await.is_err() { return },
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                // An empty line now and then: a client that went away is noticed.
                _ = tokio::time::sleep(Duration::from_secs(10)) => {
                    if tx.send(Bytes::from_static(b"\n")).await.is_err() { return }
                }
            }
        }
    });
    stream(rx, "application/x-ndjson")
}
