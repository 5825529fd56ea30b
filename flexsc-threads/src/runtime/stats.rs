//! Per-carrier statistics: what each carrier did (switches, steals, entries posted, batches and
//! their sizes, flexsc_waits), and the system calls its green threads made, by number. Readable
//! while the runtime runs ([`crate::Runtime::stats`], [`crate::Runtime::syscall_stats`]) and
//! printed as a table when asked (`Builder::stats_at_exit`, `FLEXSC_STATS=1`): when the runtime
//! shuts down, when the process exits with it still running (an `atexit` handler: servers rarely
//! shut their runtime down), and each time the process receives `SIGUSR2` (see
//! [`print_on_sigusr2`]).
//!
//! Each carrier counts into its own copy and publishes it whenever it looks at completions (at
//! least every [`super::carrier`] fairness round) and before it sleeps, so a reader sees numbers at
//! most one round old and the switch path pays no atomic operation. The counts by syscall number
//! ([`CarrierSyscalls`]) are live instead: one counter per number and carrier, written by that
//! carrier alone with a plain load and store (no locked instruction), read by anyone.

use std::ffi::c_int;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};

use super::syscall_names::NAMES;

/// Batch size histogram buckets: 1, 2-3, 4-7, ..., 128-255, 256 and more.
pub const BATCH_BUCKETS: usize = 9;

/// One carrier's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CarrierStats {
    /// Green thread resumes.
    pub switches: u64,
    /// Green threads taken from another carrier's queue.
    pub steals: u64,
    /// System calls posted as entries.
    pub posted: u64,
    /// Batches submitted (non-empty).
    pub batches: u64,
    /// Entries submitted in those batches.
    pub batched: u64,
    /// The largest batch.
    pub batch_max: u64,
    /// Batches by size: `batch_hist[i]` counts sizes in `2^i .. 2^(i+1)` (the last: 256 and up).
    pub batch_hist: [u64; BATCH_BUCKETS],
    /// flexsc_wait calls that slept or spun.
    pub waits: u64,
    /// Calls run synchronously on the carrier: thread-bound ones, and those the program runs
    /// there ([`syscall_on_carrier`](crate::syscall_on_carrier): the preload's hybrid rule).
    pub local_calls: u64,
    /// Green threads preempted (made to yield after running a whole slice).
    pub preempted: u64,
    /// Green threads spawned by green threads of this carrier.
    pub spawned: u64,
    /// Green threads that finished on this carrier.
    pub finished: u64,
}

impl CarrierStats {
    /// Records a submitted batch of `n` entries.
    pub(crate) fn record_batch(&mut self, n: usize) {
        let n = n as u64;
        self.batches += 1;
        self.batched += n;
        self.batch_max = self.batch_max.max(n);
        let bucket = (63 - n.max(1).leading_zeros()) as usize;
        self.batch_hist[bucket.min(BATCH_BUCKETS - 1)] += 1;
    }

    /// Mean entries per batch (0 with no batch).
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.batched as f64 / self.batches as f64
        }
    }

    /// The sum of several carriers' counters (the largest batch is the largest of all).
    pub fn total(all: &[CarrierStats]) -> CarrierStats {
        let mut t = CarrierStats::default();
        for s in all {
            t.switches += s.switches;
            t.steals += s.steals;
            t.posted += s.posted;
            t.batches += s.batches;
            t.batched += s.batched;
            t.batch_max = t.batch_max.max(s.batch_max);
            for (a, b) in t.batch_hist.iter_mut().zip(&s.batch_hist) {
                *a += b;
            }
            t.waits += s.waits;
            t.local_calls += s.local_calls;
            t.preempted += s.preempted;
            t.spawned += s.spawned;
            t.finished += s.finished;
        }
        t
    }
}

/// A table of per-carrier counters and their total, for printing.
#[derive(Debug)]
pub struct StatsTable<'a>(pub &'a [CarrierStats]);

