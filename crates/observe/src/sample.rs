//! The sampler: once per interval, on the housekeeping side, it reads the plan's state and the
//! kernel's counters, probes the dedicated cores, and turns the differences into an
//! [`Overview`] and [`ApiEvent`]s.

use crate::model::*;
use crate::probe;
use crate::procfs::{self, CpuTimes, IrqLine};
use carve_dedicated::noise::JoinError;
use carve_engine::cgroup::{controller_dir, hierarchies, usage, Hierarchy};
use carve_engine::spec::PlanSpec;
use carve_engine::state::{Desired, PartState, PartitionState, PlanDir};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Stolen-ratio history kept per dedicated core: one hour at one sample per second.
pub const HISTORY: usize = 3600;

/// CPU and memory history kept per partition: two minutes at one sample per second.
pub const PART_HISTORY: usize = 120;

/// A gap this long in a probe window is reported as a noise spike.
pub const SPIKE: Duration = Duration::from_micros(500);

/// Places a probe thread (partition, tid, cpu) on a dedicated core.
pub type JoinHook = Arc<dyn Fn(&str, i32, usize) -> Result<(), JoinError> + Send + Sync>;

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[derive(Default)]
struct ProbeTotals {
    interruptions: u64,
    seconds: f64,
    max_gap: f64,
    recent: VecDeque<probe::Window>,
}

/// Probe windows the reported figures span: one window holds one or two ticks, so a single
/// window's share swings between 0 and several %; ten (40 ms of probing over 10 s) settle it.
pub const PROBE_SPAN: usize = 10;

/// Keeps the previous readings so each sample is a difference.
pub struct Sampler {
    dir: PlanDir,
    plan: PlanSpec,
    hs: Vec<Hierarchy>,
    join: Option<JoinHook>,
    /// Probe dedicated cores (off in tests that must not touch the host's cores).
    pub probe: bool,
    last: Option<Instant>,
    stat: BTreeMap<usize, CpuTimes>,
    irqs: Vec<IrqLine>,
    parts: HashMap<String, PartitionState>,
    cpu_ns: HashMap<String, u64>,
    oom: HashMap<String, u64>,
    probes: BTreeMap<usize, ProbeTotals>,
    history: BTreeMap<usize, VecDeque<f64>>,
    irq_seen: HashMap<(usize, String), Instant>,
    vcpus: HashMap<String, (i32, VcpuThreads)>,
    part_history: HashMap<String, (VecDeque<f64>, VecDeque<u64>)>,
}

impl Sampler {
    /// A sampler for the plan in `dir`; `join` places probe threads (the supervisor passes its
    /// dedicated tier's; without it they join the partition's cpuset through its tasks file).
    pub fn new(dir: PlanDir, plan: PlanSpec, join: Option<JoinHook>) -> Self {
        Sampler {
            dir,
            plan,
            hs: hierarchies(),
            join,
            probe: true,
            last: None,
            stat: BTreeMap::new(),
            irqs: Vec::new(),
            parts: HashMap::new(),
            cpu_ns: HashMap::new(),
            oom: HashMap::new(),
            probes: BTreeMap::new(),
            history: BTreeMap::new(),
            irq_seen: HashMap::new(),
            vcpus: HashMap::new(),
            part_history: HashMap::new(),
        }
    }

    /// Takes one sample.
    pub fn sample(&mut self) -> (Overview, Vec<ApiEvent>) {
        let t = Instant::now();
        let dt = self.last.map(|l| (t - l).as_secs_f64()).unwrap_or(0.0);
        self.last = Some(t);
        let mut events = Vec::new();
        let state = self.dir.read_state().ok();
        let parts: Vec<PartitionState> = state
            .as_ref()
            .map(|s| s.partitions.clone())
            .unwrap_or_default();
        let mut ov = Overview {
            plan: self.plan.name.clone(),
            holder: state.as_ref().map(|s| s.holder).unwrap_or(0),
            time: now(),
            interval_seconds: dt,
            ..Overview::default()
        };
        ov.partitions = parts
            .iter()
            .map(|p| self.partition(p, dt, &mut events))
            .collect();
        ov.cores = self.cores(&parts, dt, &mut events);
        ov.vms = parts
            .iter()
            .filter(|p| p.kind == "vm" && p.state == PartState::Running)
            .map(|p| self.vm(p))
            .collect();
        ov.links = self.links();
        (ov, events)
    }

