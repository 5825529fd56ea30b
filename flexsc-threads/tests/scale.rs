//! Scale (issue 3): 100,000 green threads, each doing 10 blocking reads on pipes, all complete.
//!
//! Design: a ring of pipes. The green threads form groups of `G` consecutive threads; group `g`
//! reads 16-byte tokens from pipe `g` and forwards each into pipe `g + 1` (mod the number of
//! groups). First every green thread issues its read on an empty pipe; the test waits until all
//! 100,000 reads have been posted and submitted (the carriers' `posted` counters) while none has
//! returned, so 100,000 reads are blocked in the kernel at once. Only then does it inject the
//! tokens: `G` at every `SPACING`-th group, each travelling `HOPS = 10 * SPACING` hops, so every
//! group receives exactly `10 * G` tokens (every thread's 10 reads are served) and at any moment
//! at most one thread in `SPACING` has data waiting. Every byte of every token is checked: its
//! id, its hop count (which must equal the reading group's distance from the token's start) and a
//! check word derived from both; no (token, hop) may be read twice, every one must be read, and
//! every token must end its journey.
//!
//! `G` is 1 (a pipe per thread, 200,000 descriptors) when the test can raise RLIMIT_NOFILE that
//! far, which takes CAP_SYS_RESOURCE; without it (root in a container that dropped it) the test
//! keeps to the hard limit and shares each pipe among the fewest readers that fit (16 for the
//! usual 20,000): each read still takes exactly one token, since 16-byte writes are atomic.
//!
//! Backend: `uring`. io_uring holds a blocked pipe read as a poll request, with no thread behind
//! it. The `threads` backend cannot do this test: each call blocked in the kernel holds one
//! syscall thread until it returns, so 100,000 blocked reads would need 100,000 OS threads (its
//! cap, `max_syscall_threads`, defaults to 4096; `kernel.threads-max` is about 190,000 here and
//! each thread reserves a stack of its own). Sizing: a blocked read holds its syscall entry, and
//! stealing can put every green thread on one carrier, so each carrier gets 100,000 entries
//! (`100,000 / 64` pages); with fewer, reads wait in the carrier's overflow list, and the writes
//! that would complete them can wait behind them (the deadlock the architecture notes warn
//! about).
//!
//! Mappings: every stack costs mappings (`vm.max_map_count`). With guard regions (Linux 6.13+) a
//! stack costs at most one and neighbours share one, so the default limit is enough; with
//! `mprotect` guards (two each) the test raises the limit when root and otherwise fails, saying
//! what to run.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use flexsc_threads::Runtime;
use flexsc_threads::io::{PipeReader, PipeWriter, pipe};
use flexsc_threads::kmod::BackendKind;

/// Green threads in the ring.
const THREADS: usize = 100_000;
/// Blocking reads each green thread does.
const READS: usize = 10;
/// Groups between two tokens' starting points.
const SPACING: usize = 10;
/// Hops (reads) each token makes: starting `SPACING` groups apart, every group sees `READS` times
/// as many tokens as it has threads.
const HOPS: usize = READS * SPACING;
/// Bytes per token: id, hop count, check word.
const TOKEN_LEN: usize = 16;
/// Descriptors kept for everything but the pipes.
const FD_MARGIN: usize = 1024;
/// A hang guard for the whole test (not a speed assertion).
const HANG_GUARD: Duration = Duration::from_secs(300);

/// The ring's shape: `group` threads share each of `groups` pipes.
#[derive(Clone, Copy, Debug)]
struct Shape {
    group: usize,
    groups: usize,
    tokens: usize,
}

impl Shape {
    /// Groups of `group` threads; None unless they tile the ring.
    fn new(group: usize) -> Option<Self> {
        let groups = THREADS / group;
        let fits = THREADS % group == 0 && groups % SPACING == 0 && groups >= HOPS;
        fits.then_some(Self {
            group,
            groups,
            tokens: groups / SPACING * group,
        })
    }

    /// Descriptors the pipes need, with the margin.
    fn fds(&self) -> usize {
        2 * self.groups + FD_MARGIN
    }

