//! Starting the dedicated process: pinned, in the partition's cpuset, with its scheduling policy,
//! resource limits, THP off, and its memory locked.
//!
//! # Locking memory across exec
//! mlockall() locks the *calling* address space; execve() replaces it, so a launcher cannot lock
//! memory for the program it executes — MCL_FUTURE does not survive exec either. The usual answers
//! are "the application calls mlockall itself" (cyclictest -m, DPDK apps; the launcher only raises
//! RLIMIT_MEMLOCK) or an LD_PRELOAD constructor (dynamic binaries only). carve does the first for
//! apps that want to (`CARVE_MLOCK=1` in the environment says memory locking is expected), and for
//! every program, static or dynamic, makes the call *in the new program*: the child asks to be
//! traced (PTRACE_TRACEME) before exec, so it stops at its first instruction after exec; carve
//! then runs one `syscall` instruction in it — mlockall(MCL_CURRENT | MCL_FUTURE) — by writing
//! `0f 05` over the entry point, setting the registers, single-stepping, and putting text and
//! registers back before detaching. MCL_CURRENT locks and faults in what is mapped at that point
//! (the executable, the loader, the stack); MCL_FUTURE makes every later mapping (libraries, heap,
//! thread stacks) locked and populated when it is mapped — the prefault. /proc/PID/status then
//! shows VmLck growing with the program. x86_64 only; elsewhere `mlock` reports unsupported.

use carve_core::CpuSet;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::spec::{RlimitSpec, SchedPolicy};

/// Why the process could not be started as asked.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The command is empty.
    #[error("no command to run")]
    NoCommand,
    /// fork/exec or a setting applied in the child before exec failed.
    #[error("start {command:?}: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The cause (the child's failing setting reports its errno here).
        source: std::io::Error,
    },
    /// Locking the new program's memory failed.
    #[error("lock memory of pid {pid}: {why}")]
    Mlock {
        /// The child.
        pid: i32,
        /// What failed.
        #[source]
        why: MlockError,
    },
}

