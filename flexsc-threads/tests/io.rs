//! `flexsc_threads::io` end to end, on both backends: TCP echo with a green thread per
//! connection, files with positional and positioned I/O, pipes between green threads, and the
//! errors `std` gives.

mod common;

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::net::Shutdown;

use common::backends::Build;
use flexsc_threads::io::{File, OpenOptions, TcpListener, TcpStream, pipe};
use flexsc_threads::kmod::BackendKind;
use flexsc_threads::{Runtime, spawn};

/// Both backends, each with the configuration these tests use.
fn backends() -> [(&'static str, Build); 2] {
    fn threads() -> Runtime {
        Runtime::builder()
            .cores(2)
            .syscall_cores(vec![1])
            .stack_size(128 * 1024)
            .build()
            .expect("threads runtime")
    }
    fn uring() -> Runtime {
        Runtime::builder()
            .cores(2)
            .syscall_cores(vec![1])
            .stack_size(128 * 1024)
            .backend(BackendKind::Uring)
            .build()
            .expect("io_uring runtime")
    }
    [("threads", threads), ("uring", uring)]
}

/// Runs `f` on each backend (see `common::backends::on_each`).
fn on_each_backend(test: &'static str, f: fn(&'static str, Runtime)) {
    common::backends::on_each(test, &backends(), f);
}

/// A file name of our own in the temporary directory.
fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("flexsc-io-{}-{tag}", std::process::id()))
}

/// Message `m` of client `c`: its length and bytes vary with both.
fn message(c: usize, m: usize) -> Vec<u8> {
    let len = 1 + (c * 131 + m * 977) % 3000;
    (0..len).map(|i| (c * 7 + m * 13 + i) as u8).collect()
}

#[test]
fn tcp_echo_200_clients_50_messages() {
    const CLIENTS: usize = 200;
    const MESSAGES: usize = 50;
    on_each_backend("tcp echo", |name, rt| {
        let echoed = rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
            let server = spawn(move || {
                let mut handlers = Vec::new();
                for _ in 0..CLIENTS {
                    let (mut s, peer) = listener.accept().unwrap();
                    assert_eq!(s.peer_addr().unwrap(), peer);
                    assert_eq!(s.local_addr().unwrap(), addr);
                    handlers.push(spawn(move || {
                        let mut buf = vec![0u8; 4096];
                        let mut total = 0usize;
                        loop {
                            match s.read(&mut buf).unwrap() {
                                0 => break,
                                n => {
                                    s.write_all(&buf[..n]).unwrap();
                                    total += n;
                                }
                            }
                        }
                        total
                    }));
                }
                handlers
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .sum::<usize>()
            });
            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    spawn(move || {
                        let mut s = TcpStream::connect(addr).unwrap();
                        s.set_nodelay(true).unwrap();
                        assert!(s.nodelay().unwrap());
                        assert_eq!(s.peer_addr().unwrap(), addr);
                        let mut back = vec![0u8; 4096];
                        let mut sent = 0;
                        for m in 0..MESSAGES {
                            let msg = message(c, m);
                            s.write_all(&msg).unwrap();
                            let got = &mut back[..msg.len()];
                            s.read_exact(got).unwrap();
                            assert_eq!(got, &msg[..], "client {c} message {m}");
                            sent += msg.len();
                        }
                        s.shutdown(Shutdown::Write).unwrap();
                        // The server closes once it has seen our end of file.
                        assert_eq!(s.read(&mut back).unwrap(), 0);
                        sent
                    })
                })
                .collect();
            let sent: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
            let echoed = server.join().unwrap();
            assert_eq!(sent, echoed);
            echoed
        });
        let expected: usize = (0..CLIENTS)
            .flat_map(|c| (0..MESSAGES).map(move |m| message(c, m).len()))
            .sum();
        assert_eq!(echoed, expected, "{name}");
        // The calls went through the syscall pages, not traps on the carriers.
        let posted: u64 = rt.shutdown().iter().map(|s| s.posted).sum();
        assert!(
            posted >= (CLIENTS * MESSAGES * 2) as u64,
            "{name}: {posted} posted"
        );
    });
}

#[test]
fn tcp_stream_clone_reads_while_another_writes() {
    on_each_backend("tcp clone", |name, rt| {
        rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spawn(move || {
                let s = listener.incoming().next().unwrap().unwrap();
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                std::io::copy(&mut r, &mut w).unwrap()
            });
            let s = TcpStream::connect(addr).unwrap();
            let reader = s.try_clone().unwrap();
            const TOTAL: usize = 1 << 20;
            let rh = spawn(move || {
                let mut got = Vec::new();
                (&reader).read_to_end(&mut got).unwrap();
                got
            });
            let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
            (&s).write_all(&data).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            assert_eq!(rh.join().unwrap(), data, "{name}");
            assert_eq!(server.join().unwrap(), TOTAL as u64);
        });
    });
}

