//! Multi-calls and compound calls (issue 7), each against its baseline in the same run:
//!
//! - `file_copy`: a 1 MiB file copied in 4 KiB chunks by the paper's compound (read into the
//!   shared buffer, write what read returned, loop until read returns 0), per backend, against
//!   the plain read/write loop and a copy_file_range loop, on the calling thread.
//! - `multi_call8`: 8 independent small calls (64-byte preads of a cached file) as one
//!   multi-call, per backend, against 8 synchronous preads.
//!
//! The ratio pass adds the same multi-call reading into a compound's buffer area on a `uring`
//! registration of its own, plain and registered (`Builder::shared_buffer`: each pread a
//! `READ_FIXED` in the chain), and the io_uring floor for the 8 preads: raw requests on a plain
//! ring, linked (what a multi-call's order and stop need) and independent, each in one enter,
//! into ordinary or registered (fixed) buffers.
//!
//! After criterion's groups, a ratio pass alternates the variants (so drift hits all of them)
//! and prints each one's median time per operation over the repeats, relative to the baseline
//! (`FLEXSC_BENCH_REPEATS`, default 15). The files live in the temp dir (ext4 here: io_uring
//! reads page-cache data inline; on tmpfs it hands them to io-wq workers).

use std::hint::black_box;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flexsc_kmod::compound::{Arg, Builder, Compound, Cond};
use flexsc_kmod::{BackendKind, Config, Poster, Registration, Syscall, register};

const CHUNK: usize = 4096;
const FILE: usize = 1 << 20;
const SMALL: usize = 8;

/// A scratch file of `len` bytes, removed on drop.
struct Scratch {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl Scratch {
    fn new(tag: &str, len: usize) -> Self {
        let path = std::env::temp_dir().join(format!("flexsc-bench-{tag}-{}", std::process::id()));
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).expect("write the scratch file");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open the scratch file");
        Self { file, path }
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn rewind(fd: RawFd) {
    // SAFETY: lseek on our own fd.
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
}

/// The paper's copy loop as a compound.
fn copy_program(src: RawFd, dst: RawFd) -> Compound {
    let mut b = Builder::new();
    b.buffer(CHUNK);
    let (top, done) = (b.label(), b.label());
    b.bind(top);
    // SAFETY: the read fills at most CHUNK bytes of the CHUNK-byte shared buffer; the write
    // sends what the read returned, positive when it runs.
    unsafe {
        let r = b.call_with(
            libc::SYS_read,
            &[Arg::Imm(src as u64), Arg::Buf(0), Arg::Imm(CHUNK as u64)],
            true,
        );
        b.jump_if(Cond::Le, Arg::Ref(r, 0), Arg::Imm(0), done);
        b.call_with(
            libc::SYS_write,
            &[Arg::Imm(dst as u64), Arg::Buf(0), Arg::Ref(r, 0)],
            true,
        );
    }
    b.jump(top);
    b.bind(done);
    b.max_steps((FILE / CHUNK * 4 + 8) as u32);
    b.build().expect("valid copy program")
}

/// The plain loop: read and write 4 KiB at a time on this thread.
fn copy_plain(src: RawFd, dst: RawFd, buf: &mut [u8; CHUNK]) {
    loop {
        // SAFETY: reads at most CHUNK bytes into our buffer.
        let n = unsafe { libc::read(src, buf.as_mut_ptr().cast(), CHUNK) };
        if n <= 0 {
            break;
        }
        // SAFETY: writes the n bytes just read.
        let w = unsafe { libc::write(dst, buf.as_ptr().cast(), n as usize) };
        assert_eq!(w, n);
    }
}

fn copy_range(src: RawFd, dst: RawFd) {
    loop {
        // SAFETY: null offsets (the file positions); no memory is passed.
        let n = unsafe {
            libc::copy_file_range(
                src,
                std::ptr::null_mut(),
                dst,
                std::ptr::null_mut(),
                CHUNK,
                0,
            )
        };
        if n <= 0 {
            break;
        }
    }
}

fn reg(kind: BackendKind) -> Option<(Registration, Poster)> {
    let r = register(Config {
        cores: 1,
        pages_per_core: 1,
        backend: kind,
        ..Config::default()
    })
    .map_err(|e| eprintln!("compound bench: {kind:?} unavailable: {e}"))
    .ok()?;
    let p = r.poster(0).ok()?;
    Some((r, p))
}

const BACKENDS: [(BackendKind, &str); 2] = [
    (BackendKind::Uring, "uring"),
    (BackendKind::Threads, "threads"),
];

/// One variant: a named run of the operation measured (one whole copy, or 8 calls).
type Copy<'a> = Box<dyn FnMut() + 'a>;
type Variant<'a> = (String, Copy<'a>);

fn copy_variants<'a>(
    src: RawFd,
    dst: RawFd,
    posters: &'a mut [(String, Registration, Poster, Compound)],
) -> Vec<Variant<'a>> {
    let mut v: Vec<Variant<'a>> = Vec::new();
    let mut buf = Box::new([0u8; CHUNK]);
    v.push((
        "plain_read_write".into(),
        Box::new(move || {
            rewind(src);
            rewind(dst);
            copy_plain(src, dst, &mut buf);
        }),
    ));
    v.push((
        "copy_file_range".into(),
        Box::new(move || {
            rewind(src);
            rewind(dst);
            copy_range(src, dst);
        }),
    ));
    for (name, _, p, prog) in posters.iter_mut() {
        v.push((
            format!("compound_{name}"),
            Box::new(move || {
                rewind(src);
                rewind(dst);
                let o = p.compound(prog).expect("the copy ran");
                assert_eq!(o.failed(), None);
            }),
        ));
    }
    v
}