    fn event(&self, kind: &str, partition: Option<&str>, detail: String) -> ApiEvent {
        tracing::info!(kind, partition, detail, "event");
        ApiEvent {
            time: now(),
            kind: kind.into(),
            partition: partition.map(String::from),
            detail,
        }
    }

    fn partition(&mut self, p: &PartitionState, dt: f64, events: &mut Vec<ApiEvent>) -> PartView {
        let running = p.state == PartState::Running;
        let mut v = PartView {
            name: p.name.clone(),
            kind: p.kind.clone(),
            cpus: p.cpus.to_string(),
            state: p.state.to_string(),
            desired: match p.desired {
                Desired::Running => "running".into(),
                Desired::Stopped => "stopped".into(),
            },
            pid: p.pid,
            restarts: p.restarts,
            last_exit: p.last_exit.clone(),
            memory_limit_bytes: p.memory,
            ..PartView::default()
        };
        if let Some(prev) = self.parts.get(&p.name) {
            events.extend(self.transition(prev, p));
        }
        self.parts.insert(p.name.clone(), p.clone());
        let mut cpu_ns = None;
        if running {
            if p.kind == "dedicated" {
                cpu_ns = p.pid.and_then(procfs::process_schedstat).map(|s| s.0);
            } else if let Some(cg) = &p.cgroup {
                let u = usage(&self.hs, cg);
                cpu_ns = u.cpu_ns;
                v.memory_bytes = u.memory;
                if let Some(l) = u.memory_limit {
                    v.memory_limit_bytes = l;
                }
                let oom =
                    controller_dir(&self.hs, "memory", cg).and_then(|d| procfs::oom_kills(&d));
                if let (Some(now), Some(before)) = (oom, self.oom.get(&p.name)) {
                    if now > *before {
                        events.push(self.event(
                            "oom_killed",
                            Some(&p.name),
                            format!("{} process(es) killed by the OOM killer", now - before),
                        ));
                    }
                }
                if let Some(n) = oom {
                    self.oom.insert(p.name.clone(), n);
                }
                v.oom_kills_total = oom;
            }
        }
        v.cpu_seconds_total = cpu_ns.map(|n| n as f64 / 1e9);
        if let (Some(a), Some(b)) = (cpu_ns, self.cpu_ns.get(&p.name)) {
            if dt > 0.0 && a >= *b {
                let r = (a - b) as f64 / 1e9 / dt;
                v.cpu_ratio = Some(r);
                if p.kind == "dedicated" {
                    let cores = p.cpus.len().max(1) as f64;
                    v.offcpu_ratio = Some((1.0 - r / cores).clamp(0.0, 1.0));
                }
            }
        }
        match cpu_ns {
            Some(n) => self.cpu_ns.insert(p.name.clone(), n),
            None => self.cpu_ns.remove(&p.name),
        };
        let (cpu, mem) = self.part_history.entry(p.name.clone()).or_default();
        cpu.push_back(v.cpu_ratio.unwrap_or(0.0));
        mem.push_back(v.memory_bytes.unwrap_or(0));
        while cpu.len() > PART_HISTORY {
            cpu.pop_front();
            mem.pop_front();
        }
        v.cpu_history = cpu.iter().copied().collect();
        v.memory_history = mem.iter().copied().collect();
        v
    }

