//! Hostile input for the kernel module (`/dev/flexsc`), through its raw ioctl interface: bad
//! ioctl arguments, hand-written entries (denylisted calls, numbers that are not system calls,
//! bad pointers, garbage status words), a nested call into the module, pages unmapped while
//! registered, random entries from child processes killed mid-batch, and compounds whose shared
//! buffer the module pins (or cannot pin: unmapped, read-only). Each must be answered
//! or refused without harming the kernel; scripts/vm-test.sh then checks the kernel log and that
//! the module unloads.
//!
//! Needs the module: without `/dev/flexsc` every test returns at once, saying so, unless
//! `FLEXSC_CONFORMANCE_REQUIRE_KMOD=1` (the VM) makes that a failure.
#![cfg(not(loom))]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use flexsc_kmod::backend::kmod::abi::{self, RegisterArgs, SlotArgs, WaitArgs, WorkerArgs};
use flexsc_kmod::config::KMOD_DEVICE;
use flexsc_kmod::entry::{NR_NOP, offsets, status};
use libc::*;

/// The environment variable naming a child process's role (see [`child`]).
const ROLE: &str = "FLEXSC_HOSTILE_ROLE";

/// Whether the module is here; if not, the test returns (or fails where it must be).
fn kmod_here(test: &str) -> bool {
    if std::path::Path::new(KMOD_DEVICE).exists() {
        return true;
    }
    let required = std::env::var("FLEXSC_CONFORMANCE_REQUIRE_KMOD").is_ok_and(|v| v == "1");
    assert!(!required, "{test}: no {KMOD_DEVICE}");
    eprintln!("NOT INCLUDED {test}: no {KMOD_DEVICE} (runs where the module is loaded)");
    false
}

fn open_dev() -> OwnedFd {
    File::options()
        .read(true)
        .write(true)
        .open(KMOD_DEVICE)
        .expect("open /dev/flexsc")
        .into()
}

/// `ioctl(fd, cmd, arg)`: the result, or `-errno`.
fn ioctl(fd: i32, cmd: u64, arg: u64) -> i64 {
    // SAFETY: the test passes, for each command, a pointer to a live struct of the size the
    // command encodes, a plain number, or an address the module must refuse (EFAULT).
    let r = unsafe { syscall(SYS_ioctl, fd as c_long, cmd, arg) };
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap() as i64)
    } else {
        r
    }
}

fn neg(e: i32) -> i64 {
    -(e as i64)
}

/// An anonymous mapping of `len` bytes, `prot`, unmapped on drop unless [`Mapping::unmap`]ped.
struct Mapping {
    addr: *mut u8,
    len: usize,
    mapped: bool,
}

impl Mapping {
    fn new(len: usize, prot: i32, flags: i32, fd: i32) -> Self {
        // SAFETY: a fresh mapping, chosen by the kernel.
        let p = unsafe { mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        assert_ne!(p, MAP_FAILED, "mmap");
        Self {
            addr: p.cast(),
            len,
            mapped: true,
        }
    }

    /// Replaces this mapping with fresh anonymous memory at the same address, in one step (the
    /// old pages are unmapped; no other mmap can take the address in between).
    fn replace(&mut self) {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
        let prot = PROT_READ | PROT_WRITE;
        // SAFETY: our own mapping, which nothing of Rust's lives in, replaced in place.
        let p = unsafe { mmap(self.addr.cast(), self.len, prot, flags, -1, 0) };
        assert_eq!(p.cast(), self.addr, "mmap over {:p}", self.addr);
    }

    fn anon(len: usize) -> Self {
        Self::new(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1)
    }

    fn at(&self, off: usize) -> u64 {
        self.addr as u64 + off as u64
    }

    fn unmap(&mut self) {
        // SAFETY: our own mapping; nothing of Rust's lives in it.
        assert_eq!(unsafe { munmap(self.addr.cast(), self.len) }, 0);
        self.mapped = false;
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.mapped {
            self.unmap();
        }
    }
}

/// Syscall pages and their controls in memory of our own, written by hand.
struct Area {
    pages: Mapping,
    ctl: Mapping,
    npages: usize,
}

impl Area {
    fn new(npages: usize) -> Self {
        Self {
            pages: Mapping::anon(npages * 4096),
            ctl: Mapping::anon((npages * 64).next_multiple_of(4096)),
            npages,
        }
    }

    fn args(&self) -> RegisterArgs {
        RegisterArgs {
            entry_size: 64,
            page_size: 4096,
            entries_per_page: 64,
            control_size: 64,
            pages: self.pages.at(0),
            controls: self.ctl.at(0),
            syscall_cpus: 0,
            cores: 1,
            pages_per_core: self.npages as u32,
            nr_syscall_cpus: 0,
            flags: 0,
        }
    }

    fn status_word(&self, i: usize) -> &AtomicU32 {
        assert!(self.pages.mapped && i < self.npages * 64);
        // SAFETY: entry i's status word: 4-byte aligned, inside our live mapping, shared with
        // the module only through atomic accesses.
        unsafe { AtomicU32::from_ptr(self.pages.addr.add(i * 64 + offsets::STATUS).cast()) }
    }

    fn status(&self, i: usize) -> u32 {
        self.status_word(i).load(Ordering::Acquire)
    }

    fn ret(&self, i: usize) -> i64 {
        // SAFETY: entry i's return value, read after an Acquire load saw DONE.
        unsafe { std::ptr::read_volatile(self.pages.addr.add(i * 64 + offsets::RET).cast()) }
    }

