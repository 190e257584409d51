//! [`Runtime::exec_spawn`] in phases: find the container and build the process
//! ([`Runtime::exec_target`], [`exec_process`]), fork the child inside the container's pid and
//! time namespaces and cgroups ([`Runtime::fork_exec`]), place it ([`place`]: CPUs, cgroups,
//! `exec --cgroup` sub-cgroups) and serve it until it execs ([`await_exec`]).

use super::*;
use crate::process::CapMasks;
use crate::seccomp::Compiled;

/// What `exec` runs and where, read from the state directory.
pub(super) struct ExecTarget {
    pub(super) st: Persisted,
    pub(super) cg: Option<Manager>,
    pub(super) status: Status,
    /// `exec --cgroup` directories to move the process into.
    pub(super) sub_cgroups: Vec<PathBuf>,
    /// [`ExecOptions::outside_cpus`]: where the process goes instead of the container's cpuset.
    pub(super) outside: Option<Outside>,
    pub(super) spec: Spec,
    pub(super) process: Process,
    pub(super) seccomp: Option<Compiled>,
    pub(super) caps: Option<CapMasks>,
    /// A pidfd of init, to setns into all its namespaces at once.
    pub(super) init_fd: OwnedFd,
}

/// Where [`ExecOptions::outside_cpus`] puts the exec'd process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outside {
    /// The cgroup joined instead of the container's cpuset cgroup: the parent of the v1 cpuset
    /// cgroup, or the container's exec sibling on cgroup2.
    pub(super) dir: PathBuf,
    /// The CPUs (a CPU list).
    pub(super) cpus: String,
    /// `dir` is the cgroup2 exec sibling: it replaces the container's cgroup2 cgroup (the only
    /// hierarchy), which the process then never joins.
    pub(super) v2_sibling: bool,
}

/// The namespaces the exec child joins, from the config's namespace list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExecNs {
    /// The container has a user namespace.
    pub(super) userns: bool,
    /// The container has a mount namespace (else its root is a chroot).
    pub(super) mount_ns: bool,
    /// CLONE_NEW* joined by the child through init's pidfd.
    pub(super) join_flags: i32,
    /// pid and time: they apply to children, so the runtime enters them around the fork.
    pub(super) for_children: i32,
}

impl ExecNs {
    pub(super) fn of(nss: &[(LinuxNamespaceType, Option<PathBuf>)]) -> ExecNs {
        let children = |t: &LinuxNamespaceType| {
            matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time)
        };
        ExecNs {
            userns: nss.iter().any(|(t, _)| *t == LinuxNamespaceType::User),
            mount_ns: nss.iter().any(|(t, _)| *t == LinuxNamespaceType::Mount),
            join_flags: nss
                .iter()
                .filter(|(t, _)| !children(t))
                .fold(0, |f, (t, _)| f | clone_flag(*t)),
            for_children: nss
                .iter()
                .filter(|(t, _)| children(t))
                .fold(0, |f, (t, _)| f | clone_flag(*t)),
        }
    }
}

impl Runtime {
    /// The container (created or running), its process for `o` and what it needs; with its
    /// state directory, whose shared lock the caller holds until the fork.
    pub(super) fn exec_target(&self, o: &ExecOptions) -> Result<(ContainerDir, ExecTarget), Error> {
        let dir = ContainerDir::open(&self.root, &o.id, false)?;
        let st = dir.load()?;
        let cg = load_cg(&dir);
        let status = status_of(&st, cg.as_ref());
        match status {
            Status::Created | Status::Running => {}
            // runc: "exec failed: cannot exec in a paused container" (stopped likewise).
            s => {
                return Err(Error::Status(format!(
                    "exec failed: cannot exec in a {s} container"
                )))
            }
        }
        let sub_cgroups = match (&cg, o.cgroups.is_empty()) {
            (_, true) => Vec::new(),
            (Some(m), false) => sub_cgroup_dirs(m, &o.cgroups)?,
            (None, false) => {
                return Err(Error::Status(format!(
                    "exec --cgroup: container {} has no cgroup",
                    o.id
                )))
            }
        };
        let outside = outside_cpuset(cg.as_ref(), o)?;
        let spec = stored_spec(&dir)?;
        let process = exec_process(&spec, o)?;
        // A stored profile that no longer compiles must not let the process run unfiltered.
        let seccomp = compile_seccomp(&spec, &dir.path.join("config.json"))?;
        let caps = cap_masks(&process)?;
        let init_fd = open_init(&st).ok_or_else(|| {
            Error::Status("exec failed: cannot exec in a stopped container".into())
        })?;
        Ok((
            dir,
            ExecTarget {
                st,
                cg,
                status,
                sub_cgroups,
                outside,
                spec,
                process,
                seccomp,
                caps,
                init_fd,
            },
        ))
    }

