//! Conformance cases for multi-calls and compound calls (`flexsc_kmod::compound`), run on every
//! backend configuration like the rest of the suite (and, for kmod, in the VM).

use crate::common::*;
use crate::req;
use flexsc_kmod::Syscall;
use flexsc_kmod::compound::abi::{self, Header, NR_COMPOUND, Op, op_flags, op_kind, src};
use flexsc_kmod::compound::exec::NOT_RUN;
use flexsc_kmod::compound::{Arg, Builder, Cond};
use libc::*;

fn neg(errno: i32) -> i64 {
    -(errno as i64)
}

fn file_bytes(p: &std::ffi::CString) -> Vec<u8> {
    std::fs::read(p.to_str().unwrap()).unwrap()
}

/// A multi-call of calls io_uring has exact requests for (one linked chain there): every
/// result filled in, in order, and the paper's `count + 1`.
pub fn multicall_in_order(c: &Case) {
    let mut x = c.ctx();
    let f = x.dir.file("m", b"");
    let fd = open_path(&f, O_RDWR);
    let data = *b"hello";
    let mut back = [0u8; 5];
    let calls = [
        (req(SYS_pwrite64, &[fd.a(), addr(&data), 5, 0]), true),
        (req(SYS_pread64, &[fd.a(), addr_mut(&mut back), 5, 0]), true),
        (req(SYS_fsync, &[fd.a()]), true),
        (Syscall::nop(), false),
        (req(SYS_pwrite64, &[fd.a(), addr(&data), 2, 5]), false),
    ];
    let mut results = [0i64; 5];
    let r = x.p.multi_call(&calls, &mut results).expect("multi_call");
    assert_eq!(r, 6, "count + 1: no checked call failed");
    assert_eq!(results, [5, 5, 0, 0, 2]);
    assert_eq!(&back, b"hello", "the read saw the write before it");
    assert_eq!(file_bytes(&f), b"hellohe");
    // Calls io_uring has no exact request for (a syscall thread runs those).
    let calls = [
        (req(SYS_getppid, &[]), true),
        (req(SYS_lseek, &[fd.a(), 3, SEEK_SET as u64]), true),
    ];
    let mut results = [0i64; 2];
    assert_eq!(x.p.multi_call(&calls, &mut results), Ok(3));
    assert_eq!(results, [sys(SYS_getppid, &[]), 3]);
    // Longer than the submission queue (one page: 64 requests): never split on io_uring.
    let mut one = [0u8; 300];
    let calls: Vec<_> = one
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            let a = [fd.a(), std::ptr::from_mut(b) as u64, 1, (i % 7) as u64];
            (req(SYS_pread64, &a), true)
        })
        .collect();
    let mut results = vec![0i64; calls.len()];
    assert_eq!(x.p.multi_call(&calls, &mut results), Ok(301));
    assert!(results.iter().all(|&r| r == 1), "{results:?}");
    let want: Vec<u8> = (0..300).map(|i| b"hellohe"[i % 7]).collect();
    assert_eq!(one.to_vec(), want);
}

/// The first checked failure stops a multi-call (the paper's index, later calls not run); an
/// unchecked failure does not; a short transfer is no failure.
pub fn multicall_error_stops(c: &Case) {
    let mut x = c.ctx();
    let f = x.dir.file("e", b"data");
    let fd = open_path(&f, O_RDWR);
    let mut buf = [0u8; 100];
    let bad = 1_000_000u64;
    let calls = [
        (req(SYS_pread64, &[fd.a(), addr_mut(&mut buf), 4, 0]), true),
        (req(SYS_pread64, &[bad, addr_mut(&mut buf), 4, 0]), true),
        (req(SYS_pwrite64, &[fd.a(), addr(b"X"), 1, 0]), true),
    ];
    let mut results = [0i64; 3];
    assert_eq!(x.p.multi_call(&calls, &mut results), Ok(2));
    assert_eq!(results, [4, neg(EBADF), NOT_RUN]);
    assert_eq!(
        file_bytes(&f),
        b"data",
        "the call after the stop did not run"
    );
    // Unchecked: the failure is recorded and the rest runs.
    let calls = [
        (req(SYS_pread64, &[bad, addr_mut(&mut buf), 4, 0]), false),
        (req(SYS_pwrite64, &[fd.a(), addr(b"Y"), 1, 0]), true),
    ];
    let mut results = [0i64; 2];
    assert_eq!(x.p.multi_call(&calls, &mut results), Ok(3));
    assert_eq!(results, [neg(EBADF), 1]);
    assert_eq!(file_bytes(&f), b"Yata");
    // A checked short read (4 of 100 bytes) is a success: the calls after it run (on io_uring
    // the short read breaks the link; the rest is resubmitted).
    let calls = [
        (
            req(SYS_pread64, &[fd.a(), addr_mut(&mut buf), 100, 0]),
            true,
        ),
        (req(SYS_pwrite64, &[fd.a(), addr(b"Z"), 1, 4]), true),
        (
            req(SYS_pread64, &[fd.a(), addr_mut(&mut buf), 100, 2]),
            true,
        ),
    ];
    let mut results = [0i64; 3];
    assert_eq!(x.p.multi_call(&calls, &mut results), Ok(4));
    assert_eq!(results, [4, 1, 3]);
    assert_eq!(&buf[..3], b"taZ");
}

