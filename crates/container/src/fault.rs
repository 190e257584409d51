//! Fault points for crash tests: when `CARVE_OCI_FAULT` names a point, the runtime SIGKILLs
//! itself there — exactly what a `kill -9` at that moment would do; `POINT:stop` SIGSTOPs it
//! there instead (a runtime process stuck while holding its locks, for the bounded-wait tests).
//! Unset, a point costs one environment lookup. Only with the `fault-injection` feature, which
//! the tests turn on (carve-oci's dev-dependency) and release builds never do: without it a
//! point is an empty inline function and the binary does not read `CARVE_OCI_FAULT` at all.

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

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// Dies with SIGKILL if `CARVE_OCI_FAULT` is `name`; stops with SIGSTOP if it is `name:stop`.
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    let Some(v) = std::env::var_os("CARVE_OCI_FAULT") else {
        return;
    };
    let sig = if v == name {
        libc::SIGKILL
    } else if v.as_encoded_bytes().strip_suffix(b":stop") == Some(name.as_bytes()) {
        libc::SIGSTOP
    } else {
        return;
    };
    // SAFETY: raise has no memory effects; SIGKILL and SIGSTOP cannot be caught.
    unsafe { libc::raise(sig) };
}
