//! `carve-oci`: a runc-compatible OCI runtime over the carve-container library.

mod args;
mod dedicated;
mod log;

use args::{Cli, Cmd, ExecArgs, Parsed, UpdateArgs};

use anyhow::{bail, Context, Result};
use carve_container::{CreateOptions, ExecOptions, Runtime, Status};
use std::io::Write;

fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    const SIGS: &[(&str, i32)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("IOT", libc::SIGIOT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("STKFLT", libc::SIGSTKFLT),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("TTIN", libc::SIGTTIN),
        ("TTOU", libc::SIGTTOU),
        ("URG", libc::SIGURG),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("VTALRM", libc::SIGVTALRM),
        ("PROF", libc::SIGPROF),
        ("WINCH", libc::SIGWINCH),
        ("IO", libc::SIGIO),
        ("POLL", libc::SIGPOLL),
        ("PWR", libc::SIGPWR),
        ("SYS", libc::SIGSYS),
    ];
    if let Some((_, n)) = SIGS.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    if let Some(off) = name
        .strip_prefix("RTMIN+")
        .and_then(|o| o.parse::<i32>().ok())
    {
        return Ok(libc::SIGRTMIN() + off);
    }
    bail!("unknown signal {s:?}")
}

/// `update`: runc's flags over an optional `--resources` document, applied through the manager.
fn update(rt: &Runtime, u: UpdateArgs) -> Result<()> {
    if u.l3_cache_schema.is_some() {
        bail!("Intel RDT/CAT: l3 cache schema is not enabled (carve-oci has no intelRdt support)");
    }
    if u.mem_bw_schema.is_some() {
        bail!("Intel RDT/MBA: memory bandwidth schema is not enabled (carve-oci has no intelRdt support)");
    }
    if u.kernel_memory {
        tracing::warn!("Kernel memory settings are ignored and will be removed");
    }
    let mut v = match &u.resources {
        Some(p) => resources_document(p)?,
        None => serde_json::json!({}),
    };
    let memsw = std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    apply_update_flags(&mut v, &u, memsw);
    let res: carve_container::oci_spec::runtime::LinuxResources =
        serde_json::from_value(v).context("building the resources")?;
    rt.update(&u.id, &res)?;
    Ok(())
}

/// `--resources FILE` (or `-`, stdin): a LinuxResources document, checked, as JSON to patch.
fn resources_document(p: &std::path::Path) -> Result<serde_json::Value> {
    let b = if p.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
    };
    let res: carve_container::oci_spec::runtime::LinuxResources =
        carve_container::config::parse_json(p, &b)?;
    Ok(serde_json::to_value(&res)?)
}

/// One `update` flag: where it lands in LinuxResources and how it is read from the arguments.
type UpdateField = (
    &'static str,
    &'static str,
    fn(&UpdateArgs) -> Option<serde_json::Value>,
);

/// runc's `update` flags → LinuxResources fields (section, key), in runc's order.
const UPDATE_FIELDS: &[UpdateField] = &[
    ("blockIO", "weight", |u| u.blkio_weight.map(Into::into)),
    ("cpu", "period", |u| u.cpu_period.map(Into::into)),
    ("cpu", "quota", |u| u.cpu_quota.map(Into::into)),
    ("cpu", "shares", |u| u.cpu_share.map(Into::into)),
    ("cpu", "realtimePeriod", |u| u.cpu_rt_period.map(Into::into)),
    ("cpu", "realtimeRuntime", |u| {
        u.cpu_rt_runtime.map(Into::into)
    }),
    ("cpu", "cpus", |u| u.cpuset_cpus.clone().map(Into::into)),
    ("cpu", "mems", |u| u.cpuset_mems.clone().map(Into::into)),
    ("memory", "limit", |u| u.memory.map(Into::into)),
    ("memory", "reservation", |u| {
        u.memory_reservation.map(Into::into)
    }),
    ("memory", "swap", |u| u.memory_swap.map(Into::into)),
    ("pids", "limit", |u| u.pids_limit.map(Into::into)),
];

