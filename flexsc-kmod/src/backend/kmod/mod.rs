//! The `kmod` backend: the flexsc kernel module (`flexsc-kmod/module/`, `/dev/flexsc`) runs the
//! entries on in-kernel syscall threads (paper sections 3.4-3.6).
//!
//! - [`KmodBackend::start`] opens the device, registers the area's syscall pages and page
//!   controls (the module pins them) and starts the syscall threads: threads of this process,
//!   made here, that enter the module with `FLEXSC_IOC_WORKER` and stay in the kernel draining
//!   the pages, one per entry up to `max_syscall_threads` (the paper spawns one per entry),
//!   spread over the static syscall-core list. They never return to user space between entries,
//!   so no call traps: the poster enters the kernel once per batch (the kick) and to wait.
//! - The module's scheduler keeps at most one syscall thread per syscall core active, hands the
//!   core to an idle sibling before a call that may block, and wakes the first listed core not
//!   already running one (see `module/worker.c`).
//! - The carrier half (`KmodCore`): `submit` marks the posted pages and kicks the module
//!   (`FLEXSC_IOC_KICK`), `wait` is flexsc_wait (`FLEXSC_IOC_WAIT`: sleeps in the kernel until an
//!   entry of the core is done, or [`crate::Registration::wake`]), `interrupt` asks the module to
//!   end one entry's call (`FLEXSC_IOC_INTERRUPT`: the syscall thread running it is notified as a
//!   signal would, its blocked call answers `-EINTR`; one that has not started it never does).
//! - Shutdown: `FLEXSC_IOC_UNREGISTER` interrupts the blocked calls and sends the threads back,
//!   which are then joined; the device is closed (the pages unpinned) before the area is freed.

pub mod abi;
mod device;
mod syscall_thread;

use std::io;
use std::sync::Mutex;
use std::time::Instant;

use crate::area::SyscallArea;
use crate::backend::{Backend, CoreBackend, SplitStats};
use crate::config::{Config, Specialization};
use crate::entry::SyscallEntry;
use crate::os_thread::OsThread;
use crate::page::{ENTRIES_PER_PAGE, PAGE_SIZE, PageControl};
use crate::sync::{Arc, AtomicBool, Ordering};

use abi::RegisterArgs;
use device::Device;

/// The flexsc kernel module's syscall threads.
#[derive(Debug)]
pub struct KmodBackend {
    /// Declared before `area`: closed (the pages unpinned) before the area can be freed.
    dev: Arc<Device>,
    threads: Mutex<Vec<OsThread>>,
    syscall_cores: Vec<usize>,
    shut: AtomicBool,
    area: Arc<SyscallArea>,
}