    /// The group whose pipe `token` is injected into.
    fn start(&self, token: usize) -> usize {
        token / self.group * SPACING
    }
}

/// What the test thread can see of a run in progress (reported if it hangs), and the record of
/// every (token, hop) read.
struct Progress {
    phase: Mutex<&'static str>,
    started: AtomicUsize,
    reads: AtomicUsize,
    finished: AtomicUsize,
    absorbed: AtomicUsize,
    /// Bit `token * HOPS + hop`: that token was read at that hop.
    seen: Box<[AtomicU64]>,
    /// Reads done by each green thread (for the diagnosis of a hang).
    each: Box<[AtomicU8]>,
    failure: Mutex<Option<String>>,
}

impl Progress {
    fn new() -> Self {
        Self {
            phase: Mutex::new("starting"),
            started: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            absorbed: AtomicUsize::new(0),
            seen: (0..(THREADS * READS).div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            each: (0..THREADS).map(|_| AtomicU8::new(0)).collect(),
            failure: Mutex::new(None),
        }
    }

    fn enter(&self, phase: &'static str) {
        *self.phase.lock().unwrap() = phase;
    }

    fn fail(&self, msg: String) {
        self.failure.lock().unwrap().get_or_insert(msg);
    }

    fn snapshot(&self) -> String {
        format!(
            "phase {:?}: {} of {THREADS} green threads started, {} of {} reads done, {} \
             finished, {} tokens ended",
            *self.phase.lock().unwrap(),
            self.started.load(Ordering::Relaxed),
            self.reads.load(Ordering::Relaxed),
            THREADS * READS,
            self.finished.load(Ordering::Relaxed),
            self.absorbed.load(Ordering::Relaxed),
        )
    }
}

/// A mixing function (splitmix64's finalizer) for the tokens' check word.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn encode(token: usize, hop: usize) -> [u8; TOKEN_LEN] {
    let mut b = [0u8; TOKEN_LEN];
    b[..4].copy_from_slice(&(token as u32).to_le_bytes());
    b[4..8].copy_from_slice(&(hop as u32).to_le_bytes());
    b[8..].copy_from_slice(&mix(((token as u64) << 32) | hop as u64).to_le_bytes());
    b
}

/// The token's id and hop count, if all 16 bytes are consistent.
fn decode(b: &[u8; TOKEN_LEN], shape: &Shape) -> Option<(usize, usize)> {
    let token = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
    let hop = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    (token < shape.tokens && hop < HOPS && *b == encode(token, hop)).then_some((token, hop))
}

