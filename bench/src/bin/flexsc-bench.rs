//! The evaluation of issue 6: Apache (ab), MariaDB (sysbench) and memcached (memcaslap) from
//! Debian's packages on loopback, each measured natively (NPTL) and under `flexsc run` with
//! each backend, alternately, at a sweep of load levels and server CPU counts; a markdown
//! report and SVG figures drawn here.
//!
//! Usage (as root: Apache switches to www-data):
//!
//! ```text
//! cargo build --release -p flexsc-preload
//! cargo run --release -p flexsc-bench --bin flexsc-bench -- [--quick] [--pairs N]
//!     [--workloads apache-k,apache,apache-wrk,apache-wrk-close,mariadb-ro,mariadb-rw,memcached]
//!     [--cores 1,2]
//!     [--backends uring,threads,...] [--apache-levels 1,16,64,256,1024]
//!     [--mariadb-levels 1,4,16,64,256] [--memcached-levels 1,16,64,256,1024]
//!     [--secs S] [--warmup S] [--out FILE] [--figures DIR] [--flexsc PATH] [--keep]
//! cargo run --release -p flexsc-bench --bin flexsc-bench -- --replot FILE.tsv [--figures DIR]
//! ```
//!
//! Each `--backends` entry is a libflexsc variant, `BACKEND[/OPTION=VALUE...]` with options of
//! `flexsc run`: `uring`, `threads/specialization=percore`, `uring/pages=1`, ... (the
//! paper's core-specialization and syscall-page variants).
//!
//! `apache-wrk` loads Apache with `wrk` (Debian package `wrk`) instead of ab: keep-alive
//! connections = the level, percentiles over every request; `apache-wrk-close` the same with
//! a connection per request (`Connection: close`), where ab's single thread is the limit. `--apache-levels` sets its levels
//! too. Each variant set that differs only in `pages=N` (two N or more) also gets a figure of
//! throughput against the syscall pages per core (the paper's Figure 16).
//!
//! `--quick` (one pair, a few points, 3 s loads; the wrk workloads only if named in `--workloads`)
//! is the harness's smoke test: it exits non-zero unless every run produced numbers, no
//! request failed, and every libflexsc run posted calls exception-less. Without it the same
//! holds except that a failed run is reported, not fatal. The launcher is `--flexsc`, else
//! `$FLEXSC_BIN`, else the `flexsc` beside this binary. Beside the report (`--out`, default docs/results-eval.md) goes every
//! run's numbers as a tab-separated table (same name, `.tsv`). The figures' names start with
//! the report's name (`eval-` for `results-eval.md`, `eval-variants-` for
//! `results-eval-variants.md`), so reports sharing a figures directory keep their own.
//! `--replot FILE.tsv` draws a report's figures again from its table, measuring nothing.
//!
//! Servers are stopped by their PID when a run ends or fails (guards dropped on return and on
//! panic). Interrupted from a terminal (Ctrl-C), the servers get the SIGINT too (same process
//! group) and stop; killed alone (`kill PID`), the harness leaves them running.

#[path = "../eval/measure.rs"]
mod measure;
#[path = "../eval/process.rs"]
mod process;
#[path = "../eval/report.rs"]
mod report;
#[path = "../eval/server.rs"]
mod server;
#[path = "../eval/stats.rs"]
mod stats;
#[path = "../eval/workload.rs"]
mod workload;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use flexsc_bench::opts::Opts;
use measure::{Pinning, Point, Timing};
use report::{Measured, Meta};
use server::{Kind, Servers, Variant};
use workload::Workload;

fn die(msg: &str) -> ! {
    flexsc_bench::opts::die("flexsc-bench", msg)
}

/// The options this binary adds to the shared ones.
trait EvalOpts {
    fn numbers(&self, key: &str, default: &[usize]) -> Vec<usize>;
}

impl EvalOpts for Opts {
    fn numbers(&self, key: &str, default: &[usize]) -> Vec<usize> {
        self.list(key).map_or(default.to_vec(), |l| {
            l.iter()
                .map(|x| {
                    x.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .unwrap_or_else(|| die(&format!("bad --{key}: {x:?}")))
                })
                .collect()
        })
    }
}

/// The first line of a command's output, or `NAME: ?`.
fn first_line(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("{prog}: ?"))
}

fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0);
    format!(
        "{nproc} CPUs (nproc; {}), {mem_gib:.0} GiB, kernel {}, {}",
        model,
        kernel.trim(),
        first_line("getconf", &["GNU_LIBC_VERSION"])
    )
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mmss(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// `path` relative to `base` when it lies under it (for the report's links).
fn relative(path: &Path, base: &Path) -> PathBuf {
    let (Ok(p), Ok(b)) = (path.canonicalize(), base.canonicalize()) else {
        return path.to_path_buf();
    };
    p.strip_prefix(&b).map_or(p.clone(), Path::to_path_buf)
}

fn main() {
    // Exit only once `run` has returned: its guards (servers, work directory) are dropped by
    // then.
    std::process::exit(run());
}

/// Draws the figures of `results` into `dir`, their names starting with `prefix`.
fn write_figures(results: &[Measured], dir: &Path, prefix: &str) {
    if let Err(e) = fs::create_dir_all(dir) {
        die(&format!("{}: {e}", dir.display()));
    }
    for (name, svg) in report::figures(results, prefix) {
        let p = dir.join(name);
        if let Err(e) = fs::write(&p, svg) {
            die(&format!("{}: {e}", p.display()));
        }
    }
}

/// The whole evaluation; returns the exit status.
fn run() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let o = Opts::parse("flexsc-bench", &args[1..], " (see the usage in --help)");
    o.help(include_str!("flexsc-bench.rs"));
    o.only(&[
        "quick",
        "pairs",
        "workloads",
        "cores",
        "backends",
        "apache-levels",
        "mariadb-levels",
        "memcached-levels",
        "secs",
        "warmup",
        "out",
        "figures",
        "flexsc",
        "keep",
        "replot",
        "help",
        "h",
    ]);
    let quick = o.flag("quick");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = repo.canonicalize().unwrap_or(repo);

    let workloads: Vec<Workload> = o.list("workloads").map_or_else(
        // The smoke test already drives Apache with ab; wrk would only add time.
        || {
            workload::ALL
                .into_iter()
                .filter(|w| !(quick && matches!(w, Workload::Wrk { .. })))
                .collect()
        },
        |l| {
            l.iter()
                .map(|id| {
                    Workload::from_id(id).unwrap_or_else(|| {
                        die(&format!(
                            "unknown workload {id:?} (apache-k, apache, apache-wrk, \
                             apache-wrk-close, mariadb-ro, mariadb-rw, memcached)"
                        ))
                    })
                })
                .collect()
        },
    );
    let backends = o
        .list("backends")
        .unwrap_or_else(|| vec!["uring".into(), "threads".into()]);
    for b in &backends {
        if let Err(e) = server::check_spec(b) {
            die(&format!("--backends {e}"));
        }
    }
    let allowed = process::allowed_cpus();
    let cores = o.numbers(
        "cores",
        if quick {
            &[1]
        } else if allowed.len() >= 2 {
            &[1, 2]
        } else {
            &[1]
        },
    );
    let pinning: Vec<(usize, Pinning)> = cores
        .iter()
        .map(|&c| {
            (
                c,
                Pinning::for_cores(c, &allowed).unwrap_or_else(|e| die(&e)),
            )
        })
        .collect();
    let levels = |w: Workload| match w {
        Workload::Ab { .. } | Workload::Wrk { .. } => o.numbers(
            "apache-levels",
            if quick {
                &[16]
            } else {
                &[1, 16, 64, 256, 1024]
            },
        ),
        Workload::Oltp { .. } => o.numbers(
            "mariadb-levels",
            if quick { &[4] } else { &[1, 4, 16, 64, 256] },
        ),
        Workload::Memcaslap => o.numbers(
            "memcached-levels",
            if quick {
                &[16]
            } else {
                &[1, 16, 64, 256, 1024]
            },
        ),
    };
    let pairs: usize = o.get("pairs").unwrap_or(if quick { 1 } else { 3 });
    if pairs == 0 {
        die("--pairs must be at least 1");
    }
    let timing = Timing {
        secs: o.get("secs").unwrap_or(if quick { 3 } else { 10 }),
        warmup: o.get("warmup").unwrap_or(if quick { 1 } else { 3 }),
    };
    if timing.secs == 0 {
        die("--secs must be at least 1");
    }
    let out: PathBuf = o.get("out").unwrap_or_else(|| {
        if quick {
            std::env::temp_dir().join("flexsc-bench-quick/results.md")
        } else {
            repo.join("docs/results-eval.md")
        }
    });
    let figures_dir: PathBuf = o.get("figures").unwrap_or_else(|| {
        if quick {
            out.parent().unwrap_or(Path::new(".")).join("figures")
        } else {
            repo.join("docs/figures")
        }
    });
    if let Some(table) = o.get::<PathBuf>("replot") {
        let results = fs::read_to_string(&table)
            .map_err(|e| e.to_string())
            .and_then(|t| report::from_tsv(&t))
            .unwrap_or_else(|e| die(&format!("{}: {e}", table.display())));
        write_figures(&results, &figures_dir, &report::figure_prefix(&table));
        eprintln!(
            "flexsc-bench: figures of {} in {}",
            table.display(),
            figures_dir.display()
        );
        return 0;
    }
    let prefix = report::figure_prefix(&out);

    // What must be there before anything starts.
    if process::euid() != Some(0) {
        die("run as root: Apache switches to www-data, memcached and mariadbd run as root");
    }
    let mut missing = Vec::new();
    let mut kinds: Vec<Kind> = workloads.iter().map(|w| w.kind()).collect();
    kinds.dedup();
    let common = [
        ("taskset", "util-linux"),
        ("kill", "procps"),
        ("getconf", "libc-bin"),
    ];
    let generators: Vec<(&str, &str)> = workloads.iter().map(|w| w.generator()).collect();
    for (tool, pkg) in kinds
        .iter()
        .flat_map(|k| k.tools())
        .chain(&generators)
        .chain(&common)
    {
        let line = format!("{tool} (apt-get install {pkg})");
        if !process::have(tool) && !missing.contains(&line) {
            missing.push(line);
        }
    }
    if !missing.is_empty() {
        die(&format!("not installed: {}", missing.join(", ")));
    }
    for (port, what) in [
        (server::APACHE_PORT, "Apache"),
        (server::MARIADB_PORT, "MariaDB"),
        (server::MEMCACHED_PORT, "memcached"),
    ] {
        if server::port_in_use(port) {
            die(&format!(
                "127.0.0.1:{port} ({what}'s port here) is already in use"
            ));
        }
    }
    let flexsc: PathBuf = o
        .get("flexsc")
        .or_else(|| std::env::var_os("FLEXSC_BIN").map(PathBuf::from))
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| Some(e.parent()?.join("flexsc")))
                .unwrap_or_default()
        });
    if !backends.is_empty() && !process::have(&flexsc.display().to_string()) {
        die(&format!(
            "no flexsc launcher at {} (cargo build --release -p flexsc-preload, or --flexsc PATH)",
            flexsc.display()
        ));
    }
    let flexsc = flexsc.canonicalize().unwrap_or(flexsc);

    let mut variants = vec![Variant::Native];
    variants.extend(backends.iter().cloned().map(Variant::Flexsc));
    let mut points = Vec::new();
    for &w in &workloads {
        for &c in &cores {
            for l in levels(w) {
                points.push(Point {
                    workload: w,
                    cores: c,
                    level: l,
                });
            }
        }
    }
    let total_runs = points.len() * pairs * variants.len();
    let date = first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let load_start = loadavg();
    eprintln!(
        "flexsc-bench: {} points x {pairs} pair(s) x {} variants = {total_runs} runs of {} s \
         (+{} s warm-up); report to {}",
        points.len(),
        variants.len(),
        timing.secs,
        timing.warmup,
        out.display()
    );

    let templates = repo.join("scripts/servers");
    let mut servers = Servers::new(flexsc, templates, o.flag("keep")).unwrap_or_else(|e| die(&e));
    let ticks = process::clock_ticks();
    let start = Instant::now();
    let mut results: Vec<Measured> = Vec::new();
    let mut done = 0usize;
    let mut problems = Vec::new();
    for point in &points {
        let kind = point.workload.kind();
        if let Err(e) = servers.prepare(kind) {
            eprintln!("flexsc-bench: setting up {kind:?}: {e}");
            return 2;
        }
        let pin = &pinning
            .iter()
            .find(|(c, _)| *c == point.cores)
            .expect("a pinning per CPU count")
            .1;
        let mut runs: Vec<(Variant, Vec<Result<measure::Sample, String>>)> =
            variants.iter().map(|v| (v.clone(), Vec::new())).collect();
        for pair in 1..=pairs {
            for (v, samples) in &mut runs {
                let r = measure::run_once(&mut servers, point, v, pin, timing, ticks);
                done += 1;
                let el = start.elapsed().as_secs_f64();
                let eta = el / done as f64 * (total_runs - done) as f64;
                let what = format!(
                    "{} {} {} on {} CPU(s), {}, pair {pair}/{pairs}",
                    point.workload.id(),
                    point.workload.level_name(),
                    point.level,
                    point.cores,
                    v.name()
                );
                match &r {
                    Ok(s) => {
                        eprintln!(
                            "[{done:>4}/{total_runs}] {what}: {:.0} {} ({} failed) | {} elapsed, ETA {}",
                            s.load.throughput,
                            point.workload.unit(),
                            s.load.failed,
                            mmss(el),
                            mmss(eta)
                        );
                        if s.load.requests == 0 || s.load.throughput <= 0.0 {
                            problems.push(format!("{what}: no requests completed"));
                        }
                        if s.load.failed > 0 {
                            problems.push(format!("{what}: {} requests failed", s.load.failed));
                        }
                        if matches!(v, Variant::Flexsc(_))
                            && s.counters.is_none_or(|c| c.posted == 0)
                        {
                            problems.push(format!(
                                "{what}: no libflexsc statistics (or nothing posted)"
                            ));
                        }
                    }
                    Err(e) => {
                        eprintln!("[{done:>4}/{total_runs}] {what}: FAILED: {e}");
                        problems.push(format!("{what}: {}", e.lines().next().unwrap_or("")));
                    }
                }
                samples.push(r);
            }
        }
        results.push(Measured {
            point: *point,
            runs,
        });
    }

    // Every server is stopped by now; the work directory goes.
    drop(servers);
    let meta = Meta {
        command: std::iter::once("flexsc-bench".to_string())
            .chain(args[1..].iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
        date,
        machine: machine(),
        load: (load_start, loadavg()),
        versions: [
            ("apache2", "-v"),
            ("mariadbd", "--version"),
            ("memcached", "-V"),
            ("sysbench", "--version"),
            ("ab", "-V"),
            ("wrk", "--version"),
            ("memcaslap", "-V"),
        ]
        .iter()
        .map(|(p, a)| {
            let l = first_line(p, &[a]);
            let l = l.strip_prefix("Server version: ").unwrap_or(&l);
            l.strip_prefix("This is ").unwrap_or(l).to_string()
        })
        .collect(),
        pairs,
        timing,
        pinning: pinning.iter().map(|(c, p)| (*c, p.describe())).collect(),
        env: std::env::vars()
            .filter(|(k, _)| k.starts_with("FLEXSC_") && k != "FLEXSC_BIN")
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        wall_s: start.elapsed().as_secs_f64(),
        quick,
    };
    write_figures(&results, &figures_dir, &prefix);
    let out_dir = out.parent().unwrap_or(Path::new(".")).to_path_buf();
    if let Err(e) = fs::create_dir_all(&out_dir) {
        die(&format!("{}: {e}", out_dir.display()));
    }
    let md = report::markdown(&results, &meta, &relative(&figures_dir, &out_dir), &prefix);
    if let Err(e) = fs::write(&out, md) {
        die(&format!("{}: {e}", out.display()));
    }
    let tsv = out.with_extension("tsv");
    if let Err(e) = fs::write(&tsv, report::tsv(&results)) {
        die(&format!("{}: {e}", tsv.display()));
    }
    eprintln!(
        "flexsc-bench: {total_runs} runs in {}; report {} (every run: {}), figures in {}",
        mmss(meta.wall_s),
        out.display(),
        tsv.display(),
        figures_dir.display()
    );
    if !problems.is_empty() {
        eprintln!("flexsc-bench: {} problem(s):", problems.len());
        for p in &problems {
            eprintln!("  {p}");
        }
        // The smoke test fails on any; a full evaluation reports them and carries on.
        if quick {
            return 1;
        }
    }
    0
}