    /// Forks the exec child inside the container's pid and time namespaces (entered around the
    /// fork, left right after) and, when it can, its cgroups; the child never returns. Returns
    /// its pid, pidfd and whether it started in its v1 and cgroup2 cgroups.
    pub(super) fn fork_exec(
        &self,
        t: &ExecTarget,
        ns: &ExecNs,
        plan: &Plan,
        child: &Channel,
        console: Option<RawFd>,
    ) -> Result<(i32, OwnedFd, bool, bool), Error> {
        let own_ns = open_own_ns(ns.for_children)?;
        if ns.for_children != 0 {
            sys::setns(t.init_fd.as_raw_fd(), ns.for_children)
                .map_err(io("joining the container's pid namespace"))?;
        }
        // The child starts inside the container's cgroups, as init does (clone_in_cgroups). The
        // way back for this thread is its own cgroups: a manager detected here, used only when it
        // names the same directories as the stored one.
        // With execCPUAffinity.initial the child does its setup on those CPUs outside the
        // container's cpuset and is migrated into the cgroups after (runc#3922: where real-time
        // threads own the container's CPUs, a runtime process inside the cpuset would starve).
        let here =
            t.cg.as_ref()
                .filter(|_| initial_cpus(&t.process).is_none() && t.outside.is_none())
                .and_then(|m| {
                    Manager::new(&self.cgroup_root, &t.st.cgroups_path)
                        .ok()
                        .filter(|h| h.dirs() == m.dirs())
                });
        let forked = clone_in_cgroups(here.as_ref(), 0);
        // Only this process goes back: the child must stay in the container's time namespace
        // (its offsets apply to the program it execs) and pid namespace.
        if !matches!(forked, Ok((Forked::Child, _, _))) {
            for (f, fd) in &own_ns {
                let _ = sys::setns(fd.as_raw_fd(), *f);
            }
        }
        let (forked, v1_joined, v2_joined) = forked?;
        match forked {
            Forked::Child => {
                init::close_fds_except(3 + plan.preserve_fds as RawFd, &plan.keep_fds);
                sys::unblock_all_signals();
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                let outside = t.outside.as_ref().map(|o| o.cpus.as_str());
                let r = exec_child(plan, child, &t.init_fd, ns.join_flags, console, outside);
                let _ = child.send(&Msg::Error(r), &[]);
                init::exit(1)
            }
            Forked::Parent(pid, fd) => Ok((pid, fd, v1_joined, v2_joined)),
        }
    }
}

/// This process's own pid and time namespaces (those of `for_children`), to come back to.
fn open_own_ns(for_children: i32) -> Result<Vec<(i32, OwnedFd)>, Error> {
    [(libc::CLONE_NEWPID, "pid"), (0x80, "time")]
        .into_iter()
        .filter(|(f, _)| for_children & f != 0)
        .map(|(f, n)| {
            sys::openat(
                libc::AT_FDCWD,
                Path::new(&format!("/proc/self/ns/{n}")),
                libc::O_RDONLY,
                0,
            )
            .map(|fd| (f, fd))
        })
        .collect::<Result<_, _>>()
        .map_err(io("opening own namespaces"))
}

