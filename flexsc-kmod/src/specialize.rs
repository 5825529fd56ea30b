//! Specialization contexts (protocol stack specialization, Bhatia et al.): a program declares the
//! invariants of a connection once, and every later call on it skips the per-call work those
//! invariants make redundant.
//!
//! [`crate::Registration::specialize`] (or [`crate::Poster::specialize`]) declares that fd `fd` stays bound to the file it names now, and
//! optionally ([`Hints`]) that its messages fit in buffers of a known size, for which it maps a
//! buffer pool. What a backend does with that ([`Skips`]):
//!
//! - `uring`: each ring registers the file as an io_uring *fixed file*, and read, write, readv,
//!   writev, pread, pwrite, send(to), recv(from), sendmsg and recvmsg entries on `fd` become
//!   `IOSQE_FIXED_FILE` requests (no fd-table lookup and file reference count per call); the pool
//!   is a registered (*fixed*) buffer, and read/write/pread/pwrite entries whose buffer lies in
//!   it become `READ_FIXED`/`WRITE_FIXED` (pages pinned once, not mapped per call).
//! - `threads` and `kmod`: nothing (their executors make the ordinary system call, which looks
//!   the fd up); the context is valid and the calls run exactly as without it.
//!
//! Calls stay correct whether or not they use the context: the translation happens in the
//! backend, for every entry on `fd`, and gives the same result as the plain call.
//!
//! Invalidation. A context is bound to the *file* (the ring registers a private duplicate of
//! `fd` taken when the context was made), so it must end when `fd` stops naming that file, or a
//! later call on the number would reach the old file through a stale fixed-file slot. It ends
//! ([`invalidate_fd`]) when:
//!
//! - a close, close_range, dup2 or dup3 onto `fd` is posted through any [`crate::Poster`] (before
//!   the call runs), or run by `flexsc_threads::syscall` on an OS thread, or by the preload's
//!   `close`/`dup2`/`dup3` exports;
//! - the process forks: in the child every context is invalid (a `pthread_atfork` child handler);
//! - the [`Context`] is dropped.
//!
//! Each ring drops its slot at its next submit, poll or wait (every posting core of the
//! registration is woken for that), so the file is released promptly. A call that closes or
//! replaces `fd` without going through these paths (a raw `syscall(SYS_close)` from outside,
//! glibc's `close` on a thread that bypasses the preload) does not end the context: later entries
//! on that number keep going to the specialized file (the ring's registration holds it open)
//! until the context is dropped. [`Context::is_valid`] cannot see that either.
//!
//! A [`SharedBuffer`] (a compound's shared buffer area, or any buffer) is a pool without an fd:
//! every ring of the process registers it as a fixed buffer, and read/write/pread/pwrite
//! entries on any fd whose buffer lies in it become `READ_FIXED`/`WRITE_FIXED` requests.

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard, Once, Weak};

use crate::area::SyscallArea;
use crate::raw;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

/// What a connection promises for its lifetime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// The largest message the program sends or receives on it, in bytes (the pool's buffer
    /// size). 0: no pool.
    pub message_size: usize,
    /// Buffers in the pool (each `message_size` bytes). 0: no pool.
    pub buffers: usize,
}

/// The largest pool: io_uring refuses registered buffers over 1 GiB.
const MAX_POOL: usize = 1 << 30;

/// What a backend skips on each call of a specialized fd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skips {
    /// The fd-table lookup and file reference count (io_uring fixed files).
    pub fd_lookup: bool,
    /// Mapping the buffer per call (io_uring fixed buffers; needs a pool).
    pub buffer_mapping: bool,
}

/// One specialization (or a [`SharedBuffer`]: no fd, a pool), as the registry and the rings see
/// it.
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) id: u64,
    /// The specialized fd (-1: a shared buffer).
    pub(crate) fd: RawFd,
    /// A private duplicate of the fd, naming the specialized file whatever becomes of `fd`
    /// (-1 once closed: in a forked child).
    file: AtomicI32,
    pub(crate) pool: Option<Arc<Pool>>,
}

