//! The load generator (`echo client`): one process, pinned to its own CPU, the same for every
//! server. Each client thread runs a raw epoll loop (level-triggered) over its share of
//! non-blocking connections; every connection sends a fixed-size message and waits for the
//! whole echo before sending the next (request/response). Latencies go into a preallocated
//! per-thread histogram: the measured loop allocates nothing.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Connections in their connect + warm-up echo at once, per client thread: keeps the server's
/// accept queue (backlog 128 for `std`) from overflowing and SYNs from being retried after 1 s.
const CONNECT_WINDOW: usize = 128;

/// What one `echo client` run measures.
#[derive(Clone, Debug)]
pub struct Load {
    pub addr: SocketAddrV4,
    pub conns: usize,
    pub size: usize,
    pub secs: f64,
    pub threads: usize,
    pub connect_timeout: Duration,
    /// The server's pid, whose CPU time over the timed window is measured.
    pub server_pid: Option<u32>,
}

/// Completed requests inside the timed window, failed requests, and their latencies.
pub struct Outcome {
    pub msgs: u64,
    pub errors: u64,
    pub hist: Histogram,
    /// CPU time (ns) the server and this client spent over the timed window: what a message
    /// costs each side, which the load generator's own speed does not hide.
    pub server_cpu_ns: Option<u64>,
    pub client_cpu_ns: u64,
}

/// A log-linear latency histogram in ns: 32 buckets per power of two (at most ~3% error), up
/// to 2^40 ns; allocated once, recording is an index computation and an increment.
pub struct Histogram {
    counts: Box<[u64]>,
}

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const MAX_EXP: u32 = 40;

impl Histogram {
    pub fn new() -> Self {
        let len = ((MAX_EXP - SUB_BITS + 1) as u64 * SUB + SUB) as usize;
        Self {
            counts: vec![0; len].into_boxed_slice(),
        }
    }

    fn index(ns: u64) -> usize {
        let v = ns.min((1 << MAX_EXP) - 1);
        if v < SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() - SUB_BITS;
        (e as u64 * SUB + (v >> e)) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let e = i / SUB - 1;
        let m = i % SUB + SUB;
        (m << e) + ((1 << e) >> 1)
    }

    pub fn record(&mut self, ns: u64) {
        self.counts[Self::index(ns)] += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// The `q`-quantile (0..=1) in ns, or None when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value(i));
            }
        }
        None
    }
}

/// Runs the load: connects, warms each connection up with one echo, then (all client threads
/// together) loops request/response for `secs`.
pub fn run(load: &Load) -> Outcome {
    // The client threads and this one, which times the window's CPU use.
    let barrier = Arc::new(Barrier::new(load.threads + 1));
    let handles: Vec<_> = (0..load.threads)
        .map(|t| {
            let mut share = load.clone();
            share.conns = load.conns / load.threads + usize::from(t < load.conns % load.threads);
            let barrier = barrier.clone();
            std::thread::Builder::new()
                .name(format!("echo-client{t}"))
                .spawn(move || Worker::new(share).run(&barrier))
                .expect("spawn a client thread")
        })
        .collect();
    barrier.wait();
    let (server0, client0) = (load.server_pid.and_then(task_cpu_ns), self_cpu_ns());
    std::thread::sleep(Duration::from_secs_f64(load.secs));
    let (server1, client1) = (load.server_pid.and_then(task_cpu_ns), self_cpu_ns());
    let mut total = Outcome {
        msgs: 0,
        errors: 0,
        hist: Histogram::new(),
        server_cpu_ns: server0.zip(server1).map(|(a, b)| b.saturating_sub(a)),
        client_cpu_ns: client1.saturating_sub(client0),
    };
    for h in handles {
        let o = h.join().expect("client thread panicked");
        total.msgs += o.msgs;
        total.errors += o.errors;
        total.hist.merge(&o.hist);
    }
    total
}