/// Green thread `i`: 10 blocking reads of a token from `input`, each checked and forwarded to
/// `output` unless it has made its last hop.
fn ring_member(
    i: usize,
    shape: &Shape,
    mut input: &PipeReader,
    mut output: &PipeWriter,
    p: &Progress,
) -> Result<(), String> {
    p.started.fetch_add(1, Ordering::Relaxed);
    let group = i / shape.group;
    for r in 0..READS {
        let mut buf = [0u8; TOKEN_LEN];
        input
            .read_exact(&mut buf)
            .map_err(|e| format!("green thread {i}, read {r}: {e}"))?;
        p.reads.fetch_add(1, Ordering::Relaxed);
        p.each[i].fetch_add(1, Ordering::Relaxed);
        let (token, hop) = decode(&buf, shape)
            .ok_or_else(|| format!("green thread {i}, read {r}: bad token {buf:?}"))?;
        // The token started at its group and has come this far.
        let distance = (group + shape.groups - shape.start(token)) % shape.groups;
        if hop != distance {
            return Err(format!(
                "green thread {i} (group {group}): token {token} arrived after {hop} hops, \
                 expected {distance}"
            ));
        }
        let bit = token * HOPS + hop;
        let mask = 1 << (bit % 64);
        if p.seen[bit / 64].fetch_or(mask, Ordering::Relaxed) & mask != 0 {
            return Err(format!("token {token} was read twice at hop {hop}"));
        }
        if hop + 1 < HOPS {
            output
                .write_all(&encode(token, hop + 1))
                .map_err(|e| format!("green thread {i}: forwarding token {token}: {e}"))?;
        } else {
            p.absorbed.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Sets RLIMIT_NOFILE to `lim`; false if the kernel refused.
fn set_fd_limit(lim: libc::rlimit) -> bool {
    // SAFETY: setrlimit reads one rlimit from a live local.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

/// The ring's shape for the descriptors we may have: a pipe per thread if RLIMIT_NOFILE can be
/// raised that far (raising it), else the smallest groups that fit under the hard limit (raising
/// the soft limit to it).
fn plan() -> Result<Shape, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    let one = Shape::new(1).expect("a pipe per thread tiles the ring");
    let need = one.fds() as libc::rlim_t;
    if lim.rlim_cur >= need
        || set_fd_limit(libc::rlimit {
            rlim_cur: need,
            rlim_max: lim.rlim_max.max(need),
        })
    {
        return Ok(one);
    }
    // No CAP_SYS_RESOURCE: the hard limit is the most we get.
    let hard = lim.rlim_max;
    let shape = (2..=THREADS)
        .filter_map(Shape::new)
        .find(|s| s.fds() as libc::rlim_t <= hard)
        .ok_or_else(|| format!("RLIMIT_NOFILE's hard limit {hard} is too small for this test"))?;
    if lim.rlim_cur < shape.fds() as libc::rlim_t
        && !set_fd_limit(libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        })
    {
        return Err(format!(
            "raising RLIMIT_NOFILE from {} to its hard limit {hard}: {}",
            lim.rlim_cur,
            std::io::Error::last_os_error()
        ));
    }
    eprintln!(
        "scale: RLIMIT_NOFILE cannot be raised past {hard} (no CAP_SYS_RESOURCE), so {} green \
         threads share each of {} pipes",
        shape.group, shape.groups
    );
    Ok(shape)
}

fn read_number(path: &str) -> Result<usize, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("{path}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{path}: {e}"))
}

/// Makes sure `stacks` green-thread stacks fit under `vm.max_map_count`.
fn ensure_map_count(stacks: usize) -> Result<(), String> {
    const PATH: &str = "/proc/sys/vm/max_map_count";
    let per = flexsc_threads::stack::mappings_per_stack();
    if per == 1 {
        // Guard regions: a stack never splits its mapping, and stacks mapped one after the
        // other merge; if they did not, spawn would fail naming vm.max_map_count.
        return Ok(());
    }
    // mprotect'ed guard pages: two mappings per stack, plus the rest of the process.
    let need = stacks * per + 20_000;
    let max = read_number(PATH)?;
    if max >= need {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "{stacks} green-thread stacks need {need} memory mappings on this kernel (no guard \
             regions, so {per} per stack) and vm.max_map_count is {max}: run as root (the test \
             raises it) or `sysctl vm.max_map_count={need}` first"
        ));
    }
    std::fs::write(PATH, need.to_string()).map_err(|e| {
        format!(
            "{stacks} green-thread stacks need {need} memory mappings on this kernel ({per} per \
             stack) and raising vm.max_map_count from {max} failed ({e}): run \
             `sysctl vm.max_map_count={need}` where that is allowed"
        )
    })?;
    eprintln!("scale: raised vm.max_map_count from {max} to {need}");
    Ok(())
}

/// Mappings the process has now (lines of /proc/self/maps).
fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Waits until `done()`; an `Err` if a green thread failed, or with `diagnose()`'s findings at
/// the hang guard's deadline.
fn wait_for(
    p: &Progress,
    deadline: Instant,
    mut done: impl FnMut() -> bool,
    diagnose: impl Fn() -> String,
) -> Result<(), String> {
    loop {
        if let Some(msg) = p.failure.lock().unwrap().clone() {
            return Err(msg);
        }
        if done() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out: {}\n{}", p.snapshot(), diagnose()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Bytes waiting in a pipe (FIONREAD), or None if the ioctl fails.
fn pipe_bytes(fd: i32) -> Option<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, a live local.
    (unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } == 0).then_some(n)
}

