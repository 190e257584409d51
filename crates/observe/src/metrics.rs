//! The Prometheus text exposition (format 0.0.4) of an [`Overview`].
//!
//! Names follow Prometheus conventions: a `carve_` prefix, base units in the name (`_seconds`,
//! `_bytes`, `_ratio` for 0..1 shares), `_total` for counters only; each family has one
//! `# HELP` and one `# TYPE` line before its samples.

use crate::model::Overview;
use std::fmt::Write;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Family<'a> {
    out: &'a mut String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Family<'_> {
    fn head<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let v = if value.is_finite() {
            format!("{value}")
        } else {
            "NaN".into()
        };
        let _ = writeln!(self.out, "{name}{{{}}} {v}", l.join(","));
    }
}

macro_rules! family {
    ($out:expr, $name:expr, $kind:expr, $help:expr, |$f:ident| $body:block) => {{
        let mut $f = Family::head($out, $name, $kind, $help);
        let _ = &mut $f;
        $body
    }};
}

/// Renders every metric of `ov`; `observer_cpu_seconds` is the sampler's own CPU time.
pub fn render(ov: &Overview, observer_cpu_seconds: f64) -> String {
    let mut out = String::new();
    let plan = ov.plan.as_str();
    partitions(&mut out, ov);
    cores(&mut out, ov);
    vms(&mut out, ov);
    links(&mut out, ov);
    family!(
        &mut out,
        "carve_observer_cpu_seconds_total",
        "counter",
        "CPU time the supervisor's sampler used (its cost on the housekeeping cores).",
        |f| {
            f.sample(
                "carve_observer_cpu_seconds_total",
                &[("plan", plan)],
                observer_cpu_seconds,
            );
        }
    );
    out
}

fn partitions(out: &mut String, ov: &Overview) {
    let plan = ov.plan.as_str();
    let n = "carve_partition_info";
    family!(
        out,
        n,
        "gauge",
        "A partition of the plan (always 1), with its kind and cores.",
        |f| {
            for p in &ov.partitions {
                f.sample(
                    n,
                    &[
                        ("plan", plan),
                        ("partition", &p.name),
                        ("kind", &p.kind),
                        ("cpus", &p.cpus),
                    ],
                    1.0,
                );
            }
        }
    );
    let n = "carve_partition_state";
    family!(
        out,
        n,
        "gauge",
        "1 for the state the partition is in, 0 for the others.",
        |f| {
            for p in &ov.partitions {
                for s in ["pending", "running", "restarting", "stopped", "exited"] {
                    let v = if p.state == s { 1.0 } else { 0.0 };
                    f.sample(
                        n,
                        &[("plan", plan), ("partition", &p.name), ("state", s)],
                        v,
                    );
                }
            }
        }
    );
    type Get = fn(&crate::model::PartView) -> Option<f64>;
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
        family!(out, n, kind, help, |f| {
            for p in &ov.partitions {
                if let Some(v) = get(p) {
                    f.sample(n, &[("plan", plan), ("partition", &p.name)], v);
                }
            }
        });
    }
}

/// A probe metric family: name, help, and how to read its value.
type ProbeFamily = (
    &'static str,
    &'static str,
    fn(&crate::model::ProbeView) -> f64,
);

fn cores(out: &mut String, ov: &Overview) {
    let plan = ov.plan.as_str();
    let n = "carve_core_busy_ratio";
    family!(
        out,
        n,
        "gauge",
        "Share of the last interval the CPU was not idle (/proc/stat).",
        |f| {
            for c in &ov.cores {
                f.sample(
                    n,
                    &[("plan", plan), ("cpu", &c.cpu.to_string())],
                    c.busy_ratio,
                );
            }
        }
    );
    let n = "carve_core_hypervisor_steal_ratio";
    family!(
        out,
        n,
        "gauge",
        "Share of the last interval the hypervisor ran something else (/proc/stat steal).",
        |f| {
            for c in &ov.cores {
                f.sample(
                    n,
                    &[("plan", plan), ("cpu", &c.cpu.to_string())],
                    c.steal_ratio,
                );
            }
        }
    );
    let n = "carve_core_interrupts_total";
    family!(out, n, "counter", "Interrupts that fired on the CPU since boot (/proc/interrupts), by IRQ; non-zero ones only.", |f| {
        for c in &ov.cores {
            for i in c.irqs_total.iter().filter(|i| i.count > 0) {
                f.sample(n, &[("plan", plan), ("cpu", &c.cpu.to_string()), ("irq", &i.irq)], i.count as f64);
            }
        }
    });
    let probed: Vec<_> = ov
        .cores
        .iter()
        .filter_map(|c| c.probe.as_ref().map(|p| (c, p)))
        .collect();
    let owner = |c: &crate::model::CoreView| c.owners.first().cloned().unwrap_or_default();
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
    for (n, help, get) in gauges {
        family!(out, n, "gauge", help, |f| {
            for (c, p) in &probed {
                f.sample(
                    n,
                    &[
                        ("plan", plan),
                        ("cpu", &c.cpu.to_string()),
                        ("partition", &owner(c)),
                    ],
                    get(p),
                );
            }
        });
    }
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
    for (n, help, get) in counters {
        family!(out, n, "counter", help, |f| {
            for (c, p) in &probed {
                f.sample(
                    n,
                    &[
                        ("plan", plan),
                        ("cpu", &c.cpu.to_string()),
                        ("partition", &owner(c)),
                    ],
                    get(p),
                );
            }
        });
    }
}

fn vms(out: &mut String, ov: &Overview) {
    let plan = ov.plan.as_str();
    let n = "carve_vm_status";
    family!(
        out,
        n,
        "gauge",
        "1 with the VM's QMP status as a label.",
        |f| {
            for v in &ov.vms {
                f.sample(
                    n,
                    &[
                        ("plan", plan),
                        ("partition", &v.partition),
                        ("status", &v.status),
                    ],
                    1.0,
                );
            }
        }
    );
    let n = "carve_vm_vcpu_run_seconds_total";
    family!(
        out,
        n,
        "counter",
        "Time the vCPU thread ran on a host CPU (schedstat).",
        |f| {
            for v in &ov.vms {
                for c in &v.vcpus {
                    f.sample(
                        n,
                        &[
                            ("plan", plan),
                            ("partition", &v.partition),
                            ("vcpu", &c.index.to_string()),
                        ],
                        c.run_seconds_total,
                    );
                }
            }
        }
    );
    let n = "carve_vm_vcpu_steal_seconds_total";
    family!(
        out,
        n,
        "counter",
        "Time the vCPU thread was runnable but waited for a host CPU (the guest's steal).",
        |f| {
            for v in &ov.vms {
                for c in &v.vcpus {
                    f.sample(
                        n,
                        &[
                            ("plan", plan),
                            ("partition", &v.partition),
                            ("vcpu", &c.index.to_string()),
                        ],
                        c.wait_seconds_total,
                    );
                }
            }
        }
    );
}

fn links(out: &mut String, ov: &Overview) {
    let plan = ov.plan.as_str();
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
        family!(out, n, "counter", help, |f| {
            for l in &ov.links {
                f.sample(
                    n,
                    &[
                        ("plan", plan),
                        ("netns", &l.netns),
                        ("link", &l.counters.name),
                    ],
                    get(&l.counters) as f64,
                );
            }
        });
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
