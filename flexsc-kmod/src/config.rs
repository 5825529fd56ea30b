//! What `register` is asked to set up, from code or from `FLEXSC_*` environment variables.

use std::io;
use std::time::Duration;

/// Which backend executes the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Syscall threads in user space: works everywhere, runs any syscall.
    Threads,
    /// io_uring for calls that have an opcode, syscall threads for the rest.
    Uring,
    /// The flexsc kernel module (`/dev/flexsc`): syscall threads that run the calls inside the
    /// kernel, without a trap per call (see `docs/kernel-module.md`).
    Kmod,
}

/// The kernel module's device node: its presence selects the `kmod` backend by default.
pub const KMOD_DEVICE: &str = "/dev/flexsc";

impl BackendKind {
    /// `Kmod` if the kernel module is loaded here (`/dev/flexsc` exists), else `fallback`.
    pub fn kmod_or(fallback: Self) -> Self {
        if std::path::Path::new(KMOD_DEVICE).exists() {
            Self::Kmod
        } else {
            fallback
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Self> {
        match s {
            "threads" => Ok(Self::Threads),
            "uring" => Ok(Self::Uring),
            "kmod" => Ok(Self::Kmod),
            other => Err(invalid(format!(
                "unknown backend {other:?} (expected `threads`, `uring` or `kmod`)"
            ))),
        }
    }
}

/// Core specialization (paper sections 3.6 and 5): on which cores system calls execute.
///
/// With the `threads` backend:
///
/// - [`PerCore`](Self::PerCore): each posting core has its own syscall threads, pinned to the CPUs
///   its poster runs on (the poster thread's affinity, read when it attaches) and draining only
///   that core's pages: the paper's single-core mode, batching on every core. They never spin
///   (the poster needs the CPU), whatever `executor_spins` says. Pin the posters (FlexSC-Threads
///   pins carrier i to CPU i) for true per-core execution; an unpinned poster's syscall threads
///   float over the same CPUs.
/// - [`Static`](Self::Static): user cores plus a static list of syscall cores (paper 3.6): one
///   pool of syscall threads for every posting core, pinned to the listed CPUs, a submit waking
///   the first listed core not already running one. An empty list (the default) leaves the
///   syscall threads unpinned.
/// - [`Dynamic`](Self::Dynamic): syscall threads per posting core as in `PerCore`, and a
///   controller that every `period` measures the CPU time of the posting threads (user work)
///   and of the syscall threads (kernel work) and moves the split: with C online CPUs it keeps
///   k syscall cores (the highest-numbered k CPUs, k at most min(C - 1, cores)) in proportion to
///   the kernel share, k = 0 meaning per-core execution, with hysteresis. The split in force is
///   [`Registration::split`](crate::Registration::split). See
///   `backend/threads/specialization.rs`.
///
/// With the `kmod` backend only `Static` is available: the module's syscall threads follow the
/// paper's static list of syscall cores (empty: one unpinned syscall core).
///
/// With the `uring` backend, `PerCore` is inline submission on the poster's thread (and per-core
/// fallback syscall threads), `Static(list)` runs each ring's SQPOLL kernel thread on a listed
/// CPU (ring of core c on `list[c % len]`, unless `sqpoll_cpu` names one) with the fallback
/// syscall threads pinned to the list, and `Dynamic` is rejected (`InvalidInput`): io_uring runs
/// a request inline on the posting thread or on io-wq workers the kernel places, so there is no
/// executor whose CPU the controller could move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Specialization {
    /// Syscall threads run on the posting core itself (the paper's single-core mode).
    PerCore,
    /// User cores plus this static list of syscall cores, in preference order (empty: syscall
    /// threads float).
    Static(Vec<usize>),
    /// The split between user and syscall cores follows the measured user/kernel CPU time.
    Dynamic {
        /// How often the controller measures and decides (1 ms ..= 10 s; default 20 ms).
        period: Duration,
    },
}

impl Specialization {
    /// `Dynamic` with the default period (20 ms).
    pub const fn dynamic() -> Self {
        Self::Dynamic {
            period: DEFAULT_DYNAMIC_PERIOD,
        }
    }

    /// The name `FLEXSC_SPECIALIZATION` uses for this mode.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PerCore => "percore",
            Self::Static(_) => "static",
            Self::Dynamic { .. } => "dynamic",
        }
    }
}

