//! The command line of the `flexsc` launcher: which `FLEXSC_*` variables `flexsc run` sets, and
//! the checks on their values.
//!
//! The values are checked with the rules `flexsc_kmod::Config::validate` and
//! `flexsc_threads::Builder::build` apply when the program starts, reusing their public pieces
//! (`parse_cpu_list`, `BackendKind`'s `FromStr`, `Specialization::name`, `Config::validate`), so
//! that a mistake is reported by the launcher, naming the option, rather than by the library.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use flexsc_threads::kmod::config::{BackendKind, Config, Specialization, parse_cpu_list};

use crate::profile::{SYNOPSIS as PROFILE_SYNOPSIS, SYNOPSIS_READ as PROFILE_SYNOPSIS_READ};

/// The synopsis of `flexsc run`, quoted by usage errors.
pub const SYNOPSIS: &str = "flexsc run [OPTIONS] -- CMD [ARGS...]";

/// The variable of `--specialization`.
const SPECIALIZATION: &str = "FLEXSC_SPECIALIZATION";
/// The variable of `--syscall-cores`.
const SYSCALL_CORES: &str = "FLEXSC_SYSCALL_CORES";
/// The variable of `--backend`.
pub const BACKEND: &str = "FLEXSC_BACKEND";

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// No arguments at all: the usage text, as an error.
    Usage,
    /// `help`, `--help` or `-h`: the usage text.
    Help,
    /// `--version` or `-V`.
    Version,
    /// `run`: execute a command under libflexsc.
    Run(Run),
    /// `profile`: the syscall profiler.
    Profile(crate::profile::Profile),
}

/// A checked `flexsc run`: the environment changes and the command.
#[derive(Debug)]
pub struct Run {
    /// Variables to set, from the options (the last of a repeated option wins).
    pub set: BTreeMap<&'static str, OsString>,
    /// Inherited variables to remove because an option contradicts them.
    pub remove: Vec<&'static str>,
    /// The command and its arguments (never empty).
    pub command: Vec<OsString>,
}

