//! Command-line parsing, runc style (urfave/cli): `--flag value`, `--flag=value`, `-f value`,
//! single-dash long flags (`-root`), global flags before or after the subcommand, and for `exec`
//! and `ps` everything after the container id belongs to the program.
//!
//! Hand-written rather than clap: `carve-oci` runs on every container start, and building clap's
//! command tree alone doubled the peak RSS of a CLI call (3.7 MB for `--version` against a 3 MB
//! budget; see docs/oci.md).

use carve_container::{CreateOptions, ExecOptions};
use carve_core::units::{parse_duration as parse_duration_in, DurationForm};
use std::collections::HashMap;
use std::path::PathBuf;

/// Global options.
pub struct Cli {
    /// --root.
    pub root: PathBuf,
    /// --log.
    pub log: Option<PathBuf>,
    /// --log-format.
    pub log_format: String,
    /// --systemd-cgroup.
    pub systemd_cgroup: bool,
    /// --debug.
    pub debug: bool,
    /// The subcommand.
    pub cmd: Cmd,
}

/// Subcommands.
pub enum Cmd {
    Spec {
        bundle: PathBuf,
    },
    Create(CreateOptions),
    Start {
        id: String,
    },
    Run {
        c: CreateOptions,
        detach: bool,
        keep: bool,
    },
    State {
        id: String,
    },
    Kill {
        all: bool,
        id: String,
        signal: Option<String>,
    },
    Delete {
        force: bool,
        id: String,
    },
    Exec(ExecArgs),
    Ps {
        format: String,
        id: String,
        ps_args: Vec<String>,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Update(UpdateArgs),
    Events {
        stats: bool,
        interval: std::time::Duration,
        id: String,
    },
    List {
        format: String,
        quiet: bool,
    },
    Features,
}

/// `exec` options: the library's, and the runc flags carve-oci accepts without passing on.
pub struct ExecArgs {
    /// What the runtime library takes (`tty_proxy` is decided in main.rs).
    pub opts: ExecOptions,
    /// --process-label (no SELinux here: warned about).
    pub process_label: Option<String>,
    /// --apparmor (no AppArmor here: warned about).
    pub apparmor: Option<String>,
    /// --ignore-paused (refused).
    pub ignore_paused: bool,
}

/// `update` options: runc's flags, memory sizes already in bytes (-1 = unlimited).
#[derive(Default)]
pub struct UpdateArgs {
    pub resources: Option<PathBuf>,
    pub blkio_weight: Option<u16>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_share: Option<u64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub memory_swap: Option<i64>,
    /// Accepted and ignored, as runc 1.1 does (kernel memory accounting is gone).
    pub kernel_memory: bool,
    pub pids_limit: Option<i64>,
    pub l3_cache_schema: Option<String>,
    pub mem_bw_schema: Option<String>,
    pub id: String,
}

/// A usage error: the message and the exit status (runc: 1, 3 for an unknown command).
#[derive(Debug)]
pub struct UsageError {
    pub msg: String,
    pub code: i32,
}

impl From<String> for UsageError {
    fn from(msg: String) -> UsageError {
        UsageError { msg, code: 1 }
    }
}

/// What parsing asks of `main` besides a command.
pub enum Parsed {
    /// Run this.
    Run(Box<Cli>),
    /// Print this on stdout and exit 0 (help, version).
    Print(String),
}

const GLOBAL_VALUES: &[&str] = &["root", "log", "log-format", "criu", "rootless"];
const GLOBAL_BOOLS: &[&str] = &["systemd-cgroup", "debug"];

/// (long name, short letter or ' ', takes a value) per subcommand.
fn flags(cmd: &str) -> Option<&'static [(&'static str, char, bool)]> {
    // create's flags, which run shares and extends.
    macro_rules! create_flags {
        ($($extra:expr),*) => {
            &[
                ("bundle", 'b', true),
                ("pid-file", ' ', true),
                ("console-socket", ' ', true),
                ("no-pivot", ' ', false),
                ("no-new-keyring", ' ', false),
                ("preserve-fds", ' ', true),
                $($extra),*
            ]
        };
    }
    const CREATE: &[(&str, char, bool)] = create_flags!();
    const RUN: &[(&str, char, bool)] = create_flags!(
        ("detach", 'd', false),
        ("keep", ' ', false),
        ("no-subreaper", ' ', false)
    );
    const EXEC: &[(&str, char, bool)] = &[
        ("process", 'p', true),
        ("detach", 'd', false),
        ("pid-file", ' ', true),
        ("console-socket", ' ', true),
        ("tty", 't', false),
        ("env", 'e', true),
        ("cwd", ' ', true),
        ("user", 'u', true),
        ("additional-gids", 'g', true),
        ("cap", 'c', true),
        ("no-new-privs", ' ', false),
        ("preserve-fds", ' ', true),
        ("process-label", ' ', true),
        ("apparmor", ' ', true),
        ("cgroup", ' ', true),
        ("ignore-paused", ' ', false),
    ];
    const UPDATE: &[(&str, char, bool)] = &[
        ("resources", 'r', true),
        ("blkio-weight", ' ', true),
        ("cpu-period", ' ', true),
        ("cpu-quota", ' ', true),
        ("cpu-share", ' ', true),
        ("cpu-rt-period", ' ', true),
        ("cpu-rt-runtime", ' ', true),
        ("cpuset-cpus", ' ', true),
        ("cpuset-mems", ' ', true),
        ("memory", ' ', true),
        ("memory-reservation", ' ', true),
        ("memory-swap", ' ', true),
        ("kernel-memory", ' ', true),
        ("kernel-memory-tcp", ' ', true),
        ("pids-limit", ' ', true),
        ("l3-cache-schema", ' ', true),
        ("mem-bw-schema", ' ', true),
    ];
    Some(match cmd {
        "spec" => &[("bundle", 'b', true), ("rootless", ' ', false)],
        "create" => CREATE,
        "run" => RUN,
        "start" | "state" | "pause" | "resume" | "features" => &[],
        "kill" => &[("all", 'a', false)],
        "delete" => &[("force", 'f', false)],
        "exec" => EXEC,
        "ps" => &[("format", 'f', true)],
        "update" => UPDATE,
        "events" => &[("stats", ' ', false), ("interval", ' ', true)],
        "list" | "ls" => &[("format", 'f', true), ("quiet", 'q', false)],
        _ => return None,
    })
}

