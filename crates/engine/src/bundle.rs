//! Plan → OCI bundle: the config.json that the container runtime runs for a container partition.

use crate::spec::{ContainerSpec, PartitionSpec, RootfsSource};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, ProcessBuilder, RootBuilder,
    Spec,
};
use std::path::{Path, PathBuf};

/// Errors writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The rootfs folder is missing or not a folder.
    #[error("partition {partition}: rootfs {} is not a folder", path.display())]
    Rootfs {
        /// The partition.
        partition: String,
        /// The path the plan gave.
        path: PathBuf,
    },
    /// The existing bundle's config.json could not be read.
    #[error("partition {partition}: bundle {}: {source}", path.display())]
    Load {
        /// The partition.
        partition: String,
        /// The config.json.
        path: PathBuf,
        /// The cause.
        source: oci_spec::OciSpecError,
    },
    /// The runtime spec could not be built or saved.
    #[error("partition {partition}: OCI config {}: {source}", path.display())]
    Spec {
        /// The partition.
        partition: String,
        /// The config.json being written.
        path: PathBuf,
        /// The cause.
        source: oci_spec::OciSpecError,
    },
    /// The bundle folder could not be made.
    #[error("partition {partition}: {}: {source}", path.display())]
    Io {
        /// The partition.
        partition: String,
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Where and how a container partition's bundle is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleContext {
    /// The bundle folder (/run/carve/PLAN/PARTITION/bundle).
    pub dir: PathBuf,
    /// The cgroupsPath, under carve's own parent (`/carve-PLAN/PARTITION`).
    pub cgroups_path: PathBuf,
    /// The network namespace the container joins (holding its eth0), if it has a network.
    pub netns: Option<PathBuf>,
    /// Memory nodes for the cpuset (the host's online nodes).
    pub mems: String,
}

