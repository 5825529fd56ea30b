//! Memory per parked green thread (issue 3: at most 16 KiB of RSS each, with 100,000 parked at
//! once).
//!
//! Starts a runtime, spawns N green threads that each park, and measures the process's memory
//! before spawning and once all N are parked, from `/proc/self/status` (VmRSS, RssAnon, VmPTE),
//! `/proc/self/smaps` (the resident pages of green-thread stacks, told apart from the heap by
//! their `nh` flag: stacks are mapped with MAP_STACK and MADV_NOHUGEPAGE) and glibc's
//! `mallinfo2` (heap bytes in use). Then it releases them all and joins them. Prints a markdown
//! table; exits non-zero if a green thread did not come back.
//!
//! Usage: `cargo run --release -p flexsc-bench --bin parked -- [--quick] [--threads N]
//! [--wait condvar|park] [--stack-size BYTES] [--cores N] [--no-tls]`.
//!
//! - `--wait condvar` (default): each green thread waits on one shared
//!   `flexsc_threads::sync::{Mutex, Condvar}` until released (`notify_all`), as a server's idle
//!   worker would; `--wait park`: each parks with `flexsc_threads::park()` and leaves its
//!   `Unparker` in a shared list, the least a parked green thread can cost.
//! - `--quick`: 10,000 green threads (the harness's smoke test); default 100,000.
//! - `--stack-size`: usable stack bytes per green thread (default: the runtime's, 256 KiB); only
//!   touched pages cost memory.
//! - `--no-tls`: green threads without a TLS block of their own (`Builder::tls(false)`), to see
//!   what the block costs.
//!
//! Memory is measured, never estimated: "per thread" is the growth between the two
//! measurements divided by N, so it includes whatever the runtime allocates per green thread.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use flexsc_threads::sync::{Condvar, Mutex};
use flexsc_threads::{Runtime, Unparker, park};

/// The budget the issue sets per parked green thread.
const BUDGET: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Condvar,
    Park,
}

struct Opts {
    threads: usize,
    wait: Wait,
    stack_size: Option<usize>,
    cores: Option<usize>,
    tls: bool,
}

impl Opts {
    fn parse() -> Result<Self, String> {
        let mut o = Opts {
            threads: 100_000,
            wait: Wait::Condvar,
            stack_size: None,
            cores: None,
            tls: true,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            let number = |name: &str, v: String| {
                v.parse::<usize>().map_err(|e| format!("{name} {v:?}: {e}"))
            };
            match a.as_str() {
                "--quick" => o.threads = 10_000,
                "--no-tls" => o.tls = false,
                "--threads" => o.threads = number("--threads", value("--threads")?)?,
                "--stack-size" => {
                    o.stack_size = Some(number("--stack-size", value("--stack-size")?)?)
                }
                "--cores" => o.cores = Some(number("--cores", value("--cores")?)?),
                "--wait" => {
                    o.wait = match value("--wait")?.as_str() {
                        "condvar" => Wait::Condvar,
                        "park" => Wait::Park,
                        v => return Err(format!("--wait {v:?}: condvar or park")),
                    }
                }
                _ => return Err(format!("unknown argument {a:?}")),
            }
        }
        if o.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        Ok(o)
    }
}

/// One look at the process's memory, in bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    rss: usize,
    rss_anon: usize,
    pte: usize,
    /// Resident bytes of anonymous `nh` mappings (green-thread stacks; also OS threads' stacks).
    stacks: usize,
    /// Resident bytes of the other anonymous mappings and [heap] (malloc's arenas).
    heap: usize,
    /// Bytes malloc has handed out and not had back (glibc `mallinfo2`).
    malloc_in_use: usize,
    /// Mappings (VMAs).
    mappings: usize,
}

