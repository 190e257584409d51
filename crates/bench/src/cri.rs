//! `carve bench cri`: pod start and teardown through containerd's CRI plugin, handler `carve`
//! (carve-oci) against `runc`, side by side in one run on a private node
//! ([`carve_cri::node::Node`]); the rounds are [`carve_cri::bench::run`].

use crate::BenchError;
use carve_cri::bench::Samples;
use std::path::PathBuf;

/// What `carve bench cri` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Recorded rounds per handler.
    pub runs: usize,
    /// The carve-oci binary.
    pub carve_oci: PathBuf,
    /// The runc binary.
    pub runc: PathBuf,
}

/// Builds a busybox rootfs, starts a private containerd node with handlers `carve` and `runc`,
/// and runs `opts.runs` interleaved rounds of each; the samples in that order. The work folder
/// is removed afterwards, also on failure.
pub fn run(opts: &Options) -> Result<Vec<Samples>, BenchError> {
    with_node(opts, |node| {
        carve_cri::bench::run(node, &["carve", "runc"], opts.runs)
            .map_err(|e| tool("the CRI rounds", e))
    })
}

/// `carve noise` via ExecSync in a dedicated pod and in the same pod without the annotation
/// ([`carve_cri::bench::noise`]), on the same kind of private node as [`run`].
pub fn noise(
    opts: &Options,
    noise: &carve_cri::bench::NoiseOptions,
) -> Result<Vec<carve_cri::bench::NoiseRun>, BenchError> {
    with_node(opts, |node| {
        carve_cri::bench::noise(node, noise).map_err(|e| tool("carve noise in the pods", e))
    })
}

/// Runs `f` on a private node in a work folder removed afterwards, also on failure.
fn with_node<T>(
    opts: &Options,
    f: impl FnOnce(&carve_cri::node::Node) -> Result<T, BenchError>,
) -> Result<T, BenchError> {
    let dir = std::env::temp_dir().join(format!("carve-bench-cri-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(BenchError::io("create", &dir))?;
    let result = on_node(opts, &dir).and_then(|node| f(&node));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn on_node(opts: &Options, dir: &std::path::Path) -> Result<carve_cri::node::Node, BenchError> {
    let rootfs = dir.join("busybox-rootfs");
    carve_engine::image::busybox_rootfs(&rootfs, carve_engine::image::DEFAULT_BUSYBOX.as_ref())
        .map_err(|e| tool("building the busybox rootfs", e))?;
    carve_cri::node::Node::start(carve_cri::node::NodeOptions {
        name: format!("carve-bench-cri-{}", std::process::id()),
        dir: dir.to_path_buf(),
        carve_oci: opts.carve_oci.clone(),
        runc: opts.runc.clone(),
        busybox_rootfs: rootfs,
        subnet: "10.209.0.0/24".into(),
    })
    .map_err(|e| tool("starting the private containerd node", e))
}

fn tool(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Tool {
        what: what.into(),
        detail: e.to_string(),
    }
}
