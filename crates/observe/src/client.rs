//! A blocking client of the supervisor API (hyper's HTTP/1 client over the unix socket, on a
//! current-thread runtime per call): what `carve ps/stop/start/logs/exec/top` use when a
//! supervisor is up.

use crate::api::ExecResponse;
use crate::model::{Overview, PartView};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No supervisor answers on the socket (not up, or the plan is held in the foreground).
    #[error("no supervisor API at {}: {source}", path.display())]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The supervisor answered with an error.
    #[error("{message} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The exchange failed.
    #[error("API: {0}")]
    Http(String),
}

/// A client of one plan's supervisor.
#[derive(Debug, Clone)]
pub struct Client {
    /// The API socket.
    pub socket: PathBuf,
}

fn http(e: impl std::fmt::Display) -> ClientError {
    ClientError::Http(e.to_string())
}

impl Client {
    /// The client of plan `plan` under state root `root` (nothing is connected yet).
    pub fn for_plan(root: &Path, plan: &str) -> Client {
        Client {
            socket: crate::socket_path(root, plan),
        }
    }

    /// The client of the running plan holding partition `name`, if its supervisor answers.
    pub fn for_partition(root: &Path, name: &str) -> Option<Client> {
        let (dir, _) = carve_engine::state::find_partition(root, name).ok()?;
        let c = Client {
            socket: dir.dir.join(crate::SOCKET),
        };
        c.is_up().then_some(c)
    }

    /// Whether a supervisor answers on the socket.
    pub fn is_up(&self) -> bool {
        std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
    }

    fn runtime() -> Result<tokio::runtime::Runtime, ClientError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(http)
    }

    /// Sends one request and hands each chunk of the answer's body to `chunk` (which returns
    /// false to stop); an error status becomes [`ClientError::Api`] with the server's message.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        chunk: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        Self::runtime()?.block_on(async {
            let s = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Unreachable {
                    path: self.socket.clone(),
                    source,
                })?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .map_err(http)?;
            tokio::spawn(conn);
            let req = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "carve")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(http)?;
            let resp = send.send_request(req).await.map_err(http)?;
            let status = resp.status();
            let mut body = resp.into_body();
            if status != StatusCode::OK {
                let b = body.collect().await.map_err(http)?.to_bytes();
                let message = serde_json::from_slice::<serde_json::Value>(&b)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&b).into());
                return Err(ClientError::Api {
                    status: status.as_u16(),
                    message,
                });
            }
            while let Some(f) = body.frame().await {
                let f = f.map_err(http)?;
                if let Some(d) = f.data_ref() {
                    if !chunk(d) {
                        break;
                    }
                }
            }
            Ok(())
        })
    }

    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let mut all = Vec::new();
        self.request(method, path, body, &mut |d| {
            all.extend_from_slice(d);
            true
        })?;
        serde_json::from_slice(&all).map_err(http)
    }

    /// `GET /v1/overview`.
    pub fn overview(&self) -> Result<Overview, ClientError> {
        self.call(Method::GET, "/v1/overview", None)
    }

    /// `GET /v1/partitions`.
    pub fn partitions(&self) -> Result<Vec<PartView>, ClientError> {
        self.call(Method::GET, "/v1/partitions", None)
    }

    /// `POST /v1/partitions/NAME/ACTION` (stop, start, restart): returns once done.
    pub fn act(&self, name: &str, action: &str) -> Result<PartView, ClientError> {
        self.call(
            Method::POST,
            &format!("/v1/partitions/{name}/{action}"),
            None,
        )
    }

    /// `POST /v1/partitions/NAME/exec`.
    pub fn exec(&self, name: &str, command: &[String]) -> Result<ExecResponse, ClientError> {
        let body = serde_json::to_vec(&serde_json::json!({ "command": command })).map_err(http)?;
        self.call(
            Method::POST,
            &format!("/v1/partitions/{name}/exec"),
            Some(body),
        )
    }

    /// `GET /v1/partitions/NAME/logs`, each chunk to `chunk`; with `follow` until the plan goes
    /// down or `chunk` returns false.
    pub fn logs(
        &self,
        name: &str,
        follow: bool,
        chunk: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/v1/partitions/{name}/logs{}",
            if follow { "?follow=1" } else { "" }
        );
        self.request(Method::GET, &path, None, chunk)
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let mut all = Vec::new();
        self.request(Method::GET, "/metrics", None, &mut |d| {
            all.extend_from_slice(d);
            true
        })?;
        Ok(String::from_utf8_lossy(&all).into())
    }
}
