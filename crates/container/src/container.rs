//! The runtime operations: create, start, state, kill, delete, list, exec, pause, resume, update,
//! ps and stats — each a function of [`Runtime`] over the state directory under `--root`.

use crate::channel::{Channel, Msg};
use crate::config::{self, ConfigError};
use crate::hooks::{self, HookError};
use crate::init::{self, Plan};
use crate::state::{self, ContainerDir, Persisted, StateError, Status};
use crate::sys::{self, Forked};
use carve_cgroups::Manager;
use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Process, Spec};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

mod create;
mod exec;

/// A runtime operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config or process file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The container process reported a failed setup step.
    #[error("{0}")]
    Setup(String),
    /// A setup step run by the runtime itself failed.
    #[error(transparent)]
    Step(#[from] crate::step::StepError),
    /// {what}: {source}
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// A cgroup step failed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] carve_cgroups::Error),
    /// The container is in the wrong status for the operation.
    #[error("{0}")]
    Status(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The runtime: where state lives and how cgroups are named.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// State root (`--root`).
    pub root: PathBuf,
    /// cgroup root (normally /sys/fs/cgroup).
    pub cgroup_root: PathBuf,
    /// `--systemd-cgroup`: cgroupsPath is "slice:prefix:name".
    pub systemd_cgroup: bool,
}

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to write init's pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to.
    pub console_socket: Option<PathBuf>,
    /// MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Keep the caller's session keyring.
    pub no_new_keyring: bool,
    /// Extra fds (3..3+N) passed to the process.
    pub preserve_fds: u32,
    /// With `process.terminal` and no `console_socket`: keep the pty master in this process
    /// ([`Created::console`]) for a foreground proxy ([`crate::pty::forward`]), as `runc run`
    /// without `-d` does. Without it, a terminal needs a console socket.
    pub tty_proxy: bool,
}

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Container id.
    pub id: String,
    /// A process.json to run (else the config's process with `args` and the overrides).
    pub process: Option<PathBuf>,
    /// Program and arguments.
    pub args: Vec<String>,
    /// Return once the process runs.
    pub detach: bool,
    /// Where to write its pid.
    pub pid_file: Option<PathBuf>,
    /// Console socket for --tty.
    pub console_socket: Option<PathBuf>,
    /// Allocate a pty.
    pub tty: bool,
    /// Extra KEY=VALUE.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// "uid[:gid]".
    pub user: Option<String>,
    /// Extra groups.
    pub additional_gids: Vec<u32>,
    /// Extra capabilities.
    pub caps: Vec<String>,
    /// Set no_new_privs.
    pub no_new_privs: bool,
    /// Extra fds passed through.
    pub preserve_fds: u32,
    /// With a terminal and no `console_socket`: keep the pty master in this process
    /// ([`Spawned::console`]) for a foreground proxy, as `runc exec -t` without `-d` does.
    pub tty_proxy: bool,
    /// runc's `exec --cgroup`: an existing sub-cgroup of the container's to run the process in,
    /// `PATH` (every hierarchy) or `CTRL[,CTRL]:PATH` (the hierarchies of those controllers).
    pub cgroups: Vec<String>,
    /// Run the process on these CPUs (a CPU list) although the container's cpuset holds others:
    /// on a v1 cpuset hierarchy it joins the parent of the container's cpuset cgroup (every
    /// other hierarchy as usual, so its memory, pids and freezer are the container's) with this
    /// affinity. On cgroup2, where the cpuset cannot be left alone (one tree for every
    /// controller), it joins the container's exec sibling instead: a cgroup beside the
    /// container's with these CPUs and a copy of its limits and device programs, frozen, killed
    /// and removed with the container (`carve_cgroups::v2::sibling`). carve-oci sends `exec`
    /// into a dedicated-core container to the host's housekeeping CPUs this way.
    pub outside_cpus: Option<String>,
}

/// A process started by [`Runtime::exec_spawn`].
pub struct Spawned {
    /// Its host pid.
    pub pid: i32,
    /// A pidfd of it (it is this process's child).
    pub pidfd: OwnedFd,
    /// The pty master, with [`ExecOptions::tty_proxy`] and a terminal.
    pub console: Option<OwnedFd>,
}

/// The error for a terminal with nobody to hand its pty to (runc says the same).
fn no_console_socket() -> Error {
    Error::Status(
        "process.terminal is true but no --console-socket was given: a detached container \
         (create, run -d, exec -d) needs a console socket to receive its pty"
            .into(),
    )
}

/// A connected pair for the pty master when this process keeps it: (our end, the child's).
fn console_pair() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds into the array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } < 0
    {
        return Err(io("socketpair for the console")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: two fresh fds that nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Receives the pty master that init (or the exec child) sent over our end of [`console_pair`].
fn recv_console(ours: &OwnedFd) -> Result<OwnedFd, Error> {
    let mut buf = [0u8; 128];
    let (_, mut fds) = crate::channel::recv_with_fds(ours.as_raw_fd(), &mut buf, 1)
        .map_err(io("receiving the pty master"))?;
    if fds.is_empty() {
        return Err(Error::Setup(
            "no pty master came with the console message".into(),
        ));
    }
    Ok(fds.swap_remove(0))
}

/// The pty master's way out for a process with `terminal`: connected to `socket`, or, with
/// `proxy`, one end of a pair whose other end this process keeps (returned second).
fn console_for(
    socket: Option<&Path>,
    terminal: bool,
    proxy: bool,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>), Error> {
    match (socket, terminal) {
        (Some(p), true) => Ok((Some(connect_unix(p, libc::SOCK_STREAM)?), None)),
        (None, true) if proxy => {
            let (ours, theirs) = console_pair()?;
            Ok((Some(theirs), Some(ours)))
        }
        (None, true) => Err(no_console_socket()),
        _ => Ok((None, None)),
    }
}

/// `linux.seccomp` compiled; its errors name the field of `file`.
fn compile_seccomp(spec: &Spec, file: &Path) -> Result<Option<crate::seccomp::Compiled>, Error> {
    let Some(s) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let c = crate::seccomp::compile(s).map_err(|f| {
        Error::Config(ConfigError::Invalid {
            file: file.to_path_buf(),
            path: format!("linux.seccomp{}", f.path),
            msg: f.msg,
        })
    })?;
    Ok(Some(c))
}

/// The capability masks of `process.capabilities`, if it has any.
fn cap_masks(process: &Process) -> Result<Option<crate::process::CapMasks>, Error> {
    match process.capabilities() {
        Some(c) => Ok(Some(crate::process::cap_masks(c)?)),
        None => Ok(None),
    }
}

/// The OCI state of a container, as `state` prints it.
pub fn oci_state(st: &Persisted, status: Status) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": st.id,
        "pid": if status == Status::Stopped { 0 } else { st.pid },
        "status": status.to_string(),
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "owner": state::user_name(0),
        "annotations": st.annotations,
    })
}

