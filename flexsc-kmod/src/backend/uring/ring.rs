//! Creating a core's io_uring: setup flags (the newest first, falling back on older kernels),
//! the io-wq worker cap, and what the running kernel supports.

use std::io;

use io_uring::{IoUring, Probe, opcode};

use crate::config::{Config, Specialization};
use crate::page::ENTRIES_PER_PAGE;

/// How a ring was set up, which decides who may enter it and when completions appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (6.1+), created disabled: the first thread that uses the
    /// ring enables it and becomes its only issuer. Completion work runs only when that thread
    /// enters with `GETEVENTS`, so nothing interrupts the poster between its own calls.
    Deferred,
    /// `COOP_TASKRUN` (5.19+): completion work waits for the submitter's next kernel entry.
    Cooperative,
    /// No flags (older kernels): completion work interrupts the submitter.
    Plain,
    /// `SQPOLL | SQ_AFF`: a kernel thread pinned to one CPU consumes the submission queue, so
    /// submitting needs no system call while that thread is awake.
    SqPoll,
}

impl Mode {
    /// Whether the ring belongs to the thread that first submits to it: `Deferred` rings refuse
    /// any other (`-EEXIST`), and the others run a request's completion work on its submitter.
    pub(super) fn thread_bound(self) -> bool {
        self != Self::SqPoll
    }
}

/// What the running kernel's io_uring supports (probed once, at `start`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Caps {
    ops: [u64; 4],
    /// Reads and writes at offset -1 use and advance the file position (`FEAT_RW_CUR_POS`, 5.6).
    pub(super) cur_pos: bool,
}

impl Caps {
    /// Whether opcode `op` is supported.
    pub(super) fn has(&self, op: u8) -> bool {
        self.ops[op as usize / 64] & (1 << (op % 64)) != 0
    }

    /// Probes the kernel through a small throwaway ring, which also tells whether io_uring is
    /// usable at all in this process.
    pub(super) fn probe() -> io::Result<Self> {
        let ring = IoUring::new(2).map_err(setup_error)?;
        let mut probe = Probe::new();
        // A kernel too old to probe (< 5.6) supports none of the opcodes we use by number alone:
        // everything then goes to the syscall threads.
        let probed = ring.submitter().register_probe(&mut probe).is_ok();
        let mut ops = [0u64; 4];
        for op in 0..=u8::MAX {
            if probed && probe.is_supported(op) {
                ops[op as usize / 64] |= 1 << (op % 64);
            }
        }
        Ok(Self {
            ops,
            cur_pos: ring.params().is_feature_rw_cur_pos(),
        })
    }

    /// Whether `IORING_OP_FUTEX_WAIT` (6.7) can put flexsc_wait to sleep on the completion
    /// doorbell and the ring at once.
    pub(super) fn futex_wait(&self) -> bool {
        self.has(opcode::FutexWait::CODE)
    }

    /// These capabilities as on a kernel without `IORING_OP_FUTEX_WAIT`.
    #[cfg(test)]
    pub(super) fn without_futex_wait(self) -> Self {
        self.without(opcode::FutexWait::CODE)
    }

    /// These capabilities as on a kernel without opcode `op`.
    #[cfg(test)]
    pub(super) fn without(mut self, op: u8) -> Self {
        self.ops[op as usize / 64] &= !(1 << (op % 64));
        self
    }
}

/// The part of the configuration a ring is built from (kept to rebuild one, see `UringCore`).
#[derive(Clone, Debug)]
pub(super) struct Setup {
    entries: u32,
    /// The CPUs SQPOLL threads may be pinned to (`sqpoll_cpu`, or a `Static` list).
    sqpoll_cpus: Vec<u32>,
    /// This ring's SQPOLL CPU (None: no SQPOLL).
    sqpoll_cpu: Option<u32>,
    iowq_max_workers: [u32; 2],
}

/// How long an idle SQPOLL thread keeps polling before it sleeps, in milliseconds. Short: on a
/// small machine that thread costs a whole CPU while it polls.
const SQPOLL_IDLE_MS: u32 = 10;