impl KmodBackend {
    /// Opens `/dev/flexsc` (`Unsupported` if the module is not loaded), registers the area's
    /// pages, and starts the syscall threads.
    pub fn start(area: Arc<SyscallArea>, config: &Config) -> io::Result<Self> {
        let syscall_cores = match config.effective_specialization()? {
            Specialization::Static(list) => list,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the kmod backend has no {} specialization", other.name()),
                ));
            }
        };
        if area.pages().len() > abi::MAX_PAGES || syscall_cores.len() > abi::MAX_SYSCALL_CPUS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the kernel module takes at most {} syscall pages and {} syscall cores",
                    abi::MAX_PAGES,
                    abi::MAX_SYSCALL_CPUS
                ),
            ));
        }
        let dev = Arc::new(Device::open()?);
        let cpus: Vec<u32> = syscall_cores.iter().map(|&c| c as u32).collect();
        let args = RegisterArgs {
            entry_size: size_of::<SyscallEntry>() as u32,
            page_size: PAGE_SIZE as u32,
            entries_per_page: ENTRIES_PER_PAGE as u32,
            control_size: size_of::<PageControl>() as u32,
            pages: area.pages().as_ptr() as u64,
            controls: area.controls().as_ptr() as u64,
            syscall_cpus: if cpus.is_empty() {
                0
            } else {
                cpus.as_ptr() as u64
            },
            cores: area.cores() as u32,
            pages_per_core: area.pages_per_core() as u32,
            nr_syscall_cpus: cpus.len() as u32,
            flags: 0,
        };
        // SAFETY: the pages and controls belong to `area`, which this backend keeps alive (the
        // `area` field) until after `dev`, dropped first, is closed; they are used only as
        // syscall pages and page controls.
        unsafe { dev.register(&args) }?;
        let this = Self {
            dev,
            threads: Mutex::new(Vec::new()),
            syscall_cores,
            shut: AtomicBool::new(false),
            area,
        };
        let n = config
            .max_syscall_threads
            .min(this.area.pages().len() * ENTRIES_PER_PAGE)
            .max(1);
        let per_core = this.syscall_cores.len().max(1);
        for i in 0..n {
            // On an error `this` is dropped, which stops the threads already started.
            let thread = syscall_thread::spawn(this.dev.clone(), i, (i % per_core) as u32)?;
            this.lock_threads().push(thread);
        }
        Ok(this)
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<OsThread>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Backend for KmodBackend {
    fn name(&self) -> &'static str {
        "kmod"
    }

    fn attach(&self, core: usize) -> io::Result<Box<dyn CoreBackend>> {
        Ok(Box::new(KmodCore {
            dev: self.dev.clone(),
            area: self.area.clone(),
            core,
            seq: u32::MAX,
        }))
    }

    fn shutdown(&self) {
        if self.shut.swap(true, Ordering::AcqRel) {
            return;
        }
        // Cannot fail on a registered device: the registration is ours.
        let _ = self.dev.unregister();
        for t in self.lock_threads().drain(..) {
            // A syscall thread's panic is reported where it happened; shutdown goes on.
            let _ = t.join();
        }
    }

    fn wake(&self, core: usize) {
        // Only fails for a core that does not exist.
        let _ = self.dev.wake(core);
    }

    fn split(&self) -> SplitStats {
        SplitStats {
            mode: "static",
            syscall_cores: self.syscall_cores.clone(),
            ..SplitStats::default()
        }
    }
}

impl Drop for KmodBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The carrier half of one posting core.
#[derive(Debug)]
struct KmodCore {
    dev: Arc<Device>,
    area: Arc<SyscallArea>,
    core: usize,
    /// The core's completion count as the module last reported it.
    seq: u32,
}

impl CoreBackend for KmodCore {
    fn submit(&mut self, posted: &[u32]) {
        let mut last_page = u32::MAX;
        for &slot in posted {
            let page = slot / ENTRIES_PER_PAGE as u32;
            if page != last_page {
                self.area.control_of(self.core, slot).note_posted();
                last_page = page;
            }
        }
        // Cannot fail on a registered device.
        let _ = self.dev.kick();
    }

    fn interrupt(&mut self, slot: u32) {
        // Cannot fail for a slot of this core.
        let _ = self.dev.interrupt(self.core, slot);
    }

    fn wait(
        &mut self,
        ready: &mut dyn FnMut() -> bool,
        give_up: &mut dyn FnMut() -> bool,
        deadline: Option<Instant>,
    ) {
        loop {
            if ready() || give_up() {
                return;
            }
            let timeout_ns = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    i64::try_from(left.as_nanos()).unwrap_or(i64::MAX)
                }
            };
            let mut args = abi::WaitArgs {
                core: self.core as u32,
                seq: self.seq,
                timeout_ns,
            };
            // The module sleeps only while the count is still `seq`: a completion after the
            // `ready()` above makes it return at once (a signal: -EINTR, re-checked here too).
            match self.dev.wait(&mut args) {
                Ok(()) => self.seq = args.seq,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.seq = args.seq,
                // Not ours to wait on (a forked child): nothing will wake us here.
                Err(_) => return,
            }
        }
    }
}