impl Spec {
    /// Whether this is a context on an fd (not a shared buffer), which closing the fd ends.
    pub(crate) fn binds_fd(&self) -> bool {
        self.fd >= 0
    }

    /// The private duplicate to register (None in a forked child).
    pub(crate) fn file(&self) -> Option<RawFd> {
        let fd = self.file.load(Ordering::Acquire);
        (fd >= 0).then_some(fd)
    }

    /// Closes the private duplicate (once).
    fn close_file(&self) {
        let fd = self.file.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: our own duplicate, closed exactly once (the swap).
            unsafe { raw::syscall(libc::SYS_close, [fd as u64, 0, 0]) };
        }
    }
}

impl Drop for Spec {
    fn drop(&mut self) {
        self.close_file();
    }
}

/// The registry's record of a live context.
struct Record {
    spec: Arc<Spec>,
    /// The registration ([`key`] of its area), or [`EVERY_REGISTRATION`].
    key: usize,
    area: Weak<SyscallArea>,
}

/// Every live context of the process, across registrations (an fd is the process's), and every
/// shared buffer.
static REGISTRY: Mutex<Vec<Record>> = Mutex::new(Vec::new());
/// Bumped on every change of the registry: a ring whose copy is older re-reads it.
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Live contexts on fds: with none, the close hooks cost one load (shared buffers do not count:
/// no close ends them).
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The [`Record::key`] of shared buffers: the rings of every registration register them.
const EVERY_REGISTRATION: usize = 0;
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static ATFORK: Once = Once::new();

thread_local! {
    /// The registry lock, held across a fork by the forking thread (atfork prepare).
    static HELD: std::cell::RefCell<Option<MutexGuard<'static, Vec<Record>>>> =
        const { std::cell::RefCell::new(None) };
}

fn registry() -> MutexGuard<'static, Vec<Record>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registry key of a registration: its area's address (unique while any record holds a
/// `Weak` to it).
pub(crate) fn key(area: &Arc<SyscallArea>) -> usize {
    Arc::as_ptr(area) as usize
}

/// The registry's version now (a ring compares it with the one it synced to).
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::Acquire)
}

/// The live specializations of registration `key` and the shared buffers, and the epoch they
/// are current for.
pub(crate) fn snapshot(key: usize) -> (u64, Vec<Arc<Spec>>) {
    let reg = registry();
    let epoch = EPOCH.load(Ordering::Acquire);
    let specs = reg
        .iter()
        .filter(|r| r.key == key || r.key == EVERY_REGISTRATION)
        .map(|r| r.spec.clone())
        .collect();
    (epoch, specs)
}

/// A specialization context: while it lives (and is not [invalidated](invalidate_fd)), calls
/// on its fd skip what [`Self::skips`] says. Dropping it ends the specialization.
///
/// Drop it before closing the fd by a path the library does not see (dropping a `std` socket
/// or file closes it through glibc directly): otherwise, with `uring`, later entries on the
/// number keep reaching the old file (see the module documentation).
pub struct Context {
    id: u64,
    fd: RawFd,
    skips: Skips,
    pool: Option<Arc<Pool>>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("fd", &self.fd)
            .field("skips", &self.skips)
            .field("valid", &self.is_valid())
            .finish()
    }
}

