//! [`Runtime::create`] in phases: load and check the bundle ([`load_bundle`]), record the state
//! ([`Runtime::initial_state`]), make the cgroups ([`Runtime::make_cgroups`]), fork init with the
//! fds it keeps ([`Runtime::fork_init`]), take it through the first stage ([`first_stage`]), put
//! it in its cgroups ([`join_cgroups`]), run the hooks it asks for ([`await_ready`]) and record
//! the container as created. Nothing touches the host before [`load_bundle`] has passed.

use super::*;
use crate::process::CapMasks;
use crate::seccomp::Compiled;
use carve_cgroups::systemd::Unit;

/// The bundle as read and checked, before anything touches the host.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) bundle: PathBuf,
    pub(super) spec: Spec,
    /// config.json as read (normalized), copied into the state directory.
    pub(super) bytes: Vec<u8>,
    pub(super) rootfs: PathBuf,
    pub(super) process: Process,
    pub(super) seccomp: Option<Compiled>,
    pub(super) caps: Option<CapMasks>,
    pub(super) nss: Vec<(LinuxNamespaceType, Option<PathBuf>)>,
    /// The container has a mount namespace (new or joined).
    pub(super) mount_ns: bool,
}

/// Reads and validates `bundle/config.json` and compiles what the container needs from it
/// (seccomp, capability masks), refusing what the namespaces do not allow.
pub(super) fn load_bundle(bundle: &Path) -> Result<Loaded, Error> {
    let bundle = std::path::absolute(bundle).map_err(io("bundle path"))?;
    let (spec, bytes) = config::load(&bundle)?;
    let rootfs = config::rootfs_of(&bundle, &spec);
    let process = spec.process().clone().unwrap_or_default();
    warn_ignored(&spec, &process);
    let seccomp = compile_seccomp(&spec, &bundle.join("config.json"))?;
    let caps = cap_masks(&process)?;
    let nss = ns_types(&spec);
    let mount_ns = check_namespaces(&spec, &nss, &bundle)?;
    Ok(Loaded {
        bundle,
        spec,
        bytes,
        rootfs,
        process,
        seccomp,
        caps,
        nss,
        mount_ns,
    })
}

/// The security labels this host cannot apply: warned about, as runc does without the LSM.
fn warn_ignored(spec: &Spec, process: &Process) {
    let set = |v: Option<&String>| v.is_some_and(|p| !p.is_empty());
    if set(process.apparmor_profile().as_ref()) {
        tracing::warn!("apparmor profile ignored: this host has no AppArmor");
    }
    if set(process.selinux_label().as_ref()) {
        tracing::warn!("selinux label ignored: this host has no SELinux");
    }
    if set(spec.linux().as_ref().and_then(|l| l.mount_label().as_ref())) {
        tracing::warn!("linux.mountLabel ignored: this host has no SELinux");
    }
}

/// How init is forked, from the config's namespaces.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NsPlan {
    /// A new user namespace (its maps are written by the runtime).
    pub(super) new_user: bool,
    /// Any user namespace, new or joined.
    pub(super) userns: bool,
    /// A new cgroup namespace (unshared by init once it sits in its cgroups).
    pub(super) new_cgroupns: bool,
    /// Namespaces joined by path.
    pub(super) joined: Vec<(LinuxNamespaceType, PathBuf)>,
    /// CLONE_NEW* of the new namespaces but the cgroup one.
    pub(super) new_flags: i32,
    /// A time namespace (new or joined).
    pub(super) has_time: bool,
    /// Nothing to join and no time namespace: clone straight into the new namespaces, no first
    /// stage.
    pub(super) fast: bool,
    /// A pid namespace of its own.
    pub(super) own_pidns: bool,
}

