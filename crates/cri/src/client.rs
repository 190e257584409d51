//! [`Client`]: a synchronous CRI v1 client over a unix socket (the kubelet's side of the CRI).
//!
//! Each call is one gRPC request with a deadline; the error names the method and carries the
//! gRPC status (code and message) the runtime answered.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why a CRI call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tokio runtime that drives the gRPC channel could not start.
    #[error("cannot start the gRPC runtime: {0}")]
    Runtime(std::io::Error),
    /// Connecting to the socket failed.
    #[error("cannot connect to the CRI socket {socket}: {source}")]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        source: tonic::transport::Error,
    },
    /// The runtime answered a call with an error status.
    #[error("CRI {method}: {} ({:?})", status.message(), status.code())]
    Call {
        /// The RPC ("RunPodSandbox", ...).
        method: &'static str,
        /// The gRPC status.
        status: tonic::Status,
    },
}

impl Error {
    /// The gRPC code of a failed call (None for connection errors).
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Call { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// A connection to a CRI runtime's `RuntimeService` and `ImageService` on one socket.
pub struct Client {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

macro_rules! rpc {
    ($(#[$doc:meta])* $fn:ident, $svc:ident, $method:literal, $req:ident, $resp:ident) => {
        $(#[$doc])*
        pub fn $fn(&mut self, req: cri::$req) -> Result<cri::$resp, Error> {
            let fut = self.$svc.$fn(req);
            self.rt
                .block_on(fut)
                .map(tonic::Response::into_inner)
                .map_err(|status| Error::Call {
                    method: $method,
                    status,
                })
        }
    };
}

impl Client {
    /// Connects to the CRI socket at `socket`; every call then has `timeout` as its deadline.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Client, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let path = socket.to_path_buf();
        let connector = tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(p).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        });
        // The URI is a placeholder: the connector above always dials the unix socket.
        let channel = rt
            .block_on(
                Endpoint::from_static("http://localhost")
                    .timeout(timeout)
                    .connect_timeout(timeout)
                    .connect_with_connector(connector),
            )
            .map_err(|source| Error::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(Client {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    rpc!(
        /// `Version`: the runtime's name and versions.
        version, runtime, "Version", VersionRequest, VersionResponse
    );
    rpc!(
        /// `RunPodSandbox`: creates and starts a pod sandbox with a runtime handler.
        run_pod_sandbox, runtime, "RunPodSandbox", RunPodSandboxRequest, RunPodSandboxResponse
    );
    rpc!(
        /// `PodSandboxStatus`: a sandbox's state, network and (verbose) runtime info.
        pod_sandbox_status, runtime, "PodSandboxStatus", PodSandboxStatusRequest,
        PodSandboxStatusResponse
    );
    rpc!(
        /// `ListPodSandbox`: sandboxes matching a filter.
        list_pod_sandbox, runtime, "ListPodSandbox", ListPodSandboxRequest,
        ListPodSandboxResponse
    );
    rpc!(
        /// `StopPodSandbox`: stops every container of the pod and the sandbox.
        stop_pod_sandbox, runtime, "StopPodSandbox", StopPodSandboxRequest,
        StopPodSandboxResponse
    );
    rpc!(
        /// `RemovePodSandbox`: removes a stopped sandbox and its containers.
        remove_pod_sandbox, runtime, "RemovePodSandbox", RemovePodSandboxRequest,
        RemovePodSandboxResponse
    );
    rpc!(
        /// `CreateContainer`: creates a container in a pod.
        create_container, runtime, "CreateContainer", CreateContainerRequest,
        CreateContainerResponse
    );
    rpc!(
        /// `StartContainer`: starts a created container.
        start_container, runtime, "StartContainer", StartContainerRequest,
        StartContainerResponse
    );
    rpc!(
        /// `ContainerStatus`: a container's state, exit code, log path and (verbose) info.
        container_status, runtime, "ContainerStatus", ContainerStatusRequest,
        ContainerStatusResponse
    );
    rpc!(
        /// `ListContainers`: containers matching a filter.
        list_containers, runtime, "ListContainers", ListContainersRequest,
        ListContainersResponse
    );
    rpc!(
        /// `ExecSync`: runs a command in a container and returns its output and exit code.
        exec_sync, runtime, "ExecSync", ExecSyncRequest, ExecSyncResponse
    );
    rpc!(
        /// `ContainerStats`: CPU, memory and filesystem usage of a container.
        container_stats, runtime, "ContainerStats", ContainerStatsRequest,
        ContainerStatsResponse
    );
    rpc!(
        /// `UpdateContainerResources`: changes a running container's limits.
        update_container_resources, runtime, "UpdateContainerResources",
        UpdateContainerResourcesRequest, UpdateContainerResourcesResponse
    );
    rpc!(
        /// `ReopenContainerLog`: the runtime reopens the container's log file (log rotation).
        reopen_container_log, runtime, "ReopenContainerLog", ReopenContainerLogRequest,
        ReopenContainerLogResponse
    );
    rpc!(
        /// `StopContainer`: SIGTERM, then SIGKILL after the request's timeout.
        stop_container, runtime, "StopContainer", StopContainerRequest, StopContainerResponse
    );
    rpc!(
        /// `RemoveContainer`: removes a container (stopping it first if needed).
        remove_container, runtime, "RemoveContainer", RemoveContainerRequest,
        RemoveContainerResponse
    );
    rpc!(
        /// `ListImages`: the images the runtime has.
        list_images, images, "ListImages", ListImagesRequest, ListImagesResponse
    );
}