const USAGE: &str = "usage: carve-oci [--root DIR] [--log FILE] [--log-format text|json] [--systemd-cgroup] [--debug] COMMAND

commands:
  spec [-b DIR]                      write a default config.json
  create [-b DIR] [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID
  start ID                           make a created container run its process
  run [create flags] [-d] [--keep] ID
  state ID                           print the OCI state
  kill [-a] ID [SIGNAL]              default SIGTERM
  delete [-f] ID
  exec [-p FILE] [-d] [--pid-file F] [--console-socket S] [-t] [-e K=V] [--cwd D] [-u UID[:GID]]
       [-g GID] [--cap CAP] [--no-new-privs] [--preserve-fds N] ID [ARGS...]
  ps [-f table|json] ID [PS ARGS...]
  pause ID                           freeze every process
  resume ID                          thaw a paused container
  update [-r FILE|-] [--memory SIZE] [--memory-reservation SIZE] [--memory-swap SIZE]
         [--cpu-share N] [--cpu-quota N] [--cpu-period N] [--cpu-rt-runtime N] [--cpu-rt-period N]
         [--cpuset-cpus LIST] [--cpuset-mems LIST] [--blkio-weight N] [--pids-limit N] ID
                                     SIZE: bytes or 512k, 64m, 1g...; -1 = unlimited
  events [--stats] [--interval 5s] ID
  list [-f table|json] [-q]
  features                           print the runtime's features (JSON)

carve-oci COMMAND --help (or carve-oci help COMMAND) lists a command's flags.
";

/// One line on what each command does, for `COMMAND --help` and `help COMMAND`.
fn describe(cmd: &str) -> &'static str {
    match cmd {
        "spec" => "create a new specification file (config.json)",
        "create" => "create a container",
        "start" => "execute the user defined process in a created container",
        "run" => "create and run a container",
        "state" => "output the state of a container",
        "kill" => "send a signal (default: SIGTERM) to the container's init process, or with --all to every process",
        "delete" => "delete any resources held by the container",
        "exec" => "execute a new process inside the container",
        "ps" => "display the processes running inside a container",
        "pause" => "suspend all processes inside the container",
        "resume" => "resume all processes that have been previously paused",
        "update" => "update container resource constraints",
        "events" => "display container stats, every --interval or once with --stats",
        "list" | "ls" => "list containers started with the given root",
        _ => "show the enabled features",
    }
}

