//! `carve up PLAN [-d]`: applies a plan — networks, dedicated cores, containers, VMs — and keeps
//! it running: in the foreground until Ctrl-C, or detached under a supervisor (`-d`).

use anyhow::Context;
use carve_engine::progress::Display;
use carve_engine::{Engine, Event};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Arguments of `carve up`.
#[derive(clap::Args)]
pub struct Args {
    /// The plan file (TOML).
    pub plan: PathBuf,
    /// Detach: a supervisor process holds the plan; `carve down` takes it down.
    #[arg(short, long)]
    pub detach: bool,
    /// The OCI runtime for containers (default: carve-oci beside carve; env CARVE_OCI_RUNTIME).
    #[arg(long)]
    pub runtime: Option<PathBuf>,
}

/// Runs `carve up`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let spec = match carve_engine::resolve::load(&args.plan) {
        Ok(s) => s,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return Err(super::Exit(super::EXIT_INVALID).into());
        }
    };
    if args.detach {
        // The plan parsed above; its `[observe]` section goes to the supervisor with it.
        let observe = std::fs::read_to_string(&args.plan)
            .ok()
            .and_then(|t| carve_core::plan::Plan::parse(&t).ok())
            .map(|p| p.observe)
            .unwrap_or_default();
        return detach(&spec, observe, args.runtime);
    }
    let mut engine = Engine::from_env();
    if let Some(r) = args.runtime {
        engine.containers.binary = r;
    }
    carve_engine::process::become_subreaper().context("becoming a subreaper")?;
    carve_engine::process::catch_stop_signals();
    let mut display = Display::new();
    let name = spec.name.clone();
    let running = match engine.up(spec, &mut |e| display.show(&e)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("carve up: {e}");
            return Err(super::Exit(super::EXIT_ERROR).into());
        }
    };
    eprintln!("plan {name} is up; Ctrl-C takes it down");
    running.supervise(&engine, &mut |e| display.show(&e))?;
    Ok(())
}

/// Starts `carve supervise`, feeds it the resolved plan, shows its progress until it detaches.
fn detach(
    spec: &carve_engine::spec::PlanSpec,
    observe: carve_core::plan::ObserveSection,
    runtime: Option<PathBuf>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the carve binary")?;
    let mut cmd = Command::new(exe);
    if std::env::args().any(|a| a == "--debug") {
        cmd.arg("--debug");
    }
    cmd.arg("supervise");
    if let Some(r) = runtime {
        cmd.env("CARVE_OCI_RUNTIME", r);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the supervisor")?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        let input = super::supervise::Input::Full {
            plan: spec.clone(),
            observe,
        };
        stdin.write_all(serde_json::to_string(&input)?.as_bytes())?;
    }
    let mut display = Display::new();
    let out = child.stdout.take().expect("piped");
    for line in BufReader::new(out).lines() {
        let line = line?;
        match serde_json::from_str::<Event>(&line) {
            Ok(e) => display.show(&e),
            Err(_) => eprintln!("{line}"),
        }
    }
    // The supervisor closes its stdout once the plan is up (it keeps running) or exits after
    // a failed up (rolled back).
    let dir = carve_engine::state::PlanDir::new(
        std::path::Path::new(carve_engine::state::DEFAULT_ROOT),
        &spec.name,
    );
    if display.failed || !dir.is_held() {
        let status = child.wait()?;
        if !display.failed {
            eprintln!("carve up: the supervisor ended ({status}) before the plan was up");
        }
        return Err(super::Exit(super::EXIT_ERROR).into());
    }
    println!(
        "plan {} is up, supervised by pid {}; `carve down {}` takes it down",
        spec.name,
        child.id(),
        spec.name
    );
    Ok(())
}
