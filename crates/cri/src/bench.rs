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
