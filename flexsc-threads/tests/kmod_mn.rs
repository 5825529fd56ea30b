//! The M:N runtime on the kernel module's backend: 3,000 green threads on 2 carriers each block
//! in a read on a pipe of its own, at most 1,024 of them inside the module's syscall threads at a
//! time (the rest wait for an entry), until a plain OS thread writes each pipe its index.
//!
//! Needs the module: without `/dev/flexsc` the test returns at once, saying so, unless
//! `FLEXSC_CONFORMANCE_REQUIRE_KMOD=1` (scripts/vm-test.sh's VM) makes that a failure.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::mpsc;
use std::time::Duration;

use flexsc_threads::io::PipeReader;
use flexsc_threads::kmod::BackendKind;
use flexsc_threads::kmod::config::KMOD_DEVICE;
use flexsc_threads::{Runtime, spawn};

const GREEN_THREADS: usize = 3000;

/// Raises the open-file limit to fit two descriptors per green thread.
fn raise_nofile(want: u64) {
    let lim = libc::rlimit {
        rlim_cur: want,
        rlim_max: want,
    };
    // SAFETY: setrlimit reads a live rlimit.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(
        r,
        0,
        "RLIMIT_NOFILE {want}: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn thousands_of_green_threads_block_in_reads() {
    if !std::path::Path::new(KMOD_DEVICE).exists() {
        let required = std::env::var("FLEXSC_CONFORMANCE_REQUIRE_KMOD").is_ok_and(|v| v == "1");
        assert!(!required, "no {KMOD_DEVICE}");
        eprintln!("NOT INCLUDED: no {KMOD_DEVICE} (runs where the module is loaded)");
        return;
    }
    raise_nofile(2 * GREEN_THREADS as u64 + 256);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..GREEN_THREADS {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into a live array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        readers.push(fds[0]);
        writers.push(fds[1]);
    }
    let (done, hung) = mpsc::channel();
    let body = std::thread::spawn(move || {
        let rt = Runtime::builder()
            .cores(2)
            .pages(8)
            .max_syscall_threads(1024)
            .stack_size(64 * 1024)
            // The VM's binary is static: no per-green-thread TLS there.
            .tls(false)
            .backend(BackendKind::Kmod)
            .build()
            .expect("a runtime on the kmod backend");
        // The writer: a plain OS thread, once the readers had time to block.
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            for (i, w) in writers.into_iter().enumerate() {
                let msg = (i as u64).to_le_bytes();
                // SAFETY: writes 8 bytes from a live array into a pipe we own, then closes it.
                unsafe {
                    assert_eq!(libc::write(w, msg.as_ptr().cast(), 8), 8);
                    libc::close(w);
                }
            }
        });
        let got = rt.block_on(move || {
            let handles: Vec<_> = readers
                .into_iter()
                .map(|fd| {
                    // SAFETY: the read end is ours alone from here on.
                    let mut r = unsafe { PipeReader::from_raw_fd(fd) };
                    spawn(move || {
                        let mut msg = [0u8; 8];
                        r.read_exact(&mut msg).expect("a blocking read");
                        let mut rest = [0u8; 1];
                        assert_eq!(r.read(&mut rest).expect("EOF"), 0);
                        u64::from_le_bytes(msg)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a reader panicked"))
                .collect::<Vec<_>>()
        });
        writer.join().unwrap();
        let want: Vec<u64> = (0..GREEN_THREADS as u64).collect();
        assert_eq!(got, want, "every green thread read its own index");
        let _ = done.send(());
    });
    match hung.recv_timeout(Duration::from_secs(240)) {
        Ok(()) => body.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(body.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung for 240 s"),
    }
}
