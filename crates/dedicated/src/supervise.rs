//! Running a command to its end while SIGINT/SIGTERM/SIGHUP mean "stop it and restore the host".
//!
//! [`TermSignals::block`] blocks those signals in the calling thread before any other thread
//! exists (threads inherit the mask), so they are never delivered asynchronously: a thread waits
//! for them with sigtimedwait and forwards them to the child, which the launcher starts with an
//! empty mask. The caller then waits for the child and restores the host in ordinary code.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

fn set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut s: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: s is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut s) };
    for sig in SIGNALS {
        // SAFETY: s is a valid sigset_t and sig a valid signal number.
        unsafe { libc::sigaddset(&mut s, sig) };
    }
    s
}

/// The termination signals, blocked in this process and received by a thread.
pub struct TermSignals {
    received: Arc<AtomicI32>,
    target: Arc<AtomicI32>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl TermSignals {
    /// Blocks the signals (call this first, before other threads start) and starts the receiver.
    /// A signal is forwarded to the target process set with [`TermSignals::forward_to`]; if the
    /// target is still there `grace` later, it gets SIGKILL.
    pub fn block(grace: Duration) -> Self {
        let s = set();
        // SAFETY: s is a valid sigset_t; the old mask is not needed.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &s, std::ptr::null_mut()) };
        let received = Arc::new(AtomicI32::new(0));
        let target = Arc::new(AtomicI32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, t, st) = (received.clone(), target.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("carve-signals".into())
            .spawn(move || {
                let s = set();
                let timeout = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                };
                let mut kill_at: Option<Instant> = None;
                // A signal that came before there was a target (during setup, or between the
                // launch and forward_to) is kept and sent once the target is known: it is never
                // lost, so the command never runs to its end after a stop request.
                let mut pending = 0;
                while !st.load(Ordering::Relaxed) {
                    // SAFETY: s and timeout are valid; siginfo is not needed (null).
                    let sig = unsafe { libc::sigtimedwait(&s, std::ptr::null_mut(), &timeout) };
                    let pid = t.load(Ordering::Relaxed);
                    if sig > 0 {
                        r.store(sig, Ordering::Relaxed);
                        pending = sig;
                    }
                    if pending > 0 && pid > 0 {
                        // SAFETY: kill has no memory effects; pid is our child.
                        unsafe { libc::kill(pid, pending) };
                        pending = 0;
                        kill_at.get_or_insert(Instant::now() + grace);
                    }
                    if kill_at.is_some_and(|k| Instant::now() >= k) && pid > 0 {
                        // SAFETY: as above.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        kill_at = None;
                    }
                }
            })
            .expect("spawn signal thread");
        TermSignals {
            received,
            target,
            stop,
            handle: Some(handle),
        }
    }

    /// Forwards signals to `pid` from now on (0 = nobody).
    pub fn forward_to(&self, pid: i32) {
        self.target.store(pid, Ordering::Relaxed);
    }

    /// The last signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.received.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }
}

impl Drop for TermSignals {
    fn drop(&mut self) {
        self.target.store(0, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
