//! `carve run --dedicated CPUS [--sched fifo:80] [--hugepages 2MiB:32] [--irq N] -- CMD...`: one
//! command on dedicated cores; the host is restored when it exits or carve gets SIGINT/SIGTERM.

use carve_engine::oneshot::run::{
    run_dedicated, Ended, RunError, RunEvent, RunRequest, SetupReport,
};

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

fn request_of(a: Args) -> RunRequest {
    RunRequest {
        dedicated: a.dedicated,
        housekeeping: a.housekeeping,
        sched: a.sched,
        hugepages: a.hugepages,
        irqs: a.irqs,
        rlimits: a.rlimits,
        env: a.env,
        dma_latency: a.dma_latency,
        mlock: !a.no_mlock,
        name: a.name,
        command: a.command,
    }
}

/// Prints what setup did, on stderr (stdout belongs to the command).
pub fn print_setup(r: &SetupReport) {
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

/// Prints one step of the run, on stderr.
fn show(e: RunEvent<'_>) {
    match e {
        RunEvent::Ready { report, journal } => {
            print_setup(report);
            if let Some(j) = journal {
                eprintln!(
                    "carve: journal {} (if carve is killed: carve restore)",
                    j.display()
                );
            }
        }
        RunEvent::LaunchFailed(e) => eprintln!("carve run: {e}"),
        RunEvent::Restored(t) => {
            for w in &t.warnings {
                eprintln!("carve: warning: {w}");
            }
            eprintln!(
                "carve: host restored ({} changes undone; {} tasks that landed on the cores were moved during the run)",
                t.changes_undone, t.tasks_moved_later
            );
        }
        RunEvent::RestoreFailed(e) => {
            eprintln!("carve: restoring the host failed: {e} (see carve restore)")
        }
    }
}

/// Runs `carve run`.
pub fn run(a: Args) -> anyhow::Result<()> {
    let outcome = match run_dedicated(&request_of(a), &mut show) {
        Ok(o) => o,
        Err(RunError::Invalid(e)) => {
            eprintln!("carve run: {}", super::report(&e.into()));
            return Err(super::Exit(super::EXIT_INVALID).into());
        }
        Err(RunError::Refused(e)) => {
            eprintln!("carve run: {e}");
            return Err(super::Exit(super::EXIT_INVALID).into());
        }
        Err(RunError::Setup(e)) => return Err(e.into()),
    };
    let code: u8 = match outcome.ended {
        Ended::NotLaunched => super::EXIT_ERROR,
        Ended::WaitFailed(e) => {
            eprintln!("carve run: waiting for the command: {e}");
            super::EXIT_ERROR
        }
        Ended::Exited(st) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(c), _) => c as u8,
                (None, Some(s)) => 128u8.wrapping_add(s as u8),
                _ => super::EXIT_ERROR,
            }
        }
    };
    if !outcome.restored && code == 0 {
        return Err(super::Exit(super::EXIT_ERROR).into());
    }
    if code != 0 {
        return Err(super::Exit(code).into());
    }
    Ok(())
}
