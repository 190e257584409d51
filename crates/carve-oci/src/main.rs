//! `carve-oci`: a runc-compatible OCI runtime over the carve-container library.

mod log;

use anyhow::{bail, Context, Result};
use carve_container::{CreateOptions, ExecOptions, Runtime, Status};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "carve-oci", version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.2.0"), about = "runc-compatible OCI runtime")]
struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/carve-oci")]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    /// cgroupsPath is systemd's "slice:prefix:name" (mapped onto cgroupfs; systemd is not used).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility (rootless mode is decided by the config).
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, global = true)]
    criu: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Default)]
struct CreateArgs {
    /// Bundle directory.
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// File to write init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a default config.json.
    Spec {
        /// Bundle directory.
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container (init waits for start).
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        c: CreateArgs,
        /// Return once started.
        #[arg(long, short = 'd')]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Print the OCI state.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (default SIGTERM).
    Kill {
        /// Signal every process of the container.
        #[arg(long, short = 'a')]
        all: bool,
        /// Container id.
        id: String,
        /// Signal name (TERM, SIGTERM) or number.
        signal: Option<String>,
    },
    /// Delete a container.
    Delete {
        /// Kill it first if it runs.
        #[arg(long, short = 'f')]
        force: bool,
        /// Container id.
        id: String,
    },
    /// Run a process in a container.
    Exec {
        /// process.json to run.
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        /// Return once started.
        #[arg(long, short = 'd')]
        detach: bool,
        /// File to write the pid to.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Console socket.
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// Allocate a pty.
        #[arg(long, short = 't')]
        tty: bool,
        /// Extra environment KEY=VALUE.
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// uid[:gid].
        #[arg(long, short = 'u')]
        user: Option<String>,
        /// Additional gids.
        #[arg(long = "additional-gids", short = 'g')]
        additional_gids: Vec<u32>,
        /// Extra capabilities.
        #[arg(long = "cap", short = 'c')]
        cap: Vec<String>,
        /// Set no_new_privs.
        #[arg(long = "no-new-privs")]
        no_new_privs: bool,
        /// Pass N extra fds.
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: u32,
        /// Accepted, ignored (no SELinux here).
        #[arg(long = "process-label")]
        process_label: Option<String>,
        /// Accepted, ignored (no AppArmor here).
        #[arg(long)]
        apparmor: Option<String>,
        /// Container id.
        id: String,
        /// Program and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List the processes of a container.
    Ps {
        /// table or json.
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        /// Container id.
        id: String,
        /// Options for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze a container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a container.
    Resume {
        /// Container id.
        id: String,
    },
    /// Update resource limits.
    Update {
        /// LinuxResources JSON file, or - for stdin.
        #[arg(long, short = 'r')]
        resources: Option<PathBuf>,
        /// Memory limit in bytes.
        #[arg(long)]
        memory: Option<i64>,
        /// pids limit.
        #[arg(long = "pids-limit")]
        pids_limit: Option<i64>,
        /// CPU quota.
        #[arg(long = "cpu-quota")]
        cpu_quota: Option<i64>,
        /// CPU period.
        #[arg(long = "cpu-period")]
        cpu_period: Option<u64>,
        /// Container id.
        id: String,
    },
    /// Print events (stats) of a container.
    Events {
        /// One stats sample and exit.
        #[arg(long)]
        stats: bool,
        /// Sampling interval (5s, 500ms, 1m).
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Container id.
        id: String,
    },
    /// List containers.
    List {
        /// table or json.
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        /// Only ids.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Print the runtime's features (JSON).
    Features,
}

/// urfave/cli (runc's parser) accepts long flags with one dash (`-root`): rewrite those we know.
fn normalize_args() -> Vec<String> {
    const LONG: &[&str] = &[
        "root",
        "log",
        "log-format",
        "systemd-cgroup",
        "debug",
        "bundle",
        "pid-file",
        "console-socket",
        "no-pivot",
        "no-new-keyring",
        "preserve-fds",
        "detach",
        "force",
        "all",
        "process",
        "tty",
        "format",
        "stats",
        "interval",
        "resources",
        "rootless",
    ];
    let mut out = Vec::new();
    let mut positional_seen = 0;
    for (i, a) in std::env::args().enumerate() {
        if i > 0 && positional_seen < 2 && a.starts_with('-') && !a.starts_with("--") && a.len() > 2
        {
            let name = a[1..].split('=').next().unwrap_or("");
            if LONG.contains(&name) {
                out.push(format!("-{a}"));
                continue;
            }
        }
        if i > 0 && !a.starts_with('-') {
            positional_seen += 1;
        }
        out.push(a);
    }
    out
}

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

fn parse_interval(s: &str) -> Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("bad interval {s:?}"))?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" | "" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        _ => bail!("bad interval {s:?}: expected e.g. 5s, 500ms, 1m"),
    })
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut o = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut o, v)?;
    writeln!(o)?;
    Ok(())
}

fn create_opts(c: CreateArgs) -> CreateOptions {
    CreateOptions {
        id: c.id,
        bundle: c.bundle,
        pid_file: c.pid_file,
        console_socket: c.console_socket,
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
    }
}

