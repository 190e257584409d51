//! A killed test leaks nothing: a watcher process undoes what the test registered once the test
//! process is gone, however it ended (a panic, nextest's timeout SIGKILL, `kill -9`).
//!
//! The first [`reaper`] call forks a small watcher. It leaves the test's session (nextest
//! signals the test's process group on a timeout), closes every inherited fd (a kept pipe would
//! hold nextest's output capture open, a kept flock the host lock) except a pidfd of the test
//! process, and sleeps in `poll` on that pidfd. Tests append what they create to a registry file,
//! `/run/carve-test-reaper/PID-START.jsonl`, one [`Item`] a line, *before* creating it. When the
//! test process ends the watcher undoes the registry in reverse order and removes it. Each step
//! tolerates what is already gone, so after a test that cleaned up by itself it does nothing.
//!
//! Forking a multithreaded process: the child runs only syscalls until the test is gone; then it
//! is single-threaded and uses malloc (glibc makes it usable in a fork child), files and
//! `std::process::Command`, never Rust's stdout/stderr locks.
//!
//! `carve-leakcheck reap-stale` runs the same undo for registries whose test *and* watcher are
//! gone (a reboot, a killed watcher), at the next suite start.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where registries live.
pub const REGISTRY_DIR: &str = "/run/carve-test-reaper";

/// One thing a test created, and so one thing to undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// A process (pid and start time, so a recycled pid is left alone): SIGKILL.
    Process {
        /// The pid.
        pid: i32,
        /// Its start time in clock ticks (`/proc/PID/stat` field 22).
        start_time: u64,
    },
    /// A command run at undo (e.g. `carve-oci --root R delete --force ID`, `carve vm stop
    /// --force NAME`): the project's own cleanup. Waited for at most 60 s.
    Command {
        /// The argv, binary first.
        argv: Vec<String>,
    },
    /// A host change journal directory: every journal in it whose holder is gone is undone
    /// (carve-journal's `restore_orphans`, links and namespaces through `ip`).
    Journals {
        /// The journal root.
        dir: PathBuf,
    },
    /// A cgroup by name on every hierarchy under /sys/fs/cgroup: its tasks are killed and its
    /// directories removed, deepest first.
    Cgroup {
        /// The path below each hierarchy root (`carve-t-x/inner`).
        name: String,
    },
    /// A named network namespace (`ip netns del`).
    Netns {
        /// Its name in /run/netns.
        name: String,
    },
    /// A link in the host namespace (`ip link del`).
    Link {
        /// The interface name.
        name: String,
    },
    /// A mount point (lazy unmount).
    Mount {
        /// The mount point.
        path: PathBuf,
    },
    /// A file or directory tree.
    Remove {
        /// The path.
        path: PathBuf,
    },
}

/// The test process's registry; see the module docs.
pub struct Reaper {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    watcher: i32,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// This test process's reaper; the first call starts the watcher.
pub fn reaper() -> &'static Reaper {
    REAPER.get_or_init(|| Reaper::start().expect("start the test reaper"))
}

impl Reaper {
    fn start() -> std::io::Result<Reaper> {
        std::fs::create_dir_all(REGISTRY_DIR)?;
        let me = std::process::id() as i32;
        let path = Path::new(REGISTRY_DIR).join(format!("{me}-{}.jsonl", start_time(me)));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let watcher = spawn_watcher(me, &path)?;
        Ok(Reaper {
            path,
            file: Mutex::new(file),
            watcher,
        })
    }

    /// The registry file.
    pub fn registry(&self) -> &Path {
        &self.path
    }

    /// The watcher's pid.
    pub fn watcher_pid(&self) -> i32 {
        self.watcher
    }

    /// Registers `item` (before the test creates it).
    pub fn register(&self, item: Item) {
        let mut line = serde_json::to_string(&item).expect("registry items serialize");
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(line.as_bytes())
            .expect("append to the reaper registry");
    }

    /// Registers a running process by pid.
    pub fn process(&self, pid: i32) {
        self.register(Item::Process {
            pid,
            start_time: start_time(pid),
        });
    }

    /// Registers a cleanup command.
    pub fn command<S: AsRef<str>>(&self, argv: &[S]) {
        self.register(Item::Command {
            argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
        });
    }

    /// Registers a journal root.
    pub fn journals(&self, dir: impl Into<PathBuf>) {
        self.register(Item::Journals { dir: dir.into() });
    }

    /// Registers a cgroup name (on every hierarchy).
    pub fn cgroup(&self, name: &str) {
        self.register(Item::Cgroup { name: name.into() });
    }

    /// Registers a named network namespace.
    pub fn netns(&self, name: &str) {
        self.register(Item::Netns { name: name.into() });
    }

    /// Registers a host link.
    pub fn link(&self, name: &str) {
        self.register(Item::Link { name: name.into() });
    }

    /// Registers a mount point.
    pub fn mount(&self, path: impl Into<PathBuf>) {
        self.register(Item::Mount { path: path.into() });
    }

    /// Registers a path to remove.
    pub fn remove(&self, path: impl Into<PathBuf>) {
        self.register(Item::Remove { path: path.into() });
    }
}

