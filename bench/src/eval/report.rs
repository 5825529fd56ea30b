//! The markdown report and its figures: per workload, medians with their min - max spread,
//! ratios against NPTL taken within each pair, the issue's goals, what explains the numbers
//! (CPU split, libflexsc's entries and batches per request), and every raw sample.

use std::fmt::Write as _;
use std::path::Path;

use super::measure::{Point, Sample, Timing};
use super::process::Stopped;
use super::server::Variant;
use super::workload::{ALL, Load, Workload};
use flexsc_bench::plot::{Plot, Series};
use flexsc_bench::summary::{median, spread};

/// Every run of one point: per variant (NPTL first), one result per pair.
pub struct Measured {
    /// The point.
    pub point: Point,
    /// `(variant, results in pair order)`.
    pub runs: Vec<(Variant, Vec<Result<Sample, String>>)>,
}

/// What the report says about how it was made.
pub struct Meta {
    /// The exact command line.
    pub command: String,
    /// When it started (UTC).
    pub date: String,
    /// nproc, CPU model, kernel, memory, glibc.
    pub machine: String,
    /// /proc/loadavg at the start and at the end: other work on the machine.
    pub load: (String, String),
    /// The servers' and generators' versions.
    pub versions: Vec<String>,
    /// Pairs per point.
    pub pairs: usize,
    /// Durations of each run.
    pub timing: Timing,
    /// Per server CPU count, where the server and the load generator ran.
    pub pinning: Vec<(usize, String)>,
    /// `FLEXSC_*` variables the flexsc runs inherited.
    pub env: Vec<String>,
    /// Wall time of the whole evaluation, s.
    pub wall_s: f64,
    /// `--quick`: a smoke test, not a measurement.
    pub quick: bool,
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

fn ratio(v: f64) -> String {
    format!("{v:.2}x")
}

fn oks(r: &[Result<Sample, String>]) -> impl Iterator<Item = &Sample> {
    r.iter().filter_map(|s| s.as_ref().ok())
}

impl Measured {
    fn native(&self) -> Option<&[Result<Sample, String>]> {
        self.runs
            .iter()
            .find(|(v, _)| *v == Variant::Native)
            .map(|(_, r)| r.as_slice())
    }

    /// Per pair, `f(variant's sample) / f(NPTL's sample)`.
    fn pair_ratios(
        &self,
        runs: &[Result<Sample, String>],
        f: impl Fn(&Sample) -> Option<f64>,
    ) -> Vec<f64> {
        let Some(native) = self.native() else {
            return Vec::new();
        };
        native
            .iter()
            .zip(runs)
            .filter_map(|(n, s)| {
                let (a, b) = (f(s.as_ref().ok()?)?, f(n.as_ref().ok()?)?);
                (b > 0.0).then(|| a / b)
            })
            .collect()
    }