/// `carve-oci COMMAND --help`: the command's usage line and its flags.
fn command_help(cmd: &str) -> String {
    let table = flags(cmd).unwrap_or(&[]);
    let word = if cmd == "ls" { "list" } else { cmd };
    // The command's lines of USAGE: its own and the deeper-indented continuations.
    let mut lines = USAGE
        .lines()
        .skip_while(|l| {
            let t = l.trim_start();
            !(l.starts_with("  ") && (t.starts_with(&format!("{word} ")) || t == word))
        })
        .take_while({
            let mut first = true;
            move |l| std::mem::replace(&mut first, false) || l.starts_with("   ")
        })
        .map(|l| l.trim().split("   ").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>();
    if lines.is_empty() {
        lines.push(word);
    }
    let usage = lines.join("\n    ");
    let mut out = format!("usage: carve-oci {usage}\n\n{}\n", describe(cmd).trim_end());
    if !table.is_empty() {
        out.push_str("\noptions:\n");
        for (long, short, value) in table {
            let v = if *value { " value" } else { "" };
            let s = if *short == ' ' {
                String::new()
            } else {
                format!(", -{short}{v}")
            };
            let names = format!("--{long}{v}{s}");
            out.push_str(&format!("  {names:<34} {}\n", flag_help(long)));
        }
    }
    if cmd == "update" {
        out.push_str(
            "\nSIZE values take bytes or k/m/g/t/p suffixes (512m, 1g); -1 means unlimited.\n",
        );
    }
    out
}

/// One line on a subcommand flag.
fn flag_help(long: &str) -> &'static str {
    match long {
        "bundle" => "path to the root of the bundle directory (default: the current directory)",
        "rootless" => "accepted; carve-oci writes the same default config",
        "pid-file" => "file to write the process id to",
        "console-socket" => "AF_UNIX socket that receives the pty master of a terminal",
        "no-pivot" => "use MS_MOVE + chroot instead of pivot_root (rootfs on a ramdisk)",
        "no-new-keyring" => "keep the caller's session keyring",
        "preserve-fds" => "pass N more file descriptors (stdio + $LISTEN_FDS + N)",
        "detach" => "detach from the container's process",
        "keep" => "do not delete the container after it exits",
        "no-subreaper" => "accepted and ignored",
        "all" => "send the signal to every process of the container",
        "force" => "kill a running or paused container (SIGKILL) and delete it",
        "process" => "path to a process.json (the other process flags are applied over it)",
        "tty" => "allocate a pseudo-TTY",
        "env" => "set an environment variable KEY=VALUE (repeatable)",
        "cwd" => "working directory in the container",
        "user" => "UID (format: <uid>[:<gid>]; without a gid the configured one stays)",
        "additional-gids" => "additional gids, added to the configured ones (repeatable, or a,b)",
        "cap" => "add a capability to the bounding, effective and permitted sets",
        "no-new-privs" => "set no_new_privs for the process",
        "process-label" => "accepted and ignored: no SELinux on carve-oci hosts",
        "apparmor" => "accepted and ignored: no AppArmor on carve-oci hosts",
        "cgroup" => "run the process in an existing sub-cgroup of the container's: PATH, or CTRL[,CTRL]:PATH (repeatable)",
        "ignore-paused" => "refused: carve-oci does not exec into a paused container",
        "format" => "select one of: table or json (default: table)",
        "quiet" => "display only container IDs",
        "stats" => "display the container's stats once, then exit",
        "interval" => "stats interval, a Go duration (default: 5s)",
        "resources" => "a LinuxResources JSON file, or - for stdin (flags override its values)",
        "blkio-weight" => "block IO weight, 10 to 1000",
        "cpu-period" => "CPU CFS period in usecs (0: the system default)",
        "cpu-quota" => "CPU CFS quota in usecs per period (-1: unlimited)",
        "cpu-share" => "CPU shares (relative weight)",
        "cpu-rt-period" => "CPU realtime period in usecs",
        "cpu-rt-runtime" => "CPU realtime runtime in usecs per period",
        "cpuset-cpus" => "CPUs to use (e.g. 0-1,3)",
        "cpuset-mems" => "memory nodes to use",
        "memory" => "memory limit, SIZE",
        "memory-reservation" => "memory reservation (soft limit), SIZE",
        "memory-swap" => "memory + swap limit, SIZE; -1 for unlimited swap",
        "kernel-memory" | "kernel-memory-tcp" => "accepted and ignored, as runc 1.1 does",
        "pids-limit" => "maximum number of pids (-1: unlimited)",
        "l3-cache-schema" | "mem-bw-schema" => "refused: no Intel RDT support",
        _ => "",
    }
}