    fn transition(&self, prev: &PartitionState, p: &PartitionState) -> Vec<ApiEvent> {
        let name = Some(p.name.as_str());
        let mut out = Vec::new();
        let exit = p.last_exit.clone().unwrap_or_default();
        let was_down = matches!(prev.state, PartState::Stopped | PartState::Exited);
        if p.state == PartState::Running && was_down {
            out.push(self.event("started", name, format!("pid {:?}", p.pid)));
        } else if p.restarts > prev.restarts {
            out.push(self.event(
                "restarted",
                name,
                format!("restart {} (pid {:?})", p.restarts, p.pid),
            ));
        } else if p.state != prev.state {
            match p.state {
                PartState::Running => {
                    out.push(self.event("started", name, format!("pid {:?}", p.pid)))
                }
                PartState::Stopped => out.push(self.event("stopped", name, exit)),
                PartState::Exited | PartState::Restarting => {
                    out.push(self.event("exited", name, exit))
                }
                PartState::Pending => {}
            }
        }
        out
    }

    fn cores(
        &mut self,
        parts: &[PartitionState],
        dt: f64,
        events: &mut Vec<ApiEvent>,
    ) -> Vec<CoreView> {
        let stat = procfs::parse_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
        let irqs = procfs::parse_interrupts(
            &std::fs::read_to_string("/proc/interrupts").unwrap_or_default(),
        );
        let mut cores = Vec::new();
        let dedicated: BTreeMap<usize, &PartitionState> = parts
            .iter()
            .filter(|p| p.kind == "dedicated")
            .flat_map(|p| p.cpus.iter().map(move |c| (c, p)))
            .collect();
        let windows = self.probe_windows(&dedicated);
        for (&cpu, now) in &stat {
            let mut c = CoreView {
                cpu,
                owners: parts
                    .iter()
                    .filter(|p| p.cpus.contains(cpu))
                    .map(|p| p.name.clone())
                    .collect(),
                dedicated: dedicated.contains_key(&cpu),
                ..CoreView::default()
            };
            if let Some(before) = self.stat.get(&cpu) {
                let total = now.total().saturating_sub(before.total()).max(1) as f64;
                let idle = now.idle.saturating_sub(before.idle) as f64;
                c.busy_ratio = (1.0 - idle / total).clamp(0.0, 1.0);
                c.steal_ratio =
                    (now.steal.saturating_sub(before.steal) as f64 / total).clamp(0.0, 1.0);
            }
            let owner = dedicated.get(&cpu).map(|p| p.name.as_str());
            let sum = self.irq_counts(&mut c, &irqs, owner, events);
            c.irqs.sort_by_key(|i| std::cmp::Reverse(i.count));
            if dt > 0.0 {
                c.irqs_per_second = sum as f64 / dt;
            }
            if let Some(w) = windows.iter().find(|w| w.cpu == cpu) {
                self.probe_window(&mut c, w, owner, events);
            }
            if let Some(h) = self.history.get(&cpu) {
                c.stolen_history = h.iter().copied().collect();
            }
            cores.push(c);
        }
        self.stat = stat;
        self.irqs = irqs;
        cores
    }

