//! A two-way choice made by measurement: which of two ways of running a program's system calls
//! costs it less CPU time per call, re-measured as the program runs. The preload's hybrid rule
//! (`FLEXSC_DIRECT=auto`) uses it to choose whether calls on non-blocking descriptors run on the
//! carrier or are posted; the method is in [`Tuner`].

use std::time::Duration;

/// How long one epoch runs (at least).
pub const EPOCH: Duration = Duration::from_millis(100);
/// The calls an epoch needs before it counts.
pub const MIN_CALLS: u64 = 2_000;
/// How much cheaper (as a fraction) the other way must be to be chosen.
pub const MARGIN: f64 = 0.05;
/// Epochs between probes after a change, or while the two ways cost about the same.
pub const MIN_HOLD: u32 = 2;
/// The most epochs between probes (about 26 s).
pub const MAX_HOLD: u32 = 256;
/// The share of a settled process's time its probes may cost it: a probe that costs `r` times
/// the chosen way is repeated every `(r - 1) / PROBE_BUDGET` epochs or more.
pub const PROBE_BUDGET: f64 = 0.02;

/// What the next epoch runs, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The chosen way, for this many more epochs.
    Hold(u32),
    /// The other way, once.
    Probe,
    /// The chosen way, right after a probe.
    Reference,
}

/// The choice between two ways (`true` and `false`) of running calls, and its measurements.
///
/// - Time is cut into epochs (of [`EPOCH`], closed by the caller through
///   [`Tuner::end_epoch`]); an epoch's cost is the CPU time over the calls made in it.
/// - The chosen way runs for a hold of epochs, then the other for one epoch (the probe), then
///   the chosen one again; the probe's cost is compared with the mean of the two epochs around
///   it, so a load that drifts steadily does not bias it.
/// - The choice changes when the smoothed ratio (the mean of this comparison and the last) says
///   the other way is cheaper by more than [`MARGIN`]. Each comparison the probe clearly loses
///   doubles the hold, up to the length at which probes as dear as this one cost the process
///   [`PROBE_BUDGET`] of its time (and at most [`MAX_HOLD`] epochs): a probe 35% dearer comes
///   back every 18 epochs, one six times as dear every 250.
/// - An epoch with fewer than [`MIN_CALLS`] calls says too little about either: it goes on
///   until it has them (an idle process never switches).
#[derive(Debug)]
pub struct Tuner {
    /// The chosen way.
    chosen: bool,
    phase: Phase,
    /// CPU nanoseconds and calls at the start of the current epoch.
    start: (u64, u64),
    /// Cost of the last epoch on the chosen way before the probe.
    before: f64,
    /// Cost of the last probe.
    probe: f64,
    /// The smoothed ratio of the probe's cost to the chosen way's.
    score: f64,
    hold: u32,
    /// Times the choice changed.
    changes: u32,
}

/// One closed epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    /// The way it ran.
    pub way: bool,
    /// CPU nanoseconds per call.
    pub cost: f64,
    /// Calls made in it.
    pub calls: u64,
}

impl Tuner {
    /// A tuner choosing `first` first, with the process's totals (CPU nanoseconds, calls) now.
    pub fn new(first: bool, cpu_ns: u64, calls: u64) -> Self {
        Self {
            chosen: first,
            phase: Phase::Hold(MIN_HOLD),
            start: (cpu_ns, calls),
            before: 0.0,
            probe: 0.0,
            score: 1.0,
            hold: MIN_HOLD,
            changes: 0,
        }
    }

    /// The way chosen now (the probe aside).
    pub fn chosen(&self) -> bool {
        self.chosen
    }

    /// Times the choice changed.
    pub fn changes(&self) -> u32 {
        self.changes
    }

    /// The way the current epoch runs.
    pub fn running(&self) -> bool {
        match self.phase {
            Phase::Probe => !self.chosen,
            Phase::Hold(_) | Phase::Reference => self.chosen,
        }
    }

