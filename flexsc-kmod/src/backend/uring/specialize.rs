//! Specialization contexts on a ring ([`crate::specialize`]): each specialized file registered as
//! a fixed file, each pool and each shared buffer as a fixed buffer, and the lookup that turns an
//! entry on a specialized fd, or with its buffer in a shared buffer, into a fixed request.
//!
//! A ring keeps its own copy of the registry's contexts for its registration, re-read whenever
//! the registry's epoch moves (one atomic load per submit, poll or wait), on the ring's own
//! thread: registering resources is refused to any other thread of a `SINGLE_ISSUER` ring. A
//! context that is gone has its slots cleared before any later entry is translated; requests
//! already in flight on a cleared slot keep the file they started with, as for a plain fd.

use std::os::fd::RawFd;
use std::sync::Arc;

use io_uring::IoUring;

use crate::specialize::{self, Pool, Spec};

/// Fixed-file slots per ring (a sparse table: only used slots cost anything).
const FILE_SLOTS: u32 = 1024;
/// Fixed-buffer slots per ring (one per context with a pool, one per shared buffer).
const BUF_SLOTS: u32 = 64;

/// How an entry's fd and buffer are named on the ring.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fixed {
    /// The fixed-file slot (None: the fd itself, only the buffer is fixed).
    pub(super) slot: Option<u32>,
    /// The fixed buffer holding the call's buffer, if the call reads or writes one in the pool.
    pub(super) buf: Option<u16>,
}

/// A context as registered on this ring.
#[derive(Debug)]
struct Local {
    spec: Arc<Spec>,
    slot: u32,
    /// The fixed buffer of its pool.
    buf: Option<u16>,
}

/// Whether a table could be registered on this ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    NotYet,
    Ready,
    /// The kernel refused (too old, or out of memory): calls stay plain.
    Refused,
}

impl Table {
    /// Registers the table with `register` on first use; whether it is usable.
    fn ready(&mut self, register: impl FnOnce() -> std::io::Result<()>) -> bool {
        if *self == Table::NotYet {
            *self = match register() {
                Ok(()) => Table::Ready,
                Err(_) => Table::Refused,
            };
        }
        *self == Table::Ready
    }
}

/// One ring's specialization state.
#[derive(Debug)]
pub(super) struct RingSpecs {
    key: usize,
    /// The registry epoch this copy is current for.
    seen: u64,
    /// Indexed by fd (fds are small and dense; a hash would cost more than the lookup saves).
    by_fd: Vec<Option<Local>>,
    /// Contexts registered here.
    live: usize,
    /// Shared buffers registered here, with their fixed buffers.
    areas: Vec<(Arc<Spec>, u16)>,
    files: Table,
    bufs: Table,
    free_slots: Vec<u32>,
    free_bufs: Vec<u16>,
}

impl RingSpecs {
    /// The state of a new ring of registration `key` (nothing registered yet).
    pub(super) fn new(key: usize) -> Self {
        Self {
            key,
            seen: 0,
            by_fd: Vec::new(),
            live: 0,
            areas: Vec::new(),
            files: Table::NotYet,
            bufs: Table::NotYet,
            free_slots: (0..FILE_SLOTS).rev().collect(),
            free_bufs: (0..BUF_SLOTS as u16).rev().collect(),
        }
    }

    /// Whether the registry changed since this copy was made.
    #[inline]
    pub(super) fn stale(&self) -> bool {
        specialize::epoch() != self.seen
    }