/// Puts the forked child where it runs: execCPUAffinity.initial, then (after `Go`: it joins the
/// namespaces while a migration waits for its grace period) the container's cgroups and the
/// `exec --cgroup` sub-cgroups, then `Joined`. `fail` kills and reaps the child.
pub(super) fn place(
    parent: &Channel,
    t: &ExecTarget,
    pid: i32,
    (v1_joined, v2_joined): (bool, bool),
    fail: &dyn Fn(Error) -> Error,
) -> Result<(), Error> {
    // execCPUAffinity.initial is set here, before the child can be migrated: once in the
    // cpuset, CPUs outside it could no longer be asked for.
    if let Some(a) = initial_cpus(&t.process) {
        crate::process::set_affinity_of(pid, &a).map_err(|e| {
            fail(Error::Setup(format!(
                "process.execCPUAffinity.initial: {e}"
            )))
        })?;
    }
    // Outside the cpuset from the first instruction: a real-time task may own the container's
    // CPUs (runc#3922).
    if let Some(Outside { cpus, .. }) = &t.outside {
        crate::process::set_affinity_of(pid, cpus)
            .map_err(|e| fail(Error::Setup(format!("exec on CPUs {cpus}: {e}"))))?;
    }
    // A failed send means it already reported an error.
    let _ = parent.send(&Msg::Go, &[]);
    let v2_sibling = t.outside.as_ref().is_some_and(|o| o.v2_sibling);
    if let Some(m) = &t.cg {
        m.add_task_to(pid, !v1_joined, !v2_joined && !v2_sibling)
            .map_err(|e| fail(e.into()))?;
    }
    if let Some(Outside { dir, cpus, .. }) = &t.outside {
        // Joining a cpuset resets the affinity to its CPUs: set it again after.
        carve_cgroups::fs::write(dir, "cgroup.procs", &pid.to_string())
            .map_err(|e| fail(Error::Setup(format!("exec on CPUs {cpus}: {e}"))))?;
        crate::process::set_affinity_of(pid, cpus)
            .map_err(|e| fail(Error::Setup(format!("exec on CPUs {cpus}: {e}"))))?;
    }
    // exec --cgroup: from the container's cgroups on into the sub-cgroups (a migration, as
    // runc does; the process has not exec'd yet: it waits for `Joined`).
    for d in &t.sub_cgroups {
        carve_cgroups::fs::write(d, "cgroup.procs", &pid.to_string()).map_err(|e| {
            fail(Error::Setup(format!(
                "exec --cgroup: moving the process into {}: {e}",
                d.display()
            )))
        })?;
    }
    let _ = parent.send(&Msg::Joined, &[]);
    Ok(())
}

/// Serves the child until it execs (EOF on the channel): a process that loaded a profile with
/// SCMP_ACT_NOTIFY gets its listener forwarded to listenerPath, as create does, before it may
/// exec.
pub(super) fn await_exec(
    parent: &Channel,
    o: &ExecOptions,
    t: &ExecTarget,
    pid: i32,
    fail: &dyn Fn(Error) -> Error,
) -> Result<(), Error> {
    loop {
        match parent.recv(1) {
            Ok(None) => return Ok(()),
            Ok(Some((Msg::Ready, fds))) => {
                if let (Some(fd), Some(sc)) = (fds.first(), t.seccomp.as_ref()) {
                    let who = NotifyState {
                        id: &o.id,
                        bundle: &t.st.bundle,
                        spec: &t.spec,
                        status: &t.status.to_string(),
                        init_pid: t.st.pid,
                        pid,
                    };
                    send_notify_fd(&who, fd, sc).map_err(fail)?;
                }
                drop(fds);
                let _ = parent.send(&Msg::Go, &[]);
            }
            Ok(Some((Msg::Error(e), _))) => return Err(fail(Error::Setup(e))),
            Ok(Some((m, _))) => {
                return Err(fail(Error::Setup(format!("unexpected message {m:?}"))))
            }
            Err(e) => return Err(fail(io("waiting for the exec'd process to exec")(e))),
        }
    }
}