/// What a hang looks like from outside: the green threads that have not finished their reads,
/// what their pipes hold, the carriers' counters and each io_uring's fdinfo.
fn diagnosis(rt: &Runtime, shape: &Shape, p: &Progress, pipes: &[i32]) -> String {
    let mut out = String::new();
    let stuck: Vec<usize> = (0..THREADS)
        .filter(|&i| (p.each[i].load(Ordering::Relaxed) as usize) < READS)
        .collect();
    out += &format!("{} green threads short of {READS} reads", stuck.len());
    let mut groups: Vec<usize> = stuck.iter().map(|&i| i / shape.group).collect();
    groups.dedup();
    for &g in groups.iter().take(20) {
        let short: Vec<String> = stuck
            .iter()
            .filter(|&&i| i / shape.group == g)
            .map(|&i| format!("{i}:{}", p.each[i].load(Ordering::Relaxed)))
            .collect();
        out += &format!(
            "\n  group {g}: pipe holds {:?} bytes; thread:reads {}",
            pipe_bytes(pipes[g]),
            short.join(" ")
        );
    }
    let waiting = pipes
        .iter()
        .filter(|&&fd| pipe_bytes(fd).unwrap_or(0) > 0)
        .count();
    out += &format!(
        "\n  pipes holding data: {waiting}; live green threads {}",
        rt.live()
    );
    out += &format!("\n  carriers: {:?}", rt.stats());
    for entry in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let link = std::fs::read_link(entry.path()).unwrap_or_default();
        if link.to_string_lossy().contains("io_uring") {
            let name = entry.file_name();
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", name.to_string_lossy()))
                    .unwrap_or_default();
            let head: Vec<&str> = info.lines().take(40).collect();
            out += &format!(
                "\n  io_uring fd {}:\n    {}",
                name.to_string_lossy(),
                head.join("\n    ")
            );
        }
    }
    out
}

/// The whole run, on an OS thread of its own; returns a summary of timings and counts.
fn run(p: Arc<Progress>) -> Result<String, String> {
    let t0 = Instant::now();
    p.enter("limits");
    let shape = plan()?;
    ensure_map_count(THREADS)?;
    let rt = Runtime::builder()
        .cores(2)
        .backend(BackendKind::Uring)
        .pages(THREADS.div_ceil(64))
        .stack_size(64 * 1024)
        .build()
        .map_err(|e| format!("io_uring runtime: {e}"))?;
    match ring(&rt, shape, &p, t0) {
        Ok(summary) => {
            let stats = rt.shutdown();
            let posted: u64 = stats.iter().map(|s| s.posted).sum();
            // Each read and each forward went through the syscall pages (and most closes: not
            // counted, as whoever drops an end last closes it, this OS thread included).
            let floor = (2 * THREADS * READS - shape.tokens) as u64;
            if posted < floor {
                return Err(format!(
                    "only {posted} calls posted, expected at least {floor}"
                ));
            }
            Ok(format!("{summary}; {posted} calls posted"))
        }
        Err(e) => {
            // Report at once: stopping a runtime with parked green threads is not what failed.
            std::mem::forget(rt);
            Err(e)
        }
    }
}