    /// Writes request `nr(args)` into entry i, then `status` (Release), then bumps the page's
    /// posting count.
    fn post(&self, i: usize, st: u32, nr: u16, args: [u64; 6]) {
        let e = self.status_word(i).as_ptr().cast::<u8>();
        // SAFETY: the entry is ours (FREE, DONE or garbage: no executor touches it) and inside
        // our mapping; the status store below publishes the request.
        unsafe {
            std::ptr::write_volatile(e.add(offsets::NR).cast::<u16>(), nr);
            std::ptr::write_volatile(e.add(offsets::NARGS), 6u8);
            std::ptr::write_volatile(e.add(offsets::ARGS).cast::<[u64; 6]>(), args);
        }
        self.status_word(i).store(st, Ordering::Release);
        // SAFETY: the page's `posted` word (offset 4 of its 64-byte control), aligned, ours.
        let posted = unsafe { AtomicU32::from_ptr(self.ctl.addr.add(i / 64 * 64 + 4).cast()) };
        posted.fetch_add(1, Ordering::Release);
    }
}

/// Syscall threads entering the module through `fd` until it is unregistered.
struct Workers(Vec<JoinHandle<i64>>);

impl Workers {
    fn start(fd: i32, n: usize) -> Self {
        Self(
            (0..n)
                .map(|_| {
                    thread::spawn(move || {
                        // SAFETY: blocks every signal in this thread; no old mask asked.
                        unsafe {
                            let mut all = std::mem::zeroed::<sigset_t>();
                            sigfillset(&mut all);
                            pthread_sigmask(SIG_BLOCK, &all, std::ptr::null_mut());
                        }
                        let args = WorkerArgs::default();
                        loop {
                            let r = ioctl(fd, abi::IOC_WORKER, &args as *const _ as u64);
                            if r != neg(EINTR) {
                                return r;
                            }
                        }
                    })
                })
                .collect(),
        )
    }