/// The capabilities every carve container gets: the set container engines give by default
/// (Docker's), enough for services and busybox tools.
const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The OCI runtime spec for a container partition.
///
/// The rootfs is referenced by absolute path (no copy); the command is the plan's, or
/// `/sbin/init` for a system container; the cgroup sits under carve's parent with the partition's
/// cores and memory as its cpuset and limit; the network namespace is joined by path when the
/// partition has a network (carve has put eth0 there), else it is a new, empty one. A system
/// container also gets CAP_SYS_BOOT, so that its init's final reboot(2) ends the container (in a
/// pid namespace it only kills that namespace's init).
pub fn container_spec(
    part: &PartitionSpec,
    c: &ContainerSpec,
    ctx: &BundleContext,
) -> Result<Spec, BundleError> {
    let err = |source| BundleError::Spec {
        partition: part.name.clone(),
        path: ctx.dir.join("config.json"),
        source,
    };
    let mut spec = match &c.rootfs {
        RootfsSource::Folder(root) => {
            let root = absolute(root);
            if !root.is_dir() {
                return Err(BundleError::Rootfs {
                    partition: part.name.clone(),
                    path: root,
                });
            }
            let mut spec = Spec::default();
            spec.set_root(Some(
                RootBuilder::default()
                    .path(root)
                    .readonly(false)
                    .build()
                    .map_err(err)?,
            ));
            spec
        }
        RootfsSource::Bundle(dir) => {
            let path = dir.join("config.json");
            let mut spec = Spec::load(&path).map_err(|source| BundleError::Load {
                partition: part.name.clone(),
                path: path.clone(),
                source,
            })?;
            // The bundle's own relative root is relative to *its* folder, not ours.
            if let Some(root) = spec.root().clone() {
                if root.path().is_relative() {
                    let mut r = root.clone();
                    r.set_path(absolute(&dir.join(root.path())));
                    spec.set_root(Some(r));
                }
            }
            spec
        }
    };
    spec.set_hostname(Some(part.name.clone()));

    let from_plan = matches!(c.rootfs, RootfsSource::Folder(_));
    if from_plan || !c.command.is_empty() || c.init {
        let mut env: Vec<String> = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "TERM=xterm".into(),
            format!("CARVE_PARTITION={}", part.name),
            format!("CARVE_CPUS={}", part.cpus),
        ];
        env.extend(c.env.iter().map(|(k, v)| format!("{k}={v}")));
        let args = if c.command.is_empty() && c.init {
            vec!["/sbin/init".to_string()]
        } else {
            c.command.clone()
        };
        let mut caps: Capabilities = DEFAULT_CAPS.iter().copied().collect();
        if c.init {
            caps.insert(Capability::SysBoot);
        }
        let mut process = ProcessBuilder::default()
            .args(args)
            .env(env)
            .cwd("/")
            .no_new_privileges(true)
            // A system container's init runs on a pty: its console (crate::console).
            .terminal(c.init)
            .build()
            .map_err(err)?;
        if let Some(mut pc) = process.capabilities().clone() {
            pc.set_bounding(Some(caps.clone()));
            pc.set_effective(Some(caps.clone()));
            pc.set_permitted(Some(caps.clone()));
            pc.set_inheritable(None);
            pc.set_ambient(None);
            process.set_capabilities(Some(pc));
        }
        spec.set_process(Some(process));
    }

    let mut linux = spec.linux().clone().unwrap_or_else(|| {
        LinuxBuilder::default()
            .build()
            .expect("an empty linux section builds")
    });
    let resources = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .cpus(part.cpus.to_string())
                .mems(ctx.mems.clone())
                .build()
                .map_err(err)?,
        )
        .memory(
            LinuxMemoryBuilder::default()
                .limit(part.memory as i64)
                .build()
                .map_err(err)?,
        )
        .build()
        .map_err(err)?;
    linux.set_resources(Some(resources));
    linux.set_cgroups_path(Some(ctx.cgroups_path.clone()));
    let mut namespaces: Vec<LinuxNamespace> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Network)
        .collect();
    let mut net = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
    if let Some(p) = &ctx.netns {
        net = net.path(p.clone());
    }
    namespaces.push(net.build().map_err(err)?);
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Writes the bundle for a container partition into `ctx.dir` (created) and returns the path of
/// its config.json.
pub fn write_bundle(
    part: &PartitionSpec,
    c: &ContainerSpec,
    ctx: &BundleContext,
) -> Result<PathBuf, BundleError> {
    let spec = container_spec(part, c, ctx)?;
    std::fs::create_dir_all(&ctx.dir).map_err(|source| BundleError::Io {
        partition: part.name.clone(),
        path: ctx.dir.clone(),
        source,
    })?;
    let path = ctx.dir.join("config.json");
    spec.save(&path).map_err(|source| BundleError::Spec {
        partition: part.name.clone(),
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The host's online memory nodes ("0" when the kernel does not say).
pub fn host_mems() -> String {
    std::fs::read_to_string("/sys/devices/system/node/online")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".into())
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Attachment, KindSpec, RestartPolicy};
    use carve_core::CpuSet;

    fn part(rootfs: RootfsSource, init: bool, command: &[&str]) -> (PartitionSpec, ContainerSpec) {
        let c = ContainerSpec {
            rootfs,
            command: command.iter().map(|s| s.to_string()).collect(),
            env: vec![("GREETING".into(), "hi".into())],
            init,
            network: Some(Attachment {
                bridge: "carve0".into(),
                address: "10.77.0.2".parse().unwrap(),
                prefix: 24,
                gateway: None,
            }),
        };
        let p = PartitionSpec {
            name: "control".into(),
            cpus: CpuSet::parse_list("0").unwrap(),
            memory: 256 << 20,
            restart: RestartPolicy::No.into(),
            kind: KindSpec::Container(c.clone()),
        };
        (p, c)
    }

    fn ctx(dir: &Path) -> BundleContext {
        BundleContext {
            dir: dir.join("bundle"),
            cgroups_path: "/carve-demo/control".into(),
            netns: Some("/run/netns/carve-demo-control".into()),
            mems: "0".into(),
        }
    }

    #[test]
    fn application_container_spec_carries_plan_values() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        let (p, c) = part(
            RootfsSource::Folder(rootfs.clone()),
            false,
            &["/bin/httpd", "-f"],
        );
        let path = write_bundle(&p, &c, &ctx(t.path())).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["root"]["path"], rootfs.to_str().unwrap());
        assert_eq!(
            json["process"]["args"],
            serde_json::json!(["/bin/httpd", "-f"])
        );
        let env: Vec<&str> = json["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(env.contains(&"GREETING=hi"), "{env:?}");
        assert!(env.contains(&"CARVE_CPUS=0"), "{env:?}");
        assert_eq!(json["hostname"], "control");
        assert_eq!(json["linux"]["cgroupsPath"], "/carve-demo/control");
        assert_eq!(json["linux"]["resources"]["cpu"]["cpus"], "0");
        assert_eq!(json["linux"]["resources"]["cpu"]["mems"], "0");
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 256u64 << 20);
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        let net: Vec<_> = ns.iter().filter(|n| n["type"] == "network").collect();
        assert_eq!(net.len(), 1);
        assert_eq!(net[0]["path"], "/run/netns/carve-demo-control");
        for kind in ["pid", "mount", "ipc", "uts"] {
            assert!(ns.iter().any(|n| n["type"] == kind), "no {kind} namespace");
        }
        let bounding = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert!(!bounding.iter().any(|c| c == "CAP_SYS_BOOT"));
        assert!(bounding.iter().any(|c| c == "CAP_NET_BIND_SERVICE"));
        // It reads back as a valid runtime spec.
        Spec::load(&path).unwrap();
    }

    #[test]
    fn system_container_runs_sbin_init_and_may_reboot_its_namespace() {
        let t = tempfile::tempdir().unwrap();
        let (p, c) = part(RootfsSource::Folder(t.path().to_path_buf()), true, &[]);
        let mut cx = ctx(t.path());
        cx.netns = None;
        let spec = container_spec(&p, &c, &cx).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(
            process.args().as_ref().unwrap(),
            &vec!["/sbin/init".to_string()]
        );
        let caps = process.capabilities().as_ref().unwrap();
        assert!(caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysBoot));
        // Without a network the container still gets its own (empty) network namespace.
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert!(net.path().is_none());
    }

    #[test]
    fn existing_bundle_keeps_its_process_and_gets_carve_resources() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("rootfs")).unwrap();
        let mut theirs = Spec::default();
        let mut proc_ = theirs.process().clone().unwrap();
        proc_.set_args(Some(vec!["/app".into()]));
        theirs.set_process(Some(proc_));
        theirs.set_root(Some(RootBuilder::default().path("rootfs").build().unwrap()));
        theirs.save(src.join("config.json")).unwrap();
        let (p, c) = part(RootfsSource::Bundle(src.clone()), false, &[]);
        let spec = container_spec(&p, &c, &ctx(t.path())).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_ref().unwrap(),
            &vec!["/app".to_string()]
        );
        assert_eq!(spec.root().as_ref().unwrap().path(), &src.join("rootfs"));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/carve-demo/control"))
        );
    }

    #[test]
    fn missing_rootfs_names_partition_and_path() {
        let (p, c) = part(
            RootfsSource::Folder("/nonexistent/carve-rootfs".into()),
            false,
            &["/bin/true"],
        );
        let e = container_spec(&p, &c, &ctx(Path::new("/tmp"))).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("control") && msg.contains("/nonexistent/carve-rootfs"),
            "{msg}"
        );
    }
}
