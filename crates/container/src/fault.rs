//! Fault points for crash tests: when `CARVE_OCI_FAULT` names a point, the runtime SIGKILLs
//! itself there — exactly what a `kill -9` at that moment would do. Unset (always, outside tests),
//! a point costs one environment lookup.

/// Every fault point, in the order a create/start/delete passes them.
pub const POINTS: &[&str] = &[
    "create:dir",
    "create:cgroup",
    "create:clone",
    "create:go",
    "create:ready",
    "start:marked",
    "delete:killed",
    "delete:cgroup",
];

/// Dies with SIGKILL if `CARVE_OCI_FAULT` is `name`.
pub fn point(name: &str) {
    if std::env::var_os("CARVE_OCI_FAULT").is_some_and(|v| v == name) {
        // SAFETY: raise has no memory effects; SIGKILL cannot be caught.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