    /// The IRQ counts of core `c` (since boot, and since the last sample), with an
    /// `irq_on_dedicated` event for a device IRQ on a dedicated core; returns how many fired
    /// since the last sample.
    fn irq_counts(
        &mut self,
        c: &mut CoreView,
        irqs: &[IrqLine],
        owner: Option<&str>,
        events: &mut Vec<ApiEvent>,
    ) -> u64 {
        let cpu = c.cpu;
        let mut sum = 0;
        for line in irqs {
            let n = line.per_cpu.get(cpu).copied().unwrap_or(0);
            c.irqs_total.push(IrqCount {
                irq: line.label(),
                count: n,
            });
            let before = self
                .irqs
                .iter()
                .find(|l| l.irq == line.irq)
                .and_then(|l| l.per_cpu.get(cpu).copied());
            let Some(before) = before else { continue };
            let d = n.saturating_sub(before);
            if d == 0 {
                continue;
            }
            sum += d;
            c.irqs.push(IrqCount {
                irq: line.label(),
                count: d,
            });
            if c.dedicated && line.is_device() {
                let key = (cpu, line.irq.clone());
                // One event per IRQ and core per minute: a storm is one line, not thousands.
                if self
                    .irq_seen
                    .get(&key)
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    self.irq_seen.insert(key, Instant::now());
                    events.push(self.event(
                        "irq_on_dedicated",
                        owner,
                        format!(
                            "IRQ {} fired {d} time(s) on dedicated core {cpu}",
                            line.label()
                        ),
                    ));
                }
            }
        }
        sum
    }

    /// Adds the noise probe's window `w` to core `c`'s totals and recent history, with a
    /// `noise_spike` event for a long gap.
    fn probe_window(
        &mut self,
        c: &mut CoreView,
        w: &probe::Window,
        owner: Option<&str>,
        events: &mut Vec<ApiEvent>,
    ) {
        let cpu = c.cpu;
        let t = self.probes.entry(cpu).or_default();
        t.interruptions += w.interruptions;
        t.seconds += w.seconds;
        t.max_gap = t.max_gap.max(w.longest_gap_seconds);
        t.recent.push_back(*w);
        while t.recent.len() > PROBE_SPAN {
            t.recent.pop_front();
        }
        let secs: f64 = t.recent.iter().map(|w| w.seconds).sum::<f64>().max(1e-9);
        let stolen: f64 = t
            .recent
            .iter()
            .map(|w| w.stolen_ratio * w.seconds)
            .sum::<f64>()
            / secs;
        let n: u64 = t.recent.iter().map(|w| w.interruptions).sum();
        let longest = t
            .recent
            .iter()
            .map(|w| w.longest_gap_seconds)
            .fold(0.0, f64::max);
        c.probe = Some(ProbeView {
            stolen_ratio: stolen,
            interruptions_per_second: n as f64 / secs,
            longest_gap_seconds: longest,
            max_gap_seconds: t.max_gap,
            interruptions_total: t.interruptions,
            window_seconds_total: t.seconds,
            cpu_seconds_total: t.seconds,
        });
        let h = self.history.entry(cpu).or_default();
        h.push_back(stolen);
        while h.len() > HISTORY {
            h.pop_front();
        }
        if w.longest_gap_seconds >= SPIKE.as_secs_f64() {
            events.push(self.event(
                "noise_spike",
                owner,
                format!(
                    "core {cpu} was taken for {:.0} µs",
                    w.longest_gap_seconds * 1e6
                ),
            ));
        }
    }

    fn probe_windows(&self, dedicated: &BTreeMap<usize, &PartitionState>) -> Vec<probe::Window> {
        let cpus: carve_core::CpuSet = dedicated
            .iter()
            .filter(|(_, p)| p.state == PartState::Running)
            .map(|(c, _)| *c)
            .collect();
        if !self.probe || cpus.is_empty() {
            return Vec::new();
        }
        let owner: HashMap<usize, (String, Option<String>)> = dedicated
            .iter()
            .map(|(c, p)| (*c, (p.name.clone(), p.cgroup.clone())))
            .collect();
        let hs = &self.hs;
        let join = |tid: i32, cpu: usize| -> Result<(), JoinError> {
            let (name, cg) = owner.get(&cpu).ok_or("no owner")?;
            match &self.join {
                Some(j) => j(name, tid, cpu),
                None => {
                    if let Some(d) = cg.as_ref().and_then(|c| controller_dir(hs, "cpuset", c)) {
                        std::fs::write(d.join("tasks"), tid.to_string())
                            .map_err(|e| format!("{}: {e}", d.display()))?;
                    }
                    Ok(carve_dedicated::sys::set_affinity(
                        tid,
                        &[cpu].into_iter().collect(),
                    )?)
                }
            }
        };
        match probe::probe(&cpus, probe::WINDOW, &join) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "noise probe failed");
                Vec::new()
            }
        }
    }

    fn vm(&mut self, p: &PartitionState) -> VmView {
        let mut v = VmView {
            partition: p.name.clone(),
            ..VmView::default()
        };
        let pid = p.pid.unwrap_or(0);
        match qmp(
            &p.id,
            self.vcpus.get(&p.name).filter(|c| c.0 == pid).is_none(),
        ) {
            Ok((status, cpus)) => {
                v.status = status;
                if let Some(c) = cpus {
                    self.vcpus.insert(p.name.clone(), (pid, c));
                }
            }
            Err(e) => v.status = format!("unknown: {e}"),
        }
        if let Some((_, cpus)) = self.vcpus.get(&p.name) {
            for &(index, tid) in cpus {
                let (run, wait) = procfs::thread_schedstat(pid, tid).unwrap_or((0, 0));
                v.vcpus.push(VcpuView {
                    index,
                    tid,
                    run_seconds_total: run as f64 / 1e9,
                    wait_seconds_total: wait as f64 / 1e9,
                });
            }
        }
        v
    }

    fn links(&self) -> Vec<LinkView> {
        let mut namespaces: Vec<Option<String>> = self
            .plan
            .networks
            .iter()
            .map(|n| n.namespace.clone())
            .collect();
        namespaces.dedup();
        let bridges: Vec<&str> = self.plan.networks.iter().map(|n| n.name.as_str()).collect();
        let mut out = Vec::new();
        for ns in namespaces {
            let text = match &ns {
                None => std::fs::read_to_string("/proc/net/dev").ok(),
                Some(n) => net_dev_in(n),
            };
            for c in procfs::parse_net_dev(&text.unwrap_or_default()) {
                // The bridges, and the links carve made on them: container veths (cv...) and
                // VM taps (ct...), never the namespace's loopback or the host's own NICs.
                let ours = bridges.contains(&c.name.as_str()) || (ns.is_some() && c.name != "lo");
                if ours {
                    out.push(LinkView {
                        netns: ns.clone().unwrap_or_default(),
                        counters: c,
                    });
                }
            }
        }
        out
    }
}