    /// Closes the current epoch at the process's totals `cpu_ns` and `calls`, if it has enough
    /// calls, and returns it; the next epoch runs [`Tuner::running`].
    pub fn end_epoch(&mut self, cpu_ns: u64, calls: u64) -> Option<Epoch> {
        if calls < self.start.1 || cpu_ns < self.start.0 {
            // Counters that went back (a new runtime, a fork child): measure from here.
            self.start = (cpu_ns, calls);
            return None;
        }
        let n = calls - self.start.1;
        if n < MIN_CALLS {
            return None;
        }
        let cost = cpu_ns.saturating_sub(self.start.0) as f64 / n as f64;
        let epoch = Epoch {
            way: self.running(),
            cost,
            calls: n,
        };
        self.start = (cpu_ns, calls);
        self.phase = match self.phase {
            Phase::Hold(left) => {
                self.before = cost;
                if left > 1 {
                    Phase::Hold(left - 1)
                } else {
                    Phase::Probe
                }
            }
            Phase::Probe => {
                self.probe = cost;
                Phase::Reference
            }
            Phase::Reference => {
                let r = self.probe / ((self.before + cost) / 2.0);
                self.score = (self.score + r) / 2.0;
                if self.score < 1.0 - MARGIN {
                    self.chosen = !self.chosen;
                    self.changes += 1;
                    self.score = 1.0;
                    self.hold = MIN_HOLD;
                } else if r > 1.0 + MARGIN {
                    let budget = ((r - 1.0) / PROBE_BUDGET).ceil().min(f64::from(MAX_HOLD));
                    self.hold = (self.hold * 2).min(budget as u32).max(MIN_HOLD);
                } else {
                    self.hold = MIN_HOLD;
                }
                Phase::Hold(self.hold)
            }
        };
        Some(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `epochs` epochs of `calls` each where a call costs `cost(way, i)` nanoseconds;
    /// returns the rule each epoch ran.
    fn run(t: &mut Tuner, epochs: usize, cost: impl Fn(bool, usize) -> f64) -> Vec<bool> {
        let (mut cpu, mut calls) = t.start;
        (0..epochs)
            .map(|i| {
                let rule = t.running();
                calls += 10_000;
                cpu += (cost(rule, i) * 10_000.0) as u64;
                let e = t.end_epoch(cpu, calls).expect("enough calls");
                assert_eq!(e.way, rule);
                rule
            })
            .collect()
    }

    /// A deterministic noise in [-a, a].
    fn noise(i: usize, a: f64) -> f64 {
        let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
        (x as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * a
    }

    #[test]
    fn it_moves_to_the_cheaper_rule_and_probes_ever_less() {
        let mut t = Tuner::new(true, 0, 0);
        let rules = run(&mut t, 200, |way, _| if way { 1000.0 } else { 700.0 });
        let first = rules.iter().position(|&c| !c).unwrap();
        assert!(first <= 3, "{rules:?}");
        assert!(!t.chosen);
        assert_eq!(t.changes, 1);
        // Settled: the probe costs 1000 / 700 - 1 = 43% more, so it comes back every
        // 22 epochs (PROBE_BUDGET), in 24.
        let late = rules[100..].iter().filter(|&&c| c).count();
        assert!(late <= 100 / 24 + 1, "{late}");
    }

    #[test]
    fn a_far_dearer_probe_is_made_rarely() {
        let mut t = Tuner::new(true, 0, 0);
        let rules = run(&mut t, 3000, |way, _| if way { 200.0 } else { 1400.0 });
        assert_eq!(t.changes, 0);
        // Seven times the cost: the hold grows to MAX_HOLD, and the probes cost the settled process
        // at most its budget.
        let late = &rules[1000..];
        let probes = late.iter().filter(|&&c| !c).count();
        assert!(
            probes <= late.len() / (MAX_HOLD as usize + 2) + 1,
            "{probes}"
        );
        let cost: f64 = late.iter().map(|&c| if c { 200.0 } else { 1400.0 }).sum();
        assert!(
            cost / (200.0 * late.len() as f64) < 1.0 + PROBE_BUDGET * 1.5,
            "{cost}"
        );
    }

    #[test]
    fn it_follows_a_change_in_the_load() {
        let mut t = Tuner::new(true, 0, 0);
        let rules = run(&mut t, 300, |way, i| match (i < 150, way) {
            (true, true) | (false, false) => 600.0,
            _ => 900.0,
        });
        assert!(rules[100..150].iter().filter(|&&c| c).count() >= 45);
        assert!(rules[250..].iter().filter(|&&c| !c).count() >= 45);
        assert_eq!(t.changes, 1, "{rules:?}");
    }

    #[test]
    fn noise_within_the_margin_changes_nothing() {
        let mut t = Tuner::new(true, 0, 0);
        run(&mut t, 1000, |_, i| 1000.0 * (1.0 + noise(i, 0.02)));
        assert_eq!(t.changes, 0);
    }

    #[test]
    fn a_steady_drift_does_not_bias_the_probe() {
        // Costs rise 1% per epoch, alike for both rules.
        let mut t = Tuner::new(false, 0, 0);
        run(&mut t, 300, |_, i| 500.0 * 1.01f64.powi(i as i32));
        assert_eq!(t.changes, 0);
    }

    #[test]
    fn counters_that_go_back_start_the_epoch_again() {
        let mut t = Tuner::new(true, 5_000_000, 50_000);
        assert_eq!(t.end_epoch(1_000, 10), None);
        let e = t
            .end_epoch(1_000 + 3_000_000, 10 + MIN_CALLS)
            .expect("enough calls");
        assert_eq!(e.cost, 3_000_000.0 / MIN_CALLS as f64);
    }

    #[test]
    fn an_epoch_with_few_calls_goes_on() {
        let mut t = Tuner::new(true, 0, 0);
        assert_eq!(t.end_epoch(1_000_000, MIN_CALLS - 1), None);
        let e = t.end_epoch(2_000_000, MIN_CALLS).expect("enough calls now");
        assert_eq!(e.calls, MIN_CALLS);
        assert_eq!(e.cost, 2_000_000.0 / MIN_CALLS as f64);
    }
}