/// The exec'd process: overrides on the config's process, or a process.json.
pub(super) fn exec_process(spec: &Spec, o: &ExecOptions) -> Result<Process, Error> {
    let mut p = if let Some(f) = &o.process {
        let b = std::fs::read(f).map_err(|source| ConfigError::Read {
            file: f.clone(),
            source,
        })?;
        config::parse_json::<Process>(f, &b)?
    } else {
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(o.args.clone()));
        p.set_terminal(Some(o.tty));
        p
    };
    if !o.env.is_empty() {
        p.set_env(Some(merge_env(p.env().as_deref().unwrap_or(&[]), &o.env)));
    }
    if let Some(c) = &o.cwd {
        p.set_cwd(c.clone());
    }
    if let Some(u) = &o.user {
        set_user_override(&mut p, u)?;
    }
    if !o.additional_gids.is_empty() {
        // runc appends them to the configured ones.
        let mut user = p.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(o.additional_gids.iter().copied());
        user.set_additional_gids(Some(gids));
        p.set_user(user);
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !o.caps.is_empty() {
        add_caps(&mut p, &o.caps)?;
    }
    config::validate_process(Path::new("process"), "process", &p)?;
    Ok(p)
}

/// `--env KEY=VALUE` over the process's environment: a KEY given replaces the old one and
/// moves to the end.
fn merge_env(env: &[String], extra: &[String]) -> Vec<String> {
    let mut env = env.to_vec();
    for e in extra {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    env
}

/// `--user uid[:gid]` (runc's grammar); without a gid the process keeps the configured one.
fn set_user_override(p: &mut Process, u: &str) -> Result<(), Error> {
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let bad = |what: &str, v: &str| {
        Error::Status(format!(
            "--user {u}: parsing {v:?} as int for {what} failed (format: <uid>[:<gid>])"
        ))
    };
    let mut user = p.user().clone();
    user.set_uid(uid.parse().map_err(|_| bad("uid", uid))?);
    if let Some(g) = gid {
        user.set_gid(g.parse().map_err(|_| bad("gid", g))?);
    }
    p.set_user(user);
    Ok(())
}

/// `--cap` names (with or without `CAP_`) added to the bounding, effective and permitted sets.
fn add_caps(p: &mut Process, names: &[String]) -> Result<(), Error> {
    let mut c = p.capabilities().clone().unwrap_or_default();
    let extra: Vec<oci_spec::runtime::Capability> = names
        .iter()
        .map(|n| {
            n.trim_start_matches("CAP_")
                .parse()
                .map_err(|_| Error::Status(format!("unknown capability {n}")))
        })
        .collect::<Result<_, _>>()?;
    let with = |set: &Option<oci_spec::runtime::Capabilities>| {
        let mut s = set.clone().unwrap_or_default();
        s.extend(extra.iter().copied());
        Some(s)
    };
    let (b, e, pm) = (with(c.bounding()), with(c.effective()), with(c.permitted()));
    c.set_bounding(b);
    c.set_effective(e);
    c.set_permitted(pm);
    p.set_capabilities(Some(c));
    Ok(())
}

/// For [`ExecOptions::outside_cpus`]: where the process goes instead of the container's cpuset
/// cgroup — the parent of a v1 cpuset cgroup, or on cgroup2 the container's exec sibling (made
/// or refreshed here: a cgroup beside the container's with these CPUs and a copy of its limits,
/// see `carve_cgroups::v2::sibling`). `None` when not asked for, when the container has no
/// cgroup, when `exec --cgroup` names sub-cgroups on cgroup2 (they are below the container's
/// cgroup: the explicit request wins, on the container's CPUs), or on a hybrid host whose
/// cpuset is on cgroup2 (warned).
fn outside_cpuset(cg: Option<&Manager>, o: &ExecOptions) -> Result<Option<Outside>, Error> {
    let (Some(cpus), Some(m)) = (&o.outside_cpus, cg) else {
        return Ok(None);
    };
    let dir = m.path_on("cpuset");
    if dir.is_some() && dir.as_deref() == m.v2_dir() {
        if !o.cgroups.is_empty() {
            tracing::info!("exec --cgroup: the process runs in the container's sub-cgroups, on its CPUs, not on {cpus}");
            return Ok(None);
        }
        return match m.make_exec_sibling(cpus)? {
            Some(dir) => Ok(Some(Outside {
                dir,
                cpus: cpus.clone(),
                v2_sibling: true,
            })),
            None => {
                tracing::warn!(
                    "exec on CPUs {cpus}: the cpuset is on cgroup2 of a hybrid host: the process stays in the container's cpuset"
                );
                Ok(None)
            }
        };
    }
    let parent = dir
        .and_then(|d| d.parent().map(Path::to_path_buf))
        .ok_or_else(|| {
            Error::Status(format!(
                "exec on CPUs {cpus}: container {} has no v1 cpuset cgroup",
                o.id
            ))
        })?;
    Ok(Some(Outside {
        dir: parent,
        cpus: cpus.clone(),
        v2_sibling: false,
    }))
}

/// `process.execCPUAffinity.initial` when set and not empty.
fn initial_cpus(p: &Process) -> Option<String> {
    p.exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().clone())
        .filter(|s| !s.trim().is_empty())
}