/// The state JSON given to hooks on stdin.
pub fn hook_state_json(spec: &Spec, bundle: &Path, status: &str, pid: i32) -> Vec<u8> {
    hook_state(
        spec.annotations()
            .as_ref()
            .and_then(|a| a.get("carve.id"))
            .map(String::as_str)
            .unwrap_or(""),
        spec,
        bundle,
        status,
        pid,
    )
}

fn hook_state(id: &str, spec: &Spec, bundle: &Path, status: &str, pid: i32) -> Vec<u8> {
    let id = if id.is_empty() {
        CURRENT_ID.with(|c| c.borrow().clone())
    } else {
        id.to_string()
    };
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": "1.2.0",
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    }))
    .unwrap_or_default()
}

/// The hook state from what state.json keeps (no config parse).
fn hook_state_of(st: &Persisted, status: &str, pid: i32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": "1.2.0",
        "id": st.id,
        "status": status,
        "pid": pid,
        "bundle": st.bundle,
        "annotations": st.annotations,
    }))
    .unwrap_or_default()
}

thread_local! {
    /// The id of the container being created (hooks run in the forked child read it).
    static CURRENT_ID: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// runc's mapping of `--systemd-cgroup` "slice:prefix:name" onto a cgroupfs path.
pub fn systemd_path(p: &str, id: &str) -> String {
    let parts: Vec<&str> = p.split(':').collect();
    let (slice, prefix, name) = match parts.as_slice() {
        [s, pre, n] => (*s, *pre, *n),
        _ => ("", "carve-oci", id),
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = String::new();
    let base = slice.trim_end_matches(".slice");
    let mut acc = String::new();
    for (i, part) in base.split('-').enumerate() {
        if i > 0 {
            acc.push('-');
        }
        acc.push_str(part);
        if acc != "-" {
            path.push('/');
            path.push_str(&acc);
            path.push_str(".slice");
        }
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    format!("{path}/{unit}")
}

fn ns_types(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|v| v.iter().map(|n| (n.typ(), n.path().clone())).collect())
        .unwrap_or_default()
}

fn clone_flag(t: LinuxNamespaceType) -> i32 {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80,
    }
}

fn write_id_maps(spec: &Spec, pid: i32) -> Result<(), Error> {
    let Some(l) = spec.linux() else { return Ok(()) };
    for (file, maps) in [("uid_map", l.uid_mappings()), ("gid_map", l.gid_mappings())] {
        let body: String = maps
            .iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, body).map_err(io(format!("writing {p}")))?;
    }
    Ok(())
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let tmp = path.with_extension("carve-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
}

fn connect_unix(path: &Path, ty: i32) -> Result<OwnedFd, Error> {
    // Long paths: connect through an O_PATH fd of the directory (sun_path holds 108 bytes).
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default();
    let dfd = sys::openat(libc::AT_FDCWD, dir, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(io(format!("opening {}", dir.display())))?;
    let via = format!(
        "/proc/self/fd/{}/{}",
        dfd.as_raw_fd(),
        name.to_string_lossy()
    );
    // SAFETY: socket with constant arguments.
    let s = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io("socket")(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd that nobody else owns.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // A peer that never accepts or answers (a full backlog, a stopped init or agent) fails
    // the connect or the later send/receive instead of blocking for ever.
    crate::channel::set_timeouts(s.as_raw_fd(), state::wait_bound()).map_err(io("SO_RCVTIMEO"))?;
    let addr = sockaddr(&via)?;
    // SAFETY: valid sockaddr_un of the given length.
    let r = unsafe {
        libc::connect(
            s.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        )
    };
    if r < 0 {
        return Err(io(format!("connecting to {}", path.display()))(
            crate::channel::timed_out(std::io::Error::last_os_error()),
        ));
    }
    Ok(s)
}

fn sockaddr(p: &str) -> Result<libc::sockaddr_un, Error> {
    // SAFETY: zeroed sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as u16;
    if p.len() >= addr.sun_path.len() {
        return Err(Error::Status(format!("socket path {p} is too long")));
    }
    for (i, b) in p.bytes().enumerate() {
        addr.sun_path[i] = b as libc::c_char;
    }
    Ok(addr)
}

fn listen_unix(dir: &Path, name: &str) -> Result<OwnedFd, Error> {
    let dfd = sys::openat(libc::AT_FDCWD, dir, libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(io(format!("opening {}", dir.display())))?;
    let via = format!("/proc/self/fd/{}/{name}", dfd.as_raw_fd());
    // SAFETY: socket with constant arguments.
    let s = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io("socket")(std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd that nobody else owns.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let addr = sockaddr(&via)?;
    // SAFETY: valid sockaddr_un of the given length; listen on our socket.
    unsafe {
        if libc::bind(
            s.as_raw_fd(),
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        ) < 0
            || libc::listen(s.as_raw_fd(), 4) < 0
        {
            return Err(io(format!("binding {}/{name}", dir.display()))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(s)
}

/// What the namespaces of a config allow: without a mount namespace nothing that needs a
/// mount (see [`needs_mount_ns`]); a hostname or domainname needs a uts namespace, new or joined
/// (runc's words). Returns whether there is a mount namespace.
fn check_namespaces(
    spec: &Spec,
    nss: &[(LinuxNamespaceType, Option<PathBuf>)],
    bundle: &Path,
) -> Result<bool, Error> {
    let mount_ns = nss.iter().any(|(t, _)| *t == LinuxNamespaceType::Mount);
    if !mount_ns {
        if let Some(field) = needs_mount_ns(spec) {
            return Err(Error::Config(ConfigError::Invalid {
                file: bundle.join("config.json"),
                path: field.into(),
                msg: "without a mount namespace the container shares the runtime's mounts, \
                      which carve-oci does not change: add a \"mount\" namespace to \
                      linux.namespaces or leave this out"
                    .into(),
            }));
        }
    }
    // As runc: a joined uts namespace is set too; only none at all is refused.
    if (spec.hostname().is_some() || spec.domainname().is_some())
        && !nss.iter().any(|(t, _)| *t == LinuxNamespaceType::Uts)
    {
        return Err(Error::Config(ConfigError::Invalid {
            file: bundle.join("config.json"),
            path: "hostname".into(),
            msg: "unable to set hostname without a private UTS namespace".into(),
        }));
    }
    Ok(mount_ns)
}

/// The first field of `spec` that needs a mount namespace of the container's own, if any.
/// Without one (runtime-spec: an omitted namespace type is inherited) the container runs in the
/// runtime's mount namespace, chrooted into its root: runc mounts into that namespace (and
/// makes the host's `/` rslave), which would change the host's mount table; carve-oci refuses
/// whatever would need a mount there instead.
fn needs_mount_ns(spec: &Spec) -> Option<&'static str> {
    let linux = spec.linux().as_ref();
    let some = |v: Option<&Vec<String>>| v.is_some_and(|v| !v.is_empty());
    if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
        Some("mounts")
    } else if some(linux.and_then(|l| l.masked_paths().as_ref())) {
        Some("linux.maskedPaths")
    } else if some(linux.and_then(|l| l.readonly_paths().as_ref())) {
        Some("linux.readonlyPaths")
    } else if linux.is_some_and(|l| l.devices().as_ref().is_some_and(|d| !d.is_empty())) {
        Some("linux.devices")
    } else if linux.is_some_and(|l| l.rootfs_propagation().is_some()) {
        Some("linux.rootfsPropagation")
    } else if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        Some("root.readonly")
    } else {
        None
    }
}

/// `--preserve-fds N`: fds 3..3+N must all be open, as runc checks (`unable to stat
/// preserved-fd 4 (of 100)`). Checked by the CLI before it opens anything (its log file would
/// otherwise take fd 3) and again by `create`/`exec`, which also make sure that none of the
/// runtime's own fds (channel, listener, console socket, namespaces) falls in that range: those
/// would be passed to the program and the runtime would never see the exec.
pub fn check_preserved_fds(n: u32, own: &[RawFd]) -> Result<(), Error> {
    for i in 0..n {
        let fd = 3 + i as RawFd;
        // SAFETY: F_GETFD only reads the fd's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(Error::Setup(format!(
                "--preserve-fds {n}: unable to stat preserved-fd {i} (of {n}): fd {fd}: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    if let Some(fd) = own.iter().find(|f| **f >= 3 && **f < 3 + n as RawFd) {
        return Err(Error::Setup(format!(
            "--preserve-fds {n}: fd {fd} is the runtime's own (fds 3..{} must be open before carve-oci starts)",
            2 + n
        )));
    }
    Ok(())
}

/// The runtime's wait bound plus the timeouts of the hooks the awaited process runs meanwhile
/// (a hook without a timeout adds nothing: the bound covers it).
fn bound_with_hooks(hooks: Option<&Vec<oci_spec::runtime::Hook>>) -> std::time::Duration {
    let secs: i64 = hooks
        .into_iter()
        .flatten()
        .filter_map(|h| h.timeout())
        .map(|t| t.max(0))
        .sum();
    state::wait_bound() + std::time::Duration::from_secs(secs as u64)
}

/// Undoes a half-made create when dropped without `commit`.
struct CreateGuard {
    dir: Option<ContainerDir>,
    cgroup: Option<Manager>,
    pidfd: Option<OwnedFd>,
    /// The systemd scope (`--systemd-cgroup`), stopped before the cgroup is removed.
    unit: Option<carve_cgroups::systemd::Unit>,
}

impl CreateGuard {
    /// The state directory (there until `commit`).
    fn dir(&self) -> &ContainerDir {
        self.dir.as_ref().expect("dir")
    }

    fn commit(mut self) {
        self.dir = None;
        self.cgroup = None;
        self.pidfd = None;
        self.unit = None;
    }
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if let Some(p) = self.pidfd.take() {
            let _ = sys::pidfd_send_signal(&p, libc::SIGKILL);
            let _ = sys::pidfd_wait_exit(&p, 5000);
        }
        if let Some(m) = &self.cgroup {
            let _ = m.kill_all(libc::SIGKILL);
        }
        if let Some(u) = self.unit.take() {
            let _ = crate::sdcgroup::stop(&u);
        }
        if let Some(m) = self.cgroup.take() {
            let _ = m.remove();
        }
        if let Some(d) = self.dir.take() {
            let _ = d.remove();
        }
    }
}

/// What a successful create leaves for `run`.
pub struct Created {
    /// Init's host pid.
    pub pid: i32,
    /// A pidfd of init.
    pub pidfd: OwnedFd,
    /// The pty master, with [`CreateOptions::tty_proxy`] and `process.terminal`.
    pub console: Option<OwnedFd>,
}

fn status_of(st: &Persisted, cg: Option<&Manager>) -> Status {
    if !state::init_alive(st) {
        return Status::Stopped;
    }
    if !st.complete {
        return Status::Creating;
    }
    if let Some(m) = cg {
        if matches!(m.freezer_state(), Ok(carve_cgroups::FreezerState::Frozen)) {
            return Status::Paused;
        }
    }
    if st.started {
        Status::Running
    } else {
        Status::Created
    }
}

/// `state.json` plus the cgroup manager kept beside it.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Cg {
    manager: Option<Manager>,
    /// The systemd scope of a `--systemd-cgroup` container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit: Option<carve_cgroups::systemd::Unit>,
}

fn load_cg(dir: &ContainerDir) -> Option<Manager> {
    let b = std::fs::read(dir.path.join("cgroup.json")).ok()?;
    serde_json::from_slice::<Cg>(&b).ok()?.manager
}

/// The systemd scope kept in cgroup.json, if any.
fn load_unit(dir: &ContainerDir) -> Option<carve_cgroups::systemd::Unit> {
    let b = std::fs::read(dir.path.join("cgroup.json")).ok()?;
    serde_json::from_slice::<Cg>(&b).ok()?.unit
}

fn save_cg(dir: &ContainerDir, m: &Manager) -> Result<(), Error> {
    save_cg_unit(dir, m, None)
}

fn save_cg_unit(
    dir: &ContainerDir,
    m: &Manager,
    unit: Option<&carve_cgroups::systemd::Unit>,
) -> Result<(), Error> {
    let p = dir.path.join("cgroup.json");
    let b = serde_json::to_vec(&Cg {
        manager: Some(m.clone()),
        unit: unit.cloned(),
    })
    .map_err(|e| io("cgroup.json")(std::io::Error::other(e)))?;
    std::fs::write(&p, b).map_err(io(format!("writing {}", p.display())))
}

/// SIGKILLs init (thawing a paused container so it can die) and waits for the real exit: the
/// pidfd turns readable when init has exited (and, with its own pid namespace, after every
/// other process in it is gone).
fn kill_init(st: &Persisted, status: Status, cg: Option<&Manager>) -> Result<(), Error> {
    if let Some(fd) = open_init(st) {
        let _ = sys::pidfd_send_signal(&fd, libc::SIGKILL);
        if status == Status::Paused {
            if let Some(m) = cg {
                let _ = m.thaw();
            }
        }
        sys::pidfd_wait_exit(&fd, 10_000).map_err(io("waiting for init to exit"))?;
    }
    Ok(())
}

/// The poststop hooks. runtime-spec: a failing poststop hook is a warning and the remaining
/// hooks still run.
fn run_poststop(st: &Persisted) {
    if st.poststop.is_empty() {
        return;
    }
    let hs = hook_state_of(st, "stopped", 0);
    for h in &st.poststop {
        if let Err(e) = hooks::run("poststop", std::slice::from_ref(h), &hs) {
            tracing::warn!("{e}");
        }
    }
}

/// The container's cgroup directory per hierarchy mount point under /sys/fs/cgroup (for `cgroup`
/// mounts inside the container).
fn cgroup_dirs(m: Option<&Manager>) -> Vec<(PathBuf, PathBuf)> {
    let Some(m) = m else { return Vec::new() };
    let mut out = Vec::new();
    for mount in carve_core::mountinfo::read(Path::new("/proc")) {
        if !mount.mount_point.starts_with("/sys/fs/cgroup") {
            continue;
        }
        // A v1 hierarchy is found by its first controller ("cpu" of cpu,cpuacct).
        let controller = if mount.is_cgroup_v2() {
            "unified".to_string()
        } else if mount.is_cgroup_v1() {
            mount
                .cgroup_controllers()
                .into_iter()
                .next()
                .unwrap_or_default()
        } else {
            continue;
        };
        if let Some(dir) = m.path_on(&controller) {
            out.push((mount.mount_point, dir));
        }
    }
    out
}

/// Opens a pidfd for init and checks it is still the same process (start time).
fn open_init(st: &Persisted) -> Option<OwnedFd> {
    let fd = sys::pidfd_open(st.pid).ok()?;
    state::init_alive(st).then_some(fd)
}

fn stored_spec(dir: &ContainerDir) -> Result<Spec, Error> {
    let p = dir.path.join("config.json");
    let b = std::fs::read(&p).map_err(io(format!("reading {}", p.display())))?;
    Ok(config::parse_json(&p, &b)?)
}

impl Runtime {
    /// A runtime with state under `root` and cgroups under /sys/fs/cgroup.
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: root.into(),
            cgroup_root: PathBuf::from(carve_cgroups::DEFAULT_ROOT),
            systemd_cgroup: false,
        }
    }

    /// cgroupsPath as config.json gives it.
    fn raw_cgroups_path(&self, spec: &Spec) -> String {
        spec.linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn cgroups_path(&self, spec: &Spec, id: &str) -> String {
        let p = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.systemd_cgroup || (p.matches(':').count() == 2 && !p.starts_with('/')) {
            systemd_path(&p, id)
        } else if p.is_empty() {
            format!("/{id}")
        } else {
            p
        }
    }

    /// `create`: set everything up and leave init waiting for `start`. The phases are in
    /// [`create`](self::create).
    pub fn create(&self, o: &CreateOptions) -> Result<Created, Error> {
        let l = create::load_bundle(&o.bundle)?;
        // --systemd-cgroup: refused here, before any host change, where systemd is not PID 1.
        let unit = if self.systemd_cgroup {
            Some(crate::sdcgroup::unit(
                &self.raw_cgroups_path(&l.spec),
                &o.id,
            )?)
        } else {
            None
        };
        let mut guard = self.state_dir(&o.id, &l.bytes)?;
        let ns = create::NsPlan::of(&l.nss);
        let mut st = self.initial_state(o, &l, &ns);
        guard.dir().save(&st)?;
        let cgroups = self.make_cgroups(&l, &st, &mut guard, unit.as_ref())?;
        let terminal = l.process.terminal().unwrap_or(false);
        let (console, console_rx) =
            console_for(o.console_socket.as_deref(), terminal, o.tty_proxy)?;
        let listener = listen_unix(&guard.dir().path, "init.sock")?;
        let (parent, child) = Channel::pair().map_err(io("socketpair"))?;
        // Init's setup (and the createContainer hooks it runs) gets the wait bound per answer.
        parent
            .set_timeout(bound_with_hooks(
                l.spec
                    .hooks()
                    .as_ref()
                    .and_then(|h| h.create_container().as_ref()),
            ))
            .map_err(io("SO_RCVTIMEO"))?;
        let fds = create::InitFds {
            child,
            listener,
            console,
        };
        let (pid, pidfd, v1, v2) = self.fork_init(o, &l, &ns, &guard, unit.is_none(), fds)?;
        st.pid = create::first_stage(&parent, &l.spec, &ns, pid, pidfd, &mut guard)?;
        st.pid_start = sys::proc_start_time(st.pid).map(|s| s.0).unwrap_or(0);
        // Recorded before anything else happens, so a `delete --force` after a killed `create`
        // finds (and kills) this init.
        guard.dir().save(&st)?;
        crate::fault::point("create:clone");
        // A failed send means init already gave up: its Error message is read below.
        let _ = parent.send(&Msg::Go, &[]);
        crate::fault::point("create:go");
        // Init builds its rootfs meanwhile.
        create::join_cgroups(
            &parent,
            &l,
            st.pid,
            cgroups,
            unit.as_ref(),
            (v1, v2),
            &mut guard,
        )?;
        create::await_ready(&parent, o, &l, &st, guard.dir())?;
        crate::fault::point("create:ready");
        // Init sent the pty master before `Ready`: it waits in the socket.
        let console = console_rx.as_ref().map(recv_console).transpose()?;
        st.complete = true;
        guard.dir().save(&st)?;
        if let Some(p) = &o.pid_file {
            write_pid_file(p, st.pid)?;
        }
        let pidfd = guard.pidfd.take().expect("pidfd");
        guard.commit();
        Ok(Created {
            pid: st.pid,
            pidfd,
            console,
        })
    }

    /// The new container's state directory with a copy of its config, undone on failure.
    fn state_dir(&self, id: &str, config: &[u8]) -> Result<CreateGuard, Error> {
        let dir = ContainerDir::create(&self.root, id)?;
        crate::fault::point("create:dir");
        let guard = CreateGuard {
            dir: Some(dir),
            cgroup: None,
            pidfd: None,
            unit: None,
        };
        std::fs::write(guard.dir().path.join("config.json"), config)
            .map_err(io("copying config.json"))?;
        Ok(guard)
    }

    /// `start`: make init exec the user process; returns once it has exec'd.
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let dir = ContainerDir::open(&self.root, id, true)?;
        let mut st = dir.load()?;
        let cg = load_cg(&dir);
        let status = status_of(&st, cg.as_ref());
        // runc's wording.
        match status {
            Status::Created => {}
            Status::Stopped => {
                return Err(Error::Status(format!(
                    "cannot start container {id}: cannot start a container that has stopped"
                )))
            }
            Status::Running => {
                return Err(Error::Status(format!(
                    "cannot start container {id}: cannot start an already running container"
                )))
            }
            s => {
                return Err(Error::Status(format!(
                    "cannot start container {id}: cannot start a container in the {s} state"
                )))
            }
        }
        st.started = true;
        dir.save(&st)?;
        crate::fault::point("start:marked");
        let sock = connect_unix(&dir.path.join("init.sock"), libc::SOCK_SEQPACKET)?;
        let ch = Channel::from_owned(sock);
        // Init runs the startContainer hooks before its exec.
        ch.set_timeout(state::wait_bound() + std::time::Duration::from_secs(st.start_hook_secs))
            .map_err(io("SO_RCVTIMEO"))?;
        ch.send(&Msg::Start, &[])
            .map_err(io("telling init to start"))?;
        match ch.recv(0) {
            Ok(None) => {}
            Ok(Some((Msg::Error(e), _))) => return Err(Error::Setup(e)),
            Ok(Some((m, _))) => return Err(Error::Setup(format!("unexpected message {m:?}"))),
            Err(e) => {
                return Err(io("waiting for the container's init to exec the process")(
                    e,
                ))
            }
        }
        if !st.poststart.is_empty() {
            let hs = hook_state_of(&st, "running", st.pid);
            if let Err(e) = hooks::run("poststart", &st.poststart, &hs) {
                // runtime-spec (1.1+) and runc: a failed poststart hook fails `start`, the
                // container is stopped and no further poststart hook runs.
                if let Some(fd) = open_init(&st) {
                    let _ = sys::pidfd_send_signal(&fd, libc::SIGKILL);
                    let _ = sys::pidfd_wait_exit(&fd, 10_000);
                }
                if let Some(m) = load_cg(&dir).filter(|_| !st.own_pidns) {
                    let _ = m.kill_all(libc::SIGKILL);
                }
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// `state`: the OCI state.
    pub fn state(&self, id: &str) -> Result<serde_json::Value, Error> {
        let dir = ContainerDir::open(&self.root, id, false)?;
        let st = dir.load()?;
        let cg = load_cg(&dir);
        Ok(oci_state(&st, status_of(&st, cg.as_ref())))
    }

    /// The status of a container.
    pub fn status(&self, id: &str) -> Result<Status, Error> {
        let dir = ContainerDir::open(&self.root, id, false)?;
        let st = dir.load()?;
        Ok(status_of(&st, load_cg(&dir).as_ref()))
    }

    /// `list`: the OCI state of every container.
    pub fn list(&self) -> Vec<serde_json::Value> {
        state::list_ids(&self.root)
            .into_iter()
            .filter_map(|id| self.state(&id).ok())
            .collect()
    }

    /// `kill`: signal init (or, with `all`, every process in the container's cgroup).
    pub fn kill(&self, id: &str, sig: i32, all: bool) -> Result<(), Error> {
        let dir = ContainerDir::open(&self.root, id, false)?;
        let st = dir.load()?;
        let cg = load_cg(&dir);
        let status = status_of(&st, cg.as_ref());
        if status == Status::Stopped {
            // runc: `kill --all` of a stopped container signals what is left in its cgroup and
            // succeeds. The runc v2 shim sends it after every init exit; a failure there makes
            // containerd's CRI retry the exit forever and StopContainer miss its deadline.
            if all {
                if let Some(m) = &cg {
                    m.kill_all(sig)?;
                }
                return Ok(());
            }
            // runc's ErrNotRunning wording: containerd's shim (checkKillError) reads an error
            // containing "container not running" as "process already finished".
            return Err(Error::Status(format!(
                "container not running: {id} is stopped"
            )));
        }
        if all {
            if let Some(m) = &cg {
                m.kill_all(sig)?;
                return Ok(());
            }
        }
        let fd = open_init(&st).ok_or_else(|| {
            Error::Status(format!("container not running: {id} has just stopped"))
        })?;
        sys::pidfd_send_signal(&fd, sig).map_err(io(format!("sending signal {sig} to {id}")))
    }

    /// `delete`: remove a stopped (or created) container; with `force`, kill it first.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let Some((dir, locked)) = self.open_for_delete(id, force)? else {
            return Ok(());
        };
        let st = match dir.load() {
            Ok(s) => s,
            // A create killed before it wrote anything: only the directory is left.
            Err(StateError::NotFound(_)) if force => {
                if let Some(m) = load_cg(&dir) {
                    let _ = m.kill_all(libc::SIGKILL);
                    let _ = m.remove();
                }
                dir.remove()?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let cg = load_cg(&dir);
        let status = status_of(&st, cg.as_ref());
        match status {
            Status::Stopped | Status::Created | Status::Creating => {}
            _ if force => {}
            s => {
                return Err(Error::Status(format!(
                    "cannot delete container {id} that is not stopped: {s}"
                )))
            }
        }
        if status != Status::Stopped {
            kill_init(&st, status, cg.as_ref())?;
        }
        crate::fault::point("delete:killed");
        if let Some(m) = &cg {
            if !st.own_pidns || status == Status::Paused || !locked {
                let _ = m.kill_all(libc::SIGKILL);
            }
            if let Some(u) = load_unit(&dir) {
                crate::sdcgroup::stop(&u)?;
            }
            m.remove()?;
        }
        crate::fault::point("delete:cgroup");
        run_poststop(&st);
        dir.remove()?;
        Ok(())
    }

    /// The state directory of `id` for `delete` and whether its lock is held; `None` when a
    /// forced delete finds nothing (runc: that succeeds).
    fn open_for_delete(
        &self,
        id: &str,
        force: bool,
    ) -> Result<Option<(ContainerDir, bool)>, Error> {
        let opened = if force {
            ContainerDir::open_any_forced(&self.root, id, state::force_bound())
        } else {
            ContainerDir::open_any(&self.root, id).map(|d| (d, true))
        };
        let (dir, locked) = match opened {
            Ok(d) => d,
            Err(StateError::NotFound(_)) if force => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if !locked {
            // Another runtime process holds the lock past the bound (a stopped or hung
            // `create`/`start`): kill the container's processes anyway, as runc would, and clean
            // up. That process finds its container gone if it ever resumes.
            tracing::warn!(
                "container {id}: the state lock was not released within {:.1} s; deleting without it",
                state::force_bound().as_secs_f64()
            );
        }
        Ok(Some((dir, locked)))
    }

    fn cgroup_of(
        &self,
        id: &str,
        want: &[Status],
    ) -> Result<(ContainerDir, Manager, Status), Error> {
        let dir = ContainerDir::open(&self.root, id, true)?;
        let st = dir.load()?;
        let cg =
            load_cg(&dir).ok_or_else(|| Error::Status(format!("container {id} has no cgroup")))?;
        let status = status_of(&st, Some(&cg));
        if !want.is_empty() && !want.contains(&status) {
            return Err(Error::Status(format!("container {id} is {status}")));
        }
        Ok((dir, cg, status))
    }

    /// `pause`: freeze the cgroup.
    pub fn pause(&self, id: &str) -> Result<(), Error> {
        let (_d, m, status) = self.cgroup_of(id, &[])?;
        if !matches!(status, Status::Running | Status::Created) {
            // runc: "container not running" (also for a paused one).
            return Err(Error::Status(format!(
                "container not running: {id} is {status}"
            )));
        }
        Ok(m.freeze()?)
    }

    /// `resume`: thaw the cgroup.
    pub fn resume(&self, id: &str) -> Result<(), Error> {
        let (_d, m, status) = self.cgroup_of(id, &[])?;
        if status != Status::Paused {
            // runc: "container not paused".
            return Err(Error::Status(format!(
                "container {id} not paused: it is {status}"
            )));
        }
        Ok(m.thaw()?)
    }

    /// `update`: apply new resources.
    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<(), Error> {
        let (d, m, status) = self.cgroup_of(id, &[])?;
        if status == Status::Stopped {
            // runc: "container not running".
            return Err(Error::Status(format!(
                "container not running: {id} is stopped"
            )));
        }
        match load_unit(&d) {
            Some(u) => crate::sdcgroup::update(&u, &m, res),
            None => Ok(m.apply(res)?),
        }
    }

    /// `ps`: pids in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, Error> {
        let (_d, m, _) = self.cgroup_of(id, &[])?;
        Ok(m.pids()?)
    }

    /// The container's OOM kill counter (see `carve_cgroups::Manager::oom_kills`).
    pub fn oom_kills(&self, id: &str) -> Result<Option<u64>, Error> {
        let (_d, m, _) = self.cgroup_of(id, &[])?;
        Ok(m.oom_kills())
    }

    /// `events --stats`: one stats sample, and whether the container still runs.
    pub fn stats(&self, id: &str) -> Result<(serde_json::Value, Status), Error> {
        let (_d, m, status) = self.cgroup_of(id, &[])?;
        let s = m.stats()?;
        Ok((
            serde_json::to_value(&s).map_err(|e| io("stats")(std::io::Error::other(e)))?,
            status,
        ))
    }

    /// `exec`: run another process in the container. Returns its exit status unless `detach`.
    pub fn exec(&self, o: &ExecOptions) -> Result<i32, Error> {
        let s = self.exec_spawn(o)?;
        if o.detach {
            return Ok(0);
        }
        sys::pidfd_wait_child(&s.pidfd).map_err(io("waiting for the process"))
    }

    /// `exec` up to the moment the process runs: returns its pid, pidfd and (with
    /// [`ExecOptions::tty_proxy`]) the pty master. The caller waits for it (`sys::pidfd_wait_child`).
    /// The phases are in [`exec`](self::exec).
    pub fn exec_spawn(&self, o: &ExecOptions) -> Result<Spawned, Error> {
        let (dir, t) = self.exec_target(o)?;
        let ns = exec::ExecNs::of(&ns_types(&t.spec));
        let terminal = t.process.terminal().unwrap_or(false);
        let (console, console_rx) = console_for(
            o.console_socket.as_deref(),
            terminal,
            o.tty_proxy && !o.detach,
        )?;
        let (parent, child) = Channel::pair().map_err(io("socketpair"))?;
        parent
            .set_timeout(state::wait_bound())
            .map_err(io("SO_RCVTIMEO"))?;
        // Kept by the exec child: the channel (CLOEXEC, EOF at exec tells the runtime it
        // worked), init's pidfd (to setns into all its namespaces at once), the console socket;
        // everything else from 3+N on is closed right after the fork.
        let mut keep = vec![child.raw(), t.init_fd.as_raw_fd()];
        if let Some(c) = &console {
            keep.push(c.as_raw_fd());
        }
        let plan = Plan {
            spec: &t.spec,
            process: &t.process,
            bundle: &t.st.bundle,
            rootfs: &t.st.rootfs,
            seccomp: t.seccomp.as_ref(),
            caps: t.caps,
            userns: ns.userns,
            new_userns: false,
            new_cgroupns: false,
            cgroup_dirs: Vec::new(),
            mount_ns: ns.mount_ns,
            await_joined: false,
            no_pivot: false,
            no_new_keyring: true,
            preserve_fds: o.preserve_fds,
            keep_fds: keep,
            idmap_fds: Vec::new(),
        };
        check_preserved_fds(o.preserve_fds, &plan.keep_fds)?;
        let console_fd = console.as_ref().map(|c| c.as_raw_fd());
        let (pid, pidfd, v1, v2) = self.fork_exec(&t, &ns, &plan, &child, console_fd)?;
        drop(child);
        drop(console);
        drop(dir);
        let fail = |e: Error| {
            let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
            let _ = sys::pidfd_wait_child(&pidfd);
            e
        };
        exec::place(&parent, &t, pid, (v1, v2), &fail)?;
        exec::await_exec(&parent, o, &t, pid, &fail)?;
        // The child sent the pty master before its exec.
        let console = match console_rx.as_ref().map(recv_console).transpose() {
            Ok(c) => c,
            Err(e) => return Err(fail(e)),
        };
        if let Some(p) = &o.pid_file {
            write_pid_file(p, pid)?;
        }
        Ok(Spawned {
            pid,
            pidfd,
            console,
        })
    }
}

/// `clone3(flags)` of a child that starts inside the cgroups of `cg` instead of being moved there
/// afterwards. Moving *another* process (its pid into `cgroup.procs`) waits for an RCU grace
/// period in the kernel whenever its threadgroup rwsem was idle (5–15 ms measured here, most of a
/// `create`; see `carve_cgroups::Manager::enter_v1`). So this thread steps into the v1 cgroups
/// (`0 > tasks`, no global lock), the cgroup2 directory goes to clone3 (`CLONE_INTO_CGROUP`), and
/// the thread steps back before anything else can fail. Returns the fork and whether the child
/// sits in its v1 and in its cgroup2 cgroups already; what it does not, the caller migrates
/// (`Manager::add_task_to`). Falls back to a plain clone3 when the clone into the cgroups is
/// refused (a kernel without CLONE_INTO_CGROUP, a pids limit reached: a migration is not
/// limited, a fork is).
fn clone_in_cgroups(cg: Option<&Manager>, flags: u64) -> Result<(Forked, bool, bool), Error> {
    let mut v1_home = None;
    let mut v2_fd = None;
    if let Some(m) = cg {
        match m.enter_v1() {
            Ok(h) => v1_home = h,
            Err(e) => tracing::debug!("starting the process in its v1 cgroups: {e}"),
        }
        if let Some(d) = m.v2_dir() {
            v2_fd = sys::openat(
                libc::AT_FDCWD,
                d,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                0,
            )
            .ok();
        }
    }
    if v1_home.is_none() && v2_fd.is_none() {
        return Ok((sys::clone3(flags).map_err(io("clone3"))?, false, false));
    }
    let v1_entered = v1_home.is_some();
    let forked = sys::clone3_into(flags, v2_fd.as_ref().map(|f| f.as_raw_fd()));
    if let Ok(Forked::Child) = forked {
        // The child: inside already; the thread it copies stays there.
        return Ok((Forked::Child, true, true));
    }
    // The parent: back to our own cgroups first.
    if let Some(h) = v1_home.take() {
        if let Err(e) = h.leave() {
            if let Ok(Forked::Parent(_, fd)) = &forked {
                let _ = sys::pidfd_send_signal(fd, libc::SIGKILL);
                let _ = sys::pidfd_wait_child(fd);
            }
            return Err(e.into());
        }
    }
    match forked {
        Ok(f) => Ok((f, v1_entered, v2_fd.is_some())),
        Err(e) => {
            tracing::debug!("clone3 into the cgroups: {e}; migrating instead");
            Ok((sys::clone3(flags).map_err(io("clone3"))?, false, false))
        }
    }
}

/// The device cgroup rules plus, as runc does, "allow" rules for the devices every container gets
/// (null, zero, full, random, urandom, tty, console, ptmx, pts) and for the configured devices,
/// so that a "deny all" rule does not keep init from creating or using them.
fn with_default_devices(spec: &Spec, res: &LinuxResources) -> LinuxResources {
    let Some(rules) = res.devices().clone() else {
        return res.clone();
    };
    let mut v = serde_json::to_value(&rules).unwrap_or_default();
    let list = v.as_array_mut().expect("array");
    for (ty, maj, min) in [
        ("c", Some(1), Some(3)),
        ("c", Some(1), Some(5)),
        ("c", Some(1), Some(7)),
        ("c", Some(1), Some(8)),
        ("c", Some(1), Some(9)),
        ("c", Some(5), Some(0)),
        ("c", Some(5), Some(1)),
        ("c", Some(5), Some(2)),
        ("c", Some(136), None),
    ] {
        list.push(serde_json::json!({"allow": true, "type": ty, "major": maj, "minor": min, "access": "rwm"}));
    }
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let ty = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::B => "b",
            oci_spec::runtime::LinuxDeviceType::P => continue,
            _ => "c",
        };
        list.push(serde_json::json!({"allow": true, "type": ty, "major": d.major(), "minor": d.minor(), "access": "rwm"}));
    }
    let mut out = res.clone();
    out.set_devices(serde_json::from_value(v).ok());
    out
}

/// Whose seccomp listener is being sent: the container and the process that loaded the filter.
struct NotifyState<'a> {
    id: &'a str,
    bundle: &'a Path,
    spec: &'a Spec,
    /// The container's status ("creating" for its init, the current one for `exec`).
    status: &'a str,
    /// The container's init (the state's pid).
    init_pid: i32,
    /// The process the filter belongs to (the init itself, or the exec'd process).
    pid: i32,
}

/// Sends the seccomp notify fd to `listenerPath` with the container process state, as the
/// runtime spec describes.
fn send_notify_fd(
    who: &NotifyState,
    fd: &OwnedFd,
    sc: &crate::seccomp::Compiled,
) -> Result<(), Error> {
    let Some(path) = &sc.listener_path else {
        return Ok(());
    };
    let sock = connect_unix(path, libc::SOCK_STREAM)?;
    let body = serde_json::json!({
        "ociVersion": "1.2.0",
        "fds": ["seccompFd"],
        "pid": who.pid,
        "metadata": sc.listener_metadata,
        "state": {
            "ociVersion": "1.2.0", "id": who.id, "status": who.status, "pid": who.init_pid,
            "bundle": who.bundle, "annotations": who.spec.annotations().clone().unwrap_or_default(),
        }
    });
    crate::channel::send_with_fds(
        sock.as_raw_fd(),
        body.to_string().as_bytes(),
        &[fd.as_raw_fd()],
    )
    .map_err(io(format!("sending the seccomp fd to {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_expand_slices() {
        assert_eq!(
            systemd_path("machine.slice:libpod:abc", "x"),
            "/machine.slice/libpod-abc.scope"
        );
        assert_eq!(
            systemd_path("a-b.slice:pre:n", "x"),
            "/a.slice/a-b.slice/pre-n.scope"
        );
        assert_eq!(systemd_path(":p:n", "x"), "/system.slice/p-n.scope");
    }

    #[test]
    fn status_follows_the_recorded_state() {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let mut st = Persisted {
            pid: me,
            pid_start: sys::proc_start_time(me).expect("own start time").0,
            ..Default::default()
        };
        assert_eq!(status_of(&st, None), Status::Creating);
        st.complete = true;
        assert_eq!(status_of(&st, None), Status::Created);
        st.started = true;
        assert_eq!(status_of(&st, None), Status::Running);
        // A recycled pid (another start time) is not the container's init.
        st.pid_start += 1;
        assert_eq!(status_of(&st, None), Status::Stopped);
        assert_eq!(oci_state(&st, Status::Stopped)["pid"], 0);
    }

    #[test]
    fn a_terminal_needs_somewhere_to_send_its_pty() {
        let e = console_for(None, true, false).expect_err("refused");
        assert!(e.to_string().contains("no --console-socket"), "{e}");
        let (theirs, ours) = console_for(None, true, true).expect("pair");
        assert!(theirs.is_some() && ours.is_some());
        let (a, b) = console_for(Some(Path::new("/nonexistent")), false, false).expect("none");
        assert!(a.is_none() && b.is_none(), "no terminal: no console");
    }

    #[test]
    fn device_rules_get_the_default_devices_after_a_deny_all() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}
        }))
        .unwrap();
        let res: LinuxResources = serde_json::from_value(serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"}]
        }))
        .unwrap();
        let out = with_default_devices(&spec, &res);
        let d = out.devices().as_ref().expect("devices");
        assert!(!d[0].allow(), "the config's rules come first");
        assert_eq!(d.len(), 1 + 9 + 1);
        let last = d.last().unwrap();
        assert_eq!((last.major(), last.minor()), (Some(10), Some(229)));
        let none = LinuxResources::default();
        assert!(with_default_devices(&spec, &none).devices().is_none());
    }

    #[test]
    fn hook_state_carries_id_status_pid_and_annotations() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0", "annotations": {"k": "v"}
        }))
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&hook_state("c9", &spec, Path::new("/b"), "creating", 42))
                .unwrap();
        assert_eq!(v["id"], "c9");
        assert_eq!(v["status"], "creating");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["bundle"], "/b");
        assert_eq!(v["annotations"]["k"], "v");
    }

    #[test]
    fn socket_paths_must_fit_sun_path() {
        assert!(sockaddr("/run/x.sock").is_ok());
        let long = format!("/{}", "a".repeat(120));
        let e = sockaddr(&long).expect_err("too long");
        assert_eq!(e.to_string(), format!("socket path {long} is too long"));
    }

    #[test]
    fn preserved_fds_must_be_open_and_not_the_runtimes() {
        assert!(check_preserved_fds(0, &[3, 4]).is_ok());
        let e = check_preserved_fds(1000, &[]).expect_err("fd 1002 is not open");
        assert!(e
            .to_string()
            .starts_with("--preserve-fds 1000: unable to stat preserved-fd"));
    }
}
