//! The load of seed 004's experiment, started by carve itself as a plan's partitions:
//! - `stress`: a container running the probe's CPU, memory-bandwidth, fork and file-I/O
//!   stressors and a UDP sink;
//! - `flood`: a container flooding the sink with UDP over the plan's bridge, which lives in a
//!   network namespace of the plan's own (no traffic leaves it);
//! - `vmload`: a VM booting the guest kernel and then looping in its shell (when guest assets
//!   exist).
//!
//! [`Placement::Untuned`] lets the load run on every core (a host nobody carved);
//! [`Placement::Housekeeping`] keeps it off the probed core (the plan's way). The plan is
//! brought up with `carve up -d` and taken down with `carve down`, whose journal restores
//! the host; [`Load`] takes it down on drop, also after a failure.

use crate::{run_with_deadline, BenchError, Tools};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where the load may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On every online core, the probed one included.
    Untuned,
    /// On every online core except the probed one.
    Housekeeping,
}

/// A running load plan.
#[derive(Debug)]
pub struct Load {
    carve: PathBuf,
    name: String,
    /// The plan file (kept for the report).
    pub plan: PathBuf,
    /// The partitions it runs.
    pub partitions: Vec<String>,
}

/// The plan's text.
pub fn plan_text(
    probe_cores: &[usize],
    all: &[usize],
    placement: Placement,
    rootfs: &Path,
    guest: Option<&carve_vm::assets::GuestAssets>,
) -> String {
    let cpus: Vec<usize> = match placement {
        Placement::Untuned => all.to_vec(),
        Placement::Housekeeping => all
            .iter()
            .copied()
            .filter(|c| !probe_cores.contains(c))
            .collect(),
    };
    let hk: Vec<usize> = all
        .iter()
        .copied()
        .filter(|c| !probe_cores.contains(c))
        .collect();
    let list = |v: &[usize]| {
        v.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ns = format!("carve-bench-{}-{}", std::process::id(), crate::unique());
    let third = (std::process::id() % 200) + 20;
    // Partition and bridge names are host-wide (cgroups, interfaces): unique per process.
    let [st, fl, vm, br] = names();
    let mut s = format!(
        "# carve bench load ({placement:?}): written by carve-bench, brought up with `carve up -d`.\n\
         [host]\nhousekeeping = [{hk}]\n\n\
         [network.{br}]\nnamespace = \"{ns}\"\nsubnet = \"10.79.{third}.0/24\"\n\n\
         [[partition]]\nname = \"{st}\"\nkind = \"container\"\ncpus = [{cpus}]\nmemory = \"512MiB\"\n\
         rootfs = \"{rootfs}\"\ncommand = [\"/bin/carve-probe\", \"load\", \"9999\"]\n\
         network = {{ bridge = \"{br}\", address = \"10.79.{third}.2/24\" }}\n\n\
         [[partition]]\nname = \"{fl}\"\nkind = \"container\"\ncpus = [{cpus}]\nmemory = \"64MiB\"\n\
         rootfs = \"{rootfs}\"\ncommand = [\"/bin/carve-probe\", \"flood\", \"10.79.{third}.2\", \"9999\"]\n\
         network = {{ bridge = \"{br}\", address = \"10.79.{third}.3/24\" }}\n",
        hk = list(&hk),
        cpus = list(&cpus),
        rootfs = rootfs.display(),
    );
    if let Some(g) = guest {
        s.push_str(&format!(
            "\n[[partition]]\nname = \"{vm}\"\nkind = \"vm\"\ncpus = [{}]\nvcpus = 1\nmemory = \"256MiB\"\n\
             kernel = \"{}\"\ninitrd = \"{}\"\nappend = 'quiet carve.cmd=\"while :; do :; done\"'\n",
            list(&cpus[..1]),
            g.kernel.display(),
            g.initrd.display()
        ));
    }
    s
}

/// The partition names (stress, flood, vm) and the bridge's, unique to this process.
pub fn names() -> [String; 4] {
    let id = std::process::id() % 100_000;
    ["cbs", "cbf", "cbv", "cbl"].map(|p| format!("{p}{id}"))
}

impl Load {
    /// Writes the plan into `work` and brings it up (`carve up -d`).
    pub fn start(
        tools: &Tools,
        probe: &Path,
        work: &Path,
        probe_cores: &[usize],
        placement: Placement,
    ) -> Result<Load, BenchError> {
        let all: Vec<usize> = crate::online_cpus()?.iter().collect();
        // One rootfs for both containers: a busybox bundle's rootfs with the probe in it.
        let rootfs = crate::overhead::bundle(work, probe, all[0], &[])?.join("rootfs");
        let name = format!(
            "carve-bench-load-{}-{}",
            std::process::id(),
            crate::unique()
        );
        let plan = work.join(format!("{name}.toml"));
        let text = plan_text(probe_cores, &all, placement, &rootfs, tools.guest.as_ref());
        std::fs::write(&plan, &text).map_err(BenchError::io("write", &plan))?;
        let mut cmd = Command::new(&tools.carve);
        cmd.args(["up", "-d"]);
        if let Some(oci) = &tools.carve_oci {
            cmd.arg("--runtime").arg(oci);
        }
        cmd.arg(&plan);
        let load = Load {
            carve: tools.carve.clone(),
            name,
            plan,
            partitions: {
                let [st, fl, vm, _] = names();
                [st, fl]
                    .into_iter()
                    .chain(tools.guest.as_ref().map(|_| vm))
                    .collect()
            },
        };
        // On failure `load` drops here and takes down whatever came up.
        run_with_deadline(&mut cmd, Duration::from_secs(180))?;
        Ok(load)
    }

    /// Takes the plan down and restores the host.
    pub fn stop(self) -> Result<(), BenchError> {
        let r = self.down();
        std::mem::forget(self);
        r
    }

    fn down(&self) -> Result<(), BenchError> {
        let mut cmd = Command::new(&self.carve);
        cmd.args(["down", &self.name, "--timeout", "60"]);
        run_with_deadline(&mut cmd, Duration::from_secs(120)).map(|_| ())
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Err(e) = self.down() {
            // "no such plan" after a failed `up` is expected; anything else is worth a line.
            eprintln!("carve bench: taking the load plan {} down: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_keeps_load_off_the_probed_core_only_when_asked() {
        let r = Path::new("/x/rootfs");
        let u = plan_text(&[1], &[0, 1], Placement::Untuned, r, None);
        assert!(u.contains("cpus = [0, 1]"), "{u}");
        assert!(u.contains("housekeeping = [0]"), "{u}");
        let h = plan_text(&[1], &[0, 1], Placement::Housekeeping, r, None);
        assert!(
            !h.contains("cpus = [0, 1]") && h.contains("cpus = [0]"),
            "{h}"
        );
        assert!(!h.contains("kind = \"vm\""));
        assert!(h.contains(&format!("bridge = \"{}\"", names()[3])), "{h}");
        assert!(h.contains("namespace = \"carve-bench-"), "{h}");
    }
}