fn small_calls(fd: RawFd, bufs: &mut [[u8; 64]; SMALL]) -> Vec<(Syscall, bool)> {
    bufs.iter_mut()
        .enumerate()
        .map(|(i, b)| {
            // SAFETY: a 64-byte pread into its own 64-byte buffer, which outlives every run.
            let c = unsafe {
                Syscall::new(
                    libc::SYS_pread64,
                    &[fd as u64, b.as_mut_ptr() as u64, 64, (i * 512) as u64],
                )
            };
            (c, true)
        })
        .collect()
}

/// The 8 preads as a multi-call into its own buffer area, registered with the rings or not.
fn area_small_calls(fd: RawFd, registered: bool) -> Compound {
    let mut b = Builder::new();
    if registered {
        b.shared_buffer(SMALL * 64);
    } else {
        b.buffer(SMALL * 64);
    }
    for i in 0..SMALL {
        let (at, off) = ((i * 64) as u64, (i * 512) as u64);
        // SAFETY: a 64-byte pread into its own 64 bytes of the area.
        unsafe {
            b.call_with(
                libc::SYS_pread64,
                &[
                    Arg::Imm(fd as u64),
                    Arg::Buf(at),
                    Arg::Imm(64),
                    Arg::Imm(off),
                ],
                true,
            )
        };
    }
    b.build().expect("the multi-call is valid")
}

fn sync8(fd: RawFd, bufs: &mut [[u8; 64]; SMALL]) {
    for (i, b) in bufs.iter_mut().enumerate() {
        // SAFETY: a 64-byte pread into a 64-byte buffer.
        let n = unsafe { libc::pread(fd, b.as_mut_ptr().cast(), 64, (i * 512) as i64) };
        assert_eq!(n, 64);
    }
}

fn file_copy(c: &mut Criterion) {
    let (src, dst) = (Scratch::new("src", FILE), Scratch::new("dst", FILE));
    let mut posters = posters_for(|| copy_program(src.fd(), dst.fd()));
    let mut g = c.benchmark_group("file_copy_1MiB_4KiB");
    g.sample_size(20);
    for (name, mut f) in copy_variants(src.fd(), dst.fd(), &mut posters) {
        g.bench_function(name, |b| b.iter(&mut f));
    }
    g.finish();
}

