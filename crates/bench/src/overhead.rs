//! `carve bench overhead`: the same static probe natively, in a carve-oci container, on a
//! dedicated core (`carve run --dedicated`) and in a carve VM; each row's median over repeated
//! batches, as a ratio to native, with seed 004's lmbench rows beside it.
//!
//! Tiers alternate within each round (native, container, dedicated, native, ...) and the
//! figure of a row is the median over rounds, so a burst of host load hits every tier alike.
//! The VM runs once: under TCG (this host's KVM cannot run a Linux guest) every guest
//! instruction is translated, so its column measures QEMU's emulator, not virtualization
//! overhead; under KVM it would be the hardware-assisted cost the seed's "Virt." rows show.

use crate::stats::median;
use crate::{pinned, run_with_deadline, BenchError, Tools};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Short batches (seconds in all), for tests and a first look.
    pub quick: bool,
    /// The core every tier runs on (default: the last online CPU).
    pub cpu: Option<usize>,
    /// Rounds of native/container/dedicated (the VM runs once).
    pub rounds: usize,
    /// Include the container tier.
    pub container: bool,
    /// Include the dedicated tier (retunes the host through `carve run`).
    pub dedicated: bool,
    /// Include the VM tier (needs guest assets).
    pub vm: bool,
    /// Also run the container's variants side by side (see [`VARIANTS`]): the same bundle
    /// with docker's default seccomp filter, with that filter and `SPEC_ALLOW`, and under runc
    /// without and with the filter — so the table shows what the filter costs apart from the
    /// namespaces and cgroups; and native a second time at the end of each round
    /// ([`NATIVE_AGAIN`]), so the table shows its own noise.
    pub container_variants: bool,
    /// Docker's seccomp template the filtered variants take their profile from.
    pub seccomp_template: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            cpu: None,
            rounds: 3,
            container: true,
            dedicated: true,
            vm: true,
            container_variants: false,
            seccomp_template: PathBuf::from(DEFAULT_SECCOMP_TEMPLATE),
        }
    }
}

/// Where podman's containers-common package puts docker's default seccomp template.
pub const DEFAULT_SECCOMP_TEMPLATE: &str = "/usr/share/containers/seccomp.json";

