//! What `flexsc profile` prints: the syscall graph's heaviest edges, the hottest sequences with
//! the crossings a multi-call would save, and the costly patterns, as text tables; and the graph
//! as Graphviz DOT.

use std::fmt::Write;

use crate::graph::{Graph, Labels};
use crate::patterns::{self, Finding};
use crate::sequences::{self, Sequence};
use crate::trace::Trace;

/// How much the report shows.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The longest sequence looked for (at least 2).
    pub max_len: usize,
    /// Rows per table (per length for sequences).
    pub top: usize,
    /// Edges drawn in the DOT graph (the heaviest).
    pub dot_edges: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_len: 4,
            top: 10,
            dot_edges: 40,
        }
    }
}

/// The analysis of one trace.
#[derive(Debug)]
pub struct Report {
    /// Threads with at least one call.
    pub threads: usize,
    /// Calls in the trace.
    pub calls: u64,
    /// Calls lost to wrapped ring buffers.
    pub lost: u64,
    /// Unreadable strace lines.
    pub skipped: u64,
    /// The syscall graph.
    pub graph: Graph,
    /// The hottest sequences, by length (`sequences[0]` has length 2).
    pub sequences: Vec<Vec<Sequence>>,
    /// The costly patterns found.
    pub findings: Vec<Finding>,
    options: Options,
}

/// Analyses `trace`.
pub fn analyse(trace: &Trace, options: Options) -> Report {
    let labels = Labels::of(trace);
    let graph = Graph::build(&labels);
    let sequences = (2..=options.max_len.max(2))
        .map(|n| sequences::hottest(&labels, n, options.top))
        .collect();
    Report {
        threads: trace.threads.iter().filter(|t| !t.calls.is_empty()).count(),
        calls: trace.calls() as u64,
        lost: trace.lost(),
        skipped: trace.skipped,
        graph,
        sequences,
        findings: patterns::find(trace),
        options,
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

impl Report {
    /// The text tables.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} calls in {} threads ({} older calls lost to full ring buffers, {} unreadable \
             lines)",
            self.calls, self.threads, self.lost, self.skipped
        );
        let _ = writeln!(
            s,
            "\nHeaviest edges of the syscall graph (weight: times the second call came right \
             after the first in one thread; share: of all {} such pairs)",
            self.graph.transitions()
        );
        let _ = writeln!(s, "{:>9} {:>6}  edge", "weight", "share");
        for (a, b, w) in self.graph.heaviest().into_iter().take(self.options.top) {
            let _ = writeln!(
                s,
                "{w:>9} {:>6}  {a} -> {b}",
                pct(w, self.graph.transitions())
            );
        }
        let _ = writeln!(
            s,
            "\nHottest sequences (count: occurrences; disjoint: without overlap; saved: kernel \
             crossings if each disjoint occurrence were one multi-call, and their share of all \
             {} calls)",
            self.calls
        );
        let _ = writeln!(
            s,
            "{:>3} {:>9} {:>9} {:>9} {:>6}  sequence",
            "len", "count", "disjoint", "saved", "share"
        );
        for seqs in &self.sequences {
            for q in seqs {
                let _ = writeln!(
                    s,
                    "{:>3} {:>9} {:>9} {:>9} {:>6}  {}",
                    q.calls.len(),
                    q.count,
                    q.disjoint,
                    q.saved(),
                    pct(q.saved(), self.calls),
                    q.calls.join(" -> ")
                );
            }
        }
        let _ = writeln!(
            s,
            "\nCostly patterns (saved: crossings the remedy saves; share: of all calls)"
        );
        if self.findings.is_empty() {
            let _ = writeln!(s, "  none found");
        }
        let _ = writeln!(
            s,
            "{:>9} {:>9} {:>9} {:>6}  pattern",
            "times", "calls", "saved", "share"
        );
        for f in self.findings.iter().take(self.options.top * 2) {
            let _ = writeln!(
                s,
                "{:>9} {:>9} {:>9} {:>6}  {} (e.g. {})\n{:>38}-> {}",
                f.occurrences,
                f.calls,
                f.saved,
                pct(f.saved, self.calls),
                f.pattern,
                f.example,
                "",
                f.remedy
            );
        }
        s
    }

    /// The syscall graph's heaviest edges as Graphviz DOT: nodes say how many calls they stand
    /// for, edges their weight, drawn thicker the heavier.
    pub fn dot(&self) -> String {
        let edges: Vec<_> = self
            .graph
            .heaviest()
            .into_iter()
            .take(self.options.dot_edges)
            .collect();
        let max = edges.first().map_or(1, |e| e.2).max(1) as f64;
        let mut nodes: Vec<&str> = edges.iter().flat_map(|e| [e.0, e.1]).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let mut s = String::from(
            "digraph syscalls {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];\n",
        );
        for n in &nodes {
            let count = self
                .graph
                .names
                .iter()
                .position(|x| x == n)
                .map_or(0, |i| self.graph.counts[i]);
            let _ = writeln!(s, "  \"{}\" [label=\"{}\\n{count}\"];", esc(n), esc(n));
        }
        for (a, b, w) in edges {
            let _ = writeln!(
                s,
                "  \"{}\" -> \"{}\" [label=\"{w}\", penwidth={:.1}];",
                esc(a),
                esc(b),
                1.0 + 4.0 * w as f64 / max
            );
        }
        s.push_str("}\n");
        s
    }
}

/// A DOT string's escapes.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
