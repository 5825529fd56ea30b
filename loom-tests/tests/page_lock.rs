//! Loom models of the page lock and posting hint (`flexsc_kmod::page`): two drainers race for a
//! page while its poster posts into it; no entry is issued twice, and none is skipped: after the
//! poster's last post, one more pass (taken only if `has_work()` says so, as a syscall thread
//! does) leaves every entry DONE. One drainer returns `Step::Release` mid-page, as a syscall
//! thread does before a call that may block, and completes that call after unlocking.
#![cfg(loom)]

use std::sync::atomic::AtomicUsize as StdAtomicUsize;

use flexsc_kmod::entry::{Claim, status};
use flexsc_kmod::page::{PageControl, Step, SyscallPage};
use loom::sync::Arc;
use loom::thread;

struct Shared {
    page: SyscallPage,
    ctl: PageControl,
    /// Runs per slot (bookkeeping outside the model: loom runs every model thread on one OS
    /// thread, so std atomics are exact and add no interleavings).
    runs: [StdAtomicUsize; 3],
}

/// Runs a claimed call: counts it, completes it with its slot number (the poster put the slot in
/// the first argument).
fn run(s: &Shared, claim: Claim<'_>) {
    let slot = claim.args()[0] as usize;
    s.runs[slot].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    claim.complete(slot as i64);
}

/// One drain attempt, as in the syscall thread: skip the page if it has no work or is locked;
/// with `release_first`, stop at the first claim (a call that may block), unlock, then run it.
fn drain_pass(s: &Shared, release_first: bool) -> usize {
    if !s.ctl.has_work() {
        return 0;
    }
    let Some(guard) = s.ctl.try_lock() else {
        return 0;
    };
    let mut blocking = None;
    let n = guard.drain(&s.page, |claim| {
        if release_first {
            blocking = Some(claim);
            return Step::Release;
        }
        run(s, claim);
        Step::Continue
    });
    // The guard was consumed by drain: the page is unlocked before the blocking call runs.
    if let Some(claim) = blocking {
        run(s, claim);
    }
    n
}

/// `batches` lists the slots the poster posts, a note_posted after each batch (submit notes a
/// page once per batch). Drainer A releases mid-page on its first pass; drainer B does `b_passes`
/// plain passes.
fn model(name: &str, bound: usize, batches: &'static [&'static [usize]], b_passes: usize) {
    loom_tests::check_on_big_stack(name, bound, move || {
        let s = Arc::new(Shared {
            page: SyscallPage::new(),
            ctl: PageControl::new(),
            runs: Default::default(),
        });
        let sa = s.clone();
        let a = thread::spawn(move || drain_pass(&sa, true));
        let sb = s.clone();
        let b = thread::spawn(move || (0..b_passes).map(|_| drain_pass(&sb, false)).sum::<usize>());

        for batch in batches {
            for &slot in *batch {
                s.page.entries[slot].post(39, 1, [slot as u64, 0, 0, 0, 0, 0]);
            }
            s.ctl.note_posted();
        }
        let mut claimed = a.join().unwrap() + b.join().unwrap();
        // The final pass: a syscall thread that finds no work skips the page, so `has_work` must
        // be true if anything is left.
        claimed += drain_pass(&s, false);

        let posted: Vec<usize> = batches.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(
            claimed,
            posted.len(),
            "an entry was claimed twice or not at all"
        );
        for &slot in &posted {
            assert_eq!(
                s.runs[slot].load(std::sync::atomic::Ordering::Relaxed),
                1,
                "slot {slot} ran other than once"
            );
            assert_eq!(s.page.entries[slot].status(), status::DONE, "slot {slot}");
            assert_eq!(s.page.entries[slot].take(), Some(slot as i64));
        }
        assert!(!s.ctl.has_work(), "a full pass left the page marked");
        assert!(s.ctl.try_lock().is_some(), "the page stayed locked");
    });
}

// Preemption bound 3: races like these show within two or three preemptions (the CHESS
// observation loom's bounding relies on), and every drain pass loads all 64 statuses, so 3 is
// where the models stay within seconds (4 takes the bigger one to ~15 s).

/// Two entries, each its own batch: the drainers can run between the two posts.
#[test]
fn two_posts_two_drainers() {
    model("2 posts, 2 batches", 3, &[&[0], &[1]], 1);
}

/// Three entries in two batches (one note for the second two), drainer B passing twice.
#[test]
fn three_posts_two_batches() {
    model("3 posts, 2 batches", 3, &[&[0], &[1, 2]], 2);
}