/// A way to run the container bundle: tier key, column label, runtime, seccomp filter, and
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW` (the filtered task keeps speculative store bypass; without
/// it a kernel in `spec_store_bypass_disable=seccomp` mode forces SSBD on every filtered task).
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// The tier's key in the JSON.
    pub tier: &'static str,
    /// The column's label.
    pub label: &'static str,
    /// `runc` instead of carve-oci.
    pub runc: bool,
    /// With docker's default seccomp profile.
    pub seccomp: bool,
    /// With `SECCOMP_FILTER_FLAG_SPEC_ALLOW`.
    pub spec_allow: bool,
}

/// The container tier and its variants, in column order (the first one is the plain
/// `container` tier: runc's default spec, which has no seccomp filter).
pub const VARIANTS: [Variant; 5] = [
    Variant {
        tier: "container",
        label: "container (carve-oci)",
        runc: false,
        seccomp: false,
        spec_allow: false,
    },
    Variant {
        tier: "container-seccomp",
        label: "carve-oci+seccomp",
        runc: false,
        seccomp: true,
        spec_allow: false,
    },
    Variant {
        tier: "container-spec-allow",
        label: "carve-oci+SPEC_ALLOW",
        runc: false,
        seccomp: true,
        spec_allow: true,
    },
    Variant {
        tier: "runc",
        label: "runc",
        runc: true,
        seccomp: false,
        spec_allow: false,
    },
    Variant {
        tier: "runc-seccomp",
        label: "runc+seccomp",
        runc: true,
        seccomp: true,
        spec_allow: false,
    },
];

/// One column of the table.
#[derive(Debug, Clone, Serialize)]
pub struct TierInfo {
    /// "native", "container", "dedicated" or "vm".
    pub tier: String,
    /// What it is, as printed (e.g. "VM (TCG)").
    pub label: String,
    /// Whether it was measured.
    pub measured: bool,
    /// How it ran, or why it did not.
    pub note: String,
}

/// Seed 004's figures for the column a row corresponds to (native, virtualized).
#[derive(Debug, Clone, Serialize)]
pub struct SeedRef {
    /// The seed's column (syscall, ctx, fork, pipe, tcc).
    pub column: &'static str,
    /// Virtualized ÷ native on the Intel Xeon.
    pub xeon_ratio: f64,
    /// Virtualized ÷ native under the Bochs simulator.
    pub bochs_ratio: f64,
}

/// Seed 004's table: (column, Bochs native, Bochs virt, Xeon native, Xeon virt).
pub const SEED_004: [(&str, f64, f64, f64, f64); 6] = [
    ("syscall", 71.0, 308.0, 490.0, 2640.0),
    ("rand", 138.0, 141.0, 167.0, 188.0),
    ("ctx", 740.0, 1590.0, 13830.0, 17100.0),
    ("fork", 91e3, 1969e3, 774e3, 2589e3),
    ("pipe", 4510.0, 6250.0, 33e3, 38.9e3),
    ("tcc", 231e6, 284e6, 458e6, 563e6),
];

fn seed_ref(column: &str) -> Option<SeedRef> {
    SEED_004
        .iter()
        .find(|s| s.0 == column)
        .map(|&(column, bn, bv, xn, xv)| SeedRef {
            column,
            xeon_ratio: xv / xn,
            bochs_ratio: bv / bn,
        })
}

/// One tier's figure for a row.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Median over rounds of the per-batch medians.
    pub median: f64,
    /// ÷ native.
    pub ratio: f64,
    /// Every round's median.
    pub rounds: Vec<f64>,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The microbenchmark.
    pub name: String,
    /// Unit of the figures (time per operation: lower is better in every row).
    pub unit: String,
    /// The tiers' figures, by tier name (native included, ratio 1).
    pub cells: BTreeMap<String, Cell>,
    /// Seed 004's corresponding row, if any.
    pub seed: Option<SeedRef>,
}

/// A target of the issue, checked against this run.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The row.
    pub row: String,
    /// The tier.
    pub tier: String,
    /// The highest acceptable ratio to native.
    pub limit: f64,
    /// The measured ratio.
    pub ratio: f64,
    /// Whether it holds.
    pub met: bool,
}

/// The whole result (`--json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// The core every tier ran on.
    pub cpu: usize,
    /// Short batches.
    pub quick: bool,
    /// Rounds of the alternating tiers.
    pub rounds: usize,
    /// The columns.
    pub tiers: Vec<TierInfo>,
    /// The rows.
    pub rows: Vec<Row>,
    /// The container targets (≤ 1.01× syscall, ctx, pipe; ≤ 1.03× fork).
    pub targets: Vec<Target>,
    /// Load average when the run started and ended (1 min).
    pub loadavg: (f64, f64),
}

/// The container targets of issue 14 (seed 000's "≤ 1 %").
pub const CONTAINER_TARGETS: [(&str, f64); 4] = [
    ("getppid", 1.01),
    ("ctx switch (pipe ping-pong)", 1.01),
    ("pipe bandwidth", 1.01),
    ("fork+exit", 1.03),
];

/// The tier of the second native run in each round (with `--container-variants`): native
/// against itself, the noise floor the container columns must be read against — a row whose
/// A/A ratio is 1.05 cannot show a 1 % container cost.
pub const NATIVE_AGAIN: &str = "native-again";

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

type Measured = Vec<(String, String, String, f64)>;

fn rows_of(v: &serde_json::Value) -> Result<Measured, BenchError> {
    let rows = v["rows"]
        .as_array()
        .ok_or_else(|| BenchError::Parse("probe report without rows".into()))?;
    rows.iter()
        .map(|r| {
            Ok((
                r["name"].as_str().unwrap_or_default().to_string(),
                r["unit"].as_str().unwrap_or_default().to_string(),
                r["seed"].as_str().unwrap_or_default().to_string(),
                r["median"]
                    .as_f64()
                    .ok_or_else(|| BenchError::Parse(format!("row without median: {r}")))?,
            ))
        })
        .collect()
}

/// Batches per row (full, quick) and the length each batch is calibrated to. Many ~1 ms
/// batches rather than a few 20 ms ones: on a shared host a 20 ms batch nearly always holds a
/// preemption by another task, so its median followed the host's load (native against native
/// came out 0.49–1.44× at load 9), while most 1 ms batches are uninterrupted and their median
/// is the operation's own cost (native against native 0.92–1.07× in the same conditions).
pub const BATCHES: (usize, usize) = (101, 21);
/// Microseconds a batch is calibrated to last (rows with a minimum batch size run longer).
pub const BATCH_US: u64 = 1000;

