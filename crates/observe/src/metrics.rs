//! The Prometheus text exposition (format 0.0.4) of an [`Overview`].
//!
//! Names follow Prometheus conventions: a `carve_` prefix, base units in the name (`_seconds`,
//! `_bytes`, `_ratio` for 0..1 shares), `_total` for counters only; each family has one
//! `# HELP` and one `# TYPE` line before its samples.

use crate::model::{CoreView, Overview, PartView, ProbeView, VcpuView, VmView};
use std::fmt::Write;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample's labels after `plan` (which every sample carries first).
type Labels = Vec<(&'static str, String)>;

/// One family: its `# HELP` and `# TYPE` lines, then a sample per row.
fn family(
    out: &mut String,
    plan: &str,
    (name, kind, help): (&str, &str, &str),
    rows: impl IntoIterator<Item = (Labels, f64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in rows {
        let l: Vec<String> = std::iter::once(format!("plan=\"{}\"", escape(plan)))
            .chain(labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))))
            .collect();
        let v = if value.is_finite() {
            format!("{value}")
        } else {
            "NaN".into()
        };
        let _ = writeln!(out, "{name}{{{}}} {v}", l.join(","));
    }
}

/// Renders every metric of `ov`; `observer_cpu_seconds` is the sampler's own CPU time.
pub fn render(ov: &Overview, observer_cpu_seconds: f64) -> String {
    let mut out = String::new();
    partitions(&mut out, ov);
    cores(&mut out, ov);
    vms(&mut out, ov);
    links(&mut out, ov);
    family(
        &mut out,
        &ov.plan,
        (
            "carve_observer_cpu_seconds_total",
            "counter",
            "CPU time the supervisor's sampler used (its cost on the housekeeping cores).",
        ),
        [(vec![], observer_cpu_seconds)],
    );
    out
}

fn partitions(out: &mut String, ov: &Overview) {
    let parts = &ov.partitions;
    let name = |p: &PartView| ("partition", p.name.clone());
    family(
        out,
        &ov.plan,
        (
            "carve_partition_info",
            "gauge",
            "A partition of the plan (always 1), with its kind and cores.",
        ),
        parts.iter().map(|p| {
            let labels = vec![name(p), ("kind", p.kind.clone()), ("cpus", p.cpus.clone())];
            (labels, 1.0)
        }),
    );
    family(
        out,
        &ov.plan,
        (
            "carve_partition_state",
            "gauge",
            "1 for the state the partition is in, 0 for the others.",
        ),
        parts.iter().flat_map(|p| {
            ["pending", "running", "restarting", "stopped", "exited"].map(|s| {
                let v = if p.state == s { 1.0 } else { 0.0 };
                (vec![name(p), ("state", s.to_string())], v)
            })
        }),
    );
    type Get = fn(&PartView) -> Option<f64>;
    let families: [(&str, &str, &str, Get); 6] = [
        (
            "carve_partition_restarts_total",
            "counter",
            "Restarts of the partition by the supervisor.",
            |p| Some(p.restarts as f64),
        ),
        (
            "carve_partition_cpu_seconds_total",
            "counter",
            "CPU time used by the partition (cgroup, or the dedicated process's threads).",
            |p| p.cpu_seconds_total,
        ),
        (
            "carve_partition_memory_bytes",
            "gauge",
            "Memory in use by the partition's cgroup.",
            |p| p.memory_bytes.map(|b| b as f64),
        ),
        (
            "carve_partition_memory_limit_bytes",
            "gauge",
            "The partition's memory budget (its cgroup limit for a container).",
            |p| Some(p.memory_limit_bytes as f64),
        ),
        (
            "carve_partition_oom_kills_total",
            "counter",
            "Processes of the partition killed by the OOM killer.",
            |p| p.oom_kills_total.map(|k| k as f64),
        ),
        (
            "carve_partition_offcpu_ratio",
            "gauge",
            "Dedicated: share of its cores its process was not on them over the last interval.",
            |p| p.offcpu_ratio,
        ),
    ];
    for (n, kind, help, get) in families {
        family(
            out,
            &ov.plan,
            (n, kind, help),
            parts
                .iter()
                .filter_map(|p| get(p).map(|v| (vec![name(p)], v))),
        );
    }
}

