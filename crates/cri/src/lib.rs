//! carve's side of the Kubernetes CRI: a CRI v1 client and a private containerd node to drive it
//! against.
//!
//! # Tour
//! - [`client::Client`]: a synchronous CRI v1 client over a unix socket (the calls the kubelet
//!   makes for a pod: `RunPodSandbox`, `CreateContainer`, `StartContainer`, `ExecSync`, ...). The
//!   request and response types are `k8s_cri::v1`'s, which serialize to JSON (`carve cri`).
//! - [`pod`]: [`pod::PodSpec`] and [`pod::ContainerSpec`] build the requests from a few fields.
//! - [`node::Node`]: a containerd of its own with the CRI plugin, runtime handlers `runc` and
//!   `carve` (carve-oci), a private pod network and images built here ([`image`]: carve's static
//!   pause program, busybox) — for tests and `carve bench cri`.
//! - [`host`]: what a node leaves on the host if its daemon dies (processes, cgroups, mounts).
//!
//! ```no_run
//! use carve_cri::client::Client;
//! let mut c = Client::connect("/run/containerd/containerd.sock".as_ref(),
//!                             std::time::Duration::from_secs(10)).unwrap();
//! let v = c.version(Default::default()).unwrap();
//! println!("{}", serde_json::to_string(&v).unwrap());
//! ```

pub mod bench;
pub mod client;
pub mod host;
pub mod image;
pub mod node;
pub mod pod;

pub use k8s_cri::v1 as api;
