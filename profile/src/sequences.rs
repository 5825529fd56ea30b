//! The hottest call sequences: runs of consecutive calls of one thread (paths of the syscall
//! graph that were really taken), and the kernel crossings one multi-call per occurrence would
//! save: a sequence of `n` calls made as one multi-call crosses once instead of `n` times.
//!
//! Occurrences are counted two ways: every window (`count`, what the graph's edge weights count
//! for `n = 2`), and without overlap, greedily from the start of each thread (`disjoint`: a call
//! can be in one multi-call only). Savings use the second.

use std::collections::HashMap;

use crate::graph::Labels;

/// One sequence of consecutive calls and how often it occurred.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// The calls (node labels), in order.
    pub calls: Vec<String>,
    /// Occurrences, overlapping ones included.
    pub count: u64,
    /// Occurrences that do not overlap each other.
    pub disjoint: u64,
}

impl Sequence {
    /// Crossings saved if each disjoint occurrence were one multi-call.
    pub fn saved(&self) -> u64 {
        (self.calls.len() as u64 - 1) * self.disjoint
    }
}

/// The `top` sequences of `len` calls (at least 2) that would save the most crossings, most
/// first (ties: more occurrences, then by name).
pub fn hottest(labels: &Labels, len: usize, top: usize) -> Vec<Sequence> {
    assert!(len >= 2, "a sequence has at least two calls");
    // Per sequence: all windows, disjoint ones, and where the last disjoint one ended (thread,
    // index) so the next may not overlap it.
    let mut seen: HashMap<&[u32], (u64, u64, usize, usize)> = HashMap::new();
    for (t, seq) in labels.threads.iter().enumerate() {
        for (i, w) in seq.windows(len).enumerate() {
            let e = seen.entry(w).or_insert((0, 0, usize::MAX, 0));
            e.0 += 1;
            if e.2 != t || i >= e.3 {
                e.1 += 1;
                e.2 = t;
                e.3 = i + len;
            }
        }
    }
    let mut all: Vec<Sequence> = seen
        .into_iter()
        .map(|(w, (count, disjoint, _, _))| Sequence {
            calls: w
                .iter()
                .map(|&n| labels.names[n as usize].clone())
                .collect(),
            count,
            disjoint,
        })
        .collect();
    all.sort_by(|a, b| {
        b.saved()
            .cmp(&a.saved())
            .then(b.count.cmp(&a.count))
            .then(a.calls.cmp(&b.calls))
    });
    all.truncate(top);
    all
}
