//! `carve bench cri`: pod start (RunPodSandbox + CreateContainer + StartContainer) and teardown
//! (StopContainer + RemoveContainer + StopPodSandbox + RemovePodSandbox) through one private
//! containerd node, handler `carve` against handler `runc`, rounds interleaved in one run.

use crate::client::Client;
use crate::node::{Node, BUSYBOX_IMAGE};
use crate::pod::{ContainerSpec, PodSpec};
use k8s_cri::v1 as cri;
use serde::Serialize;
use std::time::{Duration, Instant};

/// One handler's timings in milliseconds, per round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Samples {
    /// The handler.
    pub handler: String,
    /// Pod start per round (the three calls below).
    pub start_ms: Vec<f64>,
    /// RunPodSandbox alone (containerd: snapshot, CNI, the pause container's create + start).
    pub sandbox_ms: Vec<f64>,
    /// CreateContainer alone (containerd: snapshot and spec; no runtime call).
    pub create_ms: Vec<f64>,
    /// StartContainer alone (the shim runs the runtime's create and start).
    pub run_ms: Vec<f64>,
    /// Pod teardown per round.
    pub teardown_ms: Vec<f64>,
}

/// The median of `v` (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The `q` quantile (0..1) of `v`, nearest rank.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One pod of `handler` started and torn down; returns (sandbox, create, start, teardown) in ms.
fn round(
    c: &mut Client,
    node: &Node,
    handler: &str,
    n: usize,
) -> Result<[f64; 4], crate::client::Error> {
    let pod = PodSpec {
        name: format!("bench-{handler}-{n}"),
        namespace: "bench".into(),
        handler: handler.into(),
        cgroup_parent: format!("{}/bench-{handler}-{n}", node.cgroup_root()),
        ..Default::default()
    };
    let ctr = ContainerSpec {
        name: "c".into(),
        image: BUSYBOX_IMAGE.into(),
        command: vec!["sleep".into(), "1000".into()],
        ..Default::default()
    };
    let t = Instant::now();
    let pod_id = c.run_pod_sandbox(pod.request())?.pod_sandbox_id;
    let sandbox = ms(t);
    let t = Instant::now();
    let id = c.create_container(ctr.request(&pod_id, &pod))?.container_id;
    let create = ms(t);
    let t = Instant::now();
    c.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })?;
    let run = ms(t);
    let t = Instant::now();
    c.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })?;
    c.remove_container(cri::RemoveContainerRequest { container_id: id })?;
    c.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })?;
    c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id,
    })?;
    let teardown = ms(t);
    // The kubelet removes the pod's cgroup parent; containerd does not.
    for d in crate::host::cgroup_tree(&pod.cgroup_parent) {
        let _ = std::fs::remove_dir(d);
    }
    Ok([sandbox, create, run, teardown])
}

