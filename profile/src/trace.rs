//! A profile: each thread's system calls in the order it made them.

use crate::call::Call;

/// One thread's calls, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    /// Who it was: `pid 1234` (strace), `pid 1234 green 7` or `pid 1234 os 2` (a recording).
    pub name: String,
    /// Calls it made that the profile does not hold (a recording's ring buffer wrapped): the
    /// sequence below is the latest part.
    pub lost: u64,
    /// The calls.
    pub calls: Vec<Call>,
}

/// The calls of every thread of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// The threads, in the order they first appeared.
    pub threads: Vec<Thread>,
    /// Input lines the parser could not read (strace), for the report.
    pub skipped: u64,
}

impl Trace {
    /// Every call of every thread.
    pub fn calls(&self) -> usize {
        self.threads.iter().map(|t| t.calls.len()).sum()
    }

    /// Calls lost to wrapped ring buffers.
    pub fn lost(&self) -> u64 {
        self.threads.iter().map(|t| t.lost).sum()
    }

    /// Adds another trace's threads (another process of the same run).
    pub fn extend(&mut self, other: Trace) {
        self.threads.extend(other.threads);
        self.skipped += other.skipped;
    }
}
