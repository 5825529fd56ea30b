//! White-box tests: what the public API cannot show (system calls per batch, the wait path of
//! kernels without FUTEX_WAIT).

mod poll;

use std::time::{Duration, Instant};

use super::ring::{Caps, Setup};
use super::{UringBackend, UringCore};
use crate::area::SyscallArea;
use crate::backend::CoreBackend;
use crate::config::{BackendKind, Config};
use crate::entry::{NR_NOP, status};
use crate::sync::Arc;

fn backend(pages: usize) -> (Arc<SyscallArea>, UringBackend, Config) {
    let config = Config {
        pages_per_core: pages,
        backend: BackendKind::Uring,
        ..Config::default()
    };
    let area = Arc::new(SyscallArea::new(1, pages));
    let b = UringBackend::start(area.clone(), &config).expect("io_uring available");
    (area, b, config)
}

fn core_of(b: &UringBackend, area: &Arc<SyscallArea>, config: &Config, caps: Caps) -> UringCore {
    let sched = b.fallback.group(0).clone();
    UringCore::new(area.clone(), 0, sched, caps, Setup::new(config).unwrap()).unwrap()
}

#[test]
fn a_batch_is_one_enter() {
    let (area, b, config) = backend(4);
    let mut core = core_of(&b, &area, &config, b.caps);
    let slots: Vec<u32> = (0..256).collect();
    for &s in &slots {
        area.entry(0, s).post(NR_NOP, 0, [0; 6]);
    }
    core.submit(&slots);
    assert_eq!(
        core.enters, 1,
        "256 NOPs took {} io_uring_enter calls",
        core.enters
    );
    for &s in &slots {
        assert_eq!(area.entry(0, s).take(), Some(0), "slot {s}");
    }
    // A second batch: again one.
    for &s in &slots[..100] {
        area.entry(0, s).post(NR_NOP, 0, [0; 6]);
    }
    core.submit(&slots[..100]);
    assert_eq!(core.enters, 2);
}

#[test]
fn bounded_wait_sees_fallback_completions() {
    let (area, b, config) = backend(1);
    let mut core = core_of(&b, &area, &config, b.caps.without_futex_wait());
    let mut p = [0i32; 2];
    // SAFETY: pipe writes two fds into our array.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let mut buf = [0u8; 8];
    // Slot 0: a read on an empty pipe (io_uring, pending); slot 1: a 20 ms nanosleep (threads).
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    let read = [p[0] as u64, buf.as_mut_ptr() as u64, 8, 0, 0, 0];
    area.entry(0, 0).post(libc::SYS_read as u16, 3, read);
    let sleep = [&ts as *const _ as u64, 0, 0, 0, 0, 0];
    area.entry(0, 1).post(libc::SYS_nanosleep as u16, 2, sleep);
    core.submit(&[0, 1]);
    let t = Instant::now();
    wait_done(&mut core, &area, 1);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(area.entry(0, 1).take(), Some(0));
    assert_eq!(area.entry(0, 0).status(), status::BUSY);
    // SAFETY: writes one byte from a live buffer to our pipe.
    assert_eq!(unsafe { libc::write(p[1], b"x".as_ptr().cast(), 1) }, 1);
    wait_done(&mut core, &area, 0);
    assert_eq!(area.entry(0, 0).take(), Some(1));
    // SAFETY: closing our own fds.
    unsafe {
        libc::close(p[0]);
        libc::close(p[1]);
    }
}

/// Waits until entry `slot` of core 0 is done.
fn wait_done(core: &mut UringCore, area: &SyscallArea, slot: u32) {
    core.wait(
        &mut || area.entry(0, slot).status() == status::DONE,
        &mut || false,
        None,
    );
}