impl Context {
    /// Specializes `fd` for the registration whose area is `area`, on a backend that skips
    /// `skips`. Errors: `fd` is not open (`EBADF`), `fd` is already specialized in this
    /// registration (`AlreadyExists`), the hints ask for an impossible pool (`InvalidInput`).
    pub(crate) fn new(
        area: &Arc<SyscallArea>,
        skips: Skips,
        fd: RawFd,
        hints: Hints,
    ) -> io::Result<Self> {
        install_atfork();
        if fd < 0 {
            return Err(bad_fd(fd));
        }
        let pool = match (hints.message_size, hints.buffers) {
            (0, 0) => None,
            (0, _) | (_, 0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "specialize: a buffer pool needs both message_size and buffers (or neither)",
                ));
            }
            (size, n) => Some(Arc::new(Pool::new(size, n)?)),
        };
        // SAFETY: F_DUPFD_CLOEXEC takes integers; the new fd is ours alone.
        let dup = unsafe {
            raw::syscall(
                libc::SYS_fcntl,
                [fd as u64, libc::F_DUPFD_CLOEXEC as u64, 0],
            )
        };
        if dup < 0 {
            return Err(if dup == -i64::from(libc::EBADF) {
                bad_fd(fd)
            } else {
                io::Error::from_raw_os_error(-dup as i32)
            });
        }
        let file = AtomicI32::new(dup as RawFd);
        let key = key(area);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        {
            let mut reg = registry();
            if reg.iter().any(|r| r.key == key && r.spec.fd == fd) {
                // SAFETY: our own duplicate, not yet shared.
                unsafe { raw::syscall(libc::SYS_close, [dup as u64, 0, 0]) };
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("specialize: fd {fd} is already specialized in this registration"),
                ));
            }
            reg.push(Record {
                spec: Arc::new(Spec {
                    id,
                    fd,
                    file,
                    pool: pool.clone(),
                }),
                key,
                area: Arc::downgrade(area),
            });
            LIVE.fetch_add(1, Ordering::AcqRel);
            EPOCH.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Self {
            id,
            fd,
            skips: Skips {
                buffer_mapping: skips.buffer_mapping && pool.is_some(),
                ..skips
            },
            pool,
        })
    }

    /// The specialized fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// What the backend skips on each call of the fd (nothing on `threads` and `kmod`).
    pub fn skips(&self) -> Skips {
        self.skips
    }

    /// Whether the context still holds: the fd was not closed or replaced through a path that
    /// invalidates (module documentation), and this is not a forked child.
    pub fn is_valid(&self) -> bool {
        registry().iter().any(|r| r.spec.id == self.id)
    }

    /// Buffers in the pool.
    pub fn buffers(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.count)
    }

    /// Pool buffer `i` (`message_size` bytes), None if there is no such buffer. Calls whose
    /// buffer lies in it skip the per-call mapping (uring); the memory stays mapped while the
    /// context or a ring's registration of it lives.
    pub fn buffer_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let pool = self.pool.as_ref()?;
        if i >= pool.count {
            return None;
        }
        // SAFETY: buffer `i` lies inside the pool's mapping (i < count), which lives as long as
        // `pool`; `&mut self` makes this the only reference handed out for it. The kernel may
        // read or write it only for calls the caller posted with it (`Syscall::new`'s contract).
        Some(unsafe {
            std::slice::from_raw_parts_mut(pool.base.as_ptr().add(i * pool.size), pool.size)
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let id = self.id;
        remove(|r| r.spec.id == id);
    }
}

/// Removes the records `dead` selects, and wakes the rings of their registrations so they drop
/// their fixed slots now.
fn remove(dead: impl Fn(&Record) -> bool) {
    let gone: Vec<Record> = {
        let mut reg = registry();
        let mut gone = Vec::new();
        let mut i = 0;
        while i < reg.len() {
            if dead(&reg[i]) {
                gone.push(reg.swap_remove(i));
            } else {
                i += 1;
            }
        }
        if !gone.is_empty() {
            let on_fds = gone.iter().filter(|r| r.spec.binds_fd()).count();
            LIVE.fetch_sub(on_fds, Ordering::AcqRel);
            EPOCH.fetch_add(1, Ordering::AcqRel);
        }
        gone
    };
    for r in &gone {
        if let Some(area) = r.area.upgrade() {
            for c in 0..area.cores() {
                area.core(c).completions.ring();
            }
        }
    }
}

/// Ends every context on `fd` (it is being closed or replaced): call it before the call that
/// releases the fd runs. Costs one atomic load when no context is live.
pub fn invalidate_fd(fd: RawFd) {
    if LIVE.load(Ordering::Acquire) != 0 {
        remove(|r| r.spec.binds_fd() && r.spec.fd == fd);
    }
}