/// CPU time (ns) of every thread of process `pid` so far (io_uring's and syscall threads
/// included), from the scheduler's per-thread accounting; None if it cannot be read.
fn task_cpu_ns(pid: u32) -> Option<u64> {
    let mut sum = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(t.ok()?.path().join("schedstat")).unwrap_or_default();
        sum += stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(sum)
}

/// CPU time (ns, user + system) of this process so far.
fn self_cpu_ns() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the zeroed buffer it is given.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Connecting,
    Sending,
    Receiving,
    /// Warmed up, waiting for the timed window.
    Idle,
    Dead,
}

struct Conn {
    fd: OwnedFd,
    state: State,
    /// The epoll interest currently registered.
    interest: u32,
    done: usize,
    start: Instant,
}

struct Worker {
    load: Load,
    epfd: OwnedFd,
    conns: Vec<Conn>,
    msg: Vec<u8>,
    scratch: Vec<u8>,
    hist: Histogram,
    /// Inside the timed window (before it: warm-up; completions don't count).
    measuring: bool,
    deadline: Instant,
    msgs: u64,
    errors: u64,
    /// Connections that finished their warm-up echo (or died trying).
    settled: usize,
}

impl Worker {
    fn new(load: Load) -> Self {
        // SAFETY: epoll_create1 takes a flag, no memory.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epfd >= 0, "epoll_create1: {}", io::Error::last_os_error());
        Self {
            // SAFETY: epoll_create1 succeeded: the fd is open and ours alone.
            epfd: unsafe { OwnedFd::from_raw_fd(epfd) },
            conns: Vec::with_capacity(load.conns),
            msg: (0..load.size).map(|i| i as u8).collect(),
            scratch: vec![0; load.size],
            hist: Histogram::new(),
            measuring: false,
            deadline: Instant::now(),
            msgs: 0,
            errors: 0,
            settled: 0,
            load,
        }
    }

