//! Plan model + allocation → the engine's [`PlanSpec`]: the second stage of reading a plan, after
//! `carve_core` parsed and allocated it and before anything touches the host.

use crate::spec::{
    Attachment, ContainerSpec, DedicatedSpec, KindSpec, NetworkSpec, PartitionSpec, PlanSpec,
    Restart, RootfsSource, VmSpec,
};
use carve_core::alloc::{Allocation, PlacedAttachment};
use carve_core::plan::{Kind, Plan};
use std::path::{Path, PathBuf};

/// A plan the engine cannot act on although the allocator accepted it.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The allocation has no entry for a partition of the plan.
    #[error("partition {0}: not in the allocation")]
    NotPlaced(String),
    /// A required field is missing.
    #[error("partition {partition}: {field} is required for kind {kind}")]
    Missing {
        /// The partition.
        partition: String,
        /// The field.
        field: &'static str,
        /// Its kind.
        kind: &'static str,
    },
}

fn attachment(a: &PlacedAttachment) -> Attachment {
    Attachment {
        bridge: a.bridge.clone(),
        address: a.address,
        prefix: a.prefix,
        gateway: Some(a.gateway),
    }
}

/// The plan name carve uses for a plan file: its file stem (`examples/gateway.toml` → `gateway`).
pub fn plan_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "plan".into())
}

/// Resolves `plan` (parsed from a file in `base`) with its `alloc`ation into the engine's view.
/// Relative paths are taken relative to `base`.
pub fn resolve(
    name: &str,
    plan: &Plan,
    alloc: &Allocation,
    base: &Path,
) -> Result<PlanSpec, ResolveError> {
    let rel = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };
    let networks = alloc
        .networks
        .iter()
        .map(|n| NetworkSpec {
            name: n.name.clone(),
            namespace: n.namespace.clone(),
            subnet: n.subnet,
            prefix: n.prefix,
            gateway: Some(n.gateway),
        })
        .collect();
    let mut partitions = Vec::new();
    for p in &plan.partitions {
        let placed = alloc
            .partitions
            .iter()
            .find(|x| x.name == p.name)
            .ok_or_else(|| ResolveError::NotPlaced(p.name.clone()))?;
        let missing = |field| ResolveError::Missing {
            partition: p.name.clone(),
            field,
            kind: p.kind.as_str(),
        };
        let env: Vec<(String, String)> =
            p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let network = placed.network.as_ref().map(attachment);
        let kind = match p.kind {
            Kind::Dedicated => KindSpec::Dedicated(DedicatedSpec {
                command: p.command.clone().ok_or_else(|| missing("command"))?,
                env,
                sched: Some(placed.sched.clone()),
                hugepages: placed.hugepages,
                irqs: placed.irqs.clone(),
            }),
            Kind::Container => KindSpec::Container(ContainerSpec {
                rootfs: match (&p.rootfs, &p.bundle) {
                    (Some(r), _) => RootfsSource::Folder(rel(r)),
                    (None, Some(b)) => RootfsSource::Bundle(rel(b)),
                    (None, None) => return Err(missing("rootfs or bundle")),
                },
                command: p.command.clone().unwrap_or_default(),
                env,
                init: p.init,
                network,
            }),
            Kind::Vm => KindSpec::Vm(VmSpec {
                vcpus: placed.vcpus.unwrap_or(placed.cpus.len() as u32),
                kernel: p.kernel.as_ref().map(rel),
                initrd: p.initrd.as_ref().map(rel),
                append: p.append.clone(),
                disks: p.disks.0.iter().map(rel).collect(),
                network,
            }),
        };
        partitions.push(PartitionSpec {
            name: p.name.clone(),
            cpus: placed.cpus.clone(),
            memory: placed.memory,
            restart: Restart {
                policy: p.restart.policy,
                max_retries: p.restart.max_retries,
                backoff_ms: p
                    .restart
                    .backoff
                    .map(|d| d.nanos() / 1_000_000)
                    .unwrap_or(1000),
            },
            kind,
        });
    }
    Ok(PlanSpec {
        name: name.to_string(),
        networks,
        partitions,
    })
}

/// Reads, validates and allocates the plan file at `path` against this host, and resolves it.
/// Every problem the plan has is returned as text (one line each, located in the file).
pub fn load(path: &Path) -> Result<PlanSpec, Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let show = |ps: Vec<carve_core::Problem>| -> Vec<String> {
        ps.into_iter()
            .map(|p| format!("{}: {p}", path.display()))
            .collect()
    };
    let plan = Plan::parse(&text).map_err(show)?;
    let host = carve_core::read_host(&Default::default())
        .map_err(|e| vec![format!("reading the host: {e}")])?;
    let alloc = carve_core::alloc::allocate(&plan, &host).map_err(show)?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    resolve(&plan_name(path), &plan, &alloc, &base).map_err(|e| vec![e.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str = r#"
[host]
housekeeping = [0]

[network.carve0]
namespace = "carve-demo"
subnet = "10.77.0.0/24"

[[partition]]
name = "fastpath"
kind = "dedicated"
cpus = [1]
memory = "64MiB"
sched = "fifo:80"
command = ["carve-pktcrypt"]
restart = { policy = "on-failure", max_retries = 5, backoff = "500ms" }

[[partition]]
name = "control"
kind = "container"
cpus = [0]
memory = "256MiB"
rootfs = "images/busybox"
command = ["/bin/httpd", "-f", "-p", "8080"]
network = { bridge = "carve0", address = "10.77.0.2/24" }
restart = "always"

[[partition]]
name = "legacy"
kind = "vm"
vcpus = 1
cpus = [0]
memory = "256MiB"
kernel = "/boot/vmlinuz"
network = { bridge = "carve0", address = "10.77.0.3/24" }
"#;

    #[test]
    fn the_gateway_plan_resolves_on_the_two_core_fixture() {
        let plan = Plan::parse(GATEWAY).unwrap();
        let host = carve_core::Host::from_json(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../core/fixtures/hosts/this-2core-hybrid.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let alloc = carve_core::alloc::allocate(&plan, &host).unwrap();
        let spec = resolve("gateway", &plan, &alloc, Path::new("/plans")).unwrap();
        assert_eq!(spec.name, "gateway");
        assert_eq!(spec.networks[0].gateway, Some("10.77.0.1".parse().unwrap()));
        assert_eq!(spec.networks[0].namespace.as_deref(), Some("carve-demo"));
        let fast = spec.partition("fastpath").unwrap();
        assert_eq!(fast.cpus.to_string(), "1");
        assert_eq!(fast.restart.max_retries, Some(5));
        assert_eq!(fast.restart.backoff_ms, 500);
        let control = spec.partition("control").unwrap();
        assert_eq!(control.memory, 256 << 20);
        let KindSpec::Container(c) = &control.kind else {
            panic!("control is a container")
        };
        assert_eq!(
            c.rootfs,
            RootfsSource::Folder("/plans/images/busybox".into())
        );
        let att = c.network.as_ref().unwrap();
        assert_eq!(att.address.to_string(), "10.77.0.2");
        assert_eq!(att.gateway, Some("10.77.0.1".parse().unwrap()));
        let KindSpec::Vm(vm) = &spec.partition("legacy").unwrap().kind else {
            panic!("legacy is a vm")
        };
        assert_eq!(vm.vcpus, 1);
        assert_eq!(vm.kernel.as_deref(), Some(Path::new("/boot/vmlinuz")));
    }

    #[test]
    fn plan_name_is_the_file_stem() {
        assert_eq!(plan_name(Path::new("examples/gateway.toml")), "gateway");
    }
}