impl fmt::Display for StatsTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>7} {:>12} {:>8} {:>12} {:>10} {:>10} {:>9} {:>10} {:>8} {:>9} {:>10}",
            "carrier",
            "switches",
            "steals",
            "posted",
            "batches",
            "mean batch",
            "max batch",
            "waits",
            "local",
            "preempted",
            "finished"
        )?;
        let total = CarrierStats::total(self.0);
        let rows = self.0.iter().enumerate().map(|(i, s)| (i.to_string(), s));
        for (name, s) in rows.chain(std::iter::once(("all".to_string(), &total))) {
            writeln!(
                f,
                "{:>7} {:>12} {:>8} {:>12} {:>10} {:>10.1} {:>9} {:>10} {:>8} {:>9} {:>10}",
                name,
                s.switches,
                s.steals,
                s.posted,
                s.batches,
                s.mean_batch(),
                s.batch_max,
                s.waits,
                s.local_calls,
                s.preempted,
                s.finished
            )?;
        }
        write!(f, "batch sizes (all carriers):")?;
        for (i, n) in total.batch_hist.iter().enumerate() {
            let lo = 1u64 << i;
            if i + 1 == BATCH_BUCKETS {
                write!(f, " {lo}+: {n}")?;
            } else {
                write!(f, " {lo}-{}: {n}", (lo << 1) - 1)?;
            }
        }
        writeln!(f)
    }
}

/// System call numbers counted one by one: 0 to 511 (x86_64 uses 0 to about 460). Calls with
/// other numbers (libflexsc's own operations such as the io_uring NOP, anything negative or
/// larger) share one more counter, printed as `other`.
pub const COUNTED_SYSCALLS: usize = 512;

/// Counters per carrier and kind: one per counted number, then `other`.
const SYSCALL_BUCKETS: usize = COUNTED_SYSCALLS + 1;

/// The counter of syscall number `nr`.
#[inline]
fn bucket(nr: i64) -> usize {
    // Negative numbers become huge and land in `other` too.
    (nr as u64).min(COUNTED_SYSCALLS as u64) as usize
}

/// The name of x86_64 system call `nr` as `<asm/unistd_64.h>` spells it (without `__NR_`), e.g.
/// `syscall_name(0) == Some("read")`; None for a number with no call in the table (unused, or
/// added after Linux 6.1: the table is `syscall_names.rs`, generated from that header).
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    usize::try_from(nr)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .filter(|n| !n.is_empty())
}

/// How a counter prints: its call's name, `nr N` for a number without one, `other` for the
/// shared counter.
struct BucketName(usize);

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= COUNTED_SYSCALLS {
            return f.write_str("other");
        }
        match syscall_name(self.0 as i64) {
            Some(name) => f.write_str(name),
            None => write!(f, "nr {}", self.0),
        }
    }
}

/// One carrier's system calls by number, live: what [`super::carrier::Carrier::post`] saw.
///
/// Single writer: only its carrier bumps a counter, with a relaxed load and a relaxed store of
/// the value plus one (a plain `mov`/`add`/`mov` on x86_64, no locked instruction; a concurrent
/// reader sees the old or the new value, never a torn one). Readers (the printer,
/// [`crate::Runtime::syscall_stats`]) load relaxed: each counter is exact at the moment it is
/// read, the set of them is not a snapshot taken at one instant.
#[repr(align(64))]
pub(crate) struct CarrierSyscalls {
    /// Calls posted as entries (exception-less).
    posted: [AtomicU64; SYSCALL_BUCKETS],
    /// Thread-bound calls (and numbers the pages cannot carry) the carrier ran itself,
    /// synchronously: [`CarrierStats::local_calls`] by number.
    local: [AtomicU64; SYSCALL_BUCKETS],
}

impl CarrierSyscalls {
    pub(crate) fn new() -> Self {
        Self {
            posted: [const { AtomicU64::new(0) }; SYSCALL_BUCKETS],
            local: [const { AtomicU64::new(0) }; SYSCALL_BUCKETS],
        }
    }

    /// Counts one posted call of number `nr`. Only the owning carrier calls this.
    #[inline]
    pub(crate) fn count_posted(&self, nr: i64) {
        bump(&self.posted[bucket(nr)]);
    }