impl Default for Specialization {
    /// `Static` with an empty list: syscall threads float (the behaviour before specialization
    /// was selectable).
    fn default() -> Self {
        Self::Static(Vec::new())
    }
}

/// The default measurement period of [`Specialization::Dynamic`].
pub const DEFAULT_DYNAMIC_PERIOD: Duration = Duration::from_millis(20);

/// The registration request (flexsc_register's arguments).
#[derive(Clone, Debug)]
pub struct Config {
    /// Number of posting cores, each with its own syscall pages (one poster per core).
    pub cores: usize,
    /// Syscall pages per posting core (64 entries each). The paper's default is 8.
    pub pages_per_core: usize,
    /// The backend (default: `kmod` where `/dev/flexsc` exists, else `threads`).
    pub backend: BackendKind,
    /// Core specialization: where system calls execute (default: `Static(vec![])`, unpinned).
    pub specialization: Specialization,
    /// The older spelling of `specialization: Specialization::Static(list)`, kept so that
    /// existing users keep working: a non-empty list here stands for `Static(list)` when
    /// `specialization` is left at its default (or names the same list); with any other
    /// `specialization` it is an error. Prefer `specialization`.
    pub syscall_cores: Vec<usize>,
    /// How long an idle syscall thread spins before sleeping, in polls (0: sleep at once, the
    /// right choice when syscall threads share the posters' cores). `PerCore` syscall threads
    /// never spin; `Dynamic` ones only on a syscall core that is theirs alone; `Static` ones with
    /// no list (unpinned) only when there are more online CPUs than posting cores.
    pub executor_spins: u32,
    /// Upper bound on syscall threads (blocked ones included); default one per entry, as in the
    /// paper, capped at 1024. `PerCore` and `Dynamic` need at least `cores` (a thread per
    /// posting core).
    pub max_syscall_threads: usize,
    /// uring: run a SQPOLL kernel thread pinned to this CPU (for every ring; overrides the
    /// CPUs a `Static` list would give them; an error with `PerCore`).
    pub sqpoll_cpu: Option<usize>,
    /// uring: the cap on io-wq workers per ring, bounded and unbounded.
    pub iowq_max_workers: [u32; 2],
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cores: 1,
            pages_per_core: 8,
            backend: BackendKind::kmod_or(BackendKind::Threads),
            specialization: Specialization::default(),
            syscall_cores: Vec::new(),
            executor_spins: 20_000,
            max_syscall_threads: 1024,
            sqpoll_cpu: None,
            iowq_max_workers: [4, 16],
        }
    }
}

impl Config {
    /// The defaults, overridden by these environment variables (empty means unset):
    ///
    /// - `FLEXSC_BACKEND`: `threads`, `uring` or `kmod`;
    /// - `FLEXSC_PAGES`: syscall pages per posting core;
    /// - `FLEXSC_SPECIALIZATION`: `percore`, `static` or `dynamic` (see [`Specialization`];
    ///   `dynamic` uses the default period);
    /// - `FLEXSC_SYSCALL_CORES`: the syscall-core list of `static`, in the kernel's cpulist
    ///   format (e.g. `1,3-5`); alone it means `static` with that list; with `percore` or
    ///   `dynamic` it is an error;
    /// - `FLEXSC_SPINS`, `FLEXSC_MAX_SYSCALL_THREADS`, `FLEXSC_SQPOLL_CPU`: the fields of the same
    ///   names.
    ///
    /// A malformed value is an `InvalidInput` error naming the variable, never silently ignored.
    pub fn from_env() -> io::Result<Self> {
        let mut c = Self::default();
        if let Some(v) = var("FLEXSC_BACKEND") {
            c.backend = v.parse()?;
        }
        if let Some(v) = var("FLEXSC_PAGES") {
            c.pages_per_core = parse_num("FLEXSC_PAGES", &v)?;
        }
        c.specialization = specialization_from(
            var("FLEXSC_SPECIALIZATION").as_deref(),
            var("FLEXSC_SYSCALL_CORES").as_deref(),
        )?;
        if let Some(v) = var("FLEXSC_SPINS") {
            c.executor_spins = parse_num("FLEXSC_SPINS", &v)?;
        }
        if let Some(v) = var("FLEXSC_MAX_SYSCALL_THREADS") {
            c.max_syscall_threads = parse_num("FLEXSC_MAX_SYSCALL_THREADS", &v)?;
        }
        if let Some(v) = var("FLEXSC_SQPOLL_CPU") {
            c.sqpoll_cpu = Some(parse_num("FLEXSC_SQPOLL_CPU", &v)?);
        }
        Ok(c)
    }