/// A process's start time in clock ticks, 0 when it is gone.
pub fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19)?.parse().ok())
        .unwrap_or(0)
}

/// Whether `pid` still is the process that started at `start`.
pub fn alive(pid: i32, start: u64) -> bool {
    let st = start_time(pid);
    st != 0 && st == start && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|s| s == "Z")
}

fn spawn_watcher(test: i32, registry: &Path) -> std::io::Result<i32> {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, test, 0) } as i32;
    if pidfd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let registry = registry.to_path_buf();
    use std::os::fd::AsRawFd;
    let null_fd = null.as_raw_fd();
    // SAFETY: fork; the child runs only async-signal-safe syscalls until `poll` returns, i.e.
    // until the test process (and so every other thread of this image) is gone.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: plain syscalls on fds this process owns; see the module docs for why each fd
        // goes.
        unsafe {
            libc::setsid();
            libc::dup2(null_fd, 0);
            libc::dup2(null_fd, 1);
            libc::dup2(null_fd, 2);
            libc::dup2(pidfd, 3);
            libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
            let mut p = libc::pollfd {
                fd: 3,
                events: libc::POLLIN,
                revents: 0,
            };
            while libc::poll(&mut p, 1, -1) < 0 {}
        }
        undo_registry(&registry);
        // SAFETY: _exit skips the parent's atexit handlers and destructors, which are not ours.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closing our copy of the pidfd; the watcher has its own.
    unsafe { libc::close(pidfd) };
    drop(null);
    Ok(pid)
}

/// Reads a registry and undoes it in reverse order, then removes it. Used by the watcher and by
/// `carve-leakcheck reap-stale`.
pub fn undo_registry(registry: &Path) {
    let text = std::fs::read_to_string(registry).unwrap_or_default();
    let items: Vec<Item> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for item in items.iter().rev() {
        undo(item);
    }
    let _ = std::fs::remove_file(registry);
}

/// Undoes one item; every step tolerates what is already gone.
pub fn undo(item: &Item) {
    match item {
        Item::Process { pid, start_time } => kill_and_wait(*pid, *start_time),
        Item::Command { argv } => run_bounded(argv, Duration::from_secs(60)),
        Item::Journals { dir } => {
            carve_journal::restore_orphans(dir, Some(ip_link_undo));
        }
        Item::Cgroup { name } => remove_cgroup_everywhere(name),
        Item::Netns { name } => run_bounded(&["ip", "netns", "del", name], Duration::from_secs(10)),
        Item::Link { name } => run_bounded(&["ip", "link", "del", name], Duration::from_secs(10)),
        Item::Mount { path } => {
            if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
                // SAFETY: a valid C string; umount2 has no memory effects.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        Item::Remove { path } => {
            if std::fs::remove_dir_all(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn kill_and_wait(pid: i32, start: u64) {
    if !alive(pid, start) {
        return;
    }
    // SAFETY: kill takes a pid, checked to be the registered process (pid + start time).
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid, start) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run_bounded<S: AsRef<str>>(argv: &[S], limit: Duration) {
    let Some((bin, args)) = argv.split_first() else {
        return;
    };
    let child = std::process::Command::new(bin.as_ref())
        .args(args.iter().map(|a| a.as_ref()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return };
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The journal's link undo, with `ip` (testkit speaks no netlink): a missing link or namespace
/// counts as removed.
pub fn ip_link_undo(change: &carve_journal::Change) -> Result<(), carve_journal::ChangeError> {
    let argv: Vec<String> = match change {
        carve_journal::Change::Link { name, netns } => match netns {
            Some(ns) => ["ip", "-n", ns, "link", "del", name]
                .map(String::from)
                .into(),
            None => ["ip", "link", "del", name].map(String::from).into(),
        },
        carve_journal::Change::Netns { name } => {
            ["ip", "netns", "del", name].map(String::from).into()
        }
        _ => return Ok(()),
    };
    run_bounded(&argv, Duration::from_secs(10));
    Ok(())
}

/// Kills the tasks of cgroup `name` and removes it (children first) on every hierarchy.
pub fn remove_cgroup_everywhere(name: &str) {
    let name = name.trim_start_matches('/');
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for root in roots.flatten() {
        let dir = root.path().join(name);
        if dir.is_dir() {
            remove_cgroup_tree(&dir);
        }
    }
}

/// Kills every task below `dir` and removes the cgroup directories, deepest first.
pub fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill takes a pid read from this test cgroup's own task list.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_reads_field_22_after_the_command_name() {
        let me = std::process::id() as i32;
        assert!(start_time(me) > 0);
        assert!(alive(me, start_time(me)));
        assert!(!alive(me, start_time(me) + 1));
        assert_eq!(start_time(i32::MAX), 0);
    }

    #[test]
    fn items_round_trip_as_json_lines() {
        let i = Item::Command {
            argv: vec!["carve-oci".into(), "delete".into()],
        };
        let s = serde_json::to_string(&i).unwrap();
        assert!(s.contains("\"kind\":\"command\""), "{s}");
        assert_eq!(serde_json::from_str::<Item>(&s).unwrap(), i);
    }
}