fn probe_args(quick: bool) -> Vec<String> {
    let batches = if quick { BATCHES.1 } else { BATCHES.0 };
    vec![
        "overhead".into(),
        "--batches".into(),
        batches.to_string(),
        "--batch-us".into(),
        BATCH_US.to_string(),
    ]
}

fn deadline(quick: bool) -> Duration {
    Duration::from_secs(if quick { 300 } else { 1800 })
}

/// Native: the probe pinned to `cpu`.
fn native(probe: &Path, cpu: usize, quick: bool) -> Result<Measured, BenchError> {
    let out = run_with_deadline(pinned(probe, cpu).args(probe_args(quick)), deadline(quick))?;
    rows_of(&crate::probe::parse(&out.stdout)?)
}

/// The dedicated core: `carve run --dedicated CPU --sched fifo:99 --no-mlock -- PROBE overhead`.
/// Without --no-mlock (the tier's default) every mmap is populated and locked at once, which
/// measures mlockall, not the core: mmap+munmap of 1 MiB took 36× native that way.
fn dedicated(tools: &Tools, probe: &Path, cpu: usize, quick: bool) -> Result<Measured, BenchError> {
    let mut cmd = tools.dedicated_fifo(cpu);
    cmd.arg(probe).args(probe_args(quick));
    let out = run_with_deadline(&mut cmd, deadline(quick))?;
    rows_of(&crate::probe::parse(&out.stdout)?)
}

/// A busybox bundle holding the probe at /bin/carve-probe, its root writable (the probe
/// creates a file in /tmp), pinned to `cpu`.
pub fn bundle(work: &Path, probe: &Path, cpu: usize, args: &[&str]) -> Result<PathBuf, BenchError> {
    bundle_in(&work.join("bundle"), probe, cpu, args, None)
}