impl NsPlan {
    pub(super) fn of(nss: &[(LinuxNamespaceType, Option<PathBuf>)]) -> NsPlan {
        let any = |t: LinuxNamespaceType| nss.iter().any(|(n, _)| *n == t);
        let new = |t: LinuxNamespaceType| nss.iter().any(|(n, p)| *n == t && p.is_none());
        let joined: Vec<(LinuxNamespaceType, PathBuf)> = nss
            .iter()
            .filter_map(|(t, p)| p.clone().map(|p| (*t, p)))
            .collect();
        let new_flags = nss
            .iter()
            .filter(|(t, p)| p.is_none() && *t != LinuxNamespaceType::Cgroup)
            .fold(0, |f, (t, _)| f | clone_flag(*t));
        let has_time = any(LinuxNamespaceType::Time);
        NsPlan {
            new_user: new(LinuxNamespaceType::User),
            userns: any(LinuxNamespaceType::User),
            new_cgroupns: new(LinuxNamespaceType::Cgroup),
            fast: joined.is_empty() && !has_time,
            joined,
            new_flags,
            has_time,
            own_pidns: any(LinuxNamespaceType::Pid),
        }
    }
}

/// The hooks of one kind, if any.
fn hook_list(
    spec: &Spec,
    pick: impl Fn(&oci_spec::runtime::Hooks) -> &Option<Vec<oci_spec::runtime::Hook>>,
) -> Option<&Vec<oci_spec::runtime::Hook>> {
    spec.hooks().as_ref().and_then(|h| pick(h).as_ref())
}

impl Runtime {
    /// The state recorded before anything else is made (no pid yet).
    pub(super) fn initial_state(&self, o: &CreateOptions, l: &Loaded, ns: &NsPlan) -> Persisted {
        let spec = &l.spec;
        let start_hooks = hook_list(spec, |h| h.start_container());
        Persisted {
            id: o.id.clone(),
            bundle: l.bundle.clone(),
            rootfs: l.rootfs.clone(),
            created: state::rfc3339(std::time::SystemTime::now()),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            cgroups_path: self.cgroups_path(spec, &o.id),
            own_pidns: ns.own_pidns,
            poststart: hook_list(spec, |h| h.poststart())
                .cloned()
                .unwrap_or_default(),
            poststop: hook_list(spec, |h| h.poststop())
                .cloned()
                .unwrap_or_default(),
            start_hook_secs: (bound_with_hooks(start_hooks) - state::wait_bound()).as_secs(),
            ..Default::default()
        }
    }

    /// The container's cgroup manager, recorded in the state directory; without systemd the
    /// cgroups are made and limited here (with it, the scope and so the cgroup exists only once
    /// init's pid is given to systemd, after the clone). Returns the resources to apply.
    pub(super) fn make_cgroups(
        &self,
        l: &Loaded,
        st: &Persisted,
        guard: &mut CreateGuard,
        unit: Option<&Unit>,
    ) -> Result<(Manager, Option<LinuxResources>), Error> {
        let dir = guard.dir();
        let mut mgr = Manager::new(&self.cgroup_root, &st.cgroups_path)?;
        save_cg_unit(dir, &mgr, unit)?;
        let resources = l
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .map(|r| with_default_devices(&l.spec, r));
        if unit.is_none() {
            mgr.create()?;
            // Again, with the parent directories create() made, so that delete removes them.
            save_cg(dir, &mgr)?;
            crate::fault::point("create:cgroup");
            guard.cgroup = Some(mgr.clone());
            if let Some(res) = &resources {
                mgr.apply(res)?;
            }
            rt_check(l, &mgr)?;
        }
        Ok((mgr, resources))
    }