    /// Unregisters and joins, within `limit`; every worker must have left with 0.
    fn stop(self, fd: i32, limit: Duration) {
        assert_eq!(ioctl(fd, abi::IOC_UNREGISTER, 0), 0);
        let deadline = Instant::now() + limit;
        for h in self.0 {
            while !h.is_finished() {
                assert!(Instant::now() < deadline, "a syscall thread did not leave");
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(h.join().unwrap(), 0, "FLEXSC_IOC_WORKER's result");
        }
    }
}

/// Waits until entries `slots` of `area` are DONE, kicking and waiting in the module.
fn await_done(fd: i32, area: &Area, slots: impl Iterator<Item = usize> + Clone, what: &str) {
    assert_eq!(ioctl(fd, abi::IOC_KICK, 0), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut w = WaitArgs {
        core: 0,
        seq: 0,
        timeout_ns: 2_000_000,
    };
    while !slots.clone().all(|i| area.status(i) == status::DONE) {
        assert!(Instant::now() < deadline, "{what}: not answered");
        let r = ioctl(fd, abi::IOC_WAIT, &mut w as *mut _ as u64);
        assert!(r == 0 || r == neg(EINTR), "WAIT: {r}");
    }
}

#[test]
fn bad_ioctl_arguments_are_refused() {
    if !kmod_here("bad_ioctl_arguments_are_refused") {
        return;
    }
    let dev = open_dev();
    let fd = dev.as_raw_fd();
    let area = Area::new(2);
    let reg = |a: &RegisterArgs| ioctl(fd, abi::IOC_REGISTER, a as *const _ as u64);
    let w = WorkerArgs::default();
    // Nothing registered yet.
    assert_eq!(
        ioctl(fd, abi::IOC_WORKER, &w as *const _ as u64),
        neg(ENXIO)
    );
    assert_eq!(ioctl(fd, abi::IOC_KICK, 0), neg(ENXIO));
    assert_eq!(ioctl(fd, abi::IOC_REGISTER, 1), neg(EFAULT));
    assert_eq!(
        ioctl(fd, abi::IOC_REGISTER, 0xffff_8880_0000_0000),
        neg(EFAULT)
    );

    let good = area.args();
    let guard = Mapping::new(8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    let ro = Mapping::new(8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    // A shared file mapping: page cache, which the module must not pin.
    let path = std::env::temp_dir().join(format!("flexsc-hostile-{}", std::process::id()));
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(8192).unwrap();
    let shared = Mapping::new(8192, PROT_READ | PROT_WRITE, MAP_SHARED, file.as_raw_fd());
    std::fs::remove_file(&path).unwrap();
    // SAFETY: fills the first page of the shared mapping so that it is really there.
    unsafe { std::ptr::write_bytes(shared.addr, 0, 8192) };
    let cpus = [4095u32];
    let cases: Vec<(&str, RegisterArgs, i32)> = vec![
        (
            "entry size",
            RegisterArgs {
                entry_size: 32,
                ..good
            },
            EPROTO,
        ),
        (
            "page size",
            RegisterArgs {
                page_size: 8192,
                ..good
            },
            EPROTO,
        ),
        (
            "control size",
            RegisterArgs {
                control_size: 128,
                ..good
            },
            EPROTO,
        ),
        ("flags", RegisterArgs { flags: 1, ..good }, EINVAL),
        ("no cores", RegisterArgs { cores: 0, ..good }, EINVAL),
        (
            "no pages",
            RegisterArgs {
                pages_per_core: 0,
                ..good
            },
            EINVAL,
        ),
        (
            "too many pages",
            RegisterArgs {
                cores: 0x1_0000,
                pages_per_core: 0x1_0000,
                ..good
            },
            EINVAL,
        ),
        (
            "4097 pages",
            RegisterArgs {
                cores: 17,
                pages_per_core: 241,
                ..good
            },
            EINVAL,
        ),
        (
            "misaligned pages",
            RegisterArgs {
                pages: good.pages + 64,
                ..good
            },
            EINVAL,
        ),
        (
            "misaligned controls",
            RegisterArgs {
                controls: good.controls + 8,
                ..good
            },
            EINVAL,
        ),
        ("null pages", RegisterArgs { pages: 0, ..good }, EINVAL),
        (
            "kernel pages",
            RegisterArgs {
                pages: 0xffff_8880_0000_0000,
                ..good
            },
            EFAULT,
        ),
        (
            "PROT_NONE pages",
            RegisterArgs {
                pages: guard.at(0),
                ..good
            },
            EFAULT,
        ),
        (
            "read-only pages",
            RegisterArgs {
                pages: ro.at(0),
                ..good
            },
            EFAULT,
        ),
        (
            "read-only controls",
            RegisterArgs {
                controls: ro.at(0),
                ..good
            },
            EFAULT,
        ),
        (
            "page cache pages",
            RegisterArgs {
                pages: shared.at(0),
                ..good
            },
            EINVAL,
        ),
        (
            "pages beyond the mapping",
            RegisterArgs {
                pages_per_core: 200,
                ..good
            },
            EFAULT,
        ),
        (
            "no CPU 4095",
            RegisterArgs {
                syscall_cpus: cpus.as_ptr() as u64,
                nr_syscall_cpus: 1,
                ..good
            },
            EINVAL,
        ),
        (
            "bad CPU list",
            RegisterArgs {
                syscall_cpus: 1,
                nr_syscall_cpus: 1,
                ..good
            },
            EFAULT,
        ),
        (
            "long CPU list",
            RegisterArgs {
                syscall_cpus: 1,
                nr_syscall_cpus: 257,
                ..good
            },
            EINVAL,
        ),
    ];
    for (what, args, errno) in &cases {
        assert_eq!(reg(args), neg(*errno), "REGISTER with {what}");
    }
    assert_eq!(reg(&good), 0);
    assert_eq!(reg(&good), neg(EBUSY), "a second REGISTER");

    let bad_core = WorkerArgs {
        syscall_core: 1,
        flags: 0,
    };
    assert_eq!(
        ioctl(fd, abi::IOC_WORKER, &bad_core as *const _ as u64),
        neg(EINVAL)
    );
    let flags = WorkerArgs {
        syscall_core: 0,
        flags: 1,
    };
    assert_eq!(
        ioctl(fd, abi::IOC_WORKER, &flags as *const _ as u64),
        neg(EINVAL)
    );
    assert_eq!(ioctl(fd, abi::IOC_WORKER, 1), neg(EFAULT));
    let mut wait = WaitArgs {
        core: 1,
        seq: 0,
        timeout_ns: 0,
    };
    assert_eq!(
        ioctl(fd, abi::IOC_WAIT, &mut wait as *mut _ as u64),
        neg(EINVAL)
    );
    assert_eq!(ioctl(fd, abi::IOC_WAIT, 1), neg(EFAULT));
    assert_eq!(ioctl(fd, abi::IOC_WAKE, 1), neg(EINVAL));
    assert_eq!(ioctl(fd, abi::IOC_WAKE, u64::MAX), neg(EINVAL));
    let slot = SlotArgs { core: 0, slot: 128 };
    assert_eq!(
        ioctl(fd, abi::IOC_INTERRUPT, &slot as *const _ as u64),
        neg(EINVAL)
    );
    let slot = SlotArgs { core: 7, slot: 0 };
    assert_eq!(
        ioctl(fd, abi::IOC_INTERRUPT, &slot as *const _ as u64),
        neg(EINVAL)
    );
    assert_eq!(ioctl(fd, 0xF5_00, 0), neg(ENOTTY));
    assert_eq!(ioctl(fd, abi::IOC_REGISTER + 0x40_0000, 0), neg(ENOTTY));

    // A bounded wait: nothing completes, it returns after its timeout with the count.
    let mut wait = WaitArgs {
        core: 0,
        seq: 0,
        timeout_ns: 0,
    };
    assert_eq!(ioctl(fd, abi::IOC_WAIT, &mut wait as *mut _ as u64), 0);
    let t = Instant::now();
    wait.timeout_ns = 20_000_000;
    assert_eq!(ioctl(fd, abi::IOC_WAIT, &mut wait as *mut _ as u64), 0);
    assert!(
        t.elapsed() >= Duration::from_millis(15),
        "{:?}",
        t.elapsed()
    );

    // Another process (a child after fork) may not use the registration.
    // SAFETY: the child makes one raw system call and _exits: async-signal-safe only.
    let pid = unsafe { fork() };
    if pid == 0 {
        let w = WorkerArgs::default();
        // SAFETY: as above.
        unsafe {
            let r = syscall(
                SYS_ioctl,
                fd as c_long,
                abi::IOC_WORKER,
                &w as *const WorkerArgs,
            );
            _exit(if r < 0 { *__errno_location() } else { 0 });
        }
    }
    let mut st = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { waitpid(pid, &mut st, 0) }, pid);
    assert!(WIFEXITED(st) && WEXITSTATUS(st) == EPERM, "child: {st:#x}");

    assert_eq!(ioctl(fd, abi::IOC_UNREGISTER, 0), 0);
    assert_eq!(ioctl(fd, abi::IOC_UNREGISTER, 0), 0, "idempotent");
    assert_eq!(
        ioctl(fd, abi::IOC_WORKER, &w as *const _ as u64),
        0,
        "no work after the end"
    );
}

#[test]
fn hand_written_entries_are_answered_or_refused() {
    if !kmod_here("hand_written_entries_are_answered_or_refused") {
        return;
    }
    let dev = open_dev();
    let fd = dev.as_raw_fd();
    let area = Area::new(2);
    assert_eq!(
        ioctl(fd, abi::IOC_REGISTER, &area.args() as *const _ as u64),
        0
    );
    let workers = Workers::start(fd, 3);
    let zero = File::open("/dev/zero").unwrap();
    let null = File::options().write(true).open("/dev/null").unwrap();
    let guard = Mapping::new(4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    let bad = [1u64, guard.at(0), 0xffff_8880_0000_0000];
    let marker = b"flexsc-pwned\0";
    let ppid = std::os::unix::process::parent_id() as i64;
    let z = zero.as_raw_fd() as u64;
    let n = null.as_raw_fd() as u64;
    let mut expect: Vec<(u16, [u64; 6], i64)> = vec![
        // Must never run on a syscall thread.
        (
            SYS_clone as u16,
            [
                CLONE_VM as u64 | CLONE_THREAD as u64 | CLONE_SIGHAND as u64,
                0,
                0,
                0,
                0,
                0,
            ],
            neg(EOPNOTSUPP),
        ),
        (SYS_clone3 as u16, [0; 6], neg(EOPNOTSUPP)),
        (SYS_fork as u16, [0; 6], neg(EOPNOTSUPP)),
        (SYS_vfork as u16, [0; 6], neg(EOPNOTSUPP)),
        (
            SYS_execve as u16,
            [marker.as_ptr() as u64, 0, 0, 0, 0, 0],
            neg(EOPNOTSUPP),
        ),
        (SYS_execveat as u16, [0; 6], neg(EOPNOTSUPP)),
        (SYS_exit as u16, [0; 6], neg(EOPNOTSUPP)),
        (SYS_exit_group as u16, [0; 6], neg(EOPNOTSUPP)),
        (SYS_rt_sigreturn as u16, [0; 6], neg(EOPNOTSUPP)),
        (SYS_gettid as u16, [0; 6], neg(EOPNOTSUPP)),
        (
            SYS_prctl as u16,
            [PR_SET_NAME as u64, marker.as_ptr() as u64, 0, 0, 0, 0],
            neg(EOPNOTSUPP),
        ),
        (
            SYS_arch_prctl as u16,
            [0x1002, 0, 0, 0, 0, 0],
            neg(EOPNOTSUPP),
        ),
        (SYS_iopl as u16, [3, 0, 0, 0, 0, 0], neg(EOPNOTSUPP)),
        (SYS_setuid as u16, [0; 6], neg(EOPNOTSUPP)),
        (
            SYS_unshare as u16,
            [CLONE_FS as u64, 0, 0, 0, 0, 0],
            neg(EOPNOTSUPP),
        ),
        (
            SYS_io_uring_setup as u16,
            [1, 0, 0, 0, 0, 0],
            neg(EOPNOTSUPP),
        ),
        // Not system calls.
        (451, [0; 6], neg(ENOSYS)),
        (4000, [0; 6], neg(ENOSYS)),
        (0xEFFF, [0; 6], neg(ENOSYS)),
        (NR_NOP, [0; 6], 0),
        (0xF002, [0; 6], neg(ENOSYS)),
        // A compound whose header address is null, or unmapped: -EFAULT, nothing run.
        (0xF001, [0; 6], neg(EFAULT)),
        (0xF001, [8, 0, 0, 0, 0, 0], neg(EFAULT)),
        (0xFFFF, [0; 6], neg(ENOSYS)),
        // A call into the module from an entry: refused, never nested.
        (
            SYS_ioctl as u16,
            [fd as u64, abi::IOC_KICK, 0, 0, 0, 0],
            neg(EDEADLK),
        ),
        (
            SYS_ioctl as u16,
            [fd as u64, abi::IOC_WORKER, 0, 0, 0, 0],
            neg(EDEADLK),
        ),
        // Ordinary calls still work.
        (SYS_getppid as u16, [0; 6], ppid),
    ];
    // Bad pointers: whatever the same call made synchronously answers (-EFAULT, or the count
    // where the kernel never reads the buffer, as write() to /dev/null).
    for p in bad {
        for (nr, args) in [
            (SYS_read, [z, p, 8, 0, 0, 0]),
            (SYS_write, [n, p, 8, 0, 0, 0]),
            (SYS_newfstatat, [AT_FDCWD as u64, p, p, 0, 0, 0]),
            (SYS_pipe2, [p, 0, 0, 0, 0, 0]),
            (SYS_clock_gettime, [CLOCK_MONOTONIC as u64, p, 0, 0, 0, 0]),
        ] {
            // SAFETY: each call only fails on the bad pointer (or ignores it), touching nothing.
            let r = unsafe { syscall(nr, args[0], args[1], args[2], args[3]) };
            let want = if r < 0 {
                -(std::io::Error::last_os_error().raw_os_error().unwrap() as i64)
            } else {
                r
            };
            assert!(want == 8 || want == neg(EFAULT), "syscall {nr}: {want}");
            expect.push((nr as u16, args, want));
        }
    }
    assert!(expect.len() <= 64 + 40);
    // Garbage status words in the second page: the module leaves them alone.
    let garbage = [0x5A5A_5A5Au32, status::BUSY, status::DONE, 4, u32::MAX];
    for (k, &g) in garbage.iter().enumerate() {
        area.post(64 + k, g, SYS_getppid as u16, [0; 6]);
    }
    for (i, (nr, args, _)) in expect.iter().enumerate().take(64) {
        area.post(i, status::SUBMITTED, *nr, *args);
    }
    let n_first = expect.len().min(64);
    await_done(fd, &area, 0..n_first, "hand-written entries");
    for (i, (nr, args, want)) in expect.iter().enumerate().take(n_first) {
        assert_eq!(area.ret(i), *want, "entry {i}: syscall {nr}({args:x?})");
    }
    // The rest, in the first page again.
    for (i, (nr, args, _)) in expect.iter().enumerate().skip(64) {
        area.post(i - 64, status::SUBMITTED, *nr, *args);
    }
    await_done(
        fd,
        &area,
        0..expect.len().saturating_sub(64),
        "the second round",
    );
    for (i, (nr, args, want)) in expect.iter().enumerate().skip(64) {
        assert_eq!(
            area.ret(i - 64),
            *want,
            "entry {i}: syscall {nr}({args:x?})"
        );
    }
    for (k, &g) in garbage.iter().enumerate() {
        assert_eq!(
            area.status(64 + k),
            g,
            "garbage status word {k} was touched"
        );
    }
    let comm = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap_or_default())
        .collect::<Vec<_>>();
    assert!(
        !comm.iter().any(|c| c.starts_with("flexsc-pwned")),
        "{comm:?}"
    );
    workers.stop(fd, Duration::from_secs(10));
}

#[test]
fn pages_unmapped_while_registered() {
    if !kmod_here("pages_unmapped_while_registered") {
        return;
    }
    let dev = open_dev();
    let fd = dev.as_raw_fd();
    let mut area = Area::new(1);
    assert_eq!(
        ioctl(fd, abi::IOC_REGISTER, &area.args() as *const _ as u64),
        0
    );
    let workers = Workers::start(fd, 4);
    let mut fds = [0i32; 2];
    // SAFETY: a pipe into a live array.
    assert_eq!(unsafe { pipe2(fds.as_mut_ptr(), O_CLOEXEC) }, 0);
    let buf = Box::new([0u8; 64]);
    for i in 0..2 {
        area.post(
            i,
            status::SUBMITTED,
            SYS_read as u16,
            [fds[0] as u64, buf.as_ptr() as u64, 8, 0, 0, 0],
        );
    }
    for i in 2..40 {
        area.post(i, status::SUBMITTED, SYS_getppid as u16, [0; 6]);
    }
    assert_eq!(ioctl(fd, abi::IOC_KICK, 0), 0);
    // The controls go; the pages are replaced by fresh memory at the same address: the module
    // writes only to the pages it pinned, never here (kicks find the old pages, whose entries
    // complete there).
    area.ctl.unmap();
    area.pages.replace();
    for _ in 0..40 {
        assert_eq!(ioctl(fd, abi::IOC_KICK, 0), 0);
    }
    // SAFETY: wakes one of the blocked reads through the pipe we own.
    assert_eq!(unsafe { write(fds[1], b"12345678".as_ptr().cast(), 8) }, 8);
    thread::sleep(Duration::from_millis(50));
    workers.stop(fd, Duration::from_secs(10));
    // SAFETY: reads the fresh mapping, ours.
    let bytes = unsafe { std::slice::from_raw_parts(area.pages.addr, 4096) };
    assert!(
        bytes.iter().all(|&b| b == 0),
        "the module wrote into memory it never pinned"
    );
    drop(dev);
    // SAFETY: closes our pipe.
    unsafe {
        close(fds[0]);
        close(fds[1]);
    }
}

/// Numbers never posted at random: they could take the test harness down (signals to other
/// processes, the clock, reboot, modules, mounts, scheduling classes, ioctls on the console), or
/// the fuzzing process's own memory and descriptors.
const NOT_AT_RANDOM: &[c_long] = &[
    SYS_kill,
    SYS_tkill,
    SYS_tgkill,
    SYS_rt_sigqueueinfo,
    SYS_rt_tgsigqueueinfo,
    SYS_pidfd_send_signal,
    SYS_reboot,
    SYS_kexec_load,
    SYS_kexec_file_load,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_swapon,
    SYS_swapoff,
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
    SYS_settimeofday,
    SYS_clock_settime,
    SYS_adjtimex,
    SYS_clock_adjtime,
    SYS_sched_setscheduler,
    SYS_sched_setattr,
    SYS_sched_setparam,
    SYS_setpriority,
    SYS_ioctl,
    SYS_prlimit64,
    SYS_setrlimit,
    SYS_process_vm_writev,
    SYS_setsid,
    SYS_setpgid,
    SYS_vhangup,
    SYS_syslog,
    SYS_acct,
    SYS_quotactl,
    SYS_mlockall,
    SYS_chroot,
    SYS_fanotify_init,
    SYS_perf_event_open,
    SYS_bpf,
    SYS_alarm,
    // Our own memory and descriptors (the loop needs them to go on).
    SYS_mmap,
    SYS_munmap,
    SYS_mremap,
    SYS_mprotect,
    SYS_pkey_mprotect,
    SYS_madvise,
    SYS_process_madvise,
    SYS_brk,
    SYS_shmdt,
    SYS_remap_file_pages,
    SYS_close,
    SYS_close_range,
    SYS_dup2,
    SYS_dup3,
    // fcntl(F_SETFL) on a copy of stdout can put the harness's pipe in packet mode (O_DIRECT),
    // where an empty packet reads as EOF in the parent.
    SYS_fcntl,
];

/// A child process's part (selected by [`ROLE`]).
fn child() -> bool {
    match std::env::var(ROLE).as_deref() {
        Ok("fuzz") => {
            fuzz();
            true
        }
        Ok("stopped") => {
            stopped_read();
            true
        }
        _ => false,
    }
}

/// Random entries forever (the parent kills us): random numbers (any 16-bit one, or one below
/// 460 not in [`NOT_AT_RANDOM`]), random arguments from a pool of bad pointers, small values and
/// a pipe nobody writes, random status words; prints the number answered so far.
fn fuzz() {
    let dev = open_dev();
    let fd = dev.as_raw_fd();
    let area = Area::new(4);
    assert_eq!(
        ioctl(fd, abi::IOC_REGISTER, &area.args() as *const _ as u64),
        0
    );
    let _workers = Workers::start(fd, 64);
    let guard = Mapping::new(4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    let mut fds = [0i32; 2];
    // SAFETY: a pipe into a live array; the reads on it block until we are killed.
    assert_eq!(unsafe { pipe2(fds.as_mut_ptr(), 0) }, 0);
    let pool = [
        0u64,
        1,
        2,
        3,
        fds[0] as u64,
        u64::MAX,
        0x7fff_ffff,
        1 << 40,
        guard.at(0),
        0xffff_8880_0000_0000,
        0xffff_ffff_ff60_0000,
    ];
    let mut seed = std::process::id() as u64 | 1;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut answered = 0u64;
    let start = Instant::now();
    let mut last = start;
    loop {
        for i in 0..area.npages * 64 {
            let s = area.status(i);
            if s == status::SUBMITTED || s == status::BUSY {
                continue;
            }
            if s == status::DONE {
                answered += 1;
            }
            let nr = if rnd() % 4 == 0 {
                (rnd() % 0x1_0000) as u16
            } else {
                (rnd() % 460) as u16
            };
            if NOT_AT_RANDOM.contains(&(nr as c_long)) {
                continue;
            }
            let args = std::array::from_fn(|_| pool[(rnd() % pool.len() as u64) as usize]);
            // Mostly submitted; sometimes a garbage status word instead.
            let st = if rnd() % 16 == 0 {
                rnd() as u32 | 4
            } else {
                status::SUBMITTED
            };
            area.post(i, st, nr, args);
        }
        ioctl(fd, abi::IOC_KICK, 0);
        let mut w = WaitArgs {
            core: 0,
            seq: 0,
            timeout_ns: 5_000_000,
        };
        ioctl(fd, abi::IOC_WAIT, &mut w as *mut _ as u64);
        if last.elapsed() > Duration::from_millis(200) {
            last = Instant::now();
            println!("answered {answered}");
        }
    }
}

#[test]
fn random_entries_from_processes_killed_mid_batch() {
    if child() {
        return;
    }
    if !kmod_here("random_entries_from_processes_killed_mid_batch") {
        return;
    }
    let budget = Duration::from_secs(12);
    let started = Instant::now();
    let (mut children, mut answered, mut killed) = (0, 0u64, 0);
    let mut ended = Vec::new();
    while started.elapsed() < budget {
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "random_entries_from_processes_killed_mid_batch",
                "--nocapture",
            ])
            .env(ROLE, "fuzz")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children += 1;
        let err = c.stderr.take().unwrap();
        let errors = thread::spawn(move || {
            let lines: Vec<String> = BufReader::new(err).lines().map_while(Result::ok).collect();
            lines[lines.len().saturating_sub(8)..].join("\n")
        });
        let out = c.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            // Raw lines: the child's random calls may write bytes of their own to its stdout.
            let mut last = 0;
            for l in BufReader::new(out).split(b'\n') {
                match l {
                    Ok(l) => {
                        if let Some(n) = std::str::from_utf8(&l)
                            .ok()
                            .and_then(|l| l.strip_prefix("answered "))
                            .and_then(|n| n.parse::<u64>().ok())
                        {
                            last = n;
                        }
                    }
                    Err(e) => {
                        eprintln!("reading a fuzzing process's stdout: {e}");
                        break;
                    }
                }
            }
            last
        });
        let run_for = Duration::from_secs(4).min(budget.saturating_sub(started.elapsed()));
        let until = Instant::now() + run_for.max(Duration::from_millis(500));
        while Instant::now() < until && c.try_wait().unwrap().is_none() {
            thread::sleep(Duration::from_millis(20));
        }
        let ended_now = match c.try_wait().unwrap() {
            None => {
                c.kill().unwrap(); // SIGKILL, with entries in flight and calls blocked
                killed += 1;
                false
            }
            // Its own random calls may end it (a fatal signal, say): also fine for the kernel.
            Some(st) => {
                ended.push(st);
                true
            }
        };
        // The kernel must let the killed process go, syscall threads and all.
        let reaped = Instant::now() + Duration::from_secs(10);
        while c.try_wait().unwrap().is_none() {
            assert!(Instant::now() < reaped, "a killed process did not exit");
            thread::sleep(Duration::from_millis(10));
        }
        answered += reader.join().unwrap();
        let errors = errors.join().unwrap();
        if ended_now {
            eprintln!(
                "a fuzzing process ended by itself ({:?}):\n{errors}",
                ended.last()
            );
        }
    }
    eprintln!(
        "{children} processes, {killed} killed mid-batch, {answered} entries answered, ended by \
         themselves: {ended:?}"
    );
    assert!(killed >= 1, "no process was killed mid-batch");
    assert!(answered > 0, "no random entry was answered");
}

/// A child's part: one read of stdin posted by hand, blocked in a syscall thread when the parent
/// stops and continues us; prints the read's result and what it read.
fn stopped_read() {
    let dev = open_dev();
    let fd = dev.as_raw_fd();
    let area = Area::new(1);
    assert_eq!(
        ioctl(fd, abi::IOC_REGISTER, &area.args() as *const _ as u64),
        0
    );
    let workers = Workers::start(fd, 2);
    let buf = Box::new([0u8; 8]);
    area.post(
        0,
        status::SUBMITTED,
        SYS_read as u16,
        [0, buf.as_ptr() as u64, 8, 0, 0, 0],
    );
    assert_eq!(ioctl(fd, abi::IOC_KICK, 0), 0);
    while area.status(0) == status::SUBMITTED {
        thread::sleep(Duration::from_millis(1));
    }
    println!("ready");
    await_done(fd, &area, 0..1, "the read");
    println!("read {} {}", area.ret(0), String::from_utf8_lossy(&buf[..]));
    workers.stop(fd, Duration::from_secs(10));
}

#[test]
fn a_call_stopped_by_sigstop_runs_again_after_sigcont() {
    if child() {
        return;
    }
    if !kmod_here("a_call_stopped_by_sigstop_runs_again_after_sigcont") {
        return;
    }
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_call_stopped_by_sigstop_runs_again_after_sigcont",
            "--nocapture",
        ])
        .env(ROLE, "stopped")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Kills the child if the test fails before it is done.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = c.stdout.take().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let mut c = Reap(c);
    // The child's own libtest lines come first.
    let mut lines = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l == "ready" || l.starts_with("read "));
    assert_eq!(lines.next().as_deref(), Some("ready"));
    thread::sleep(Duration::from_millis(50)); // the read sleeps in the kernel by now
    let pid = c.0.id() as i32;
    // SAFETY: signals to our own child.
    unsafe {
        assert_eq!(kill(pid, SIGSTOP), 0);
        thread::sleep(Duration::from_millis(100));
        assert_eq!(kill(pid, SIGCONT), 0);
    }
    thread::sleep(Duration::from_millis(50));
    std::io::Write::write_all(&mut stdin, b"go on!!!").unwrap();
    assert_eq!(
        lines.next().as_deref(),
        Some("read 8 go on!!!"),
        "a stop must not end the call (it is restarted)"
    );
    assert!(c.0.wait().unwrap().success());
}