/// [`bundle`] in the folder `b`, with `seccomp` as its `linux.seccomp` when given.
pub fn bundle_in(
    b: &Path,
    probe: &Path,
    cpu: usize,
    args: &[&str],
    seccomp: Option<&serde_json::Value>,
) -> Result<PathBuf, BenchError> {
    let b = b.to_path_buf();
    let rootfs = b.join("rootfs");
    if !rootfs.join("bin/busybox").is_file() {
        let _ = std::fs::remove_dir_all(&b);
        carve_engine::image::busybox_rootfs(
            &rootfs,
            Path::new(carve_engine::image::DEFAULT_BUSYBOX),
        )
        .map_err(|e| BenchError::Tool {
            what: "busybox rootfs".into(),
            detail: e.to_string(),
        })?;
    }
    let dst = rootfs.join("bin/carve-probe");
    std::fs::copy(probe, &dst).map_err(BenchError::io("copy the probe to", &dst))?;
    let mut c = carve_container::config::default_spec_json();
    c["process"]["terminal"] = serde_json::json!(false);
    let mut argv = vec!["/bin/carve-probe"];
    argv.extend_from_slice(args);
    c["process"]["args"] = serde_json::json!(argv);
    c["root"]["readonly"] = serde_json::json!(false);
    c["linux"]["resources"] = serde_json::json!({"cpu": {"cpus": cpu.to_string()}});
    if let Some(sc) = seccomp {
        c["linux"]["seccomp"] = sc.clone();
    }
    c["linux"]["cgroupsPath"] = serde_json::json!(format!(
        "/carve-bench-{}-{}",
        std::process::id(),
        crate::unique()
    ));
    let cfg = b.join("config.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&c).expect("json"))
        .map_err(BenchError::io("write", &cfg))?;
    Ok(b)
}

/// The linux.seccomp object of a variant: docker's default profile for the bundle's bounding
/// set on this kernel, with `SPEC_ALLOW` when asked.
pub fn variant_seccomp(template: &Path, spec_allow: bool) -> Result<serde_json::Value, BenchError> {
    let text = std::fs::read_to_string(template).map_err(BenchError::io("read", template))?;
    let t: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| BenchError::Parse(format!("{}: {e}", template.display())))?;
    let spec = carve_container::config::default_spec_json();
    let caps: Vec<&str> = spec["process"]["capabilities"]["bounding"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .collect();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut p =
        carve_container::seccomp::moby::to_oci(&t, &caps, kernel.trim()).ok_or_else(|| {
            BenchError::Parse(format!(
                "{}: not a docker seccomp template",
                template.display()
            ))
        })?;
    if spec_allow {
        p["flags"] = serde_json::json!(["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]);
    }
    Ok(p)
}

/// The container: `carve-oci run` (or `runc run`) of a busybox bundle with the probe, pinned
/// to `cpu`, with the variant's seccomp filter.
fn container(
    tools: &Tools,
    v: &Variant,
    seccomp_template: &Path,
    probe: &Path,
    work: &Path,
    cpu: usize,
    quick: bool,
) -> Result<Measured, BenchError> {
    let rt = if v.runc {
        crate::on_path("runc").ok_or_else(|| BenchError::Tool {
            what: "runc".into(),
            detail: "not on PATH".into(),
        })?
    } else {
        tools.carve_oci.clone().ok_or_else(|| BenchError::Tool {
            what: "carve-oci".into(),
            detail: "not found beside carve nor on PATH (cargo build --release -p carve-oci)"
                .into(),
        })?
    };
    let seccomp = if v.seccomp {
        Some(variant_seccomp(seccomp_template, v.spec_allow)?)
    } else {
        None
    };
    let dir = match v.tier {
        "container" => work.join("bundle"),
        t => work.join(format!("bundle-{t}")),
    };
    let args = probe_args(quick);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = bundle_in(&dir, probe, cpu, &args, seccomp.as_ref())?;
    let root = work.join(if v.runc { "runc-state" } else { "oci-state" });
    let id = format!("carve-bench-{}-{}", std::process::id(), crate::unique());
    let mut cmd = Command::new(&rt);
    cmd.arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&b)
        .arg(&id);
    let out = run_with_deadline(&mut cmd, deadline(quick));
    // `run` deletes the container when it exits; this only matters after a failure.
    let _ = Command::new(&rt)
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force", &id])
        .output();
    rows_of(&crate::probe::parse(&out?.stdout)?)
}

/// The guest's initramfs plus a second (gzip'd) archive holding the probe: the kernel unpacks
/// both, so /bin/carve-probe exists in the guest.
pub fn initrd_with_probe(
    guest: &carve_vm::assets::GuestAssets,
    probe: &Path,
    work: &Path,
) -> Result<PathBuf, BenchError> {
    let mut cpio = carve_vm::assets::Cpio::default();
    cpio.dir("bin");
    let bin = std::fs::read(probe).map_err(BenchError::io("read", probe))?;
    cpio.file("bin/carve-probe", 0o755, &bin);
    let raw = work.join("probe.cpio");
    std::fs::write(&raw, cpio.finish()).map_err(BenchError::io("write", &raw))?;
    let gz = Command::new("gzip")
        .args(["-c", "-1"])
        .arg(&raw)
        .output()
        .map_err(|e| BenchError::Tool {
            what: "gzip".into(),
            detail: e.to_string(),
        })?;
    let mut data = std::fs::read(&guest.initrd).map_err(BenchError::io("read", &guest.initrd))?;
    data.extend_from_slice(&gz.stdout);
    let out = work.join("initrd-probe.img");
    std::fs::write(&out, data).map_err(BenchError::io("write", &out))?;
    Ok(out)
}

/// The VM: `carve vm run` of the guest kernel with the probe as its command, vCPU on `cpu`.
/// Returns the rows and the accelerator's label.
fn vm(
    tools: &Tools,
    probe: &Path,
    work: &Path,
    cpu: usize,
    quick: bool,
) -> Result<(Measured, String), BenchError> {
    let guest = tools.guest.as_ref().ok_or_else(|| BenchError::Tool {
        what: "guest assets".into(),
        detail: "none prepared: run `carve image guest cache/guest` (or set CARVE_BENCH_GUEST)"
            .into(),
    })?;
    let initrd = initrd_with_probe(guest, probe, work)?;
    let cmdline = format!(
        "quiet carve.cmd=\"/bin/carve-probe {}\"",
        probe_args(quick).join(" ")
    );
    let name = format!("cbov{}{}", std::process::id() % 100_000, crate::unique());
    let mut cmd = Command::new(&tools.carve);
    cmd.args(["vm", "run", "--name", &name, "--kernel"])
        .arg(&guest.kernel)
        .arg("--initrd")
        .arg(&initrd)
        .args([
            "--append",
            &cmdline,
            "--cpus",
            &cpu.to_string(),
            "--memory",
            "256MiB",
        ]);
    let out = run_with_deadline(
        &mut cmd,
        Duration::from_secs(if quick { 600 } else { 3600 }),
    )?;
    let accel = if out.stderr.contains("TCG") || out.stdout.contains("TCG") {
        "TCG"
    } else {
        "KVM"
    };
    Ok((
        rows_of(&crate::probe::parse(&out.stdout)?)?,
        accel.to_string(),
    ))
}

/// Runs the tiers and builds the table.
pub fn run(tools: &Tools, probe: &Path, work: &Path, opts: &Options) -> Result<Table, BenchError> {
    let cpu = match opts.cpu {
        Some(c) => c,
        None => crate::default_cpu()?,
    };
    if opts.rounds == 0 {
        return Err(BenchError::Invalid {
            field: "rounds",
            why: "must be at least 1".into(),
        });
    }
    let load0 = loadavg();
    let (mut results, mut notes) = measure_rounds(tools, probe, work, cpu, opts)?;
    let vm_label = measure_vm(tools, probe, work, cpu, opts, &mut results, &mut notes);
    let tiers = tier_infos(opts, vm_label, &results, &notes, cpu);
    let rows = assemble(&results);
    let targets = targets(opts, &rows);
    Ok(Table {
        cpu,
        quick: opts.quick,
        rounds: opts.rounds,
        tiers,
        rows,
        targets,
        loadavg: (load0, loadavg()),
    })
}

/// Measurements per tier, and why a tier has none (its first error ends its rounds).
type Measurements = (
    BTreeMap<&'static str, Vec<Measured>>,
    BTreeMap<&'static str, String>,
);

/// The rounds of native, container variants and dedicated, alternating so load drifts hit all.
fn measure_rounds(
    tools: &Tools,
    probe: &Path,
    work: &Path,
    cpu: usize,
    opts: &Options,
) -> Result<Measurements, BenchError> {
    let mut results: BTreeMap<&str, Vec<Measured>> = BTreeMap::new();
    let mut notes: BTreeMap<&str, String> = BTreeMap::new();
    for _ in 0..opts.rounds {
        results
            .entry("native")
            .or_default()
            .push(native(probe, cpu, opts.quick)?);
        for v in variants(opts) {
            if notes.contains_key(v.tier) {
                continue;
            }
            match container(
                tools,
                v,
                &opts.seccomp_template,
                probe,
                work,
                cpu,
                opts.quick,
            ) {
                Ok(m) => results.entry(v.tier).or_default().push(m),
                Err(e) => {
                    notes.insert(v.tier, e.to_string());
                }
            }
        }
        if opts.dedicated && !notes.contains_key("dedicated") {
            match dedicated(tools, probe, cpu, opts.quick) {
                Ok(m) => results.entry("dedicated").or_default().push(m),
                Err(e) => {
                    notes.insert("dedicated", e.to_string());
                }
            }
        }
        if opts.container_variants {
            results
                .entry(NATIVE_AGAIN)
                .or_default()
                .push(native(probe, cpu, opts.quick)?);
        }
    }
    Ok((results, notes))
}

/// The VM column (one round: a guest boot is slow), and its label naming the accelerator.
fn measure_vm(
    tools: &Tools,
    probe: &Path,
    work: &Path,
    cpu: usize,
    opts: &Options,
    results: &mut BTreeMap<&'static str, Vec<Measured>>,
    notes: &mut BTreeMap<&'static str, String>,
) -> String {
    let mut vm_label = "VM".to_string();
    if !opts.vm {
        return vm_label;
    }
    match vm(tools, probe, work, cpu, opts.quick) {
        Ok((m, accel)) => {
            vm_label = format!("VM ({accel})");
            notes.insert(
                "vm",
                if accel == "TCG" {
                    "TCG: every guest instruction is translated by QEMU, so this column is the \
                     emulator's cost, not virtualization's (KVM is not usable on this host)"
                        .into()
                } else {
                    "KVM: hardware-assisted virtualization".into()
                },
            );
            results.insert("vm", vec![m]);
        }
        Err(e) => {
            notes.insert("vm", e.to_string());
        }
    }
    vm_label
}

/// The columns `opts` asked for, in order, each with its label and note.
fn tier_infos(
    opts: &Options,
    vm_label: String,
    results: &BTreeMap<&str, Vec<Measured>>,
    notes: &BTreeMap<&str, String>,
    cpu: usize,
) -> Vec<TierInfo> {
    let mut tier_list = vec![("native", "native".to_string(), true)];
    tier_list.extend(variants(opts).map(|v| (v.tier, v.label.to_string(), true)));
    tier_list.push((
        NATIVE_AGAIN,
        "native again (A/A)".to_string(),
        opts.container_variants,
    ));
    tier_list.push((
        "dedicated",
        "dedicated core (FIFO 99)".to_string(),
        opts.dedicated,
    ));
    tier_list.push(("vm", vm_label, opts.vm));
    tier_list
        .iter()
        .filter(|t| t.2)
        .map(|(t, label, _)| TierInfo {
            tier: t.to_string(),
            label: label.clone(),
            measured: results.contains_key(t),
            note: notes.get(t).cloned().unwrap_or_else(|| {
                format!(
                    "{} round(s) on CPU {cpu}",
                    results.get(t).map_or(0, |r| r.len())
                )
            }),
        })
        .collect()
}

/// Every container column checked against the seed's targets.
fn targets(opts: &Options, rows: &[Row]) -> Vec<Target> {
    variants(opts)
        .flat_map(|v| CONTAINER_TARGETS.iter().map(move |t| (v.tier, t)))
        .filter_map(|(tier, &(row, limit))| {
            let r = rows.iter().find(|r| r.name == row)?;
            let c = r.cells.get(tier)?;
            Some(Target {
                row: row.to_string(),
                tier: tier.into(),
                limit,
                ratio: c.ratio,
                met: c.ratio <= limit,
            })
        })
        .collect()
}

/// The container variants `opts` asks for, in column order.
fn variants(opts: &Options) -> impl Iterator<Item = &'static Variant> {
    let n = match (opts.container, opts.container_variants) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => VARIANTS.len(),
    };
    VARIANTS.iter().take(n)
}

