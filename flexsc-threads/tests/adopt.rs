//! Adopting a running OS thread as a green thread (`Runtime::adopt_current`, what the preload
//! does with the main thread): it keeps its TCB and its stack, its blocking calls park it
//! instead of its carrier, and it ends through its `AdoptedEnd` with a value its joiner gets.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::mpsc;

use flexsc_threads::io::pipe;
use flexsc_threads::{AdoptedEnd, JoinHandle, Runtime, current_id, spawn};

/// The kernel thread running the caller, trapped directly.
fn kernel_tid() -> i64 {
    // SAFETY: gettid takes no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// What the adopted thread saw, before and after.
#[derive(Debug)]
struct Seen {
    self_before: libc::pthread_t,
    self_after: libc::pthread_t,
    errno_before: usize,
    errno_after: usize,
    local_before: usize,
    local_after: usize,
    tid_before: i64,
    tid_after: i64,
    green_before: bool,
    green_after: bool,
    read: Vec<u8>,
}

thread_local! {
    static LOCAL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[test]
fn an_adopted_thread_keeps_its_tcb_and_stack_and_parks_instead_of_its_carrier() {
    // One carrier: if the adopted thread's read blocked its carrier, the writer could never run.
    let rt = Arc::new(Runtime::builder().cores(1).build().expect("runtime"));
    let (tx, rx) = mpsc::channel::<(JoinHandle<usize>, Seen)>();
    let rt2 = rt.clone();
    // Its kernel thread parks for good once adopted: never joined.
    let _os = std::thread::spawn(move || {
        LOCAL.with(|l| l.set(7));
        // SAFETY: pthread_self and __errno_location have no preconditions.
        let (self_before, errno_before) =
            unsafe { (libc::pthread_self(), libc::__errno_location() as usize) };
        let local_before = LOCAL.with(|l| l as *const _ as usize);
        let tid_before = kernel_tid();
        let green_before = current_id().is_some();
        // SAFETY: this std thread is never joined nor signalled by tid; its stack is its own.
        let (handle, end): (JoinHandle<usize>, AdoptedEnd) =
            unsafe { rt2.adopt_current(Some("adopted".into()), 0..0) }.expect("adopt");
        let green_after = current_id().is_some();
        let (mut r, mut w) = pipe().expect("pipe");
        let writer = spawn(move || w.write_all(b"hello").expect("write"));
        let mut buf = [0u8; 5];
        r.read_exact(&mut buf).expect("read");
        writer.join().expect("writer");
        assert_eq!(
            LOCAL.with(|l| l.get()),
            7,
            "the thread's own thread-local kept"
        );
        let seen = Seen {
            self_before,
            // SAFETY: as above.
            self_after: unsafe { libc::pthread_self() },
            errno_before,
            // SAFETY: as above.
            errno_after: unsafe { libc::__errno_location() as usize },
            local_before,
            local_after: LOCAL.with(|l| l as *const _ as usize),
            tid_before,
            tid_after: kernel_tid(),
            green_before,
            green_after,
            read: buf.to_vec(),
        };
        tx.send((handle, seen)).expect("send");
        end.exit(42)
    });
    let (handle, seen) = rx.recv().expect("the adopted thread reports");
    assert_eq!(
        handle.join().ok(),
        Some(42),
        "joined with the value it exited with"
    );
    assert!(!seen.green_before && seen.green_after, "{seen:?}");
    assert_eq!(seen.self_before, seen.self_after, "same TCB: {seen:?}");
    assert_eq!(seen.errno_before, seen.errno_after, "same errno: {seen:?}");
    assert_eq!(seen.local_before, seen.local_after, "same TLS: {seen:?}");
    assert_ne!(
        seen.tid_before, seen.tid_after,
        "runs on a carrier: {seen:?}"
    );
    assert_eq!(seen.read, b"hello");
    // The runtime still runs green threads after the adopted one ended.
    assert_eq!(rt.block_on(|| 5), 5);
}

#[test]
fn adopting_without_per_green_thread_tls_is_refused() {
    let rt = Runtime::builder()
        .cores(1)
        .tls(false)
        .build()
        .expect("runtime");
    // SAFETY: refused before anything changes for the calling thread.
    let r = unsafe { rt.adopt_current(None, 0..0) };
    assert!(r.is_err());
}