    /// The specialization in force: `specialization`, or `Static(syscall_cores)` when only the
    /// older field is set. An error if the two disagree.
    pub fn effective_specialization(&self) -> io::Result<Specialization> {
        if self.syscall_cores.is_empty() {
            return Ok(self.specialization.clone());
        }
        match &self.specialization {
            Specialization::Static(list) if list.is_empty() || *list == self.syscall_cores => {
                Ok(Specialization::Static(self.syscall_cores.clone()))
            }
            other => Err(invalid(format!(
                "syscall_cores {:?} conflicts with specialization {other:?}: set only \
                 `specialization` (Static(list) replaces syscall_cores)",
                self.syscall_cores
            ))),
        }
    }

    /// Checks the request; the error says what is wrong.
    pub fn validate(&self) -> io::Result<()> {
        if self.cores == 0 {
            return Err(invalid("cores must be at least 1".into()));
        }
        if !(1..=4096).contains(&self.pages_per_core) {
            return Err(invalid(format!(
                "pages_per_core must be 1..=4096, got {}",
                self.pages_per_core
            )));
        }
        if self.max_syscall_threads == 0 {
            return Err(invalid("max_syscall_threads must be at least 1".into()));
        }
        let cpus = online_cpus();
        let spec = self.effective_specialization()?;
        match &spec {
            Specialization::Static(list) => {
                if let Some(&bad) = list.iter().find(|&&c| c >= cpus) {
                    return Err(invalid(format!(
                        "syscall core {bad} does not exist ({cpus} CPUs online)"
                    )));
                }
            }
            spec => {
                if let Specialization::Dynamic { period } = spec {
                    if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(period) {
                        return Err(invalid(format!(
                            "the dynamic specialization period must be 1 ms ..= 10 s, got \
                             {period:?}"
                        )));
                    }
                }
                if self.max_syscall_threads < self.cores {
                    return Err(invalid(format!(
                        "max_syscall_threads ({}) must be at least cores ({}) with the {} \
                         specialization: every posting core has its own syscall threads",
                        self.max_syscall_threads,
                        self.cores,
                        spec.name()
                    )));
                }
                match (self.backend, spec, self.sqpoll_cpu) {
                    (BackendKind::Uring, Specialization::Dynamic { .. }, _) => {
                        return Err(invalid(
                            "the dynamic specialization needs the threads backend: io_uring runs \
                             requests inline on the posting thread or on io-wq workers the kernel \
                             places, so there is no executor to move (use percore or static)"
                                .into(),
                        ));
                    }
                    (BackendKind::Uring, _, Some(cpu)) => {
                        return Err(invalid(format!(
                            "sqpoll_cpu {cpu} conflicts with the percore specialization (inline \
                             submission on the posting thread); use static for a SQPOLL thread"
                        )));
                    }
                    _ => {}
                }
            }
        }
        if self.backend == BackendKind::Kmod {
            if !matches!(spec, Specialization::Static(_)) {
                return Err(invalid(format!(
                    "the {} specialization needs the threads backend: the kmod backend's \
                     syscall threads follow a static list of syscall cores (use static)",
                    spec.name()
                )));
            }
            if self.sqpoll_cpu.is_some() {
                return Err(invalid(
                    "sqpoll_cpu applies to the uring backend, not kmod".into(),
                ));
            }
        }
        Ok(())
    }
}

