//! Specialization contexts (issue 7, protocol stack specialization): a send loop of small
//! messages over loopback, UDP and TCP, plain against specialized on the same backend (`uring`),
//! in batches of [`BATCH`] entries per submit.
//!
//! - `send`: `sendto(fd, buf, 64, MSG_NOSIGNAL)`; specialized, the request names the socket by
//!   its io_uring fixed file (no fd-table lookup and file reference count per message).
//! - `write`: `write(fd, buf, 64)`; specialized, the buffer is in the context's pool too, so the
//!   request is a `WRITE_FIXED` on a fixed file.
//!
//! A receiver thread drains each socket. Criterion measures every variant (one iteration = one
//! message); after it, plain and specialized rounds alternate on one link (see [`ratios`]) and
//! the median per-round ratios (messages/s specialized over plain) are printed: the ratio the
//! issue asks for, taken in one run with the noise of the machine spread over both sides.
//! `-- ratios-only` (a criterion filter matching nothing) prints the ratios alone; with
//! `--profile-time N` (for perf) only criterion runs.

use std::hint::black_box;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use flexsc_kmod::specialize::{Context, Hints};
use flexsc_kmod::{BackendKind, Config, Poster, Registration, Syscall, register};

/// Messages posted per submit.
const BATCH: usize = 16;
/// Bytes per message.
const MSG: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Send,
    Write,
}

/// A sending socket with a draining receiver, and the registration posting its messages.
struct Link {
    reg: Registration,
    poster: Poster,
    fd: RawFd,
    stop: Arc<AtomicBool>,
    receiver: Option<JoinHandle<()>>,
    peer: RawFd,
    ctx: Option<Context>,
    buf: Box<[u8; MSG]>,
}

impl Link {
    fn new(proto: Proto) -> Self {
        let config = Config {
            backend: BackendKind::Uring,
            pages_per_core: 1,
            ..Config::default()
        };
        let reg = register(config).expect("uring registration (is io_uring available?)");
        let poster = reg.poster(0).expect("poster");
        let (fd, peer) = match proto {
            Proto::Udp => udp_pair(),
            Proto::Tcp => tcp_pair(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let stop = stop.clone();
            std::thread::spawn(move || drain(peer, &stop))
        };
        Self {
            reg,
            poster,
            fd,
            stop,
            receiver: Some(receiver),
            peer,
            ctx: None,
            buf: Box::new([7; MSG]),
        }
    }

    /// Specializes the sending socket (with a one-buffer pool), or ends its context.
    fn set_specialized(&mut self, on: bool) {
        self.ctx = None;
        if on {
            let hints = Hints {
                message_size: MSG,
                buffers: 1,
            };
            self.ctx = Some(self.reg.specialize(self.fd, hints).expect("specialize"));
        }
    }

    /// The request for one message: from the pool when specialized with `Write`.
    fn request(&mut self, call: Call) -> Syscall {
        let buf = match (&mut self.ctx, call) {
            (Some(ctx), Call::Write) => ctx.buffer_mut(0).expect("pool buffer").as_mut_ptr(),
            _ => self.buf.as_mut_ptr(),
        } as u64;
        let fd = self.fd as u64;
        // SAFETY: the buffer (ours, or the context's pool) outlives every call posted with it:
        // `send` takes each batch's results before returning, and the link owns both.
        unsafe {
            match call {
                Call::Send => Syscall::new(
                    libc::SYS_sendto,
                    &[fd, buf, MSG as u64, libc::MSG_NOSIGNAL as u64, 0, 0],
                ),
                Call::Write => Syscall::new(libc::SYS_write, &[fd, buf, MSG as u64]),
            }
        }
    }

    /// Sends `n` messages in batches of [`BATCH`]; returns the time taken.
    fn send(&mut self, call: Call, n: u64) -> Duration {
        self.send_timed(call, n).0
    }

    /// As [`Self::send`], returning the wall time and the sending thread's CPU time.
    fn send_timed(&mut self, call: Call, n: u64) -> (Duration, Duration) {
        let req = self.request(call);
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let mut left = n;
        while left > 0 {
            let b = left.min(BATCH as u64);
            for _ in 0..b {
                self.poster.post(&req).expect("batch fits");
            }
            self.poster.submit();
            let mut done = 0;
            while done < b {
                done += self.poster.harvest(|_, r| {
                    assert_eq!(r, MSG as i64, "send failed");
                }) as u64;
                if done < b {
                    self.poster.wait();
                }
            }
            left -= b;
        }
        (t0.elapsed(), thread_cpu().saturating_sub(cpu0))
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.ctx = None;
        // SAFETY: shutdown(2) on our own sockets wakes the receiver's blocking recv.
        unsafe {
            libc::shutdown(self.peer, libc::SHUT_RDWR);
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
        if let Some(r) = self.receiver.take() {
            let _ = r.join();
        }
        self.reg.shutdown();
        // SAFETY: our own fds, not used after this.
        unsafe {
            libc::close(self.fd);
            libc::close(self.peer);
        }
    }
}

/// The calling thread's CPU time (user + system). With the `uring` backend's inline submission
/// the whole send path, loopback delivery included, runs on this thread: its CPU time per message
/// is the cost, without the time the thread waited for a CPU on a loaded machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Reads `fd` until `stop` (or the socket is shut down).
fn drain(fd: RawFd, stop: &AtomicBool) {
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Acquire) {
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r <= 0 && stop.load(Ordering::Acquire) {
            return;
        }
        black_box(r);
    }
}

fn loopback() -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    }
}

