//! The systemd cgroup driver: a container's cgroup as a transient systemd scope, created and
//! changed over D-Bus ([`dbus`], a minimal synchronous client; no libsystemd), the way runc's
//! systemd driver does it.
//!
//! - [`Unit`] is what `slice:prefix:name` names: the scope `prefix-name.scope` in `slice`
//!   (default `system.slice`), and its cgroup path.
//! - [`Systemd::start`] is `StartTransientUnit` with `Delegate=yes`, the container's pid,
//!   accounting on, `DefaultDependencies=no` and the resources as unit properties
//!   ([`props::properties`]), then waits (bounded) for the unit to be active. As runc, a unit of
//!   that name left over (failed) is reset and the start retried once.
//! - [`Systemd::set`] is `SetUnitProperties` (runtime), for `update`.
//! - [`Systemd::stop`] is `StopUnit`, waits (bounded) until systemd has no such unit any more,
//!   resetting it if it failed.
//!
//! The cgroup files are still written by the cgroupfs [`crate::Manager`] on the scope's
//! directory (delegated to us): systemd has no property for many of them, and runc writes them
//! all too. Job completion is watched by polling the unit's `ActiveState` (every 5 ms) rather
//! than subscribing to `JobRemoved`: no match rule or signal routing is needed, every wait has a
//! deadline, and each reply is bounded by the socket's read timeout.

pub mod dbus;
pub mod props;

use dbus::{Arg, Bus, Target, Value};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
/// How long systemd gets to start or stop a scope (runc waits 30 s too).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// A systemd driver step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SdError {
    /// --systemd-cgroup: systemd is not running as PID 1 here ...
    #[error(
        "--systemd-cgroup: systemd is not running as PID 1 here (no /run/systemd/system): \
         run without --systemd-cgroup to manage cgroups directly"
    )]
    NotBooted,
    /// --systemd-cgroup: cgroupsPath {0:?} is not "slice:prefix:name"
    #[error("--systemd-cgroup: cgroupsPath {0:?} is not \"slice:prefix:name\"")]
    Path(String),
    /// --systemd-cgroup: connecting to the system bus: {0}
    #[error("--systemd-cgroup: connecting to the system bus: {0}")]
    Connect(dbus::Error),
    /// systemd {call} {unit}: {source}
    #[error("systemd {call} {unit}: {source}")]
    Call {
        /// The D-Bus method.
        call: &'static str,
        /// The unit.
        unit: String,
        /// systemd's answer.
        source: dbus::Error,
    },
    /// systemd unit {unit}: {msg}
    #[error("systemd unit {unit}: {msg}")]
    Unit {
        /// The unit.
        unit: String,
        /// What went wrong (state seen, or the wait that ran out).
        msg: String,
    },
    /// A property value that does not fit.
    #[error(transparent)]
    Props(#[from] crate::Error),
}

/// Whether this host was booted with systemd (sd_booted(3): /run/systemd/system is a directory).
pub fn booted() -> bool {
    std::fs::symlink_metadata("/run/systemd/system").is_ok_and(|m| m.is_dir())
}

/// A transient scope (or slice) and where its cgroup is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// `prefix-name.scope` (or `name` itself when it ends in `.slice`).
    pub name: String,
    /// The parent slice, `system.slice` when empty.
    pub slice: String,
    /// The cgroup path below the hierarchy root (`/machine.slice/libpod-ID.scope`).
    pub cgroup_path: String,
}

impl Unit {
    /// Parses runc's `slice:prefix:name` (an empty cgroupsPath is `:carve-oci:ID`).
    pub fn parse(cgroups_path: &str, id: &str) -> Result<Unit, SdError> {
        let p = if cgroups_path.is_empty() {
            format!(":carve-oci:{id}")
        } else {
            cgroups_path.to_string()
        };
        let bad = || SdError::Path(cgroups_path.to_string());
        let parts: Vec<&str> = p.split(':').collect();
        let [slice, prefix, name] = parts.as_slice() else {
            return Err(bad());
        };
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        let cgroup_path = crate::systemd_path(&p).ok_or_else(bad)?;
        let name = if name.ends_with(".slice") || prefix.is_empty() && name.ends_with(".scope") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        Ok(Unit {
            name,
            slice: slice.to_string(),
            cgroup_path,
        })
    }
}

