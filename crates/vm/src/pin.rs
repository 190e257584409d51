//! vCPU pinning: each vCPU thread on its planned core, optionally SCHED_FIFO; QEMU's other
//! threads (main loop, I/O, RCU) on the housekeeping cores.

use crate::host::threads;
use crate::qmp::CpuInfo;
use carve_core::CpuSet;
use std::path::Path;

/// Pinning errors.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// QEMU reported fewer vCPU threads than planned cores.
    #[error("QEMU reports {got} vCPU thread(s), the plan has {want}")]
    Count {
        /// Threads QEMU reported.
        got: usize,
        /// vCPUs planned.
        want: usize,
    },
    /// sched_setaffinity or sched_setscheduler failed on a thread.
    #[error("could not {what} thread {tid} of QEMU pid {pid}: {source}")]
    Sched {
        /// "pin" or "set SCHED_FIFO on".
        what: &'static str,
        /// QEMU's pid.
        pid: i32,
        /// The thread.
        tid: i32,
        /// The cause.
        source: std::io::Error,
    },
}

/// One vCPU's placement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VcpuPin {
    /// vCPU index.
    pub index: usize,
    /// Its host thread.
    pub thread_id: i32,
    /// The core it was pinned to.
    pub core: usize,
}

/// The placement plan: vCPU i (by `cpu-index`) → the i-th planned core.
pub fn plan(cpus: &[CpuInfo], cores: &[usize]) -> Result<Vec<VcpuPin>, PinError> {
    if cpus.len() < cores.len() {
        return Err(PinError::Count {
            got: cpus.len(),
            want: cores.len(),
        });
    }
    let mut sorted = cpus.to_vec();
    sorted.sort_by_key(|c| c.cpu_index);
    Ok(sorted
        .iter()
        .zip(cores)
        .map(|(c, &core)| VcpuPin {
            index: c.cpu_index,
            thread_id: c.thread_id,
            core,
        })
        .collect())
}

/// Sets the allowed cores of thread `tid`.
pub fn set_affinity(tid: i32, cpus: &CpuSet) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus.iter().filter(|&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: c < CPU_SETSIZE, so CPU_SET writes inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: set is a valid cpu_set_t of the size passed; tid is just a number to the kernel.
    let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_fifo(tid: i32, prio: u32) -> std::io::Result<()> {
    let p = libc::sched_param {
        sched_priority: prio as i32,
    };
    // SAFETY: p is a valid sched_param for the duration of the call.
    let r = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &p) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Applies the plan to QEMU process `pid`: vCPU threads to their cores (and SCHED_FIFO at
/// `rt_priority`), every other thread to `housekeeping`. Threads that exit meanwhile are skipped.
/// QEMU's threads die with it, so nothing here is journaled.
pub fn apply(
    proc_root: &Path,
    pid: i32,
    pins: &[VcpuPin],
    housekeeping: &CpuSet,
    rt_priority: Option<u32>,
) -> Result<(), PinError> {
    let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ESRCH);
    for p in pins {
        if let Err(e) = set_affinity(p.thread_id, &CpuSet::from_iter([p.core])) {
            return Err(PinError::Sched {
                what: "pin",
                pid,
                tid: p.thread_id,
                source: e,
            });
        }
        if let Some(prio) = rt_priority {
            set_fifo(p.thread_id, prio).map_err(|source| PinError::Sched {
                what: "set SCHED_FIFO on",
                pid,
                tid: p.thread_id,
                source,
            })?;
        }
    }
    for tid in threads(proc_root, pid) {
        if pins.iter().any(|p| p.thread_id == tid) {
            continue;
        }
        match set_affinity(tid, housekeeping) {
            Ok(()) => {}
            Err(e) if gone(&e) => {}
            Err(source) => {
                return Err(PinError::Sched {
                    what: "pin",
                    pid,
                    tid,
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpus_map_to_planned_cores_by_index() {
        let cpus = vec![
            CpuInfo {
                cpu_index: 1,
                thread_id: 11,
            },
            CpuInfo {
                cpu_index: 0,
                thread_id: 10,
            },
        ];
        let p = plan(&cpus, &[3, 5]).unwrap();
        assert_eq!(
            p.iter()
                .map(|x| (x.index, x.thread_id, x.core))
                .collect::<Vec<_>>(),
            vec![(0, 10, 3), (1, 11, 5)]
        );
        assert!(matches!(
            plan(&cpus[..1], &[3, 5]),
            Err(PinError::Count { got: 1, want: 2 })
        ));
    }

    #[test]
    fn affinity_of_a_real_thread() {
        // A thread of our own: pin it to core 0 and read it back from /proc.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        set_affinity(tid, &CpuSet::from_iter([0])).unwrap();
        let pid = std::process::id() as i32;
        let got = crate::host::allowed_cpus(Path::new("/proc"), pid, tid).unwrap();
        assert_eq!(got.to_string(), "0");
        done_tx.send(()).unwrap();
        h.join().unwrap();
    }
}