/// Rows from each tier's rounds: median over rounds, ratio to native.
fn assemble(results: &BTreeMap<&str, Vec<Measured>>) -> Vec<Row> {
    let Some(native) = results.get("native").and_then(|r| r.first()) else {
        return Vec::new();
    };
    native
        .iter()
        .enumerate()
        .map(|(i, (name, unit, seed, _))| {
            let of = |tier: &str| -> Option<Vec<f64>> {
                let v: Vec<f64> = results
                    .get(tier)?
                    .iter()
                    .filter_map(|m| m.get(i).filter(|r| &r.0 == name).map(|r| r.3))
                    .collect();
                (!v.is_empty()).then_some(v)
            };
            let base = median(&of("native").unwrap_or_default());
            let cells = results
                .keys()
                .filter_map(|t| {
                    let v = of(t)?;
                    let m = median(&v);
                    Some((
                        t.to_string(),
                        Cell {
                            median: m,
                            ratio: if base > 0.0 { m / base } else { 0.0 },
                            rounds: v,
                        },
                    ))
                })
                .collect();
            Row {
                name: name.clone(),
                unit: unit.clone(),
                cells,
                seed: seed_ref(seed),
            }
        })
        .collect()
}

/// The table as text.
pub fn render(t: &Table) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "carve bench overhead: CPU {}, median of {} batches of ~{} µs per row, {} round(s); load average {:.1} -> {:.1}",
        t.cpu,
        if t.quick { BATCHES.1 } else { BATCHES.0 },
        BATCH_US,
        t.rounds,
        t.loadavg.0,
        t.loadavg.1
    );
    let measured: Vec<&TierInfo> = t.tiers.iter().filter(|x| x.measured).collect();
    let width = |x: &TierInfo| (x.label.chars().count() + 2).max(13);
    let _ = write!(s, "{:<28} {:>18}", "row", "native");
    for x in measured.iter().skip(1) {
        let _ = write!(s, " {:>w$}", format!("{} ×", x.label), w = width(x));
    }
    let _ = writeln!(s, "   seed 004 virt ÷ native (Xeon, Bochs)");
    for r in &t.rows {
        let n = r.cells.get("native").map_or(0.0, |c| c.median);
        let _ = write!(
            s,
            "{:<28} {:>18}",
            r.name,
            format!("{}/{}", fmt_num(n), r.unit.trim_start_matches("ns/"))
        );
        for x in measured.iter().skip(1) {
            let cell = r.cells.get(&x.tier).map(|c| format!("{:.3}", c.ratio));
            let _ = write!(s, " {:>w$}", cell.as_deref().unwrap_or("-"), w = width(x));
        }
        match &r.seed {
            Some(sr) => {
                let _ = writeln!(
                    s,
                    "   {}: {:.2}×, {:.2}×",
                    sr.column, sr.xeon_ratio, sr.bochs_ratio
                );
            }
            None => {
                let _ = writeln!(s);
            }
        }
    }
    let _ = writeln!(s, "(native column: ns per unit named; other columns: tier ÷ native, lower is better; seed 004's `rand` row has no counterpart here)");
    if t.tiers.iter().any(|x| x.tier == "container-seccomp") {
        let _ = writeln!(s, "(container variants: one bundle, runc's default spec, no seccomp filter; +seccomp: docker's default profile; +SPEC_ALLOW: that profile with SECCOMP_FILTER_FLAG_SPEC_ALLOW)");
    }
    for x in &t.tiers {
        let _ = writeln!(s, "{}: {}", x.label, x.note);
    }
    for g in &t.targets {
        let _ = writeln!(
            s,
            "target {} {} ≤ {:.2}×: {:.3}× {}",
            g.tier,
            g.row,
            g.limit,
            g.ratio,
            if g.met { "met" } else { "NOT met" }
        );
    }
    s
}