/// Arguments that reference earlier results, with offsets, and the shared buffer.
pub fn compound_references(c: &Case) {
    let mut x = c.ctx();
    let f = x.dir.file("r", b"0123456789");
    let out = x.dir.file("o", b"");
    let mut b = Builder::new();
    b.buffer(64);
    // SAFETY: the paths outlive the run; reads and writes stay within the 64-byte buffer
    // (at most 10 bytes read at offset 0), and the fds are the ones the opens returned.
    let (fd, n, ofd) = unsafe {
        let fd = b.call_with(
            SYS_openat,
            &[
                Arg::Imm(AT_FDCWD as u64),
                Arg::Imm(cptr(&f)),
                Arg::Imm(O_RDONLY as u64),
            ],
            true,
        );
        let n = b.call_with(
            SYS_pread64,
            &[Arg::Ref(fd, 0), Arg::Buf(0), Arg::Imm(10), Arg::Imm(0)],
            true,
        );
        let ofd = b.call_with(
            SYS_openat,
            &[
                Arg::Imm(AT_FDCWD as u64),
                Arg::Imm(cptr(&out)),
                Arg::Imm(O_WRONLY as u64),
            ],
            true,
        );
        // Write the 10 bytes at offset 10 + 2 = 12 (a result plus an offset), then 4 bytes from
        // buffer offset 6 at offset 0.
        b.call_with(
            SYS_pwrite64,
            &[
                Arg::Ref(ofd, 0),
                Arg::Buf(0),
                Arg::Ref(n, 0),
                Arg::Ref(n, 2),
            ],
            true,
        );
        b.call_with(
            SYS_pwrite64,
            &[Arg::Ref(ofd, 0), Arg::Buf(6), Arg::Imm(4), Arg::Imm(0)],
            true,
        );
        b.call_with(SYS_close, &[Arg::Ref(fd, 0)], true);
        b.call_with(SYS_close, &[Arg::Ref(ofd, 0)], true);
        (fd, n, ofd)
    };
    let mut prog = b.build().expect("valid");
    let out_come = x.p.compound(&mut prog).expect("ran");
    assert_eq!(out_come.ret, 8, "nops + 1");
    assert_eq!(out_come.steps, 7);
    assert!(prog.result(fd) >= 0 && prog.result(ofd) >= 0);
    assert_eq!(prog.result(n), 10);
    assert_eq!(&prog.buffer()[..10], b"0123456789");
    let mut want = b"6789".to_vec();
    want.resize(12, 0);
    want.extend_from_slice(b"0123456789");
    assert_eq!(file_bytes(&out), want);
    // The compound closed both fds (checking with fcntl would race other cases' opens).
    assert_eq!(prog.results()[5..], [0, 0]);
}

