//! The TCP echo comparison: the same thread-per-connection echo server written three ways -
//! flexsc-threads (a green thread per connection, on the `threads` backend with syscall cores
//! and on `uring`, the latter also with the strict round-robin `Order::Fifo` instead of the
//! default `Order::Lifo`), `std` (an OS thread per connection) and tokio (a task per
//! connection) -
//! against one load generator: N connections, each sending a fixed-size message and waiting
//! for its echo, for a fixed time. Prints markdown for `docs/results.md`.
//!
//! Usage: `cargo run --release -p flexsc-bench --bin echo -- [--quick] [--repeats N]
//! [--conns 1000,10000] [--secs S] [--size BYTES]
//! [--servers flexsc-threads,flexsc-uring,flexsc-uring-fifo,std,tokio]
//! [--carriers N] [--client-threads N] [--svg FILE]`.
//!
//! Every server and the load generator run as child processes of this one (`echo server ...`,
//! `echo client ...`): the load generator pinned to the last allowed CPU, the server to the
//! others. Servers are measured alternately (A B C D, A B C D, ...). `--quick` (100
//! connections, 1 s, 1 round) is the harness's smoke test: like every mode it exits non-zero
//! if a request failed or a point produced no numbers. `--svg FILE` also draws msgs/s and p99
//! latency against the connections, one line per server, into FILE.

#[path = "../echo/client.rs"]
mod client;
#[path = "../echo/report.rs"]
mod report;
#[path = "../echo/server_flexsc.rs"]
mod server_flexsc;
#[path = "../echo/server_std.rs"]
mod server_std;
#[path = "../echo/server_tokio.rs"]
mod server_tokio;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flexsc_bench::opts::Opts;
use flexsc_threads::Order;
use flexsc_threads::kmod::BackendKind;

const SERVERS: [&str; 5] = [
    "flexsc-threads",
    "flexsc-uring",
    "flexsc-uring-fifo",
    "std",
    "tokio",
];
/// Stack per green thread and per `std` thread: the echo loop needs its 4 KiB buffer and little
/// else, and 10,000 connections of the default sizes would be 2.5 GB (flexsc) or 80 GB (std).
const STACK: usize = 64 * 1024;

/// Sends back everything read until the peer closes or an error: the body of every blocking
/// server here.
fn echo_until_closed(s: &mut (impl Read + Write)) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("server") => {
            let o = Opts::parse("echo", &args[2..], "");
            o.only(&["kind", "carriers", "cpus", "pages"]);
            server_main(&o)
        }
        Some("client") => {
            let o = Opts::parse("echo", &args[2..], "");
            o.only(&[
                "addr",
                "conns",
                "size",
                "secs",
                "threads",
                "cpus",
                "connect-timeout",
                "server-pid",
            ]);
            client_main(&o)
        }
        _ => run_main(&args),
    };
    std::process::exit(code);
}

/// The option this binary adds to the shared ones.
trait EchoOpts {
    fn cpus(&self, key: &str) -> Vec<usize>;
}

impl EchoOpts for Opts {
    fn cpus(&self, key: &str) -> Vec<usize> {
        let v = self.list(key).unwrap_or_default();
        v.iter()
            .map(|c| c.parse())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|_| die(&format!("bad --{key}")))
    }
}

fn die(msg: &str) -> ! {
    flexsc_bench::opts::die("echo", msg)
}

// ---- the orchestrator ----

struct Plan {
    conns: Vec<usize>,
    repeats: usize,
    secs: f64,
    size: usize,
    servers: Vec<&'static str>,
    carriers: usize,
    client_threads: usize,
    client_cpus: Vec<usize>,
    server_cpus: Vec<usize>,
}

