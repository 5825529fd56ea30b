//! `flexsc profile`: the syscall profiler (issue 7).
//!
//! - `flexsc profile [OPTIONS] [RUN OPTIONS] -- CMD [ARGS...]` runs CMD under libflexsc with the
//!   recorder on (`FLEXSC_PROFILE=DIR/records`), waits for it, and analyses every process's dump;
//! - `flexsc profile [OPTIONS] --strace FILE` analyses `strace -f` output instead;
//! - `flexsc profile [OPTIONS] --records DIR` analyses the dumps of an earlier run again.
//!
//! The report (the syscall graph's heaviest edges, the hottest sequences with the crossings a
//! multi-call would save, the costly patterns) is printed and written to `DIR/report.txt`, the
//! graph to `DIR/graph.dot` and, when Graphviz's `dot` is installed, `DIR/graph.svg`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, Ordering};

use flexsc_profile::record::{self, DIR_VAR, RING_VAR};
use flexsc_profile::report::{self, Options};
use flexsc_profile::{Trace, strace};

use crate::options::{self, Invocation, Run};

/// The synopsis of `flexsc profile` on a command, quoted by usage errors.
pub const SYNOPSIS: &str = "flexsc profile [OPTIONS] [RUN OPTIONS] -- CMD [ARGS...]";
/// The synopsis of `flexsc profile` on a trace or an earlier recording.
pub const SYNOPSIS_READ: &str = "flexsc profile [OPTIONS] --strace FILE | --records DIR";

/// The largest `--ring` (the recorder's own limit: 256 MiB of address space per thread).
const MAX_RING: usize = 1 << 24;

/// The output directory when `-o` is not given.
const DEFAULT_DIR: &str = "flexsc-profile";

/// Where the profile comes from.
#[derive(Debug)]
pub enum Source {
    /// Run this command under libflexsc with the recorder on.
    Run(Run),
    /// Read `strace -f` output from this file.
    Strace(PathBuf),
    /// Read the dumps in this directory.
    Records(PathBuf),
}

/// A checked `flexsc profile`.
#[derive(Debug)]
pub struct Profile {
    /// The input.
    pub source: Source,
    /// Where the report, the graph and the recordings go.
    pub dir: PathBuf,
    /// The recorder's ring size (records per thread), if given.
    pub ring: Option<usize>,
    /// What the report shows.
    pub options: Options,
}

/// The part of `flexsc --help` about `profile`.
pub fn usage() -> String {
    format!(
        "
`flexsc profile` runs CMD under libflexsc (with the `run` options given) recording every
thread's system calls, then prints the syscall graph's heaviest edges, the hottest call
sequences with the kernel crossings one multi-call each would save, and known costly patterns;
`--strace FILE` reads `strace -f` output instead, `--records DIR` an earlier run's recordings.

Profile options:
  -o DIR          output: report.txt, graph.dot, graph.svg (with Graphviz), records/ ({DEFAULT_DIR})
  --top N         rows per table (10)
  --max-len N     longest sequence looked for, at least 2 (4)
  --ring N        records kept per thread, the latest (65536, at most {MAX_RING}; {RING_VAR})
"
    )
}

/// Reads `profile`'s arguments (after `profile`).
pub fn parse(args: &[OsString]) -> Result<Invocation, String> {
    let mut dir = PathBuf::from(DEFAULT_DIR);
    let mut ring = None;
    let mut options = Options::default();
    let mut strace_file = None;
    let mut records = None;
    let mut run_args = Vec::new();
    let mut it = args.iter();
    let mut command = None;
    while let Some(arg) = it.next() {
        let text = arg.to_str().unwrap_or("");
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (text, None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .and_then(|v| v.to_str())
                    .filter(|v| !v.starts_with("--"))
                    .map(str::to_string)
                    .ok_or_else(|| format!("missing value for {what}")),
            }
        };
        match name {
            "--" => {
                command = Some(it.as_slice().to_vec());
                break;
            }
            "-h" | "--help" => return Ok(Invocation::Help),
            "-o" | "--output" => dir = PathBuf::from(value(name)?),
            "--top" => options.top = count(name, &value(name)?, 1)?,
            "--max-len" => options.max_len = count(name, &value(name)?, 2)?,
            "--ring" => {
                let n = count(name, &value(name)?, 2)?;
                if n > MAX_RING {
                    return Err(format!("--ring {n}: at most {MAX_RING} records per thread"));
                }
                ring = Some(n);
            }
            "--strace" => strace_file = Some(PathBuf::from(value(name)?)),
            "--records" => records = Some(PathBuf::from(value(name)?)),
            _ => run_args.push(arg.clone()),
        }
    }
    let source = match (strace_file, records, command) {
        (Some(f), None, None) if run_args.is_empty() => Source::Strace(f),
        (None, Some(d), None) if run_args.is_empty() => Source::Records(d),
        (None, None, Some(cmd)) => {
            run_args.push("--".into());
            run_args.extend(cmd);
            match options::parse_run(&run_args)? {
                Invocation::Run(run) => Source::Run(run),
                other => return Ok(other),
            }
        }
        (None, None, None) => match run_args.first() {
            Some(a) => {
                return Err(format!(
                    "unexpected argument {a:?}: the command goes after `--` (`{SYNOPSIS}`)"
                ));
            }
            None => {
                return Err(format!(
                    "nothing to profile: expected `{SYNOPSIS}` or `{SYNOPSIS_READ}`"
                ));
            }
        },
        _ => {
            return Err(format!(
                "give one of a command (after `--`), --strace FILE or --records DIR, and run \
                 options only with a command (`{SYNOPSIS}`, `{SYNOPSIS_READ}`)"
            ));
        }
    };
    if ring.is_some() && !matches!(source, Source::Run(_)) {
        return Err("--ring applies to recording a command only".into());
    }
    Ok(Invocation::Profile(Profile {
        source,
        dir,
        ring,
        options,
    }))
}

