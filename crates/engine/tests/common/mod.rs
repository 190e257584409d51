//! Helpers shared by the engine's privileged tests: an engine driving the workspace's carve-oci,
//! a plan guard that tears down on drop, and waits with deadlines.
#![allow(dead_code)]

use carve_engine::engine::Engine;
use carve_engine::oci::OciRuntime;
use carve_engine::spec::{Attachment, NetworkSpec, PartitionSpec, PlanSpec};
use carve_engine::Running;
use carve_testkit::unique_name;
use std::path::Path;
use std::time::Duration;

/// An engine whose containers run under the workspace's carve-oci (see
/// [`carve_testkit::oci_runtime`]), with the fault-injection points `faults` armed.
pub fn engine_with(faults: &[&str]) -> Engine {
    let mut e = Engine::from_env();
    e.containers = OciRuntime {
        binary: carve_testkit::oci_runtime(),
    };
    e.faults = faults.iter().map(|s| s.to_string()).collect();
    e
}

/// A plan of its own name with `partitions` and no networks.
pub fn plan_of(partitions: Vec<PartitionSpec>) -> PlanSpec {
    PlanSpec {
        name: unique_name("plan"),
        networks: vec![],
        partitions,
    }
}

/// A plan that is up; torn down when the test ends, also on failure (and then nothing of it
/// may be left).
pub struct Up {
    /// The engine that brought it up.
    pub engine: Engine,
    /// The plan while it is up; a test that takes it down takes it out.
    pub running: Option<Running>,
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let left = r.teardown(&self.engine, Duration::from_secs(2));
            if !std::thread::panicking() {
                assert!(left.is_empty(), "teardown left {left:?}");
            }
        }
    }
}

impl Up {
    /// Brings `plan` up with a plain engine ([`engine_with`] no faults).
    pub fn new(plan: PlanSpec) -> Up {
        Up::with(engine_with(&[]), plan, &mut |_| {})
    }

    /// Brings `plan` up with `engine`, passing each progress event to `events`.
    pub fn with(
        engine: Engine,
        plan: PlanSpec,
        events: &mut dyn FnMut(carve_engine::engine::Event),
    ) -> Up {
        let mut up = Up {
            engine,
            running: None,
        };
        up.running = Some(up.engine.up(plan, events).unwrap());
        up
    }

    /// The running plan.
    pub fn running(&mut self) -> &mut Running {
        self.running.as_mut().unwrap()
    }

    /// Takes the plan down, which must succeed.
    pub fn down(mut self) {
        let r = self.running.take().unwrap();
        r.down(&self.engine, &mut |_| {}).unwrap();
    }
}

/// Waits (up to `timeout`, failing with `what`) until the file at `log` contains `text`.
pub fn wait_for_log(what: &str, log: &Path, text: &str, timeout: Duration) {
    carve_testkit::wait_for(what, timeout, || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(text)
    });
}

/// The steps the engine reported done, in order (`Event::Done`'s `what`).
pub fn done_steps(events: &[carve_engine::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            carve_engine::Event::Done { what, .. } => Some(what.clone()),
            _ => None,
        })
        .collect()
}

/// Bridge `name` inside netns `ns` on the /24 `net`.0 (e.g. "10.79.0"), gateway `net`.1.
pub fn bridge(name: &str, ns: &str, net: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        namespace: Some(ns.into()),
        subnet: format!("{net}.0").parse().unwrap(),
        prefix: 24,
        gateway: Some(format!("{net}.1").parse().unwrap()),
    }
}

/// An attachment to bridge `bridge` at `address`/24, no gateway of its own.
pub fn attach(bridge: &str, address: &str) -> Attachment {
    Attachment {
        bridge: bridge.into(),
        address: address.parse().unwrap(),
        prefix: 24,
        gateway: None,
    }
}