impl Memory {
    fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        let mut m = Memory {
            rss: field("VmRSS:"),
            rss_anon: field("RssAnon:"),
            pte: field("VmPTE:"),
            ..Memory::default()
        };
        // SAFETY: mallinfo2 only reads malloc's own counters.
        let mi = unsafe { libc::mallinfo2() };
        m.malloc_in_use = mi.uordblks + mi.hblkhd;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        // Per mapping: its name (empty: anonymous), resident bytes, and whether it is `nh`.
        let (mut name, mut rss) = (String::new(), 0usize);
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                // A mapping's header: "start-end perms offset dev inode [name]".
                m.mappings += 1;
                name = words.nth(4).unwrap_or("").to_owned();
                rss = 0;
            } else if first == "Rss:" {
                rss = words.next().and_then(|v| v.parse().ok()).unwrap_or(0) * 1024;
            } else if first == "VmFlags:" {
                // The last line of each mapping's block.
                let nh = line.split_whitespace().any(|f| f == "nh");
                if name.is_empty() && nh {
                    m.stacks += rss;
                } else if name.is_empty() || name == "[heap]" {
                    m.heap += rss;
                }
            }
        }
        m
    }
}

/// Makes sure `stacks` green-thread stacks fit under `vm.max_map_count` (raising it as root, as
/// the runtime's own error would advise).
fn check_map_count(stacks: usize) -> Result<(), String> {
    const PATH: &str = "/proc/sys/vm/max_map_count";
    let per = flexsc_threads::stack::mappings_per_stack();
    if per == 1 {
        return Ok(()); // guard regions: stacks do not split their mappings
    }
    let need = stacks * per + 20_000;
    let max: usize = std::fs::read_to_string(PATH)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if max >= need {
        return Ok(());
    }
    std::fs::write(PATH, need.to_string()).map_err(|e| {
        format!(
            "{stacks} stacks need {need} mappings ({per} each on this kernel) and \
             vm.max_map_count is {max}; raising it failed ({e}): run as root or \
             `sysctl vm.max_map_count={need}`"
        )
    })?;
    eprintln!("parked: raised vm.max_map_count from {max} to {need}");
    Ok(())
}

/// What the green threads share.
#[derive(Default)]
struct Shared {
    /// Green threads that have reached their wait.
    arrived: AtomicUsize,
    /// Set once to let them all go.
    released: AtomicBool,
    /// `--wait condvar`: the flag under the mutex, and the condvar they wait on.
    gate: Mutex<bool>,
    cv: Condvar,
    /// `--wait park`: whom to unpark.
    parked: StdMutex<Vec<Unparker>>,
}

/// A green thread's whole life: arrive, wait until released, return.
fn wait_for_release(s: &Shared, wait: Wait) {
    match wait {
        Wait::Condvar => {
            let mut open = s.gate.lock();
            s.arrived.fetch_add(1, Ordering::Release);
            while !*open {
                open = s.cv.wait(open);
            }
        }
        Wait::Park => {
            s.parked.lock().unwrap().push(Unparker::current());
            s.arrived.fetch_add(1, Ordering::Release);
            while !s.released.load(Ordering::Acquire) {
                park();
            }
        }
    }
}

fn kib(bytes: f64) -> String {
    let k = bytes / 1024.0;
    // No "-0.00" for a difference that is zero but for rounding.
    format!("{:.2}", if k.abs() < 0.005 { 0.0 } else { k })
}

