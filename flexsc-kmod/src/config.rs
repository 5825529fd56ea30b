//! What `register` is asked to set up, from code or from `FLEXSC_*` environment variables.

use std::io;

/// Which backend executes the entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Syscall threads in user space: works everywhere, runs any syscall.
    Threads,
    /// io_uring for calls that have an opcode, syscall threads for the rest.
    Uring,
}

impl std::str::FromStr for BackendKind {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Self> {
        match s {
            "threads" => Ok(Self::Threads),
            "uring" => Ok(Self::Uring),
            other => Err(invalid(format!(
                "unknown backend {other:?} (expected `threads` or `uring`)"
            ))),
        }
    }
}

/// The registration request (flexsc_register's arguments).
#[derive(Clone, Debug)]
pub struct Config {
    /// Number of posting cores, each with its own syscall pages (one poster per core).
    pub cores: usize,
    /// Syscall pages per posting core (64 entries each). The paper's default is 8.
    pub pages_per_core: usize,
    /// The backend.
    pub backend: BackendKind,
    /// The static list of syscall cores, in preference order (paper section 3.6). Empty: no
    /// pinning, syscall threads float.
    pub syscall_cores: Vec<usize>,
    /// How long an idle syscall thread spins before sleeping, in polls (0: sleep at once, the
    /// right choice when syscall threads share the posters' cores).
    pub executor_spins: u32,
    /// Upper bound on syscall threads (blocked ones included); default one per entry, as in the
    /// paper, capped at 1024.
    pub max_syscall_threads: usize,
    /// uring: run a SQPOLL kernel thread pinned to this CPU.
    pub sqpoll_cpu: Option<usize>,
    /// uring: the cap on io-wq workers per ring, bounded and unbounded.
    pub iowq_max_workers: [u32; 2],
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cores: 1,
            pages_per_core: 8,
            backend: BackendKind::Threads,
            syscall_cores: Vec::new(),
            executor_spins: 20_000,
            max_syscall_threads: 1024,
            sqpoll_cpu: None,
            iowq_max_workers: [4, 16],
        }
    }
}

impl Config {
    /// The defaults, overridden by `FLEXSC_BACKEND`, `FLEXSC_PAGES`, `FLEXSC_SYSCALL_CORES`
    /// (e.g. `1,3-5`), `FLEXSC_SPINS`, `FLEXSC_MAX_SYSCALL_THREADS` and `FLEXSC_SQPOLL_CPU`.
    /// A malformed value is an error naming the variable, never silently ignored.
    pub fn from_env() -> io::Result<Self> {
        let mut c = Self::default();
        if let Some(v) = var("FLEXSC_BACKEND") {
            c.backend = v.parse()?;
        }
        if let Some(v) = var("FLEXSC_PAGES") {
            c.pages_per_core = parse_num("FLEXSC_PAGES", &v)?;
        }
        if let Some(v) = var("FLEXSC_SYSCALL_CORES") {
            c.syscall_cores = parse_cpu_list(&v)
                .map_err(|e| invalid(format!("FLEXSC_SYSCALL_CORES={v:?}: {e}")))?;
        }
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
        if let Some(&bad) = self.syscall_cores.iter().find(|&&c| c >= cpus) {
            return Err(invalid(format!(
                "syscall core {bad} does not exist ({cpus} CPUs online)"
            )));
        }
        Ok(())
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
}