/// A counter of the module's in `/sys/module/flexsc/parameters/`.
fn module_counter(name: &str) -> i64 {
    let path = format!("/sys/module/flexsc/parameters/{name}");
    let s = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    s.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {s:?}: {e}"))
}

/// (calls run on the pinned shared buffer, shared buffers that could not be pinned).
fn buf_counters() -> (i64, i64) {
    (
        module_counter("compound_buf_calls"),
        module_counter("compound_buf_pin_failures"),
    )
}

/// A plain system call's result, or `-errno`.
fn plain(nr: c_long, a: &[u64]) -> i64 {
    let mut v = [0u64; 6];
    v[..a.len()].copy_from_slice(a);
    // SAFETY: every call here gets fds and buffers of the test's own (or addresses the kernel
    // refuses with EFAULT).
    let r = unsafe { syscall(nr, v[0], v[1], v[2], v[3], v[4], v[5]) };
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap() as i64)
    } else {
        r
    }
}

fn open_file(path: &std::path::Path, flags: i32) -> i32 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { open(c.as_ptr(), flags | O_CLOEXEC, 0o600) };
    assert!(fd >= 0, "open {path:?}");
    fd
}

/// An unchecked call op with immediate arguments (addresses included).
fn imm_call(nr: c_long, a: &[u64]) -> flexsc_kmod::compound::abi::Op {
    use flexsc_kmod::compound::abi::{Op, op_kind};
    let mut args = [0u64; 6];
    args[..a.len()].copy_from_slice(a);
    Op {
        kind: op_kind::CALL,
        nr: nr as u16,
        nargs: a.len() as u8,
        args,
        ..Op::default()
    }
}