/// How an option takes its value.
enum Arg {
    /// `--opt VALUE` or `--opt=VALUE`; `check` turns the value into the variable's value, or
    /// says what is wrong with it.
    Value {
        metavar: &'static str,
        check: fn(&str) -> Result<String, String>,
    },
    /// `--opt` alone sets the variable to this.
    Flag(&'static str),
    /// `--stats` (stderr) or `--stats=FILE`.
    Stats,
}

/// One option of `flexsc run`.
struct Opt {
    /// The name, without the leading `--`.
    name: &'static str,
    arg: Arg,
    /// The variable it sets.
    var: &'static str,
    /// One line for `--help`.
    help: &'static str,
}

/// Every option of `flexsc run`, in the order `--help` lists them.
const OPTIONS: &[Opt] = &[
    Opt {
        name: "cores",
        arg: Arg::Value {
            metavar: "N",
            check: cores,
        },
        var: "FLEXSC_CORES",
        help: "carriers (threads running green threads; carrier i is pinned to CPU i)",
    },
    Opt {
        name: "syscall-cores",
        arg: Arg::Value {
            metavar: "LIST",
            check: syscall_cores,
        },
        var: SYSCALL_CORES,
        help: "the syscall cores (implies static specialization), as a cpulist: 1, 2-3,1",
    },
    Opt {
        name: "backend",
        arg: Arg::Value {
            metavar: "uring|threads|kmod",
            check: backend,
        },
        var: BACKEND,
        help: "what executes the system calls (kmod needs /dev/flexsc)",
    },
    Opt {
        name: "pages",
        arg: Arg::Value {
            metavar: "N",
            check: pages,
        },
        var: "FLEXSC_PAGES",
        help: "syscall pages per carrier, 64 entries each",
    },
    Opt {
        name: "specialization",
        arg: Arg::Value {
            metavar: "percore|static|dynamic",
            check: specialization,
        },
        var: SPECIALIZATION,
        help: "where calls run: posting core, syscall cores, or split by measured time",
    },
    Opt {
        name: "order",
        arg: Arg::Value {
            metavar: "fifo|lifo|lifo:N",
            check: order,
        },
        var: "FLEXSC_ORDER",
        help: "in which order ready green threads run (lifo:N: none is overtaken for more than N rounds of the ready queue)",
    },
    Opt {
        name: "preempt",
        arg: Arg::Value {
            metavar: "MS|off",
            check: preempt,
        },
        var: "FLEXSC_PREEMPT",
        help: "a green thread running the program's own code for MS milliseconds without a call is made to yield (default 10; off: purely cooperative)",
    },
    Opt {
        name: "batch",
        arg: Arg::Value {
            metavar: "N",
            check: batch,
        },
        var: "FLEXSC_BATCH",
        help: "a carrier submits its batch after N posted calls",
    },
    Opt {
        name: "direct",
        arg: Arg::Value {
            metavar: "LIST",
            check: direct,
        },
        var: "FLEXSC_DIRECT",
        help: "calls run on the carrier, not posted: none, all, or of auto (default), nonblock, nonblock-recv, nonblock-send, ready, stat",
    },
    Opt {
        name: "map-cache",
        arg: Arg::Value {
            metavar: "on|off",
            check: map_cache,
        },
        var: "FLEXSC_MAP_CACHE",
        help: "read-only file mappings the program unmaps are kept for its next mapping of the same range (on, the default), or unmapped at once (off)",
    },
    Opt {
        name: "main",
        arg: Arg::Value {
            metavar: "green|plain",
            check: main_thread,
        },
        var: "FLEXSC_MAIN",
        help: "the main thread becomes green thread 0 at its first pthread_create (green, the default), or stays a glibc thread (plain)",
    },
    Opt {
        name: "no-tls",
        arg: Arg::Flag("0"),
        var: "FLEXSC_TLS",
        help: "green threads share their carrier's thread-locals",
    },
    Opt {
        name: "stats",
        arg: Arg::Stats,
        var: "FLEXSC_STATS",
        help: "per-carrier statistics at exit: to stderr (1), or appended to FILE (absolute)",
    },
];

/// The text of `flexsc --help`.
pub fn usage() -> String {
    let mut s = format!(
        "flexsc {}: runs a program under libflexsc (LD_PRELOAD)

Usage:
  {SYNOPSIS}
  {PROFILE_SYNOPSIS}
  {PROFILE_SYNOPSIS_READ}
  flexsc help | --help | -h
  flexsc --version | -V

`flexsc run` sets the FLEXSC_* variables of the options given, prepends libflexsc.so to
LD_PRELOAD and executes CMD in its place (searched in PATH, like execvp). An option overrides
the variable if it is already set; variables of options not given are passed on unchanged.
Options take their value as `--opt VALUE` or `--opt=VALUE`.

Options:                                   variable
",
        env!("CARGO_PKG_VERSION")
    );
    for o in OPTIONS {
        let (spelling, var) = match &o.arg {
            Arg::Value { metavar, .. } => (format!("--{} {metavar}", o.name), o.var.to_string()),
            Arg::Flag(value) => (format!("--{}", o.name), format!("{}={value}", o.var)),
            Arg::Stats => (format!("--{}[=FILE]", o.name), o.var.to_string()),
        };
        s += &format!("  {spelling:<40} {var}\n        {}\n", o.help);
    }
    s += &crate::profile::usage();
    s += "
Library: FLEXSC_LIB if set, else the first of deps/libflexsc.so (cargo's latest build),
libflexsc.so and ../lib/libflexsc.so, relative to this executable's directory.
";
    s
}

/// Reads the arguments (without the program name).
pub fn parse(args: &[OsString]) -> Result<Invocation, String> {
    let Some(first) = args.first() else {
        return Ok(Invocation::Usage);
    };
    match first.to_str() {
        Some("help" | "--help" | "-h") => Ok(Invocation::Help),
        Some("--version" | "-V") => Ok(Invocation::Version),
        Some("run") => parse_run(&args[1..]),
        Some("profile") => crate::profile::parse(&args[1..]),
        _ => Err(format!(
            "unknown command {first:?} (expected `run`, `profile`, `help` or `--version`)"
        )),
    }
}

/// Reads `run`'s options and command (also `profile`'s, for the run it records).
pub fn parse_run(args: &[OsString]) -> Result<Invocation, String> {
    let mut set = BTreeMap::new();
    let mut args = args.iter();
    let command = loop {
        let Some(arg) = args.next() else {
            return Err(format!("missing command: expected `{SYNOPSIS}`"));
        };
        if arg == "--" {
            break args.as_slice().to_vec();
        }
        if arg == "-h" || arg == "--help" {
            return Ok(Invocation::Help);
        }
        let Some(body) = arg.as_bytes().strip_prefix(b"--") else {
            return Err(format!(
                "unexpected argument {arg:?}: the command goes after `--` (`{SYNOPSIS}`)"
            ));
        };
        let (name, inline) = match body.iter().position(|&b| b == b'=') {
            Some(i) => (&body[..i], Some(OsStr::from_bytes(&body[i + 1..]))),
            None => (body, None),
        };
        let opt = OPTIONS
            .iter()
            .find(|o| o.name.as_bytes() == name)
            .ok_or_else(|| format!("unknown option {arg:?}"))?;
        let value = match (&opt.arg, inline) {
            (Arg::Value { check, .. }, inline) => {
                let v = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .map(OsString::as_os_str)
                        .filter(|v| !v.as_bytes().starts_with(b"--"))
                        .ok_or_else(|| format!("missing value for --{}", opt.name))?,
                };
                let text = v
                    .to_str()
                    .ok_or_else(|| format!("--{} {v:?}: not valid UTF-8", opt.name))?;
                check(text)
                    .map_err(|e| format!("--{} {text:?}: {e}", opt.name))?
                    .into()
            }
            (Arg::Flag(value), None) => value.into(),
            (Arg::Flag(_), Some(_)) => return Err(format!("--{} takes no value", opt.name)),
            (Arg::Stats, None) => "1".into(),
            (Arg::Stats, Some(file)) if file.is_empty() => {
                return Err(format!("--{}=: the file name is empty", opt.name));
            }
            (Arg::Stats, Some(file)) => std::path::absolute(file)
                .map_err(|e| format!("--{}={file:?}: {e}", opt.name))?
                .into_os_string(),
        };
        set.insert(opt.var, value);
    };
    if command.is_empty() {
        return Err(format!("missing command after `--`: expected `{SYNOPSIS}`"));
    }
    let remove = reconcile(&mut set)?;
    Ok(Invocation::Run(Run {
        set,
        remove,
        command,
    }))
}

/// The checks between options, and what they imply for inherited variables: `--syscall-cores`
/// alone means the static specialization (set, overriding an inherited `FLEXSC_SPECIALIZATION`),
/// and `--specialization percore|dynamic` removes an inherited `FLEXSC_SYSCALL_CORES`, which
/// applies to `static` only. Returns the variables to remove.
fn reconcile(set: &mut BTreeMap<&'static str, OsString>) -> Result<Vec<&'static str>, String> {
    let get = |var: &str| set.get(var).and_then(|v| v.to_str()).map(str::to_owned);
    let list = get(SYSCALL_CORES);
    let backend = get(BACKEND);
    let Some(mode) = get(SPECIALIZATION) else {
        if list.is_some() {
            set.insert(SPECIALIZATION, "static".into());
        }
        return Ok(Vec::new());
    };
    let spec = match (named(&mode), list) {
        (Some(Specialization::Static(_)), Some(v)) => Specialization::Static(parse_cpu_list(&v)?),
        (Some(_), Some(v)) => {
            return Err(format!(
                "--syscall-cores {v:?} applies to --specialization static only, not {mode}"
            ));
        }
        (Some(spec), None) => spec,
        (None, _) => return Err(format!("unknown specialization {mode:?}")),
    };
    if let Some((b, Ok(kind))) = backend.as_deref().map(|b| (b, b.parse::<BackendKind>())) {
        validate(Config {
            backend: kind,
            specialization: spec.clone(),
            ..Config::default()
        })
        .map_err(|e| format!("--backend {b} with --specialization {mode}: {e}"))?;
    }
    Ok(match spec {
        Specialization::Static(_) => Vec::new(),
        _ => vec![SYSCALL_CORES],
    })
}

/// The specializations `FLEXSC_SPECIALIZATION` names (`static` with an empty list, `dynamic`
/// with the default period).
fn modes() -> [Specialization; 3] {
    [
        Specialization::PerCore,
        Specialization::Static(Vec::new()),
        Specialization::dynamic(),
    ]
}

/// The specialization of this name.
fn named(mode: &str) -> Option<Specialization> {
    modes().into_iter().find(|s| s.name() == mode)
}

/// Checks `c` with `Config::validate`, the check `register` makes.
fn validate(c: Config) -> Result<(), String> {
    c.validate().map_err(|e| e.to_string())
}

/// A count, read as the crates read their variables (surrounding spaces allowed).
fn number(v: &str) -> Result<usize, String> {
    v.trim().parse().map_err(|_| "not a number".to_string())
}

/// `--cores`: a number of carriers, at least 1.
fn cores(v: &str) -> Result<String, String> {
    let n = number(v)?;
    validate(Config {
        cores: n,
        ..Config::default()
    })?;
    Ok(n.to_string())
}

/// `--syscall-cores`: a cpulist of CPUs that are online.
fn syscall_cores(v: &str) -> Result<String, String> {
    let list = parse_cpu_list(v)?;
    validate(Config {
        specialization: Specialization::Static(list),
        ..Config::default()
    })?;
    Ok(v.trim().to_string())
}

/// `--backend`: `BackendKind`'s names (`kmod`'s availability is checked by `main`).
fn backend(v: &str) -> Result<String, String> {
    let b = v.trim();
    b.parse::<BackendKind>()
        .map(|_| b.to_string())
        .map_err(|_| "expected uring, threads or kmod".into())
}

/// `--pages`: syscall pages per carrier, in `Config::validate`'s range.
fn pages(v: &str) -> Result<String, String> {
    let n = number(v)?;
    validate(Config {
        pages_per_core: n,
        ..Config::default()
    })?;
    Ok(n.to_string())
}

/// `--specialization`: one of `Specialization::name`'s names.
fn specialization(v: &str) -> Result<String, String> {
    named(v.trim())
        .map(|s| s.name().to_string())
        .ok_or_else(|| {
            let names: Vec<_> = modes().iter().map(Specialization::name).collect();
            format!("expected {}", names.join(", "))
        })
}

/// `--order`: the runtime's own `FLEXSC_ORDER` syntax (`fifo`, `lifo`, `lifo:N`).
fn order(v: &str) -> Result<String, String> {
    v.parse::<flexsc_threads::Order>()?;
    Ok(v.trim().to_string())
}

/// `--preempt`: what the library accepts in `FLEXSC_PREEMPT` (`preload/src/preempt.rs`).
fn preempt(v: &str) -> Result<String, String> {
    flexsc_threads::Preemption::parse_slice(v)?;
    Ok(v.trim().to_string())
}

/// `--map-cache`: `on` or `off` (the library reads `FLEXSC_MAP_CACHE`: `0` or `off` is off,
/// anything else on; `preload/src/map_cache.rs`).
fn map_cache(v: &str) -> Result<String, String> {
    match v.trim() {
        "on" | "1" => Ok("1".to_string()),
        "off" | "0" => Ok("0".to_string()),
        _ => Err("expected `on` or `off`".to_string()),
    }
}

/// `--main`: what the library accepts in `FLEXSC_MAIN` (`preload/src/main_thread.rs`).
fn main_thread(v: &str) -> Result<String, String> {
    match v.trim() {
        m @ ("green" | "plain") => Ok(m.to_string()),
        _ => Err("expected `green` or `plain`".to_string()),
    }
}

/// `--direct`: the classes of the library's hybrid rule (`preload/src/direct.rs`, which reads
/// `FLEXSC_DIRECT` with the same rule).
fn direct(v: &str) -> Result<String, String> {
    for class in v.split([',', '+']).map(str::trim) {
        let classes = [
            "none",
            "all",
            "auto",
            "nonblock",
            "nonblock-recv",
            "nonblock-send",
            "ready",
            "stat",
        ];
        if !classes.contains(&class) {
            return Err(format!(
                "{class:?} is not none, all, auto, nonblock, nonblock-recv, nonblock-send, ready or stat"
            ));
        }
    }
    Ok(v.trim().to_string())
}

/// `--batch`: entries per batch, at least 1 (the rule of the runtime's `FLEXSC_BATCH`).
fn batch(v: &str) -> Result<String, String> {
    match number(v)? {
        0 => Err("a batch holds at least 1 call".into()),
        n => Ok(n.to_string()),
    }
}
