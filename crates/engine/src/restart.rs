//! Restart policies: whether and when the supervisor starts an exited partition again.

use crate::spec::{Restart, RestartPolicy};
use std::time::Duration;

/// The longest delay between restarts, as a multiple of the first.
pub const BACKOFF_MAX_FACTOR: u32 = 64;
/// A partition that ran this long before exiting starts its backoff afresh.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How a partition's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// It is gone and its status is unknown (not our child).
    Unknown,
}

impl Exit {
    /// Whether this counts as a failure for `on-failure`.
    pub fn failed(&self) -> bool {
        !matches!(self, Exit::Code(0))
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::Unknown => f.write_str("gone"),
        }
    }
}

/// The supervisor's memory of one partition's exits.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    consecutive: u32,
}

impl Backoff {
    /// After an exit `exit` of a process that ran for `ran`: the delay before restarting it, or
    /// `None` when the policy leaves it stopped.
    pub fn on_exit(&mut self, r: &Restart, exit: Exit, ran: Duration) -> Option<Duration> {
        let restart = match r.policy {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => exit.failed(),
            RestartPolicy::Always => true,
        };
        if !restart {
            self.consecutive = 0;
            return None;
        }
        if ran >= STABLE_AFTER {
            self.consecutive = 0;
        }
        if r.max_retries.is_some_and(|m| self.consecutive >= m) {
            return None;
        }
        let start = Duration::from_millis(r.backoff_ms);
        let delay = start
            .saturating_mul(1u32 << self.consecutive.min(16))
            .min(start.saturating_mul(BACKOFF_MAX_FACTOR));
        self.consecutive = self.consecutive.saturating_add(1);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(5);

    fn r(policy: RestartPolicy) -> Restart {
        Restart {
            policy,
            max_retries: None,
            backoff_ms: 100,
        }
    }

    #[test]
    fn no_never_restarts() {
        let mut b = Backoff::default();
        assert_eq!(b.on_exit(&r(RestartPolicy::No), Exit::Code(1), QUICK), None);
        assert_eq!(
            b.on_exit(&r(RestartPolicy::No), Exit::Signal(9), QUICK),
            None
        );
    }

    #[test]
    fn on_failure_restarts_failures_only_with_doubling_capped_backoff() {
        let p = r(RestartPolicy::OnFailure);
        let mut b = Backoff::default();
        assert_eq!(b.on_exit(&p, Exit::Code(0), QUICK), None);
        let delays: Vec<_> = (0..10)
            .map(|_| b.on_exit(&p, Exit::Code(2), QUICK).unwrap())
            .collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[2], Duration::from_millis(400));
        assert_eq!(delays[9], Duration::from_millis(6400));
        assert!(b.on_exit(&p, Exit::Signal(9), QUICK).is_some());
        assert!(b.on_exit(&p, Exit::Unknown, QUICK).is_some());
    }

    #[test]
    fn max_retries_gives_up_and_a_long_run_starts_afresh() {
        let mut p = r(RestartPolicy::Always);
        p.max_retries = Some(2);
        let mut b = Backoff::default();
        assert!(b.on_exit(&p, Exit::Code(0), QUICK).is_some());
        assert!(b.on_exit(&p, Exit::Code(0), QUICK).is_some());
        assert_eq!(b.on_exit(&p, Exit::Code(0), QUICK), None);
        assert_eq!(
            b.on_exit(&p, Exit::Code(0), STABLE_AFTER),
            Some(Duration::from_millis(100))
        );
    }
}