#[test]
fn file_write_read_seek_and_positional() {
    on_each_backend("file", |name, rt| {
        rt.block_on(move || {
            let path = temp_path(&format!("file-{name}"));
            let _ = std::fs::remove_file(&path);
            let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 256) as u8).collect();
            {
                let mut f = File::create_new(&path).unwrap();
                f.write_all(&data).unwrap();
                f.sync_all().unwrap();
                assert_eq!(f.stream_position().unwrap(), data.len() as u64);
                assert_eq!(f.seek(SeekFrom::Start(0)).unwrap(), 0);
                let mut back = Vec::new();
                f.read_to_end(&mut back).unwrap();
                assert_eq!(back, data);

                // Positional I/O leaves the file position alone.
                let pos = f.seek(SeekFrom::Start(10)).unwrap();
                assert_eq!(pos, 10);
                assert_eq!(f.write_at(b"XYZ", 500).unwrap(), 3);
                let mut five = [0u8; 5];
                assert_eq!(f.read_at(&mut five, 499).unwrap(), 5);
                assert_eq!(five, [data[499], b'X', b'Y', b'Z', data[503]]);
                assert_eq!(f.stream_position().unwrap(), 10);
                let mut ten = [0u8; 10];
                f.read_exact(&mut ten).unwrap();
                assert_eq!(ten[..], data[10..20]);

                // Past the end: read_at gives 0, write_at extends.
                assert_eq!(f.read_at(&mut five, 1 << 20).unwrap(), 0);
                assert_eq!(f.write_at(b"end", data.len() as u64 + 7).unwrap(), 3);
                assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), data.len() as u64 + 10);
                assert_eq!(
                    f.seek(SeekFrom::Current(-3)).unwrap(),
                    data.len() as u64 + 7
                );
                let mut tail = String::new();
                f.read_to_string(&mut tail).unwrap();
                assert_eq!(tail, "end");
                let err = f.read_exact(&mut five).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
                assert_eq!(
                    f.seek(SeekFrom::Current(-(1 << 40))).unwrap_err().kind(),
                    ErrorKind::InvalidInput
                );
                f.set_len(1000).unwrap();
                f.sync_data().unwrap();
            }
            let mut f = File::open(&path).unwrap();
            let mut back = Vec::new();
            f.read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), 1000);
            assert_eq!(back[..499], data[..499]);
            assert_eq!(&back[499..504], &[data[499], b'X', b'Y', b'Z', data[503]]);
            // Opened read-only: writing fails as the kernel says (EBADF).
            assert!(f.write(b"no").is_err());
            drop(f);

            // Append mode writes at the end whatever the position.
            let mut a = OpenOptions::new().append(true).open(&path).unwrap();
            a.write_all(b"++").unwrap();
            drop(a);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 1002);
            std::fs::remove_file(&path).unwrap();
        });
    });
}

