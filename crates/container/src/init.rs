//! The container side of create and exec: everything that runs in the forked child, inside the
//! container's namespaces, up to the exec of the user program.
//!
//! Errors are strings naming the step: they are sent to the runtime as `Msg::Error` and become
//! the CLI's error message.

use crate::channel::{Channel, Msg};
use crate::process::{self, CapMasks};
use crate::seccomp::Compiled;
use crate::{rootfs, sys};
use oci_spec::runtime::{Process, Spec};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::step::StepResult as R;

/// What the container process needs, computed by the runtime before forking (the child gets a
/// copy-on-write copy of it).
pub struct Plan<'a> {
    /// The config.
    pub spec: &'a Spec,
    /// The process to run (config's, or exec's).
    pub process: &'a Process,
    /// Bundle directory.
    pub bundle: &'a Path,
    /// Absolute rootfs.
    pub rootfs: &'a Path,
    /// Compiled seccomp profile.
    pub seccomp: Option<&'a Compiled>,
    /// Resolved capability sets (None: keep what we have, i.e. no `capabilities` in config).
    pub caps: Option<CapMasks>,
    /// Whether the container runs in a user namespace (new or joined).
    pub userns: bool,
    /// Whether a new user namespace is created (then become uid/gid 0 in it after the maps).
    pub new_userns: bool,
    /// Whether to unshare a cgroup namespace after joining the cgroups.
    pub new_cgroupns: bool,
    /// The container's cgroup directory per hierarchy mount point, for `cgroup` mounts.
    pub cgroup_dirs: Vec<(PathBuf, PathBuf)>,
    /// Whether the container has a mount namespace (new or joined). Without one it shares the
    /// runtime's: no mount is made, the root is entered with chroot.
    pub mount_ns: bool,
    /// Whether the runtime sends `Joined` after `Go` (create does; exec joins before `Go`).
    pub await_joined: bool,
    /// --no-pivot.
    pub no_pivot: bool,
    /// --no-new-keyring.
    pub no_new_keyring: bool,
    /// Number of fds after stdio to pass through (--preserve-fds).
    pub preserve_fds: u32,
    /// Fds the child keeps until exec (channel, listener, console socket, ...): everything else
    /// from 3 + preserve_fds on is closed right after the fork, so no host fd (log file, state
    /// dir, bundle, the caller's leaked fds) is ever visible inside the container.
    pub keep_fds: Vec<RawFd>,
    /// Detached idmapped trees by mount index (`idmap::prepare`), attached by the rootfs setup.
    pub idmap_fds: Vec<(usize, RawFd)>,
}

/// Exits the child without running the parent's atexit handlers or flushing its buffers.
pub fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no shared state.
    unsafe { libc::_exit(code) }
}

/// Closes every fd ≥ `first` except `keep`.
pub fn close_fds_except(first: RawFd, keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|f| *f >= first).collect();
    keep.sort();
    let mut lo = first as u32;
    for k in keep {
        let k = k as u32;
        if k > lo {
            // SAFETY: close_range on a range of fds this process owns and no longer needs.
            unsafe { libc::syscall(libc::SYS_close_range, lo, k - 1, 0) };
        }
        lo = k + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, lo, u32::MAX, 0) };
}

