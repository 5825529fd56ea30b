//! Helpers for the backend conformance suite: the backend configurations, the per-test runner
//! (hang guard, pinning, skipping a backend that is not built), the exception-less/libc call
//! pair, file descriptors, temporary directories, child processes and task counting.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use flexsc_kmod::{BackendKind, Config, Poster, Registration, Specialization, Syscall, register};

/// Longest a single case may run before it counts as hung (a hang guard, never a speed check).
pub const CASE_LIMIT: Duration = Duration::from_secs(45);
/// Longest a shutdown with entries in flight may take.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// Set to `1` to make an unbuilt backend (`register` answers Unsupported) fail instead of skip.
pub const REQUIRE_ALL: &str = "FLEXSC_CONFORMANCE_REQUIRE_ALL";
/// Set to `1` where the kernel module must be loaded (the VM of `scripts/vm-test.sh`): the kmod
/// configurations then fail without `/dev/flexsc` instead of being left out.
pub const REQUIRE_KMOD: &str = "FLEXSC_CONFORMANCE_REQUIRE_KMOD";
/// Names the one test a child process runs for real (see [`isolated`]).
const CHILD: &str = "FLEXSC_CONFORMANCE_CHILD";

/// A backend configuration under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Syscall threads pinned to CPU 0, the posters' CPU, never spinning.
    ThreadsLocal,
    /// Syscall threads pinned to CPU 1, posters on CPU 0.
    ThreadsRemote,
    /// Syscall threads and posters unpinned (the defaults).
    ThreadsUnpinned,
    /// io_uring (syscall threads for calls without an opcode), defaults otherwise.
    Uring,
    /// `Specialization::PerCore`: each posting core's syscall threads on its poster's CPU (0).
    ThreadsPerCore,
    /// `Specialization::Dynamic` with a 2 ms period, posters on CPU 0: the split moves while
    /// the cases run.
    ThreadsDynamic,
    /// io_uring with `Specialization::PerCore` (inline submission), posters on CPU 0.
    UringPerCore,
    /// io_uring with `Specialization::Static([1])`: a SQPOLL thread on CPU 1, posters on CPU 0.
    UringStatic,
    /// The kernel module's syscall threads, one unpinned syscall core (the defaults).
    Kmod,
    /// The kernel module's syscall threads on syscall core CPU 1, posters on CPU 0.
    KmodRemote,
}

impl Kind {
    /// The registration request for `cores` posting cores of `pages` pages each.
    pub fn config(self, cores: usize, pages: usize) -> Config {
        let mut c = Config {
            cores,
            pages_per_core: pages,
            ..Config::default()
        };
        c.backend = if self.is_uring() {
            BackendKind::Uring
        } else if self.is_kmod() {
            BackendKind::Kmod
        } else {
            BackendKind::Threads
        };
        match self {
            Kind::ThreadsLocal => {
                c.specialization = Specialization::Static(vec![0]);
                c.executor_spins = 0;
            }
            Kind::ThreadsRemote => c.specialization = Specialization::Static(vec![1]),
            Kind::ThreadsUnpinned | Kind::Uring | Kind::Kmod => {}
            Kind::KmodRemote => c.specialization = Specialization::Static(vec![1]),
            Kind::ThreadsPerCore | Kind::UringPerCore => {
                c.specialization = Specialization::PerCore;
            }
            Kind::ThreadsDynamic => {
                c.specialization = Specialization::Dynamic {
                    period: Duration::from_millis(2),
                };
            }
            Kind::UringStatic => c.specialization = Specialization::Static(vec![1]),
        }
        c
    }

    /// Whether this is the io_uring backend.
    pub fn is_uring(self) -> bool {
        matches!(self, Kind::Uring | Kind::UringPerCore | Kind::UringStatic)
    }

    /// Whether this is the kernel module's backend.
    pub fn is_kmod(self) -> bool {
        matches!(self, Kind::Kmod | Kind::KmodRemote)
    }

    /// Whether each posting core has executors of its own, woken only by its own submits.
    pub fn per_core_executors(self) -> bool {
        matches!(
            self,
            Kind::ThreadsPerCore | Kind::ThreadsDynamic | Kind::UringPerCore
        )
    }