/// Comparisons that skip, stop and jump; loops bounded by the step limit.
pub fn compound_control_flow(c: &Case) {
    let mut x = c.ctx();
    let f = x.dir.file("c", b"");
    let fd = open_path(&f, O_WRONLY);
    let pid = sys(SYS_getpid, &[]) as u64;
    let mut b = Builder::new();
    let skip = b.label();
    let me = b.call(req(SYS_getpid, &[]), true);
    b.jump_if(Cond::Eq, Arg::Ref(me, 0), Arg::Imm(pid), skip);
    b.call(req(SYS_pwrite64, &[fd.a(), addr(b"skipped"), 7, 0]), true);
    b.bind(skip);
    let w = b.call(req(SYS_pwrite64, &[fd.a(), addr(b"ran"), 3, 0]), true);
    b.stop();
    let after = b.call(
        req(SYS_pwrite64, &[fd.a(), addr(b"after stop"), 10, 0]),
        true,
    );
    let mut p = b.build().unwrap();
    let o = x.p.compound(&mut p).expect("ran");
    assert_eq!((o.ret, o.steps, o.failed()), (7, 4, None));
    assert_eq!(p.result(w), 3);
    assert_eq!(p.result(after), NOT_RUN);
    assert_eq!(file_bytes(&f), b"ran");

    // A loop with no way out ends at the step limit.
    let mut b = Builder::new();
    let top = b.label();
    b.bind(top);
    b.call(Syscall::nop(), true);
    b.jump(top);
    b.max_steps(101);
    let mut p = b.build().unwrap();
    let e = x.p.compound(&mut p).expect_err("the step limit");
    assert_eq!((e.errno, e.steps, e.stop), (ELOOP, 101, 1));
    assert!(!e.rejected());
    // A counted loop: lseek(fd, 1, SEEK_CUR) until the position reaches 5.
    let mut b = Builder::new();
    let top = b.label();
    b.call(req(SYS_lseek, &[fd.a(), 0, SEEK_SET as u64]), true);
    b.bind(top);
    let pos = b.call(req(SYS_lseek, &[fd.a(), 1, SEEK_CUR as u64]), true);
    b.jump_if(Cond::Lt, Arg::Ref(pos, 0), Arg::Imm(5), top);
    b.max_steps(100);
    let mut p = b.build().unwrap();
    let o = x.p.compound(&mut p).expect("ran");
    assert_eq!((o.ret, o.steps), (4, 1 + 5 * 2));
    assert_eq!(p.result(pos), 5);
    // A checked failure inside a loop reports its op.
    let mut b = Builder::new();
    let top = b.label();
    b.bind(top);
    b.call(req(SYS_lseek, &[fd.a(), 1, SEEK_CUR as u64]), false);
    let bad = b.call(req(SYS_close, &[1_000_000]), true);
    b.jump(top);
    b.max_steps(100);
    let mut p = b.build().unwrap();
    let o = x.p.compound(&mut p).expect("ran");
    assert_eq!(o.failed(), Some(bad));
    assert_eq!(p.result(bad), neg(EBADF));
}

/// The paper's example: a file copy as one compound (read into the shared buffer, write what
/// read returned, loop until read returns 0).
pub fn compound_file_copy(c: &Case) {
    let mut x = c.ctx();
    let content = pattern(4096 * 5 + 123, 3);
    let from = x.dir.file("from", &content);
    let to = x.dir.file("to", b"");
    let (src_fd, dst_fd) = (open_path(&from, O_RDONLY), open_path(&to, O_WRONLY));
    let mut prog = copy_program(src_fd.a(), dst_fd.a(), 4096, 1000);
    let o = x.p.compound(&mut prog).expect("ran");
    assert_eq!(o.failed(), None);
    // 6 reads with data, 6 writes, 2 jumps per round; the 7th read returns 0 and the jump out.
    assert_eq!(o.steps, 6 * 4 + 2);
    assert_eq!(file_bytes(&to), content);
    // A destination that fails stops the copy at the write.
    let ro = open_path(&to, O_RDONLY);
    sys(SYS_lseek, &[src_fd.a(), 0, SEEK_SET as u64]);
    let mut prog = copy_program(src_fd.a(), ro.a(), 4096, 1000);
    let o = x.p.compound(&mut prog).expect("ran");
    assert_eq!(o.failed().map(|op| op.index()), Some(2));
    assert_eq!(prog.results()[2], neg(EBADF));
}