    /// Counts one call of number `nr` run on the carrier. Only the owning carrier calls this.
    #[inline]
    pub(crate) fn count_local(&self, nr: i64) {
        bump(&self.local[bucket(nr)]);
    }
}

/// `c += 1` for a counter with a single writer: no read-modify-write instruction needed.
#[inline]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// A runtime's system calls by number, summed over its carriers ([`crate::Runtime::syscall_stats`]).
///
/// Its `Display` is the two "system calls" lines of the statistics table:
///
/// ```text
/// system calls posted (all carriers, total 1334): getppid 1200, write 100, read 34
/// system calls run on the carriers (not posted, all carriers, total 2): sched_getaffinity 2
/// ```
///
/// Every non-zero number, most frequent first (ties by number), as `name count` pairs separated
/// by `, `; a name is the call's (see [`syscall_name`]), `nr N` for a number without one, or
/// `other` for every number from [`COUNTED_SYSCALLS`] on. A line with no call ends at the colon.
/// The first line's total is the table's `posted` column summed (as of the carriers' last
/// publication, which may lag these live counts), the second line's its `local` column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallStats {
    posted: Vec<u64>,
    local: Vec<u64>,
}

impl Default for SyscallStats {
    fn default() -> Self {
        Self {
            posted: vec![0; SYSCALL_BUCKETS],
            local: vec![0; SYSCALL_BUCKETS],
        }
    }
}

impl SyscallStats {
    /// The sum of carriers' live counts.
    pub(crate) fn sum(carriers: &[Arc<CarrierSyscalls>]) -> Self {
        let mut s = Self::default();
        for c in carriers {
            for (t, n) in s.posted.iter_mut().zip(&c.posted) {
                *t += n.load(Ordering::Relaxed);
            }
            for (t, n) in s.local.iter_mut().zip(&c.local) {
                *t += n.load(Ordering::Relaxed);
            }
        }
        s
    }

    /// Calls of number `nr` posted as entries (for a number from [`COUNTED_SYSCALLS`] on, or
    /// negative: every such call).
    pub fn posted(&self, nr: i64) -> u64 {
        self.posted[bucket(nr)]
    }

    /// Calls of number `nr` the carriers ran themselves (thread-bound, or run there by the
    /// program).
    pub fn local(&self, nr: i64) -> u64 {
        self.local[bucket(nr)]
    }

    /// Every call posted as an entry.
    pub fn posted_total(&self) -> u64 {
        self.posted.iter().sum()
    }

    /// Every call the carriers ran themselves.
    pub fn local_total(&self) -> u64 {
        self.local.iter().sum()
    }

    #[cfg(test)]
    fn add_posted(&mut self, nr: i64, n: u64) {
        self.posted[bucket(nr)] += n;
    }
}

/// One `heading (..., total N): name count, name count, ...` line.
fn write_by_name(f: &mut fmt::Formatter<'_>, heading: &str, counts: &[u64]) -> fmt::Result {
    let mut items: Vec<(usize, u64)> = counts
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, n)| n > 0)
        .collect();
    // Most first; equal counts by number, so the order is stable from one print to the next.
    items.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: u64 = items.iter().map(|&(_, n)| n).sum();
    write!(f, "{heading}, total {total}):")?;
    for (k, &(i, n)) in items.iter().enumerate() {
        let sep = if k == 0 { " " } else { ", " };
        write!(f, "{sep}{} {n}", BucketName(i))?;
    }
    writeln!(f)
}

impl fmt::Display for SyscallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_by_name(f, "system calls posted (all carriers", &self.posted)?;
        write_by_name(
            f,
            "system calls run on the carriers (not posted, all carriers",
            &self.local,
        )
    }
}

/// A runtime's statistics, shared by its carriers (which write them), its handles and the
/// printers.
pub(crate) struct StatsShared {
    /// Each carrier's counters as last published.
    carriers: Mutex<Vec<CarrierStats>>,
    /// Each carrier's calls by number, live (each carrier holds its own `Arc`).
    syscalls: Box<[Arc<CarrierSyscalls>]>,
}

