//! carve's dedicated-core tier ("bare-metal engine") and OS-noise meter.
//!
//! A user-mode process owns one or more cores with the OS moved out of its way as far as the
//! running kernel allows; [`noise`] measures how far that is.
//!
//! # Tour
//! - [`DedicatedSpec`]: what a partition asks for (cores, housekeeping, sched policy, huge pages,
//!   IRQs, rlimits, env, command); [`SchedPolicy`], [`HugePagesSpec`], [`RlimitSpec`] parse the
//!   command-line forms ("fifo:80", "2MiB:32", "nofile=1024:4096").
//! - [`Partition`] validates a spec against the host and the other live runs, then sets it up
//!   through one [`carve_journal::Journal`]: [`cpuset`] (v1 exclusive cpuset / v2 isolated
//!   partition), [`tune`] (IRQs, workqueues, sysctls, huge pages), [`tasks`] (tasks moved off, a
//!   watcher for newcomers). [`ActivePartition::launch`] starts the command ([`launch`]: pinned,
//!   sched policy, rlimits, THP off, memory locked); [`ActivePartition::teardown`] undoes it all.
//! - [`noise`]: the calibrated TSC-gap probe, its statistics, tracefs attribution and an SVG plot.
//!
//! ```no_run
//! use carve_dedicated::{DedicatedSpec, Partition};
//! use carve_core::CpuSet;
//! let online = CpuSet::parse_list("0-1").unwrap();
//! let mut spec = DedicatedSpec::new("demo", CpuSet::parse_list("1").unwrap(), &online);
//! spec.sched = "fifo:80".parse().unwrap();
//! spec.command = vec!["./fastpath".into()];
//! let mut p = Partition::new(spec).setup().unwrap();
//! let mut child = p.launch().unwrap();
//! child.wait().unwrap();
//! p.teardown().unwrap();
//! ```

pub mod cpuset;
pub mod launch;
pub mod noise;
pub mod partition;
pub mod spec;
pub mod supervise;
pub mod sys;
pub mod tasks;
pub mod tune;

pub use partition::{ActivePartition, Error, Partition, RunState, SetupReport, TeardownReport};
pub use spec::{DedicatedSpec, HugePagesSpec, ParseError, RlimitSpec, SchedPolicy};
pub use sys::HostPaths;
