//! carve's engine: applies one plan across the tiers and takes it down again.
//!
//! # Tour
//! - [`spec`]: the resolved plan the engine acts on ([`spec::PlanSpec`]: partitions with their
//!   final cores and memory, networks with their bridges); [`resolve::load`] makes one from a
//!   plan file through `carve_core`'s parser and allocator.
//! - [`image`]: root filesystems for containers (`carve image busybox|debian DIR`).
//! - [`bundle`]: a container partition → an OCI bundle (config.json) for the runtime.
//! - [`Engine::up`] applies a plan: journal → networks ([`network`]) → dedicated
//!   ([`dedicated`]) → containers ([`oci`]) → VMs ([`vm`]), each tier behind the [`tier::Tier`]
//!   trait, rolling back on failure and reporting each step as an [`Event`] ([`progress`] shows
//!   them). The returned [`Running`] holds the plan: [`Running::tick`] applies restart policies
//!   ([`restart`]) and `carve stop`/`start` requests, [`Running::supervise`] loops until a stop
//!   signal ([`process`]), [`Running::down`] takes it down. [`Engine::restore_plan`] cleans up a
//!   plan whose holder crashed; [`restore`] undoes the journals of any crashed carve process
//!   (`carve restore`).
//! - [`state`]: /run/carve/PLAN (plan copy, per-partition state, lock) and the claims check
//!   that refuses a plan colliding with a running one; [`ops`] is what other processes do with a
//!   running plan (`ps`, `stop`, `start`, `down`); [`cgroup`] reads usage for `carve ps`.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = carve_engine::resolve::load("examples/container.toml".as_ref())
//!     .map_err(|problems| problems.join("\n"))?;
//! let engine = carve_engine::Engine::from_env();
//! let mut show = carve_engine::progress::Display::new();
//! let running = engine.up(plan, &mut |e| show.show(&e))?;
//! carve_engine::process::catch_stop_signals();
//! running.supervise(&engine, &mut |e| show.show(&e))?; // until Ctrl-C, then down
//! # Ok(()) }
//! ```

pub mod bundle;
pub mod cgroup;
pub mod console;
pub mod dedicated;
pub mod engine;
pub mod image;
pub mod network;
pub mod oci;
pub mod oneshot;
pub mod ops;
pub mod process;
pub mod progress;
pub mod resolve;
pub mod restart;
pub mod restore;
pub mod single_vm;
pub mod spec;
pub mod state;
pub mod tier;
pub mod vm;

pub use engine::{Engine, Event, Running, UpError};