/// Sets every given flag over the resources document `v` (flags win over `--resources`).
/// `memsw`: the v1 memory+swap file exists, so an unlimited memory lifts the swap limit too.
fn apply_update_flags(v: &mut serde_json::Value, u: &UpdateArgs, memsw: bool) {
    let mut set = |section: &str, key: &str, val: serde_json::Value| {
        if !v[section].is_object() {
            v[section] = serde_json::json!({});
        }
        v[section][key] = val;
    };
    for (section, key, get) in UPDATE_FIELDS {
        if let Some(val) = get(u) {
            set(section, key, val);
        }
    }
    if u.memory_swap.is_none() && u.memory == Some(-1) && memsw {
        // As runc: an unlimited memory without a swap value lifts the v1 memory+swap limit too
        // (the kernel keeps memory.limit_in_bytes at or below it).
        set("memory", "swap", (-1).into());
    }
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut o = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut o, v)?;
    writeln!(o)?;
    Ok(())
}

fn run(cli: Cli) -> Result<i32> {
    let mut rt = Runtime::new(cli.root);
    rt.systemd_cgroup = cli.systemd_cgroup;
    match cli.cmd {
        Cmd::Spec { bundle } => spec(&bundle)?,
        Cmd::Create(c) => create(&rt, &c)?,
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::Run { c, detach, keep } => return run_container(&rt, c, detach, keep),
        Cmd::State { id } => print_json(&rt.state(&id)?)?,
        Cmd::Kill { all, id, signal } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            rt.kill(&id, sig, all)?;
        }
        Cmd::Delete { force, id } => {
            rt.delete(&id, force)?;
            dedicated::teardown(&id)?;
        }
        Cmd::Exec(e) => return exec(&rt, e),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, &id, &format, ps_args)?,
        Cmd::Pause { id } => rt.pause(&id)?,
        Cmd::Resume { id } => rt.resume(&id)?,
        Cmd::Update(u) => update(&rt, u)?,
        Cmd::Events {
            stats,
            interval,
            id,
        } => events(&rt, &id, stats, interval)?,
        Cmd::List { format, quiet } => list(&rt, &format, quiet)?,
        Cmd::Features => print_json(&features())?,
    }
    Ok(0)
}

/// `spec`: a default config.json in the bundle, never over an existing one.
fn spec(bundle: &std::path::Path) -> Result<()> {
    let p = bundle.join("config.json");
    if p.exists() {
        bail!("File {} exists. Remove it first", p.display());
    }
    let body = serde_json::to_string_pretty(&carve_container::config::default_spec_json())?;
    std::fs::write(&p, body + "\n").with_context(|| format!("writing {}", p.display()))?;
    Ok(())
}

/// `create`, with the dedicated-core pod setup when the bundle asks for it.
fn create(rt: &Runtime, c: &CreateOptions) -> Result<()> {
    carve_container::seal::ensure_sealed().context("re-executing from a sealed copy")?;
    // Checked before anything exists: a bad annotation leaves nothing behind.
    let dedicated = dedicated::request(&c.bundle)?;
    rt.create(c)?;
    if let Some(req) = dedicated {
        let r = rt.state(&c.id).map_err(anyhow::Error::from).and_then(|st| {
            let pid = st["pid"]
                .as_i64()
                .context("the created container has no pid")?;
            dedicated::setup(&c.id, &req, pid as i32)
        });
        if let Err(e) = r {
            let _ = rt.delete(&c.id, true);
            return Err(e);
        }
    }
    Ok(())
}