impl StatsShared {
    pub(crate) fn new(cores: usize) -> Self {
        Self {
            carriers: Mutex::new(vec![CarrierStats::default(); cores]),
            syscalls: (0..cores)
                .map(|_| Arc::new(CarrierSyscalls::new()))
                .collect(),
        }
    }

    /// Carrier `c`'s counters by syscall number, for it to count into.
    pub(crate) fn carrier_syscalls(&self, c: usize) -> Arc<CarrierSyscalls> {
        self.syscalls[c].clone()
    }

    /// Publishes carrier `c`'s counters.
    pub(crate) fn publish(&self, c: usize, stats: CarrierStats) {
        lock(&self.carriers)[c] = stats;
    }

    /// Each carrier's counters as last published.
    pub(crate) fn carriers(&self) -> Vec<CarrierStats> {
        lock(&self.carriers).clone()
    }

    /// The live counts by syscall number, summed over the carriers.
    pub(crate) fn syscalls(&self) -> SyscallStats {
        SyscallStats::sum(&self.syscalls)
    }

    /// The text printed for one runtime: a heading saying why (`when`), the table, the calls.
    fn text(&self, when: &str) -> String {
        format!(
            "flexsc-threads statistics (pid {}, {when})\n{}{}",
            std::process::id(),
            StatsTable(&self.carriers()),
            self.syscalls()
        )
    }
}

/// Where the table goes.
#[derive(Debug, Clone)]
pub(crate) enum StatsSink {
    Stderr,
    /// Appended to this file.
    File(PathBuf),
}

impl StatsSink {
    fn print(&self, stats: &StatsShared, when: &str) {
        let text = stats.text(when);
        match self {
            StatsSink::Stderr => eprint!("{text}"),
            StatsSink::File(path) => {
                // One write of the whole text, with O_APPEND: processes sharing the file (a
                // forking server) do not interleave their tables.
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| io::Write::write_all(&mut f, text.as_bytes()));
                if let Err(e) = written {
                    eprintln!("flexsc-threads: FLEXSC_STATS={}: {e}", path.display());
                }
            }
        }
    }
}

/// A runtime whose table is still to be printed.
struct Pending {
    stats: Weak<StatsShared>,
    sink: StatsSink,
    /// The process that built the runtime: a fork child has a copy of the list, but not the
    /// runtimes (their carriers did not survive the fork), and prints only its own.
    pid: u32,
}

/// Runtimes whose table is still to be printed.
static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

/// Prints `stats` at shutdown ([`print_now`]) or, if the process exits first, from `atexit`; and
/// meanwhile on every SIGUSR2 once [`print_on_sigusr2`] is set up.
pub(crate) fn print_at_exit(stats: &Arc<StatsShared>, sink: StatsSink) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a plain function with no preconditions; if registration fails the
        // table is still printed at shutdown.
        unsafe { libc::atexit(print_pending) };
    });
    lock(&PENDING).push(Pending {
        stats: Arc::downgrade(stats),
        sink,
        pid: std::process::id(),
    });
}

/// Prints `stats` now (the runtime shut down) and forgets them.
pub(crate) fn print_now(stats: &Arc<StatsShared>) {
    let mut pending = lock(&PENDING);
    if let Some(i) = pending
        .iter()
        .position(|p| std::ptr::eq(p.stats.as_ptr(), Arc::as_ptr(stats)))
    {
        let p = pending.swap_remove(i);
        drop(pending);
        p.sink.print(stats, "shutdown");
    }
}

extern "C" fn print_pending() {
    let pid = std::process::id();
    for p in std::mem::take(&mut *lock(&PENDING)) {
        if p.pid != pid {
            continue;
        }
        if let Some(stats) = p.stats.upgrade() {
            p.sink.print(&stats, "exit");
        }
    }
}

