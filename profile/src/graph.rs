//! The syscall graph of the clustering paper's GraphBuilder (its Figure 4): one node per call
//! with its selected arguments ([`Call::label`](crate::call::Call::label)), one directed edge
//! per pair of calls a thread made one right after the other, weighted by how often it did.
//! Edges never cross threads: the paper traced one thread, and calls of different threads cannot
//! share a multi-call.

use std::collections::HashMap;

use crate::trace::Trace;

/// The trace with every call replaced by its node's number.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    /// Node names by number.
    pub names: Vec<String>,
    ids: HashMap<String, u32>,
    /// Each thread's calls as node numbers.
    pub threads: Vec<Vec<u32>>,
}

impl Labels {
    /// Numbers the nodes of `trace`.
    pub fn of(trace: &Trace) -> Self {
        let mut l = Self::default();
        for t in &trace.threads {
            let seq = t.calls.iter().map(|c| l.id(c.label())).collect();
            l.threads.push(seq);
        }
        l
    }

    fn id(&mut self, label: String) -> u32 {
        if let Some(&i) = self.ids.get(&label) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(label.clone());
        self.ids.insert(label, i);
        i
    }

    /// The number of node `label`, if the trace has it.
    pub fn get(&self, label: &str) -> Option<u32> {
        self.ids.get(label).copied()
    }
}

/// The syscall graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Node names by number (as in [`Labels`]).
    pub names: Vec<String>,
    /// How many calls each node stands for.
    pub counts: Vec<u64>,
    /// Edge weights: how often `to` immediately followed `from` in a thread.
    pub edges: HashMap<(u32, u32), u64>,
}

impl Graph {
    /// GraphBuilder over every thread of the labelled trace.
    pub fn build(labels: &Labels) -> Self {
        let mut g = Self {
            names: labels.names.clone(),
            counts: vec![0; labels.names.len()],
            edges: HashMap::new(),
        };
        for seq in &labels.threads {
            for &n in seq {
                g.counts[n as usize] += 1;
            }
            for pair in seq.windows(2) {
                *g.edges.entry((pair[0], pair[1])).or_insert(0) += 1;
            }
        }
        g
    }

    /// The weight of the edge `from -> to` by node names (0 if there is none).
    pub fn weight(&self, from: &str, to: &str) -> u64 {
        let id = |n: &str| self.names.iter().position(|x| x == n);
        match (id(from), id(to)) {
            (Some(a), Some(b)) => self.edges.get(&(a as u32, b as u32)).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// Every edge as `(from, to, weight)`, heaviest first (ties by name, so the order is stable).
    pub fn heaviest(&self) -> Vec<(&str, &str, u64)> {
        let mut e: Vec<_> = self
            .edges
            .iter()
            .map(|(&(a, b), &w)| {
                (
                    self.names[a as usize].as_str(),
                    self.names[b as usize].as_str(),
                    w,
                )
            })
            .collect();
        e.sort_by(|x, y| y.2.cmp(&x.2).then(x.0.cmp(y.0)).then(x.1.cmp(y.1)));
        e
    }

    /// The total of all edge weights: the calls that followed another call of their thread.
    pub fn transitions(&self) -> u64 {
        self.edges.values().sum()
    }
}