fn posters_for(
    mut program: impl FnMut() -> Compound,
) -> Vec<(String, Registration, Poster, Compound)> {
    BACKENDS
        .iter()
        .filter_map(|&(k, n)| reg(k).map(|(r, p)| (n.to_string(), r, p, program())))
        .collect()
}

fn multi_call8(c: &mut Criterion) {
    let f = Scratch::new("small", 8192);
    let mut bufs = Box::new([[0u8; 64]; SMALL]);
    let calls = small_calls(f.fd(), &mut bufs);
    let mut posters = posters_for(|| flexsc_kmod::compound::multi_call(&calls).unwrap());
    let mut g = c.benchmark_group("multi_call_8_preads");
    let mut sync_bufs = Box::new([[0u8; 64]; SMALL]);
    g.bench_function("sync_8_calls", |b| b.iter(|| sync8(f.fd(), &mut sync_bufs)));
    for (name, _, p, prog) in posters.iter_mut() {
        g.bench_function(format!("multi_call_{name}"), |b| {
            b.iter(|| {
                let o = p.compound(prog).expect("ran");
                assert_eq!(black_box(o.ret), SMALL as u64 + 1);
            })
        });
    }
    g.finish();
}

/// The io_uring floor for 8 preads: raw requests on a plain ring (no library), either linked
/// (what a multi-call needs for its order and its stop) or independent, one enter for all.
struct RawRing {
    ring: io_uring::IoUring,
    fd: RawFd,
    /// The buffers registered (`IORING_REGISTER_BUFFERS`): reads are `READ_FIXED`.
    fixed: bool,
}

impl RawRing {
    fn new(fd: RawFd, fixed: Option<&mut [[u8; 64]; SMALL]>) -> Self {
        let ring = io_uring::IoUring::new(16).expect("io_uring");
        if let Some(bufs) = &fixed {
            let iov = libc::iovec {
                iov_base: bufs.as_ptr() as *mut libc::c_void,
                iov_len: size_of::<[[u8; 64]; SMALL]>(),
            };
            // SAFETY: the buffers are boxed by the caller and outlive the ring (dropped after).
            unsafe { ring.submitter().register_buffers(&[iov]) }.expect("register buffers");
        }
        Self {
            ring,
            fd,
            fixed: fixed.is_some(),
        }
    }

    fn run(&mut self, bufs: &mut [[u8; 64]; SMALL], linked: bool) {
        use io_uring::{opcode, squeue::Flags, types::Fd};
        for (i, b) in bufs.iter_mut().enumerate() {
            let off = (i * 512) as u64;
            let mut sqe = if self.fixed {
                opcode::ReadFixed::new(Fd(self.fd), b.as_mut_ptr(), 64, 0)
                    .offset(off)
                    .build()
            } else {
                opcode::Read::new(Fd(self.fd), b.as_mut_ptr(), 64)
                    .offset(off)
                    .build()
            };
            if linked && i + 1 < SMALL {
                sqe = sqe.flags(Flags::IO_LINK);
            }
            // SAFETY: each request reads 64 bytes into its own buffer, which outlives the wait
            // below (every request completes before `run` returns).
            unsafe { self.ring.submission().push(&sqe) }.expect("room");
        }
        self.ring.submit_and_wait(SMALL).expect("enter");
        let n = self.ring.completion().filter(|c| c.result() == 64).count();
        assert_eq!(n, SMALL);
    }
}

