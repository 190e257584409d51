//! The container tier as the engine drives it: an OCI runtime with runc's command line
//! (`carve-oci`, or runc itself), run on the bundle carve writes for each container partition.

use crate::bundle::{host_mems, write_bundle, BundleContext};
use crate::cgroup::dir_in;
use crate::process::{poll_exit, wait_exit};
use crate::spec::{ContainerSpec, KindSpec, RootfsSource};
use crate::state::PartitionState;
use crate::tier::{Launched, PlanRef, Tier, TierCtx, TierError, TierResult};
use carve_journal::{Change, Journal, ProcessId};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// An OCI runtime binary with runc's command line, and the --root it keeps state under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRuntime {
    /// The runtime binary (carve-oci or runc).
    pub binary: PathBuf,
}

impl OciRuntime {
    /// The runtime named by `CARVE_OCI_RUNTIME`, else `carve-oci` beside the running binary,
    /// else `carve-oci` on PATH.
    pub fn from_env() -> Self {
        if let Some(b) = std::env::var_os("CARVE_OCI_RUNTIME") {
            return OciRuntime { binary: b.into() };
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("carve-oci")))
            .filter(|p| p.is_file());
        OciRuntime {
            binary: beside.unwrap_or_else(|| "carve-oci".into()),
        }
    }

    fn cmd(&self, root: &Path) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(root);
        c
    }

    fn spawn_err(&self) -> impl FnOnce(std::io::Error) -> TierError + '_ {
        |source| TierError::Spawn {
            binary: self.binary.clone(),
            source,
        }
    }

    fn run(&self, root: &Path, args: &[&str]) -> TierResult<()> {
        let out = self
            .cmd(root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(self.spawn_err())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(TierError::Runtime {
                binary: self.binary.clone(),
                args: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Runs `cmd` inside container `id` with this process's stdio; returns its exit code.
    pub fn exec(&self, root: &Path, id: &str, cmd: &[String], tty: bool) -> TierResult<i32> {
        let mut c = self.cmd(root);
        c.arg("exec");
        if tty {
            c.arg("--tty");
        }
        c.arg(id).args(cmd);
        let st = c.status().map_err(self.spawn_err())?;
        Ok(st.code().unwrap_or(128 + libc::SIGKILL))
    }
}

impl OciRuntime {
    /// Runs `cmd` in container `id` without a terminal, stdin closed, and returns its exit
    /// status with what it wrote (the supervisor API's exec).
    pub fn exec_captured(
        &self,
        root: &Path,
        id: &str,
        cmd: &[String],
    ) -> TierResult<std::process::Output> {
        let mut c = self.cmd(root);
        c.arg("exec").arg(id).args(cmd);
        c.stdin(std::process::Stdio::null())
            .output()
            .map_err(self.spawn_err())
    }
}

/// The id of a container partition's container.
pub fn container_id(plan: &str, part: &str) -> String {
    format!("carve-{plan}-{part}")
}

/// The cgroup path of a partition (the same on every hierarchy).
pub fn cgroup_path(plan: &str, part: &str) -> String {
    format!("/carve-{plan}/{part}")
}

/// The signal a container's init expects for a clean shutdown: SIGRTMIN+3 for systemd, SIGPWR
/// for busybox/sysvinit; SIGTERM for an application container.
pub fn stop_signal(c: &ContainerSpec) -> i32 {
    if !c.init {
        return libc::SIGTERM;
    }
    let root = match &c.rootfs {
        RootfsSource::Folder(r) => r.clone(),
        RootfsSource::Bundle(b) => b.join("rootfs"),
    };
    let init = root.join("sbin/init");
    let target = std::fs::read_link(&init).unwrap_or_default();
    if target.to_string_lossy().contains("systemd") {
        libc::SIGRTMIN() + 3
    } else {
        libc::SIGPWR
    }
}

fn container_of(plan: &PlanRef<'_>, name: &str) -> TierResult<ContainerSpec> {
    match plan.plan.partition(name).map(|p| &p.kind) {
        Some(KindSpec::Container(c)) => Ok(c.clone()),
        _ => Err(TierError::NotContainer(name.to_string())),
    }
}

/// The plan's parent cgroup on every hierarchy and the journal records for the container's
/// leaf (which the runtime makes).
fn plan_cgroups(
    ctx: &TierCtx<'_>,
    journal: &mut Journal,
    cgroup: &str,
    mems: &str,
) -> TierResult<()> {
    // carve makes the plan's parent cgroup itself, so its cpuset holds just the plan's
    // container cores (a runtime copying the root's set would fail while another plan holds
    // a core exclusively); the runtime makes the leaf, recorded first so undo removes it.
    let parent = format!("/carve-{}", ctx.plan.name);
    let plan_cpus = ctx
        .plan
        .partitions
        .iter()
        .filter(|p| matches!(p.kind, KindSpec::Container(_)))
        .fold(carve_core::CpuSet::new(), |acc, p| acc.union(&p.cpus));
    for h in ctx.hierarchies {
        let pdir = dir_in(h, &parent);
        journal.create_dir(&pdir)?;
        if h.controllers.iter().any(|c| c == "cpuset") {
            for (file, value) in [
                ("cpuset.cpus", plan_cpus.to_string()),
                ("cpuset.mems", mems.to_string()),
            ] {
                let f = pdir.join(file);
                let cur = std::fs::read_to_string(&f).unwrap_or_default();
                if cur.trim().is_empty() {
                    std::fs::write(&f, &value).map_err(|source| TierError::Write {
                        value,
                        path: f.clone(),
                        source,
                    })?;
                }
            }
        }
        journal.record(Change::Dir {
            path: dir_in(h, cgroup),
        })?;
    }
    // On cgroup2 (the unified hierarchy of a hybrid host too) undo can kill every process of
    // the container at once, even one whose init was never journaled (carve killed between
    // the runtime's create and `start` recording the init).
    for h in ctx.hierarchies.iter().filter(|h| h.v2) {
        journal.record(Change::WriteBack {
            path: dir_in(h, cgroup).join("cgroup.kill"),
            value: "1".into(),
        })?;
    }
    Ok(())
}

impl OciRuntime {
    /// `create` of container `id` from `bundle`, its output appended to the partition's log;
    /// with `init` (a system container) the pty master it sends is served on the partition's
    /// console socket. On failure the container is deleted.
    fn create(
        &self,
        root: &Path,
        id: &str,
        init: bool,
        pdir: &Path,
        bundle: &Path,
        pid_file: &Path,
    ) -> TierResult<()> {
        let log = pdir.join("log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(TierError::io(&log))?;
        let err = out.try_clone().map_err(TierError::io(&log))?;
        // A system container's init runs on a pty whose master the runtime sends to this socket
        // during create; otherwise the init inherits the runtime's stdio: its output goes to the
        // log.
        let console = if init {
            let path = pdir.join("console-runtime.sock");
            let _ = std::fs::remove_file(&path);
            let l = std::os::unix::net::UnixListener::bind(&path).map_err(TierError::io(&path))?;
            Some((l, path))
        } else {
            None
        };
        let mut create = self.cmd(root);
        create.arg("create");
        if let Some((_, path)) = &console {
            create.arg("--console-socket").arg(path);
        }
        let st = create
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(self.spawn_err())?;
        if !st.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let last = tail.lines().last().unwrap_or("").to_string();
            let _ = self.run(root, &["delete", "--force", id]);
            return Err(TierError::Create {
                binary: self.binary.clone(),
                id: id.to_string(),
                status: st,
                last,
            });
        }
        if let Some((listener, path)) = console {
            // create has sent the master (or failed): it waits in the socket's queue.
            let master = listener
                .set_nonblocking(true)
                .and_then(|()| crate::console::receive_master(&listener))
                .and_then(|m| crate::console::serve(m, &log, &crate::console::socket_path(pdir)));
            let _ = std::fs::remove_file(&path);
            if let Err(e) = master {
                let _ = self.run(root, &["delete", "--force", id]);
                return Err(TierError::Console {
                    id: id.to_string(),
                    source: e,
                });
            }
        }
        Ok(())
    }
}

impl Tier for OciRuntime {
    fn kind(&self) -> &'static str {
        "container"
    }

    fn start(&self, ctx: &TierCtx<'_>, journal: &mut Journal) -> TierResult<Launched> {
        let KindSpec::Container(c) = &ctx.part.kind else {
            return Err(TierError::WrongKind("container"));
        };
        let name = &ctx.part.name;
        let pdir = ctx.dir.partition_dir(name);
        let cgroup = cgroup_path(&ctx.plan.name, name);
        let bundle = BundleContext {
            dir: pdir.join("bundle"),
            cgroups_path: cgroup.clone().into(),
            netns: ctx.netns.as_deref().map(carve_net::netns::netns_path),
            mems: host_mems(),
        };
        write_bundle(ctx.part, c, &bundle)?;
        plan_cgroups(ctx, journal, &cgroup, &bundle.mems)?;
        let root = ctx.dir.oci_root();
        std::fs::create_dir_all(&root).map_err(TierError::io(&root))?;
        let id = container_id(&ctx.plan.name, name);
        // A container of this id left by a crash of the same plan goes first.
        let _ = self.run(&root, &["delete", "--force", &id]);
        let log = pdir.join("log");
        let pid_file = pdir.join("pid");
        let _ = std::fs::remove_file(&pid_file);
        self.create(&root, &id, c.init, &pdir, &bundle.dir, &pid_file)?;
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| TierError::NoPidFile {
                binary: self.binary.clone(),
                id: id.clone(),
            })?;
        crate::engine::crash_point(&format!("container:{name}:created"));
        // The init exists now: record it so a crash of carve still ends it.
        if let Some(pid_id) = ProcessId::of(pid) {
            journal.record(Change::Process {
                id: pid_id,
                grace_ms: 1000,
            })?;
        }
        if let Err(e) = self.run(&root, &["start", &id]) {
            let _ = self.run(&root, &["delete", "--force", &id]);
            return Err(e);
        }
        Ok(Launched {
            pid,
            cgroup: Some(cgroup),
            id,
            log,
        })
    }

    fn stop(&self, plan: &PlanRef<'_>, part: &PartitionState, grace: Duration) -> TierResult<()> {
        let c = container_of(plan, &part.name)?;
        let root = plan.dir.oci_root();
        let proc_id = part.pid.and_then(ProcessId::of);
        if let Some(pid) = proc_id.filter(|p| poll_exit(*p).is_none()) {
            let sig = stop_signal(&c).to_string();
            let _ = self.run(&root, &["kill", &part.id, &sig]);
            if wait_exit(pid, grace).is_none() {
                let _ = self.run(&root, &["kill", &part.id, "KILL"]);
                if wait_exit(pid, Duration::from_secs(5)).is_none() {
                    return Err(TierError::Unkillable(part.id.clone()));
                }
            }
        }
        match self.run(&root, &["delete", "--force", &part.id]) {
            Ok(()) => Ok(()),
            // Already gone is what we wanted.
            Err(TierError::Runtime { stderr, .. }) if stderr.contains("not exist") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signal_follows_the_init() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sbin")).unwrap();
        let mut c = ContainerSpec {
            rootfs: RootfsSource::Folder(t.path().into()),
            command: vec![],
            env: vec![],
            init: false,
            network: None,
        };
        assert_eq!(stop_signal(&c), libc::SIGTERM);
        c.init = true;
        std::os::unix::fs::symlink("../bin/busybox", t.path().join("sbin/init")).unwrap();
        assert_eq!(stop_signal(&c), libc::SIGPWR);
        std::fs::remove_file(t.path().join("sbin/init")).unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", t.path().join("sbin/init")).unwrap();
        assert_eq!(stop_signal(&c), libc::SIGRTMIN() + 3);
    }
}
