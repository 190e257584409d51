//! carve's pure core: plan model, host model, allocator. Nothing here changes the host.
//!
//! # Tour
//! - [`cpuset::CpuSet`]: CPU sets in the kernel's list and mask formats.

pub mod cpuset;

pub use cpuset::CpuSet;
