//! Core specialization end to end (the `threads` backend): `PerCore` pins each posting core's
//! syscall threads to its poster's CPU; `Dynamic` runs a syscall-heavy load from several posters
//! correctly while its controller measures, and the split it reports is where the syscall
//! threads really are. The conformance suite runs every case under both modes too
//! (`threads_percore`, `threads_dynamic`).
//!
//! Nothing here measures speed or asserts what the controller decides (that depends on the
//! machine): only that what it reports is consistent and true.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use flexsc_kmod::config::online_cpus;
use flexsc_kmod::{Config, Poster, Registration, Specialization, SplitStats, Syscall, register};

/// Longest a test may take before it counts as hung.
const LIMIT: Duration = Duration::from_secs(60);

/// The tests look at every syscall thread of the process: one at a time, each registration
/// (and its threads) gone before the next test starts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn getppid() -> Syscall {
    // SAFETY: getppid takes no arguments and touches no memory.
    unsafe { Syscall::new(libc::SYS_getppid, &[]) }
}

fn ppid() -> i64 {
    i64::from(std::os::unix::process::parent_id())
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    flexsc_kmod::raw::pin_to_cpu(cpu).expect("sched_setaffinity");
}

/// The CPUs each syscall thread may run on, by thread name (`flexsc-sys{n}`), from /proc.
fn syscall_thread_cpus() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !comm.starts_with("flexsc-sys") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        {
            out.entry(comm.to_string())
                .or_default()
                .push(list.trim().to_string());
        }
    }
    out
}

/// `n` calls of getppid from `p`, 64 at a time (post, submit, take), every result checked.
fn getppid_batches(p: &mut Poster, n: usize) {
    let call = getppid();
    let want = ppid();
    let mut left = n;
    while left > 0 {
        let batch: Vec<_> = (0..left.min(64)).map(|_| p.post(&call).unwrap()).collect();
        p.submit();
        left -= batch.len();
        for t in batch {
            assert_eq!(p.take(t), want);
        }
    }
}

#[test]
fn percore_pins_each_cores_syscall_threads_to_its_poster() {
    let _serial = one_at_a_time();
    let cpus = online_cpus();
    if cpus < 2 {
        return eprintln!("skipped: needs 2 CPUs");
    }
    let reg = register(Config {
        cores: 2,
        specialization: Specialization::PerCore,
        ..Config::default()
    })
    .unwrap();
    thread::scope(|s| {
        for core in 0..2 {
            let reg = &reg;
            s.spawn(move || {
                pin(core);
                let mut p = reg.poster(core).unwrap();
                getppid_batches(&mut p, 1_000);
            });
        }
    });
    let split = reg.split();
    assert_eq!((split.mode, split.per_core), ("percore", true));
    assert!(split.syscall_cores.is_empty());
    let threads = syscall_thread_cpus();
    assert_eq!(threads["flexsc-sys0"], ["0"], "{threads:?}");
    assert_eq!(threads["flexsc-sys1"], ["1"], "{threads:?}");
}

/// Where the syscall threads of posting core `core` must be at `split`, posters being pinned
/// to `home`.
fn expected_cpus(split: &SplitStats, core: usize, home: usize) -> String {
    if split.syscall_cores.is_empty() {
        home.to_string()
    } else {
        split.syscall_cores[core % split.syscall_cores.len()].to_string()
    }
}

/// The split and the syscall threads' CPUs, read when no change happened in between.
fn settled(reg: &Registration) -> (SplitStats, BTreeMap<String, Vec<String>>) {
    let started = Instant::now();
    loop {
        let before = reg.split();
        let threads = syscall_thread_cpus();
        if reg.split() == before {
            return (before, threads);
        }
        assert!(started.elapsed() < LIMIT, "the split never settled");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn dynamic_runs_a_syscall_heavy_load_and_reports_a_true_split() {
    let _serial = one_at_a_time();
    let cpus = online_cpus();
    let homes = [0, 1 % cpus];
    let reg = register(Config {
        cores: 2,
        specialization: Specialization::Dynamic {
            period: Duration::from_millis(2),
        },
        ..Config::default()
    })
    .unwrap();
    assert_eq!(reg.split().mode, "dynamic");
    let started = Instant::now();
    thread::scope(|s| {
        for (core, home) in homes.into_iter().enumerate() {
            let reg = &reg;
            s.spawn(move || {
                pin(home);
                let mut p = reg.poster(core).unwrap();
                // Until the controller has measured a few periods of this load.
                while reg.split().ticks < 10 {
                    getppid_batches(&mut p, 2_000);
                    assert!(started.elapsed() < LIMIT, "no ticks: {:?}", reg.split());
                }
            });
        }
    });
    let (split, threads) = settled(&reg);
    eprintln!("dynamic split after the load: {split:?}");
    assert!(split.user_ns > 0 && split.kernel_ns > 0, "{split:?}");
    assert!(split.syscall_cores.len() <= (cpus - 1).min(2), "{split:?}");
    assert_eq!(split.per_core, split.syscall_cores.is_empty());
    for (core, home) in homes.into_iter().enumerate() {
        let want = expected_cpus(&split, core, home);
        for got in &threads[&format!("flexsc-sys{core}")] {
            assert_eq!(*got, want, "core {core} at {split:?}: {threads:?}");
        }
    }
}

#[test]
fn static_lists_show_in_the_split() {
    let _serial = one_at_a_time();
    let reg = register(Config {
        specialization: Specialization::Static(vec![0]),
        ..Config::default()
    })
    .unwrap();
    let split = reg.split();
    assert_eq!(
        (split.mode, split.syscall_cores, split.per_core),
        ("static", vec![0], false)
    );
    // The older field means the same.
    let reg = register(Config {
        syscall_cores: vec![0],
        ..Config::default()
    })
    .unwrap();
    assert_eq!(reg.split().syscall_cores, [0]);
    assert_eq!(
        reg.config().effective_specialization().unwrap(),
        Specialization::Static(vec![0])
    );
}
