//! Timers without a thread per timer: each carrier keeps a heap of (deadline, green thread) and
//! fires the due ones every scheduling round; its flexsc_wait sleeps no longer than the earliest.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use super::task::Task;

struct Entry {
    at: Instant,
    seq: u64,
    task: Arc<Task>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// One carrier's timers.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl Timers {
    /// Wakes `task` at `at` (an unpark: the task re-checks why it slept).
    pub(crate) fn add(&mut self, at: Instant, task: Arc<Task>) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            task,
        }));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Removes and returns the tasks whose deadline has passed.
    pub(crate) fn due(&mut self, now: Instant, mut f: impl FnMut(Arc<Task>)) {
        while self.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = self.heap.pop() {
                f(e.task);
            }
        }
    }

    /// Timers pending.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