    fn run(mut self, barrier: &Barrier) -> Outcome {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        // Connect and warm up, at most CONNECT_WINDOW connections at once.
        let give_up = Instant::now() + self.load.connect_timeout;
        while self.settled < self.load.conns && Instant::now() < give_up {
            while self.conns.len() < self.load.conns
                && self.conns.len() - self.settled < CONNECT_WINDOW
            {
                self.open();
            }
            self.poll(&mut events, 100);
        }
        // Those still not through their warm-up count as failed.
        for i in 0..self.conns.len() {
            if !matches!(self.conns[i].state, State::Idle | State::Dead) {
                self.fail(i);
            }
        }
        self.errors += (self.load.conns - self.conns.len()) as u64;

        barrier.wait();
        self.measuring = true;
        let t0 = Instant::now();
        self.deadline = t0 + Duration::from_secs_f64(self.load.secs);
        for i in 0..self.conns.len() {
            if self.conns[i].state == State::Idle {
                self.request(i, t0);
            }
        }
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                break;
            }
            let ms = (self.deadline - now).as_millis().clamp(1, 1000) as i32;
            self.poll(&mut events, ms);
        }
        Outcome {
            msgs: self.msgs,
            errors: self.errors,
            hist: self.hist,
            // Measured once for all client threads, by `run`.
            server_cpu_ns: None,
            client_cpu_ns: 0,
        }
    }

    /// Starts a non-blocking connect.
    fn open(&mut self) {
        // SAFETY: socket takes integers, no memory.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            eprintln!("echo client: socket: {}", io::Error::last_os_error());
            // Count it as a connection that died at once, so the window keeps moving.
            self.errors += 1;
            self.load.conns -= 1;
            return;
        }
        // SAFETY: socket succeeded: the fd is open and ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes of `one`, a live local.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: self.load.addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*self.load.addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: connect reads `size_of::<sockaddr_in>()` bytes of `sa`, a live local.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        let i = self.conns.len();
        self.conns.push(Conn {
            fd,
            state: State::Connecting,
            interest: 0,
            done: 0,
            start: Instant::now(),
        });
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
            self.fail(i);
            return;
        }
        self.interest(i, libc::EPOLLOUT as u32);
    }

    fn poll(&mut self, events: &mut [libc::epoll_event], timeout_ms: i32) {
        // SAFETY: epoll_wait writes at most `events.len()` entries into `events`, borrowed
        // mutably for the call.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        for ev in events.iter().take(n.max(0) as usize) {
            let (i, flags) = (ev.u64 as usize, ev.events);
            self.on_event(i, flags);
        }
    }

    fn on_event(&mut self, i: usize, flags: u32) {
        match self.conns[i].state {
            State::Connecting => {
                if take_error(self.conns[i].fd.as_raw_fd()) != 0 {
                    self.fail(i);
                } else {
                    self.request(i, Instant::now());
                }
            }
            State::Sending => self.send(i),
            State::Receiving => self.receive(i),
            // Anything on an idle connection (EOF, reset, stray bytes) is a failure.
            State::Idle => {
                if flags != 0 {
                    self.fail(i);
                }
            }
            State::Dead => {}
        }
    }

    /// Starts request/response number n on connection `i`.
    fn request(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.state = State::Sending;
        c.done = 0;
        c.start = now;
        self.send(i);
    }

    fn send(&mut self, i: usize) {
        let size = self.load.size;
        loop {
            let c = &mut self.conns[i];
            let rest = &self.msg[c.done..];
            // SAFETY: send reads `rest.len()` bytes of `rest`, borrowed for the call.
            let n = unsafe {
                libc::send(
                    c.fd.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => return self.interest(i, libc::EPOLLOUT as u32),
                    Some(libc::EINTR) => continue,
                    _ => return self.fail(i),
                }
            }
            c.done += n as usize;
            if c.done == size {
                c.state = State::Receiving;
                c.done = 0;
                return self.interest(i, libc::EPOLLIN as u32);
            }
        }
    }

    fn receive(&mut self, i: usize) {
        let size = self.load.size;
        let c = &mut self.conns[i];
        let want = size - c.done;
        // SAFETY: recv writes at most `want <= scratch.len()` bytes into `scratch`, borrowed
        // mutably for the call.
        let n = unsafe { libc::recv(c.fd.as_raw_fd(), self.scratch.as_mut_ptr().cast(), want, 0) };
        if n < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => return,
                _ => return self.fail(i),
            }
        }
        if n == 0 {
            return self.fail(i);
        }
        c.done += n as usize;
        if c.done < size {
            return;
        }
        let now = Instant::now();
        if !self.measuring {
            c.state = State::Idle;
            self.settled += 1;
        } else if now < self.deadline {
            self.hist.record((now - c.start).as_nanos() as u64);
            self.msgs += 1;
            self.request(i, now);
        }
    }

    /// Marks connection `i` failed: counted, closed for epoll's purposes, never retried.
    fn fail(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.state == State::Dead {
            return;
        }
        if !self.measuring && c.state != State::Idle {
            self.settled += 1;
        }
        c.state = State::Dead;
        self.errors += 1;
        if c.interest != 0 {
            // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is allowed since 2.6.9).
            unsafe {
                libc::epoll_ctl(
                    self.epfd.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    c.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                )
            };
            c.interest = 0;
        }
    }

    /// Registers (or changes) connection `i`'s epoll interest, skipping the call when unchanged.
    fn interest(&mut self, i: usize, want: u32) {
        let c = &mut self.conns[i];
        if c.interest == want {
            return;
        }
        let op = if c.interest == 0 {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        let mut ev = libc::epoll_event {
            events: want,
            u64: i as u64,
        };
        // SAFETY: epoll_ctl reads `ev`, a live local, for the duration of the call.
        let r = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, c.fd.as_raw_fd(), &mut ev) };
        if r < 0 {
            return self.fail(i);
        }
        c.interest = want;
    }
}

/// The socket's pending error (SO_ERROR), 0 when none.
fn take_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `err` and the length into `len`, both
    // live locals.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 { libc::EBADF } else { err }
}