/// Becomes root inside a freshly mapped user namespace.
pub fn become_ns_root() -> R<()> {
    // SAFETY: integer arguments.
    if unsafe { libc::setresgid(0, 0, 0) } < 0 || unsafe { libc::setresuid(0, 0, 0) } < 0 {
        return Err(crate::step::os(
            "becoming root in the user namespace (is uid/gid 0 mapped?)",
        )(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn write_sysctls(spec: &Spec) -> R<()> {
    for (k, v) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&p, v).map_err(crate::step::os(format!("sysctl {k}={v}")))?;
    }
    Ok(())
}

fn set_hostname(spec: &Spec) -> R<()> {
    if let Some(h) = spec.hostname() {
        // SAFETY: pointer and length of a live string.
        if unsafe { libc::sethostname(h.as_ptr() as *const libc::c_char, h.len()) } < 0 {
            return Err(crate::step::os(format!("sethostname {h:?}"))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    if let Some(d) = spec.domainname() {
        // SAFETY: pointer and length of a live string.
        if unsafe { libc::setdomainname(d.as_ptr() as *const libc::c_char, d.len()) } < 0 {
            return Err(crate::step::os(format!("setdomainname {d:?}"))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Makes a pty from the container's /dev/ptmx, sends the master to the console socket, and makes
/// the slave our stdio and controlling terminal.
pub fn setup_console(console_sock: RawFd, process: &Process) -> R<()> {
    let master = sys::openat(
        libc::AT_FDCWD,
        Path::new("/dev/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY,
        0,
    )
    .map_err(crate::step::os("open /dev/ptmx"))?;
    // SAFETY: ioctls on the pty master we own.
    unsafe {
        let unlock: libc::c_int = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 {
            return Err(crate::step::os("unlockpt")(std::io::Error::last_os_error()));
        }
    }
    // SAFETY: TIOCGPTPEER returns a fresh fd of the slave.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(crate::step::os("open pty slave")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh fd that nobody else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some(b) = process.console_size() {
        let ws = libc::winsize {
            ws_row: b.height() as u16,
            ws_col: b.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: valid winsize.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: buffer of the given size.
    unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    // SAFETY: ptsname_r NUL-terminates.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_bytes()
        .to_vec();
    crate::channel::send_with_fds(console_sock, &name, &[master.as_raw_fd()]).map_err(
        crate::step::os("sending the pty master to the console socket"),
    )?;
    // SAFETY: setsid/dup2/ioctl on fds we own.
    unsafe {
        libc::setsid();
        for fd in 0..3 {
            if libc::dup2(slave.as_raw_fd(), fd) < 0 {
                return Err(crate::step::os("dup2 pty")(std::io::Error::last_os_error()));
            }
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
            return Err(crate::step::os("TIOCSCTTY")(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Installs the compiled seccomp programs; returns the notify listener fd if one was made.
pub fn load_seccomp(c: &Compiled) -> R<Option<OwnedFd>> {
    let mut listener = None;
    for (prog, notify) in &c.programs {
        let mut flags = c.flags;
        if *notify {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        }
        let l = sys::seccomp_set_filter(prog, flags)
            .map_err(crate::step::os("loading seccomp filter"))?;
        if l.is_some() {
            listener = l;
        }
    }
    Ok(listener)
}

/// Process attributes that need privileges (before the user switch).
pub fn privileged_attrs(p: &Process, spec: &Spec) -> R<()> {
    process::set_rlimits(p)?;
    process::set_oom_score_adj(p)?;
    process::set_scheduler(p)?;
    process::set_io_priority(p)?;
    crate::mempolicy::apply(spec)?;
    if let Some(pers) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        let d = if format!("{:?}", pers.domain()) == "PerLinux32" {
            0x0008
        } else {
            0
        };
        // SAFETY: personality with an integer argument.
        if unsafe { libc::personality(d) } < 0 {
            return Err(crate::step::os("personality")(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// chdir to the process cwd and check it is inside the container root (a cwd reached through a
/// leaked host fd shows as "(unreachable)" — the CVE-2024-21626 class).
pub fn enter_cwd(p: &Process) -> R<()> {
    let cwd = p.cwd();
    let c = sys::cstr(cwd)?;
    // SAFETY: valid C string.
    if unsafe { libc::chdir(c.as_ptr()) } < 0 {
        return Err(crate::step::os(format!("chdir to cwd {}", cwd.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    let now = std::env::current_dir().map_err(crate::step::os("getcwd"))?;
    if !now.is_absolute() || now.to_string_lossy().starts_with("(unreachable)") {
        return Err(format!("cwd {} is outside the container root", cwd.display()).into());
    }
    Ok(())
}

/// CAP_SYS_ADMIN, which installing a filter without no_new_privs needs.
const CAP_SYS_ADMIN: u64 = 1 << 21;

/// The last steps common to init and exec: fds, bounding set, no_new_privs, user, capabilities.
/// Returns the notify listener (a profile with NOTIFY rules is installed here, since its
/// listener must reach `listenerPath` before the program runs) and whether seccomp is still to
/// be loaded — with [`load_late_seccomp`], right before the exec, so that no syscall of the
/// runtime but the `execve` itself runs under the container's profile (a profile written
/// before `close_range`, `clone3`… existed must not break the runtime).
pub fn finalize_creds(plan: &Plan) -> R<(Option<OwnedFd>, bool)> {
    let nnp = plan.process.no_new_privileges().unwrap_or(false);
    let has_notify = plan.seccomp.is_some_and(|c| c.programs.iter().any(|p| p.1));
    // Preserved fds (3..3+N) pass to the program; everything else closes at exec.
    for fd in 3..3 + plan.preserve_fds as RawFd {
        // SAFETY: fcntl on an fd number; a closed one just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    sys::cloexec_from(3 + plan.preserve_fds).map_err(crate::step::os("close_range"))?;
    let mut listener = None;
    let mut late_seccomp = false;
    if let Some(c) = &plan.caps {
        process::drop_bounding(c)?;
    }
    if nnp {
        process::set_no_new_privs()?;
    }
    if let Some(sc) = plan.seccomp {
        // Without no_new_privs the filter needs CAP_SYS_ADMIN: with no capability sets to
        // keep it through the user switch, load it before the switch (as runc always does).
        if has_notify || (!nnp && plan.caps.is_none()) {
            listener = load_seccomp(sc)?;
        } else {
            late_seccomp = true;
        }
    }
    process::set_user(plan.process)?;
    if let Some(c) = &plan.caps {
        let mut c = *c;
        if late_seccomp && !nnp {
            // Kept in the effective and permitted sets only until the filter is loaded: execve
            // computes the program's sets from the bounding, inheritable and ambient sets (and
            // the file's), never from these two, so the program does not get it.
            c.effective |= CAP_SYS_ADMIN;
            c.permitted |= CAP_SYS_ADMIN;
        }
        process::set_caps(&c)?;
    }
    Ok((listener, late_seccomp))
}

/// Loads the seccomp profile deferred by [`finalize_creds`] and execs `target`: after the
/// filter only `execve` runs (the argument arrays are built before it, so not even an
/// allocation's `brk`/`mmap` comes after). Returns the error only when loading or exec failed.
pub fn load_late_seccomp_and_exec(plan: &Plan, late: bool, target: &process::ExecTarget) -> String {
    let args = target.prepare();
    if late {
        if let Some(sc) = plan.seccomp {
            if let Err(e) = load_seccomp(sc) {
                return e.to_string();
            }
        }
    }
    process::exec_prepared(target, &args)
}

/// The init process after the fork (fast path) or after the first stage (general path). Never
/// returns.
pub fn init_main(plan: &Plan, chan: &Channel, listener: &OwnedFd, console: Option<RawFd>) -> ! {
    match init_inner(plan, chan, listener, console) {
        Ok(never) => match never {},
        Err(msg) => {
            let _ = chan.send(&Msg::Error(msg.to_string()), &[]);
            exit(1)
        }
    }
}

enum Never {}

/// Whether the runtime has said `Joined` (init sits in its cgroups): awaited once, before the
/// first step that needs it.
struct JoinWait<'a> {
    chan: &'a Channel,
    joined: bool,
}

impl JoinWait<'_> {
    fn wait(&mut self) -> R<()> {
        if !self.joined {
            self.chan.expect(&Msg::Joined, "waiting for the cgroups")?;
            self.joined = true;
        }
        Ok(())
    }
}

/// The phases of init in order: mounts, hooks, root switch, console, attributes and
/// credentials, then the wait for `start` and the exec.
fn init_inner(plan: &Plan, chan: &Channel, listener: &OwnedFd, console: Option<RawFd>) -> R<Never> {
    chan.expect(&Msg::Go, "waiting for the runtime")?;
    if plan.new_userns {
        become_ns_root()?;
    }
    // The runtime moves us into our cgroups meanwhile; `Joined` says it is done.
    let mut joined = JoinWait {
        chan,
        joined: !plan.await_joined,
    };
    set_hostname(plan.spec)?;
    if plan.mount_ns {
        drop(rootfs::prepare(&rootfs_ctx(plan))?);
    }
    create_hooks(plan, chan, &mut joined)?;
    enter_root(plan, &mut joined)?;
    attach_console(plan, console)?;
    privileged_attrs(plan.process, plan.spec)?;
    let target = process::exec_target(plan.process)?;
    enter_cwd(plan.process)?;
    // From here on, the runtime may exit: do not die with it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    let (notify, late_seccomp) = finalize_creds(plan)?;
    let fds: Vec<RawFd> = notify.iter().map(|f| f.as_raw_fd()).collect();
    chan.send(&Msg::Ready, &fds)?;
    drop(notify);
    let conn = await_start(listener)?;
    start_hooks(plan, &conn);
    let err = load_late_seccomp_and_exec(plan, late_seccomp, &target);
    let _ = conn.send(&Msg::Error(err), &[]);
    exit(127)
}

fn rootfs_ctx<'a>(plan: &'a Plan) -> rootfs::Ctx<'a> {
    rootfs::Ctx {
        spec: plan.spec,
        bundle: plan.bundle,
        rootfs: plan.rootfs,
        userns: plan.userns,
        cgroups: plan.cgroup_dirs.clone(),
        idmap: &plan.idmap_fds,
    }
}

/// prestart and createRuntime (run by the runtime, in its namespaces, once init is in its
/// cgroups), then createContainer (run here, before the root switch).
fn create_hooks(plan: &Plan, chan: &Channel, joined: &mut JoinWait) -> R<()> {
    let hooks = plan.spec.hooks().as_ref();
    let need_runtime_hooks = hooks.is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    if need_runtime_hooks {
        joined.wait()?;
        chan.send(&Msg::RunHooks, &[])?;
        chan.expect(&Msg::HooksDone, "waiting for the runtime's hooks")?;
    }
    if let Some(list) = hooks.and_then(|h| h.create_container().as_ref()) {
        let st = crate::container::hook_state_json(
            plan.spec,
            plan.bundle,
            "created",
            std::process::id() as i32,
        );
        crate::hooks::run("createContainer", list, &st)?;
    }
    Ok(())
}

/// pivot_root (or chroot), then, inside the cgroups, the cgroup namespace, sysctls and the
/// masked and readonly paths.
fn enter_root(plan: &Plan, joined: &mut JoinWait) -> R<()> {
    if plan.mount_ns {
        rootfs::pivot(plan.rootfs, plan.no_pivot)?;
    } else {
        rootfs::chroot_into(plan.rootfs)?;
    }
    joined.wait()?;
    if plan.new_cgroupns {
        // Now that we sit in our cgroups, the namespace is rooted at them.
        sys::unshare(libc::CLONE_NEWCGROUP).map_err(crate::step::os("unshare cgroup namespace"))?;
    }
    write_sysctls(plan.spec)?;
    if plan.mount_ns {
        rootfs::finalize(plan.spec)?;
    }
    Ok(())
}

/// The pty (its master sent through the console socket, which is closed after) and a fresh
/// session keyring.
fn attach_console(plan: &Plan, console: Option<RawFd>) -> R<()> {
    if plan.process.terminal().unwrap_or(false) {
        let Some(cs) = console else {
            return Err("process.terminal is true but no --console-socket was given".into());
        };
        setup_console(cs, plan.process)?;
        rootfs::bind_console()?;
    }
    if let Some(cs) = console {
        // SAFETY: closing our copy of the console socket; the pty master went through it.
        unsafe { libc::close(cs) };
    }
    if !plan.no_new_keyring {
        // A fresh session keyring so the container cannot read the host's (KEYCTL_JOIN_SESSION_KEYRING).
        // SAFETY: keyctl with a NULL name makes an anonymous keyring.
        unsafe { libc::syscall(libc::SYS_keyctl, 1, std::ptr::null::<libc::c_char>()) };
    }
    Ok(())
}

/// Waits for `start`: it connects to init.sock and sends Start. The accepted socket is CLOEXEC,
/// so `start` reads EOF exactly when the exec succeeded.
fn await_start(listener: &OwnedFd) -> R<Channel> {
    loop {
        // SAFETY: accept4 on our listening socket; NULL address out-parameters.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("accept on init.sock: {e}").into());
        }
        // SAFETY: a fresh fd that nobody else owns.
        let c = Channel::from_owned(unsafe { OwnedFd::from_raw_fd(fd) });
        if let Ok(Some((Msg::Start, _))) = c.recv(0) {
            return Ok(c);
        }
    }
}

/// The startContainer hooks; a failure is reported to `start` and ends init.
fn start_hooks(plan: &Plan, conn: &Channel) {
    let hooks = plan.spec.hooks().as_ref();
    if let Some(list) = hooks.and_then(|h| h.start_container().as_ref()) {
        let st = crate::container::hook_state_json(
            plan.spec,
            plan.bundle,
            "running",
            std::process::id() as i32,
        );
        let env = plan.process.env().clone().unwrap_or_default();
        if let Err(e) = crate::hooks::run_with_env("startContainer", list, &st, &env) {
            let _ = conn.send(&Msg::Error(e.to_string()), &[]);
            exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_is_awaited_once_and_only_when_asked() {
        let (runtime, init) = Channel::pair().unwrap();
        // exec: the runtime joined before `Go`, nothing is read.
        let mut w = JoinWait {
            chan: &init,
            joined: true,
        };
        w.wait().expect("nothing to wait for");
        let mut w = JoinWait {
            chan: &init,
            joined: false,
        };
        runtime.send(&Msg::Joined, &[]).unwrap();
        w.wait().expect("joined");
        assert!(w.joined);
        // A second wait reads nothing: a message sent now is still there afterwards.
        runtime.send(&Msg::Start, &[]).unwrap();
        w.wait().expect("already joined");
        assert!(matches!(init.recv(0), Ok(Some((Msg::Start, _)))));
    }

    #[test]
    fn a_wrong_answer_while_waiting_names_the_step() {
        let (runtime, init) = Channel::pair().unwrap();
        let mut w = JoinWait {
            chan: &init,
            joined: false,
        };
        runtime.send(&Msg::HooksDone, &[]).unwrap();
        let e = w.wait().expect_err("unexpected message");
        assert_eq!(
            e.to_string(),
            "waiting for the cgroups: unexpected message HooksDone"
        );
        drop(runtime);
        let e = w.wait().expect_err("runtime gone");
        assert_eq!(
            e.to_string(),
            "waiting for the cgroups: the container process exited early"
        );
    }
}