    /// The per-pair ratios of `variant` to NPTL: throughput, and mean latency.
    fn ratios(&self, variant: &Variant) -> (Vec<f64>, Vec<f64>) {
        let Some((_, runs)) = self.runs.iter().find(|(v, _)| v == variant) else {
            return (Vec::new(), Vec::new());
        };
        (
            self.pair_ratios(runs, |s| Some(s.load.throughput)),
            self.pair_ratios(runs, |s| s.load.mean_ms),
        )
    }
}

/// The goals of issue 6: (workload, level, minimum throughput ratio, maximum mean latency
/// ratio).
const GOALS: [(Workload, Option<usize>, f64, Option<f64>); 7] = [
    (Workload::Ab { keepalive: true }, Some(256), 2.0, Some(0.5)),
    (Workload::Ab { keepalive: false }, Some(256), 2.0, Some(0.5)),
    (Workload::Wrk { keepalive: true }, Some(256), 2.0, Some(0.5)),
    (
        Workload::Wrk { keepalive: false },
        Some(256),
        2.0,
        Some(0.5),
    ),
    (Workload::Oltp { write: false }, Some(64), 1.5, None),
    (Workload::Oltp { write: true }, Some(64), 1.5, None),
    (Workload::Memcaslap, None, 1.3, None),
];

/// The results a [`tsv`] table holds, for drawing the figures again ([`figures`]) without
/// measuring again. Each run comes back with its numbers; how its server stopped is not kept
/// (every run reads as stopped cleanly), nor which counters were missing.
pub fn from_tsv(text: &str) -> Result<Vec<Measured>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("an empty table")?.split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("no column {name:?}"))
    };
    let (wl, cpus, level, variant, error) = (
        col("workload")?,
        col("cpus")?,
        col("level")?,
        col("variant")?,
        col("error")?,
    );
    let (thr, req, failed, ign) = (
        col("throughput")?,
        col("requests")?,
        col("failed")?,
        col("ignored")?,
    );
    let (mean, p50, p99) = (col("mean_ms")?, col("p50_ms")?, col("p99_ms")?);
    let (user, sys, wall, busy) = (
        col("user_s")?,
        col("sys_s")?,
        col("wall_s")?,
        col("machine_busy")?,
    );
    let (counted, lifetime) = (col("counted")?, col("lifetime")?);
    let mut out: Vec<Measured> = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = |what: &str| format!("line {}: {what}", i + 2);
        let field = |c: usize| f.get(c).copied().unwrap_or("");
        let opt = |c: usize| -> Result<Option<f64>, String> {
            match field(c) {
                "" => Ok(None),
                v => v
                    .parse()
                    .map(Some)
                    .map_err(|_| bad(&format!("{v:?} is not a number"))),
            }
        };
        let num = |c: usize| opt(c)?.ok_or_else(|| bad("a number is missing"));
        let point = Point {
            workload: Workload::from_id(field(wl)).ok_or_else(|| bad("unknown workload"))?,
            cores: field(cpus).parse().map_err(|_| bad("bad cpus"))?,
            level: field(level).parse().map_err(|_| bad("bad level"))?,
        };
        let v = match field(variant) {
            "NPTL" => Variant::Native,
            name => Variant::Flexsc(
                name.strip_prefix("flexsc-")
                    .ok_or_else(|| bad("unknown variant"))?
                    .to_string(),
            ),
        };
        let run = match field(error) {
            "" => Ok(Sample {
                load: Load {
                    throughput: num(thr)?,
                    requests: num(req)? as u64,
                    failed: num(failed)? as u64,
                    ignored: num(ign)? as u64,
                    mean_ms: opt(mean)?,
                    p50_ms: opt(p50)?,
                    p99_ms: opt(p99)?,
                },
                user_s: num(user)?,
                sys_s: num(sys)?,
                wall_s: num(wall)?,
                machine_busy: opt(busy)?,
                counters: None,
                counted: num(counted)? as u64,
                lifetime: field(lifetime) == "true",
                stopped: Stopped::Clean,
            }),
            e => Err(e.to_string()),
        };
        let k = match out.iter().position(|m| m.point == point) {
            Some(k) => k,
            None => {
                out.push(Measured {
                    point,
                    runs: Vec::new(),
                });
                out.len() - 1
            }
        };
        let runs = &mut out[k].runs;
        match runs.iter_mut().find(|r| r.0 == v) {
            Some(r) => r.1.push(run),
            None => runs.push((v, vec![run])),
        }
    }
    Ok(out)
}