#[test]
fn many_green_threads_with_files() {
    const FILES: usize = 64;
    on_each_backend("files", |name, rt| {
        rt.block_on(move || {
            let hs: Vec<_> = (0..FILES)
                .map(|i| {
                    spawn(move || {
                        let path = temp_path(&format!("many-{name}-{i}"));
                        let mut f = OpenOptions::new()
                            .read(true)
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .open(&path)
                            .unwrap();
                        // Blocks written out of order with write_at, read back in order.
                        let block = |k: usize| vec![(i * 16 + k) as u8; 512];
                        for k in (0..16).rev() {
                            f.write_at(&block(k), (k * 512) as u64).unwrap();
                        }
                        f.seek(SeekFrom::Start(0)).unwrap();
                        for k in 0..16 {
                            let mut b = vec![0u8; 512];
                            f.read_exact(&mut b).unwrap();
                            assert_eq!(b, block(k), "file {i} block {k}");
                        }
                        drop(f);
                        std::fs::remove_file(&path).unwrap();
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
    });
}

#[test]
fn pipes_between_green_threads() {
    const PAIRS: usize = 100;
    const BYTES: usize = 200_000;
    on_each_backend("pipes", |name, rt| {
        rt.block_on(move || {
            let mut hs = Vec::new();
            for p in 0..PAIRS {
                let (mut r, mut w) = pipe().unwrap();
                let data: Vec<u8> = (0..BYTES).map(|i| (i * 7 + p) as u8).collect();
                let expect = data.clone();
                hs.push(spawn(move || {
                    // Chunks of varying size; the pipe (64 KiB) fills, so the writer parks.
                    let mut off = 0;
                    let mut k = 0;
                    while off < data.len() {
                        let n = (1 + k * 1237 % 9000).min(data.len() - off);
                        w.write_all(&data[off..off + n]).unwrap();
                        off += n;
                        k += 1;
                    }
                    // Dropping `w` closes the write end: the reader sees end of file.
                }));
                hs.push(spawn(move || {
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).unwrap();
                    assert!(got == expect, "{name}: pair {p}");
                }));
            }
            for h in hs {
                h.join().unwrap();
            }

            // Ping-pong across two pipes.
            let (mut r1, mut w1) = pipe().unwrap();
            let (mut r2, mut w2) = pipe().unwrap();
            let echo = spawn(move || {
                let mut b = [0u8; 8];
                while r1.read_exact(&mut b).is_ok() {
                    let v = u64::from_le_bytes(b) + 1;
                    w2.write_all(&v.to_le_bytes()).unwrap();
                }
            });
            for i in 0..1000u64 {
                w1.write_all(&i.to_le_bytes()).unwrap();
                let mut b = [0u8; 8];
                r2.read_exact(&mut b).unwrap();
                assert_eq!(u64::from_le_bytes(b), i + 1);
            }
            drop(w1);
            echo.join().unwrap();
        });
    });
}

#[test]
fn pipe_errors_match_std() {
    on_each_backend("pipe errors", |name, rt| {
        rt.block_on(move || {
            // Non-blocking and empty: WouldBlock.
            let (mut r, mut w) = pipe().unwrap();
            r.set_nonblocking(true).unwrap();
            let mut b = [0u8; 4];
            assert_eq!(
                r.read(&mut b).unwrap_err().kind(),
                ErrorKind::WouldBlock,
                "{name}"
            );
            w.write_all(b"ab").unwrap();
            assert_eq!(r.read(&mut b).unwrap(), 2);
            r.set_nonblocking(false).unwrap();

            // The writer goes away mid-message: UnexpectedEof.
            w.write_all(b"xy").unwrap();
            drop(w);
            assert_eq!(
                r.read_exact(&mut b).unwrap_err().kind(),
                ErrorKind::UnexpectedEof
            );

            // The reader goes away: BrokenPipe.
            let (r, mut w) = pipe().unwrap();
            drop(r);
            assert_eq!(w.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
        });
    });
}

/// A stream made non-blocking through another descriptor of its open file description (a
/// clone, or its raw fd lent out) answers WouldBlock: the blocking mode its owner vouched for
/// (which spares the uring backend an fcntl per waiting call) is withdrawn when the description
/// stops being its own. Were it not, these reads would wait forever.
#[test]
fn non_blocking_through_another_descriptor_is_seen() {
    on_each_backend("non-blocking via another descriptor", |name, rt| {
        rt.block_on(move || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let pair = || {
                let c = TcpStream::connect(addr).unwrap();
                (c, listener.accept().unwrap().0)
            };
            let mut b = [0u8; 4];

            // Through a clone.
            let (mut c, mut s) = pair();
            let clone = s.try_clone().unwrap();
            clone.set_nonblocking(true).unwrap();
            assert_eq!(
                s.read(&mut b).unwrap_err().kind(),
                ErrorKind::WouldBlock,
                "{name}"
            );
            // And back: blocking again, through the clone; the read waits for the data.
            clone.set_nonblocking(false).unwrap();
            let writer = spawn(move || {
                flexsc_threads::sleep(std::time::Duration::from_millis(20));
                c.write_all(b"late").unwrap();
                c
            });
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"late", "{name}");
            drop(writer.join().unwrap());

            // Through the raw fd.
            let (_c, mut s) = pair();
            let raw = std::os::fd::AsRawFd::as_raw_fd(&s);
            assert_eq!(
                // SAFETY: F_SETFL on a descriptor `s` keeps open; no memory is passed.
                unsafe { libc::fcntl(raw, libc::F_SETFL, libc::O_NONBLOCK) },
                0
            );
            assert_eq!(
                s.read(&mut b).unwrap_err().kind(),
                ErrorKind::WouldBlock,
                "{name}"
            );

            // Its own set_nonblocking, both ways.
            let (mut c, mut s) = pair();
            s.set_nonblocking(true).unwrap();
            assert_eq!(
                s.read(&mut b).unwrap_err().kind(),
                ErrorKind::WouldBlock,
                "{name}"
            );
            s.set_nonblocking(false).unwrap();
            c.write_all(b"abcd").unwrap();
            s.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"abcd", "{name}");
        });
    });
}

#[test]
fn errors_match_std() {
    on_each_backend("errors", |name, rt| {
        rt.block_on(move || {
            // A port nobody listens on any more.
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            drop(l);
            let e = TcpStream::connect(addr).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{name}: {e}");

            let missing = temp_path(&format!("missing-{name}"));
            let e = File::open(&missing).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{name}: {e}");

            let e = OpenOptions::new().create(true).open(&missing).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}: {e}");
            let e = File::open("nul\0inside").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}: {e}");

            let path = temp_path(&format!("exists-{name}"));
            drop(File::create(&path).unwrap());
            let e = File::create_new(&path).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{name}: {e}");
            std::fs::remove_file(&path).unwrap();

            // A non-blocking listener with nothing pending: WouldBlock.
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
            assert!(l.take_error().unwrap().is_none());
        });
    });
}

/// The same types work on an OS thread, where the calls trap as usual.
#[test]
fn works_outside_the_runtime() {
    let (mut r, mut w) = pipe().unwrap();
    let t = std::thread::spawn(move || w.write_all(b"hello from an OS thread").unwrap());
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    t.join().unwrap();
    assert_eq!(s, "hello from an OS thread");

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"pong").unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    let mut b = Vec::new();
    c.read_to_end(&mut b).unwrap();
    t.join().unwrap();
    assert_eq!(b, b"pong");
}