/// Median nanoseconds per run of each variant, the variants alternated in every repeat.
fn medians(variants: &mut [Variant<'_>], runs: u32, repeats: usize) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for (_, f) in variants.iter_mut() {
        f(); // warm-up
    }
    for _ in 0..repeats {
        for (i, (_, f)) in variants.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..runs {
                f();
            }
            samples[i].push(t.elapsed().as_nanos() as f64 / f64::from(runs));
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn report(title: &str, names: &[String], med: &[f64]) {
    println!(
        "\n{title} (median of repeats; ratio = time / {}'s)",
        names[0]
    );
    for (n, m) in names.iter().zip(med) {
        println!("  {n:<28} {:>12.0} ns   {:.3}x time", m, m / med[0]);
    }
}

/// The ratio pass (see the module documentation).
fn ratios(_: &mut Criterion) {
    let quick = std::env::args().any(|a| a == "--test");
    let repeats = if quick {
        1
    } else {
        std::env::var("FLEXSC_BENCH_REPEATS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15)
    };
    let (src, dst) = (Scratch::new("rsrc", FILE), Scratch::new("rdst", FILE));
    let mut posters = posters_for(|| copy_program(src.fd(), dst.fd()));
    let mut v = copy_variants(src.fd(), dst.fd(), &mut posters);
    let med = medians(&mut v, if quick { 1 } else { 10 }, repeats);
    let names: Vec<String> = v.iter().map(|(n, _)| n.clone()).collect();
    report("file copy, 1 MiB in 4 KiB chunks", &names, &med);
    drop(v);

    let f = Scratch::new("rsmall", 8192);
    let mut bufs = Box::new([[0u8; 64]; SMALL]);
    let calls = small_calls(f.fd(), &mut bufs);
    let mut posters = posters_for(|| flexsc_kmod::compound::multi_call(&calls).unwrap());
    let mut sync_bufs = Box::new([[0u8; 64]; SMALL]);
    let fd = f.fd();
    let mut v: Vec<Variant<'_>> = vec![(
        "sync_8_calls".into(),
        Box::new(|| sync8(fd, &mut sync_bufs)),
    )];
    for (name, _, p, prog) in posters.iter_mut() {
        v.push((
            format!("multi_call_{name}"),
            Box::new(move || {
                let o = p.compound(prog).expect("ran");
                assert_eq!(o.ret, SMALL as u64 + 1);
            }),
        ));
    }
    // The same registration for both: only the area's registration differs.
    if let Some(shared) = reg(BackendKind::Uring) {
        let shared = std::rc::Rc::new(std::cell::RefCell::new(shared));
        for (registered, name) in [(false, "area_buf"), (true, "area_fixed_buf")] {
            let mut prog = area_small_calls(fd, registered);
            let shared = shared.clone();
            v.push((
                format!("multi_call_uring_{name}"),
                Box::new(move || {
                    let o = shared.borrow_mut().1.compound(&mut prog).expect("ran");
                    assert_eq!(o.ret, SMALL as u64 + 1);
                }),
            ));
        }
    }
    // For scale: ONE pread through the threads backend (a call that may block: the syscall
    // thread hands its core to a sibling first, paper 3.5, as it does for a compound).
    let mut one_buf = Box::new([0u8; 64]);
    if let Some((one_reg, mut one)) = reg(BackendKind::Threads) {
        // SAFETY: a 64-byte pread into a 64-byte buffer that outlives the registration.
        let call = unsafe {
            Syscall::new(
                libc::SYS_pread64,
                &[fd as u64, one_buf.as_mut_ptr() as u64, 64, 0],
            )
        };
        v.push((
            "one_pread_threads".into(),
            Box::new(move || {
                let _keep = &one_reg;
                assert_eq!(one.call(&call), 64);
            }),
        ));
    }
    for (linked, fixed) in [(true, false), (true, true), (false, false), (false, true)] {
        let mut b = Box::new([[0u8; 64]; SMALL]);
        let mut ring = RawRing::new(fd, fixed.then_some(&mut *b));
        let name = format!(
            "raw_ring_{}{}",
            if linked { "linked" } else { "unlinked" },
            if fixed { "_fixed_buf" } else { "" }
        );
        v.push((name, Box::new(move || ring.run(&mut b, linked))));
    }
    let med = medians(&mut v, if quick { 1 } else { 2000 }, repeats);
    let names: Vec<String> = v.iter().map(|(n, _)| n.clone()).collect();
    report("8 independent 64-byte preads", &names, &med);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = file_copy, multi_call8, ratios
}
criterion_main!(benches);