/// A compound whose buffer area is a `SharedBuffer` (io_uring fixed buffers on `uring`): the
/// same results as with a plain area, for a multi-call (one chain on `uring`), the file copy
/// (a loop: a syscall thread) and single entries into the area; run twice (the registration
/// lasts as long as the compound).
pub fn compound_shared_buffer(c: &Case) {
    let mut x = c.ctx();
    let f = x.dir.file("s", b"");
    let fd = open_path(&f, O_RDWR);
    let mut b = Builder::new();
    b.shared_buffer(4096);
    // SAFETY: every transfer stays within the 4096-byte area (5 bytes at offsets 0 to 48).
    unsafe {
        b.call_with(
            SYS_pwrite64,
            &[Arg::Imm(fd.a()), Arg::Buf(0), Arg::Imm(5), Arg::Imm(0)],
            true,
        );
        for i in 1..7 {
            b.call_with(
                SYS_pread64,
                &[Arg::Imm(fd.a()), Arg::Buf(i * 8), Arg::Imm(5), Arg::Imm(0)],
                true,
            );
        }
    }
    let mut prog = b.build().expect("valid");
    for round in 0..2 {
        prog.buffer_mut().fill(0);
        prog.buffer_mut()[..5].copy_from_slice(b"fixed");
        let o = x.p.compound(&mut prog).expect("ran");
        assert_eq!(o.ret, 8, "round {round}: nops + 1");
        assert_eq!(prog.results(), [5; 7], "round {round}");
        for i in 1..7 {
            assert_eq!(&prog.buffer()[i * 8..i * 8 + 5], b"fixed", "round {round}");
        }
    }
    // A single entry whose buffer lies in the area.
    let at = prog.buffer().as_ptr() as u64 + 100;
    assert_eq!(x.p.call(&req(SYS_pread64, &[fd.a(), at, 5, 0])), 5);
    assert_eq!(&prog.buffer()[100..105], b"fixed");
    assert_eq!(x.p.call(&req(SYS_pwrite64, &[fd.a(), at, 5, 5])), 5);
    assert_eq!(file_bytes(&f), b"fixedfixed");
    drop(prog);

    // The file copy with its chunk in a shared buffer.
    let content = pattern(4096 * 3 + 5, 7);
    let from = x.dir.file("sfrom", &content);
    let to = x.dir.file("sto", b"");
    let (src_fd, dst_fd) = (open_path(&from, O_RDONLY), open_path(&to, O_WRONLY));
    let mut b = Builder::new();
    b.shared_buffer(4096);
    let (top, done) = (b.label(), b.label());
    b.bind(top);
    // SAFETY: as in `copy_program`.
    unsafe {
        let r = b.call_with(
            SYS_read,
            &[Arg::Imm(src_fd.a()), Arg::Buf(0), Arg::Imm(4096)],
            true,
        );
        b.jump_if(Cond::Le, Arg::Ref(r, 0), Arg::Imm(0), done);
        b.call_with(
            SYS_write,
            &[Arg::Imm(dst_fd.a()), Arg::Buf(0), Arg::Ref(r, 0)],
            true,
        );
    }
    b.jump(top);
    b.bind(done);
    b.max_steps(100);
    let mut prog = b.build().expect("valid");
    let o = x.p.compound(&mut prog).expect("ran");
    assert_eq!((o.failed(), o.steps), (None, 4 * 4 + 2));
    assert_eq!(file_bytes(&to), content);
}

/// read(src, buf, chunk) -> if <= 0 stop -> write(dst, buf, what read returned) -> loop.
pub fn copy_program(
    src_fd: u64,
    dst_fd: u64,
    chunk: u64,
    max_steps: u32,
) -> flexsc_kmod::compound::Compound {
    let mut b = Builder::new();
    b.buffer(chunk as usize);
    let (top, done) = (b.label(), b.label());
    b.bind(top);
    // SAFETY: the read fills at most `chunk` bytes of the `chunk`-byte buffer, and the write
    // sends what the read returned, which is positive when it runs.
    unsafe {
        let r = b.call_with(
            SYS_read,
            &[Arg::Imm(src_fd), Arg::Buf(0), Arg::Imm(chunk)],
            true,
        );
        b.jump_if(Cond::Le, Arg::Ref(r, 0), Arg::Imm(0), done);
        b.call_with(
            SYS_write,
            &[Arg::Imm(dst_fd), Arg::Buf(0), Arg::Ref(r, 0)],
            true,
        );
    }
    b.jump(top);
    b.bind(done);
    b.max_steps(max_steps);
    b.build().expect("the copy program is valid")
}