    /// The name `Registration::backend_name` gives.
    pub fn backend_name(self) -> &'static str {
        if self.is_uring() {
            "uring"
        } else if self.is_kmod() {
            "kmod"
        } else {
            "threads"
        }
    }

    /// The CPU the posting threads run on, if pinned.
    pub fn poster_cpu(self) -> Option<usize> {
        match self {
            Kind::ThreadsUnpinned | Kind::Uring | Kind::Kmod => None,
            _ => Some(0),
        }
    }

    /// Why this configuration cannot run here, if it cannot.
    fn unavailable(self) -> Option<String> {
        static PROBES: OnceLock<std::sync::Mutex<BTreeMap<String, Option<String>>>> =
            OnceLock::new();
        match self {
            Kind::ThreadsRemote | Kind::UringStatic | Kind::KmodRemote
                if flexsc_kmod::config::online_cpus() < 2 =>
            {
                Some("needs 2 CPUs".into())
            }
            _ if self.is_kmod()
                && !std::path::Path::new(flexsc_kmod::config::KMOD_DEVICE).exists() =>
            {
                Some(format!("no {}", flexsc_kmod::config::KMOD_DEVICE))
            }
            // A child process runs a case its parent found available; probing again would
            // leave a SQPOLL thread exiting while the child counts its threads.
            _ if std::env::var_os(CHILD).is_some() => None,
            _ if self.is_uring() => {
                // io_uring may be disabled here; SQPOLL (made with the poster's ring) is
                // privileged before 5.11. Probed once per configuration.
                let mut probes = PROBES.get_or_init(Default::default).lock().unwrap();
                probes
                    .entry(format!("{self:?}"))
                    .or_insert_with(|| {
                        match register(self.config(1, 1)).and_then(|r| r.poster(0).map(drop)) {
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
                                ) =>
                            {
                                Some(format!("register: {e}"))
                            }
                            _ => None,
                        }
                    })
                    .clone()
            }
            _ => None,
        }
    }
}

/// What a case gets: its backend configuration and its full test name.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// The backend configuration.
    pub kind: Kind,
    /// The libtest name, e.g. `threads_remote::read_pipe`.
    pub name: &'static str,
}

impl Case {
    /// Registers `cores` cores of `pages` pages with this case's backend.
    pub fn register(&self, cores: usize, pages: usize) -> Registration {
        register(self.kind.config(cores, pages))
            .unwrap_or_else(|e| panic!("{}: register({cores} cores): {e}", self.name))
    }

    /// A one-core registration, its poster (on this thread) and a scratch directory.
    pub fn ctx(&self) -> Ctx {
        let reg = self.register(1, 1);
        let p = reg.poster(0).expect("poster(0)");
        Ctx {
            p,
            reg,
            dir: TempDir::new(self.name),
        }
    }
}

/// Runs one case on its own thread (pinned like a poster of `kind`), failing it if it does not
/// finish within [`CASE_LIMIT`]. Skips (or, with [`REQUIRE_ALL`], fails) a backend that is not
/// available here.
pub fn run(name: &'static str, kind: Kind, case: fn(&Case)) {
    if let Some(why) = kind.unavailable() {
        // Where the module is not loaded (the hosts cannot load modules) the kmod
        // configurations are not part of the suite; scripts/vm-test.sh runs them in a VM.
        let kmod_required = std::env::var(REQUIRE_KMOD).is_ok_and(|v| v == "1");
        if kind.is_kmod() && !kmod_required {
            eprintln!("NOT INCLUDED {name}: {why} (kmod runs where the module is loaded)");
            return;
        }
        let strict = std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1");
        assert!(!strict, "{name}: backend {kind:?} unavailable: {why}");
        eprintln!("SKIPPED {name}: backend {kind:?} unavailable: {why}");
        return;
    }
    let (tx, rx) = mpsc::channel::<()>();
    let body = thread::Builder::new()
        .name("conformance".into())
        .spawn(move || {
            if let Some(cpu) = kind.poster_cpu() {
                pin_to_cpu(cpu);
            }
            case(&Case { kind, name });
            let _ = tx.send(());
        })
        .expect("spawn the case thread");
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = body.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name} hung: not done after {CASE_LIMIT:?}")
        }
    }
}