/// A count option's value, at least `min`.
fn count(name: &str, v: &str, min: usize) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        Ok(_) => Err(format!("{name} {v:?}: at least {min}")),
        Err(_) => Err(format!("{name} {v:?}: not a number")),
    }
}

/// The command's process while the launcher waits for it (0: none), for the signal forwarder.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Runs the profile; the exit status is the command's (128 + N if signal N ended it) or 2 if
/// the profile could not be made.
pub fn main(p: Profile) -> ExitCode {
    match profile(p) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("flexsc profile: {e}");
            ExitCode::from(2)
        }
    }
}

fn profile(p: Profile) -> Result<u8, String> {
    let dir = std::path::absolute(&p.dir).map_err(|e| format!("{}: {e}", p.dir.display()))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (trace, status) = match p.source {
        Source::Strace(file) => {
            let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            (strace::parse(&String::from_utf8_lossy(&text)), 0)
        }
        Source::Records(records) => (read_records(&records)?, 0),
        Source::Run(run) => {
            let records = dir.join("records");
            clear_records(&records)?;
            let status = record_run(run, &records, p.ring)?;
            (read_records(&records)?, status)
        }
    };
    let r = report::analyse(&trace, p.options);
    let table = r.table();
    // A closed stdout (`| head`) is no reason to stop: the files are still written.
    let _ = std::io::stdout().write_all(table.as_bytes());
    write(&dir.join("report.txt"), &table)?;
    let dot = dir.join("graph.dot");
    write(&dot, &r.dot())?;
    let svg = dir.join("graph.svg");
    let report = dir.join("report.txt");
    let written = match Command::new("dot")
        .arg("-Tsvg")
        .arg(&dot)
        .arg("-o")
        .arg(&svg)
        .status()
    {
        Ok(s) if s.success() => {
            format!("{}, {}, {}", report.display(), dot.display(), svg.display())
        }
        Ok(s) => format!(
            "{}, {} (no SVG: dot -Tsvg failed, {s})",
            report.display(),
            dot.display()
        ),
        Err(_) => format!(
            "{}, {} (no SVG: Graphviz's `dot` is not installed)",
            report.display(),
            dot.display()
        ),
    };
    let _ = writeln!(std::io::stdout(), "\nwritten: {written}");
    Ok(status)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Empties (or makes) the recordings directory: dumps of an earlier run must not mix in.
fn clear_records(records: &Path) -> Result<(), String> {
    std::fs::create_dir_all(records).map_err(|e| format!("{}: {e}", records.display()))?;
    for e in std::fs::read_dir(records).map_err(|e| format!("{}: {e}", records.display()))? {
        let path = e.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|x| x == "fxp") {
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Runs the command with the recorder on and waits for it; its exit status.
fn record_run(run: Run, records: &Path, ring: Option<usize>) -> Result<u8, String> {
    let preload = crate::preload_for(&run)?;
    let (program, args) = run
        .command
        .split_first()
        .expect("options::parse_run rejects an empty command");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&run.set)
        .env("LD_PRELOAD", preload)
        .env(DIR_VAR, records);
    match ring {
        Some(n) => cmd.env(RING_VAR, n.to_string()),
        None => cmd.env_remove(RING_VAR),
    };
    for var in run.remove {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    CHILD.store(child.id() as i32, Ordering::Relaxed);
    // SAFETY: installs a handler that only calls kill; SIGINT from a terminal reaches the whole
    // process group, the command included, so the launcher only outlives it to write the report.
    unsafe {
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {program:?}: {e}"))?;
    CHILD.store(0, Ordering::Relaxed);
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128 + s as u8,
        (None, None) => 1,
    })
}

/// Every process's dump in `records`, in process id order.
fn read_records(records: &Path) -> Result<Trace, String> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(records)
        .map_err(|e| format!("{}: {e}", records.display()))?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let pid = path.file_stem()?.to_str()?.parse().ok()?;
            (path.extension()? == "fxp").then_some((pid, path))
        })
        .collect();
    if files.is_empty() {
        return Err(format!(
            "no recording in {} (did the command run under libflexsc, and exit rather than \
             _exit or die of a signal?)",
            records.display()
        ));
    }
    files.sort();
    let mut trace = Trace::default();
    for (_, path) in files {
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let t = record::decode(&bytes, &flexsc_threads::runtime::syscall_name)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        trace.extend(t);
    }
    Ok(trace)
}