const ADDR_LEN: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn bound(kind: libc::c_int) -> RawFd {
    let addr = loopback();
    // SAFETY: socket and bind on a local address value.
    unsafe {
        let fd = libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        assert_eq!(libc::bind(fd, (&raw const addr).cast(), ADDR_LEN), 0);
        fd
    }
}

fn connect_to(fd: RawFd, peer: RawFd) {
    let mut addr = loopback();
    let mut len = ADDR_LEN;
    // SAFETY: getsockname writes at most `len` bytes into `addr`; connect reads it.
    unsafe {
        assert_eq!(libc::getsockname(peer, (&raw mut addr).cast(), &mut len), 0);
        assert_eq!(libc::connect(fd, (&raw const addr).cast(), len), 0);
    }
}

/// A connected UDP pair (sender, receiver).
fn udp_pair() -> (RawFd, RawFd) {
    let (a, b) = (bound(libc::SOCK_DGRAM), bound(libc::SOCK_DGRAM));
    connect_to(a, b);
    connect_to(b, a);
    (a, b)
}

/// A connected TCP pair (client, accepted side).
fn tcp_pair() -> (RawFd, RawFd) {
    let l = bound(libc::SOCK_STREAM);
    // SAFETY: listen, accept and close on our own sockets.
    unsafe {
        assert_eq!(libc::listen(l, 1), 0);
        let c = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        connect_to(c, l);
        let s = libc::accept4(
            l,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        );
        assert!(s >= 0, "accept");
        libc::close(l);
        (c, s)
    }
}

fn name(proto: Proto) -> &'static str {
    match proto {
        Proto::Udp => "udp",
        Proto::Tcp => "tcp",
    }
}

fn variant(call: Call, specialized: bool) -> &'static str {
    match (call, specialized) {
        (Call::Send, false) => "send_plain",
        (Call::Send, true) => "send_specialized",
        (Call::Write, false) => "write_plain",
        (Call::Write, true) => "write_specialized_pool",
    }
}

fn send_loops(c: &mut Criterion) {
    for proto in [Proto::Udp, Proto::Tcp] {
        let mut g = c.benchmark_group(format!("specialize_{}_{MSG}B", name(proto)));
        g.throughput(Throughput::Elements(1));
        for call in [Call::Send, Call::Write] {
            for specialized in [false, true] {
                let mut link = Link::new(proto);
                link.set_specialized(specialized);
                let id = BenchmarkId::new(variant(call, specialized), BATCH);
                g.bench_function(id, |b| b.iter_custom(|n| link.send(call, n)));
            }
        }
        g.finish();
    }
}

/// Alternating rounds (plain, specialized, specialized, plain, ...) on one link, specialized for
/// its specialized rounds only (same sockets, ring and receiver: no bias between two setups): the
/// median per-round ratio of messages per second of wall time and per second of the sending
/// thread's CPU time (specialized over plain).
fn ratios(rounds: usize, per_round: u64) {
    println!(
        "\nspecialized vs plain (median of {rounds} alternating rounds of {per_round} messages, \
         batch {BATCH}, {MSG} B): ratio of messages/s by wall time, and by sender CPU time"
    );
    for proto in [Proto::Udp, Proto::Tcp] {
        for call in [Call::Send, Call::Write] {
            let mut link = Link::new(proto);
            link.send(call, per_round / 4);
            let mut round = |specialized: bool| {
                link.set_specialized(specialized);
                link.send_timed(call, per_round)
            };
            let (mut wall, mut cpu) = (Vec::new(), Vec::new());
            let (mut plain_cpu, mut spec_cpu) = (Vec::new(), Vec::new());
            for i in 0..rounds {
                let (p, s) = if i % 2 == 0 {
                    let p = round(false);
                    (p, round(true))
                } else {
                    let s = round(true);
                    (round(false), s)
                };
                wall.push(p.0.as_secs_f64() / s.0.as_secs_f64());
                cpu.push(p.1.as_secs_f64() / s.1.as_secs_f64());
                plain_cpu.push(p.1.as_secs_f64() * 1e9 / per_round as f64);
                spec_cpu.push(s.1.as_secs_f64() * 1e9 / per_round as f64);
            }
            // The cheapest round of each: the cost with the least interference from other work.
            let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
            let (bp, bs) = (best(&plain_cpu), best(&spec_cpu));
            println!(
                "  {:<4} {:<24} wall {:.3}x  cpu {:.3}x  best-round cpu {:.3}x  \
                 (sender CPU per message: plain median {:.0} ns, best {bp:.0} ns; \
                 specialized best {bs:.0} ns)",
                name(proto),
                variant(call, true),
                median(&mut wall),
                median(&mut cpu),
                bp / bs,
                median(&mut plain_cpu),
            );
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let probe = Config {
        backend: BackendKind::Uring,
        pages_per_core: 1,
        ..Config::default()
    };
    if let Err(e) = register(probe) {
        eprintln!("skipping the specialization benchmarks: no uring registration here ({e})");
        return;
    }
    let test_mode = std::env::args().any(|a| a == "--test");
    // `--profile-time N` (for perf): criterion alone.
    let profiling = std::env::args().any(|a| a == "--profile-time");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    send_loops(&mut c);
    c.final_summary();
    if profiling {
        return;
    }
    if test_mode {
        ratios(1, 1_000);
    } else {
        ratios(61, 50_000);
    }
}