/// Pins the calling thread (and the threads it spawns later) to `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    let mut set = [0u64; 16];
    set[cpu / 64] |= 1 << (cpu % 64);
    let r = sys(
        libc::SYS_sched_setaffinity,
        &[0, std::mem::size_of_val(&set) as u64, addr(&set)],
    );
    assert_eq!(r, 0, "sched_setaffinity(cpu {cpu})");
}

/// A registration with one poster, plus a scratch directory. Dropped poster first.
pub struct Ctx {
    /// The poster of core 0 (on the case's thread).
    pub p: Poster,
    /// The registration.
    pub reg: Registration,
    /// Scratch space for the case's files.
    pub dir: TempDir,
}

/// How a call goes through the exception-less path.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `Poster::call`.
    Call,
    /// `post`, `submit`, `take`.
    PostTake,
    /// `post`, then `wait` and `harvest` until it comes back.
    Harvest,
}

/// Every mode, for cases that compare each of them with libc.
pub const MODES: [Mode; 3] = [Mode::Call, Mode::PostTake, Mode::Harvest];

impl Ctx {
    /// Runs `nr(args)` through the exception-less path in mode `m`; returns the raw result.
    pub fn run(&mut self, m: Mode, nr: i64, args: &[u64]) -> i64 {
        // SAFETY: the arguments obey the contract of `sys` (valid for the call, or addresses the
        // kernel refuses), and every mode below takes the call's result before returning (Harvest
        // waits for it even if something else comes back first), so the memory they point to,
        // borrowed by our caller for the duration of this call, outlives the call.
        let call = unsafe { Syscall::new(nr, args) };
        match m {
            Mode::Call => self.p.call(&call),
            Mode::PostTake => {
                let t = self
                    .p
                    .post(&call)
                    .unwrap_or_else(|e| panic!("post({}): {e}", name(nr)));
                self.p.submit();
                self.p.take(t)
            }
            Mode::Harvest => {
                assert_eq!(self.p.in_flight(), 0, "Harvest mode needs an idle poster");
                let ticket = self
                    .p
                    .post(&call)
                    .unwrap_or_else(|e| panic!("post({}): {e}", name(nr)));
                // Strays are reported once ours is back: no panic while our call is in flight.
                let (mut got, mut strays) = (None, Vec::new());
                while got.is_none() {
                    self.p.wait();
                    self.p.harvest(|t, r| {
                        if t == ticket {
                            got = Some(r);
                        } else {
                            strays.push(t);
                        }
                    });
                }
                assert!(
                    strays.is_empty(),
                    "harvested entries never posted: {strays:?}"
                );
                got.unwrap()
            }
        }
    }

    /// Runs `nr(args)` with libc, then exception-lessly in mode `m`, and asserts equal results
    /// (for calls whose result does not depend on having run before). Returns the result.
    pub fn same(&mut self, m: Mode, nr: i64, args: &[u64]) -> i64 {
        let want = sys(nr, args);
        let got = self.run(m, nr, args);
        assert_eq!(
            show(got),
            show(want),
            "{}({args:x?}) via {m:?} vs libc",
            name(nr)
        );
        want
    }

    /// Like [`Self::same`], but each of libc and the modes gets its own freshly `setup` state
    /// (for calls that consume what they act on). Returns libc's result.
    pub fn fresh<S>(
        &mut self,
        nr: i64,
        setup: impl Fn() -> S,
        args: impl Fn(&S) -> Vec<u64>,
    ) -> i64 {
        let s = setup();
        let a = args(&s);
        let want = sys(nr, &a);
        drop(s);
        for m in MODES {
            let s = setup();
            let a = args(&s);
            let got = self.run(m, nr, &a);
            assert_eq!(
                show(got),
                show(want),
                "{}({a:x?}) via {m:?} vs libc",
                name(nr)
            );
        }
        want
    }

    /// Asserts that `nr(args)` fails with `errno` through libc and through every mode.
    pub fn errs(&mut self, nr: i64, args: &[u64], errno: i32) {
        for m in MODES {
            let r = self.same(m, nr, args);
            assert_eq!(
                show(r),
                show(-(errno as i64)),
                "libc {}({args:x?}): the case expects another error",
                name(nr)
            );
        }
    }
}

