//! Command-line parsing, runc style (urfave/cli): `--flag value`, `--flag=value`, `-f value`,
//! single-dash long flags (`-root`), global flags before or after the subcommand, and for `exec`
//! and `ps` everything after the container id belongs to the program.
//!
//! Hand-written rather than clap: `carve-oci` runs on every container start, and building clap's
//! command tree alone doubled the peak RSS of a CLI call (3.7 MB for `--version` against a 3 MB
//! budget; see docs/oci.md).

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

/// `create` and `run` options.
#[derive(Default)]
pub struct CreateArgs {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub id: String,
}

/// Subcommands.
pub enum Cmd {
    Spec {
        bundle: PathBuf,
    },
    Create(CreateArgs),
    Start {
        id: String,
    },
    Run {
        c: CreateArgs,
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
    Exec {
        process: Option<PathBuf>,
        detach: bool,
        pid_file: Option<PathBuf>,
        console_socket: Option<PathBuf>,
        tty: bool,
        env: Vec<String>,
        cwd: Option<PathBuf>,
        user: Option<String>,
        additional_gids: Vec<u32>,
        cap: Vec<String>,
        no_new_privs: bool,
        preserve_fds: u32,
        process_label: Option<String>,
        apparmor: Option<String>,
        id: String,
        args: Vec<String>,
    },
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
    Update {
        resources: Option<PathBuf>,
        memory: Option<i64>,
        pids_limit: Option<i64>,
        cpu_quota: Option<i64>,
        cpu_period: Option<u64>,
        id: String,
    },
    Events {
        stats: bool,
        interval: String,
        id: String,
    },
    List {
        format: String,
        quiet: bool,
    },
    Features,
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
    const CREATE: &[(&str, char, bool)] = &[
        ("bundle", 'b', true),
        ("pid-file", ' ', true),
        ("console-socket", ' ', true),
        ("no-pivot", ' ', false),
        ("no-new-keyring", ' ', false),
        ("preserve-fds", ' ', true),
    ];
    const RUN: &[(&str, char, bool)] = &[
        ("bundle", 'b', true),
        ("pid-file", ' ', true),
        ("console-socket", ' ', true),
        ("no-pivot", ' ', false),
        ("no-new-keyring", ' ', false),
        ("preserve-fds", ' ', true),
        ("detach", 'd', false),
        ("keep", ' ', false),
        ("no-subreaper", ' ', false),
    ];
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
    ];
    const UPDATE: &[(&str, char, bool)] = &[
        ("resources", 'r', true),
        ("memory", ' ', true),
        ("pids-limit", ' ', true),
        ("cpu-quota", ' ', true),
        ("cpu-period", ' ', true),
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
  pause ID | resume ID
  update [-r FILE|-] [--memory N] [--pids-limit N] [--cpu-quota N] [--cpu-period N] ID
  events [--stats] [--interval 5s] ID
  list [-f table|json] [-q]
  features                           print the runtime's features (JSON)
";

/// Parses argv (including argv[0]).
pub fn parse(argv: &[String]) -> Result<Parsed, String> {
    let mut g_vals: HashMap<&'static str, String> = HashMap::new();
    let mut g_bools: Vec<&'static str> = Vec::new();
    let mut vals: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut bools: Vec<&'static str> = Vec::new();
    let mut pos: Vec<String> = Vec::new();
    let mut cmd: Option<&str> = None;
    let mut table: &[(&str, char, bool)] = &[];
    let mut i = 1;
    let mut rest_positional = false;
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        if rest_positional || a == "-" || !a.starts_with('-') {
            if cmd.is_none() {
                let c = a.as_str();
                table = flags(c).ok_or_else(|| format!("unknown command {c:?}\n\n{USAGE}"))?;
                cmd = Some(c);
                continue;
            }
            pos.push(a.clone());
            // exec and ps: everything after the container id is the program's.
            if matches!(cmd, Some("exec") | Some("ps")) {
                rest_positional = true;
            }
            continue;
        }
        if a == "--" {
            rest_positional = true;
            continue;
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "help" || name == "h" {
            return Ok(Parsed::Print(USAGE.to_string()));
        }
        if (name == "version" || name == "v") && cmd.is_none() {
            return Ok(Parsed::Print(format!(
                "carve-oci version {}\nspec: 1.2.0\n",
                env!("CARGO_PKG_VERSION")
            )));
        }
        let take = |i: &mut usize| -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = argv
                .get(*i)
                .cloned()
                .ok_or_else(|| format!("flag {a} needs a value"))?;
            *i += 1;
            Ok(v)
        };
        let local = table.iter().find(|(l, s, _)| {
            *l == name || (name.chars().count() == 1 && name.starts_with(*s) && *s != ' ')
        });
        if let Some((long, _, has_value)) = local {
            if *has_value {
                vals.entry(long).or_default().push(take(&mut i)?);
            } else if inline.as_deref() != Some("false") {
                bools.push(long);
            }
        } else if let Some(g) = GLOBAL_VALUES.iter().find(|g| **g == name) {
            if *g == "rootless" && inline.is_none() {
                // `--rootless` alone is a boolean in some callers.
                continue;
            }
            let v = take(&mut i)?;
            g_vals.insert(g, v);
        } else if let Some(g) = GLOBAL_BOOLS.iter().find(|g| **g == name) {
            if inline.as_deref() != Some("false") {
                g_bools.push(g);
            }
        } else {
            return Err(format!(
                "unknown flag {a}{}",
                cmd.map(|c| format!(" for {c}")).unwrap_or_default()
            ));
        }
    }
    let Some(cmd) = cmd else {
        return Err(format!("no command given\n\n{USAGE}"));
    };
    let v = |k: &str| vals.get(k).and_then(|v| v.last().cloned());
    let b = |k: &str| bools.contains(&k);
    let p = |k: &str| v(k).map(PathBuf::from);
    let num = |k: &str| -> Result<Option<i64>, String> {
        v(k).map(|s| {
            s.parse::<i64>()
                .map_err(|_| format!("--{k}: {s:?} is not a number"))
        })
        .transpose()
    };
    let mut pos_iter = pos.into_iter();
    let mut id = || -> Result<String, String> {
        pos_iter
            .next()
            .ok_or_else(|| format!("{cmd}: missing the container id"))
    };
    let create = |id: String| -> Result<CreateArgs, String> {
        Ok(CreateArgs {
            bundle: p("bundle").unwrap_or_else(|| PathBuf::from(".")),
            pid_file: p("pid-file"),
            console_socket: p("console-socket"),
            no_pivot: b("no-pivot"),
            no_new_keyring: b("no-new-keyring"),
            preserve_fds: num("preserve-fds")?.unwrap_or(0) as u32,
            id,
        })
    };
    let c = match cmd {
        "spec" => Cmd::Spec {
            bundle: p("bundle").unwrap_or_else(|| PathBuf::from(".")),
        },
        "create" => Cmd::Create(create(id()?)?),
        "run" => Cmd::Run {
            c: create(id()?)?,
            detach: b("detach"),
            keep: b("keep"),
        },
        "start" => Cmd::Start { id: id()? },
        "state" => Cmd::State { id: id()? },
        "pause" => Cmd::Pause { id: id()? },
        "resume" => Cmd::Resume { id: id()? },
        "kill" => {
            let i = id()?;
            Cmd::Kill {
                all: b("all"),
                id: i,
                signal: pos_iter.next(),
            }
        }
        "delete" => Cmd::Delete {
            force: b("force"),
            id: id()?,
        },
        "exec" => {
            let i = id()?;
            Cmd::Exec {
                process: p("process"),
                detach: b("detach"),
                pid_file: p("pid-file"),
                console_socket: p("console-socket"),
                tty: b("tty"),
                env: vals.get("env").cloned().unwrap_or_default(),
                cwd: p("cwd"),
                user: v("user"),
                additional_gids: vals
                    .get("additional-gids")
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s.split(','))
                    .map(|g| g.parse().map_err(|_| format!("bad gid {g:?}")))
                    .collect::<Result<_, _>>()?,
                cap: vals.get("cap").cloned().unwrap_or_default(),
                no_new_privs: b("no-new-privs"),
                preserve_fds: num("preserve-fds")?.unwrap_or(0) as u32,
                process_label: v("process-label"),
                apparmor: v("apparmor"),
                id: i,
                args: pos_iter.collect(),
            }
        }
        "ps" => {
            let i = id()?;
            Cmd::Ps {
                format: v("format").unwrap_or_else(|| "table".into()),
                id: i,
                ps_args: pos_iter.collect(),
            }
        }
        "update" => Cmd::Update {
            resources: p("resources"),
            memory: num("memory")?,
            pids_limit: num("pids-limit")?,
            cpu_quota: num("cpu-quota")?,
            cpu_period: num("cpu-period")?.map(|n| n as u64),
            id: id()?,
        },
        "events" => Cmd::Events {
            stats: b("stats"),
            interval: v("interval").unwrap_or_else(|| "5s".into()),
            id: id()?,
        },
        "list" | "ls" => Cmd::List {
            format: v("format").unwrap_or_else(|| "table".into()),
            quiet: b("quiet"),
        },
        _ => Cmd::Features,
    };
    Ok(Parsed::Run(Box::new(Cli {
        root: g_vals
            .get("root")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/carve-oci")),
        log: g_vals.get("log").map(PathBuf::from),
        log_format: g_vals
            .get("log-format")
            .cloned()
            .unwrap_or_else(|| "text".into()),
        systemd_cgroup: g_bools.contains(&"systemd-cgroup"),
        debug: g_bools.contains(&"debug"),
        cmd: c,
    })))
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
        let Cmd::Exec {
            detach,
            env,
            id,
            args,
            tty,
            ..
        } = c.cmd
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
}