    /// Forks init (fast path) or the first stage with the fds it keeps, inside the cgroups
    /// when it can (`plain_cgroups`: made here, not by systemd); the child never returns. Consumes the fds only the child needs: the parent
    /// closes them on return. Returns the child's pid and pidfd and whether it started in its
    /// v1 and cgroup2 cgroups.
    pub(super) fn fork_init(
        &self,
        o: &CreateOptions,
        l: &Loaded,
        ns: &NsPlan,
        guard: &CreateGuard,
        plain_cgroups: bool,
        fds: InitFds,
    ) -> Result<(i32, OwnedFd, bool, bool), Error> {
        let InitFds {
            child,
            listener,
            console,
        } = fds;
        // The fds the child keeps past its first instruction (everything else from 3+N on is
        // closed right after the fork — the state dir lock, the log file, the caller's leaks):
        // - its end of the handshake channel (CLOEXEC: closes by itself at exec, which is how
        //   the runtime sees the exec),
        // - the init.sock listener that `start` connects to (CLOEXEC, closed at exec),
        // - the console socket, to send the pty master through (closed once sent),
        // - fds of namespaces to join by path (pushed below; dropped after setns),
        // - 3..3+N from --preserve-fds (made inheritable just before exec).
        let mut keep = vec![child.raw(), listener.as_raw_fd()];
        if let Some(c) = &console {
            keep.push(c.as_raw_fd());
        }
        // - the detached idmapped trees init attaches (made here: it takes CAP_SYS_ADMIN over
        //   the source filesystem, which init in its user namespace lacks),
        let idmapped = crate::idmap::prepare(&l.spec, &l.bundle)?;
        keep.extend(idmapped.iter().map(|(_, f)| f.as_raw_fd()));
        let joined_fds = open_joined(&ns.joined, &mut keep)?;
        let plan = Plan {
            spec: &l.spec,
            process: &l.process,
            bundle: &l.bundle,
            rootfs: &l.rootfs,
            seccomp: l.seccomp.as_ref(),
            caps: l.caps,
            userns: ns.userns,
            new_userns: ns.new_user,
            new_cgroupns: ns.new_cgroupns,
            cgroup_dirs: cgroup_dirs(guard.cgroup.as_ref()),
            mount_ns: l.mount_ns,
            await_joined: true,
            no_pivot: o.no_pivot,
            no_new_keyring: o.no_new_keyring,
            preserve_fds: o.preserve_fds,
            keep_fds: keep,
            idmap_fds: idmapped.iter().map(|(i, f)| (*i, f.as_raw_fd())).collect(),
        };
        check_preserved_fds(o.preserve_fds, &plan.keep_fds)?;
        CURRENT_ID.with(|c| *c.borrow_mut() = o.id.clone());
        let clone_flags = if ns.fast { ns.new_flags as u64 } else { 0 };
        // Init starts inside its cgroups rather than being moved there after the fork (see
        // clone_in_cgroups). Not with a pids limit of 1: the runtime would count in it.
        let pids_limit = l
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.pids().as_ref())
            .map(|p| p.limit());
        let cg_for_clone = guard
            .cgroup
            .as_ref()
            .filter(|_| pids_limit != Some(1) && plain_cgroups);
        let (forked, v1_joined, v2_joined) = clone_in_cgroups(cg_for_clone, clone_flags)?;
        match forked {
            Forked::Child => {
                let console = console.as_ref().map(|c| c.as_raw_fd());
                init_child(&plan, ns, &child, &listener, console, &joined_fds)
            }
            Forked::Parent(pid, pidfd) => Ok((pid, pidfd, v1_joined, v2_joined)),
        }
    }
}

/// The fds only init needs: the parent closes them once it has forked.
pub(super) struct InitFds {
    /// Init's end of the handshake channel.
    pub(super) child: Channel,
    /// init.sock, which `start` connects to.
    pub(super) listener: OwnedFd,
    /// The console socket (or our pair's other end) for the pty master.
    pub(super) console: Option<OwnedFd>,
}

