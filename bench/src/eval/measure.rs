//! One measured run: a fresh server, a warm-up, the load with libflexsc's counters and the
//! server's CPU times taken around it, and the server stopped by its PID.

use std::fs;
use std::process::Command;
use std::time::Duration;

use super::process::{self, Stopped};
use super::server::{Servers, Variant, tails};
use super::stats::{self, Counters};
use super::workload::{Load, Workload};

/// One point of the evaluation: a workload at a load level with the server on `cores` CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// What runs.
    pub workload: Workload,
    /// The server's CPUs (and libflexsc's carriers).
    pub cores: usize,
    /// Concurrent requests, client threads or connections.
    pub level: usize,
}

/// Where the server and the load generator run.
#[derive(Clone, Debug)]
pub struct Pinning {
    /// The server's CPUs (`taskset -c`).
    pub server: Vec<usize>,
    /// The load generator's; empty: not pinned (it shares the server's CPUs).
    pub loadgen: Vec<usize>,
}

impl Pinning {
    /// The server on the first `cores` allowed CPUs, the load generator on the rest, or
    /// unpinned when none is left.
    pub fn for_cores(cores: usize, allowed: &[usize]) -> Result<Pinning, String> {
        if cores == 0 || cores > allowed.len() {
            return Err(format!(
                "--cores {cores}: this process may use {} CPUs",
                allowed.len()
            ));
        }
        Ok(Pinning {
            server: allowed[..cores].to_vec(),
            loadgen: allowed[cores..].to_vec(),
        })
    }

    /// How the report states it.
    pub fn describe(&self) -> String {
        let lg = if self.loadgen.is_empty() {
            "load generator not pinned (shares the server's CPUs)".to_string()
        } else {
            format!("load generator on CPU {}", process::cpulist(&self.loadgen))
        };
        format!("server on CPU {}, {lg}", process::cpulist(&self.server))
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The load generator's numbers.
    pub load: Load,
    /// The server's user CPU time over the load, s.
    pub user_s: f64,
    /// The server's system CPU time over the load, s.
    pub sys_s: f64,
    /// The load's wall time, s.
    pub wall_s: f64,
    /// CPUs the whole machine kept busy over the load (server, load generator and anything
    /// else running): how shared the machine was.
    pub machine_busy: Option<f64>,
    /// libflexsc's counters (`None` natively, or if the server wrote no table): over the load,
    /// or over the server's whole life where `lifetime`.
    pub counters: Option<Counters>,
    /// The requests `counters` cover.
    pub counted: u64,
    /// `counters` are the exit table's: the server took SIGUSR2 for itself.
    pub lifetime: bool,
    /// How the server ended at SIGTERM.
    pub stopped: Stopped,
}

/// Durations of one run.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// The measured load, s.
    pub secs: u64,
    /// The warm-up before it (caches, buffer pool, thread pools), s; 0: none.
    pub warmup: u64,
}

fn pinned(cmd: Command, cpus: &[usize]) -> Command {
    if cpus.is_empty() {
        return cmd;
    }
    let mut c = Command::new("taskset");
    c.args(["-c", &process::cpulist(cpus)])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    c
}

/// Measures `point` once with `variant`.
pub fn run_once(
    servers: &mut Servers,
    point: &Point,
    variant: &Variant,
    pin: &Pinning,
    timing: Timing,
    ticks: f64,
) -> Result<Sample, String> {
    let w = point.workload;
    let carriers = matches!(variant, Variant::Flexsc(_)).then_some(point.cores);
    let mut r = servers.start(w.kind(), variant, &pin.server, carriers)?;
    let dir = servers.dir().to_path_buf();
    // The generators' time limits: their own -t/--time plus room for the last requests
    // (ab's per-request timeout is 30 s).
    let limit = |secs: u64| Duration::from_secs(secs + 45);
    let mut warm_requests = 0;
    if timing.warmup > 0 {
        let scratch = dir.join("warmup");
        let mut cmd = pinned(
            w.command(point.level, timing.warmup, &scratch),
            &pin.loadgen,
        );
        let f = process::run_bounded(
            &mut cmd,
            limit(timing.warmup),
            &scratch.with_extension("out"),
        )
        .map_err(|e| e.to_string())?;
        warm_requests = w.parse(&f.output, &scratch).map_or(0, |l| l.requests);
    }
    let windowed = w.kind().reports_on_sigusr2();
    let before = r
        .stats
        .clone()
        .filter(|_| windowed)
        .and_then(|f| stats::snapshot(&mut r.server, &f));
    let pid = r.server.pid();
    let cpu0 = process::cpu_ticks(pid).ok_or("the server exited before the load")?;
    let machine0 = process::machine_ticks();
    let scratch = dir.join("load");
    let mut cmd = pinned(w.command(point.level, timing.secs, &scratch), &pin.loadgen);
    let done = process::run_bounded(&mut cmd, limit(timing.secs), &scratch.with_extension("out"))
        .map_err(|e| e.to_string())?;
    let machine1 = process::machine_ticks();
    let cpu1 = process::cpu_ticks(pid)
        .ok_or_else(|| format!("the server exited during the load{}", tails(&r.logs)))?;
    let after = r
        .stats
        .clone()
        .filter(|_| before.is_some())
        .and_then(|f| stats::snapshot(&mut r.server, &f));
    let stopped = r.server.stop();
    if !done.success() {
        return Err(format!("{}{}", done.why(), tails(&r.logs)));
    }
    let load = w
        .parse(&done.output, &scratch)
        .map_err(|e| format!("{e}{}", tails(&r.logs)))?;
    let (counters, counted, lifetime) = match (before, after) {
        _ if r.stats.is_none() => (None, 0, false),
        (Some(b), Some(a)) => (Some(a.since(&b)), load.requests, false),
        // No table on SIGUSR2: the one written at exit covers the readiness probe, the
        // warm-up and the load (and the shutdown).
        _ => (
            r.stats
                .as_ref()
                .and_then(|f| stats::last_table(&fs::read_to_string(f).ok()?, pid).0),
            warm_requests + load.requests + 1,
            true,
        ),
    };
    Ok(Sample {
        load,
        user_s: cpu1.0.saturating_sub(cpu0.0) as f64 / ticks,
        sys_s: cpu1.1.saturating_sub(cpu0.1) as f64 / ticks,
        wall_s: done.elapsed.as_secs_f64(),
        machine_busy: machine0
            .zip(machine1)
            .map(|(a, b)| b.0.saturating_sub(a.0) as f64 / ticks / done.elapsed.as_secs_f64()),
        counters,
        counted,
        lifetime,
        stopped,
    })
}