/// A size as runc's update takes it (docker/go-units' RAMInBytes): bytes, or a number with a
/// k/m/g/t/p suffix (binary multiples; "kb", "KiB", "1.5g" too); "-1" is unlimited.
pub fn parse_size(s: &str) -> Option<i64> {
    if s == "-1" {
        return Some(-1);
    }
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    let v = n * mult;
    (v < i64::MAX as f64).then_some(v as i64)
}

/// How many positional arguments each command takes (runc's checkArgs): (min, max).
fn arity(cmd: &str) -> (usize, usize) {
    match cmd {
        "spec" | "list" | "ls" | "features" => (0, 0),
        "kill" => (1, 2),
        "exec" | "ps" => (1, usize::MAX),
        _ => (1, 1),
    }
}

/// What the scan of argv found: global and subcommand flags, positionals, the subcommand.
#[derive(Default)]
struct Scan<'a> {
    g_vals: HashMap<&'static str, String>,
    g_bools: Vec<&'static str>,
    vals: HashMap<&'static str, Vec<String>>,
    bools: Vec<&'static str>,
    pos: Vec<String>,
    cmd: Option<&'a str>,
    table: &'static [(&'static str, char, bool)],
    /// After `--`, or after the container id of exec/ps: everything is positional.
    rest_positional: bool,
    /// `ps ID --` seen.
    ps_sep: bool,
}

/// Parses argv (including argv[0]).
pub fn parse(argv: &[String]) -> Result<Parsed, UsageError> {
    if argv.len() <= 1 {
        // runc without arguments prints its help and succeeds.
        return Ok(Parsed::Print(USAGE.to_string()));
    }
    let mut s = Scan::default();
    let mut i = 1;
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        let printed = if s.rest_positional || a == "-" || !a.starts_with('-') {
            s.positional(a, argv.get(i).map(String::as_str))?
        } else {
            s.flag(a, argv, &mut i)?
        };
        if let Some(p) = printed {
            return Ok(p);
        }
    }
    let Some(cmd) = s.cmd else {
        // Global flags only: runc prints its help and succeeds.
        return Ok(Parsed::Print(USAGE.to_string()));
    };
    check_arity(cmd, s.pos.len())?;
    let f = Flags {
        vals: &s.vals,
        bools: &s.bools,
    };
    let c = command(cmd, &f, std::mem::take(&mut s.pos))?;
    Ok(Parsed::Run(Box::new(Cli {
        root: s
            .g_vals
            .get("root")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/carve-oci")),
        log: s.g_vals.get("log").map(PathBuf::from),
        log_format: s
            .g_vals
            .get("log-format")
            .cloned()
            .unwrap_or_else(|| "text".into()),
        systemd_cgroup: s.g_bools.contains(&"systemd-cgroup"),
        debug: s.g_bools.contains(&"debug"),
        cmd: c,
    })))
}

impl<'a> Scan<'a> {
    /// A word that is not a flag: the subcommand (or `help TOPIC`), else a positional.
    fn positional(&mut self, a: &'a str, next: Option<&str>) -> Result<Option<Parsed>, UsageError> {
        let Some(cmd) = self.cmd else {
            if a == "help" || a == "h" {
                return match next {
                    None => Ok(Some(Parsed::Print(USAGE.to_string()))),
                    Some(t) if flags(t).is_some() => Ok(Some(Parsed::Print(command_help(t)))),
                    Some(t) => Err(UsageError {
                        msg: format!("no help topic for {t:?}"),
                        code: 3,
                    }),
                };
            }
            self.table = flags(a).ok_or_else(|| UsageError {
                msg: format!("unknown command {a:?}; see carve-oci --help"),
                code: 3,
            })?;
            self.cmd = Some(a);
            return Ok(None);
        };
        // `ps ID -- ps-options`: the `--` separates ours from ps's (runc would hand it to ps).
        if cmd == "ps" && self.pos.len() == 1 && a == "--" && !self.ps_sep {
            self.ps_sep = true;
            return Ok(None);
        }
        self.pos.push(a.to_string());
        // exec and ps: everything after the container id is the program's.
        if matches!(cmd, "exec" | "ps") {
            self.rest_positional = true;
        }
        Ok(None)
    }

