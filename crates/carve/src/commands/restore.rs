//! `carve restore`: undoes the host changes of carve runs that died without restoring.

use std::path::Path;

/// Arguments of `carve restore`.
#[derive(clap::Args)]
pub struct Args {
    /// The journal directory.
    #[arg(long, default_value = carve_journal::DEFAULT_ROOT)]
    pub journals: std::path::PathBuf,
    /// List every change as it will be undone (newest first).
    #[arg(long, short)]
    pub verbose: bool,
}

/// The changes of every orphaned journal under `root` (its holder is gone), newest first.
fn orphans(root: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    let mut paths: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    for p in paths {
        let first = std::fs::read_to_string(&p)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string));
        let Some(h) = first.and_then(|l| serde_json::from_str::<carve_journal::Header>(&l).ok())
        else {
            continue;
        };
        if h.holder.is_alive() {
            continue;
        }
        if let Ok(j) = carve_journal::Journal::load(&p) {
            out.push((
                h.owner,
                j.changes().iter().rev().map(|c| c.to_string()).collect(),
            ));
        }
    }
    out
}

/// Runs `carve restore`.
pub fn run(a: Args) -> anyhow::Result<()> {
    if a.verbose {
        for (owner, changes) in orphans(&a.journals) {
            println!("{owner}:");
            for c in changes {
                println!("  {c}");
            }
        }
    }
    let done = carve_journal::restore_orphans(&a.journals, Some(carve_net::journal_undo));
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