/// A probe metric family: name, help, and how to read its value.
type ProbeFamily = (&'static str, &'static str, fn(&ProbeView) -> f64);

fn cores(out: &mut String, ov: &Overview) {
    let cpu = |c: &CoreView| ("cpu", c.cpu.to_string());
    type Get = fn(&CoreView) -> f64;
    let ratios: [(&str, &str, Get); 2] = [
        (
            "carve_core_busy_ratio",
            "Share of the last interval the CPU was not idle (/proc/stat).",
            |c| c.busy_ratio,
        ),
        (
            "carve_core_hypervisor_steal_ratio",
            "Share of the last interval the hypervisor ran something else (/proc/stat steal).",
            |c| c.steal_ratio,
        ),
    ];
    for (n, help, get) in ratios {
        let rows = ov.cores.iter().map(|c| (vec![cpu(c)], get(c)));
        family(out, &ov.plan, (n, "gauge", help), rows);
    }
    family(
        out,
        &ov.plan,
        (
            "carve_core_interrupts_total",
            "counter",
            "Interrupts that fired on the CPU since boot (/proc/interrupts), by IRQ; non-zero ones only.",
        ),
        ov.cores.iter().flat_map(|c| {
            c.irqs_total
                .iter()
                .filter(|i| i.count > 0)
                .map(move |i| (vec![cpu(c), ("irq", i.irq.clone())], i.count as f64))
        }),
    );
    probes(out, ov);
}

/// The noise probe's families, one sample per probed (dedicated) core.
fn probes(out: &mut String, ov: &Overview) {
    let probed: Vec<_> = ov
        .cores
        .iter()
        .filter_map(|c| c.probe.as_ref().map(|p| (c, p)))
        .collect();
    let labels = |c: &CoreView| {
        let owner = c.owners.first().cloned().unwrap_or_default();
        vec![("cpu", c.cpu.to_string()), ("partition", owner)]
    };
    let gauges: [ProbeFamily; 4] = [
        (
            "carve_dedicated_core_stolen_ratio",
            "Share of the last probe window taken from the dedicated core.",
            |p| p.stolen_ratio,
        ),
        (
            "carve_dedicated_core_interruptions_per_second",
            "Interruptions (gaps above 1 µs) per second in the last probe window.",
            |p| p.interruptions_per_second,
        ),
        (
            "carve_dedicated_core_longest_gap_seconds",
            "The longest interruption in the last probe window.",
            |p| p.longest_gap_seconds,
        ),
        (
            "carve_dedicated_core_max_gap_seconds",
            "The longest interruption in any probe window since the plan is up.",
            |p| p.max_gap_seconds,
        ),
    ];
    let gauges = gauges.map(|(n, help, get)| (n, "gauge", help, get));
    let counters: [ProbeFamily; 2] = [
        (
            "carve_dedicated_core_interruptions_total",
            "Interruptions seen in every probe window.",
            |p| p.interruptions_total as f64,
        ),
        (
            "carve_dedicated_probe_seconds_total",
            "Time the noise probe held the dedicated core (what it cost the partition).",
            |p| p.window_seconds_total,
        ),
    ];
    let counters = counters.map(|(n, help, get)| (n, "counter", help, get));
    for (n, kind, help, get) in gauges.into_iter().chain(counters) {
        let rows = probed.iter().map(|(c, p)| (labels(c), get(p)));
        family(out, &ov.plan, (n, kind, help), rows);
    }
}