    /// A flag (`-f`, `--flag`, `-flag`, `--flag=value`): help and version print; a flag of the
    /// subcommand or a global one is recorded, taking its value from `argv[*i]` when not inline.
    fn flag(
        &mut self,
        a: &str,
        argv: &[String],
        i: &mut usize,
    ) -> Result<Option<Parsed>, UsageError> {
        if a == "--" {
            self.rest_positional = true;
            return Ok(None);
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "help" || name == "h" {
            return Ok(Some(Parsed::Print(match self.cmd {
                Some(c) => command_help(c),
                None => USAGE.to_string(),
            })));
        }
        if (name == "version" || name == "v") && self.cmd.is_none() {
            return Ok(Some(Parsed::Print(format!(
                "carve-oci version {}\nspec: 1.2.0\n",
                env!("CARGO_PKG_VERSION")
            ))));
        }
        let take = |i: &mut usize| -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = argv
                .get(*i)
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: {a}"))?;
            *i += 1;
            Ok(v)
        };
        let local = self.table.iter().find(|(l, s, _)| {
            *l == name || (name.chars().count() == 1 && name.starts_with(*s) && *s != ' ')
        });
        if let Some((long, _, has_value)) = local {
            if *has_value {
                self.vals.entry(long).or_default().push(take(i)?);
            } else if inline.as_deref() != Some("false") {
                self.bools.push(long);
            }
        } else if let Some(g) = GLOBAL_VALUES.iter().find(|g| **g == name) {
            // `--rootless` alone is a boolean in some callers.
            if *g != "rootless" || inline.is_some() {
                let v = take(i)?;
                self.g_vals.insert(g, v);
            }
        } else if let Some(g) = GLOBAL_BOOLS.iter().find(|g| **g == name) {
            if inline.as_deref() != Some("false") {
                self.g_bools.push(g);
            }
        } else {
            // runc (urfave/cli): "flag provided but not defined: -bogus", exit status 1.
            return Err(format!(
                "flag provided but not defined: {a}{}; see carve-oci {}--help",
                self.cmd.map(|c| format!(" (for {c})")).unwrap_or_default(),
                self.cmd.map(|c| format!("{c} ")).unwrap_or_default()
            )
            .into());
        }
        Ok(None)
    }
}

/// runc's checkArgs: too few or too many positionals is a usage error naming the count.
fn check_arity(cmd: &str, n: usize) -> Result<(), UsageError> {
    let (min, max) = arity(cmd);
    if n >= min && n <= max {
        return Ok(());
    }
    let what = if min == max {
        format!("exactly {min}")
    } else if n < min {
        format!("a minimum of {min}")
    } else {
        format!("a maximum of {max}")
    };
    let id_hint = if min > 0 && n == 0 {
        " (the container id)"
    } else {
        ""
    };
    Err(format!("{cmd:?} requires {what} argument(s){id_hint}; see carve-oci {cmd} --help").into())
}

/// The subcommand's flags as scanned, read by name and parsed as runc does.
struct Flags<'s> {
    vals: &'s HashMap<&'static str, Vec<String>>,
    bools: &'s [&'static str],
}

