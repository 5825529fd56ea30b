//! An owned file descriptor whose calls go through [`crate::syscall`].

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use flexsc_kmod::fd_mode;

use super::{cvt, cvt_r};
use crate::syscall;

/// The most a single read or write asks for: `INT_MAX` rounded down to a page, what the kernel
/// transfers at most anyway (`MAX_RW_COUNT`). Larger requests are clamped, so a call never
/// differs from what the kernel would do and always fits an io_uring request.
const MAX_RW: usize = (i32::MAX as usize) & !4095;

/// An owned file descriptor: read, write and close through [`crate::syscall`] (exception-less on
/// a green thread, which parks while the call runs). Closed on drop.
///
/// Reads and writes retry `EINTR`; other failures come back as [`io::Error`]s made from the
/// errno, as in `std`.
///
/// A descriptor this library created holds its open file description alone until it is
/// duplicated, lent out as a raw fd or the process forks: meanwhile, in blocking mode, it is
/// vouched for as blocking ([`flexsc_kmod::fd_mode`]), which spares the uring backend a
/// synchronous `fcntl` per call that has to wait.
#[derive(Debug)]
pub struct Fd {
    fd: RawFd,
    /// The fork epoch in which it got its description to itself, or [`SHARED`].
    alone_since: AtomicU64,
}

/// [`Fd::alone_since`] of a descriptor whose description others may hold too.
const SHARED: u64 = u64::MAX;

impl Fd {
    /// Takes ownership of `fd`, a descriptor just created by the caller (a socket, an accepted
    /// connection, a pipe end or an opened file), in fork epoch `epoch` (read before the
    /// creating call); `nonblocking`: created with `O_NONBLOCK`.
    ///
    /// # Safety
    /// `fd` is open, nothing else owns it, and no other descriptor of its open file description
    /// exists.
    pub(super) unsafe fn new_alone(fd: RawFd, epoch: u64, nonblocking: bool) -> Self {
        if !nonblocking {
            fd_mode::vouch_blocking(fd, epoch);
        }
        Fd {
            fd,
            alone_since: AtomicU64::new(epoch),
        }
    }

    /// Someone else may hold the description from now on (or change its flags through this
    /// descriptor): the vouch is withdrawn for good.
    fn shared(&self) {
        self.alone_since.store(SHARED, Ordering::Relaxed);
        fd_mode::withdraw(self.fd);
    }