/// Ends the contexts that system call `nr` with `args` would break, if it closes or replaces an
/// fd (close, close_range, dup2, dup3). The hook of every path that runs calls. A compound entry
/// ends every context on an fd (not the shared buffers): its calls are only known, with their
/// fds, once its executor resolves them (possibly in the kernel module), too late for this hook.
pub fn note_call(nr: i64, args: &[u64]) {
    if LIVE.load(Ordering::Acquire) == 0 {
        return;
    }
    let arg = |i: usize| args.get(i).copied().unwrap_or(0);
    match nr {
        libc::SYS_close => invalidate_fd(arg(0) as RawFd),
        n if n == i64::from(crate::compound::abi::NR_COMPOUND) => remove(|r| r.spec.binds_fd()),
        libc::SYS_dup2 | libc::SYS_dup3 => invalidate_fd(arg(1) as RawFd),
        libc::SYS_close_range => {
            let (first, last) = (arg(0) as u32, arg(1) as u32);
            // CLOSE_RANGE_CLOEXEC only marks the fds: they stay open until an exec.
            if arg(2) & u64::from(libc::CLOSE_RANGE_CLOEXEC) == 0 {
                remove(|r| r.spec.binds_fd() && (first..=last).contains(&(r.spec.fd as u32)));
            }
        }
        _ => {}
    }
}

/// A buffer area registered with every io_uring ring of the process as a fixed buffer while it
/// lives: read, write, pread and pwrite entries whose buffer lies inside it (single entries, and
/// the calls of a multi-call's chain) become `READ_FIXED`/`WRITE_FIXED` requests, which skip
/// pinning and mapping the pages per call. On `threads` and `kmod` it is plain memory. Zeroed
/// when made; [`crate::compound::Builder::shared_buffer`] gives a compound one.
///
/// Its lifetime is explicit: the memory is one anonymous mapping shared (reference counted) by
/// this handle and each ring's registration of it. Dropping the handle takes it out of the
/// registry; each ring drops its registration at its next submit, poll or wait, and the mapping
/// is unmapped only when the last of them has. So a registration never outlives the memory it
/// names, and no later allocation can reuse the address while a ring still has it registered.
/// In a forked child it is plain memory (the child's rings do not register the parent's areas).
pub struct SharedBuffer {
    id: u64,
    pool: Arc<Pool>,
}

impl fmt::Debug for SharedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuffer")
            .field("len", &self.pool.len)
            .finish()
    }
}

impl SharedBuffer {
    /// A zeroed area of `len` bytes (1 byte to 1 GiB, io_uring's limit for a fixed buffer),
    /// registered with the rings from their next submit, poll or wait on.
    pub fn new(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared buffer: the length is 0",
            ));
        }
        install_atfork();
        let pool = Arc::new(Pool::new(len, 1)?);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut reg = registry();
        reg.push(Record {
            spec: Arc::new(Spec {
                id,
                fd: -1,
                file: AtomicI32::new(-1),
                pool: Some(pool.clone()),
            }),
            key: EVERY_REGISTRATION,
            area: Weak::new(),
        });
        EPOCH.fetch_add(1, Ordering::AcqRel);
        Ok(Self { id, pool })
    }
}

impl std::ops::Deref for SharedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the whole mapping, alive while `pool` is; shared references only (the kernel
        // writes it only for calls the owner posted with it, `Syscall::new`'s contract).
        unsafe { std::slice::from_raw_parts(self.pool.base.as_ptr(), self.pool.len) }
    }
}

impl std::ops::DerefMut for SharedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference handed out.
        unsafe { std::slice::from_raw_parts_mut(self.pool.base.as_ptr(), self.pool.len) }
    }
}

impl Drop for SharedBuffer {
    fn drop(&mut self) {
        let id = self.id;
        remove(|r| r.spec.id == id);
    }
}