/// Opens the namespaces joined by path, here in the runtime's mount namespace, user namespace
/// first so the others are joined with its privileges; their fds are kept by the child.
fn open_joined(
    joined: &[(LinuxNamespaceType, PathBuf)],
    keep: &mut Vec<RawFd>,
) -> Result<Vec<(i32, OwnedFd)>, Error> {
    let mut fds: Vec<(i32, OwnedFd)> = Vec::new();
    for (t, p) in joined {
        let f = sys::openat(libc::AT_FDCWD, p, libc::O_RDONLY, 0)
            .map_err(io(format!("opening namespace {}", p.display())))?;
        keep.push(f.as_raw_fd());
        fds.push((clone_flag(*t), f));
    }
    fds.sort_by_key(|(f, _)| *f != libc::CLONE_NEWUSER);
    Ok(fds)
}

/// The forked child of `create`: init itself (fast path) or the first stage.
fn init_child(
    plan: &Plan,
    ns: &NsPlan,
    child: &Channel,
    listener: &OwnedFd,
    console: Option<RawFd>,
    joined_fds: &[(i32, OwnedFd)],
) -> ! {
    init::close_fds_except(3 + plan.preserve_fds as RawFd, &plan.keep_fds);
    sys::unblock_all_signals();
    // Die with the runtime while being set up (a killed `create` leaves nothing).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if ns.fast {
        init::init_main(plan, child, listener, console);
    }
    stage1(plan, child, listener, console, joined_fds, ns)
}

/// After the fork: on the fast path, the uid/gid maps of init's new user namespace; else the
/// first stage's requests (maps) up to init's pid, the first stage reaped. Returns init's pid,
/// whose pidfd the guard holds from here on.
pub(super) fn first_stage(
    parent: &Channel,
    spec: &Spec,
    ns: &NsPlan,
    pid: i32,
    pidfd: OwnedFd,
    guard: &mut CreateGuard,
) -> Result<i32, Error> {
    if ns.fast {
        guard.pidfd = Some(pidfd);
        if ns.new_user {
            write_id_maps(spec, pid)?;
        }
        return Ok(pid);
    }
    let kill = |pidfd: &OwnedFd| {
        let _ = sys::pidfd_send_signal(pidfd, libc::SIGKILL);
        let _ = sys::pidfd_wait_child(pidfd);
    };
    // The first stage: maps for its user namespace, then the init's pid.
    let init_pid = loop {
        match parent.recv(0) {
            Ok(Some((Msg::NeedMaps, _))) => {
                if let Err(e) = write_id_maps(spec, pid) {
                    let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
                    return Err(e);
                }
                parent.send(&Msg::Go, &[]).map_err(io("sync"))?;
            }
            Ok(Some((Msg::InitPid(p), _))) => break p,
            Ok(Some((Msg::Error(e), _))) => {
                let _ = sys::pidfd_wait_child(&pidfd);
                return Err(Error::Setup(e));
            }
            Err(e) => {
                kill(&pidfd);
                return Err(io("waiting for the container's first stage")(e));
            }
            other => {
                kill(&pidfd);
                return Err(Error::Setup(format!(
                    "container setup stopped early: {other:?}"
                )));
            }
        }
    };
    let ifd = sys::pidfd_open(init_pid).map_err(io("pidfd_open init"))?;
    guard.pidfd = Some(ifd);
    // Reap the first stage (it exits right after reporting).
    if init_pid != pid {
        let _ = sys::pidfd_wait_child(&pidfd);
    }
    Ok(init_pid)
}

/// Puts init into its cgroups while it builds its rootfs: with systemd, starts the scope with
/// init in it; otherwise moves it into what it did not start in (a migration, which waits for
/// an RCU grace period). Then tells init `Joined`.
pub(super) fn join_cgroups(
    parent: &Channel,
    l: &Loaded,
    pid: i32,
    (mut mgr, resources): (Manager, Option<LinuxResources>),
    unit: Option<&Unit>,
    (v1_joined, v2_joined): (bool, bool),
    guard: &mut CreateGuard,
) -> Result<(), Error> {
    if let Some(u) = unit {
        guard.cgroup = Some(mgr.clone());
        guard.unit = Some(u.clone());
        crate::sdcgroup::start(u, pid, &mut mgr, resources.as_ref())?;
        save_cg_unit(guard.dir(), &mgr, Some(u))?;
        guard.cgroup = Some(mgr.clone());
        crate::fault::point("create:cgroup");
        rt_check(l, &mgr)?;
    }
    if let Some(m) = &guard.cgroup {
        m.add_task_to(pid, !v1_joined, !v2_joined)?;
    }
    let _ = parent.send(&Msg::Joined, &[]);
    Ok(())
}