/// `FLEXSC_SPECIALIZATION` and `FLEXSC_SYSCALL_CORES` (either may be unset) as a
/// [`Specialization`].
fn specialization_from(mode: Option<&str>, cores: Option<&str>) -> io::Result<Specialization> {
    let list = cores
        .map(|v| parse_cpu_list(v).map_err(|e| invalid(format!("FLEXSC_SYSCALL_CORES={v:?}: {e}"))))
        .transpose()?;
    match (mode.map(str::trim), list) {
        (None | Some("static"), list) => Ok(Specialization::Static(list.unwrap_or_default())),
        (Some(m @ ("percore" | "dynamic")), Some(_)) => Err(invalid(format!(
            "FLEXSC_SYSCALL_CORES applies to FLEXSC_SPECIALIZATION=static only, not {m:?} \
             (unset one of them)"
        ))),
        (Some("percore"), None) => Ok(Specialization::PerCore),
        (Some("dynamic"), None) => Ok(Specialization::dynamic()),
        (Some(other), _) => Err(invalid(format!(
            "FLEXSC_SPECIALIZATION={other:?}: expected `percore`, `static` or `dynamic`"
        ))),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> io::Result<T> {
    v.trim()
        .parse()
        .map_err(|_| invalid(format!("{name}={v:?} is not a valid number")))
}

/// CPUs the machine has online (`/sys/devices/system/cpu/online`: the machine's, not the calling
/// thread's affinity mask, which a pinned thread's children inherit), else what std reports.
pub fn online_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(s.trim()).ok())
        .and_then(|cpus| cpus.iter().max().map(|m| m + 1))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// CPUs the calling thread may run on (its affinity mask, and any cgroup CPU quota), as std
/// reports them: fewer than [`online_cpus`] when the process was started under `taskset` or a
/// cpuset.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses a CPU list such as `0,2-3` (the kernel's cpulist format), keeping its order.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a.trim().parse().map_err(|_| format!("bad CPU {a:?}"))?;
        let b: usize = b.trim().parse().map_err(|_| format!("bad CPU {b:?}"))?;
        if a > b {
            return Err(format!("empty range {part:?}"));
        }
        if b >= 4096 {
            return Err(format!("CPU {b} out of range"));
        }
        for c in a..=b {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        return Err("no CPUs listed".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// A thread pinned to one CPU may use one CPU, however many are online.
    #[test]
    fn usable_cpus_follow_the_affinity_mask() {
        std::thread::spawn(|| {
            // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity on
            // the calling thread take it by pointer, with its own size.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                let size = std::mem::size_of::<libc::cpu_set_t>();
                assert_eq!(libc::sched_setaffinity(0, size, &set), 0);
            }
            assert_eq!(usable_cpus(), 1);
            assert!(online_cpus() >= 1);
        })
        .join()
        .unwrap();
    }

    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("3,0-1").unwrap(), vec![3, 0, 1]);
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let c = Config {
            pages_per_core: 0,
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("pages_per_core")
        );
        let c = Config {
            syscall_cores: vec![4000],
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }

    #[test]
    fn specialization_from_the_environment() {
        let ok = |mode, cores| specialization_from(mode, cores).unwrap();
        assert_eq!(ok(None, None), Specialization::Static(vec![]));
        assert_eq!(ok(None, Some("2,0")), Specialization::Static(vec![2, 0]));
        assert_eq!(
            ok(Some("static"), Some("1")),
            Specialization::Static(vec![1])
        );
        assert_eq!(ok(Some("static"), None), Specialization::Static(vec![]));
        assert_eq!(ok(Some("percore"), None), Specialization::PerCore);
        assert_eq!(ok(Some(" dynamic "), None), Specialization::dynamic());
        let err = |mode, cores| specialization_from(mode, cores).unwrap_err().to_string();
        assert!(err(Some("percore"), Some("1")).contains("FLEXSC_SYSCALL_CORES applies"));
        assert!(err(Some("dynamic"), Some("1")).contains("\"dynamic\""));
        assert!(err(Some("Dynamic"), None).contains("FLEXSC_SPECIALIZATION=\"Dynamic\""));
        assert!(err(None, Some("x")).contains("FLEXSC_SYSCALL_CORES=\"x\""));
    }

    #[test]
    fn the_older_syscall_cores_field_is_static() {
        let legacy = |spec| Config {
            syscall_cores: vec![1, 0],
            specialization: spec,
            ..Config::default()
        };
        let want = Specialization::Static(vec![1, 0]);
        assert_eq!(
            legacy(Specialization::default())
                .effective_specialization()
                .unwrap(),
            want
        );
        assert_eq!(
            legacy(want.clone()).effective_specialization().unwrap(),
            want
        );
        for other in [
            Specialization::PerCore,
            Specialization::dynamic(),
            Specialization::Static(vec![1]),
        ] {
            let e = legacy(other).effective_specialization().unwrap_err();
            assert!(e.to_string().contains("conflicts"), "{e}");
        }
    }
}
