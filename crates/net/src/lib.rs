//! carve: netlink — bridges, veths, taps, addresses, network namespaces.

/// Undoes a journal's `Link` or `Netns` change (given to `carve_journal::Journal::with_link_undo`).
pub fn journal_undo(change: &carve_journal::Change) -> Result<(), String> {
    Err(format!("{change}: netlink undo not built yet"))
}
