//! `carve restore`: undoes the host changes of carve runs that died without restoring
//! ([`carve_engine::restore`]); this file prints.

/// Arguments of `carve restore`.
#[derive(clap::Args)]
pub struct Args {
    /// The journal directory.
    #[arg(long, default_value = carve_engine::restore::JOURNAL_ROOT)]
    pub journals: std::path::PathBuf,
    /// List every change as it will be undone (newest first).
    #[arg(long, short)]
    pub verbose: bool,
    /// Only these journal owners (`vm-NAME`, `dedicated-NAME`, `plan-NAME`, as `carve restore
    /// --verbose` lists them); every orphan when none is given.
    pub owners: Vec<String>,
}

/// Runs `carve restore`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.verbose {
        for o in carve_engine::restore::orphans(&a.journals, &a.owners) {
            println!("{}:", o.owner);
            for c in o.changes {
                println!("  {c}");
            }
        }
    }
    let done = carve_engine::restore::host(&a.journals, &a.owners);
    if done.is_empty() {
        println!(
            "carve restore: nothing to restore (no orphaned journal under {})",
            a.journals.display()
        );
        return Ok(());
    }
    let mut failed = false;
    for r in &done {
        match &r.result {
            Ok(()) => println!("restored {}: {} changes undone", r.owner, r.changes),
            Err(e) => {
                failed = true;
                println!("could not fully restore {}: {e}", r.owner);
            }
        }
    }
    if failed {
        return Err(super::Exit(super::EXIT_ERROR).into());
    }
    Ok(())
}
