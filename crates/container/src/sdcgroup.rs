//! `--systemd-cgroup`: the container's cgroup is a transient systemd scope
//! (`carve_cgroups::systemd`). `create` clones init outside the scope, has systemd start the
//! scope with init's pid and the resources as unit properties, then writes every resource into
//! the delegated cgroup files too (as runc); `update` changes both; `delete` stops the unit and
//! waits for systemd to unload it.
//!
//! The D-Bus client is synchronous and runs no threads: no signal meant for the runtime's
//! signalfd can land elsewhere, and cloning from the runtime stays safe.

use crate::Error;
use carve_cgroups::systemd::{props, Systemd, Unit};
use carve_cgroups::{Manager, Mode};
use oci_spec::runtime::LinuxResources;

fn sd_err(e: carve_cgroups::systemd::SdError) -> Error {
    Error::Setup(e.to_string())
}

/// The unit a `--systemd-cgroup` container gets; refuses where systemd is not PID 1, before
/// anything is touched.
pub fn unit(cgroups_path: &str, id: &str) -> Result<Unit, Error> {
    if !carve_cgroups::systemd::booted() {
        return Err(sd_err(carve_cgroups::systemd::SdError::NotBooted));
    }
    Unit::parse(cgroups_path, id).map_err(sd_err)
}

/// Unit properties for `res`: the unified names on cgroup v2, the legacy ones on v1 and hybrid
/// hosts (runc's legacy manager).
fn properties(
    sd: &Systemd,
    mgr: &Manager,
    res: Option<&LinuxResources>,
) -> Result<Vec<props::Prop>, Error> {
    let Some(res) = res else {
        return Ok(Vec::new());
    };
    Ok(props::properties(res, mgr.mode() == Mode::V2, sd.version)?)
}

/// Starts the scope with `pid` in it, then makes and fills the cgroupfs side (`mgr`: the
/// scope's directories; the ones systemd did not make, e.g. v1 cpuset, are made here).
pub fn start(
    unit: &Unit,
    pid: i32,
    mgr: &mut Manager,
    res: Option<&LinuxResources>,
) -> Result<(), Error> {
    let sd = Systemd::connect().map_err(sd_err)?;
    let p = properties(&sd, mgr, res)?;
    sd.start(unit, pid, p).map_err(sd_err)?;
    mgr.create()?;
    if let Some(r) = res {
        mgr.apply(r)?;
    }
    Ok(())
}

/// `update`: the unit's properties, then the cgroup files.
pub fn update(unit: &Unit, mgr: &Manager, res: &LinuxResources) -> Result<(), Error> {
    let sd = Systemd::connect().map_err(sd_err)?;
    let p = properties(&sd, mgr, Some(res))?;
    sd.set(unit, p).map_err(sd_err)?;
    Ok(mgr.apply(res)?)
}

/// `delete` (and a failed `create`): stop the unit and wait until systemd has unloaded it.
pub fn stop(unit: &Unit) -> Result<(), Error> {
    let sd = Systemd::connect().map_err(sd_err)?;
    sd.stop(unit).map_err(sd_err)
}