fn run_main(args: &[String]) -> i32 {
    let rest = match args.get(1).map(String::as_str) {
        Some("run") => &args[2..],
        _ => &args[1..],
    };
    let o = Opts::parse("echo", rest, "");
    o.help(include_str!("echo.rs"));
    o.only(&[
        "quick",
        "repeats",
        "conns",
        "secs",
        "size",
        "servers",
        "carriers",
        "client-threads",
        "svg",
        "help",
        "h",
    ]);
    let quick = o.flag("quick");
    let allowed = allowed_cpus();
    let (client_cpus, server_cpus) = match allowed.split_last() {
        Some((last, rest)) if !rest.is_empty() => (vec![*last], rest.to_vec()),
        _ => (Vec::new(), Vec::new()),
    };
    let servers = o.list("servers").map_or(SERVERS.to_vec(), |l| {
        l.iter()
            .map(|s| {
                *SERVERS
                    .iter()
                    .find(|k| *k == s)
                    .unwrap_or_else(|| die(&format!("unknown server {s:?}")))
            })
            .collect()
    });
    let conns = o
        .list("conns")
        .map_or(if quick { vec![100] } else { vec![1000, 10_000] }, |l| {
            l.iter()
                .map(|c| c.parse().unwrap_or_else(|_| die("bad --conns")))
                .collect()
        });
    let plan = Plan {
        repeats: o.get("repeats").unwrap_or(if quick { 1 } else { 3 }).max(1),
        secs: o.get("secs").unwrap_or(if quick { 1.0 } else { 5.0 }),
        size: o.get("size").unwrap_or(64).max(1),
        carriers: o.get("carriers").unwrap_or(server_cpus.len().max(1)),
        client_threads: o.get("client-threads").unwrap_or(client_cpus.len().max(1)),
        conns,
        servers,
        client_cpus,
        server_cpus,
    };
    let (old, new) = raise_nofile();
    let need = plan.conns.iter().max().copied().unwrap_or(0) + 256;
    if new < need as u64 {
        die(&format!(
            "RLIMIT_NOFILE hard limit {new} is below the {need} descriptors needed"
        ));
    }
    // The orchestrator mostly sleeps; keep it off the server's CPUs anyway.
    pin(&plan.client_cpus);

    let mut points: Vec<report::Point> = Vec::new();
    for &n in &plan.conns {
        for s in &plan.servers {
            points.push(report::Point {
                conns: n,
                server: s,
                rounds: Vec::new(),
                failed: 0,
            });
        }
        for round in 0..plan.repeats {
            for p in points.iter_mut().filter(|p| p.conns == n) {
                eprint!(
                    "echo: {} connections, round {}, {} ... ",
                    n,
                    round + 1,
                    p.server
                );
                let (sample, failed) = run_point(&plan, p.server, n);
                match &sample {
                    Some(s) => eprintln!(
                        "{:.0} msgs/s, p99 {:.1} us, server {:.2} us CPU/msg ({:.0}% busy), \
                         client {:.0}% busy, {failed} failed",
                        s.msgs_per_s,
                        s.p99_ns as f64 / 1e3,
                        s.server_cpu_ns_per_msg / 1e3,
                        s.server_busy * 100.0,
                        s.client_busy * 100.0
                    ),
                    None => eprintln!("no numbers, {failed} failed"),
                }
                p.rounds.push(sample);
                p.failed += failed;
            }
        }
    }

    let pinning = if plan.client_cpus.is_empty() {
        format!(
            "not pinned ({} CPU allowed: the load generator shares it with the server)",
            allowed.len()
        )
    } else {
        format!(
            "load generator pinned to CPU {} ({} client thread(s), epoll), servers pinned to CPU(s) {}",
            cpu_list(&plan.client_cpus),
            plan.client_threads,
            cpu_list(&plan.server_cpus)
        )
    };
    println!("### TCP echo: flexsc-threads vs std threads vs tokio\n");
    println!("Command: `{}`\n", args.join(" "));
    println!(
        "- {} CPU(s) allowed, Linux {}; {pinning}.",
        allowed.len(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "- Carriers = tokio worker_threads = {}; threads backend syscall cores: {}; syscall pages \
         per carrier: one entry per connection (`{}` pages for {} connections); {} KiB stacks \
         (green and std threads).",
        plan.carriers,
        cpu_list(&plan.server_cpus),
        pages_for(plan.conns.iter().max().copied().unwrap_or(0)),
        plan.conns.iter().max().copied().unwrap_or(0),
        STACK / 1024
    );
    println!(
        "- RLIMIT_NOFILE: soft limit set to the hard limit with setrlimit first ({old} -> {new}; \
         inherited by the server and client processes)."
    );
    println!(
        "- {} B request/response per connection, {} s per point, servers alternated per round, \
         {} round(s); cells are the median (min - max) over rounds.\n",
        plan.size, plan.secs, plan.repeats
    );
    print!("{}", report::markdown(&points));
    if let Some(path) = o.get::<String>("svg") {
        if let Err(e) = std::fs::write(&path, report::svg(&points)) {
            die(&format!("{path}: {e}"));
        }
        eprintln!("echo: figure in {path}");
    }
    let bad = points
        .iter()
        .any(|p| p.failed > 0 || p.rounds.iter().any(Option::is_none));
    if bad {
        eprintln!("echo: FAILED: some requests failed or some point produced no numbers");
        return 1;
    }
    0
}

/// Starts `kind`'s server process, runs the client process against it, stops the server.
/// Returns the sample (None: no numbers) and the failed requests.
fn run_point(plan: &Plan, kind: &str, conns: usize) -> (Option<report::Sample>, u64) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut server = match Command::new(&exe)
        .args(["server", "--kind", kind])
        .args(["--carriers", &plan.carriers.to_string()])
        .args(["--cpus", &cpu_list(&plan.server_cpus)])
        .args(["--pages", &pages_for(conns).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprint!("(spawn server: {e}) ");
            return (None, 0);
        }
    };
    let addr = {
        let mut line = String::new();
        let out = server.stdout.as_mut().expect("piped");
        let _ = BufReader::new(out).read_line(&mut line);
        line.trim().strip_prefix("LISTENING ").map(str::to_string)
    };
    let Some(addr) = addr else {
        eprint!("(the server did not start) ");
        stop(server, Duration::ZERO);
        return (None, 0);
    };
    let connect_timeout = if conns <= 1000 { 15 } else { 60 };
    let client = Command::new(&exe)
        .args(["client", "--addr", &addr])
        .args(["--conns", &conns.to_string()])
        .args(["--size", &plan.size.to_string()])
        .args(["--secs", &plan.secs.to_string()])
        .args(["--threads", &plan.client_threads.to_string()])
        .args(["--cpus", &cpu_list(&plan.client_cpus)])
        .args(["--connect-timeout", &connect_timeout.to_string()])
        .args(["--server-pid", &server.id().to_string()])
        .stdout(Stdio::piped())
        .spawn();
    let result = match client {
        Ok(mut c) => {
            let limit = Duration::from_secs_f64(plan.secs) + Duration::from_secs(connect_timeout);
            let mut out = String::new();
            if let Some(mut o) = c.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            stop(c, limit);
            parse_result(&out)
        }
        Err(e) => {
            eprint!("(spawn client: {e}) ");
            None
        }
    };
    stop(server, Duration::from_secs(5));
    match result {
        Some([msgs, failed, p50, p99, p999, scpu, ccpu]) if msgs > 0 => (
            Some(report::Sample {
                msgs_per_s: msgs as f64 / plan.secs,
                p50_ns: p50,
                p99_ns: p99,
                p999_ns: p999,
                server_cpu_ns_per_msg: scpu as f64 / msgs as f64,
                server_busy: scpu as f64 / (plan.secs * 1e9),
                client_busy: ccpu as f64 / (plan.secs * 1e9),
            }),
            failed,
        ),
        Some([_, failed, ..]) => (None, failed),
        None => (None, conns as u64),
    }
}