/// `run`: create and start; in the foreground, proxy the terminal and signals, wait, delete.
fn run_container(rt: &Runtime, c: CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    carve_container::seal::ensure_sealed().context("re-executing from a sealed copy")?;
    // Become the subreaper so init is our child on every create path, and wait for it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let id = c.id.clone();
    let signals = block_signals_unless(detach)?;
    // In the foreground, a terminal without --console-socket is proxied here.
    let created = rt.create(&CreateOptions {
        tty_proxy: !detach,
        ..c
    })?;
    let raw = terminal_for(created.console.as_ref());
    if let Err(e) = rt.start(&id) {
        drop(raw);
        let _ = rt.delete(&id, true);
        return Err(e.into());
    }
    let Some(signals) = signals else {
        return Ok(0);
    };
    let r = carve_container::pty::forward(&created.pidfd, created.console.as_ref(), &signals);
    drop(raw);
    r.context("forwarding to the container")?;
    let code = carve_container::sys::pidfd_wait_child(&created.pidfd)
        .context("waiting for the container's init")?;
    if !keep {
        rt.delete(&id, true)?;
    }
    Ok(code)
}

/// `exec`: a new process in the container; in the foreground, proxied and waited for.
fn exec(rt: &Runtime, e: ExecArgs) -> Result<i32> {
    if e.ignore_paused {
        bail!("exec --ignore-paused is not supported by carve-oci: resume the container first");
    }
    if e.process_label.is_some() || e.apparmor.is_some() {
        tracing::warn!(
            "--process-label/--apparmor ignored: this host has neither SELinux nor AppArmor"
        );
    }
    if e.opts.process.is_none() && e.opts.args.is_empty() {
        bail!("exec: give a --process file or the program to run");
    }
    carve_container::seal::ensure_sealed().context("re-executing from a sealed copy")?;
    let signals = block_signals_unless(e.opts.detach)?;
    // A dedicated container's exec runs on housekeeping CPUs unless its pod says otherwise.
    let outside_cpus = dedicated::exec_cpus(&e.opts.id)?;
    let spawned = rt.exec_spawn(&ExecOptions {
        // In the foreground, a terminal without --console-socket is proxied here.
        tty_proxy: !e.opts.detach,
        outside_cpus,
        ..e.opts
    })?;
    let Some(signals) = signals else {
        return Ok(0);
    };
    let raw = terminal_for(spawned.console.as_ref());
    let r = carve_container::pty::forward(&spawned.pidfd, spawned.console.as_ref(), &signals);
    drop(raw);
    r.context("forwarding to the process")?;
    carve_container::sys::pidfd_wait_child(&spawned.pidfd).context("waiting for the process")
}

/// The forwarded signals blocked (to be read from a signalfd), unless the caller detaches.
fn block_signals_unless(detach: bool) -> Result<Option<carve_container::pty::Signals>> {
    if detach {
        return Ok(None);
    }
    Ok(Some(
        carve_container::pty::Signals::block().context("blocking signals")?,
    ))
}

/// With a proxied pty master: the caller's terminal size copied to it and the caller's stdin in
/// raw mode until the guard drops.
fn terminal_for(
    console: Option<&std::os::fd::OwnedFd>,
) -> Option<carve_container::pty::RawMode<'static>> {
    let m = console?;
    carve_container::pty::copy_window_size(m);
    raw_stdin()
}

/// `ps`: the container's pids as JSON, or the host's `ps` output narrowed to them.
fn ps(rt: &Runtime, id: &str, format: &str, ps_args: Vec<String>) -> Result<()> {
    let pids = rt.pids(id)?;
    if format == "json" {
        return print_json(&serde_json::json!(pids));
    }
    let args = if ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        ps_args
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("couldn't find PID field in ps output (give ps options that print PID)")?;
    println!("{header}");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            println!("{l}");
        }
    }
    Ok(())
}