/// Builds the ring on `rt`, runs the tokens round it, joins every green thread.
fn ring(rt: &Runtime, shape: Shape, p: &Arc<Progress>, t0: Instant) -> Result<String, String> {
    let deadline = t0 + HANG_GUARD;
    // Pipe g feeds group g. Made here, on an OS thread (a plain pipe2 each).
    p.enter("pipes");
    let mut readers = Vec::with_capacity(shape.groups);
    let mut writers = Vec::with_capacity(shape.groups);
    for _ in 0..shape.groups {
        let (r, w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        readers.push(Arc::new(r));
        writers.push(Arc::new(w));
    }
    let t_pipes = t0.elapsed();

    p.enter("spawn");
    let maps_before = mapping_count();
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let g = i / shape.group;
            let input = readers[g].clone();
            let output = writers[(g + 1) % shape.groups].clone();
            let p = p.clone();
            rt.spawn(move || {
                let r = ring_member(i, &shape, &input, &output, &p);
                if let Err(e) = &r {
                    p.fail(e.clone());
                }
                p.finished.fetch_add(1, Ordering::Relaxed);
                r
            })
        })
        .collect();
    // Kept open to the end, to look into the pipes if the ring hangs.
    let pipes: Vec<i32> = readers.iter().map(|r| r.as_raw_fd()).collect();
    let diagnose = || diagnosis(rt, &shape, p, &pipes);
    let t_spawn = t0.elapsed();

    // Every read posted (the carriers publish `posted` when they run dry; the pipes were made
    // on this thread, so the reads are the only calls posted) and none returned: 100,000 reads
    // are blocked in the kernel at once, before any data exists.
    p.enter("all reads blocked");
    let posted = || rt.stats().iter().map(|s| s.posted).sum::<u64>();
    wait_for(
        p,
        deadline,
        || p.started.load(Ordering::Relaxed) == THREADS && posted() >= THREADS as u64,
        diagnose,
    )?;
    let maps_after = mapping_count();
    let early = p.reads.load(Ordering::Relaxed);
    if early != 0 {
        return Err(format!(
            "{early} reads returned before any data was written"
        ));
    }
    let t_blocked = t0.elapsed();

    p.enter("tokens");
    for t in 0..shape.tokens {
        let mut w: &PipeWriter = &writers[shape.start(t)];
        w.write_all(&encode(t, 0))
            .map_err(|e| format!("injecting token {t}: {e}"))?;
    }
    // The green threads hold the write ends now (closed by the last of each group).
    drop(writers);
    wait_for(
        p,
        deadline,
        || p.finished.load(Ordering::Relaxed) == THREADS,
        diagnose,
    )?;
    let t_ring = t0.elapsed();

    // Each green thread still closes its pipe ends on the way out.
    p.enter("exit");
    wait_for(p, deadline, || rt.live() == 0, diagnose)?;

    p.enter("join");
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(r) => r?,
            Err(_) => return Err(format!("green thread {i} panicked")),
        }
    }
    let reads = p.reads.load(Ordering::Relaxed);
    if reads != THREADS * READS {
        return Err(format!("{reads} reads, expected {}", THREADS * READS));
    }
    let distinct: u32 = p
        .seen
        .iter()
        .map(|w| w.load(Ordering::Relaxed).count_ones())
        .sum();
    if distinct as usize != THREADS * READS {
        return Err(format!(
            "{distinct} distinct (token, hop) reads, expected {}",
            THREADS * READS
        ));
    }
    let ended = p.absorbed.load(Ordering::Relaxed);
    if ended != shape.tokens {
        return Err(format!(
            "{ended} tokens ended their journey, expected {}",
            shape.tokens
        ));
    }
    if rt.live() != 0 {
        return Err(format!("{} green threads still live", rt.live()));
    }
    drop(readers);
    Ok(format!(
        "{THREADS} green threads x {READS} blocking reads, {} per pipe ({} pipes, {} tokens x \
         {HOPS} hops): pipes {:.2?}, spawn {:.2?}, all {THREADS} reads blocked at {:.2?}, ring \
         done at {:.2?}, joined at {:.2?}; process mappings {maps_before} -> {maps_after} with \
         {THREADS} stacks (a stack costs {} at most)",
        shape.group,
        shape.groups,
        shape.tokens,
        t_pipes,
        t_spawn,
        t_blocked,
        t_ring,
        t0.elapsed(),
        flexsc_threads::stack::mappings_per_stack(),
    ))
}

#[test]
fn hundred_thousand_green_threads_each_do_ten_blocking_pipe_reads() {
    let progress = Arc::new(Progress::new());
    let p = progress.clone();
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let _ = tx.send(run(p));
    });
    // A little beyond the run's own deadline, which reports progress itself.
    match rx.recv_timeout(HANG_GUARD + Duration::from_secs(30)) {
        Ok(Ok(summary)) => {
            h.join().unwrap();
            eprintln!("scale: {summary}");
        }
        // The failing run is left to wind down (its runtime may hold parked green threads).
        Ok(Err(msg)) => panic!("{msg}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(h.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: {}", progress.snapshot()),
    }
}