/// A number of ns with a unit prefix: 132 ns, 1.45 µs, 22.1 ms.
pub fn fmt_num(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ratios_and_assembly() {
        let s = seed_ref("syscall").unwrap();
        assert!((s.xeon_ratio - 2640.0 / 490.0).abs() < 1e-9);
        assert!(seed_ref("").is_none());
        let m = |v: f64| {
            vec![(
                "getppid".to_string(),
                "ns/call".to_string(),
                "syscall".to_string(),
                v,
            )]
        };
        let mut r = BTreeMap::new();
        r.insert("native", vec![m(100.0), m(110.0), m(90.0)]);
        r.insert("container", vec![m(101.0)]);
        let rows = assemble(&r);
        assert_eq!(rows[0].cells["native"].median, 100.0);
        assert!((rows[0].cells["container"].ratio - 1.01).abs() < 1e-9);
        assert_eq!(fmt_num(1450.0), "1.45 µs");
    }

    #[test]
    fn container_variants_are_columns_in_order() {
        let tiers = |o: &Options| variants(o).map(|v| v.tier).collect::<Vec<_>>();
        let all = Options {
            container_variants: true,
            ..Default::default()
        };
        assert_eq!(
            tiers(&all),
            [
                "container",
                "container-seccomp",
                "container-spec-allow",
                "runc",
                "runc-seccomp"
            ]
        );
        assert_eq!(tiers(&Options::default()), ["container"]);
        let none = Options {
            container: false,
            ..all
        };
        assert!(tiers(&none).is_empty());
    }

    #[test]
    fn the_variants_bring_a_native_again_column_after_the_containers() {
        let cols = |o: &Options| {
            tier_infos(o, "VM".into(), &BTreeMap::new(), &BTreeMap::new(), 1)
                .into_iter()
                .map(|t| t.tier)
                .collect::<Vec<_>>()
        };
        let all = Options {
            container_variants: true,
            dedicated: false,
            vm: false,
            ..Default::default()
        };
        assert_eq!(
            cols(&all),
            [
                "native",
                "container",
                "container-seccomp",
                "container-spec-allow",
                "runc",
                "runc-seccomp",
                NATIVE_AGAIN
            ]
        );
        let plain = Options {
            container_variants: false,
            ..all
        };
        assert_eq!(cols(&plain), ["native", "container"]);
    }

    #[test]
    fn variant_profile_comes_from_the_template_for_the_bundle_caps() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("seccomp.json");
        std::fs::write(
            &t,
            serde_json::json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}],
                "syscalls": [
                    {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_KILL"]}},
                    {"names": ["chroot"], "action": "SCMP_ACT_ALLOW",
                     "includes": {"caps": ["CAP_SYS_CHROOT"]}}
                ]
            })
            .to_string(),
        )
        .unwrap();
        let p = variant_seccomp(&t, false).unwrap();
        // The default spec's bounding set has CAP_KILL, not CAP_SYS_CHROOT.
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 2, "{p}");
        assert!(p.get("flags").is_none());
        let p = variant_seccomp(&t, true).unwrap();
        assert_eq!(
            p["flags"],
            serde_json::json!(["SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
        );
        assert!(variant_seccomp(&dir.path().join("none.json"), false).is_err());
    }
}