fn vms(out: &mut String, ov: &Overview) {
    let part = |v: &VmView| ("partition", v.partition.clone());
    family(
        out,
        &ov.plan,
        (
            "carve_vm_status",
            "gauge",
            "1 with the VM's QMP status as a label.",
        ),
        ov.vms
            .iter()
            .map(|v| (vec![part(v), ("status", v.status.clone())], 1.0)),
    );
    type Get = fn(&VcpuView) -> f64;
    let vcpus: [(&str, &str, Get); 2] = [
        (
            "carve_vm_vcpu_run_seconds_total",
            "Time the vCPU thread ran on a host CPU (schedstat).",
            |c| c.run_seconds_total,
        ),
        (
            "carve_vm_vcpu_steal_seconds_total",
            "Time the vCPU thread was runnable but waited for a host CPU (the guest's steal).",
            |c| c.wait_seconds_total,
        ),
    ];
    for (n, help, get) in vcpus {
        let rows = ov.vms.iter().flat_map(|v| {
            v.vcpus
                .iter()
                .map(move |c| (vec![part(v), ("vcpu", c.index.to_string())], get(c)))
        });
        family(out, &ov.plan, (n, "counter", help), rows);
    }
}

fn links(out: &mut String, ov: &Overview) {
    type Get = fn(&crate::procfs::LinkCounters) -> u64;
    let all: [(&str, &str, Get); 4] = [
        (
            "carve_link_receive_bytes_total",
            "Bytes received by a bridge or link of the plan.",
            |c| c.rx_bytes,
        ),
        (
            "carve_link_receive_packets_total",
            "Packets received by a bridge or link of the plan.",
            |c| c.rx_packets,
        ),
        (
            "carve_link_transmit_bytes_total",
            "Bytes sent by a bridge or link of the plan.",
            |c| c.tx_bytes,
        ),
        (
            "carve_link_transmit_packets_total",
            "Packets sent by a bridge or link of the plan.",
            |c| c.tx_packets,
        ),
    ];
    for (n, help, get) in all {
        let rows = ov.links.iter().map(|l| {
            let labels = vec![
                ("netns", l.netns.clone()),
                ("link", l.counters.name.clone()),
            ];
            (labels, get(&l.counters) as f64)
        });
        family(out, &ov.plan, (n, "counter", help), rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    #[test]
    fn renders_families_once_with_escaped_labels() {
        let ov = Overview {
            plan: "p".into(),
            partitions: vec![PartView {
                name: "we\"b".into(),
                kind: "container".into(),
                cpus: "0".into(),
                state: "running".into(),
                memory_limit_bytes: 64,
                cpu_seconds_total: Some(1.5),
                ..Default::default()
            }],
            cores: vec![CoreView {
                cpu: 1,
                owners: vec!["fast".into()],
                dedicated: true,
                probe: Some(ProbeView {
                    stolen_ratio: 0.25,
                    window_seconds_total: 3.0,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&ov, 0.5);
        assert!(text
            .contains("carve_partition_cpu_seconds_total{plan=\"p\",partition=\"we\\\"b\"} 1.5\n"));
        assert!(text.contains(
            "carve_dedicated_core_stolen_ratio{plan=\"p\",cpu=\"1\",partition=\"fast\"} 0.25\n"
        ));
        assert!(text.contains(
            "carve_dedicated_probe_seconds_total{plan=\"p\",cpu=\"1\",partition=\"fast\"} 3\n"
        ));
        assert!(text.contains(
            "carve_partition_state{plan=\"p\",partition=\"we\\\"b\",state=\"running\"} 1\n"
        ));
        let types = text
            .lines()
            .filter(|l| l.starts_with("# TYPE carve_partition_cpu_seconds_total "))
            .count();
        assert_eq!(types, 1);
        // A metric without a value (memory of a partition not sampled yet) has no sample.
        assert!(!text.contains("carve_partition_memory_bytes{"));
    }
}