/// A new empty file, open for reading and writing, already unlinked.
fn unlinked_file(tag: &str) -> std::fs::File {
    let path = std::env::temp_dir().join(format!("flexsc-{tag}-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn a_multi_call_is_one_chain_on_the_ring() {
    use crate::compound::{Arg, Builder};
    let (area, b, config) = backend(1);
    let mut core = core_of(&b, &area, &config, b.caps);
    let mut b2 = Builder::new();
    b2.buffer(64);
    let fd = unlinked_file("chain");
    let fd_num = std::os::fd::AsRawFd::as_raw_fd(&fd) as u64;
    // SAFETY: writes 5 bytes from, then reads 5 bytes into, the 64-byte shared buffer.
    unsafe {
        b2.call_with(
            libc::SYS_pwrite64,
            &[Arg::Imm(fd_num), Arg::Buf(0), Arg::Imm(5), Arg::Imm(0)],
            true,
        );
        for i in 0..7 {
            b2.call_with(
                libc::SYS_pread64,
                &[
                    Arg::Imm(fd_num),
                    Arg::Buf(8 + i * 8),
                    Arg::Imm(5),
                    Arg::Imm(0),
                ],
                true,
            );
        }
    }
    let mut prog = b2.build().unwrap();
    prog.buffer_mut()[..5].copy_from_slice(b"chain");
    // SAFETY: `prog` outlives the entry, which is taken below.
    let call = unsafe { prog.entry_call() };
    area.entry(0, 0).post(call.nr() as u16, 1, *call.args());
    core.submit(&[0]);
    assert_eq!(
        core.enters, 1,
        "the whole multi-call is submitted with one enter"
    );
    wait_done(&mut core, &area, 0);
    assert_eq!(area.entry(0, 0).take(), Some(9));
    assert!(core.chains.iter().all(Option::is_none));
    assert_eq!(prog.results(), [5; 8]);
    assert_eq!(&prog.buffer()[8 * 7..8 * 7 + 5], b"chain");
}

#[test]
fn an_interrupted_chain_ends_with_eintr() {
    let (area, b, config) = backend(1);
    let mut core = core_of(&b, &area, &config, b.caps);
    let mut p = [0i32; 2];
    // SAFETY: pipe writes two fds into our array.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let mut buf = [0u8; 8];
    // A positional read of an empty pipe waits inside a chain (see `chain`), then a NOP.
    // SAFETY: reads at most 8 bytes into `buf`, which outlives the entry.
    let calls = unsafe {
        [
            (
                crate::Syscall::new(
                    libc::SYS_pread64,
                    &[p[0] as u64, buf.as_mut_ptr() as u64, 8, 0],
                ),
                true,
            ),
            (crate::Syscall::nop(), true),
        ]
    };
    let mut prog = crate::compound::multi_call(&calls).unwrap();
    // SAFETY: `prog` outlives the entry, which is taken below.
    let call = unsafe { prog.entry_call() };
    area.entry(0, 0).post(call.nr() as u16, 1, *call.args());
    core.submit(&[0]);
    assert!(core.chains[0].is_some(), "the multi-call runs as a chain");
    assert_eq!(area.entry(0, 0).status(), status::BUSY);
    core.interrupt(0);
    wait_done(&mut core, &area, 0);
    assert_eq!(area.entry(0, 0).take(), Some(-i64::from(libc::EINTR)));
    let not_run = crate::compound::exec::NOT_RUN;
    assert_eq!(prog.results(), [not_run, not_run]);
    // SAFETY: closing our own fds.
    unsafe {
        libc::close(p[0]);
        libc::close(p[1]);
    }
}

#[test]
fn a_shared_buffer_is_a_fixed_buffer_until_dropped() {
    use super::chain::Chain;
    use super::opcode::{self, Route};
    use crate::compound::{Arg, Builder};
    use io_uring::opcode::{ReadFixed, WriteFixed};
    let (area, b, config) = backend(1);
    let mut core = core_of(&b, &area, &config, b.caps);
    let file = unlinked_file("fixed");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file) as u64;
    let mut b2 = Builder::new();
    b2.shared_buffer(4096);
    // SAFETY: writes 5 bytes from, then reads 5 bytes into, the 4096-byte shared buffer.
    unsafe {
        b2.call_with(
            libc::SYS_pwrite64,
            &[Arg::Imm(fd), Arg::Buf(0), Arg::Imm(5), Arg::Imm(0)],
            true,
        );
        b2.call_with(
            libc::SYS_pread64,
            &[Arg::Imm(fd), Arg::Buf(64), Arg::Imm(5), Arg::Imm(0)],
            true,
        );
    }
    let mut prog = b2.build().unwrap();
    prog.buffer_mut()[..5].copy_from_slice(b"fixed");
    // SAFETY: `prog` outlives the entry, which is taken below.
    let call = unsafe { prog.entry_call() };
    let header = call.args()[0];
    // The ring registers the area at its next submit.
    core.submit(&[]);
    // SAFETY: `prog` is alive and untouched while the plan reads it.
    let chain = unsafe { Chain::plan(header, &core.caps, &core.specs) }.expect("a chain");
    assert_eq!(chain.opcodes(), [WriteFixed::CODE, ReadFixed::CODE]);
    area.entry(0, 0).post(call.nr() as u16, 1, *call.args());
    core.submit(&[0]);
    wait_done(&mut core, &area, 0);
    assert_eq!(area.entry(0, 0).take(), Some(3));
    assert_eq!(prog.results(), [5, 5]);
    assert_eq!(&prog.buffer()[64..69], b"fixed");

    // A single entry into the area: READ_FIXED on the plain fd; outside it: a plain READ.
    let inside = [fd, prog.buffer().as_ptr() as u64 + 128, 5, 0, 0, 0];
    let nr = libc::SYS_pread64 as u16;
    let fixed = core.specs.lookup(nr, &inside);
    match opcode::route(nr, &inside, &core.caps, fixed) {
        Route::Ring(sqe, _) => assert_eq!(sqe.get_opcode() as u8, ReadFixed::CODE),
        Route::Fallback => panic!("pread into the area is not on the ring"),
    }
    let mut plain = [0u8; 5];
    let outside = [fd, plain.as_mut_ptr() as u64, 5, 0, 0, 0];
    assert!(core.specs.lookup(nr, &outside).is_none());
    area.entry(0, 1).post(nr, 4, inside);
    core.submit(&[1]);
    wait_done(&mut core, &area, 1);
    assert_eq!(area.entry(0, 1).take(), Some(5));
    assert_eq!(&prog.buffer()[128..133], b"fixed");

    // Dropped: the ring still holds the registration, and the mapping, until it syncs; then
    // neither.
    let addr = prog.buffer().as_ptr() as usize;
    drop(prog);
    let mut vec = [0u8; 1];
    // SAFETY: mincore only inspects the mapping at `addr` (ENOMEM if there is none).
    let mapped =
        |vec: &mut [u8; 1]| unsafe { libc::mincore(addr as *mut _, 4096, vec.as_mut_ptr()) };
    assert_eq!(
        mapped(&mut vec),
        0,
        "unmapped while a ring has it registered"
    );
    assert!(core.specs.lookup(nr, &inside).is_some());
    core.submit(&[]);
    assert!(
        core.specs.lookup(nr, &inside).is_none(),
        "the registration outlived the shared buffer"
    );
}