/// A readable form of a raw result, for assertion messages.
pub fn show(r: i64) -> String {
    if (-4095..0).contains(&r) {
        format!("-{} ({})", -r, io::Error::from_raw_os_error(-r as i32))
    } else {
        format!("{r} ({r:#x})")
    }
}

/// A syscall's name, for messages.
pub fn name(nr: i64) -> String {
    match flexsc_kmod::calls::name(nr) {
        "other" => format!("syscall {nr}"),
        n => n.to_string(),
    }
}

/// The synchronous call, made with libc's `syscall(2)`: the raw result (`-errno` on failure).
///
/// Same contract as [`Poster::call`], which is what it is compared with: the suite passes
/// pointers to live buffers of the advertised size, or deliberately invalid addresses that the
/// kernel rejects with `EFAULT` (see [`bad_ptrs`]).
pub fn sys(nr: i64, args: &[u64]) -> i64 {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    // SAFETY: see above: every pointer argument is either valid for the call (a live buffer of
    // the size passed) or one the kernel refuses without touching memory we own; the suite never
    // passes thread-bound calls that would change this thread (exit, clone, sigreturn) here.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r == -1 {
        -(io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        r
    }
}

/// `sys`, asserting success.
pub fn sys_ok(nr: i64, args: &[u64]) -> i64 {
    let r = sys(nr, args);
    assert!(r >= 0, "libc {}({args:x?}) = {}", name(nr), show(r));
    r
}

/// The address of a value, as a syscall argument.
pub fn addr<T: ?Sized>(v: &T) -> u64 {
    v as *const T as *const u8 as u64
}

/// The address of a value the kernel will write, as a syscall argument.
pub fn addr_mut<T: ?Sized>(v: &mut T) -> u64 {
    v as *mut T as *mut u8 as u64
}

/// A user address in page 0, never mapped.
pub const BAD_PTR: u64 = 0x1;
/// A kernel address: never accessible from user space.
pub const KERNEL_PTR: u64 = 0xffff_8880_0000_0000;

