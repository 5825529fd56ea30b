//! Per-carrier statistics: what each carrier did (switches, steals, entries posted, batches and
//! their sizes, flexsc_waits), readable while the runtime runs ([`crate::Runtime::stats`]) and
//! printed as a table when asked (`Builder::stats_at_exit`, `FLEXSC_STATS=1`): when the runtime
//! shuts down, or when the process exits with it still running (an `atexit` handler: servers
//! rarely shut their runtime down).
//!
//! Each carrier counts into its own copy and publishes it whenever it looks at completions (at
//! least every [`super::carrier`] fairness round) and before it sleeps, so a reader sees numbers at
//! most one round old and the switch path pays no atomic operation.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once, Weak};

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
    /// Calls run synchronously on the carrier (thread-bound ones).
    pub local_calls: u64,
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
            "{:>7} {:>12} {:>8} {:>12} {:>10} {:>10} {:>9} {:>10} {:>8} {:>10}",
            "carrier",
            "switches",
            "steals",
            "posted",
            "batches",
            "mean batch",
            "max batch",
            "waits",
            "local",
            "finished"
        )?;
        let total = CarrierStats::total(self.0);
        let rows = self.0.iter().enumerate().map(|(i, s)| (i.to_string(), s));
        for (name, s) in rows.chain(std::iter::once(("all".to_string(), &total))) {
            writeln!(
                f,
                "{:>7} {:>12} {:>8} {:>12} {:>10} {:>10.1} {:>9} {:>10} {:>8} {:>10}",
                name,
                s.switches,
                s.steals,
                s.posted,
                s.batches,
                s.mean_batch(),
                s.batch_max,
                s.waits,
                s.local_calls,
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

/// Where the table goes.
#[derive(Debug, Clone)]
pub(crate) enum StatsSink {
    Stderr,
    /// Appended to this file.
    File(PathBuf),
}

impl StatsSink {
    fn print(&self, stats: &[CarrierStats]) {
        let text = format!("flexsc-threads statistics\n{}", StatsTable(stats));
        match self {
            StatsSink::Stderr => eprint!("{text}"),
            StatsSink::File(path) => {
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

type Published = Mutex<Vec<CarrierStats>>;

/// Runtimes whose table is still to be printed.
static PENDING: Mutex<Vec<(Weak<Published>, StatsSink)>> = Mutex::new(Vec::new());

/// Prints `stats` at shutdown ([`print_now`]) or, if the process exits first, from `atexit`.
pub(crate) fn print_at_exit(stats: &Arc<Published>, sink: StatsSink) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: registers a plain function with no preconditions; if registration fails the
        // table is still printed at shutdown.
        unsafe { libc::atexit(print_pending) };
    });
    lock(&PENDING).push((Arc::downgrade(stats), sink));
}

/// Prints `stats` now (the runtime shut down) and forgets them.
pub(crate) fn print_now(stats: &Arc<Published>) {
    let mut pending = lock(&PENDING);
    if let Some(i) = pending
        .iter()
        .position(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(stats)))
    {
        let (_, sink) = pending.swap_remove(i);
        drop(pending);
        sink.print(&lock(stats));
    }
}

extern "C" fn print_pending() {
    for (stats, sink) in std::mem::take(&mut *lock(&PENDING)) {
        if let Some(stats) = stats.upgrade() {
            sink.print(&lock(&stats));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
}
