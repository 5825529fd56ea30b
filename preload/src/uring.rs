//! The application's own io_uring rings (liburing): waiting for a completion without holding
//! the carrier.
//!
//! liburing enters the kernel with raw `syscall` instructions, which no wrapper sees: a green
//! thread in `io_uring_wait_cqe` would block its carrier, and every green thread queued there,
//! for as long as the ring stays empty (MariaDB's InnoDB waits for its I/O completions this
//! way). Every blocking wait of liburing goes through `__io_uring_get_cqe` (the exported
//! function behind `io_uring_wait_cqe`, `io_uring_wait_cqe_nr` and `io_uring_peek_cqe`), which
//! is exported here: on a green thread, a wait for one completion becomes a peek (liburing's
//! own, submitting what the caller asked to submit) and, while the ring is empty, a `poll` for
//! `POLLIN` on the ring's descriptor, which parks the green thread (exception-less) until the
//! kernel posts a completion. Anything else (other callers, waits for several completions, a
//! signal mask, `IORING_SETUP_IOPOLL` rings, which only `io_uring_enter` reaps) is liburing's
//! own wait, unchanged.
//!
//! The ring's descriptor and flags are read from liburing's `struct io_uring` (liburing 2.x:
//! `flags` at 192, `ring_fd` at 196), checked to be an io_uring descriptor before it is polled.

use std::ffi::c_void;
use std::sync::Once;
use std::sync::atomic::AtomicUsize;

use libc::{c_int, c_uint, sigset_t};

use crate::{real, rt};

/// `offsetof(struct io_uring, flags)` and `ring_fd` in liburing 2.x.
const RING_FLAGS: usize = 192;
const RING_FD: usize = 196;
/// `IORING_SETUP_IOPOLL`.
const IORING_SETUP_IOPOLL: c_uint = 1;

type GetCqe = unsafe extern "C-unwind" fn(
    *mut c_void,
    *mut *mut c_void,
    c_uint,
    c_uint,
    *mut sigset_t,
) -> c_int;

/// liburing's `__io_uring_get_cqe`.
fn real_get_cqe() -> GetCqe {
    static SLOT: AtomicUsize = AtomicUsize::new(0);
    let p = real::lookup(&SLOT, c"__io_uring_get_cqe");
    // SAFETY: liburing's definition, whose C signature (liburing.h, 2.x) is `GetCqe`.
    unsafe { std::mem::transmute::<*mut c_void, GetCqe>(p) }
}

/// `__io_uring_get_cqe` (liburing): see the module docs.
///
/// # Safety
/// As liburing's: `ring` an initialised `struct io_uring`, `cqe_ptr` writable, `sigmask` null
/// or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn __io_uring_get_cqe(
    ring: *mut c_void,
    cqe_ptr: *mut *mut c_void,
    submit: c_uint,
    wait_nr: c_uint,
    sigmask: *mut sigset_t,
) -> c_int {
    let real = real_get_cqe();
    let fd =
        if wait_nr == 1 && sigmask.is_null() && rt::application_caller() && rt::on_green_thread() {
            // SAFETY: the caller's contract: an initialised liburing ring.
            unsafe { pollable_fd(ring) }
        } else {
            None
        };
    let Some(fd) = fd else {
        // SAFETY: forwarded unchanged.
        return unsafe { real(ring, cqe_ptr, submit, wait_nr, sigmask) };
    };
    let mut submit = submit;
    loop {
        // SAFETY: liburing's peek (wait_nr 0): submits `submit` entries, never blocks.
        let r = unsafe { real(ring, cqe_ptr, submit, 0, sigmask) };
        // SAFETY: the caller's contract: `cqe_ptr` is writable, so readable.
        if r != -libc::EAGAIN || unsafe { !(*cqe_ptr).is_null() } {
            return r;
        }
        // What was to be submitted went in with the peek (or its error came back).
        submit = 0;
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: our own exported poll on one descriptor: on a green thread it parks.
        if unsafe { crate::io::poll(&mut p, 1, -1) } < 0 {
            let e = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EINTR);
            // A signal: io_uring_enter's wait fails with EINTR too.
            return -e;
        }
    }
}

/// The ring's descriptor if it may be polled for completions: an io_uring descriptor of a ring
/// without `IORING_SETUP_IOPOLL`.
///
/// # Safety
/// `ring` must be an initialised liburing `struct io_uring`.
unsafe fn pollable_fd(ring: *mut c_void) -> Option<c_int> {
    // SAFETY: both fields lie within liburing 2.x's struct io_uring (216 bytes).
    let (flags, fd) = unsafe {
        let base = ring.cast::<u8>();
        (
            base.add(RING_FLAGS).cast::<c_uint>().read(),
            base.add(RING_FD).cast::<c_int>().read(),
        )
    };
    if flags & IORING_SETUP_IOPOLL != 0 || !is_io_uring(fd) {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let msg = "libflexsc: an io_uring wait blocks its carrier (an IOPOLL ring, or a \
                       liburing whose struct io_uring is not laid out as 2.x's)\n";
            // SAFETY: writes a static message to stderr.
            unsafe { real::write()(2, msg.as_ptr().cast(), msg.len()) };
        });
        return None;
    }
    Some(fd)
}

/// Whether `fd` is an io_uring instance (`/proc/self/fd/N` -> `anon_inode:[io_uring]`).
fn is_io_uring(fd: c_int) -> bool {
    if fd < 0 {
        return false;
    }
    let path = format!("/proc/self/fd/{fd}\0");
    let mut buf = [0u8; 64];
    // SAFETY: readlink into our buffer, at most its length.
    let n = unsafe { libc::readlink(path.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
    n > 0 && &buf[..n as usize] == b"anon_inode:[io_uring]"
}