/// One page reserved `PROT_NONE` for the life of the process: mapped, but every access faults.
pub fn guard_page() -> u64 {
    static GUARD: OnceLock<u64> = OnceLock::new();
    *GUARD.get_or_init(|| {
        sys_ok(
            libc::SYS_mmap,
            &[
                0,
                4096,
                libc::PROT_NONE as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        ) as u64
    })
}

/// Addresses the kernel must answer with `EFAULT`: page 0, a `PROT_NONE` page, a kernel address.
pub fn bad_ptrs() -> [u64; 3] {
    [BAD_PTR, guard_page(), KERNEL_PTR]
}

/// File descriptors no test ever has open.
pub const BAD_FDS: [u64; 2] = [u64::MAX /* -1 */, 1 << 20];

/// An owned file descriptor, closed on drop.
#[derive(Debug)]
pub struct Fd(pub i32);

impl Fd {
    /// From a raw result, asserting it is a descriptor.
    pub fn from_ret(r: i64, what: &str) -> Self {
        assert!(r >= 0, "{what}: {}", show(r));
        Self(r as i32)
    }

    /// As a syscall argument.
    pub fn a(&self) -> u64 {
        self.0 as u64
    }

    /// Gives up ownership without closing (for descriptors a case closes itself).
    pub fn into_raw(self) -> i32 {
        let fd = self.0;
        std::mem::forget(self);
        fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        sys(libc::SYS_close, &[self.a()]);
    }
}

// The helpers below make close-on-exec descriptors, so the child processes of [`isolated`] do
// not keep them open (a pipe's reader would outlive its close, and EOF or EPIPE not come).

/// Opens `path` with libc (close-on-exec).
pub fn open_path(path: &CString, flags: i32) -> Fd {
    let flags = (flags | libc::O_CLOEXEC) as u64;
    Fd::from_ret(
        sys(
            libc::SYS_open,
            &[addr(path.as_bytes_with_nul()), flags, 0o600],
        ),
        "open",
    )
}

/// A pipe made with libc (close-on-exec): (read end, write end).
pub fn new_pipe(flags: i32) -> (Fd, Fd) {
    let mut fds = [-1i32; 2];
    let flags = (flags | libc::O_CLOEXEC) as u64;
    sys_ok(libc::SYS_pipe2, &[addr_mut(&mut fds), flags]);
    (Fd(fds[0]), Fd(fds[1]))
}

/// A Unix socket pair made with libc (close-on-exec).
pub fn new_socketpair(ty: i32) -> (Fd, Fd) {
    let mut fds = [-1i32; 2];
    let ty = (ty | libc::SOCK_CLOEXEC) as u64;
    sys_ok(
        libc::SYS_socketpair,
        &[libc::AF_UNIX as u64, ty, 0, addr_mut(&mut fds)],
    );
    (Fd(fds[0]), Fd(fds[1]))
}

/// Waits until the pipe whose write end is `w` has no reader (poll reports POLLERR), at most
/// [`CASE_LIMIT`] (a hang guard).
pub fn wait_widowed(w: &Fd) {
    let mut pfd = [0u8; 8]; // struct pollfd { int fd; short events; short revents; }
    pfd[..4].copy_from_slice(&w.0.to_ne_bytes());
    let limit = CASE_LIMIT.as_millis() as u64;
    let n = sys_ok(libc::SYS_poll, &[addr_mut(&mut pfd), 1, limit]);
    let revents = i16::from_ne_bytes([pfd[6], pfd[7]]);
    assert!(
        n == 1 && revents & libc::POLLERR != 0,
        "the pipe still has a reader after {CASE_LIMIT:?}"
    );
}

/// Writes all of `data` with libc.
pub fn write_all(fd: &Fd, data: &[u8]) {
    let r = sys(libc::SYS_write, &[fd.a(), addr(data), data.len() as u64]);
    assert_eq!(r, data.len() as i64, "write_all: {}", show(r));
}

/// Reads up to `n` bytes with libc.
pub fn read_some(fd: &Fd, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let r = sys_ok(libc::SYS_read, &[fd.a(), addr_mut(&mut buf[..]), n as u64]);
    buf.truncate(r as usize);
    buf
}

/// The raw `struct stat` of a descriptor (x86_64 layout: 144 bytes).
pub fn stat_of(fd: &Fd) -> [u8; 144] {
    let mut st = [0u8; 144];
    sys_ok(libc::SYS_fstat, &[fd.a(), addr_mut(&mut st)]);
    st
}

/// (st_dev, st_ino) of a raw `struct stat`.
pub fn dev_ino(st: &[u8; 144]) -> (u64, u64) {
    (le_u64(&st[0..8]), le_u64(&st[8..16]))
}

/// st_mode of a raw `struct stat`.
pub fn st_mode(st: &[u8; 144]) -> u32 {
    u32::from_le_bytes(st[24..28].try_into().unwrap())
}

/// st_size of a raw `struct stat`.
pub fn st_size(st: &[u8; 144]) -> u64 {
    le_u64(&st[48..56])
}

/// A little-endian u64 from 8 bytes.
pub fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().unwrap())
}

/// Whether two descriptors refer to the same open file's inode.
pub fn same_file(a: &Fd, b: &Fd) -> bool {
    dev_ino(&stat_of(a)) == dev_ino(&stat_of(b))
}

/// `fcntl(fd, cmd)` with libc.
pub fn fcntl_get(fd: &Fd, cmd: i32) -> i64 {
    sys_ok(libc::SYS_fcntl, &[fd.a(), cmd as u64])
}

/// An iovec over `buf`.
pub fn iov(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }
}

/// A raw IPv4 `struct sockaddr_in`.
pub fn sockaddr_in(ip: [u8; 4], port: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    a[2..4].copy_from_slice(&port.to_be_bytes());
    a[4..8].copy_from_slice(&ip);
    a
}

/// The permissions column of /proc/self/maps for the mapping holding `addr` (None: unmapped).
pub fn maps_perms(addr: u64) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines().find_map(|l| {
        let (range, rest) = l.split_once(' ')?;
        let (lo, hi) = range.split_once('-')?;
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).ok()?,
            u64::from_str_radix(hi, 16).ok()?,
        );
        (lo..hi)
            .contains(&addr)
            .then(|| rest.split(' ').next().unwrap_or("").to_string())
    })
}