/// Why the launched program's memory could not be locked (ptrace'd `mlockall` after exec).
#[derive(Debug, thiserror::Error)]
pub enum MlockError {
    /// A ptrace or wait call failed.
    #[error("{call}: {source}")]
    Call {
        /// The call.
        call: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The child was not stopped at its exec.
    #[error("child did not stop after exec (status {0:#x})")]
    NoExecStop(i32),
    /// The child did not stop after the single step.
    #[error("child did not stop after the step (status {0:#x})")]
    NoStepStop(i32),
    /// `mlockall` ran in the program and failed.
    #[error("mlockall in the program failed: {0}")]
    Mlockall(#[source] std::io::Error),
    /// Not implemented on this architecture.
    #[error("memory locking of a launched program is implemented for x86_64 only")]
    Unsupported,
}

/// How to start the dedicated process.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// The CPUs it may run on.
    pub cpus: CpuSet,
    /// Its scheduling policy.
    pub sched: SchedPolicy,
    /// Resource limits.
    pub rlimits: Vec<RlimitSpec>,
    /// PR_SET_THP_DISABLE (kept across exec).
    pub thp_disable: bool,
    /// mlockall(MCL_CURRENT|MCL_FUTURE) in the new program (see the module docs).
    pub mlock: bool,
    /// A cgroup file to write the child's pid into before exec (the partition's cpuset).
    pub join: Option<PathBuf>,
}

#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

/// The scheduling attributes of task `pid`, as sched_getattr(2) returns them:
/// (policy, priority, runtime, deadline, period).
pub fn sched_getattr(pid: i32) -> std::io::Result<(u32, u32, u64, u64, u64)> {
    let mut a = SchedAttr::default();
    // SAFETY: `a` is a writable sched_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            pid,
            &mut a as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as u32,
            0u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((
        a.sched_policy,
        a.sched_priority,
        a.sched_runtime,
        a.sched_deadline,
        a.sched_period,
    ))
}

/// Sets the scheduling policy of task `pid` (0 = the caller) with sched_setattr(2).
pub fn set_sched(pid: i32, policy: &SchedPolicy) -> std::io::Result<()> {
    let mut a = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        ..Default::default()
    };
    match *policy {
        SchedPolicy::Other => a.sched_policy = libc::SCHED_OTHER as u32,
        SchedPolicy::Fifo(p) => {
            a.sched_policy = libc::SCHED_FIFO as u32;
            a.sched_priority = p.into();
        }
        SchedPolicy::Rr(p) => {
            a.sched_policy = libc::SCHED_RR as u32;
            a.sched_priority = p.into();
        }
        SchedPolicy::Deadline {
            runtime_ns,
            deadline_ns,
            period_ns,
        } => {
            a.sched_policy = 6; // SCHED_DEADLINE
                                // A deadline task may not fork (its bandwidth cannot be split): with
                                // SCHED_FLAG_RESET_ON_FORK its children start as SCHED_OTHER instead of failing.
            a.sched_flags = 0x01;
            a.sched_runtime = runtime_ns;
            a.sched_deadline = deadline_ns;
            a.sched_period = period_ns;
        }
    }
    // SAFETY: `a` is an initialised sched_attr whose size field matches; no allocation happens, so
    // this is usable between fork and exec.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, pid, &a as *const SchedAttr, 0u32) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn check(r: libc::c_long) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes the decimal `n` into `buf` without allocating (safe between fork and exec).
fn itoa(mut n: u32, buf: &mut [u8; 12]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Starts the process. When `mlock` is set the child is locked before this returns.
pub fn launch(cfg: &LaunchConfig) -> Result<Child, LaunchError> {
    launch_with_output(cfg, None)
}

/// Like [`launch`], with the child's stdout and stderr going to `output` (a log file) instead of
/// carve's own.
pub fn launch_with_output(
    cfg: &LaunchConfig,
    output: Option<&std::fs::File>,
) -> Result<Child, LaunchError> {
    let (prog, args) = cfg.command.split_first().ok_or(LaunchError::NoCommand)?;
    let spawn_err = |source| LaunchError::Spawn {
        command: prog.clone(),
        source,
    };
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if let Some(f) = output {
        cmd.stdout(f.try_clone().map_err(spawn_err)?);
        cmd.stderr(f.try_clone().map_err(spawn_err)?);
    }
    for (k, v) in &cfg.env {
        cmd.env(k, v);
    }
    let join = match &cfg.join {
        Some(p) => Some(
            CString::new(p.as_os_str().as_encoded_bytes())
                .map_err(|e| spawn_err(std::io::Error::other(e)))?,
        ),
        None => None,
    };
    let cpus = cfg.cpus.clone();
    // Built before fork: the closure below must not allocate.
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus.iter().filter(|&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: c < CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    let rlimits = cfg.rlimits.clone();
    let sched = cfg.sched;
    let thp = cfg.thp_disable;
    let trace = cfg.mlock && cfg!(target_arch = "x86_64");
    // SAFETY: the closure runs in the child between fork and exec and only makes syscalls on data
    // prepared above (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            // carve blocks SIGINT/SIGTERM in itself to handle them on a thread; the program
            // must start with the default mask.
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if let Some(path) = &join {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut buf = [0u8; 12];
                let s = itoa(libc::getpid() as u32, &mut buf);
                let r = libc::write(fd, s.as_ptr().cast(), s.len());
                libc::close(fd);
                check(r as libc::c_long)?;
            }
            check(libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set).into())?;
            if thp {
                check(libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0).into())?;
            }
            for r in &rlimits {
                let lim = libc::rlimit {
                    rlim_cur: r.soft,
                    rlim_max: r.hard,
                };
                check(libc::setrlimit(r.resource as _, &lim).into())?;
            }
            if sched != SchedPolicy::Other {
                set_sched(0, &sched)?;
            }
            if trace {
                check(libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0))?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    if trace {
        let pid = child.id() as i32;
        if let Err(why) = lock_after_exec(pid) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(LaunchError::Mlock { pid, why });
        }
    }
    Ok(child)
}

