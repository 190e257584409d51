//! carve's pure core: plan model, host model, allocator. Nothing here changes the host.
//!
//! # Tour
//! - [`cpuset::CpuSet`]: CPU sets in the kernel's list and mask formats.
//! - [`host::Host`]: what the machine offers (CPUs, caches, NUMA, memory, huge pages, IRQs,
//!   kernel isolation settings, cgroup layout, KVM). [`host::read_host`] reads it from /proc and
//!   /sys; [`host::Host::from_json`] loads a fixture; [`host::Host::advice`] says what it can
//!   and cannot give each tier.
//! - [`plan::Plan`]: the TOML plan, parsed strictly; every [`plan::Problem`] names the
//!   partition, the field and the line:column.
//! - [`alloc::allocate`]: plan + host → [`alloc::Allocation`] (who gets which CPUs, memory,
//!   huge pages, addresses), or every problem at once.
//! - [`interrupts`]: /proc/interrupts, counts per CPU and the fields after them.
//! - [`mountinfo`]: /proc/self/mountinfo, parsed once with its octal escapes undone.
//! - [`units`]: sizes ("64MiB") and durations ("500us") as plans write them.

pub mod alloc;
pub mod cpuset;
pub mod host;
pub mod interrupts;
pub mod mountinfo;
pub mod plan;
pub mod units;

pub use cpuset::CpuSet;
pub use host::{read_host, Host};
pub use plan::{Plan, Problem};