/// A real-time scheduler policy checked against the container's cgroup.
fn rt_check(l: &Loaded, m: &Manager) -> Result<(), Error> {
    crate::realtime::check(&l.process, Some(m)).map_err(|msg| {
        Error::Config(ConfigError::Invalid {
            file: l.bundle.join("config.json"),
            path: "process.scheduler".into(),
            msg: msg.to_string(),
        })
    })
}

/// Serves init until it is `Ready`: runs the prestart and createRuntime hooks when it asks,
/// and forwards its seccomp listener to `listenerPath`.
pub(super) fn await_ready(
    parent: &Channel,
    o: &CreateOptions,
    l: &Loaded,
    st: &Persisted,
    dir: &ContainerDir,
) -> Result<(), Error> {
    let pid = st.pid;
    loop {
        match parent.recv(1) {
            Ok(Some((Msg::RunHooks, _))) => {
                dir.save(st)?;
                let hs = hook_state(&o.id, &l.spec, &l.bundle, "creating", pid);
                if let Some(h) = l.spec.hooks() {
                    hooks::run("prestart", h.prestart().as_deref().unwrap_or(&[]), &hs)?;
                    hooks::run(
                        "createRuntime",
                        h.create_runtime().as_deref().unwrap_or(&[]),
                        &hs,
                    )?;
                }
                parent.send(&Msg::HooksDone, &[]).map_err(io("sync"))?;
            }
            Ok(Some((Msg::Ready, fds))) => {
                if let (Some(fd), Some(sc)) = (fds.first(), l.seccomp.as_ref()) {
                    let who = NotifyState {
                        id: &o.id,
                        bundle: &l.bundle,
                        spec: &l.spec,
                        status: "creating",
                        init_pid: pid,
                        pid,
                    };
                    send_notify_fd(&who, fd, sc)?;
                }
                return Ok(());
            }
            Ok(Some((Msg::Error(e), _))) => return Err(Error::Setup(e)),
            Ok(Some((m, _))) => return Err(Error::Setup(format!("unexpected message {m:?}"))),
            Ok(None) => {
                return Err(Error::Setup(
                    "the container's init exited during setup".into(),
                ))
            }
            Err(e) => {
                return Err(io("waiting for the container's init to finish its setup")(
                    e,
                ))
            }
        }
    }
}

/// The general create path's first stage: join namespaces by path, unshare the new ones (asking
/// the runtime for uid/gid maps), set time offsets, and fork the init when pid or time
/// namespaces apply only to children. Never returns.
fn stage1(
    plan: &Plan,
    chan: &Channel,
    listener: &OwnedFd,
    console: Option<RawFd>,
    joined: &[(i32, OwnedFd)],
    ns: &NsPlan,
) -> ! {
    match stage1_inner(plan.spec, chan, joined, ns) {
        Ok(None) => init::init_main(plan, chan, listener, console),
        Ok(Some(p)) => {
            let _ = chan.send(&Msg::InitPid(p), &[]);
            // SAFETY: getpid has no preconditions.
            if p == unsafe { libc::getpid() } {
                init::init_main(plan, chan, listener, console)
            }
            init::exit(0)
        }
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.to_string()), &[]);
            init::exit(1)
        }
    }
}