#[cfg(target_arch = "x86_64")]
fn lock_after_exec(pid: i32) -> Result<(), MlockError> {
    let os = |call: &'static str| MlockError::Call {
        call,
        source: std::io::Error::last_os_error(),
    };
    let mut status = 0;
    // SAFETY: waits for our own child; status is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    if r != pid {
        return Err(os("waitpid"));
    }
    if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGTRAP {
        return Err(MlockError::NoExecStop(status));
    }
    // SAFETY: (this block and the ptrace calls in it) the child is our tracee, stopped; regs is a
    // valid user_regs_struct; addresses come from the tracee's own registers.
    unsafe {
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        if libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs) < 0 {
            return Err(os("PTRACE_GETREGS"));
        }
        let saved = regs;
        let at = regs.rip;
        *libc::__errno_location() = 0;
        let word = libc::ptrace(libc::PTRACE_PEEKTEXT, pid, at, 0);
        if word == -1 && *libc::__errno_location() != 0 {
            return Err(os("PTRACE_PEEKTEXT"));
        }
        // `syscall` is 0f 05; x86 is little-endian, so the low two bytes of the word.
        let patched = (word as u64 & !0xffff) | 0x050f;
        if libc::ptrace(libc::PTRACE_POKETEXT, pid, at, patched) < 0 {
            return Err(os("PTRACE_POKETEXT"));
        }
        regs.rax = libc::SYS_mlockall as u64;
        regs.rdi = (libc::MCL_CURRENT | libc::MCL_FUTURE) as u64;
        // Not inside a system call: keeps the kernel from treating the stop as a restartable one.
        regs.orig_rax = u64::MAX;
        let restore = |pid: i32| {
            libc::ptrace(libc::PTRACE_POKETEXT, pid, at, word);
            libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &saved);
        };
        if libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &regs) < 0 {
            let e = os("PTRACE_SETREGS");
            restore(pid);
            return Err(e);
        }
        if libc::ptrace(libc::PTRACE_SINGLESTEP, pid, 0, 0) < 0 {
            return Err(os("PTRACE_SINGLESTEP"));
        }
        if libc::waitpid(pid, &mut status, libc::__WALL) != pid || !libc::WIFSTOPPED(status) {
            return Err(MlockError::NoStepStop(status));
        }
        let mut after: libc::user_regs_struct = std::mem::zeroed();
        if libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut after) < 0 {
            return Err(os("PTRACE_GETREGS"));
        }
        restore(pid);
        if libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) < 0 {
            return Err(os("PTRACE_DETACH"));
        }
        let ret = after.rax as i64;
        if ret != 0 {
            return Err(MlockError::Mlockall(std::io::Error::from_raw_os_error(
                -ret as i32,
            )));
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "x86_64"))]
fn lock_after_exec(_pid: i32) -> Result<(), MlockError> {
    Err(MlockError::Unsupported)
}

/// One field of /proc/PID/status ("VmLck", "Cpus_allowed_list", "THP_enabled").
pub fn status_field(proc: &Path, pid: i32, field: &str) -> Option<String> {
    let s = std::fs::read_to_string(proc.join(format!("{pid}/status"))).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn itoa_writes_decimal() {
        let mut b = [0u8; 12];
        assert_eq!(itoa(0, &mut b), b"0");
        assert_eq!(itoa(4194303, &mut b), b"4194303");
    }

    #[test]
    fn launched_program_is_locked_pinned_and_thp_off() {
        if !carve_testkit_is_root() {
            return;
        }
        let mine = crate::sys::get_affinity(0).unwrap();
        let cpu = mine.iter().next().unwrap();
        let cfg = LaunchConfig {
            command: vec!["sleep".into(), "5".into()],
            env: vec![],
            cpus: [cpu].into_iter().collect(),
            sched: SchedPolicy::Other,
            rlimits: vec!["nofile=512:1024".parse().unwrap()],
            thp_disable: true,
            mlock: true,
            join: None,
        };
        let mut child = launch(&cfg).unwrap();
        let pid = child.id() as i32;
        let p = Path::new("/proc");
        let lck = status_field(p, pid, "VmLck").unwrap();
        let kb: u64 = lck.trim_end_matches(" kB").trim().parse().unwrap();
        assert!(kb > 0, "VmLck {lck}");
        assert_eq!(
            status_field(p, pid, "Cpus_allowed_list").unwrap(),
            cpu.to_string()
        );
        assert_eq!(status_field(p, pid, "THP_enabled").unwrap(), "0");
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        assert!(line.contains("512") && line.contains("1024"), "{line}");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn carve_testkit_is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
}