/// Prints every pending table of this process, leaving them pending (SIGUSR2).
fn print_pending_now() {
    let pid = std::process::id();
    // Printed outside the lock: a runtime shutting down meanwhile must not wait for the file.
    let live: Vec<(Arc<StatsShared>, StatsSink)> = lock(&PENDING)
        .iter()
        .filter(|p| p.pid == pid)
        .filter_map(|p| Some((p.stats.upgrade()?, p.sink.clone())))
        .collect();
    for (stats, sink) in live {
        sink.print(&stats, "SIGUSR2");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The write end of the SIGUSR2 pipe (non-blocking), for the handler; -1: none.
static SIGUSR2_FD: AtomicI32 = AtomicI32::new(-1);

/// The process whose printer thread reads the SIGUSR2 pipe (0: none). The handler does nothing
/// in any other process: a fork child inherits the handler and the pipe, but not the thread.
static SIGUSR2_PID: AtomicI32 = AtomicI32::new(0);

/// Sets up printing on SIGUSR2, once per process: called when a runtime with statistics on is
/// built.
///
/// - A pipe, its write end non-blocking and both ends close-on-exec.
/// - A handler for SIGUSR2 that only writes one byte to the pipe (async-signal-safe: two atomic
///   loads and two raw system calls; a full pipe, already holding a request, drops the byte).
///   Installed only if SIGUSR2's action is `SIG_DFL` now: an application's handler (or
///   `SIG_IGN`) is never replaced, and nothing prints on SIGUSR2 then. A handler the application
///   installs later replaces ours: from then on SIGUSR2 is the application's, and the table
///   prints at exit only.
/// - An internal OS thread (`flexsc-stats`, made by [`flexsc_kmod::os_thread`] like the
///   carriers, so the preload treats it as the library's own) with every signal blocked, which
///   reads the pipe and prints the table of every runtime of this process with statistics on,
///   to its sink (stderr, or appended to its file), headed `(pid N, SIGUSR2)`.
///
/// After `fork`: the child inherits the handler and the pipe but not the thread, and the handler
/// checks the process id, so a SIGUSR2 to the child does nothing (it neither prints nor blocks,
/// nor terminates the child as `SIG_DFL` would) until a runtime with statistics on is built in
/// the child, which sets up a pipe and a thread of its own. The inherited descriptors are left
/// open (the child may have reused their numbers).
///
/// If the pipe or the thread cannot be made, one line on stderr says so and the table prints at
/// shutdown or exit only.
pub(crate) fn print_on_sigusr2() {
    static SETUP: Mutex<()> = Mutex::new(());
    let _one_at_a_time = lock(&SETUP);
    let pid = std::process::id() as i32;
    if SIGUSR2_PID.load(Ordering::Acquire) == pid {
        return;
    }
    if let Err(e) = start_sigusr2_printer(pid) {
        eprintln!("flexsc-threads: no statistics on SIGUSR2: {e}");
    }
}

fn start_sigusr2_printer(pid: i32) -> io::Result<()> {
    let ours = on_sigusr2 as extern "C" fn(c_int) as libc::sighandler_t;
    // SAFETY: sigaction is plain C data; all-zero is a valid (empty) value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: queries only (no new action); `old` is a valid out-pointer.
    if unsafe { libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Ours already (inherited over fork): a new pipe and thread, the same handler.
    let install = match old.sa_sigaction {
        libc::SIG_DFL => true,
        h if h == ours => false,
        _ => return Ok(()), // the application's: SIGUSR2 is theirs
    };
    let mut fds = [-1 as c_int; 2];
    // SAFETY: pipe2 writes two descriptors into our array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    // The handler must never block on a full pipe; the printer blocks reading.
    // SAFETY: sets a status flag of a descriptor we just made.
    if unsafe { libc::fcntl(write_end, libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        let e = io::Error::last_os_error();
        close_pair(fds);
        return Err(e);
    }
    let thread = flexsc_kmod::os_thread::spawn("flexsc-stats", 256 * 1024, move || {
        sigusr2_printer(read_end)
    });
    if let Err(e) = thread {
        close_pair(fds);
        return Err(e);
    }
    // Dropping the handle detaches the thread: it lives as long as the process.
    // The descriptor before the pid: a handler that sees our pid sees our pipe.
    SIGUSR2_FD.store(write_end, Ordering::Release);
    SIGUSR2_PID.store(pid, Ordering::Release);
    if install {
        // SAFETY: as above.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = ours;
        // Restart the calls it interrupts: the application never sees our handler run.
        new.sa_flags = libc::SA_RESTART;
        // SAFETY: `new.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: installs `on_sigusr2`, which is async-signal-safe; `old` is a valid
        // out-pointer.
        if unsafe { libc::sigaction(libc::SIGUSR2, &new, &mut old) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != ours {
            // The application installed its own between our look and ours: put it back.
            // SAFETY: restores the action sigaction just returned.
            unsafe { libc::sigaction(libc::SIGUSR2, &old, std::ptr::null_mut()) };
        }
    }
    Ok(())
}

fn close_pair(fds: [c_int; 2]) {
    for fd in fds {
        // SAFETY: closes a descriptor we made and nobody else knows.
        unsafe { libc::close(fd) };
    }
}

/// The SIGUSR2 handler: asks the printer thread to print, if this process has one.
extern "C" fn on_sigusr2(_: c_int) {
    // Async-signal-safe: atomics and raw system calls only (no lock, no allocation, no TLS:
    // it may run on a carrier with a green thread's TLS installed; no libc wrapper the preload
    // interposes, and errno untouched).
    let pid = SIGUSR2_PID.load(Ordering::Acquire);
    if pid == 0 {
        return;
    }
    // SAFETY: getpid takes no arguments.
    if unsafe { flexsc_kmod::raw::syscall(libc::SYS_getpid, [0; 3]) } != i64::from(pid) {
        return; // a fork child: no printer thread here
    }
    let fd = SIGUSR2_FD.load(Ordering::Acquire);
    let byte = 1u8;
    // SAFETY: writes one byte from a live local to our pipe's non-blocking write end; a full
    // pipe returns EAGAIN at once (a print is already pending).
    unsafe {
        flexsc_kmod::raw::syscall(libc::SYS_write, [fd as u64, &byte as *const u8 as u64, 1])
    };
}

/// The printer thread: every signal blocked, prints every pending table per wake-up.
fn sigusr2_printer(fd: c_int) {
    let all: u64 = !0;
    // SAFETY: rt_sigprocmask reads an 8-byte set from a live local (the kernel's sigset size);
    // no old set is written. SIGKILL and SIGSTOP are ignored by the kernel.
    unsafe {
        flexsc_kmod::raw::syscall6(
            libc::SYS_rt_sigprocmask as u64,
            &[
                libc::SIG_BLOCK as u64,
                &all as *const u64 as u64,
                0,
                8,
                0,
                0,
            ],
        )
    };
    let mut buf = [0u8; 64];
    loop {
        // Raw: blocking here must not go through an interposed read.
        // SAFETY: reads at most 64 bytes into our buffer from our pipe.
        let n = unsafe {
            flexsc_kmod::raw::syscall(
                libc::SYS_read,
                [fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64],
            )
        };
        match n {
            // Signals that arrived together coalesce into one print.
            n if n > 0 => print_pending_now(),
            n if n == -i64::from(libc::EINTR) => {}
            _ => break,
        }
    }
    // Our read end is gone (someone closed it): the handler stops writing, and the next runtime
    // built with statistics on sets up a new pipe and thread.
    let pid = std::process::id() as i32;
    let _ = SIGUSR2_PID.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_land_in_power_of_two_buckets() {
        let mut s = CarrierStats::default();
        for n in [1, 2, 3, 4, 64, 255, 256, 10_000] {
            s.record_batch(n);
        }
        assert_eq!(s.batch_hist, [1, 2, 1, 0, 0, 0, 1, 1, 2]);
        assert_eq!(s.batches, 8);
        assert_eq!(s.batch_max, 10_000);
        assert_eq!(s.batched, 1 + 2 + 3 + 4 + 64 + 255 + 256 + 10_000);
    }

    #[test]
    fn the_table_has_a_row_per_carrier_and_a_total() {
        let mut a = CarrierStats {
            switches: 10,
            ..Default::default()
        };
        a.record_batch(4);
        let b = CarrierStats {
            switches: 5,
            ..Default::default()
        };
        let text = StatsTable(&[a, b]).to_string();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[3].trim_start().starts_with("all"), "{text}");
        assert!(lines[3].contains(" 15 "), "{text}");
        assert!(lines[4].contains("4-7: 1"), "{text}");
    }

    /// The `name count` pairs of the line starting with `heading`, and its total.
    fn parse(text: &str, heading: &str) -> (u64, Vec<(String, u64)>) {
        let line = text
            .lines()
            .find(|l| l.starts_with(heading))
            .unwrap_or_else(|| panic!("no {heading:?} line in {text}"));
        let (head, items) = line.split_once("):").expect("heading ends with '):'");
        let total = head.rsplit_once("total ").unwrap().1.parse().unwrap();
        let items = items
            .split(", ")
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(|i| {
                let (name, n) = i.rsplit_once(' ').expect("name count");
                (name.to_string(), n.parse().expect("a count"))
            })
            .collect();
        (total, items)
    }

    #[test]
    fn names_come_from_the_kernel_headers() {
        assert_eq!(syscall_name(0), Some("read"));
        assert_eq!(syscall_name(libc::SYS_getppid), Some("getppid"));
        assert_eq!(
            syscall_name(libc::SYS_io_uring_enter),
            Some("io_uring_enter")
        );
        assert_eq!(syscall_name(libc::SYS_futex_waitv), Some("futex_waitv"));
        assert_eq!(syscall_name(400), None); // unused on x86_64
        assert_eq!(syscall_name(-1), None);
        assert_eq!(syscall_name(100_000), None);
        assert_eq!(BucketName(400).to_string(), "nr 400");
        assert_eq!(BucketName(COUNTED_SYSCALLS).to_string(), "other");
        assert_eq!(bucket(-1), COUNTED_SYSCALLS);
        assert_eq!(bucket(0xF000), COUNTED_SYSCALLS);
        assert_eq!(bucket(511), 511);
    }

    #[test]
    fn calls_by_name_are_sorted_most_first_with_their_total() {
        let mut s = SyscallStats::default();
        s.add_posted(libc::SYS_write, 567);
        s.add_posted(libc::SYS_read, 1234);
        s.add_posted(libc::SYS_close, 567); // a tie with write (1): close (3) after it
        s.add_posted(400, 2);
        s.add_posted(0xF000, 1); // the io_uring NOP
        let text = s.to_string();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(
            text.lines().next().unwrap(),
            "system calls posted (all carriers, total 2371): read 1234, write 567, close 567, \
             nr 400 2, other 1"
        );
        let (total, items) = parse(&text, "system calls posted");
        assert_eq!(total, 2371);
        assert_eq!(items.iter().map(|(_, n)| n).sum::<u64>(), total);
        assert_eq!(items[3], ("nr 400".to_string(), 2));
        assert_eq!(s.posted(libc::SYS_read), 1234);
        assert_eq!(s.posted(-5), 1);
        assert_eq!(s.posted_total(), 2371);
        // Nothing run on the carriers: the line ends at the colon.
        assert_eq!(
            text.lines().nth(1).unwrap(),
            "system calls run on the carriers (not posted, all carriers, total 0):"
        );
        assert_eq!(parse(&text, "system calls run").1, vec![]);
    }

    #[test]
    fn carriers_counts_add_up() {
        let a = Arc::new(CarrierSyscalls::new());
        let b = Arc::new(CarrierSyscalls::new());
        for _ in 0..100 {
            a.count_posted(libc::SYS_getppid);
        }
        b.count_posted(libc::SYS_getppid);
        b.count_local(libc::SYS_sched_getaffinity);
        b.count_posted(-1);
        let s = SyscallStats::sum(&[a, b]);
        assert_eq!(s.posted(libc::SYS_getppid), 101);
        assert_eq!(s.local(libc::SYS_sched_getaffinity), 1);
        assert_eq!((s.posted_total(), s.local_total()), (102, 1));
        let text = s.to_string();
        assert_eq!(
            parse(&text, "system calls posted").1,
            vec![("getppid".to_string(), 101), ("other".to_string(), 1)]
        );
        assert_eq!(
            parse(&text, "system calls run on the carriers").1,
            vec![("sched_getaffinity".to_string(), 1)]
        );
    }
}
