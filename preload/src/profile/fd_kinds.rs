//! What each descriptor is (file, socket, pipe...), as the recorder learns it from the calls it
//! sees: `openat` makes a file or directory, `accept4` a socket, socket-only calls and
//! `epoll_wait` name their descriptor's kind, `close` forgets it. Descriptors the program
//! inherited are classified once at load time (`fstat`); those made by calls the preload does not
//! interpose (`socket`, `pipe2`) stay unknown until a call names their kind.
//!
//! One relaxed atomic byte per descriptor below [`TRACKED`]: no lock, no system call.

use std::sync::atomic::{AtomicU8, Ordering};

use flexsc_profile::FdKind;

/// Descriptors tracked (higher ones are `Unknown`).
const TRACKED: usize = 1 << 16;

static KINDS: [AtomicU8; TRACKED] = [const { AtomicU8::new(0) }; TRACKED];

/// The kind of `fd` as last learnt.
#[inline]
pub(crate) fn get(fd: i32) -> FdKind {
    usize::try_from(fd)
        .ok()
        .and_then(|i| KINDS.get(i))
        .map_or(FdKind::Unknown, |k| {
            FdKind::from_u8(k.load(Ordering::Relaxed))
        })
}

/// Learns that `fd` is `kind` (`Unknown` forgets it).
#[inline]
pub(crate) fn set(fd: i32, kind: FdKind) {
    if let Some(k) = usize::try_from(fd).ok().and_then(|i| KINDS.get(i)) {
        k.store(kind as u8, Ordering::Relaxed);
    }
}

/// Classifies the descriptors the process started with (the first 256), with `fstat`.
pub(crate) fn classify_inherited() {
    for fd in 0..256 {
        // SAFETY: an all-zero stat is a valid value; fstat writes into it or fails.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let args = [fd as u64, &mut st as *mut libc::stat as u64, 0, 0, 0, 0];
        // SAFETY: fstat on a descriptor number (EBADF if not open) into our own struct; a raw
        // trap, so nothing of ours is re-entered.
        let r = unsafe { flexsc_threads::kmod::raw::syscall6(libc::SYS_fstat as u64, &args) };
        if r != 0 {
            continue;
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => FdKind::File,
            libc::S_IFDIR => FdKind::Dir,
            libc::S_IFSOCK => FdKind::Socket,
            libc::S_IFIFO => FdKind::Pipe,
            libc::S_IFCHR => FdKind::Chr,
            _ => FdKind::Anon,
        };
        set(fd, kind);
    }
}