/// Syscall pages per carrier for `conns` connections: an entry per connection (each green
/// thread blocked in `read` holds one) plus a page for the acceptor and slack. The default, 8
/// pages (512 entries), deadlocks past ~500 idle connections.
fn pages_for(conns: usize) -> usize {
    conns.div_ceil(64) + 1
}

/// Closes the child's stdin (a server exits on EOF), waits up to `grace`, then kills it.
fn stop(mut child: Child, grace: Duration) {
    drop(child.stdin.take());
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `RESULT msgs=.. failed=.. p50=.. p99=.. p999=.. scpu=.. ccpu=..` from the client's stdout.
fn parse_result(out: &str) -> Option<[u64; 7]> {
    let line = out.lines().find_map(|l| l.strip_prefix("RESULT "))?;
    let field = |k: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some([
        field("msgs")?,
        field("failed")?,
        field("p50")?,
        field("p99")?,
        field("p999")?,
        field("scpu")?,
        field("ccpu")?,
    ])
}

// ---- the children ----

fn server_main(o: &Opts) -> i32 {
    let cpus = o.cpus("cpus");
    pin(&cpus);
    raise_nofile();
    let carriers = o.get("carriers").unwrap_or(1);
    let pages = o.get("pages").unwrap_or(8);
    // Exit when the orchestrator closes our stdin (or dies).
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    let ready = |a: SocketAddr| {
        println!("LISTENING {a}");
        let _ = io::stdout().flush();
    };
    let kind: String = o.get("kind").unwrap_or_default();
    let r = match kind.as_str() {
        "flexsc-threads" => server_flexsc::serve(
            BackendKind::Threads,
            Order::DEFAULT,
            carriers,
            cpus,
            pages,
            STACK,
            ready,
        ),
        "flexsc-uring" => server_flexsc::serve(
            BackendKind::Uring,
            Order::DEFAULT,
            carriers,
            cpus,
            pages,
            STACK,
            ready,
        ),
        "flexsc-uring-fifo" => server_flexsc::serve(
            BackendKind::Uring,
            Order::Fifo,
            carriers,
            cpus,
            pages,
            STACK,
            ready,
        ),
        "std" => server_std::serve(STACK, ready),
        "tokio" => server_tokio::serve(carriers, ready),
        k => die(&format!("unknown server {k:?}")),
    };
    if let Err(e) = r {
        eprintln!("echo server ({kind}): {e}");
    }
    1
}

fn client_main(o: &Opts) -> i32 {
    pin(&o.cpus("cpus"));
    raise_nofile();
    let addr: SocketAddr = o.get("addr").unwrap_or_else(|| die("client needs --addr"));
    let SocketAddr::V4(addr) = addr else {
        die("client needs an IPv4 --addr");
    };
    let load = client::Load {
        addr,
        conns: o.get("conns").unwrap_or(100),
        size: o.get("size").unwrap_or(64),
        secs: o.get("secs").unwrap_or(1.0),
        threads: o.get("threads").unwrap_or(1usize).max(1),
        connect_timeout: Duration::from_secs(o.get("connect-timeout").unwrap_or(30)),
        server_pid: o.get("server-pid"),
    };
    let out = client::run(&load);
    let q = |x| out.hist.quantile(x).unwrap_or(0);
    println!(
        "RESULT msgs={} failed={} p50={} p99={} p999={} scpu={} ccpu={}",
        out.msgs,
        out.errors,
        q(0.50),
        q(0.99),
        q(0.999),
        out.server_cpu_ns.unwrap_or(0),
        out.client_cpu_ns
    );
    0
}

// ---- CPUs and descriptors ----

fn cpu_list(cpus: &[usize]) -> String {
    let v: Vec<String> = cpus.iter().map(usize::to_string).collect();
    v.join(",")
}

/// The CPUs this process may run on (sched_getaffinity).
fn allowed_cpus() -> Vec<usize> {
    let mut mask = [0u64; 16];
    // SAFETY: the kernel writes at most `size_of_val(&mask)` bytes into `mask`, a live local.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getaffinity,
            0,
            size_of_val(&mask),
            mask.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Vec::new();
    }
    (0..mask.len() * 64)
        .filter(|&c| mask[c / 64] & (1 << (c % 64)) != 0)
        .collect()
}

/// Restricts the calling thread - and so every thread it starts later - to `cpus` (no-op when
/// empty). Call before starting threads.
fn pin(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    let mut mask = [0u64; 16];
    for &c in cpus.iter().filter(|&&c| c < 1024) {
        mask[c / 64] |= 1 << (c % 64);
    }
    // SAFETY: the kernel reads `size_of_val(&mask)` bytes of `mask`, a live local.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            0,
            size_of_val(&mask),
            mask.as_ptr(),
        )
    };
    if r < 0 {
        eprintln!(
            "echo: pinning to CPU(s) {}: {}",
            cpu_list(cpus),
            io::Error::last_os_error()
        );
    }
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns (old soft, new soft).
fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `lim`, a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return (0, 0);
    }
    let old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads one `rlimit` from `lim`, a live local.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return (old, old);
    }
    (old, lim.rlim_cur)
}
