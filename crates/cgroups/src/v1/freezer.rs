//! v1 freezer: freezer.state.

use crate::fs;
use crate::{Error, FreezerState};
use std::path::Path;

pub(super) fn state(dir: &Path) -> Result<FreezerState, Error> {
    let s = fs::read(dir, "freezer.state")?;
    Ok(match s.trim() {
        "FROZEN" => FreezerState::Frozen,
        "FREEZING" => FreezerState::Freezing,
        "THAWED" => FreezerState::Thawed,
        other => {
            return Err(fs::FsError::Parse {
                path: dir.join("freezer.state"),
                value: other.to_string(),
            }
            .into())
        }
    })
}

/// Writes the target state and waits until the kernel reports it (freezing takes as long as
/// the slowest task needs to reach a freezable point). A task stuck FREEZING is retried the
/// way runc does: thaw briefly and freeze again.
pub(super) fn set(dir: &Path, frozen: bool) -> Result<(), Error> {
    let (target, want) = if frozen {
        ("FROZEN", FreezerState::Frozen)
    } else {
        ("THAWED", FreezerState::Thawed)
    };
    let mut poll = crate::Backoff::new();
    let mut attempt = 0u32;
    loop {
        fs::write(dir, "freezer.state", target)?;
        if state(dir)? == want {
            return Ok(());
        }
        if !poll.wait() {
            break;
        }
        attempt += 1;
        if frozen && attempt % 50 == 0 {
            fs::write(dir, "freezer.state", "THAWED")?;
        }
    }
    Err(Error::Timeout {
        what: if frozen { "freezing" } else { "thawing" },
        path: dir.join("freezer.state"),
    })
}