/// The first stage's steps; `Ok(None)` in a forked init, `Ok(Some(init's pid))` in the stage.
fn stage1_inner(
    spec: &Spec,
    chan: &Channel,
    joined: &[(i32, OwnedFd)],
    ns: &NsPlan,
) -> crate::step::StepResult<Option<i32>> {
    for (flag, fd) in joined {
        sys::setns(fd.as_raw_fd(), *flag)
            .map_err(crate::step::os(format!("joining namespace {flag:#x}")))?;
    }
    let new_time = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| {
            v.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Time && n.path().is_none())
        });
    let mut flags = ns.new_flags;
    if new_time {
        flags |= 0x80;
    }
    if flags != 0 {
        sys::unshare(flags).map_err(crate::step::os(format!("unshare {flags:#x}")))?;
    }
    if ns.new_user {
        chan.send(&Msg::NeedMaps, &[])?;
        chan.expect(&Msg::Go, "waiting for uid/gid maps")?;
    }
    // Before becoming root of a new user namespace: after that setuid this task is not
    // dumpable, so its /proc files belong to host root and its mapped fsuid may not write them
    // (EACCES); it already holds CAP_SYS_TIME over the new time namespace.
    if new_time {
        write_time_offsets(spec)?;
    }
    // A joined user namespace needs the same switch: the host's uid 0 is usually unmapped
    // there, and every file init creates would fail with EOVERFLOW.
    let joined_user = joined.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER);
    if ns.new_user || joined_user {
        init::become_ns_root()?;
    }
    let pid_or_time_for_children = flags & (libc::CLONE_NEWPID | 0x80) != 0
        || joined
            .iter()
            .any(|(f, _)| *f == libc::CLONE_NEWPID || *f == 0x80)
        || ns.has_time;
    if pid_or_time_for_children {
        // SAFETY: single-threaded process; the child only continues into init_main.
        let p = unsafe { libc::fork() };
        if p < 0 {
            return Err(crate::step::os("fork")(std::io::Error::last_os_error()));
        }
        if p == 0 {
            return Ok(None);
        }
        return Ok(Some(p));
    }
    // SAFETY: getpid has no preconditions.
    Ok(Some(unsafe { libc::getpid() }))
}

/// `linux.timeOffsets` into the new time namespace.
fn write_time_offsets(spec: &Spec) -> crate::step::StepResult<()> {
    if let Some(off) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    {
        let body = time_offsets_body(off);
        std::fs::write("/proc/self/timens_offsets", body)
            .map_err(crate::step::os("writing time offsets"))?;
    }
    Ok(())
}