impl Flags<'_> {
    /// The last value given.
    fn v(&self, k: &str) -> Option<String> {
        self.vals.get(k).and_then(|v| v.last().cloned())
    }

    /// Every value given (repeatable flags).
    fn all(&self, k: &str) -> Vec<String> {
        self.vals.get(k).cloned().unwrap_or_default()
    }

    fn b(&self, k: &str) -> bool {
        self.bools.contains(&k)
    }

    fn p(&self, k: &str) -> Option<PathBuf> {
        self.v(k).map(PathBuf::from)
    }

    /// A flag value that parses as `T`, with runc's wording for one that does not.
    fn parsed<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, String> {
        self.v(k)
            .map(|s| s.parse::<T>().map_err(|_| bad(k, &s)))
            .transpose()
    }

    /// A size in bytes (runc's RAMInBytes, [`parse_size`]).
    fn size(&self, k: &str) -> Result<Option<i64>, String> {
        self.v(k)
            .map(|s| {
                parse_size(&s).ok_or_else(|| {
                    format!(
                        "invalid value for --{k}: invalid size: {s:?} (bytes, or a number with a k/m/g/t/p suffix such as 512m or 1g; -1 for unlimited)"
                    )
                })
            })
            .transpose()
    }

    /// `table` (the default) or `json`.
    fn format(&self, k: &str) -> Result<String, String> {
        match self.v(k).as_deref() {
            None | Some("table") => Ok("table".into()),
            Some("json") => Ok("json".into()),
            Some(f) => Err(format!(
                "invalid format option {f:?} for --{k}: select one of table or json"
            )),
        }
    }

    /// create's and run's options.
    fn create(&self, id: String) -> Result<CreateOptions, String> {
        Ok(CreateOptions {
            bundle: self.p("bundle").unwrap_or_else(|| PathBuf::from(".")),
            pid_file: self.p("pid-file"),
            console_socket: self.p("console-socket"),
            no_pivot: self.b("no-pivot"),
            no_new_keyring: self.b("no-new-keyring"),
            preserve_fds: self.parsed::<u64>("preserve-fds")?.unwrap_or(0) as u32,
            id,
            // `run` in the foreground turns this on (main.rs); `create` never proxies.
            tty_proxy: false,
        })
    }
}

/// runc's wording for a flag value that does not parse, naming the flag.
fn bad(k: &str, s: &str) -> String {
    format!("invalid value {s:?} for flag --{k}: parse error")
}

/// The subcommand from its flags and positionals (arity already checked).
fn command(cmd: &str, f: &Flags, pos: Vec<String>) -> Result<Cmd, String> {
    let mut pos = pos.into_iter();
    let mut id = || -> Result<String, String> {
        pos.next()
            .ok_or_else(|| format!("{cmd}: missing the container id"))
    };
    Ok(match cmd {
        "spec" => Cmd::Spec {
            bundle: f.p("bundle").unwrap_or_else(|| PathBuf::from(".")),
        },
        "create" => Cmd::Create(f.create(id()?)?),
        "run" => Cmd::Run {
            c: f.create(id()?)?,
            detach: f.b("detach"),
            keep: f.b("keep"),
        },
        "start" => Cmd::Start { id: id()? },
        "state" => Cmd::State { id: id()? },
        "pause" => Cmd::Pause { id: id()? },
        "resume" => Cmd::Resume { id: id()? },
        "kill" => Cmd::Kill {
            all: f.b("all"),
            id: id()?,
            signal: pos.next(),
        },
        "delete" => Cmd::Delete {
            force: f.b("force"),
            id: id()?,
        },
        "exec" => Cmd::Exec(exec_args(f, id()?, pos.collect())?),
        "ps" => Cmd::Ps {
            format: f.format("format")?,
            id: id()?,
            ps_args: pos.collect(),
        },
        "update" => Cmd::Update(update_args(f, id()?)?),
        "events" => Cmd::Events {
            stats: f.b("stats"),
            interval: match f.v("interval") {
                None => std::time::Duration::from_secs(5),
                Some(s) => parse_duration(&s).ok_or_else(|| bad("interval", &s))?,
            },
            id: id()?,
        },
        "list" | "ls" => Cmd::List {
            format: f.format("format")?,
            quiet: f.b("quiet"),
        },
        _ => Cmd::Features,
    })
}

