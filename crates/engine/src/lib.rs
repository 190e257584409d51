//! carve's engine: applies one plan across the tiers and takes it down again.
//!
//! # Tour
//! - [`spec`]: the resolved plan the engine acts on ([`spec::PlanSpec`]: partitions with their
//!   final cores and memory, networks with their bridges); [`resolve::load`] makes one from a
//!   plan file through `carve_core`'s parser and allocator.
//! - [`image`]: root filesystems for containers (`carve image busybox|debian DIR`).
//! - [`bundle`]: a container partition → an OCI bundle (config.json) for the runtime.
//! - [`Engine::up`] applies a plan: journal → networks ([`network`]) → dedicated → containers
//!   ([`oci`]) → VMs, each tier behind the [`tier::Tier`] trait, rolling back on failure; the
//!   returned [`Running`] is supervised with [`Running::tick`] (restart policies, [`restart`])
//!   and taken down with [`Running::down`]. [`Engine::restore_plan`] cleans up after a crash.
//! - [`state`]: /run/carve/PLAN (plan copy, per-partition state, lock) and the claims check
//!   that refuses a plan colliding with a running one; [`cgroup`] reads usage for `carve ps`.

pub mod bundle;
pub mod cgroup;
pub mod dedicated;
pub mod engine;
pub mod image;
pub mod network;
pub mod oci;
pub mod ops;
pub mod process;
pub mod progress;
pub mod resolve;
pub mod restart;
pub mod spec;
pub mod state;
pub mod tier;
pub mod vm;

pub use engine::{Engine, Event, Running, UpError};