fn exec_child(
    plan: &Plan,
    chan: &Channel,
    init_fd: &OwnedFd,
    join_flags: i32,
    console: Option<RawFd>,
    outside_cpus: Option<&str>,
) -> String {
    let r = (|| -> crate::step::StepResult<std::convert::Infallible> {
        chan.expect(&Msg::Go, "waiting for the runtime")?;
        sys::setns(init_fd.as_raw_fd(), join_flags)
            .map_err(|e| format!("joining the container's namespaces: {e}"))?;
        if !plan.mount_ns {
            // The container shares the runtime's mount namespace: its root is a chroot.
            crate::rootfs::chroot_into(plan.rootfs)?;
        }
        if plan.userns {
            init::become_ns_root()?;
        }
        if plan.process.terminal().unwrap_or(false) {
            let cs = console.ok_or("--tty needs --console-socket")?;
            init::setup_console(cs, plan.process)?;
        }
        init::privileged_attrs(plan.process, plan.spec)?;
        let target = crate::process::exec_target(plan.process)?;
        init::enter_cwd(plan.process)?;
        chan.expect(&Msg::Joined, "waiting for the cgroups")?;
        // execCPUAffinity.final, else ExecOptions::outside_cpus, else the container's own CPUs
        // (runtime-spec): since Linux 6.2 a cpuset move keeps an affinity set before it
        // (`initial`, or the runtime's own when its caller pinned it), so it is reset
        // explicitly, as runc 1.3 does.
        match plan
            .process
            .exec_cpu_affinity()
            .as_ref()
            .and_then(|a| a.cpu_affinity_final().clone())
            .filter(|s| !s.trim().is_empty())
            .or(outside_cpus.map(str::to_string))
        {
            Some(a) => crate::process::set_affinity(&a)?,
            None => crate::process::reset_affinity()?,
        }
        // The process outlives a detached `exec`: stop dying with the runtime.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
        let (notify, late) = init::finalize_creds(plan)?;
        if let Some(fd) = notify {
            // The runtime hands the listener to listenerPath before the program runs, so a
            // failure to do so kills this process instead of leaving it waiting on nobody.
            chan.send(&Msg::Ready, &[fd.as_raw_fd()])
                .map_err(|e| format!("sending the seccomp listener: {e}"))?;
            drop(fd);
            chan.expect(&Msg::Go, "waiting for the seccomp listener to be forwarded")?;
        }
        Err(init::load_late_seccomp_and_exec(plan, late, &target).into())
    })();
    match r {
        Ok(never) => match never {},
        Err(e) => e.to_string(),
    }
}

/// The directories of runc's `exec --cgroup` values below the container's cgroup `m`. Each value
/// is `PATH` (only alone: every hierarchy) or `CTRL[,CTRL]:PATH` (the hierarchies holding those
/// controllers; `unified` names the cgroup2 directory of a hybrid host). A hierarchy not named
/// stays in the container's cgroup. The sub-cgroups must exist (runc does not create them) and
/// stay inside the container's cgroup.
pub(super) fn sub_cgroup_dirs(m: &Manager, values: &[String]) -> Result<Vec<PathBuf>, Error> {
    let flag = values.join(" --cgroup ");
    let bad = |msg: String| Error::Status(format!("exec --cgroup {flag}: {msg}"));
    let (all, by_ctl) = parse_cgroup_values(values, &bad)?;
    // (container directory, sub path) per hierarchy touched.
    let mut picks: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(p) = all {
        picks.extend(m.dirs().into_iter().map(|d| (d, p)));
    }
    for (c, p) in by_ctl {
        let d = m.path_on(c).ok_or_else(|| {
            bad(format!(
                "unknown controller {c:?} (not in the container's cgroups)"
            ))
        })?;
        match picks.iter().find(|(e, _)| *e == d) {
            // Co-mounted controllers (cpu,cpuacct) share a directory: they must agree.
            Some((_, q)) if *q != p => {
                return Err(bad(format!(
                    "controllers sharing {} given different paths ({q:?}, {p:?})",
                    d.display()
                )))
            }
            Some(_) => {}
            None => picks.push((d, p)),
        }
    }
    let mut out = Vec::new();
    for (base, p) in picks {
        let dir = sub_path(&base, p, &bad)?;
        if !dir.is_dir() {
            return Err(bad(format!(
                "sub-cgroup {} does not exist (create it first)",
                dir.display()
            )));
        }
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    Ok(out)
}

/// The `--cgroup` values: a lone `PATH` for every hierarchy, else (controller, path) pairs.
type CgroupValues<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>);

