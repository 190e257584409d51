//! `carve run --dedicated CPUS [--sched fifo:80] [--hugepages 2MiB:32] [--irq N] -- CMD...`: one
//! command on dedicated cores; the host is restored when it exits or carve gets SIGINT/SIGTERM.

use anyhow::Context;
use carve_core::CpuSet;
use carve_dedicated::supervise::TermSignals;
use carve_dedicated::{DedicatedSpec, Partition};
use std::time::Duration;

/// Arguments of `carve run`.
#[derive(clap::Args)]
pub struct Args {
    /// The dedicated cores (a CPU list: "1", "2-3").
    #[arg(long, value_name = "CPUS", required = true)]
    pub dedicated: String,
    /// The cores left to Linux (default: every other online core).
    #[arg(long, value_name = "CPUS")]
    pub housekeeping: Option<String>,
    /// Scheduling policy: other, fifo:PRIO, rr:PRIO, deadline:RUNTIME/PERIOD (e.g. 200us/1ms).
    #[arg(long, default_value = "other")]
    pub sched: String,
    /// Huge pages to reserve and mount for the command: SIZE:COUNT[@NODE], e.g. 2MiB:32.
    #[arg(long = "hugepages", value_name = "SIZE:COUNT")]
    pub hugepages: Vec<String>,
    /// An IRQ to route to the dedicated cores (every other IRQ goes to housekeeping).
    #[arg(long = "irq", value_name = "N")]
    pub irqs: Vec<u32>,
    /// A resource limit: NAME=SOFT[:HARD], e.g. nofile=1024:4096, memlock=unlimited.
    #[arg(long = "rlimit", value_name = "NAME=LIMIT")]
    pub rlimits: Vec<String>,
    /// An environment variable for the command: KEY=VALUE.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Hold /dev/cpu_dma_latency at 0 while the command runs (no deep C-states).
    #[arg(long)]
    pub dma_latency: bool,
    /// Do not lock the command's memory (mlockall is on by default).
    #[arg(long)]
    pub no_mlock: bool,
    /// The partition's name (default: run-PID).
    #[arg(long)]
    pub name: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn spec_of(a: &Args) -> anyhow::Result<DedicatedSpec> {
    let online = carve_dedicated::sys::online_cpus("/sys".as_ref())
        .context("cannot read the online CPUs")?;
    let cpus = CpuSet::parse_list(&a.dedicated)?;
    let name = a
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", std::process::id()));
    let mut spec = DedicatedSpec::new(&name, cpus, &online);
    if let Some(hk) = &a.housekeeping {
        spec.housekeeping = CpuSet::parse_list(hk)?;
    }
    spec.sched = a.sched.parse()?;
    for h in &a.hugepages {
        spec.hugepages.push(h.parse()?);
    }
    spec.irqs = a.irqs.clone();
    for r in &a.rlimits {
        spec.rlimits.push(r.parse()?);
    }
    for e in &a.env {
        let (k, v) = e
            .split_once('=')
            .with_context(|| format!("--env {e:?}: expected KEY=VALUE"))?;
        spec.env.push((k.into(), v.into()));
    }
    spec.dma_latency = a.dma_latency;
    spec.mlock = !a.no_mlock;
    spec.command = a.command.clone();
    Ok(spec)
}

/// Prints what setup did, on stderr (stdout belongs to the command).
pub fn print_setup(r: &carve_dedicated::SetupReport) {
    eprintln!(
        "carve: dedicated CPUs {} (housekeeping {}), cpuset {}",
        r.cpus, r.housekeeping, r.cpuset
    );
    for (d, old, new) in &r.cpusets_adjusted {
        eprintln!("carve: cpuset {} narrowed from {old} to {new}", d.display());
    }
    eprintln!(
        "carve: moved {} tasks, {} IRQs, workqueues and block completions ({} files) to housekeeping{}",
        r.tasks_moved,
        r.irqs.moved.len(),
        r.workqueues.len(),
        if r.irqs.to_partition.is_empty() {
            String::new()
        } else {
            format!(
                "; IRQs {:?} routed to the dedicated cores",
                r.irqs.to_partition
            )
        }
    );
    for (n, names, cpus, why) in &r.irqs.fixed {
        eprintln!("carve: IRQ {n} ({names}) stays on CPUs {cpus}: kernel-managed or fixed ({why})");
    }
    if !r.immovable.is_empty() {
        let names: Vec<&str> = r.immovable.iter().map(|t| t.comm.as_str()).collect();
        eprintln!(
            "carve: per-CPU kernel threads that stay on the cores: {}",
            names.join(" ")
        );
    }
    for g in &r.hugepages {
        eprintln!(
            "carve: huge pages {} reserved, mounted at {}",
            g.spec,
            g.mount.display()
        );
    }
    if r.dma_latency {
        eprintln!("carve: /dev/cpu_dma_latency held at 0");
    }
    for l in &r.reboot.lines {
        eprintln!("carve: {l}");
    }
}

/// Runs `carve run`.
pub fn run(a: Args) -> anyhow::Result<()> {
    // First, before any thread exists: the signals are then only ever received by the signal
    // thread, and the host is restored in ordinary code.
    let signals = TermSignals::block(Duration::from_secs(5));
    let spec = match spec_of(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("carve run: {}", super::report(&e));
            return Err(super::Exit(super::EXIT_INVALID).into());
        }
    };
    let mut active = match Partition::new(spec).setup() {
        Ok(p) => p,
        Err(e @ carve_dedicated::Error::Refused(_)) => {
            eprintln!("carve run: {e}");
            return Err(super::Exit(super::EXIT_INVALID).into());
        }
        Err(e) => return Err(e.into()),
    };
    print_setup(active.report());
    if let Some(j) = active.journal_path() {
        eprintln!(
            "carve: journal {} (if carve is killed: carve restore)",
            j.display()
        );
    }
    let status = match active.launch() {
        Ok(mut child) => {
            signals.forward_to(child.id() as i32);
            let st = child.wait();
            signals.forward_to(0);
            Some(st)
        }
        Err(e) => {
            eprintln!("carve run: {e}");
            None
        }
    };
    let torn = active.teardown();
    if let Ok(t) = &torn {
        for w in &t.warnings {
            eprintln!("carve: warning: {w}");
        }
    }
    match &torn {
        Ok(t) => eprintln!(
            "carve: host restored ({} changes undone; {} tasks that landed on the cores were moved during the run)",
            t.changes_undone, t.tasks_moved_later
        ),
        Err(e) => eprintln!("carve: restoring the host failed: {e} (see carve restore)"),
    }
    let code: u8 = match status {
        None => super::EXIT_ERROR,
        Some(Err(e)) => {
            eprintln!("carve run: waiting for the command: {e}");
            super::EXIT_ERROR
        }
        Some(Ok(st)) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(c), _) => c as u8,
                (None, Some(s)) => 128u8.wrapping_add(s as u8),
                _ => super::EXIT_ERROR,
            }
        }
    };
    if torn.is_err() && code == 0 {
        return Err(super::Exit(super::EXIT_ERROR).into());
    }
    if code != 0 {
        return Err(super::Exit(code).into());
    }
    Ok(())
}