/// `runs` rounds per handler (after one unrecorded warm-up round each), interleaved.
pub fn run(
    node: &Node,
    handlers: &[&str],
    runs: usize,
) -> Result<Vec<Samples>, crate::client::Error> {
    let mut c = node.client()?;
    let mut out: Vec<Samples> = handlers
        .iter()
        .map(|h| Samples {
            handler: h.to_string(),
            ..Default::default()
        })
        .collect();
    for n in 0..=runs {
        for s in out.iter_mut() {
            let [sb, cr, st, td] = round(&mut c, node, &s.handler, n)?;
            if n > 0 {
                s.start_ms.push(sb + cr + st);
                s.sandbox_ms.push(sb);
                s.create_ms.push(cr);
                s.run_ms.push(st);
                s.teardown_ms.push(td);
            }
        }
        // Let the shims' exits settle so one handler's cleanup does not land in the other's round.
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(out)
}

/// Why [`noise`] failed.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// A CRI call failed.
    #[error(transparent)]
    Cri(#[from] crate::client::Error),
    /// `carve noise` inside the pod did not print its JSON report.
    #[error("carve noise in pod {pod} (exit {exit}) printed no report ({json}): {output}")]
    Report {
        /// The pod's label.
        pod: String,
        /// The probe's exit code.
        exit: i32,
        /// The JSON error.
        json: serde_json::Error,
        /// Its stdout and stderr.
        output: String,
    },
}

/// One pod of [`noise`]: its label and `carve noise --json`'s report from inside it.
#[derive(Debug, Clone, Serialize)]
pub struct NoiseRun {
    /// "dedicated" (`carve.dev/dedicated: "true"`) or "plain" (no annotation).
    pub pod: String,
    /// The probe's policy.
    pub sched: String,
    /// The pod's annotations.
    pub annotations: Vec<(String, String)>,
    /// `carve noise --json` as printed inside the pod.
    pub report: serde_json::Value,
}

/// One pod of [`noise`]: label, annotations, the probe's policy.
type Variant<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

/// What [`noise`] runs.
#[derive(Debug, Clone)]
pub struct NoiseOptions {
    /// The carve binary bind-mounted into the pods (dynamically linked: the host's libc
    /// directories are mounted beside it, read-only).
    pub carve: std::path::PathBuf,
    /// The CPU the pods' cpuset holds (the kubelet's exclusive CPU).
    pub cpu: usize,
    /// Seconds per probe.
    pub seconds: f64,
    /// The probe's policy in an extra dedicated pod run first (its `carve.dev/sched` too; CAP_SYS_NICE
    /// added); "other" for none.
    pub sched: String,
}

/// `carve noise` inside a pod via ExecSync, in a pod with `carve.dev/dedicated: "true"` (exec
/// kept on the pod's CPU with `carve.dev/exec-cpus: dedicated`) and then in the same pod without
/// the annotation, the probe SCHED_OTHER in both: the containers hold the same exclusive cpuset,
/// so the difference is what carve-oci does to the host. With a real-time `sched`, a dedicated
/// pod probing with it runs first (a plain pod cannot: with RT group scheduling its cpu cgroup
/// has no RT budget, and the CRI has no field for one).
pub fn noise(node: &Node, o: &NoiseOptions) -> Result<Vec<NoiseRun>, NoiseError> {
    let mut c = Client::connect(&node.socket(), Duration::from_secs_f64(o.seconds + 60.0))?;
    let rt = o.sched != "other";
    let mut variants: Vec<Variant> = Vec::new();
    if rt {
        variants.push((
            "dedicated",
            vec![
                ("carve.dev/dedicated", "true"),
                ("carve.dev/sched", o.sched.as_str()),
                ("carve.dev/exec-cpus", "dedicated"),
            ],
            o.sched.as_str(),
        ));
    }
    variants.push((
        "dedicated",
        vec![
            ("carve.dev/dedicated", "true"),
            ("carve.dev/exec-cpus", "dedicated"),
        ],
        "other",
    ));
    variants.push(("plain", vec![], "other"));
    let mut out = Vec::new();
    for (label, ann, sched) in variants {
        let pod = PodSpec {
            name: format!("noise-{label}"),
            namespace: "bench".into(),
            handler: "carve".into(),
            cgroup_parent: format!("{}/noise-{label}", node.cgroup_root()),
            annotations: ann
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let mut ro_mounts = vec![(o.carve.display().to_string(), "/carve".to_string())];
        for d in ["/lib/x86_64-linux-gnu", "/lib64"] {
            if std::path::Path::new(d).is_dir() {
                ro_mounts.push((d.into(), d.into()));
            }
        }
        let ctr = ContainerSpec {
            name: "probe".into(),
            image: BUSYBOX_IMAGE.into(),
            command: vec!["sleep".into(), "100000".into()],
            cpuset_cpus: o.cpu.to_string(),
            memory_limit: 256 << 20,
            ro_mounts,
            add_capabilities: if rt { vec!["SYS_NICE".into()] } else { vec![] },
            ..Default::default()
        };
        let pod_id = c.run_pod_sandbox(pod.request())?.pod_sandbox_id;
        let r = (|| {
            let id = c.create_container(ctr.request(&pod_id, &pod))?.container_id;
            c.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })?;
            let cmd = format!(
                "/carve noise --cpus {} --seconds {} --untuned-sched {} --no-trace --json",
                o.cpu, o.seconds, sched
            );
            c.exec_sync(cri::ExecSyncRequest {
                container_id: id,
                cmd: cmd.split(' ').map(str::to_string).collect(),
                timeout: (o.seconds + 30.0) as i64,
            })
        })();
        let _ = c.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        });
        let _ = c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id,
        });
        for d in crate::host::cgroup_tree(&pod.cgroup_parent) {
            let _ = std::fs::remove_dir(d);
        }
        let r = r?;
        let report = serde_json::from_slice(&r.stdout).map_err(|json| NoiseError::Report {
            pod: label.into(),
            exit: r.exit_code,
            json,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            ),
        })?;
        out.push(NoiseRun {
            pod: label.into(),
            sched: sched.into(),
            annotations: ann
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            report,
        });
    }
    Ok(out)
}