fn exec_args(f: &Flags, id: String, args: Vec<String>) -> Result<ExecArgs, String> {
    let opts = ExecOptions {
        id,
        process: f.p("process"),
        args,
        detach: f.b("detach"),
        pid_file: f.p("pid-file"),
        console_socket: f.p("console-socket"),
        tty: f.b("tty"),
        env: f.all("env"),
        cwd: f.p("cwd"),
        user: f.v("user"),
        additional_gids: f
            .all("additional-gids")
            .iter()
            .flat_map(|s| s.split(','))
            .map(|g| g.parse().map_err(|_| bad("additional-gids", g)))
            .collect::<Result<_, _>>()?,
        caps: f.all("cap"),
        no_new_privs: f.b("no-new-privs"),
        preserve_fds: f.parsed::<u64>("preserve-fds")?.unwrap_or(0) as u32,
        tty_proxy: false,
        cgroups: f.all("cgroup"),
        // Decided in main.rs from the pod's annotations.
        outside_cpus: None,
    };
    Ok(ExecArgs {
        opts,
        process_label: f.v("process-label"),
        apparmor: f.v("apparmor"),
        ignore_paused: f.b("ignore-paused"),
    })
}

fn update_args(f: &Flags, id: String) -> Result<UpdateArgs, String> {
    Ok(UpdateArgs {
        resources: f.p("resources"),
        blkio_weight: f.parsed("blkio-weight")?,
        cpu_period: f.parsed("cpu-period")?,
        cpu_quota: f.parsed("cpu-quota")?,
        cpu_share: f.parsed("cpu-share")?,
        cpu_rt_period: f.parsed("cpu-rt-period")?,
        cpu_rt_runtime: f.parsed("cpu-rt-runtime")?,
        cpuset_cpus: f.v("cpuset-cpus"),
        cpuset_mems: f.v("cpuset-mems"),
        memory: f.size("memory")?,
        memory_reservation: f.size("memory-reservation")?,
        memory_swap: f.size("memory-swap")?,
        kernel_memory: {
            f.size("kernel-memory")?;
            f.size("kernel-memory-tcp")?;
            f.v("kernel-memory").is_some() || f.v("kernel-memory-tcp").is_some()
        },
        pids_limit: f.parsed("pids-limit")?,
        l3_cache_schema: f.v("l3-cache-schema"),
        mem_bw_schema: f.v("mem-bw-schema"),
        id,
    })
}