/// A connection to systemd on the system bus.
pub struct Systemd {
    bus: std::cell::RefCell<Bus>,
    /// systemd's version number (252 for "252.36-1~deb12u1").
    pub version: u32,
}

impl Systemd {
    /// Connects to the system bus; refuses at once where systemd is not PID 1.
    pub fn connect() -> Result<Systemd, SdError> {
        if !booted() {
            return Err(SdError::NotBooted);
        }
        let bus = Bus::system().map_err(SdError::Connect)?;
        let mut sd = Systemd {
            bus: std::cell::RefCell::new(bus),
            version: 0,
        };
        let v = sd
            .get(PATH, MANAGER, "Version")
            .map_err(|source| SdError::Call {
                call: "Get Version",
                unit: "(manager)".into(),
                source,
            })?;
        sd.version = v
            .trim_start_matches('v')
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(sd)
    }

    /// A string property of the object at `path`.
    fn get(&self, path: &str, iface: &str, prop: &str) -> Result<String, dbus::Error> {
        let to = Target {
            dest: DEST,
            path,
            iface: PROPERTIES,
        };
        self.bus
            .borrow_mut()
            .call(to, "Get", &[Arg::Str(iface), Arg::Str(prop)])
    }

    fn manager(&self, method: &'static str, unit: &str, args: &[Arg]) -> Result<String, SdError> {
        let to = Target {
            dest: DEST,
            path: PATH,
            iface: MANAGER,
        };
        self.bus
            .borrow_mut()
            .call(to, method, args)
            .map_err(|source| SdError::Call {
                call: method,
                unit: unit.to_string(),
                source,
            })
    }