/// Splits the `--cgroup` values; `bad` makes the error from the message after
/// `exec --cgroup …:`.
fn parse_cgroup_values<'a>(
    values: &'a [String],
    bad: &dyn Fn(String) -> Error,
) -> Result<CgroupValues<'a>, Error> {
    let mut all: Option<&str> = None;
    let mut by_ctl: Vec<(&str, &str)> = Vec::new();
    for v in values {
        match v.split_once(':') {
            None if values.len() == 1 => all = Some(v),
            None => {
                return Err(bad(format!(
                    "invalid argument {v:?} (missing <controller>: prefix)"
                )))
            }
            Some((_, p)) if p.contains(':') => return Err(bad(format!("invalid argument {v:?}"))),
            Some((ctls, p)) => {
                for c in ctls.split(',') {
                    if c.is_empty() {
                        return Err(bad(format!(
                            "invalid argument {v:?} (empty <controller> prefix)"
                        )));
                    }
                    if by_ctl.iter().any(|(k, _)| *k == c) {
                        return Err(bad(format!("controller {c} specified multiple times")));
                    }
                    by_ctl.push((c, p));
                }
            }
        }
    }
    Ok((all, by_ctl))
}

/// `base` joined with `p` lexically, as runc's filepath.Join: an absolute PATH is below the
/// container's cgroup too; `..` may not leave it (`bad` makes that error).
fn sub_path(base: &Path, p: &str, bad: &dyn Fn(String) -> Error) -> Result<PathBuf, Error> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(bad(format!(
                        "{p} is not a sub cgroup path: it leaves the container's cgroup {}",
                        base.display()
                    )));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.iter().fold(base.to_path_buf(), |d, c| d.join(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use LinuxNamespaceType as T;

    fn spec() -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "env": ["A=1", "B=2"],
                        "user": {"uid": 1, "gid": 2, "additionalGids": [5]}}
        }))
        .unwrap()
    }

    fn opts(args: &[&str]) -> ExecOptions {
        ExecOptions {
            id: "c".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn pid_and_time_are_entered_for_children_the_rest_joined() {
        let ns = ExecNs::of(&[
            (T::Mount, None),
            (T::Pid, None),
            (T::Network, Some("/x".into())),
            (T::Time, None),
        ]);
        assert_eq!(ns.join_flags, libc::CLONE_NEWNS | libc::CLONE_NEWNET);
        assert_eq!(ns.for_children, libc::CLONE_NEWPID | 0x80);
        assert!(ns.mount_ns && !ns.userns);
    }

    #[test]
    fn overrides_apply_to_the_configs_process() {
        let mut o = opts(&["ls", "-l"]);
        o.env = vec!["A=3".into(), "C=4".into()];
        o.user = Some("7".into());
        o.additional_gids = vec![9];
        o.cwd = Some("/tmp".into());
        o.no_new_privs = true;
        o.caps = vec!["CAP_NET_ADMIN".into(), "SYS_TIME".into()];
        let p = exec_process(&spec(), &o).expect("process");
        assert_eq!(p.args().as_deref(), Some(&["ls".into(), "-l".into()][..]));
        assert_eq!(
            p.env().as_deref(),
            Some(&["B=2".into(), "A=3".into(), "C=4".into()][..])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (7, 2));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[5, 9][..]));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.no_new_privileges(), Some(true));
        let c = p.capabilities().as_ref().expect("caps");
        use oci_spec::runtime::Capability;
        for set in [c.bounding(), c.effective(), c.permitted()] {
            let set = set.as_ref().expect("set");
            assert!(set.contains(&Capability::NetAdmin) && set.contains(&Capability::SysTime));
        }
        let inh = c.inheritable().clone().unwrap_or_default();
        assert!(
            !inh.contains(&Capability::NetAdmin),
            "only three sets get --cap"
        );
    }

    #[test]
    fn bad_overrides_are_named() {
        let mut o = opts(&["ls"]);
        o.user = Some("1:x".into());
        let e = exec_process(&spec(), &o).expect_err("refused").to_string();
        assert_eq!(
            e,
            "--user 1:x: parsing \"x\" as int for gid failed (format: <uid>[:<gid>])"
        );
        let mut o = opts(&["ls"]);
        o.caps = vec!["CAP_FLY".into()];
        let e = exec_process(&spec(), &o).expect_err("refused").to_string();
        assert_eq!(e, "unknown capability CAP_FLY");
        let e = exec_process(&spec(), &opts(&[])).expect_err("refused");
        assert!(
            matches!(&e, Error::Config(ConfigError::Invalid { path, .. }) if path == "process.args"),
            "{e}"
        );
    }

    #[test]
    fn a_process_file_replaces_the_configs_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("process.json");
        std::fs::write(
            &f,
            r#"{"args": ["id"], "cwd": "rel", "user": {"uid": 0, "gid": 0}}"#,
        )
        .unwrap();
        let mut o = opts(&[]);
        o.process = Some(f.clone());
        let e = exec_process(&spec(), &o).expect_err("relative cwd refused");
        assert!(
            matches!(&e, Error::Config(ConfigError::Invalid { path, .. }) if path == "process.cwd"),
            "{e}"
        );
        std::fs::write(
            &f,
            r#"{"args": ["id"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#,
        )
        .unwrap();
        let p = exec_process(&spec(), &o).expect("process");
        assert_eq!(p.args().as_deref(), Some(&["id".into()][..]));
        assert!(p.env().is_none());
    }

    #[test]
    fn cgroup_values_are_one_path_or_controller_pairs() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let bad = |m: String| Error::Status(m);
        let one = v(&["sub"]);
        assert_eq!(
            parse_cgroup_values(&one, &bad).unwrap(),
            (Some("sub"), vec![])
        );
        let two = v(&["cpu,memory:a", "pids:b"]);
        assert_eq!(
            parse_cgroup_values(&two, &bad).unwrap(),
            (None, vec![("cpu", "a"), ("memory", "a"), ("pids", "b")])
        );
        for (input, msg) in [
            (
                v(&["a", "b"]),
                "invalid argument \"a\" (missing <controller>: prefix)",
            ),
            (v(&["cpu:a:b"]), "invalid argument \"cpu:a:b\""),
            (
                v(&[",cpu:a"]),
                "invalid argument \",cpu:a\" (empty <controller> prefix)",
            ),
            (
                v(&["cpu:a", "cpu:b"]),
                "controller cpu specified multiple times",
            ),
        ] {
            assert_eq!(
                parse_cgroup_values(&input, &bad).unwrap_err().to_string(),
                msg
            );
        }
    }

    #[test]
    fn sub_paths_stay_below_the_container_cgroup() {
        let base = Path::new("/sys/fs/cgroup/cpu/c");
        let bad = |m: String| Error::Status(m);
        let sub_path = |b: &Path, p: &str| sub_path(b, p, &bad).map_err(|e| e.to_string());
        assert_eq!(sub_path(base, "/a/./b").unwrap(), base.join("a/b"));
        assert_eq!(sub_path(base, "a/../b").unwrap(), base.join("b"));
        assert_eq!(sub_path(base, "").unwrap(), base);
        assert_eq!(
            sub_path(base, "a/../../x").unwrap_err(),
            "a/../../x is not a sub cgroup path: it leaves the container's cgroup /sys/fs/cgroup/cpu/c"
        );
    }
}
