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
    let dir = std::env::temp_dir().join(format!("carve-bench-cri-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(BenchError::io("create", &dir))?;
    let result = on_node(opts, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn on_node(opts: &Options, dir: &std::path::Path) -> Result<Vec<Samples>, BenchError> {
    let rootfs = dir.join("busybox-rootfs");
    carve_engine::image::busybox_rootfs(&rootfs, carve_engine::image::DEFAULT_BUSYBOX.as_ref())
        .map_err(|e| tool("building the busybox rootfs", e))?;
    let node = carve_cri::node::Node::start(carve_cri::node::NodeOptions {
        name: format!("carve-bench-cri-{}", std::process::id()),
        dir: dir.to_path_buf(),
        carve_oci: opts.carve_oci.clone(),
        runc: opts.runc.clone(),
        busybox_rootfs: rootfs,
        subnet: "10.209.0.0/24".into(),
    })
    .map_err(|e| tool("starting the private containerd node", e))?;
    carve_cri::bench::run(&node, &["carve", "runc"], opts.runs)
        .map_err(|e| tool("the CRI rounds", e))
}

fn tool(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Tool {
        what: what.into(),
        detail: e.to_string(),
    }
}