fn run(cli: Cli) -> Result<i32> {
    let mut rt = Runtime::new(cli.root);
    rt.systemd_cgroup = cli.systemd_cgroup;
    match cli.cmd {
        Cmd::Spec { bundle } => {
            let p = bundle.join("config.json");
            if p.exists() {
                bail!("File {} exists. Remove it first", p.display());
            }
            let body = serde_json::to_string_pretty(&carve_container::config::default_spec_json())?;
            std::fs::write(&p, body + "\n").with_context(|| format!("writing {}", p.display()))?;
        }
        Cmd::Create(c) => {
            carve_container::seal::ensure_sealed().context("re-executing from a sealed copy")?;
            rt.create(&create_opts(c))?;
        }
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::Run { c, detach, keep } => {
            carve_container::seal::ensure_sealed().context("re-executing from a sealed copy")?;
            // Become the subreaper so init is our child on every create path, and wait for it.
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            let id = c.id.clone();
            let created = rt.create(&create_opts(c))?;
            if let Err(e) = rt.start(&id) {
                let _ = rt.delete(&id, true);
                return Err(e.into());
            }
            if detach {
                return Ok(0);
            }
            let code = wait_any(&created.pidfd)?;
            if !keep {
                rt.delete(&id, true)?;
            }
            return Ok(code);
        }
        Cmd::State { id } => print_json(&rt.state(&id)?)?,
        Cmd::Kill { all, id, signal } => {
            let sig = parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            rt.kill(&id, sig, all)?;
        }
        Cmd::Delete { force, id } => rt.delete(&id, force)?,
        Cmd::Exec {
            process,
            detach,
            pid_file,
            console_socket,
            tty,
            env,
            cwd,
            user,
            additional_gids,
            cap,
            no_new_privs,
            preserve_fds,
            process_label,
            apparmor,
            id,
            args,
        } => {
            if process_label.is_some() || apparmor.is_some() {
                tracing::warn!("--process-label/--apparmor ignored: this host has neither SELinux nor AppArmor");
            }
            if process.is_none() && args.is_empty() {
                bail!("exec: give a --process file or the program to run");
            }
            carve_container::seal::ensure_sealed().context("re-executing from a sealed copy")?;
            return Ok(rt.exec(&ExecOptions {
                id,
                process,
                args,
                detach,
                pid_file,
                console_socket,
                tty,
                env,
                cwd,
                user,
                additional_gids,
                caps: cap,
                no_new_privs,
                preserve_fds,
            })?);
        }
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = rt.pids(&id)?;
            if format == "json" {
                print_json(&serde_json::json!(pids))?;
            } else {
                let args = if ps_args.is_empty() {
                    vec!["-ef".to_string()]
                } else {
                    ps_args
                };
                let out = std::process::Command::new("ps")
                    .args(&args)
                    .output()
                    .context("running ps")?;
                let text = String::from_utf8_lossy(&out.stdout);
                let mut lines = text.lines();
                let header = lines.next().unwrap_or("");
                let col = header
                    .split_whitespace()
                    .position(|h| h == "PID")
                    .context("ps output has no PID column")?;
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
            }
        }
        Cmd::Pause { id } => rt.pause(&id)?,
        Cmd::Resume { id } => rt.resume(&id)?,
        Cmd::Update {
            resources,
            memory,
            pids_limit,
            cpu_quota,
            cpu_period,
            id,
        } => {
            let mut res: carve_container::oci_spec::runtime::LinuxResources = match &resources {
                Some(p) => {
                    let b = if p.as_os_str() == "-" {
                        let mut b = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                        b
                    } else {
                        std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
                    };
                    carve_container::config::parse_json(p, &b)?
                }
                None => Default::default(),
            };
            let mut v = serde_json::to_value(&res)?;
            if let Some(m) = memory {
                v["memory"]["limit"] = m.into();
            }
            if let Some(p) = pids_limit {
                v["pids"]["limit"] = p.into();
            }
            if let Some(q) = cpu_quota {
                v["cpu"]["quota"] = q.into();
            }
            if let Some(p) = cpu_period {
                v["cpu"]["period"] = p.into();
            }
            res = serde_json::from_value(v)?;
            rt.update(&id, &res)?;
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => {
            let every = parse_interval(&interval)?;
            loop {
                let (data, status) = rt.stats(&id)?;
                let ev = serde_json::json!({"type": "stats", "id": id, "data": data});
                println!("{ev}");
                if stats || status == Status::Stopped {
                    break;
                }
                std::thread::sleep(every);
            }
        }
        Cmd::List { format, quiet } => {
            let all = rt.list();
            if quiet {
                for s in &all {
                    println!("{}", s["id"].as_str().unwrap_or(""));
                }
            } else if format == "json" {
                print_json(&serde_json::Value::Array(all))?;
            } else {
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
            }
        }
        Cmd::Features => print_json(&features())?,
    }
    Ok(0)
}

/// Waits for init (our child, or reparented to us as subreaper) and returns its exit status.
fn wait_any(pidfd: &std::os::fd::OwnedFd) -> Result<i32> {
    Ok(carve_container::sys::pidfd_wait_child(pidfd)?)
}

fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
            "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "nolazytime",
            "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private", "rbind",
            "rdev", "relatime", "remount", "rexec", "rnoatime", "rnodev", "rnodiratime", "rnoexec",
            "rnosuid", "ro", "rprivate", "rrelatime", "rro", "rrw", "rshared", "rslave",
            "rstrictatime", "rsuid", "runbindable", "rw", "shared", "silent", "slave",
            "strictatime", "suid", "sync", "unbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {"org.opencontainers.runc.version": "carve-oci", "io.github.carve.version": env!("CARGO_PKG_VERSION")}
    })
}

fn main() {
    let cli = match Cli::try_parse_from(normalize_args()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
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
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!("{msg}");
            if to_file {
                eprintln!("carve-oci: {msg}");
            }
            std::process::exit(1);
        }
    }
}