/// A valid op that would change the file, to prove a rejected program ran nothing.
fn marker_op(fd: u64, data: &'static [u8]) -> Op {
    Op {
        kind: op_kind::CALL,
        flags: op_flags::CHECK,
        nr: SYS_pwrite64 as u16,
        nargs: 4,
        args: [fd, data.as_ptr() as u64, data.len() as u64, 0, 0, 0],
        ..Op::default()
    }
}

/// Posts a hand-made program; returns the entry's result and the header after.
fn post_raw(x: &mut Ctx, h: &mut Header, ops: &[Op], results: &mut [i64]) -> i64 {
    h.ops = ops.as_ptr() as u64;
    h.results = results.as_mut_ptr() as u64;
    x.p.call(&req(NR_COMPOUND.into(), &[std::ptr::from_mut(h) as u64]))
}

/// Malformed programs are rejected before anything runs, with a clear error (the builder
/// refuses them; an executor finding one in an entry answers the errno, `steps` 0).
pub fn compound_rejected(c: &Case) {
    let mut x = c.ctx();
    let f = x.dir.file("x", b"untouched");
    let fd = open_path(&f, O_WRONLY);
    let mark = marker_op(fd.a(), b"CHANGED");
    let call = |nr: i64, a: [u64; 6]| Op {
        kind: op_kind::CALL,
        nr: nr as u16,
        args: a,
        ..Op::default()
    };
    let ok_header = |n: usize| Header {
        version: abi::VERSION,
        nops: n as u32,
        max_steps: 100,
        ..Header::default()
    };
    let mut fwd_ref = call(SYS_close, [0; 6]);
    fwd_ref.src[0] = src::RESULT;
    fwd_ref.refs[0] = 2;
    let mut self_ref = fwd_ref;
    self_ref.refs[0] = 1;
    let jump_out = Op {
        kind: op_kind::JUMP,
        target: 3,
        ..Op::default()
    };
    let mut buf_no_area = call(SYS_read, [0; 6]);
    buf_no_area.src[1] = src::BUF;
    type Case = (&'static str, Header, Vec<Op>, i32, u32);
    let mut cases: Vec<Case> = vec![
        (
            "forward reference",
            ok_header(3),
            vec![mark, fwd_ref, call(SYS_getpid, [0; 6])],
            EINVAL,
            1,
        ),
        (
            "reference to itself",
            ok_header(2),
            vec![mark, self_ref],
            EINVAL,
            1,
        ),
        (
            "jump out of range",
            ok_header(2),
            vec![mark, jump_out],
            EINVAL,
            1,
        ),
        (
            "buffer without area",
            ok_header(2),
            vec![mark, buf_no_area],
            EFAULT,
            1,
        ),
        (
            "unknown kind",
            ok_header(2),
            vec![
                mark,
                Op {
                    kind: 9,
                    ..Op::default()
                },
            ],
            EINVAL,
            1,
        ),
        (
            "nested compound",
            ok_header(2),
            vec![mark, call(NR_COMPOUND.into(), [0; 6])],
            EPERM,
            1,
        ),
    ];
    for nr in [
        SYS_clone,
        SYS_fork,
        SYS_vfork,
        SYS_execve,
        SYS_exit,
        SYS_exit_group,
        SYS_clone3,
    ] {
        cases.push((
            "refused syscall",
            ok_header(2),
            vec![mark, call(nr, [0; 6])],
            EPERM,
            1,
        ));
    }
    let mut no_limit = ok_header(1);
    no_limit.max_steps = 0;
    cases.push(("missing step limit", no_limit, vec![mark], EINVAL, u32::MAX));
    let mut bad_version = ok_header(1);
    bad_version.version = 77;
    cases.push(("unknown version", bad_version, vec![mark], EINVAL, u32::MAX));
    let big = (abi::MAX_OPS + 1) as usize;
    cases.push((
        "too many ops",
        ok_header(big),
        vec![mark; big],
        E2BIG,
        u32::MAX,
    ));
    for (what, mut h, ops, errno, stop) in cases {
        let mut results = vec![7i64; ops.len()];
        let r = post_raw(&mut x, &mut h, &ops, &mut results);
        assert_eq!(
            (show(r), h.steps, h.stop),
            (show(neg(errno)), 0, stop),
            "{what}"
        );
        assert_eq!(file_bytes(&f), b"untouched", "{what}: nothing ran");
    }
    // The builder refuses them too, with the executors' errno and a message naming the op.
    let mut b = Builder::new();
    b.call(req(SYS_getpid, &[]), false);
    let l = b.label();
    b.jump(l);
    assert_eq!(b.build().unwrap_err().what, "jump to a label never bound");
    let mut b = Builder::new();
    b.call(req(SYS_fork, &[]), false);
    let e = b.build().unwrap_err();
    assert_eq!((e.errno, e.op), (EPERM, Some(0)));
    assert!(e.to_string().contains("op 0: refused syscall"), "{e}");
    let mut b = Builder::new();
    let top = b.label();
    b.bind(top);
    b.jump(top);
    assert_eq!(
        b.build().unwrap_err().what,
        "no step limit (max_steps is 0)"
    );
    // A null header address.
    assert_eq!(x.p.call(&req(NR_COMPOUND.into(), &[0])), neg(EFAULT));
    // Unreadable memory is only checked by the kernel module (the user-space executors
    // dereference the program, as any library function would).
    if c.kind.is_kmod() {
        for bp in bad_ptrs() {
            assert_eq!(
                x.p.call(&req(NR_COMPOUND.into(), &[bp])),
                neg(EFAULT),
                "header {bp:#x}"
            );
            let mut h = ok_header(1);
            let mut results = [0i64; 1];
            h.results = results.as_mut_ptr() as u64;
            h.ops = bp;
            let r = x.p.call(&req(
                NR_COMPOUND.into(),
                &[std::ptr::from_mut(&mut h) as u64],
            ));
            assert_eq!((show(r), h.steps), (show(neg(EFAULT)), 0), "ops {bp:#x}");
        }
    }
}

/// Interrupting a compound blocked in one of its calls stops it with `-EINTR` (the calls after
/// it do not run); the fds work afterwards.
pub fn compound_interrupt(c: &Case) {
    let (r, w) = new_pipe(0);
    let f = TempDir::new(c.name);
    let out = f.file("i", b"");
    let ofd = open_path(&out, O_WRONLY);
    let mut b = Builder::new();
    b.buffer(16);
    // SAFETY: reads at most 16 bytes into the 16-byte buffer, writes what it read.
    unsafe {
        let n = b.call_with(
            SYS_read,
            &[Arg::Imm(r.a()), Arg::Buf(0), Arg::Imm(16)],
            true,
        );
        b.call_with(
            SYS_write,
            &[Arg::Imm(ofd.a()), Arg::Buf(0), Arg::Ref(n, 0)],
            true,
        );
    }
    // Declared before the registration: dropped after it is shut down.
    let mut prog = b.build().unwrap();
    let reg = c.register(1, 1);
    let mut p = reg.poster(0).unwrap();
    // SAFETY: `prog` outlives the registration (declared before it) and is untouched until
    // the result is taken.
    let call = unsafe { prog.entry_call() };
    let t = p.post(&call).unwrap();
    p.submit();
    crate::wait_status(
        &reg,
        t.slot(),
        flexsc_kmod::entry::status::BUSY,
        "the compound",
    );
    std::thread::sleep(std::time::Duration::from_millis(20)); // blocked in the read by now
    p.interrupt(&t);
    let ret = crate::take_within(&mut p, t, "compound");
    let e = prog.outcome(ret).expect_err("interrupted");
    assert_eq!((e.errno, e.stop), (EINTR, 0), "{e}");
    assert_eq!(
        prog.results()[1],
        NOT_RUN,
        "the write after the read did not run"
    );
    assert_eq!(file_bytes(&out), b"");
    write_all(&w, b"later");
    let o = p.compound(&mut prog).expect("runs again");
    assert_eq!((o.ret, prog.results()), (3, &[5i64, 5][..]));
    assert_eq!(file_bytes(&out), b"later");
}
