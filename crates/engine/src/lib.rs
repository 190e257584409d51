//! carve's engine: applies one plan across the tiers and takes it down again.
//!
//! # Tour
//! - [`spec`]: the resolved plan the engine acts on ([`spec::PlanSpec`]: partitions with their
//!   final cores and memory, networks with their bridges).
//! - [`image`]: root filesystems for containers (`carve image busybox|debian DIR`).
//! - [`bundle`]: a container partition → an OCI bundle (config.json) for the runtime.

pub mod bundle;
pub mod image;
pub mod spec;