/// Makes forks end every context (see the module documentation), once per process.
fn install_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: plain functions with no arguments; failure (ENOMEM) only loses the fork
        // invalidation, which failing the caller would not make safer.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    });
}

/// The buffer pool of a context (or a shared buffer): one anonymous mapping, registered whole as
/// one fixed buffer.
#[derive(Debug)]
pub(crate) struct Pool {
    base: NonNull<u8>,
    pub(crate) size: usize,
    pub(crate) count: usize,
    len: usize,
}

// SAFETY: the pool is plain memory; who reads and writes it is governed by `Context::buffer_mut`
// (one `&mut` at a time) and the posted calls.
unsafe impl Send for Pool {}
// SAFETY: as above; `&Pool` only exposes the address and sizes.
unsafe impl Sync for Pool {}

impl Pool {
    fn new(size: usize, count: usize) -> io::Result<Self> {
        let len = size
            .checked_mul(count)
            .filter(|&l| l <= MAX_POOL)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("specialize: a pool of {count} x {size} bytes exceeds 1 GiB"),
                )
            })?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: NonNull::new(p.cast()).expect("mmap returned a null mapping"),
            size,
            count,
            len,
        })
    }

    /// The whole pool as one iovec.
    pub(crate) fn iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.base.as_ptr().cast(),
            iov_len: self.len,
        }
    }

    /// Whether `[addr, addr + len)` lies inside the pool.
    pub(crate) fn contains(&self, addr: u64, len: u64) -> bool {
        let base = self.base.as_ptr() as u64;
        addr >= base && len <= self.len as u64 && addr - base <= self.len as u64 - len
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the last owner (context or ring registration) is gone.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn bad_fd(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("specialize: {fd} is not an open file descriptor (EBADF)"),
    )
}

/// atfork prepare: hold the registry so no other thread is inside it across the fork.
extern "C" fn fork_prepare() {
    let guard = registry();
    HELD.with(|h| *h.borrow_mut() = Some(guard));
}

extern "C" fn fork_parent() {
    HELD.with(|h| h.borrow_mut().take());
}

/// atfork child: the parent's rings are not usable here (their memory is not inherited) and
/// its contexts do not hold. Forget them, and close the child's copies of their private
/// duplicates now (a copy of the parent's ring state may still hold a record), so that closing
/// the fd in the child really closes the file.
extern "C" fn fork_child() {
    let records = HELD.with(|h| {
        let mut held = h.borrow_mut().take();
        held.as_mut().map(|g| std::mem::take(&mut **g))
    });
    if let Some(records) = records {
        let on_fds = records.iter().filter(|r| r.spec.binds_fd()).count();
        LIVE.fetch_sub(on_fds, Ordering::AcqRel);
        EPOCH.fetch_add(1, Ordering::AcqRel);
        for r in records {
            r.spec.close_file();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dropping_ends_a_shared_buffer() {
        let area = Arc::new(SyscallArea::new(1, 1));
        let mut p = [0i32; 2];
        // SAFETY: pipe writes two fds into our array.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        // A context on an fd, so that the close hooks take their slow path.
        let ctx = Context::new(&area, Skips::default(), p[0], Hints::default()).unwrap();
        let mut buf = SharedBuffer::new(100).unwrap();
        assert!(buf.iter().all(|&b| b == 0) && buf.len() == 100);
        buf[99] = 1;
        let id = buf.id;
        let registered = || snapshot(key(&area)).1.iter().any(|s| s.id == id);
        assert!(registered());
        // Closing "fd -1", every fd, or posting a compound ends contexts on fds, not the buffer.
        note_call(libc::SYS_close, &[u64::MAX]);
        note_call(libc::SYS_close_range, &[0, u64::from(u32::MAX), 0]);
        note_call(crate::compound::abi::NR_COMPOUND.into(), &[0]);
        assert!(!ctx.is_valid());
        assert!(registered());
        drop(buf);
        assert!(!registered());
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }
}