/// The permissions of every mapping of the file at `path`, in address order.
pub fn maps_of(path: &std::path::Path) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let path = path.to_str().expect("UTF-8 scratch paths");
    maps.lines()
        .filter(|l| l.ends_with(path))
        .map(|l| l.split(' ').nth(1).unwrap_or("").to_string())
        .collect()
}

/// The process umask, read without changing it (/proc/self/status).
pub fn current_umask() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let v = s
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask line");
    u64::from_str_radix(v.trim(), 8).expect("octal umask")
}

/// A clock's reading in nanoseconds (libc).
pub fn clock_ns(clock: i32) -> i128 {
    let mut ts = [0i64; 2];
    sys_ok(libc::SYS_clock_gettime, &[clock as u64, addr_mut(&mut ts)]);
    ts_ns(&ts)
}

/// A raw `struct timespec` in nanoseconds.
pub fn ts_ns(ts: &[i64; 2]) -> i128 {
    ts[0] as i128 * 1_000_000_000 + ts[1] as i128
}

/// A scratch directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory for test `tag`.
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "flexsc-conformance-{}-{}-{}",
            std::process::id(),
            tag.replace("::", "-"),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create the scratch directory");
        Self(p)
    }

    /// The path of `name` inside, as a C string.
    pub fn c(&self, name: &str) -> CString {
        cstring(&self.path(name))
    }

    /// The path of `name` inside.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Creates `name` with `content`; returns its C path.
    pub fn file(&self, name: &str, content: &[u8]) -> CString {
        std::fs::write(self.path(name), content).expect("write a scratch file");
        self.c(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A path as a C string.
pub fn cstring(p: &std::path::Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in paths")
}

/// The address of a C string, as a syscall argument.
pub fn cptr(s: &CString) -> u64 {
    s.as_ptr() as u64
}

/// `n` bytes of a recognisable pattern (seeded, so two calls with one seed agree).
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Number of threads of this process.
pub fn task_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Names of this process's threads, by tid.
pub fn task_names() -> BTreeMap<u32, String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|e| {
            let e = e.ok()?;
            let tid = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((tid, comm.trim_end().to_string()))
        })
        .collect()
}

/// Waits (at most `limit`, a hang guard) until the process has `n` threads again: a joined
/// thread can linger in /proc for a moment after `pthread_join` returns (the kernel clears the
/// joiner's futex before it reaps the task). Returns the count last seen.
pub fn settle_tasks(n: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let now = task_count();
        if now == n || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Kills the process if not stopped within its limit: a hang guard for calls that cannot be
/// interrupted from the outside (only used in child processes, see [`isolated`]).
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts guarding `what`.
    pub fn start(what: &'static str, limit: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    eprintln!("HANG: {what} did not finish within {limit:?}");
                    std::process::exit(102);
                }
            })
            .expect("spawn the watchdog");
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops guarding; joins the watchdog thread.
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            t.join().expect("watchdog thread");
        }
    }
}

/// Runs `body` in a child process of its own (this test binary, filtered to exactly this case),
/// with `envs` added to its environment; fails if the child fails or runs longer than
/// [`CASE_LIMIT`]. For checks that need a quiet process (counting threads) or a different
/// environment. `key` tells apart several isolated parts of one case. In the child, runs `body`
/// for the matching key and skips the others.
pub fn isolated(c: &Case, key: &str, envs: &[(&str, &str)], body: impl FnOnce()) {
    let me = format!("{}#{key}", c.name);
    if let Ok(v) = std::env::var(CHILD) {
        if v == me {
            body();
        }
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args(["--exact", c.name, "--test-threads=1", "--nocapture"])
        .env(CHILD, &me)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child test process");
    let mut child = child;
    // Drain both pipes on threads of their own (a child blocked on a full pipe never exits),
    // and poll for the exit here, where the child can still be killed if it hangs.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + CASE_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{me} (child {}) hung: killed after {CASE_LIMIT:?}",
                child.id()
            );
        }
        thread::sleep(Duration::from_millis(2));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let stdout = String::from_utf8_lossy(&out);
    let stderr = String::from_utf8_lossy(&err);
    assert!(
        status.success() && stdout.contains("1 passed"),
        "{me} {envs:?} failed in its child process ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
    );
}
