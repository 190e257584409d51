//! v1 devices: allow and deny rules written in order (later rules override earlier ones).

use crate::fs;
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    for d in res.devices().iter().flatten() {
        let rule = crate::device_rule_string(d);
        let file = if d.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fs::write(dir, file, &rule)?;
    }
    Ok(())
}