fn main() -> ExitCode {
    let o = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("parked: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = check_map_count(o.threads) {
        eprintln!("parked: {e}");
        return ExitCode::FAILURE;
    }
    let mut b = Runtime::builder().tls(o.tls);
    if let Some(n) = o.cores {
        b = b.cores(n);
    }
    if let Some(n) = o.stack_size {
        b = b.stack_size(n);
    }
    let rt = match b.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parked: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shared = Arc::new(Shared::default());
    let mut handles = Vec::with_capacity(o.threads);
    // Warm up: the runtime's first green thread, the carriers' first switches, the handle vector.
    rt.block_on(|| ());
    std::thread::sleep(Duration::from_millis(50));
    let before = Memory::now();

    let t0 = Instant::now();
    for _ in 0..o.threads {
        let s = shared.clone();
        let wait = o.wait;
        handles.push(rt.spawn(move || wait_for_release(&s, wait)));
    }
    let spawned = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    while shared.arrived.load(Ordering::Acquire) < o.threads {
        if Instant::now() > deadline {
            eprintln!(
                "parked: only {} of {} green threads reached their wait in 300 s",
                shared.arrived.load(Ordering::Acquire),
                o.threads
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The last arrivals are between their count and their park for a few microseconds.
    std::thread::sleep(Duration::from_millis(100));
    let all_parked = t0.elapsed();
    let after = Memory::now();
    let live = rt.live();

    let t1 = Instant::now();
    match o.wait {
        Wait::Condvar => {
            *shared.gate.lock() = true;
            shared.cv.notify_all();
        }
        Wait::Park => {
            shared.released.store(true, Ordering::Release);
            for u in shared.parked.lock().unwrap().drain(..) {
                u.unpark();
            }
        }
    }
    let mut failed = 0usize;
    for h in handles {
        if h.join().is_err() {
            failed += 1;
        }
    }
    let released = t1.elapsed();

    let n = o.threads as f64;
    let per = |a: usize, b: usize| (a as f64 - b as f64) / n;
    let rows: [(&str, f64, &str); 7] = [
        (
            "VmRSS",
            per(after.rss, before.rss),
            "the budget's measure: resident memory",
        ),
        (
            "  of which green-thread stacks",
            per(after.stacks, before.stacks),
            "resident pages of `nh` anonymous mappings",
        ),
        (
            "  of which heap",
            per(after.heap, before.heap),
            "resident pages of malloc's arenas",
        ),
        (
            "  of which other",
            per(after.rss, before.rss)
                - per(after.stacks, before.stacks)
                - per(after.heap, before.heap),
            "file-backed and anything else",
        ),
        (
            "heap bytes in use (mallinfo2)",
            per(after.malloc_in_use, before.malloc_in_use),
            "Task, JoinState, TLS block, waiters, ...",
        ),
        (
            "VmPTE (not in VmRSS)",
            per(after.pte, before.pte),
            "page tables for the stacks and heap",
        ),
        (
            "RssAnon",
            per(after.rss_anon, before.rss_anon),
            "anonymous part of VmRSS",
        ),
    ];
    let wait = match o.wait {
        Wait::Condvar => "condvar",
        Wait::Park => "park",
    };
    println!(
        "## parked green threads: {} waiting on {wait}, stack {} KiB usable, TLS block {}, {} \
         carriers\n",
        o.threads,
        o.stack_size
            .map_or("default (256)".to_owned(), |s| (s / 1024).to_string()),
        if o.tls { "on" } else { "off" },
        rt.stats().len(),
    );
    println!("| per parked green thread | KiB | what |");
    println!("|---|---:|---|");
    for (what, bytes, note) in rows {
        println!("| {what} | {} | {note} |", kib(bytes));
    }
    println!();
    let total = |m: &Memory| format!("{} MiB", m.rss / (1024 * 1024));
    println!(
        "process: VmRSS {} before, {} with all parked; mappings {} -> {}; live green threads \
         while parked {live}; spawn {:.2?}, all parked at {:.2?}, release + join {:.2?}",
        total(&before),
        total(&after),
        before.mappings,
        after.mappings,
        spawned,
        all_parked,
        released,
    );
    let rss_per = per(after.rss, before.rss);
    let verdict = if rss_per <= BUDGET as f64 {
        "within"
    } else {
        "over"
    };
    println!(
        "verdict: {} KiB of VmRSS per parked green thread, {verdict} the {} KiB budget",
        kib(rss_per),
        BUDGET / 1024
    );
    rt.shutdown();
    if failed > 0 || live < o.threads {
        eprintln!(
            "parked: {failed} green threads panicked; {live} of {} were live",
            o.threads
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
