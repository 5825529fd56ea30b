//! Loom models of the `threads` backend's activation protocol (`flexsc_kmod::activity`): a poster
//! publishes work (`PageControl::note_posted`) and kicks, while syscall threads deactivate,
//! re-check for work and sleep idle. Posted work is never left with every syscall thread asleep.
//!
//! The poster waits for its entry to be DONE on a completion doorbell, as `flexsc_wait` does, so a
//! lost wake-up shows as a deadlock: the poster and every syscall thread blocked on loom's futex
//! stand-in with nobody left to ring, which loom reports. After the wait the poster shuts the
//! threads down (flag, then `wake_all_idle`) and checks the page is drained.
#![cfg(loom)]

use flexsc_kmod::activity::Activity;
use flexsc_kmod::doorbell::Doorbell;
use flexsc_kmod::entry::status;
use flexsc_kmod::page::{PageControl, Step, SyscallPage};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// One execution's shared state: one page and its control (the work), the activation state, the
/// completion doorbell and the shutdown flag.
struct Shared {
    page: SyscallPage,
    ctl: PageControl,
    act: Activity,
    completions: Doorbell,
    shut: AtomicBool,
}

impl Shared {
    fn new(cores: usize) -> Arc<Self> {
        Arc::new(Self {
            page: SyscallPage::new(),
            ctl: PageControl::new(),
            act: Activity::new(cores),
            completions: Doorbell::new(),
            shut: AtomicBool::new(false),
        })
    }

    fn has_work(&self) -> bool {
        self.ctl.has_work()
    }

    fn is_shut_down(&self) -> bool {
        self.shut.load(Ordering::Acquire)
    }

    /// One drain pass over the page (as `drain_once`): entries run.
    fn drain_once(&self) -> usize {
        if !self.ctl.has_work() {
            return 0;
        }
        let Some(guard) = self.ctl.try_lock() else {
            return 0;
        };
        let ran = guard.drain(&self.page, |claim| {
            claim.complete(0);
            Step::Continue
        });
        if ran > 0 {
            self.ctl.note_completed(ran as u32);
            self.completions.ring();
        }
        ran
    }

    /// A syscall thread's main loop (`syscall_thread::run`, no spinning): become active, drain
    /// until a pass finds nothing, deactivate and re-check, else sleep idle; until shutdown.
    fn syscall_thread(&self, core: usize) {
        while !self.is_shut_down() {
            if !self.act.activate(core) {
                self.sleep_idle(core);
                continue;
            }
            while self.drain_once() > 0 {}
            if self.act.deactivate(core, || self.has_work()) && !self.is_shut_down() {
                // Work raced in after the last scan, or another core's thread holds the page
                // lock: retry. The real thread retries at once; the yield lets loom run the
                // lock holder instead of spinning this thread out of its branch budget.
                thread::yield_now();
                continue;
            }
            self.sleep_idle(core);
        }
    }

    fn sleep_idle(&self, core: usize) {
        self.act
            .sleep_idle(core, || self.has_work(), || self.is_shut_down());
    }

    /// The poster: posts one entry, notes the page, kicks (`Scheduler::submit`); then waits for
    /// the entry (`flexsc_wait`), and shuts the syscall threads down.
    fn post_and_wait(&self) {
        self.page.entries[0].post(39, 0, [0; 6]);
        self.ctl.note_posted();
        self.act.kick();
        self.completions.wait_until(
            0,
            None,
            || self.page.entries[0].status() == status::DONE,
            || false,
        );
        assert_eq!(self.page.entries[0].take(), Some(0));
        self.shut.store(true, Ordering::Release);
        self.act.wake_all_idle();
    }
}

/// One poster and a syscall thread on each core of `threads` (`threads[i]`: thread i's core),
/// over `cores` cores; every thread starts at the top of its main loop.
fn model(name: &str, bound: usize, cores: usize, threads: &'static [usize]) {
    loom_tests::check_on_big_stack(name, bound, move || {
        let s = Shared::new(cores);
        let handles: Vec<_> = threads
            .iter()
            .map(|&core| {
                let s = s.clone();
                thread::spawn(move || s.syscall_thread(core))
            })
            .collect();
        s.post_and_wait();
        for h in handles {
            h.join().unwrap();
        }
        assert!(!s.has_work(), "the page was left undrained");
    });
}

// Preemption bound 2 or 3: a lost wake-up needs one preemption between a side's write and its
// read (the poster between publishing and reading the active count, or the thread between
// clearing its flag and re-checking), plus at most one more to reach it.

#[test]
fn one_core_one_thread() {
    model("1 core, 1 thread", 3, 1, &[0]);
}

#[test]
fn one_core_two_threads() {
    model("1 core, 2 threads", 2, 1, &[0, 0]);
}

#[test]
fn two_cores_one_thread_each() {
    model("2 cores, 1 thread each", 2, 2, &[0, 1]);
}

/// The thread cap below the core count: core 1 has no thread, so a kick that rang it would be
/// lost. `deactivate` drops the active count before the core's flag, so a poster may see no
/// thread active while core 0 still looks active; the fences guarantee the thread then sees the
/// work.
#[test]
fn two_cores_one_thread() {
    model("2 cores, thread on core 0 only", 3, 2, &[0]);
}

/// Hand-off before a blocking call (`Scheduler::hand_off`, with a sibling alive on the core): the
/// active thread deactivates and re-checks; if a sibling is idle it rings it only when work raced
/// in, then blocks in its call (here: leaves the model); otherwise the sibling, between calls,
/// drains. The deactivation's re-check and the poster's kick are the only things that can wake
/// the sibling, so this is where the fence in `deactivate` is load-bearing (an idle thread's own
/// sleep re-check covers for it on the plain sleep path).
#[test]
fn hand_off_to_idle_sibling() {
    loom_tests::check_on_big_stack("hand-off to idle sibling", 3, || {
        let s = Shared::new(1);
        // The caller is the active thread of core 0 when it meets the blocking call.
        assert!(s.act.activate(0));
        let caller = {
            let s = s.clone();
            thread::spawn(move || {
                let work = s.act.deactivate(0, || s.has_work());
                if s.act.has_idle_thread(0) && work {
                    s.act.wake_one_idle(0);
                }
                // ... and blocks in its call until after the model's end.
            })
        };
        let sibling = {
            let s = s.clone();
            thread::spawn(move || s.syscall_thread(0))
        };
        s.post_and_wait();
        caller.join().unwrap();
        sibling.join().unwrap();
        assert!(!s.has_work(), "the page was left undrained");
    });
}