    /// Reads into `buf` at the file position; returns the bytes read (0: end of file).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(MAX_RW);
        let r = cvt_r(|| {
            // SAFETY: `buf` is valid for writes of `len` bytes and borrowed for the whole call:
            // a green thread stays parked inside `syscall` until the call has completed (an OS
            // thread runs it synchronously), so the buffer outlives the kernel's use of it.
            unsafe {
                syscall(
                    libc::SYS_read,
                    &[self.fd as u64, buf.as_mut_ptr() as u64, len as u64],
                )
            }
        })?;
        Ok(r as usize)
    }

    /// Writes from `buf` at the file position; returns the bytes written.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len().min(MAX_RW);
        let r = cvt_r(|| {
            // SAFETY: `buf` is valid for reads of `len` bytes and borrowed for the whole call,
            // which returns only once the kernel is done with it (the green thread is parked
            // inside `syscall` meanwhile).
            unsafe {
                syscall(
                    libc::SYS_write,
                    &[self.fd as u64, buf.as_ptr() as u64, len as u64],
                )
            }
        })?;
        Ok(r as usize)
    }

    /// Reads into `buf` at `offset` (`pread64`), leaving the file position alone.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = buf.len().min(MAX_RW);
        let r = cvt_r(|| {
            // SAFETY: as in `read`: `buf` is writable for `len` bytes and outlives the call,
            // which completes before `syscall` returns to this (parked) green thread.
            unsafe {
                syscall(
                    libc::SYS_pread64,
                    &[self.fd as u64, buf.as_mut_ptr() as u64, len as u64, offset],
                )
            }
        })?;
        Ok(r as usize)
    }

    /// Writes from `buf` at `offset` (`pwrite64`), leaving the file position alone.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let len = buf.len().min(MAX_RW);
        let r = cvt_r(|| {
            // SAFETY: as in `write`: `buf` is readable for `len` bytes and outlives the call.
            unsafe {
                syscall(
                    libc::SYS_pwrite64,
                    &[self.fd as u64, buf.as_ptr() as u64, len as u64, offset],
                )
            }
        })?;
        Ok(r as usize)
    }

    /// A second descriptor for the same open file (`F_DUPFD_CLOEXEC`).
    pub fn try_clone(&self) -> io::Result<Fd> {
        self.shared();
        // SAFETY: F_DUPFD_CLOEXEC takes an integer (the lowest fd to use), no memory.
        let r = cvt(unsafe {
            syscall(
                libc::SYS_fcntl,
                &[self.fd as u64, libc::F_DUPFD_CLOEXEC as u64, 3],
            )
        })?;
        // SAFETY: the dup succeeded: the fd is open and ours alone (its description is not).
        Ok(unsafe { Fd::from_raw_fd(r as RawFd) })
    }

    /// Sets or clears `O_NONBLOCK` (`FIONBIO`). On a non-blocking descriptor a call that would
    /// wait fails with [`io::ErrorKind::WouldBlock`] instead.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        if nonblocking {
            // Before the flag changes: a vouch must never outlive blocking mode.
            fd_mode::withdraw(self.fd);
        }
        let mut v: libc::c_int = nonblocking.into();
        // SAFETY: FIONBIO reads one int from `v`, a live local that outlives the call (the
        // green thread is parked inside `syscall` until it completes).
        cvt(unsafe {
            syscall(
                libc::SYS_ioctl,
                &[
                    self.fd as u64,
                    libc::FIONBIO,
                    &mut v as *mut libc::c_int as u64,
                ],
            )
        })?;
        let alone_since = self.alone_since.load(Ordering::Relaxed);
        if !nonblocking && alone_since != SHARED {
            fd_mode::vouch_blocking(self.fd, alone_since);
        }
        Ok(())
    }

    /// Closes the descriptor, reporting the error `close` gives (which drop ignores). The
    /// descriptor is released even on error, as Linux does; `EINTR` is not retried (the fd
    /// might already be reused).
    pub fn close(self) -> io::Result<()> {
        let fd = ManuallyDrop::new(self).fd;
        fd_mode::withdraw(fd);
        // SAFETY: closes the descriptor this value owned; it is not used again.
        cvt(unsafe { syscall(libc::SYS_close, &[fd as u64]) })?;
        Ok(())
    }

    /// The raw descriptor, for the calls the other modules make on it.
    pub(super) fn raw(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        fd_mode::withdraw(self.fd);
        // SAFETY: closes the descriptor this value owns; nothing uses it afterwards.
        // Errors are ignored, as `std` does for its own descriptors.
        let _ = unsafe { syscall(libc::SYS_close, &[self.fd as u64]) };
    }
}

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.shared();
        self.fd
    }
}

impl IntoRawFd for Fd {
    fn into_raw_fd(self) -> RawFd {
        fd_mode::withdraw(self.fd);
        ManuallyDrop::new(self).fd
    }
}

impl FromRawFd for Fd {
    /// Takes ownership of `fd`.
    ///
    /// # Safety
    /// `fd` must be an open descriptor that nothing else owns (it is closed on drop).
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        debug_assert!(fd >= 0, "a raw fd is never negative");
        // Of unknown provenance: never vouched for (and a stale vouch for the number is gone).
        fd_mode::withdraw(fd);
        Fd {
            fd,
            alone_since: AtomicU64::new(SHARED),
        }
    }
}

impl AsFd for Fd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared();
        // SAFETY: `self.fd` is open for as long as `self` (which the borrow keeps alive) owns it.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

impl From<Fd> for OwnedFd {
    fn from(fd: Fd) -> Self {
        // SAFETY: `into_raw_fd` gives up ownership of an open fd, which `OwnedFd` takes.
        unsafe { OwnedFd::from_raw_fd(fd.into_raw_fd()) }
    }
}

impl From<OwnedFd> for Fd {
    fn from(fd: OwnedFd) -> Self {
        // SAFETY: `into_raw_fd` gives up ownership of an open fd, which we take.
        unsafe { Fd::from_raw_fd(fd.into_raw_fd()) }
    }
}

impl io::Read for &Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Fd::read(self, buf)
    }
}

impl io::Write for &Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Fd::write(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Fd::read(self, buf)
    }
}

impl io::Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Fd::write(self, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
