//! Loom models of the entry status protocol (`flexsc_kmod::entry`): one poster and two executors
//! racing to claim, through every way a claim can end (complete, detach + complete later, drop),
//! and an entry reused for a second posting.
//!
//! What loom checks besides the assertions: every access to the entry's request and result cells
//! is ordered by the status hand-overs (an unordered access is reported as a data race).
#![cfg(loom)]

use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use flexsc_kmod::entry::{Claim, Head, SyscallEntry, status};
use loom::sync::Arc;
use loom::thread;

/// `ECANCELED` on Linux x86_64 and arm64 (this crate has no libc): a dropped claim's result.
const ECANCELED: i64 = 125;
const NR: u16 = 39;
const ARGS: [u64; 6] = [1, 2, 3, 4, 5, 6];

/// How the winning executor ends its claim.
#[derive(Clone, Copy, Debug)]
enum End {
    /// `Claim::complete`.
    Complete,
    /// `Claim::detach`, then `complete_detached` after a yield (io_uring's later completion).
    Detach,
    /// The claim is dropped, as when an executor panics mid-call.
    Drop,
}

/// Shared by the poster and the executors of one execution.
struct Shared {
    entry: SyscallEntry,
    /// Successful claims so far: a ghost variable outside the model (loom runs every model thread
    /// on one OS thread, so a std atomic is exact, and reading it orders nothing). It only tells
    /// the spinning executor when to stop.
    claims: StdAtomicUsize,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            entry: SyscallEntry::new(),
            claims: StdAtomicUsize::new(0),
        })
    }

    fn claims(&self) -> usize {
        self.claims.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The result executor `id` gives the call with first argument `seq`.
fn result_of(id: i64, seq: u64) -> i64 {
    100 * id + seq as i64
}

/// Runs one claimed call and ends the claim as `end` says; returns the result the poster must see.
fn run(s: &Shared, claim: Claim<'_>, id: i64, end: End) -> i64 {
    s.claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let head = claim.head();
    let args = claim.args();
    let want = Head {
        nr: NR,
        nargs: 6,
        flags: 0,
    };
    assert_eq!(head, want, "executor saw a half-written request");
    assert_eq!(args[1..], ARGS[1..], "executor saw a half-written request");
    let ret = result_of(id, args[0]);
    match end {
        End::Complete => {
            claim.complete(ret);
            ret
        }
        End::Detach => {
            claim.detach();
            // The completion arrives later (another frame, after other work): until then the
            // entry stays BUSY, so the poster must keep waiting.
            thread::yield_now();
            assert_eq!(s.entry.status(), status::BUSY, "a detached claim completed");
            // SAFETY: this thread claimed and detached the entry just above and completes it once.
            unsafe { s.entry.complete_detached(ret) };
            ret
        }
        End::Drop => {
            drop(claim);
            -ECANCELED
        }
    }
}

/// An executor that looks once: its one claim may come before the post, race the other
/// executor's, or find the entry already claimed.
fn executor_once(s: &Shared, id: i64, end: End) -> Vec<i64> {
    s.entry
        .claim()
        .map(|c| run(s, c, id, end))
        .into_iter()
        .collect()
}

/// An executor that keeps looking until `postings` claims were made (by anyone), so every
/// posting is run. It is the model's only unbounded spinner: two threads spinning at once give
/// loom schedules that never end.
fn executor_until(s: &Shared, id: i64, end: End, postings: usize) -> Vec<i64> {
    let mut produced = Vec::new();
    while s.claims() < postings {
        match s.entry.claim() {
            Some(c) => produced.push(run(s, c, id, end)),
            None => thread::yield_now(),
        }
    }
    produced
}

fn post(s: &Shared, seq: u64) {
    assert_eq!(s.entry.status(), status::FREE);
    let mut args = ARGS;
    args[0] = seq;
    s.entry.post(NR, 6, args);
}

/// Checks what the poster took against what the executors produced.
fn check_results(end: End, taken: &[i64], mut produced: Vec<i64>, claims: usize) {
    // Exactly one run per posting, and the poster took what the runs produced, in order.
    assert_eq!(claims, taken.len(), "a posting ran twice, or not at all");
    assert_eq!(produced.len(), taken.len());
    if let End::Drop = end {
        assert!(taken.iter().all(|&r| r == -ECANCELED), "{taken:?}");
        return;
    }
    produced.sort_unstable_by_key(|r| r % 100);
    assert_eq!(produced, taken);
    for (seq, r) in taken.iter().enumerate() {
        assert_eq!(r % 100, seq as i64);
    }
}

/// One posting, a poster (the model's main thread) and two executors competing for the claim.
fn one_posting(name: &str, bound: usize, end: End) {
    loom_tests::check(name, bound, move || {
        let s = Shared::new();
        let s1 = s.clone();
        let once = thread::spawn(move || executor_once(&s1, 1, end));
        let s2 = s.clone();
        let until = thread::spawn(move || executor_until(&s2, 2, end, 1));

        post(&s, 0);
        // Two looks while the executors run (bounded, so the poster is no second spinner),
        // then one after they are done, which must find the result.
        let mut taken = s.entry.take();
        if taken.is_none() {
            thread::yield_now();
            taken = s.entry.take();
        }
        let mut produced = once.join().unwrap();
        produced.extend(until.join().unwrap());
        let taken = taken
            .or_else(|| s.entry.take())
            .expect("the call never completed");
        assert_eq!(
            s.entry.status(),
            status::FREE,
            "take did not free the entry"
        );
        check_results(end, &[taken], produced, s.claims());
    });
}

// One posting, three threads, a handful of atomic operations each: preemption bound 3 is enough
// to put any of post, the two claims, completion and take between any two others' steps, and
// runs in a fraction of a second.

#[test]
fn claimed_once_completed_and_taken() {
    one_posting("complete", 3, End::Complete);
}

#[test]
fn detached_claim_completed_later() {
    one_posting("detach", 3, End::Detach);
}

#[test]
fn dropped_claim_completes_with_ecanceled() {
    one_posting("drop", 3, End::Drop);
}

/// Reuse: the poster's second post rewrites the request cells the executor read for the first;
/// loom checks that complete (Release) / take (Acquire) order those reads before the rewrite.
/// One executor: the poster spins here too, and two spinners make loom's schedules unbounded.
#[test]
fn entry_reused_for_a_second_posting() {
    loom_tests::check("reuse", 3, || {
        let s = Shared::new();
        let s1 = s.clone();
        let exec = thread::spawn(move || executor_until(&s1, 1, End::Complete, 2));
        let mut taken = Vec::new();
        for seq in 0..2 {
            post(&s, seq);
            let ret = loop {
                if let Some(r) = s.entry.take() {
                    break r;
                }
                thread::yield_now();
            };
            assert_eq!(
                s.entry.status(),
                status::FREE,
                "take did not free the entry"
            );
            taken.push(ret);
        }
        let produced = exec.join().unwrap();
        check_results(End::Complete, &taken, produced, s.claims());
    });
}