/// Runs hand-made `ops` with the shared buffer area `[buf, buf + len)`; the ops' results.
fn run_with_area(
    p: &mut flexsc_kmod::Poster,
    buf: u64,
    len: u64,
    ops: &[flexsc_kmod::compound::abi::Op],
) -> Vec<i64> {
    use flexsc_kmod::compound::abi::{Header, NR_COMPOUND, VERSION};
    let mut results = vec![7i64; ops.len()];
    let mut h = Header {
        version: VERSION,
        nops: ops.len() as u32,
        max_steps: 1000,
        ops: ops.as_ptr() as u64,
        results: results.as_mut_ptr() as u64,
        buf,
        buf_len: len,
        ..Header::default()
    };
    // SAFETY: the header, ops and results outlive the synchronous call; the ops' buffers are
    // the caller's (mapped or deliberately not).
    let call = unsafe {
        flexsc_kmod::Syscall::new(NR_COMPOUND.into(), &[std::ptr::from_mut(&mut h) as u64])
    };
    let r = p.call(&call);
    assert_eq!(
        r,
        ops.len() as i64 + 1,
        "the compound ran to its end: {results:?}"
    );
    results
}

/// The compound shared buffer: pinned once per execution, reads and writes whose buffer lies in
/// it run on the pinned pages (the module's counter moves) with the plain call's results, bytes
/// and errors; an area that cannot be pinned (unmapped, partly unmapped, read-only) gives what
/// the plain call gives, through the plain path.
#[test]
fn compound_shared_buffer_pinned() {
    if !kmod_here("compound_shared_buffer_pinned") {
        return;
    }
    use flexsc_kmod::compound::{Arg, Builder, Cond};
    let reg = flexsc_kmod::register(flexsc_kmod::Config {
        cores: 1,
        pages_per_core: 1,
        backend: flexsc_kmod::BackendKind::Kmod,
        ..flexsc_kmod::Config::default()
    })
    .expect("register (kmod)");
    let mut p = reg.poster(0).unwrap();
    let dir = std::env::temp_dir().join(format!("flexsc-bufpin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let content: Vec<u8> = (0..4096 * 5 + 123)
        .map(|i: u32| (i * 7 + i / 251) as u8)
        .collect();
    let from = dir.join("from");
    let to = dir.join("to");
    std::fs::write(&from, &content).unwrap();
    std::fs::write(&to, b"").unwrap();

    // The file copy (read into the buffer, write what read returned, until read returns 0).
    let (src_fd, dst_fd) = (open_file(&from, O_RDONLY), open_file(&to, O_WRONLY));
    let mut b = Builder::new();
    b.buffer(4096);
    let (top, done) = (b.label(), b.label());
    b.bind(top);
    // SAFETY: the read fills at most 4096 bytes of the 4096-byte buffer; the write sends what
    // the read returned, positive when it runs.
    unsafe {
        let r = b.call_with(
            SYS_read,
            &[Arg::Imm(src_fd as u64), Arg::Buf(0), Arg::Imm(4096)],
            true,
        );
        b.jump_if(Cond::Le, Arg::Ref(r, 0), Arg::Imm(0), done);
        b.call_with(
            SYS_write,
            &[Arg::Imm(dst_fd as u64), Arg::Buf(0), Arg::Ref(r, 0)],
            true,
        );
    }
    b.jump(top);
    b.bind(done);
    b.max_steps(1000);
    let mut prog = b.build().unwrap();
    let before = buf_counters();
    let o = p.compound(&mut prog).expect("the copy ran");
    assert_eq!((o.failed(), o.steps), (None, 6 * 4 + 2));
    assert_eq!(std::fs::read(&to).unwrap(), content, "byte-exact copy");
    assert_eq!(
        buf_counters(),
        (before.0 + 13, before.1),
        "7 reads and 6 writes on the pinned buffer"
    );
    // read and write moved the file positions as the plain calls do.
    assert_eq!(
        plain(SYS_lseek, &[src_fd as u64, 0, SEEK_CUR as u64]),
        content.len() as i64
    );
    assert_eq!(
        plain(SYS_lseek, &[dst_fd as u64, 0, SEEK_CUR as u64]),
        content.len() as i64
    );

    // pread into the buffer then pwrite from it, at an offset inside the area (Buf arguments),
    // plus a short pread at the end of the file.
    let out = dir.join("out");
    std::fs::write(&out, b"").unwrap();
    let out_fd = open_file(&out, O_RDWR);
    let mut b = Builder::new();
    b.buffer(3 * 4096);
    // SAFETY: 5000 bytes at offset 100 and 200 at offset 9000 stay inside the 12 KiB buffer.
    let (n, w, short) = unsafe {
        let n = b.call_with(
            SYS_pread64,
            &[
                Arg::Imm(src_fd as u64),
                Arg::Buf(100),
                Arg::Imm(5000),
                Arg::Imm(7),
            ],
            true,
        );
        let w = b.call_with(
            SYS_pwrite64,
            &[
                Arg::Imm(out_fd as u64),
                Arg::Buf(100),
                Arg::Ref(n, 0),
                Arg::Imm(3),
            ],
            true,
        );
        let short = b.call_with(
            SYS_pread64,
            &[
                Arg::Imm(src_fd as u64),
                Arg::Buf(9000),
                Arg::Imm(200),
                Arg::Imm(content.len() as u64 - 50),
            ],
            true,
        );
        (n, w, short)
    };
    let mut prog = b.build().unwrap();
    let before = buf_counters();
    p.compound(&mut prog).expect("ran");
    assert_eq!(
        (prog.result(n), prog.result(w), prog.result(short)),
        (5000, 5000, 50)
    );
    assert_eq!(buf_counters(), (before.0 + 3, before.1));
    let mut want = vec![0u8; 3];
    want.extend_from_slice(&content[7..5007]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        want,
        "byte-exact pread + pwrite"
    );
    assert_eq!(&prog.buffer()[100..5100], &content[7..5007]);
    assert_eq!(&prog.buffer()[9000..9050], &content[content.len() - 50..]);

    // The same errors as the plain calls, answered on the pinned path: a bad fd, a write-only
    // fd read, a negative offset, pread on a pipe, an empty O_NONBLOCK pipe; then a pipe
    // written and read through the area. Immediate addresses inside the area count too.
    let area = Mapping::anon(2 * 4096);
    let mut pipe_fds = [0i32; 2];
    // SAFETY: a two-int array.
    let r = unsafe { pipe2(pipe_fds.as_mut_ptr(), O_NONBLOCK | O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2");
    let (pr, pw) = (pipe_fds[0] as u64, pipe_fds[1] as u64);
    let wo = open_file(&to, O_WRONLY) as u64;
    let a = area.at(4000); // straddles the page boundary
    let cases: [(c_long, [u64; 4]); 7] = [
        (SYS_read, [1_000_000, a, 10, 0]),
        (SYS_read, [wo, a, 10, 0]),
        (SYS_pread64, [src_fd as u64, a, 10, u64::MAX]),
        (SYS_pread64, [pr, a, 10, 0]),
        (SYS_read, [pr, a, 10, 0]),
        (SYS_pwrite64, [pw, a, 10, 0]),
        (SYS_write, [wo, a, 10, 0]),
    ];
    let mut scratch = vec![0u8; 8192];
    let want: Vec<i64> = cases
        .iter()
        .map(|(nr, v)| plain(*nr, &[v[0], scratch.as_mut_ptr() as u64 + 4000, v[2], v[3]]))
        .collect();
    assert_eq!(
        want,
        [
            neg(EBADF),
            neg(EBADF),
            neg(EINVAL),
            neg(ESPIPE),
            neg(EAGAIN),
            neg(ESPIPE),
            10
        ]
    );
    let ops: Vec<_> = cases.iter().map(|(nr, v)| imm_call(*nr, v)).collect();
    let before = buf_counters();
    let got = run_with_area(&mut p, area.at(0), 8192, &ops);
    assert_eq!(got, want);
    assert_eq!(buf_counters(), (before.0 + ops.len() as i64, before.1));
    // A pipe through the area: write 6000 bytes from it, read them back into it elsewhere.
    // SAFETY: our own mapping, 8192 bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(area.addr, 8192) };
    for (i, x) in bytes[..6000].iter_mut().enumerate() {
        *x = (i % 253) as u8;
    }
    let ops = [
        imm_call(SYS_write, &[pw, area.at(0), 6000]),
        imm_call(SYS_read, &[pr, area.at(6000), 2192]),
        imm_call(SYS_read, &[pr, area.at(6000), 2192]),
    ];
    let before = buf_counters();
    let got = run_with_area(&mut p, area.at(0), 8192, &ops);
    assert_eq!(got, [6000, 2192, 2192]);
    assert_eq!(buf_counters(), (before.0 + 3, before.1));
    let expect: Vec<u8> = (2192..4384).map(|i| (i % 253) as u8).collect();
    assert_eq!(&bytes[6000..], &expect[..], "the second read, byte-exact");
    // A stream socket the same way, then a read of the empty non-blocking socket (EAGAIN).
    let mut sv = [0i32; 2];
    // SAFETY: a two-int array.
    let r = unsafe {
        socketpair(
            AF_UNIX,
            SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair");
    let (s0, s1) = (sv[0] as u64, sv[1] as u64);
    let ops = [
        imm_call(SYS_write, &[s0, area.at(10), 3000]),
        imm_call(SYS_read, &[s1, area.at(5000), 3192]),
        imm_call(SYS_read, &[s1, area.at(5000), 3192]),
    ];
    let before = buf_counters();
    let got = run_with_area(&mut p, area.at(0), 8192, &ops);
    assert_eq!(got, [3000, 3000, neg(EAGAIN)]);
    assert_eq!(buf_counters(), (before.0 + 3, before.1));
    let expect: Vec<u8> = (10..3010).map(|i| (i % 253) as u8).collect();
    assert_eq!(
        &bytes[5000..8000],
        &expect[..],
        "through the socket, byte-exact"
    );
    for fd in [s0, s1] {
        // SAFETY: our own fds.
        unsafe { close(fd as i32) };
    }

    // Areas that cannot be pinned: the plain path answers, with the plain call's results.
    // Every mapping is made before any is unmapped, so none lands on a hole left by another.
    let mut gone = Mapping::anon(2 * 4096);
    let mut half = Mapping::anon(2 * 4096);
    let ro = Mapping::new(4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    gone.unmap();
    // SAFETY: the second page of our own mapping.
    assert_eq!(unsafe { munmap(half.addr.add(4096).cast(), 4096) }, 0);
    let efault = neg(EFAULT);
    for (what, base, len, addr, want) in [
        (
            "unmapped",
            gone.at(0),
            8192u64,
            gone.at(100),
            [efault, efault],
        ),
        ("half unmapped", half.at(0), 8192, half.at(100), [10, 10]),
        ("read-only", ro.at(0), 4096, ro.at(100), [efault, 10]),
    ] {
        let ops = [
            imm_call(SYS_pread64, &[src_fd as u64, addr, 10, 0]),
            imm_call(SYS_pwrite64, &[out_fd as u64, addr, 10, 0]),
        ];
        let plain_results = [
            plain(SYS_pread64, &[src_fd as u64, addr, 10, 0]),
            plain(SYS_pwrite64, &[out_fd as u64, addr, 10, 0]),
        ];
        assert_eq!(plain_results, want, "{what}: the plain calls");
        let before = buf_counters();
        let got = run_with_area(&mut p, base, len, &ops);
        assert_eq!(got, want, "{what}: the compound");
        assert_eq!(
            buf_counters(),
            (before.0, before.1 + 1),
            "{what}: one pin failure, no call on the pinned path"
        );
    }
    half.mapped = false;
    // SAFETY: the first page, still ours.
    assert_eq!(unsafe { munmap(half.addr.cast(), 4096) }, 0);

    for fd in [src_fd, dst_fd, out_fd, wo as i32, pr as i32, pw as i32] {
        // SAFETY: our own fds.
        unsafe { close(fd) };
    }
    drop(p);
    drop(reg);
    std::fs::remove_dir_all(&dir).unwrap();
}