/// /proc/net/dev as seen from inside named network namespace `ns`: a short-lived thread joins
/// it (setns affects only the calling thread) and reads its own view.
fn net_dev_in(ns: &str) -> Option<String> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path).ok()?;
            // SAFETY: setns on a valid fd for a network namespace; it changes only this thread,
            // which ends right after reading.
            let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
            if r != 0 {
                return None;
            }
            std::fs::read_to_string("/proc/thread-self/net/dev").ok()
        })
        .join()
        .ok()
        .flatten()
    })
}

/// Why a VM's QMP status could not be read.
#[derive(Debug, thiserror::Error)]
enum QmpFailure {
    /// Its QMP socket did not answer.
    #[error("{}: {source}", path.display())]
    Connect {
        /// The socket.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] carve_vm::qmp::QmpError),
}

/// (vCPU index, host thread id) of each vCPU.
type VcpuThreads = Vec<(usize, i32)>;

/// QMP status of VM `id`, and its vCPU threads when `want_cpus`. The connection waits at most
/// half a second for QEMU (it serves one QMP client at a time).
fn qmp(id: &str, want_cpus: bool) -> Result<(String, Option<VcpuThreads>), QmpFailure> {
    use carve_vm::qmp::{Qmp, QmpClient};
    let path = carve_vm::Context::default().paths(id).qmp();
    let s =
        std::os::unix::net::UnixStream::connect(&path).map_err(|source| QmpFailure::Connect {
            path: path.clone(),
            source,
        })?;
    let t = Duration::from_millis(500);
    let _ = s.set_read_timeout(Some(t));
    let mut c = QmpClient::handshake(s, t)?;
    let status = c.query_status()?.status;
    let cpus = if want_cpus {
        Some(
            c.query_cpus_fast()?
                .into_iter()
                .map(|c| (c.cpu_index, c.thread_id))
                .collect(),
        )
    } else {
        None
    };
    Ok((status, cpus))
}