    /// The unit's ActiveState, or `None` when systemd has no such unit loaded.
    pub fn active_state(&self, unit: &str) -> Result<Option<String>, SdError> {
        let path = match self.manager("GetUnit", unit, &[Arg::Str(unit)]) {
            Ok(p) => p,
            Err(SdError::Call { ref source, .. }) if source.is("NoSuchUnit") => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.get(&path, "org.freedesktop.systemd1.Unit", "ActiveState") {
            Ok(v) => Ok(Some(v)),
            // Unloaded between the two calls.
            Err(e) if e.is("UnknownObject") || e.is("NoSuchUnit") => Ok(None),
            Err(source) => Err(SdError::Call {
                call: "Get ActiveState",
                unit: unit.into(),
                source,
            }),
        }
    }

    /// A string property of a unit (e.g. `ActiveState` of `org.freedesktop.systemd1.Unit`).
    pub fn unit_property(&self, unit: &str, iface: &str, prop: &str) -> Result<String, SdError> {
        let path = self.manager("GetUnit", unit, &[Arg::Str(unit)])?;
        self.get(&path, iface, prop)
            .map_err(|source| SdError::Call {
                call: "Get",
                unit: unit.into(),
                source,
            })
    }

    /// Starts the transient scope `unit` holding `pid`, with the resource properties `res`, and
    /// waits until systemd reports it active.
    pub fn start(&self, unit: &Unit, pid: i32, res: Vec<props::Prop>) -> Result<(), SdError> {
        let scope = unit.name.ends_with(".scope");
        let mut p: Vec<(&str, Value)> = vec![
            (
                "Description",
                Value::from(format!("carve-oci container {}", unit.name)),
            ),
            ("MemoryAccounting", Value::from(true)),
            ("CPUAccounting", Value::from(true)),
            ("IOAccounting", Value::from(true)),
            ("TasksAccounting", Value::from(true)),
            ("DefaultDependencies", Value::from(false)),
        ];
        if scope {
            p.push(("Slice", Value::from(unit.slice.clone())));
            p.push(("Delegate", Value::from(true)));
            p.push(("PIDs", Value::from(vec![pid as u32])));
        } else {
            p.push(("Wants", Value::from(vec![unit.slice.clone()])));
        }
        p.extend(res);
        let name = unit.name.as_str();
        let body = [
            Arg::Str(name),
            Arg::Str("replace"),
            Arg::Props(&p),
            Arg::NoAux,
        ];
        let first = self.manager("StartTransientUnit", name, &body);
        match first {
            Err(SdError::Call { ref source, .. }) if source.is("UnitExists") => {
                // A failed leftover of that name: let systemd drop it and try once more.
                let _ = self.manager("ResetFailedUnit", name, &[Arg::Str(name)]);
                self.manager("StartTransientUnit", name, &body)?;
            }
            r => {
                r?;
            }
        }
        self.wait(&unit.name, "active", |s| match s {
            Some("active") => Some(Ok(())),
            Some("failed") => Some(Err(SdError::Unit {
                unit: unit.name.clone(),
                msg: format!("failed to start (ActiveState {s:?})"),
            })),
            _ => None,
        })
        .inspect_err(|_| {
            let _ = self.manager("ResetFailedUnit", name, &[Arg::Str(name)]);
        })
    }

    /// Changes the unit's resource properties (runtime only, as runc).
    pub fn set(&self, unit: &Unit, res: Vec<props::Prop>) -> Result<(), SdError> {
        if res.is_empty() {
            return Ok(());
        }
        let name = unit.name.as_str();
        self.manager(
            "SetUnitProperties",
            name,
            &[Arg::Str(name), Arg::Bool(true), Arg::Props(&res)],
        )?;
        Ok(())
    }

    /// Stops the unit and waits (bounded) until systemd has unloaded it. A unit already gone
    /// (a scope whose processes all exited is stopped and collected by systemd) is fine.
    pub fn stop(&self, unit: &Unit) -> Result<(), SdError> {
        let name = unit.name.as_str();
        match self.manager("StopUnit", name, &[Arg::Str(name), Arg::Str("replace")]) {
            Err(SdError::Call { ref source, .. }) if source.is("NoSuchUnit") => {}
            r => {
                r?;
            }
        }
        self.wait(&unit.name, "gone", |s| match s {
            None => Some(Ok(())),
            Some("failed") | Some("inactive") => {
                // Left loaded: failed units stay until reset.
                let _ = self.manager("ResetFailedUnit", name, &[Arg::Str(name)]);
                None
            }
            _ => None,
        })
    }

    /// Polls the unit's ActiveState until `done` decides, for up to [`JOB_TIMEOUT`].
    fn wait(
        &self,
        unit: &str,
        what: &str,
        mut done: impl FnMut(Option<&str>) -> Option<Result<(), SdError>>,
    ) -> Result<(), SdError> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let s = self.active_state(unit)?;
            if let Some(r) = done(s.as_deref()) {
                return r;
            }
            if Instant::now() > deadline {
                return Err(SdError::Unit {
                    unit: unit.into(),
                    msg: format!(
                        "not {what} after {} s (ActiveState {s:?})",
                        JOB_TIMEOUT.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_cgroups_paths() {
        let u = Unit::parse("machine.slice:libpod:abc", "x").unwrap();
        assert_eq!(u.name, "libpod-abc.scope");
        assert_eq!(u.slice, "machine.slice");
        assert_eq!(u.cgroup_path, "/machine.slice/libpod-abc.scope");
        let u = Unit::parse("a-b.slice:carve:c1", "x").unwrap();
        assert_eq!(u.cgroup_path, "/a.slice/a-b.slice/carve-c1.scope");
        let u = Unit::parse("", "id1").unwrap();
        assert_eq!(
            (u.name.as_str(), u.slice.as_str()),
            ("carve-oci-id1.scope", "system.slice")
        );
        assert!(Unit::parse("/abs/path", "x").is_err());
        assert!(Unit::parse("bad:x:y", "x").is_err());
    }

    #[test]
    fn not_booted_names_the_flag() {
        if booted() {
            return;
        }
        let e = Systemd::connect().err().unwrap().to_string();
        assert!(e.contains("--systemd-cgroup") && e.contains("PID 1"), "{e}");
    }
}