/// Every run as a tab-separated table (one line per run, with a header), so that nothing
/// measured is lost to the medians: the report's companion file.
pub fn tsv(results: &[Measured]) -> String {
    let mut s = String::from(
        "workload\tcpus\tlevel\tvariant\tpair\terror\tthroughput\trequests\tfailed\tignored\t\
         mean_ms\tp50_ms\tp99_ms\tuser_s\tsys_s\twall_s\tmachine_busy\tposted\tbatches\t\
         waits\tlocal\tswitches\tcounted\tlifetime\tstopped\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
    for m in results {
        for (v, runs) in &m.runs {
            for (i, r) in runs.iter().enumerate() {
                let head = format!(
                    "{}\t{}\t{}\t{}\t{}",
                    m.point.workload.id(),
                    m.point.cores,
                    m.point.level,
                    v.name(),
                    i + 1
                );
                let line = match r {
                    Err(e) => format!(
                        "{head}\t{}",
                        e.lines().next().unwrap_or("").replace('\t', " ")
                    ),
                    Ok(x) => {
                        let c = x.counters;
                        let n = |f: fn(&super::stats::Counters) -> u64| {
                            c.as_ref().map_or(String::new(), |c| f(c).to_string())
                        };
                        format!(
                            "{head}\t\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{:?}",
                            x.load.throughput,
                            x.load.requests,
                            x.load.failed,
                            x.load.ignored,
                            opt(x.load.mean_ms),
                            opt(x.load.p50_ms),
                            opt(x.load.p99_ms),
                            x.user_s,
                            x.sys_s,
                            x.wall_s,
                            opt(x.machine_busy),
                            n(|c| c.posted),
                            n(|c| c.batches),
                            n(|c| c.waits),
                            n(|c| c.local),
                            n(|c| c.switches),
                            x.counted,
                            x.lifetime,
                            x.stopped
                        )
                    }
                };
                s.push_str(&line);
                s.push('\n');
            }
        }
    }
    s
}

/// The prefix of a report's figure names, from the report's file name: `eval` for
/// `results-eval.md`, `eval-variants` for `results-eval-variants.md`, the stem for any other
/// name. Two reports written to one figures directory then never overwrite each other's.
pub fn figure_prefix(report: &Path) -> String {
    let stem = report
        .file_stem()
        .map_or_else(|| "eval".into(), |s| s.to_string_lossy().into_owned());
    stem.strip_prefix("results-").unwrap_or(&stem).to_string()
}

/// The file name of a figure.
fn figure_name(prefix: &str, w: Workload, cores: usize, what: &str) -> String {
    format!("{prefix}-{}-{cores}cpu-{what}.svg", w.id())
}

/// The variants that differ only in their syscall pages per core (`pages=N`), grouped by the
/// rest of their spec: the groups with two N or more, each with `(N, variant)` sorted by N.
fn pages_groups(variants: &[Variant]) -> Vec<(String, Vec<(usize, Variant)>)> {
    let mut groups: Vec<(String, Vec<(usize, Variant)>)> = Vec::new();
    for v in variants {
        let Some((base, n)) = v.pages() else { continue };
        match groups.iter_mut().find(|g| g.0 == base) {
            Some(g) => g.1.push((n, v.clone())),
            None => groups.push((base, vec![(n, v.clone())])),
        }
    }
    for g in &mut groups {
        g.1.sort_by_key(|p| p.0);
        g.1.dedup_by_key(|p| p.0);
    }
    groups.retain(|g| g.1.len() >= 2);
    groups
}

/// The `what` of a pages figure's name: `pages-` and the group's spec, file-name safe.
fn pages_what(base: &str) -> String {
    let safe: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("pages-{safe}")
}

/// The figures of one workload on `c` CPUs, as the report links them.
fn figure_names(prefix: &str, w: Workload, c: usize, variants: &[Variant]) -> Vec<String> {
    let mut names = vec![
        figure_name(prefix, w, c, "throughput"),
        figure_name(prefix, w, c, "latency"),
    ];
    names.extend(
        pages_groups(variants)
            .iter()
            .map(|(base, _)| figure_name(prefix, w, c, &pages_what(base))),
    );
    names
}

/// The figures: per workload and CPU count, throughput and mean latency against the load
/// level, one line per variant; and where variants differ only in `pages=N`, throughput
/// against N, one line per load level (the paper's Figure 16). Returns `(file name, SVG)`, the
/// names starting with `prefix` ([`figure_prefix`]).
pub fn figures(results: &[Measured], prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for w in ALL {
        let mut cores: Vec<usize> = results
            .iter()
            .filter(|m| m.point.workload == w)
            .map(|m| m.point.cores)
            .collect();
        cores.dedup();
        for c in cores {
            let pts: Vec<&Measured> = results
                .iter()
                .filter(|m| m.point.workload == w && m.point.cores == c)
                .collect();
            let Some(first) = pts.first() else { continue };
            let variants: Vec<Variant> = first.runs.iter().map(|r| r.0.clone()).collect();
            let graph = |what: &str, y: &str, f: &dyn Fn(&Sample) -> Option<f64>| {
                let series = variants
                    .iter()
                    .map(|v| Series {
                        label: v.name(),
                        points: pts
                            .iter()
                            .filter_map(|m| {
                                let runs = &m.runs.iter().find(|r| r.0 == *v)?.1;
                                let (med, lo, hi) = median(oks(runs).filter_map(f).collect())?;
                                Some((m.point.level as f64, med, lo, hi))
                            })
                            .collect(),
                    })
                    .collect();
                let plot = Plot {
                    title: format!(
                        "{}: {what}, server on {c} CPU{}",
                        w.title(),
                        if c == 1 { "" } else { "s" }
                    ),
                    x_label: w.level_name().into(),
                    y_label: y.into(),
                    series,
                };
                (figure_name(prefix, w, c, what), plot.svg())
            };
            out.push(graph("throughput", w.unit(), &|s| Some(s.load.throughput)));
            out.push(graph("latency", "mean latency (ms)", &|s| s.load.mean_ms));
            for (base, members) in pages_groups(&variants) {
                let series = pts
                    .iter()
                    .map(|m| Series {
                        label: format!("{} {}", m.point.level, w.level_name()),
                        points: members
                            .iter()
                            .filter_map(|(n, v)| {
                                let runs = &m.runs.iter().find(|r| r.0 == *v)?.1;
                                let (med, lo, hi) =
                                    median(oks(runs).map(|s| s.load.throughput).collect())?;
                                Some((*n as f64, med, lo, hi))
                            })
                            .collect(),
                    })
                    .collect();
                let plot = Plot {
                    title: format!(
                        "{}: flexsc-{base} throughput vs syscall pages, server on {c} CPU{}",
                        w.id(),
                        if c == 1 { "" } else { "s" }
                    ),
                    x_label: "syscall pages per core".into(),
                    y_label: w.unit().into(),
                    series,
                };
                out.push((figure_name(prefix, w, c, &pages_what(&base)), plot.svg()));
            }
        }
    }
    out
}

/// The report. `figures_rel`: the figures' directory as the report links it; `prefix`: their
/// names' ([`figures`]).
pub fn markdown(results: &[Measured], meta: &Meta, figures_rel: &Path, prefix: &str) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# libflexsc against NPTL: Apache, MariaDB, memcached\n");
    if meta.quick {
        let _ = writeln!(
            w,
            "**A `--quick` run: the harness's smoke test (one pair, short loads), not a \
             measurement.**\n"
        );
    }
    let _ = writeln!(
        w,
        "Generated by `flexsc-bench` (bench/src/bin/flexsc-bench.rs), started {}, {:.0} min \
         in all.\n\n```sh\n{}\n```\n",
        meta.date,
        meta.wall_s / 60.0,
        meta.command
    );
    let _ = writeln!(w, "- Machine: {}.", meta.machine);
    let _ = writeln!(
        w,
        "- Load average (/proc/loadavg) at the start: {}; at the end: {}. Anything above \
         about 1 means other work shared the CPUs (this machine is shared with other builds): \
         single numbers then vary by 30-50%, which is why each point alternates NPTL and \
         libflexsc runs.",
        meta.load.0, meta.load.1
    );
    let _ = writeln!(w, "- Software: {}.", meta.versions.join("; "));
    for (c, p) in &meta.pinning {
        let _ = writeln!(
            w,
            "- {c} server CPU{}: {p}.",
            if *c == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(
        w,
        "- Method: per point, {} pair{} of runs, NPTL and each libflexsc variant alternately \
         (NPTL, flexsc-..., NPTL, ...); each run starts a fresh server (`taskset -c`; under \
         libflexsc `flexsc run --backend B --cores N --stats=FILE`), waits until it answers, \
         warms it up for {} s with the same load, then measures {} s. The server is stopped by \
         its PID (SIGTERM, SIGKILL after a grace period). libflexsc's settings not named in a \
         variant (`flexsc-BACKEND/OPTION=VALUE`) are the defaults (docs/usage.md). Numbers are medians over the pairs \
         with (min - max); ratios are taken within each pair, then their median (min - max). \
         Apache, MariaDB and memcached run with scripts/servers/*.in (Apache worker MPM `-X`, \
         256 worker threads; MariaDB a thread per connection, durability off, \
         native AIO through io_uring; memcached `-t 4`).",
        meta.pairs,
        if meta.pairs == 1 { "" } else { "s" },
        meta.timing.warmup,
        meta.timing.secs
    );
    let _ = writeln!(
        w,
        "- Per request: the server's CPU time from `/proc/PID/stat` (utime, stime) over the \
         measured load; libflexsc's counters from two statistics tables (SIGUSR2) taken just \
         before and just after it: entries = system calls posted exception-less, on carrier = \
         calls run synchronously on a carrier (thread-bound, or there by the hybrid rule), mean \
         batch = entries per submitted batch. System calls libflexsc does not wrap (they trap as \
         usual) are not counted."
    );
    if !meta.env.is_empty() {
        let _ = writeln!(w, "- libflexsc runs inherited: `{}`.", meta.env.join(" "));
    }
    let _ = writeln!(w);

    goals(w, results);
    for wl in ALL {
        let pts: Vec<&Measured> = results.iter().filter(|m| m.point.workload == wl).collect();
        if !pts.is_empty() {
            workload_section(w, wl, &pts, figures_rel, prefix);
        }
    }
    failures_and_samples(w, results);
    s
}

fn goals(w: &mut String, results: &[Measured]) {
    let _ = writeln!(w, "## Against the goals of issue 6\n");
    let _ = writeln!(
        w,
        "| goal | server CPUs | variant | measured: median of the per-pair ratios (min - max) | verdict |"
    );
    let _ = writeln!(w, "|---|---:|---|---|---|");
    for (wl, level, min_t, max_l) in GOALS {
        let mut cores: Vec<usize> = results
            .iter()
            .filter(|m| m.point.workload == wl)
            .map(|m| m.point.cores)
            .collect();
        cores.dedup();
        let goal = match (level, max_l) {
            (Some(l), Some(ml)) => format!(
                "{}: >= {min_t}x NPTL at {l} {}, mean latency <= {ml}x",
                wl.title(),
                wl.level_name()
            ),
            (Some(l), None) => format!(
                "{}: >= {min_t}x NPTL at {l} {}",
                wl.title(),
                wl.level_name()
            ),
            (None, _) => format!("{}: >= {min_t}x NPTL", wl.title()),
        };
        if cores.is_empty() {
            let _ = writeln!(w, "| {goal} | | | not measured in this run | |");
            continue;
        }
        for c in cores {
            let pts: Vec<&Measured> = results
                .iter()
                .filter(|m| {
                    m.point.workload == wl
                        && m.point.cores == c
                        && level.is_none_or(|l| m.point.level == l)
                })
                .collect();
            let variants: Vec<Variant> = results
                .iter()
                .find(|m| m.point.workload == wl)
                .map(|m| m.runs.iter().map(|r| r.0.clone()).collect())
                .unwrap_or_default();
            for v in variants.iter().filter(|v| **v != Variant::Native) {
                if pts.is_empty() {
                    let _ = writeln!(
                        w,
                        "| {goal} | {c} | {} | level not measured in this run | |",
                        v.name()
                    );
                    continue;
                }
                let mut parts = Vec::new();
                let mut met = 0;
                for m in &pts {
                    let (tv, lv) = m.ratios(v);
                    let (t, l) = (median(tv.clone()), median(lv.clone()));
                    let ok = t.is_some_and(|t| t.0 >= min_t)
                        && max_l.is_none_or(|ml| l.is_some_and(|l| l.0 <= ml));
                    met += usize::from(ok);
                    let mut part = format!(
                        "{} {}: {}",
                        m.point.level,
                        wl.level_name(),
                        spread(tv, ratio)
                    );
                    if max_l.is_some() {
                        let _ = write!(part, ", latency {}", spread(lv, ratio));
                    }
                    parts.push(part);
                }
                let verdict = match (met, pts.len()) {
                    (0, _) => "**missed**".to_string(),
                    (m, n) if m == n => "**met**".to_string(),
                    (m, n) => format!("met at {m} of {n} levels"),
                };
                let _ = writeln!(
                    w,
                    "| {goal} | {c} | {} | {} | {verdict} |",
                    v.name(),
                    parts.join("; ")
                );
            }
        }
    }
    let _ = writeln!(w);
}

fn workload_section(
    w: &mut String,
    wl: Workload,
    pts: &[&Measured],
    figures_rel: &Path,
    prefix: &str,
) {
    let _ = writeln!(w, "## {}\n", wl.title());
    let mut cores: Vec<usize> = pts.iter().map(|m| m.point.cores).collect();
    cores.dedup();
    let variants: Vec<Variant> = pts
        .first()
        .map(|m| m.runs.iter().map(|r| r.0.clone()).collect())
        .unwrap_or_default();
    for c in &cores {
        for f in figure_names(prefix, wl, *c, &variants) {
            let _ = writeln!(w, "![{f}]({})", figures_rel.join(&f).display());
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| CPUs | {} | variant | {} | vs NPTL | mean ms | p50 ms | p99 ms | mean latency vs NPTL | failed |",
        wl.level_name(),
        wl.unit()
    );
    let _ = writeln!(w, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in pts {
        for (v, runs) in &m.runs {
            let ok: Vec<&Sample> = oks(runs).collect();
            let col = |f: &dyn Fn(&Sample) -> Option<f64>, fmt: &dyn Fn(f64) -> String| {
                spread(ok.iter().filter_map(|s| f(s)).collect(), fmt)
            };
            let (tr, lr) = if *v == Variant::Native {
                ("1".to_string(), "1".to_string())
            } else {
                (
                    spread(m.pair_ratios(runs, |s| Some(s.load.throughput)), ratio),
                    spread(m.pair_ratios(runs, |s| s.load.mean_ms), ratio),
                )
            };
            let failed: u64 = ok.iter().map(|s| s.load.failed).sum();
            let errors = runs.len() - ok.len();
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {tr} | {} | {} | {} | {lr} | {failed}{} |",
                m.point.cores,
                m.point.level,
                v.name(),
                col(&|s| Some(s.load.throughput), &thousands),
                col(&|s| s.load.mean_ms, &ms),
                col(&|s| s.load.p50_ms, &ms),
                col(&|s| s.load.p99_ms, &ms),
                if errors > 0 {
                    format!(
                        " ({errors} run{} failed)",
                        if errors == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    let _ = writeln!(
        w,
        "\nWhere the time goes, per {} (medians over the pairs): the server's CPU use over the \
         load (1.00 = one CPU busy), the whole machine's (server, load generator and \
         whatever else ran: other builds share this machine), the server's user and system \
         CPU time per {}, and libflexsc's counters per {}.\n",
        wl.per(),
        wl.per(),
        wl.per()
    );
    let _ = writeln!(
        w,
        "| CPUs | {} | variant | server CPUs busy | machine CPUs busy | user us | sys us | sys share | entries | on carrier | mean batch | flexsc_waits |",
        wl.level_name()
    );
    let _ = writeln!(
        w,
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in pts {
        for (v, runs) in &m.runs {
            let ok: Vec<&Sample> = oks(runs).collect();
            let med = |f: &dyn Fn(&Sample) -> Option<f64>, fmt: &dyn Fn(f64) -> String| {
                median(ok.iter().filter_map(|s| f(s)).collect()).map_or("-".into(), |x| fmt(x.0))
            };
            let per =
                |x: f64, s: &Sample| (s.load.requests > 0).then(|| x / s.load.requests as f64);
            let per_counted = |x: f64, s: &Sample| (s.counted > 0).then(|| x / s.counted as f64);
            let f2 = |x: f64| format!("{x:.2}");
            let f1 = |x: f64| format!("{x:.1}");
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                m.point.cores,
                m.point.level,
                v.name(),
                med(&|s| Some((s.user_s + s.sys_s) / s.wall_s), &f2),
                med(&|s| s.machine_busy, &f2),
                med(&|s| per(s.user_s * 1e6, s), &f1),
                med(&|s| per(s.sys_s * 1e6, s), &f1),
                med(
                    &|s| {
                        let t = s.user_s + s.sys_s;
                        (t > 0.0).then(|| s.sys_s / t * 100.0)
                    },
                    &|x| format!("{x:.0}%")
                ),
                med(&|s| per_counted(s.counters?.posted as f64, s), &f2),
                med(&|s| per_counted(s.counters?.local as f64, s), &f2),
                med(&|s| s.counters?.mean_batch(), &f1),
                med(&|s| per_counted(s.counters?.waits as f64, s), &f2),
            );
        }
    }
    if pts
        .iter()
        .flat_map(|m| m.runs.iter().flat_map(|r| oks(&r.1)))
        .any(|s| s.lifetime && s.counters.is_some())
    {
        let _ = writeln!(
            w,
            "\nThe libflexsc counters here are those of the table the server wrote at exit \
             (it takes SIGUSR2 for itself): over its whole life, divided by every request it \
             served (readiness probe, warm-up and load)."
        );
    }
    let _ = writeln!(w);
}

fn failures_and_samples(w: &mut String, results: &[Measured]) {
    let failures: Vec<String> = results
        .iter()
        .flat_map(|m| {
            m.runs.iter().flat_map(move |(v, runs)| {
                runs.iter().enumerate().filter_map(move |(i, r)| {
                    let e = r.as_ref().err()?;
                    Some(format!(
                        "- {} at {} {}, {} CPU(s), {}, pair {}: {}",
                        m.point.workload.id(),
                        m.point.level,
                        m.point.workload.level_name(),
                        m.point.cores,
                        v.name(),
                        i + 1,
                        e.lines().next().unwrap_or("")
                    ))
                })
            })
        })
        .collect();
    let unclean: usize = results
        .iter()
        .flat_map(|m| m.runs.iter().flat_map(|r| oks(&r.1)))
        .filter(|s| s.stopped != super::process::Stopped::Clean)
        .count();
    let _ = writeln!(w, "## Runs that failed\n");
    if failures.is_empty() {
        let _ = writeln!(w, "None.");
    } else {
        let _ = writeln!(w, "{}", failures.join("\n"));
    }
    let _ = writeln!(
        w,
        "\nServers that did not exit cleanly (status 0) at SIGTERM after a measured run: \
         {unclean}.\n"
    );
    let _ = writeln!(w, "## Every sample\n");
    let _ = writeln!(
        w,
        "Throughput of each run in pair order (`x`: the run failed).\n"
    );
    let _ = writeln!(w, "| workload | CPUs | level | variant | samples |");
    let _ = writeln!(w, "|---|---:|---:|---|---|");
    for m in results {
        for (v, runs) in &m.runs {
            let samples: Vec<String> = runs
                .iter()
                .map(|r| {
                    r.as_ref()
                        .map_or("x".into(), |s| thousands(s.load.throughput))
                })
                .collect();
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                m.point.workload.id(),
                m.point.cores,
                m.point.level,
                v.name(),
                samples.join(", ")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_read_back_gives_the_same_table_and_figures() {
        let sample = |thr: f64, p99: Option<f64>| Sample {
            load: Load {
                throughput: thr,
                requests: (thr * 3.0) as u64,
                failed: 0,
                mean_ms: Some(1.5),
                p50_ms: Some(1.25),
                p99_ms: p99,
                ignored: 2,
            },
            user_s: 0.5,
            sys_s: 1.25,
            wall_s: 3.0,
            machine_busy: None,
            counters: None,
            counted: 7,
            lifetime: false,
            stopped: Stopped::Clean,
        };
        let results = vec![
            Measured {
                point: Point {
                    workload: Workload::Ab { keepalive: true },
                    cores: 2,
                    level: 256,
                },
                runs: vec![
                    (Variant::Native, vec![Ok(sample(100.0, Some(9.5)))]),
                    (
                        Variant::Flexsc("uring/pages=2".into()),
                        vec![Ok(sample(150.0, None)), Err("no numbers".into())],
                    ),
                ],
            },
            Measured {
                point: Point {
                    workload: Workload::Memcaslap,
                    cores: 1,
                    level: 64,
                },
                runs: vec![(Variant::Native, vec![Ok(sample(5e5, None))])],
            },
        ];
        let table = tsv(&results);
        let back = from_tsv(&table).expect("read back");
        assert_eq!(tsv(&back), table);
        assert_eq!(figures(&back, "eval"), figures(&results, "eval"));
        assert!(from_tsv("workload\tcpus\n").is_err(), "columns missing");
        let broken = table.replace("\t256\t", "\tmany\t");
        let e = from_tsv(&broken).err().expect("a bad level is refused");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn figure_names_start_with_the_report_name() {
        assert_eq!(figure_prefix(Path::new("docs/results-eval.md")), "eval");
        assert_eq!(
            figure_prefix(Path::new("docs/results-eval-variants.tsv")),
            "eval-variants"
        );
        assert_eq!(figure_prefix(Path::new("/tmp/run.md")), "run");
    }

    #[test]
    fn variants_grouped_by_pages() {
        let v = |s: &str| Variant::Flexsc(s.into());
        let variants = [
            Variant::Native,
            v("uring"),
            v("uring/pages=4"),
            v("threads/pages=2"),
            v("uring/pages=1"),
            v("uring/order=fifo/pages=2"),
            v("uring/pages=16/order=fifo"),
            v("uring/pages=4"),
        ];
        let g = pages_groups(&variants);
        let got: Vec<(&str, Vec<usize>)> = g
            .iter()
            .map(|(b, m)| (b.as_str(), m.iter().map(|p| p.0).collect()))
            .collect();
        // threads has one N only: no figure; the plain "uring" has no N.
        assert_eq!(
            got,
            [("uring", vec![1, 4]), ("uring/order=fifo", vec![2, 16])]
        );
        assert_eq!(g[1].1[1].1, v("uring/pages=16/order=fifo"));
        assert_eq!(pages_what("uring/order=fifo"), "pages-uring-order-fifo");
        assert_eq!(
            figure_names("eval", Workload::Wrk { keepalive: true }, 2, &variants)[2..],
            [
                "eval-apache-wrk-2cpu-pages-uring.svg",
                "eval-apache-wrk-2cpu-pages-uring-order-fifo.svg"
            ]
        );
    }
}