impl Setup {
    pub(super) fn new(config: &Config) -> io::Result<Self> {
        // Core specialization: a static list of syscall cores is where SQPOLL threads go.
        let cpus = match (config.sqpoll_cpu, config.effective_specialization()?) {
            (Some(cpu), _) => vec![cpu],
            (None, Specialization::Static(list)) => list,
            (None, _) => Vec::new(),
        };
        let sqpoll_cpus = cpus
            .into_iter()
            .map(u32::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "sqpoll_cpu out of range"))?;
        let sqpoll_cpu = sqpoll_cpus.first().copied();
        // Every entry of the core can be in flight at once; the kernel clamps huge sizes
        // (SETUP_CLAMP) and a full queue is flushed mid-batch.
        let entries = (config.pages_per_core * ENTRIES_PER_PAGE).next_power_of_two();
        Ok(Self {
            entries: u32::try_from(entries).unwrap_or(u32::MAX),
            sqpoll_cpus,
            sqpoll_cpu,
            iowq_max_workers: config.iowq_max_workers,
        })
    }

    /// The setup of posting core `core`'s ring: its SQPOLL thread (if any) on the
    /// `core % len`-th CPU of the list, so the rings of several cores spread over it.
    pub(super) fn for_core(&self, core: usize) -> Self {
        let mut s = self.clone();
        if !s.sqpoll_cpus.is_empty() {
            s.sqpoll_cpu = Some(s.sqpoll_cpus[core % s.sqpoll_cpus.len()]);
        }
        s
    }

    /// The CPUs SQPOLL threads are pinned to (empty: no SQPOLL).
    pub(super) fn sqpoll_cpus(&self) -> &[u32] {
        &self.sqpoll_cpus
    }

    /// Creates the ring with the best flags the kernel accepts (each older kernel rejects the
    /// newer flags with `EINVAL`) and caps its io-wq workers.
    pub(super) fn create(&self) -> io::Result<(IoUring, Mode)> {
        let mut last = None;
        for &mode in self.ladder() {
            let mut b = IoUring::builder();
            // Forked children must not share our rings' memory.
            b.dontfork()
                .setup_clamp()
                .setup_cqsize(self.entries.saturating_mul(2));
            match mode {
                Mode::Deferred => {
                    b.setup_submit_all()
                        .setup_single_issuer()
                        .setup_defer_taskrun()
                        .setup_taskrun_flag()
                        .setup_r_disabled();
                }
                Mode::Cooperative => {
                    b.setup_submit_all()
                        .setup_coop_taskrun()
                        .setup_taskrun_flag();
                }
                Mode::Plain => {}
                Mode::SqPoll => {
                    b.setup_sqpoll(SQPOLL_IDLE_MS)
                        .setup_sqpoll_cpu(self.sqpoll_cpu.unwrap_or(0));
                }
            }
            match b.build(self.entries) {
                Ok(ring) => {
                    self.cap_workers(&ring)?;
                    return Ok((ring, mode));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
                Err(e) => return Err(self.error(e)),
            }
        }
        Err(self.error(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))))
    }

    fn ladder(&self) -> &'static [Mode] {
        if self.sqpoll_cpu.is_some() {
            // SQPOLL cannot be combined with DEFER_TASKRUN; without it, no fallback: the caller
            // asked for a polling thread on that CPU.
            &[Mode::SqPoll]
        } else {
            &[Mode::Deferred, Mode::Cooperative, Mode::Plain]
        }
    }

    /// IORING_REGISTER_IOWQ_MAX_WORKERS: blocking work (buffered writes, opens, fsync) runs on
    /// io-wq workers, which can otherwise grow to hundreds. Kernels before 5.15 lack the cap.
    fn cap_workers(&self, ring: &IoUring) -> io::Result<()> {
        let mut max = self.iowq_max_workers;
        match ring.submitter().register_iowq_max_workers(&mut max) {
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => Err(io::Error::new(
                e.kind(),
                format!("io_uring: capping io-wq workers at {max:?} failed: {e}"),
            )),
            _ => Ok(()),
        }
    }

    fn error(&self, e: io::Error) -> io::Error {
        match (self.sqpoll_cpu, e.raw_os_error()) {
            (Some(cpu), Some(libc::EINVAL)) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("io_uring: cannot pin the SQPOLL thread to CPU {cpu} ({e})"),
            ),
            (Some(_), Some(libc::EPERM)) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("io_uring: SQPOLL refused ({e}); kernels before 5.11 reserve it to root"),
            ),
            _ => setup_error(e),
        }
    }
}

/// Explains an `io_uring_setup` failure; "unavailable" ones say what to use instead.
fn setup_error(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::ENOSYS | libc::EACCES) => io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "io_uring is unavailable in this process ({e}): it is disabled \
                 (sysctl kernel.io_uring_disabled) or blocked by a seccomp filter such as \
                 Docker's default profile; use the `threads` backend (FLEXSC_BACKEND=threads)"
            ),
        ),
        _ => io::Error::new(e.kind(), format!("io_uring_setup failed: {e}")),
    }
}
