//! `carve down [PLAN]`: stops every partition (graceful, then forced), removes the networks and
//! undoes the plan's journal, through its holder or, if that crashed, directly.

use carve_engine::ops;
use carve_engine::Engine;
use std::time::Duration;

/// Arguments of `carve down`.
#[derive(clap::Args)]
pub struct Args {
    /// The plan's name (its file stem); optional when exactly one plan is up.
    pub plan: Option<String>,
    /// How long to wait for the plan's holder, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Runs `carve down`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let engine = Engine::from_env();
    let name = match args.plan {
        Some(p) => carve_engine::resolve::plan_name(std::path::Path::new(&p)),
        None => {
            let up = ops::running_plans(&engine.root);
            match up.as_slice() {
                [one] => one.clone(),
                [] => anyhow::bail!("no plan is up"),
                many => anyhow::bail!("several plans are up, name one: {}", many.join(", ")),
            }
        }
    };
    ops::down(&engine, &name, Duration::from_secs(args.timeout))?;
    println!("plan {name} is down; the host is restored");
    Ok(())
}