/// A Go duration as runc's `--interval` takes it: "5s", "500ms", "1m30s", "1.5s", "2h" (a bare
/// "0" too); `None` if malformed (core's duration grammar, [`DurationForm::Go`]).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    parse_duration_in(s, DurationForm::Go)
        .ok()
        .map(std::time::Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &str) -> Cli {
        let v: Vec<String> = std::iter::once("carve-oci")
            .chain(args.split_whitespace())
            .map(String::from)
            .collect();
        match parse(&v).unwrap() {
            Parsed::Run(c) => *c,
            Parsed::Print(_) => panic!("printed"),
        }
    }

    #[test]
    fn runc_style_flags_parse() {
        let c = run("-root /r --log-format=json create -b /b --pid-file /p --preserve-fds 2 id1");
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.log_format, "json");
        let Cmd::Create(a) = c.cmd else { panic!() };
        assert_eq!(
            (a.bundle.to_str(), a.id.as_str(), a.preserve_fds),
            (Some("/b"), "id1", 2)
        );
        let c = run("--root /r exec -d -e A=1 --env B=2 c1 sh -c -x --tty");
        let Cmd::Exec(ExecArgs {
            opts:
                ExecOptions {
                    detach,
                    env,
                    id,
                    args,
                    tty,
                    ..
                },
            ..
        }) = c.cmd
        else {
            panic!()
        };
        assert!(detach && !tty);
        assert_eq!(env, ["A=1", "B=2"]);
        assert_eq!(id, "c1");
        assert_eq!(args, ["sh", "-c", "-x", "--tty"]);
        let c = run("kill --all c2 9 --systemd-cgroup");
        assert!(c.systemd_cgroup);
        let Cmd::Kill { all, id, signal } = c.cmd else {
            panic!()
        };
        assert!(all && id == "c2" && signal.as_deref() == Some("9"));
        let c = run("delete c3 --force");
        let Cmd::Delete { force, .. } = c.cmd else {
            panic!()
        };
        assert!(force);
    }

    #[test]
    fn sizes_and_durations_parse_as_runc_does() {
        for (s, want) in [
            ("-1", Some(-1)),
            ("0", Some(0)),
            ("4096", Some(4096)),
            ("512m", Some(512 << 20)),
            ("512M", Some(512 << 20)),
            ("1g", Some(1 << 30)),
            ("1GiB", Some(1 << 30)),
            ("1.5g", Some(3 << 29)),
            ("10kb", Some(10 << 10)),
            ("2 t", Some(2 << 40)),
            ("1p", Some(1 << 50)),
            ("", None),
            ("-2", None),
            ("12x", None),
            ("m", None),
            ("1.g", None),
            ("99999999p", None),
        ] {
            assert_eq!(parse_size(s), want, "{s:?}");
        }
        let d = std::time::Duration::from_millis;
        for (s, want) in [
            ("5s", Some(d(5000))),
            ("500ms", Some(d(500))),
            ("1m30s", Some(d(90_000))),
            ("1.5s", Some(d(1500))),
            ("2h", Some(d(7_200_000))),
            ("0", Some(d(0))),
            ("5", None),
            ("3x", None),
            ("", None),
            ("s", None),
        ] {
            assert_eq!(parse_duration(s), want, "{s:?}");
        }
    }

    #[test]
    fn bad_usage_is_an_error() {
        let v = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        assert!(parse(&v("carve-oci bogus")).is_err());
        assert!(parse(&v("carve-oci start")).is_err());
        assert!(parse(&v("carve-oci create --nope x")).is_err());
        assert!(matches!(
            parse(&v("carve-oci --version")),
            Ok(Parsed::Print(_))
        ));
    }

    #[test]
    fn update_flags_parse_into_their_types() {
        let c = run(
            "update --memory 64m --memory-swap=-1 --cpu-quota -1 --cpu-share 512 \
             --blkio-weight 300 --pids-limit 7 --cpuset-cpus 0-1 --kernel-memory 1m c9",
        );
        let Cmd::Update(u) = c.cmd else { panic!() };
        assert_eq!(u.id, "c9");
        assert_eq!((u.memory, u.memory_swap), (Some(64 << 20), Some(-1)));
        assert_eq!((u.cpu_quota, u.cpu_share), (Some(-1), Some(512)));
        assert_eq!((u.blkio_weight, u.pids_limit), (Some(300), Some(7)));
        assert_eq!(u.cpuset_cpus.as_deref(), Some("0-1"));
        assert!(u.kernel_memory);
        let v = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        let e = parse(&v("carve-oci update --blkio-weight 70000 c"))
            .err()
            .unwrap();
        assert_eq!(
            e.msg,
            "invalid value \"70000\" for flag --blkio-weight: parse error"
        );
        let e = parse(&v("carve-oci update --memory lots c")).err().unwrap();
        assert!(e
            .msg
            .starts_with("invalid value for --memory: invalid size: \"lots\""));
    }

    #[test]
    fn usage_errors_keep_runc_words_and_codes() {
        let v = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        let e = parse(&v("carve-oci start")).err().unwrap();
        assert_eq!(
            (e.msg.as_str(), e.code),
            ("\"start\" requires exactly 1 argument(s) (the container id); see carve-oci start --help", 1)
        );
        let e = parse(&v("carve-oci kill a b c")).err().unwrap();
        assert!(e.msg.contains("a maximum of 2"), "{}", e.msg);
        let e = parse(&v("carve-oci bogus")).err().unwrap();
        assert_eq!(e.code, 3);
        let e = parse(&v("carve-oci help bogus")).err().unwrap();
        assert_eq!((e.msg.as_str(), e.code), ("no help topic for \"bogus\"", 3));
        let e = parse(&v("carve-oci delete -x c")).err().unwrap();
        assert_eq!(
            e.msg,
            "flag provided but not defined: -x (for delete); see carve-oci delete --help"
        );
        let e = parse(&v("carve-oci create --pid-file")).err().unwrap();
        assert_eq!(e.msg, "flag needs an argument: --pid-file");
        assert!(
            matches!(parse(&v("carve-oci help exec")), Ok(Parsed::Print(t)) if t.contains("--tty"))
        );
        assert!(
            matches!(parse(&v("carve-oci --root /r")), Ok(Parsed::Print(t)) if t.starts_with("usage:"))
        );
        let c = run("ps c1 -- -o pid");
        let Cmd::Ps { id, ps_args, .. } = c.cmd else {
            panic!()
        };
        assert_eq!(
            (id.as_str(), ps_args),
            ("c1", vec!["-o".to_string(), "pid".into()])
        );
        let c = run("--rootless create --rootless=true x");
        assert!(matches!(c.cmd, Cmd::Create(_)));
    }
}