    /// Brings the ring's registrations up to date with the registry. Call on the ring's owner.
    pub(super) fn sync(&mut self, ring: &IoUring) {
        let (epoch, specs) = specialize::snapshot(self.key);
        let sub = ring.submitter();
        // Gone (or replaced by a new context on the same fd): clear the slots first.
        let mut bufs_gone = Vec::new();
        for entry in &mut self.by_fd {
            let gone = entry
                .as_ref()
                .is_some_and(|l| !specs.iter().any(|s| s.id == l.spec.id));
            let Some(l) = entry.take_if(|_| gone) else {
                continue;
            };
            self.live -= 1;
            // A slot that cannot be cleared (the ring failed) stays used: never reused.
            if sub.register_files_update(l.slot, &[-1]).is_ok() {
                self.free_slots.push(l.slot);
            }
            if let Some(b) = l.buf {
                bufs_gone.push((l.spec, b));
            }
        }
        // Shared buffers gone too.
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.areas)
            .into_iter()
            .partition(|(a, _)| specs.iter().any(|s| s.id == a.id));
        self.areas = kept;
        bufs_gone.extend(gone);
        for (spec, b) in bufs_gone {
            self.clear_buffer(ring, b);
            // The registration has ended: only now may the memory go (this may be the last
            // owner of the mapping).
            drop(spec);
        }
        for spec in specs {
            if !spec.binds_fd() {
                if !self.areas.iter().any(|(a, _)| a.id == spec.id)
                    && let Some(b) = spec
                        .pool
                        .as_ref()
                        .and_then(|p| self.register_buffer(ring, p))
                {
                    self.areas.push((spec, b));
                }
                continue;
            }
            let fd = spec.fd as usize;
            // Occupied: by this same context (a replaced one was cleared above).
            if self.by_fd.get(fd).is_some_and(Option::is_some) {
                continue;
            }
            if let Some(local) = self.register(ring, &spec) {
                if self.by_fd.len() <= fd {
                    self.by_fd.resize_with(fd + 1, || None);
                }
                self.by_fd[fd] = Some(local);
                self.live += 1;
            }
        }
        self.seen = epoch;
    }

    /// Registers `spec`'s file (and pool) on the ring; None if the ring cannot.
    fn register(&mut self, ring: &IoUring, spec: &Arc<Spec>) -> Option<Local> {
        let sub = ring.submitter();
        let file = spec.file()?;
        if !self.files.ready(|| sub.register_files_sparse(FILE_SLOTS)) {
            return None;
        }
        let slot = self.free_slots.pop()?;
        if !matches!(sub.register_files_update(slot, &[file]), Ok(1)) {
            self.free_slots.push(slot);
            return None;
        }
        let buf = spec
            .pool
            .as_ref()
            .and_then(|pool| self.register_buffer(ring, pool));
        Some(Local {
            spec: spec.clone(),
            slot,
            buf,
        })
    }

    /// Registers `pool` as a fixed buffer; None if the ring cannot.
    fn register_buffer(&mut self, ring: &IoUring, pool: &Pool) -> Option<u16> {
        let sub = ring.submitter();
        if !self.bufs.ready(|| sub.register_buffers_sparse(BUF_SLOTS)) {
            return None;
        }
        let b = self.free_bufs.pop()?;
        // SAFETY: the pool's mapping lives as long as its Arc, which the caller keeps (in
        // `Local` or `areas`) until the slot is cleared (or the ring, and with it the
        // registration, is gone).
        match unsafe { sub.register_buffers_update(b.into(), &[pool.iovec()], None) } {
            Ok(()) => Some(b),
            Err(_) => {
                self.free_bufs.push(b);
                None
            }
        }
    }

    /// Clears fixed buffer `b` (a slot that cannot be cleared stays used: never reused).
    fn clear_buffer(&mut self, ring: &IoUring, b: u16) {
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: an empty iovec clears the slot; no memory is registered.
        if unsafe {
            ring.submitter()
                .register_buffers_update(b.into(), &[empty], None)
        }
        .is_ok()
        {
            self.free_bufs.push(b);
        }
    }

    /// The fixed names for call `nr` with `a`: its fd's slot if the fd is specialized on this
    /// ring, and the fixed buffer holding its buffer (its pool, or a shared buffer), for the calls
    /// that take them.
    #[inline]
    pub(super) fn lookup(&self, nr: u16, a: &[u64; 6]) -> Option<Fixed> {
        if self.live == 0 || !takes_fixed_file(nr) {
            return self.lookup_buffer(nr, a);
        }
        let Some(l) = usize::try_from(a[0] as RawFd)
            .ok()
            .and_then(|fd| self.by_fd.get(fd)?.as_ref())
        else {
            return self.lookup_buffer(nr, a);
        };
        let buf = match (l.buf, &l.spec.pool) {
            (Some(b), Some(pool)) if takes_fixed_buffer(nr) && pool.contains(a[1], a[2]) => Some(b),
            _ => self.lookup_buffer(nr, a).and_then(|f| f.buf),
        };
        Some(Fixed {
            slot: Some(l.slot),
            buf,
        })
    }

    /// The fixed buffer for call `nr` with `a` if its buffer lies in a shared buffer registered
    /// here (the fd stays as it is).
    #[inline]
    pub(super) fn lookup_buffer(&self, nr: u16, a: &[u64; 6]) -> Option<Fixed> {
        if self.areas.is_empty() || !takes_fixed_buffer(nr) {
            return None;
        }
        let (_, b) = self
            .areas
            .iter()
            .find(|(s, _)| s.pool.as_ref().is_some_and(|p| p.contains(a[1], a[2])))?;
        Some(Fixed {
            slot: None,
            buf: Some(*b),
        })
    }

    /// The ring is gone (closed, or replaced by a new one): nothing is registered any more.
    pub(super) fn reset(&mut self) {
        *self = Self::new(self.key);
    }
}

/// The calls whose first argument is the fd they transfer data on, and which io_uring runs with
/// a fixed file exactly as with the fd (`opcode` builds them).
fn takes_fixed_file(nr: u16) -> bool {
    matches!(
        i64::from(nr),
        libc::SYS_read
            | libc::SYS_write
            | libc::SYS_pread64
            | libc::SYS_pwrite64
            | libc::SYS_readv
            | libc::SYS_writev
            | libc::SYS_sendto
            | libc::SYS_recvfrom
            | libc::SYS_sendmsg
            | libc::SYS_recvmsg
    )
}

/// The calls with one buffer (args 1 and 2) that have a fixed-buffer opcode.
fn takes_fixed_buffer(nr: u16) -> bool {
    matches!(
        i64::from(nr),
        libc::SYS_read | libc::SYS_write | libc::SYS_pread64 | libc::SYS_pwrite64
    )
}
