//! `carve supervise` (hidden): the detached holder of a plan started by `carve up -d`. Reads the
//! resolved plan as JSON on stdin, reports progress as JSON lines on stdout, closes stdout once
//! the plan is up, then serves its API (carve_observe) and supervises it until SIGTERM
//! (`carve down`). Its logs are JSON lines in /run/carve/PLAN/supervisor.log.

use anyhow::Context;
use carve_engine::Engine;
use std::io::{Read, Write};
use std::sync::Arc;

/// Arguments of `carve supervise`.
#[derive(clap::Args)]
pub struct Args {}

/// What `carve up -d` sends: the resolved plan and its `[observe]` section (a bare plan is
/// accepted too).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// The plan with how to observe it.
    Full {
        /// The resolved plan.
        plan: carve_engine::spec::PlanSpec,
        /// The plan's `[observe]` section.
        observe: carve_core::plan::ObserveSection,
    },
    /// Only the plan.
    Bare(carve_engine::spec::PlanSpec),
}

/// Runs `carve supervise`.
pub fn run(_args: Args, debug: bool) -> anyhow::Result<()> {
    // Its own session: the terminal's Ctrl-C and hangup don't reach it.
    carve_engine::process::new_session();
    let log = crate::logging::LateFile::default();
    crate::logging::init_json(debug, log.clone());
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let (spec, observe) =
        match serde_json::from_str(&text).context("reading the plan from stdin")? {
            Input::Full { plan, observe } => (plan, observe),
            Input::Bare(plan) => (plan, Default::default()),
        };
    carve_engine::process::become_subreaper().context("becoming a subreaper")?;
    carve_engine::process::catch_stop_signals();
    let engine = Arc::new(Engine::from_env());
    let mut report = |e: carve_engine::Event| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", serde_json::to_string(&e).unwrap_or_default());
        let _ = out.flush();
    };
    let running = match engine.up(spec, &mut report) {
        Ok(r) => r,
        Err(e) => {
            // The last line `carve up -d` reads: the whole error, rollback included.
            report(carve_engine::Event::Failed {
                what: "up".into(),
                error: e.to_string(),
            });
            return Err(super::Exit(super::EXIT_ERROR).into());
        }
    };
    let _ = log.open(&running.dir().dir.join("supervisor.log"));
    tracing::info!(plan = %running.plan().name, pid = std::process::id(), "plan up");
    let join_engine = engine.clone();
    let cfg = carve_observe::Config {
        listen: observe.listen,
        join: Some(Arc::new(move |name: &str, tid, cpu| {
            Ok(join_engine.dedicated.join_thread(name, tid, cpu)?)
        })),
        // CARVE_NO_PROBE=1: no noise probe on dedicated cores (to measure what it costs).
        no_probe: std::env::var("CARVE_NO_PROBE").is_ok_and(|v| v == "1"),
        ..Default::default()
    };
    // Without its API the plan still runs (the state files serve `carve ps/stop/start`).
    let observer =
        carve_observe::Observer::start(running.dir().clone(), running.plan().clone(), cfg)
            .map_err(|e| {
                tracing::error!(error = %e, "observer");
                report(carve_engine::Event::Info {
                    text: format!("no API: {e}"),
                });
            })
            .ok();
    if let Some(a) = observer.as_ref().and_then(|o| o.tcp) {
        report(carve_engine::Event::Info {
            text: format!("metrics and dashboard on http://{a}/"),
        });
    }
    carve_engine::process::detach_stdio();
    let r = running.supervise(&engine, &mut |e| tracing::info!(event = ?e, "down"));
    drop(observer);
    tracing::info!(ok = r.is_ok(), "plan down");
    r?;
    Ok(())
}