/// `events`: stats every `every` (once with `--stats`) and an `oom` event per new OOM kill.
fn events(rt: &Runtime, id: &str, stats: bool, every: std::time::Duration) -> Result<()> {
    // OOM kills: the memory cgroup's `oom_kill` counter, polled every OOM_POLL (or each
    // interval if that is shorter); one `oom` event per new kill, as runc's notifier
    // gives one per OOM. Kills before `events` started are not reported.
    const OOM_POLL: std::time::Duration = std::time::Duration::from_millis(100);
    let mut ooms = if stats { None } else { rt.oom_kills(id)? };
    let oom_events = |ooms: &mut Option<u64>| -> Result<()> {
        let Some(seen) = *ooms else { return Ok(()) };
        let now = rt.oom_kills(id)?.unwrap_or(seen);
        for _ in seen..now {
            println!("{}", serde_json::json!({"type": "oom", "id": id}));
        }
        *ooms = Some(now.max(seen));
        Ok(())
    };
    let mut first = true;
    loop {
        let (data, status) = rt.stats(id)?;
        if first && !stats && status == Status::Stopped {
            // runc's words. (`--stats` still gives a stopped container's last counters.)
            bail!("container with id {id} is not running");
        }
        first = false;
        oom_events(&mut ooms)?;
        let ev = serde_json::json!({"type": "stats", "id": id, "data": data});
        println!("{ev}");
        if stats || status == Status::Stopped {
            return Ok(());
        }
        let until = std::time::Instant::now() + every;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(OOM_POLL));
            oom_events(&mut ooms)?;
        }
    }
}

