//! `carve restore`: the host changes of carve processes that died without restoring them. Every
//! tier journals its changes (`dedicated-NAME`, `vm-NAME`, `plan-NAME`, the noise meter's
//! tracer); whatever owner crashed, its journal is undone here with the hooks the engine itself
//! uses (netlink links through [`carve_net::journal_undo`]), so `carve restore` and
//! [`crate::Engine::restore_plan`] undo a change the same way.

use carve_journal::{Header, Journal, Restored};
use std::path::Path;

/// Where carve keeps its journals (`carve restore --journals` by default).
pub const JOURNAL_ROOT: &str = carve_journal::DEFAULT_ROOT;

/// An orphaned journal: its holder process is gone.
#[derive(Debug, Clone)]
pub struct Orphan {
    /// The journal's owner name.
    pub owner: String,
    /// Its changes as they will be undone, newest first.
    pub changes: Vec<String>,
}

/// The orphaned journals under `root` whose owner is in `only` (all when empty), in file-name
/// order (read only; nothing is undone).
pub fn orphans(root: &Path, only: &[String]) -> Vec<Orphan> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| orphan(p))
        .filter(|o| only.is_empty() || only.contains(&o.owner))
        .collect()
}

fn orphan(p: &Path) -> Option<Orphan> {
    let text = std::fs::read_to_string(p).ok()?;
    let h = serde_json::from_str::<Header>(text.lines().next()?).ok()?;
    if h.holder.is_alive() {
        return None;
    }
    let j = Journal::load(p).ok()?;
    Some(Orphan {
        owner: h.owner,
        changes: j.changes().iter().rev().map(|c| c.to_string()).collect(),
    })
}

/// Undoes every orphaned journal under `root` whose owner is in `only` (all when empty; see
/// [`carve_journal::restore_orphans_of`]).
pub fn host(root: &Path, only: &[String]) -> Vec<Restored> {
    carve_journal::restore_orphans_of(root, only, Some(carve_net::journal_undo))
}
