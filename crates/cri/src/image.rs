//! OCI image-layout tarballs built here, for a node with no registry: the pod sandbox ("pause")
//! image from carve's own static pause program, and images of any rootfs directory (busybox).
//! `ctr -n k8s.io images import` loads them into containerd for its CRI plugin.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pause program's C source, compiled at image build time.
pub const PAUSE_C: &str = include_str!("../pause/pause.c");

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A tool (tar, sha256sum, cc) failed or is missing.
    #[error("{tool} failed: {message}")]
    Tool {
        /// The command.
        tool: String,
        /// Its stderr or the spawn error.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn tool(cmd: &mut Command) -> Result<String, Error> {
    let name = format!("{:?}", cmd.get_program());
    let out = cmd.output().map_err(|e| Error::Tool {
        tool: name.clone(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: name,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Packs `dir` into an uncompressed tar at `tar` (numeric owners: the layer must not depend on
/// this host's user names).
fn tar_dir(dir: &Path, tar: &Path) -> Result<(), Error> {
    tool(
        Command::new("tar")
            .arg("-C")
            .arg(dir)
            .args(["--numeric-owner", "-cf"])
            .arg(tar)
            .arg("."),
    )
    .map(drop)
}

/// Moves `file` into the layout's blobs under its sha256; returns (digest, size).
fn add_blob(layout: &Path, file: &Path) -> Result<(String, u64), Error> {
    let sum = tool(Command::new("sha256sum").arg(file))?;
    let hex = sum
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let dst = layout.join("blobs/sha256").join(&hex);
    std::fs::rename(file, &dst).map_err(io(&dst))?;
    let size = std::fs::metadata(&dst).map_err(io(&dst))?.len();
    Ok((format!("sha256:{hex}"), size))
}

fn add_json(layout: &Path, v: &Value) -> Result<(String, u64), Error> {
    let scratch = layout.join("scratch.json");
    std::fs::write(&scratch, v.to_string()).map_err(io(&scratch))?;
    add_blob(layout, &scratch)
}

/// An OCI image-layout tarball at `work/<tag>.tar` of one layer (the directory `rootfs`), named
/// `name` for containerd (`io.containerd.image.name`), with the default command `cmd` (a
/// client's arguments replace it) and a PATH.
/// `work` is scratch space.
pub fn image_tar(rootfs: &Path, name: &str, cmd: &[&str], work: &Path) -> Result<PathBuf, Error> {
    let tag: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let layout = work.join(format!("{tag}-layout"));
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
    let layer = layout.join("layer.tar");
    tar_dir(rootfs, &layer)?;
    let (ldig, lsize) = add_blob(&layout, &layer)?;
    let (cdig, csize) = add_json(
        &layout,
        &json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"], "Cmd": cmd},
            "rootfs": {"type": "layers", "diff_ids": [ldig]},
        }),
    )?;
    let (mdig, msize) = add_json(
        &layout,
        &json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cdig, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": ldig, "size": lsize}],
        }),
    )?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdig, "size": msize,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name},
        }],
    });
    let f = layout.join("index.json");
    std::fs::write(&f, index.to_string()).map_err(io(&f))?;
    let f = layout.join("oci-layout");
    std::fs::write(&f, r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io(&f))?;
    let tar = work.join(format!("{tag}.tar"));
    tar_dir(&layout, &tar)?;
    std::fs::remove_dir_all(&layout).map_err(io(&layout))?;
    Ok(tar)
}

/// The pause image: carve's pause program compiled static with `cc` as `/pause`, nothing else.
pub fn pause_image_tar(name: &str, work: &Path) -> Result<PathBuf, Error> {
    let rootfs = work.join("pause-rootfs");
    std::fs::create_dir_all(&rootfs).map_err(io(&rootfs))?;
    let src = work.join("pause.c");
    std::fs::write(&src, PAUSE_C).map_err(io(&src))?;
    tool(
        Command::new("cc")
            .args(["-static", "-Os", "-s", "-o"])
            .arg(rootfs.join("pause"))
            .arg(&src),
    )?;
    let tar = image_tar(&rootfs, name, &["/pause"], work)?;
    std::fs::remove_dir_all(&rootfs).map_err(io(&rootfs))?;
    Ok(tar)
}