/// `list`: ids only, JSON, or runc's table.
fn list(rt: &Runtime, format: &str, quiet: bool) -> Result<()> {
    let all = rt.list();
    if quiet {
        for s in &all {
            println!("{}", s["id"].as_str().unwrap_or(""));
        }
        return Ok(());
    }
    if format == "json" {
        return print_json(&serde_json::Value::Array(all));
    }
    println!(
        "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    );
    for s in &all {
        println!(
            "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
            s["id"].as_str().unwrap_or(""),
            s["pid"],
            s["status"].as_str().unwrap_or(""),
            s["bundle"].as_str().unwrap_or(""),
            s["created"].as_str().unwrap_or(""),
            s["owner"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Puts the caller's stdin into raw mode if it is a terminal (restored when dropped, also on
/// the error paths: `main` exits only after `run` returned).
fn raw_stdin() -> Option<carve_container::pty::RawMode<'static>> {
    match carve_container::pty::RawMode::stdin() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("putting the terminal into raw mode: {e}");
            None
        }
    }
}

/// `carve-oci features`: what this runtime implements (runtime-spec features.md). Each list
/// names only what config.json may use and carve-oci then honours; what it refuses
/// (intelRdt, netDevices) is reported disabled.
fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.3.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "idmap", "iversion", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec",
            "noiversion", "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid",
            "nosymfollow", "private", "ratime", "rbind", "rdev", "rdiratime", "relatime",
            "remount", "ridmap", "rexec", "rnoatime", "rnodev", "rnodiratime", "rnoexec", "rnorelatime",
            "rnostrictatime", "rnosuid", "rnosymfollow", "ro", "rprivate", "rrelatime", "rro",
            "rrw", "rshared", "rslave", "rstrictatime", "rsuid", "rsymfollow", "runbindable",
            "rw", "shared", "silent", "slave", "strictatime", "suid", "symfollow", "sync",
            "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false, "schemata": false, "monitoring": false},
            "memoryPolicy": {
                "modes": ["MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                    "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "mountExtensions": {"idmap": {"enabled": true}},
            "netDevices": {"enabled": false}
        },
        "annotations": {"org.opencontainers.runc.version": "carve-oci", "io.github.carve.version": env!("CARGO_PKG_VERSION")}
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let cli = match args::parse(&argv) {
        Ok(Parsed::Run(c)) => *c,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("carve-oci: {}", e.msg);
            std::process::exit(e.code);
        }
    };
    // Before anything is opened: the log file would take fd 3 (runc checks the same).
    let preserve = match &cli.cmd {
        Cmd::Create(c) | Cmd::Run { c, .. } => c.preserve_fds,
        Cmd::Exec(e) => e.opts.preserve_fds,
        _ => 0,
    };
    let preserve_err = carve_container::check_preserved_fds(preserve, &[]).err();
    let json = cli.log_format == "json";
    let logger = log::Logger::new(cli.log.as_deref(), json, cli.debug);
    let to_file = cli.log.is_some();
    let logger = match logger {
        Ok(l) => l,
        Err(e) => {
            eprintln!("carve-oci: opening log file: {e}");
            std::process::exit(1);
        }
    };
    let _ = tracing::subscriber::set_global_default(logger);
    // runc exits 255 when exec fails before the process ran (its own status otherwise).
    let fail_code = if matches!(cli.cmd, Cmd::Exec(_)) {
        255
    } else {
        1
    };
    if let Some(e) = preserve_err {
        tracing::error!("{e}");
        if to_file {
            eprintln!("carve-oci: {e}");
        }
        std::process::exit(fail_code);
    }
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!("{msg}");
            if to_file {
                eprintln!("carve-oci: {msg}");
            }
            std::process::exit(fail_code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args() -> UpdateArgs {
        UpdateArgs {
            id: "c".into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_update_flag_lands_in_its_resources_field() {
        let u = UpdateArgs {
            blkio_weight: Some(300),
            cpu_period: Some(100_000),
            cpu_quota: Some(-1),
            cpu_share: Some(512),
            cpu_rt_period: Some(1_000_000),
            cpu_rt_runtime: Some(950_000),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: Some("0".into()),
            memory: Some(64 << 20),
            memory_reservation: Some(32 << 20),
            memory_swap: Some(128 << 20),
            pids_limit: Some(42),
            ..args()
        };
        let mut v = json!({});
        apply_update_flags(&mut v, &u, true);
        assert_eq!(
            v,
            json!({
                "blockIO": {"weight": 300},
                "cpu": {"period": 100_000, "quota": -1, "shares": 512, "realtimePeriod": 1_000_000,
                    "realtimeRuntime": 950_000, "cpus": "0-1", "mems": "0"},
                "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20},
                "pids": {"limit": 42}
            })
        );
        // The document must still be LinuxResources.
        let _: carve_container::oci_spec::runtime::LinuxResources =
            serde_json::from_value(v).unwrap();
    }

    #[test]
    fn flags_override_the_document_and_keep_the_rest() {
        let mut v = json!({"memory": {"limit": 1, "swap": 2}, "cpu": null, "pids": {"limit": 5}});
        let u = UpdateArgs {
            memory: Some(10),
            cpu_share: Some(2),
            ..args()
        };
        apply_update_flags(&mut v, &u, true);
        assert_eq!(v["memory"], json!({"limit": 10, "swap": 2}));
        assert_eq!(
            v["cpu"],
            json!({"shares": 2}),
            "a null section becomes an object"
        );
        assert_eq!(v["pids"], json!({"limit": 5}));
        let mut none = json!({});
        apply_update_flags(&mut none, &args(), true);
        assert_eq!(none, json!({}), "no flag, no change");
    }

    #[test]
    fn unlimited_memory_lifts_v1_swap_only_when_swap_is_not_given() {
        let unlimited = UpdateArgs {
            memory: Some(-1),
            ..args()
        };
        let mut v = json!({});
        apply_update_flags(&mut v, &unlimited, true);
        assert_eq!(v["memory"], json!({"limit": -1, "swap": -1}));
        let mut v = json!({});
        apply_update_flags(&mut v, &unlimited, false);
        assert_eq!(
            v["memory"],
            json!({"limit": -1}),
            "no memsw file: no swap value"
        );
        let with_swap = UpdateArgs {
            memory_swap: Some(1 << 30),
            ..unlimited
        };
        let mut v = json!({});
        apply_update_flags(&mut v, &with_swap, true);
        assert_eq!(v["memory"], json!({"limit": -1, "swap": 1 << 30}));
    }

    #[test]
    fn signals_by_name_number_and_rtmin_offset() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigkill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        assert!(parse_signal("NOPE").is_err());
    }
}