/// The text of /proc/self/timens_offsets: one "clock secs nanosecs" line per clock.
fn time_offsets_body(
    off: &std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset>,
) -> String {
    off.iter()
        .map(|(k, v)| {
            format!(
                "{k} {} {}\n",
                v.secs().unwrap_or(0),
                v.nanosecs().unwrap_or(0)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use LinuxNamespaceType as T;

    /// A bundle with a rootfs directory and `doc` as config.json.
    fn bundle(doc: serde_json::Value) -> tempfile::TempDir {
        let b = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(b.path().join("rootfs")).expect("rootfs");
        std::fs::write(b.path().join("config.json"), doc.to_string()).expect("config");
        b
    }

    fn doc(linux: serde_json::Value) -> serde_json::Value {
        json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                        "capabilities": {"bounding": ["CAP_KILL"]}},
            "linux": linux
        })
    }

    fn invalid_path(e: Error) -> String {
        match e {
            Error::Config(ConfigError::Invalid { path, .. }) => path,
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn ns_plan_clones_straight_into_new_namespaces() {
        let ns = NsPlan::of(&[
            (T::Mount, None),
            (T::Pid, None),
            (T::User, None),
            (T::Cgroup, None),
        ]);
        assert!(ns.fast && ns.new_user && ns.userns && ns.new_cgroupns && ns.own_pidns);
        // The cgroup namespace is unshared by init once in its cgroups, not cloned.
        assert_eq!(
            ns.new_flags,
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUSER
        );
        assert!(ns.joined.is_empty());
    }

    #[test]
    fn ns_plan_takes_the_first_stage_for_joins_and_time() {
        let net = PathBuf::from("/proc/1/ns/net");
        let ns = NsPlan::of(&[(T::Mount, None), (T::Network, Some(net.clone()))]);
        assert!(!ns.fast);
        assert_eq!(ns.joined, vec![(T::Network, net)]);
        assert_eq!(ns.new_flags, libc::CLONE_NEWNS);
        let ns = NsPlan::of(&[(T::Mount, None), (T::Time, None)]);
        assert!(!ns.fast && ns.has_time && !ns.own_pidns);
        let ns = NsPlan::of(&[(T::User, Some("/proc/1/ns/user".into()))]);
        assert!(ns.userns && !ns.new_user);
    }

    #[test]
    fn load_bundle_compiles_what_init_needs() {
        let b = bundle(doc(json!({"namespaces": [{"type": "mount"}],
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}})));
        let l = load_bundle(b.path()).expect("loads");
        assert!(l.mount_ns);
        assert_eq!(l.rootfs, b.path().join("rootfs"));
        assert!(l.seccomp.is_some());
        assert_eq!(
            l.caps.expect("caps").bounding,
            1 << 5,
            "CAP_KILL is capability 5"
        );
        assert_eq!(l.nss, vec![(T::Mount, None)]);
    }

    #[test]
    fn load_bundle_refuses_what_the_namespaces_do_not_allow() {
        let mut d = doc(json!({"namespaces": [{"type": "pid"}]}));
        d["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
        let e = load_bundle(bundle(d).path()).expect_err("refused");
        assert_eq!(invalid_path(e), "mounts");
        let mut d = doc(json!({"namespaces": [{"type": "mount"}]}));
        d["hostname"] = json!("box");
        let e = load_bundle(bundle(d).path()).expect_err("refused");
        assert_eq!(invalid_path(e), "hostname");
        let d = doc(json!({"namespaces": [{"type": "pid"}], "maskedPaths": ["/proc/kcore"]}));
        let e = load_bundle(bundle(d).path()).expect_err("refused");
        assert_eq!(invalid_path(e), "linux.maskedPaths");
    }

    #[test]
    fn initial_state_records_cgroups_hooks_and_the_pid_namespace() {
        let mut d = doc(json!({"namespaces": [{"type": "mount"}, {"type": "pid"}],
                               "cgroupsPath": "/carve-test/x"}));
        d["hooks"] = json!({"poststop": [{"path": "/bin/true"}],
                            "startContainer": [{"path": "/bin/true", "timeout": 7}]});
        d["annotations"] = json!({"a": "b"});
        let b = bundle(d);
        let l = load_bundle(b.path()).expect("loads");
        let o = CreateOptions {
            id: "c1".into(),
            ..Default::default()
        };
        let rt = Runtime::new("/nonexistent");
        let st = rt.initial_state(&o, &l, &NsPlan::of(&l.nss));
        assert_eq!(st.id, "c1");
        assert_eq!(st.cgroups_path, "/carve-test/x");
        assert!(st.own_pidns);
        assert_eq!(st.poststop.len(), 1);
        assert!(st.poststart.is_empty());
        assert_eq!(st.start_hook_secs, 7);
        assert_eq!(st.annotations.get("a").map(String::as_str), Some("b"));
        assert_eq!((st.pid, st.complete, st.started), (0, false, false));
        let sd = Runtime {
            systemd_cgroup: true,
            ..rt
        };
        assert_eq!(
            sd.initial_state(&o, &l, &NsPlan::of(&l.nss)).cgroups_path,
            "/system.slice/carve-oci-c1.scope"
        );
    }

    #[test]
    fn time_offsets_are_one_line_per_clock() {
        let off: std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset> =
            serde_json::from_value(json!({"boottime": {"secs": 5, "nanosecs": 7}})).unwrap();
        assert_eq!(time_offsets_body(&off), "boottime 5 7\n");
    }
}
