//! `carve supervise` (hidden): the detached holder of a plan started by `carve up -d`. Reads the
//! resolved plan as JSON on stdin, reports progress as JSON lines on stdout, closes stdout once
//! the plan is up, then supervises it until SIGTERM (`carve down`).

use anyhow::Context;
use carve_engine::Engine;
use std::io::{Read, Write};

/// Arguments of `carve supervise`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `carve supervise`.
pub fn run(_args: Args) -> anyhow::Result<()> {
    // Its own session: the terminal's Ctrl-C and hangup don't reach it.
    carve_engine::process::new_session();
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let spec: carve_engine::spec::PlanSpec =
        serde_json::from_str(&text).context("reading the plan from stdin")?;
    carve_engine::process::become_subreaper().context("becoming a subreaper")?;
    carve_engine::process::catch_stop_signals();
    let engine = Engine::from_env();
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
    carve_engine::process::detach_stdio();
    running.supervise(&engine, &mut |_| {})?;
    Ok(())
}
